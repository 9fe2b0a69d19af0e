"""``calibkit`` entry point. Each sub-command lives in its own module ``calibkit.cli.<name>``
exposing ``add_parser(subparsers) -> None`` whose parser sets ``func=run`` with
``run(args) -> int``. Modules are imported only when needed, so ``calibkit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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
    ("score", "calibkit.cli.score", "score a dataset with an LLM (classify or mcq)"),
    ("experiment", "calibkit.cli.experiment", "run a paper-reproduction experiment"),
    ("cascade", "calibkit.cli.cascade", "train, apply and report a cost-aware cascade of LLMs"),
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
