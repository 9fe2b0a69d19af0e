"""``calibkit evaluate FILE``: calibration metrics and a reliability diagram for a scored table.

FILE is CSV / TSV / JSONL / JSON / Parquet with a label column and score columns
(``prob_<class>``, ``p_<class>``, ``logit_<class>``, or one binary ``prob``/``p``/``score``/``logit``
column; see :mod:`calibkit.io`).

Examples::

    calibkit evaluate examples/sst2_scores.csv
    calibkit evaluate scores.parquet --bins 10 --bootstrap 1000 --plot rel.svg
    calibkit evaluate scores.csv --logit-cols a,b,c --label-col gold --json

The helpers here (score-column arguments, :func:`compute_metrics`, the rich tables) are shared
with ``calibkit fit`` and ``calibkit apply``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit.scores import Scores

__all__ = [
    "METRICS",
    "add_parser",
    "add_score_arguments",
    "compute_metrics",
    "evaluation_probs",
    "load_scores",
    "reliability_rows",
    "run",
]

#: (key, display name, lower is better) in display order
METRICS: list[tuple[str, str, bool]] = [
    ("accuracy", "Accuracy", False),
    ("ece", "ECE", True),
    ("mce", "MCE", True),
    ("ace", "ACE", True),
    ("rms_ce", "RMS-CE", True),
    ("conf_ece", "conf-ECE", True),
    ("cw_ece", "cw-ECE", True),
    ("brier", "Brier", True),
    ("nll", "NLL", True),
]


# ---------------------------------------------------------------------- shared arguments
def plain_description(doc: str | None) -> str:
    """A module docstring as ``--help`` text: reST markup (````x````, ``:func:`x```, ``::``) removed."""
    text = doc or ""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    text = text.replace("``", "").replace("::\n", ":\n")
    return text.strip()


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    """Column-selection options shared by evaluate / fit / apply."""
    g = p.add_argument_group("columns (default: detected)")
    g.add_argument("--label-col", default="label", help="gold label column (default: label)")
    g.add_argument("--id-col", default="id", help="item id column, kept if present (default: id)")
    g.add_argument("--prob-cols", help="comma-separated (n, K) probability columns, class order")
    g.add_argument("--logit-cols", help="comma-separated (n, K) logit columns, class order")
    g.add_argument("--prob-col", help="one binary P(y=1) column")
    g.add_argument("--logit-col", help="one binary logit log p/(1-p) column")
    g.add_argument(
        "--classes", help="comma-separated class names in column order (NEG,POS for one column)"
    )


def load_scores(args: argparse.Namespace, path: str | Path, *, require_labels: bool) -> Scores:
    """Read ``path`` with :func:`calibkit.io.read_table` and the column options in ``args``."""
    from calibkit.io import read_table, scores_from_table

    df = read_table(path, text_columns=[args.id_col] if args.id_col else ())
    return scores_from_table(
        df,
        label_col=args.label_col,
        prob_cols=args.prob_cols,
        logit_cols=args.logit_cols,
        prob_col=args.prob_col,
        logit_col=args.logit_col,
        classes=_split(args.classes),
        id_col=args.id_col,
        require_labels=require_labels,
    )


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]


def _positive_index(scores: Scores, positive: str | None) -> int | None:
    if positive is None:
        return None
    if scores.n_classes != 2:
        raise ValueError(
            f"--positive needs a 2-class file; this one has {scores.n_classes} classes"
        )
    if positive not in scores.classes:
        raise ValueError(f"--positive {positive!r} is not a class; classes are {scores.classes}")
    return scores.classes.index(positive)


def evaluation_probs(
    scores: Scores, positive: int | None = None
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """``(probs, labels)`` to evaluate: ``(n, K)`` top-label view, or with ``positive`` the 1-D
    ``P(y = positive)`` against ``y == positive`` (paper 000's low/high-probability view)."""
    y = scores.require_labels()
    if positive is None:
        return scores.probs, y
    return scores.probs[:, positive], (y == positive).astype(np.int64)


# ---------------------------------------------------------------------- metrics
def _metric_fns(n_bins: int, binning: str) -> dict[str, Callable[..., float]]:
    from calibkit import metrics as m

    return {
        "accuracy": lambda p, y: float(m.accuracy(p, y)),
        "ece": lambda p, y: float(m.ece(p, y, n_bins=n_bins, binning=binning)),
        "mce": lambda p, y: float(m.mce(p, y, n_bins=n_bins, binning=binning)),
        "ace": lambda p, y: float(m.ace(p, y, n_bins=n_bins)),
        "rms_ce": lambda p, y: float(m.rms_ce(p, y, n_bins=n_bins, binning=binning)),
        "conf_ece": lambda p, y: float(m.conf_ece(p, y, n_bins=n_bins)),
        "cw_ece": lambda p, y: float(m.classwise_ece(p, y, n_bins=n_bins, binning=binning)),
        "brier": lambda p, y: float(m.brier_score(p, y)),
        "nll": lambda p, y: float(m.nll(p, y)),
    }


def compute_metrics(
    probs: NDArray[np.float64],
    labels: NDArray[np.int64],
    *,
    n_bins: int = 15,
    binning: str = "uniform",
    bootstrap: int = 0,
    alpha: float = 0.05,
    seed: int = 0,
    progress: bool = False,
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Every metric of :data:`METRICS` on probabilities, plus bootstrap CIs when ``bootstrap > 0``.

    Parameters
    ----------
    probs : (n, K) or (n,) probabilities
    labels : (n,) int
    n_bins, binning
        Bins of the ECE family (ACE and conf-ECE use ``n_bins`` with their own binning).
    bootstrap : int
        Number of resamples for :func:`calibkit.metrics.bootstrap_ci` (0: no intervals); each
        metric gets the same seed, hence the same resamples.
    progress : bool
        Show a (transient, stderr) progress bar over the bootstrapped metrics.

    Returns
    -------
    values : dict of metric key -> float
    intervals : dict of metric key -> (low, high); empty without bootstrap
    """
    fns = _metric_fns(n_bins, binning)
    values = {k: fn(probs, labels) for k, fn in fns.items()}
    intervals: dict[str, tuple[float, float]] = {}
    if bootstrap > 0:
        from calibkit.metrics import bootstrap_ci

        items: Any = list(fns.items())
        if progress:
            from rich.console import Console
            from rich.progress import track

            items = track(
                items,
                description=f"bootstrap ({bootstrap} resamples)",
                console=Console(stderr=True),
                transient=True,
            )
        for k, fn in items:
            ci = bootstrap_ci(fn, probs, labels, n_boot=bootstrap, alpha=alpha, seed=seed)
            intervals[k] = (float(ci.low), float(ci.high))
    return values, intervals


def reliability_rows(
    probs: NDArray[np.float64], labels: NDArray[np.int64], *, n_bins: int, binning: str
) -> list[dict[str, Any]]:
    """Per-bin rows of :func:`calibkit.metrics.reliability_table` as JSON-ready dicts."""
    from calibkit.metrics import reliability_table

    tab = reliability_table(probs, labels, n_bins=n_bins, binning=binning)
    rows = []
    for row in tab.rows():
        rows.append({k: _json_value(v) for k, v in row.items()})
    return rows


def _json_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ---------------------------------------------------------------------- rendering
def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def metrics_table(
    columns: Sequence[tuple[str, dict[str, float]]],
    intervals: dict[str, tuple[float, float]] | None = None,
    *,
    title: str | None = None,
    alpha: float = 0.05,
) -> Any:
    """A rich Table: one row per metric, one value column per ``(header, values)`` entry."""
    from rich.table import Table

    t = Table(title=title, title_justify="left", header_style="bold")
    t.add_column("Metric")
    for head, _ in columns:
        t.add_column(head, justify="right")
    if intervals:
        t.add_column(f"{100 * (1 - alpha):.0f}% CI", justify="right")
    if len(columns) == 2:
        t.add_column("Change", justify="right")
    for key, name, lower_better in METRICS:
        cells = [_fmt(vals.get(key)) for _, vals in columns]
        if intervals:
            lo, hi = intervals.get(key, (float("nan"), float("nan")))
            cells.append(f"[{_fmt(lo)}, {_fmt(hi)}]")
        if len(columns) == 2:
            a, b = columns[0][1].get(key), columns[1][1].get(key)
            if a is None or b is None:
                cells.append("-")
            else:
                d = b - a
                good = (d < 0) == lower_better
                color = "green" if good and abs(d) > 1e-12 else ("red" if abs(d) > 1e-12 else "")
                txt = f"{d:+.4f}"
                cells.append(f"[{color}]{txt}[/]" if color else txt)
        hint = " ↓" if lower_better else " ↑"
        t.add_row(name + hint, *cells)
    return t


def bins_table(rows: list[dict[str, Any]], *, binary: bool, title: str | None = None) -> Any:
    """A rich Table of the per-bin reliability rows (empty bins are skipped).

    Gap is ``confidence - accuracy``; the scenario is paper 000's Table 1 cell: low (<= 0.5) or
    high probability, over- (below the diagonal) or under-confident (above it).
    """
    from rich.table import Table

    t = Table(title=title, title_justify="left", header_style="bold")
    t.add_column("Bin", justify="right")
    t.add_column("Range")
    t.add_column("Count", justify="right")
    t.add_column("Mean P(y=1)" if binary else "Confidence", justify="right")
    t.add_column("Frac. pos." if binary else "Accuracy", justify="right")
    t.add_column("Gap", justify="right")
    t.add_column("Scenario")
    for r in rows:
        if not r.get("count"):
            continue
        if r.get("over_confident"):
            scen, color = f"{r.get('probability')} prob., over-confident", "red"
        elif r.get("under_confident"):
            scen, color = f"{r.get('probability')} prob., under-confident", "blue"
        else:
            scen, color = "calibrated", ""
        last = r is rows[-1]
        t.add_row(
            str(r.get("bin")),
            f"[{_fmt(r.get('lower'), 3)}, {_fmt(r.get('upper'), 3)}{']' if last else ')'}",
            str(r.get("count")),
            _fmt(r.get("confidence")),
            _fmt(r.get("accuracy")),
            _fmt(r.get("gap"), 4),
            f"[{color}]{scen}[/]" if color else scen,
        )
    return t


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
    p.add_argument("--bins", type=int, default=15, help="number of bins M (default 15)")
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
    p.add_argument(
        "--plot",
        metavar="PATH",
        help="reliability diagram path, .png/.svg/.pdf (default <FILE stem>_reliability.png)",
    )
    p.add_argument("--no-plot", action="store_true", help="do not draw the reliability diagram")
    p.add_argument("--classwise-plot", metavar="PATH", help="also draw one panel per class to PATH")
    p.add_argument("--title", help="diagram title (default: the file name)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    if args.bins < 1:
        raise ValueError(f"--bins must be >= 1; got {args.bins}")
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap must be >= 0; got {args.bootstrap}")
    if not 0.0 < args.alpha < 1.0:
        raise ValueError(f"--alpha must be in (0, 1); got {args.alpha}")


def default_plot_path(file: str | Path) -> Path:
    """``<dir>/<stem>_reliability.png`` next to ``file`` (``scores.csv.gz`` -> ``scores_...``)."""
    p = Path(file)
    stem = p.name.split(".")[0] or p.stem
    return p.with_name(f"{stem}_reliability.png")


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    scores = load_scores(args, args.file, require_labels=True)
    pos = _positive_index(scores, args.positive)
    probs, labels = evaluation_probs(scores, pos)
    values, intervals = compute_metrics(
        probs,
        labels,
        n_bins=args.bins,
        binning=args.binning,
        bootstrap=args.bootstrap,
        alpha=args.alpha,
        seed=args.seed,
        progress=not args.json and sys.stderr.isatty(),
    )
    rows = reliability_rows(probs, labels, n_bins=args.bins, binning=args.binning)
    plot_path: Path | None = None
    if not args.no_plot:
        from calibkit.plots import reliability_diagram, save_figure

        plot_path = Path(args.plot) if args.plot else default_plot_path(args.file)
        title = args.title or Path(args.file).name
        if pos is not None:
            title += f" (P(y={scores.classes[pos]}))"
        fig = reliability_diagram(
            probs, labels, n_bins=args.bins, binning=args.binning, title=title
        )
        save_figure(fig, plot_path, close=True)
    cw_plot: Path | None = None
    if args.classwise_plot:
        from calibkit.plots import classwise_reliability_diagram, save_figure

        cw_plot = Path(args.classwise_plot)
        fig = classwise_reliability_diagram(
            scores.probs,
            scores.require_labels(),
            n_bins=args.bins,
            binning=args.binning,
            classes=scores.classes,
            title=args.title or Path(args.file).name,
        )
        save_figure(fig, cw_plot, close=True)

    view = "top-label" if pos is None else f"P(y={scores.classes[pos]})"
    if args.json:
        out = {
            "file": str(args.file),
            "n": len(scores),
            "classes": list(scores.classes),
            "view": view,
            "n_bins": args.bins,
            "binning": args.binning,
            "metrics": {k: _json_value(v) for k, v in values.items()},
            "intervals": {k: [lo, hi] for k, (lo, hi) in intervals.items()} or None,
            "alpha": args.alpha if intervals else None,
            "reliability_table": rows,
            "plot": None if plot_path is None else str(plot_path),
            "classwise_plot": None if cw_plot is None else str(cw_plot),
        }
        print(json.dumps(out, indent=2))
        return 0

    from rich.console import Console

    con = Console()
    names = ", ".join(scores.classes[:8]) + (", ..." if scores.n_classes > 8 else "")
    con.print(f"[bold]{args.file}[/]: {len(scores)} items, {scores.n_classes} classes ({names})")
    con.print(f"view: {view}, {args.bins} {args.binning} bins")
    con.print(metrics_table([("Value", values)], intervals or None, alpha=args.alpha))
    con.print("\n[bold]Reliability table[/] (non-empty bins; gap = confidence - accuracy)")
    con.print(bins_table(rows, binary=probs.ndim == 1))
    if plot_path is not None:
        con.print(f"reliability diagram: [cyan]{plot_path}[/]")
    if cw_plot is not None:
        con.print(f"classwise diagram: [cyan]{cw_plot}[/]")
    return 0
