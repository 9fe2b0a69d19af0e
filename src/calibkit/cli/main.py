"""``calibkit`` entry point. Each sub-command lives in its own module ``calibkit.cli.<name>``
exposing ``add_parser(subparsers) -> None`` whose parser sets ``func=run`` with
``run(args) -> int``. Modules are imported only when needed, so ``calibkit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from calibkit.cli._args import error_message, one_line

# (command, module, one-line help). Order is the order shown in --help.
COMMANDS: list[tuple[str, str, str]] = [
    (
        "demo",
        "calibkit.cli.demo",
        "offline demo: score a bundled sample with SmolLM2, calibrate, report",
    ),
    (
        "evaluate",
        "calibkit.cli.evaluate",
        "metrics table and reliability diagram for a scored file",
    ),
    ("fit", "calibkit.cli.fit", "fit a calibrator on a scored file and save it as JSON"),
    ("apply", "calibkit.cli.apply", "apply a saved calibrator to a scored file"),
    (
        "diagnose",
        "calibkit.cli.diagnose",
        "warnings about scores and a calibrator: inverted scores, bound-hitting fits, ...",
    ),
    ("report", "calibkit.cli.report", "one self-contained HTML calibration report"),
    ("score", "calibkit.cli.score", "score a dataset with an LLM (classify or mcq)"),
    ("experiment", "calibkit.cli.experiment", "run a paper-reproduction experiment"),
    ("cascade", "calibkit.cli.cascade", "train, apply and report a cost-aware cascade of LLMs"),
    (
        "threshold",
        "calibkit.cli.threshold",
        "auto-label at a certified error rate (Learn-then-Test) and apply the policy",
    ),
    (
        "conformal",
        "calibkit.cli.conformal",
        "conformal prediction sets with guaranteed coverage (LAC / APS / RAPS)",
    ),
    ("finetune", "calibkit.cli.finetune", "calibration-aware fine-tuning (CFT / RCFT)"),
]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calibkit",
        description="Measure, fix and use the calibration of classifiers and LLMs.",
    )
    from calibkit import __version__

    parser.add_argument("--version", action="version", version=f"calibkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None
    if argv:
        first = next((a for a in argv if not a.startswith("-")), None)
        if first in {c for c, _, _ in COMMANDS}:
            wanted = first
    for name, module, help_ in COMMANDS:
        if wanted is not None and name != wanted:
            continue
        if wanted is None:
            # cheap placeholder parser for --help listing
            sub.add_parser(name, help=help_)
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                sub.add_parser(name, help=f"{help_} (not available)")
                continue
            raise
        mod.add_parser(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's input or environment, not a calibkit bug."""
    errs: list[type[BaseException]] = [ValueError, OSError, ImportError]
    try:
        import yaml

        errs.append(yaml.YAMLError)
    except ImportError:
        pass
    return tuple(errs)


def _report(prefix: str, message: str) -> None:
    """``<prefix>: <message>`` as one line on stderr (no markup, never wrapped)."""
    try:
        print(f"{prefix}: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed: nothing left to tell
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Exit codes: 0 ok, 2 error (one ``error:`` line), 130 interrupted.

    A command may return another code itself (``score --on-error skip``: 3, a partial result).
    ``ValueError``, ``OSError``, ``ImportError`` (a missing optional package) and YAML errors
    become one line ``error: <message>``; Ctrl-C becomes ``interrupted: <message or 'stopped'>``.
    Any other exception is a bug and keeps its traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return 0 if not argv else 2
        return int(func(args) or 0)
    except KeyboardInterrupt as exc:
        _report("interrupted", one_line(exc) or "stopped")
        return 130
    except BrokenPipeError:
        # stdout closed early (`calibkit evaluate f.csv --json | head -1`): not an error
        try:
            sys.stdout = open(os.devnull, "w")  # keep Python's flush at exit quiet
        except OSError:
            pass
        return 141  # 128 + SIGPIPE, as a shell reports it
    except _user_errors() as exc:
        _report("error", error_message(exc))
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
