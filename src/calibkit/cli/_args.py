"""Argument helpers shared by every ``calibkit`` command: score columns, class lists, metric
names, bin counts, output checks, and one-line messages.

* :func:`add_score_arguments` / :func:`load_scored`: the column options of every command that
  reads a scored table (``--label-col``, ``--prob-cols`` ...), read by :mod:`calibkit.io`.
* ``--metrics a,b`` names registered metrics (:func:`add_metrics_argument`).

* ``--classes a,b`` and ``--classes a b`` mean the same (:func:`add_classes_argument`,
  :func:`parse_classes`).
* ``--bins`` is checked against :data:`MAX_BINS` before any work (:func:`check_bins`).
* Output paths are checked (suffix, folder, writability) before any work
  (:func:`check_output_table`, :func:`check_output_file`, :func:`check_figure_path`).
* :func:`one_line`, :func:`warn` and :func:`esc` keep user text intact: no terminal markup, no
  hard wrapping.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from calibkit.scores import Scores

__all__ = [
    "MAX_BINS",
    "add_classes_argument",
    "add_metrics_argument",
    "add_score_arguments",
    "check_bins",
    "check_figure_path",
    "check_not_same_file",
    "check_output_file",
    "check_output_table",
    "error_message",
    "esc",
    "load_scored",
    "load_scores",
    "metric_names_arg",
    "one_line",
    "parse_classes",
    "plain_description",
    "same_file",
    "warn",
]

#: largest ``--bins`` any command accepts (the ECE family costs O(bins) memory per class)
MAX_BINS = 10_000


def add_classes_argument(group: Any, help: str) -> None:
    """Add ``--classes`` taking ``a,b,c`` or ``a b c`` (or a mix); read it with :func:`parse_classes`."""
    group.add_argument(
        "--classes",
        nargs="+",
        metavar="CLASS",
        help=f"{help}; 'a,b' or 'a b' (put the option after positional arguments)",
    )


def parse_classes(value: str | Sequence[str] | None) -> list[str] | None:
    """``"a,b"``, ``["a", "b"]`` or ``["a,b", "c"]`` -> ``["a", "b", ...]``; ``None`` -> ``None``.

    Raises ``ValueError`` for an empty list or a repeated name.
    """
    if value is None:
        return None
    parts = [value] if isinstance(value, str) else list(value)
    names = [c.strip() for part in parts for c in str(part).split(",") if c.strip()]
    if not names:
        raise ValueError("--classes is empty; give class names as 'a,b' or 'a b'")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise ValueError(f"--classes repeats {dup}")
    return names


def plain_description(doc: str | None) -> str:
    """A module docstring as ``--help`` text: reST markup (````x````, ``:func:`x```, ``::``) removed."""
    text = doc or ""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    text = text.replace("``", "").replace("::\n", ":\n")
    return text.strip()


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    """Column-selection options shared by every command that reads a scored table."""
    g = p.add_argument_group("columns (default: detected)")
    g.add_argument("--label-col", default="label", help="gold label column (default: label)")
    g.add_argument("--id-col", default="id", help="item id column, kept if present (default: id)")
    g.add_argument("--prob-cols", help="comma-separated (n, K) probability columns, class order")
    g.add_argument("--logit-cols", help="comma-separated (n, K) logit columns, class order")
    g.add_argument("--prob-col", help="one binary P(y=1) column")
    g.add_argument("--logit-col", help="one binary logit log p/(1-p) column")
    add_classes_argument(g, "class names in column order (NEG POS for one column)")


def load_scored(
    args: argparse.Namespace, path: str | Path, *, require_labels: bool
) -> tuple[Scores, NDArray[np.float64] | None]:
    """Read ``path`` with the column options in ``args``: ``(scores, file probabilities)``.

    The second item is the ``(n, K)`` probabilities exactly as the file holds them (``None`` for
    logit columns), so metrics see the file's numbers, not the clipped ``Scores.probs``. A
    Scores file's ``meta`` (provenance) is kept. ``--format lm-eval`` (where the command has it)
    reads lm-evaluation-harness sample files instead (:mod:`calibkit.formats.lm_eval`).
    """
    if getattr(args, "format", None) not in (None, "table"):  # lm_eval --log_samples files
        from calibkit.formats.lm_eval import read_for_cli

        return read_for_cli(args, path), None
    from calibkit.io import read_scores_table, table_probabilities

    scores, df = read_scores_table(
        path,
        label_col=args.label_col,
        prob_cols=args.prob_cols,
        logit_cols=args.logit_cols,
        prob_col=args.prob_col,
        logit_col=args.logit_col,
        classes=parse_classes(args.classes),
        id_col=args.id_col,
        require_labels=require_labels,
    )
    return scores, table_probabilities(df, scores)


def load_scores(args: argparse.Namespace, path: str | Path, *, require_labels: bool) -> Scores:
    """:func:`load_scored` without the file probabilities."""
    return load_scored(args, path, require_labels=require_labels)[0]


def add_metrics_argument(p: Any) -> None:
    """Add ``--metrics NAMES``: registered metric names or aliases (comma-separated), or
    ``all``; default: the registry's default metrics (read with :func:`metric_names_arg`)."""
    from calibkit.metrics import metric_names

    p.add_argument(
        "--metrics",
        metavar="NAMES",
        help="comma-separated metrics to report, or 'all' (default: "
        f"{', '.join(metric_names(default=True))}; also: "
        f"{', '.join(metric_names(default=False))})",
    )


def metric_names_arg(value: str | None) -> list[str]:
    """The registry names selected by ``--metrics`` (``ValueError`` naming an unknown one)."""
    from calibkit.metrics import resolve_metric_names

    try:
        return resolve_metric_names(value)
    except ValueError as exc:
        raise ValueError(f"--metrics: {exc}") from None


def check_bins(n_bins: int, option: str = "--bins") -> int:
    """``1 <= n_bins <= MAX_BINS`` or a ``ValueError`` naming the option."""
    if n_bins < 1 or n_bins > MAX_BINS:
        raise ValueError(f"{option} must be between 1 and {MAX_BINS}; got {n_bins}")
    return n_bins


def one_line(text: object) -> str:
    """``text`` on one line (line breaks become spaces; nothing else changes)."""
    return " ".join(str(text).splitlines()).strip()


def esc(text: object) -> str:
    """User text (a path, a class name, a message) made safe inside rich markup."""
    from rich.markup import escape

    return escape(str(text))


def warn(message: str) -> None:
    """Print ``warning: <message>`` as one plain line on stderr."""
    print(f"warning: {one_line(message)}", file=sys.stderr, flush=True)


def check_output_table(path: str | os.PathLike[str], what: str = "output") -> Path:
    """A table output (``-o out.csv``): known suffix, codec installed, not a folder, writable."""
    from calibkit.io import check_table_output

    return check_table_output(path, what=what)


def check_output_file(path: str | os.PathLike[str], what: str = "output") -> Path:
    """Any output file: not a folder, its folder exists or can be made, and is writable."""
    from calibkit._atomic import check_writable

    return check_writable(path, what=what)


def check_figure_path(path: str | os.PathLike[str], what: str = "plot") -> Path:
    """A figure path: ``.png``/``.svg``/``.pdf`` suffix (no write check)."""
    from calibkit.plots import FIGURE_FORMATS

    p = Path(path)
    if p.suffix.lower() not in FIGURE_FORMATS:
        raise ValueError(
            f"{what} {p}: cannot tell the figure format; use a suffix in "
            f"{', '.join(FIGURE_FORMATS)}"
        )
    if p.is_dir():
        raise ValueError(f"{what} {p} is a folder; give a file name")
    return p


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name the same file (existing or not)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


def check_not_same_file(
    output: str | os.PathLike[str],
    inputs: Sequence[tuple[str, str | os.PathLike[str]]],
    *,
    force: bool = False,
    option: str = "-o",
) -> None:
    """Refuse to write ``output`` over one of ``inputs`` (``(what, path)`` pairs) unless ``force``."""
    for what, path in inputs:
        if same_file(output, path) and not force:
            raise ValueError(
                f"{option} {output} is the {what}; writing it would overwrite the input "
                "(choose another output, or pass --force)"
            )


#: optional module -> what to install, for ``ImportError`` messages
_INSTALL_HINTS: dict[str, str] = {
    "matplotlib": "pip install 'calibkit[plot]'",
    "pyarrow": "pip install 'calibkit[parquet]'",
    "optuna": "pip install 'calibkit[ensemble]'",
    "torch": "pip install 'calibkit[llm]'",
    "transformers": "pip install 'calibkit[llm]'",
    "gguf": "pip install 'calibkit[llm]'",
    "requests": "pip install 'calibkit[llm]'",
    "peft": "pip install 'calibkit[finetune]'",
    "ray": "pip install 'calibkit[scale]'",
    "zstandard": "pip install zstandard",
    "yaml": "pip install pyyaml",
}


def error_message(exc: BaseException) -> str:
    """One readable line for an error the user can fix."""
    if isinstance(exc, OSError) and exc.strerror:
        names = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
        text = f"{' -> '.join(names)}: {exc.strerror}" if names else exc.strerror
    elif isinstance(exc, ImportError):
        text = str(exc)
        mod = (exc.name or "").split(".")[0]
        hint = _INSTALL_HINTS.get(mod)
        if hint and hint not in text:
            text = f"{text} ({hint})"
    else:
        text = str(exc) or type(exc).__name__
    return one_line(text)
