"""``calibkit evaluate FILE``: calibration metrics and a reliability diagram for a scored table.

FILE is CSV / TSV / JSONL / JSON / Parquet with a label column and score columns
(``prob_<class>``, ``p_<class>``, ``logit_<class>``, or one binary ``prob``/``p``/``score``/``logit``
column; see :mod:`calibkit.io`).

Examples::

    calibkit evaluate examples/sst2_scores.csv
    calibkit evaluate scores.parquet --bins 10 --bootstrap 1000 --plot rel.svg
    calibkit evaluate scores.csv --logit-cols a,b,c --label-col gold --json

Metrics are printed first; a reliability diagram is drawn only where asked (--plot PATH), and
one that cannot be written is a warning, not an error. The diagnostics of ``calibkit diagnose``
(scores that rank the classes or the right answers the wrong way round, no signal) follow as
``warning:`` lines on stderr, and under ``"warnings"`` (and, in full, ``"diagnostics"``) in --json.

The metrics are the registered ones (:mod:`calibkit.metrics.registry`; ``--metrics`` picks
them by name, ``--metrics all`` reports every one); the Python API is
:func:`calibkit.evaluation.evaluate_scores`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit._json import json_ready, json_value
from calibkit.cli._args import (
    MAX_BINS,
    add_metrics_argument,
    add_score_arguments,
    check_bins,
    check_figure_path,
    error_message,
    esc,
    load_scored,
    load_scores,
    metric_names_arg,
    plain_description,
    warn,
)
from calibkit.cli._tables import bins_table, metrics_table
from calibkit.evaluation import Evaluation, evaluation_inputs, reliability_rows
from calibkit.scores import Scores

# kept importable from here for the commands and modules that import them from this module
# (conformal, threshold, diagnose, report, score, calibkit.metrics.out_of_core)
_json_value = json_value

__all__ = [
    "add_parser",
    "add_score_arguments",
    "bins_table",
    "diagnostic_warnings",
    "evaluation_inputs",
    "load_scored",
    "load_scores",
    "metrics_table",
    "plain_description",
    "reliability_rows",
    "run",
]


# ---------------------------------------------------------------------- command
def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="metrics table and reliability diagram for a scored file",
        description=plain_description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="scored table: .csv .tsv .jsonl .json .parquet")
    add_score_arguments(p)
    p.add_argument(
        "--bins", type=int, default=15, help=f"number of bins M, 1..{MAX_BINS} (default 15)"
    )
    p.add_argument(
        "--binning",
        choices=("uniform", "quantile"),
        default="uniform",
        help="equal-width or equal-mass bins for ECE/MCE/RMS-CE/cw-ECE and the diagram",
    )
    p.add_argument(
        "--positive",
        metavar="CLASS",
        help="2-class files: evaluate P(y=CLASS) against y==CLASS instead of the top label",
    )
    p.add_argument(
        "--bootstrap", type=int, default=0, metavar="N", help="bootstrap CIs, N resamples"
    )
    p.add_argument("--alpha", type=float, default=0.05, help="CI level is 1-alpha (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    add_metrics_argument(p)
    p.add_argument(
        "--plot",
        metavar="PATH",
        help="draw the reliability diagram to PATH (.png/.svg/.pdf); default: no diagram",
    )
    p.add_argument(
        "--no-plot", action="store_true", help="no diagram (the default; kept for old scripts)"
    )
    p.add_argument("--classwise-plot", metavar="PATH", help="also draw one panel per class to PATH")
    p.add_argument("--title", help="diagram title (default: the file name)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    p.set_defaults(func=run)
    from calibkit.metrics.out_of_core import add_stream_arguments

    add_stream_arguments(p)  # --stream/--ray and directories: calibkit.metrics.out_of_core


def _check_args(args: argparse.Namespace) -> None:
    check_bins(args.bins)
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap must be >= 0; got {args.bootstrap}")
    if not 0.0 < args.alpha < 1.0:
        raise ValueError(f"--alpha must be in (0, 1); got {args.alpha}")
    if args.plot and args.no_plot:
        raise ValueError("--plot and --no-plot contradict each other; give one")
    if args.plot:
        check_figure_path(args.plot, "--plot")
    if args.classwise_plot:
        check_figure_path(args.classwise_plot, "--classwise-plot")


def _try_plot(what: str, path: str, draw: Callable[[], Any], warnings: list[str]) -> Path | None:
    """Draw and save a figure; a failure (unwritable folder, no matplotlib) is a warning."""
    from calibkit.plots import save_figure

    try:
        fig = draw()
        return save_figure(fig, path, close=True)
    except (OSError, ValueError, ImportError) as exc:
        msg = f"{what} {path} not written: {error_message(exc)}"
        warnings.append(msg)
        warn(msg)
        return None


def diagnostic_warnings(findings: Iterable[Any], warnings: list[str], prefix: str = "") -> None:
    """Print each warning-severity finding of :func:`calibkit.calibrators.diagnostics.diagnose`
    as one ``warning:`` line on stderr and append it to ``warnings`` (``prefix`` names the data);
    a finding already in ``warnings`` is not repeated."""
    for f in findings:
        if f.severity != "warning":
            continue
        msg = f"{prefix}[{f.code}] {f.message} What to do: {f.advice}"
        if msg not in warnings:
            warnings.append(msg)
            warn(msg)


def _progress(args: argparse.Namespace) -> Callable[[list[str]], Iterable[str]] | None:
    """A transient stderr progress bar over the bootstrapped metrics, on a terminal only."""
    if args.json or not sys.stderr.isatty():
        return None

    def track(keys: list[str]) -> Iterable[str]:
        from rich.console import Console
        from rich.progress import track as rich_track

        return rich_track(
            keys,
            description=f"bootstrap ({args.bootstrap} resamples)",
            console=Console(stderr=True),
            transient=True,
        )

    return track


def _plots(
    args: argparse.Namespace,
    ev: Evaluation,
    scores: Scores,
    file_probs: NDArray[np.float64] | None,
    warnings: list[str],
) -> tuple[Path | None, Path | None]:
    """Draw the diagrams asked for; one that cannot be written is a warning (in ``warnings``)."""
    title = args.title or Path(args.file).name
    plot_path: Path | None = None
    if args.plot:

        def draw() -> Any:
            from calibkit.plots import reliability_diagram

            view = "" if args.positive is None else f" (P(y={args.positive}))"
            return reliability_diagram(
                ev.probs, ev.labels, n_bins=args.bins, binning=args.binning, title=title + view
            )

        plot_path = _try_plot("reliability diagram", args.plot, draw, warnings)
    cw_plot: Path | None = None
    if args.classwise_plot:

        def draw_cw() -> Any:
            from calibkit.plots import classwise_reliability_diagram

            return classwise_reliability_diagram(
                scores.probs if file_probs is None else file_probs,
                scores.require_labels(),
                n_bins=args.bins,
                binning=args.binning,
                classes=scores.classes,
                title=title,
            )

        cw_plot = _try_plot("classwise diagram", args.classwise_plot, draw_cw, warnings)

    return plot_path, cw_plot


def run(args: argparse.Namespace) -> int:
    from calibkit.evaluation import evaluate_scores

    _check_args(args)
    names = metric_names_arg(args.metrics)
    scores, file_probs = load_scored(args, args.file, require_labels=True)
    ev = evaluate_scores(
        scores,
        probs=file_probs,
        positive=args.positive,
        names=names,
        n_bins=args.bins,
        binning=args.binning,
        bootstrap=args.bootstrap,
        alpha=args.alpha,
        seed=args.seed,
        progress=_progress(args),
    )
    con = None
    if not args.json:  # metrics first: a plot that fails later cannot hide them
        from rich.console import Console

        con = Console()
        shown = ", ".join(scores.classes[:8]) + (", ..." if scores.n_classes > 8 else "")
        con.print(
            f"[bold]{esc(args.file)}[/]: {len(scores)} items, {scores.n_classes} classes "
            f"({esc(shown)})"
        )
        con.print(f"view: {esc(ev.view)}, {args.bins} {args.binning} bins")
        table = metrics_table([("Value", ev.metrics)], ev.intervals, names=names, alpha=args.alpha)
        con.print(table)
        con.print("\n[bold]Reliability table[/] (non-empty bins; gap = confidence - accuracy)")
        con.print(bins_table(ev.reliability, binary=ev.probs.ndim == 1))

    from calibkit.calibrators.diagnostics import diagnose

    warnings: list[str] = []
    findings = diagnose(scores)
    diagnostic_warnings(findings, warnings)
    plot_path, cw_plot = _plots(args, ev, scores, file_probs, warnings)
    if args.json:
        d = ev.to_dict()
        out = {
            "file": str(args.file),
            **d,
            "plot": None if plot_path is None else str(plot_path),
            "classwise_plot": None if cw_plot is None else str(cw_plot),
            "warnings": warnings,
            "diagnostics": json_ready([f.to_dict() for f in findings]),
        }
        print(json.dumps(out, indent=2))
        return 0

    assert con is not None
    if plot_path is not None:
        con.print(f"reliability diagram: [cyan]{esc(plot_path)}[/]")
    if cw_plot is not None:
        con.print(f"classwise diagram: [cyan]{esc(cw_plot)}[/]")
    return 0
