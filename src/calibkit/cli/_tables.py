"""Rich tables shared by the commands: metrics (from the metric registry), reliability bins, and
the cross-validated choice of ``fit -m auto``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["bins_table", "fmt", "metrics_table", "selection_table"]


def fmt(v: float | None, digits: int = 4) -> str:
    """A number with ``digits`` decimals; ``-`` for a missing or non-finite value."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def metrics_table(
    columns: Sequence[tuple[str, dict[str, float]]],
    intervals: dict[str, tuple[float, float]] | None = None,
    *,
    names: Iterable[str] | None = None,
    title: str | None = None,
    alpha: float = 0.05,
) -> Any:
    """A rich Table: one row per metric, one value column per ``(header, values)`` entry.

    Rows are ``names`` (default: the registry's default metrics), in that order, with the
    registry's display name and direction (``↓`` lower is better, ``↑`` higher); a metric missing
    from a column shows ``-``. With two columns a ``Change`` column is coloured by the direction.
    """
    from rich.table import Table

    from calibkit.metrics import get_metric, resolve_metric_names

    t = Table(title=title, title_justify="left", header_style="bold")
    t.add_column("Metric")
    for head, _ in columns:
        t.add_column(head, justify="right")
    if intervals:
        t.add_column(f"{100 * (1 - alpha):.0f}% CI", justify="right")
    if len(columns) == 2:
        t.add_column("Change", justify="right")
    for key in resolve_metric_names(None if names is None else list(names)):
        metric = get_metric(key)
        cells = [fmt(vals.get(key)) for _, vals in columns]
        if intervals:
            lo, hi = intervals.get(key, (math.nan, math.nan))
            cells.append(f"[{fmt(lo)}, {fmt(hi)}]")
        if len(columns) == 2:
            cells.append(_change(columns[0][1].get(key), columns[1][1].get(key), metric))
        hint = " ↓" if metric.lower_is_better else " ↑"
        t.add_row(metric.display + hint, *cells)
    return t


def _change(a: float | None, b: float | None, metric: Any) -> str:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return "-"
    d = b - a
    good = (d < 0) == metric.lower_is_better
    color = "green" if good and abs(d) > 1e-12 else ("red" if abs(d) > 1e-12 else "")
    txt = f"{d:+.4f}"
    return f"[{color}]{txt}[/]" if color else txt


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
            f"[{fmt(r.get('lower'), 3)}, {fmt(r.get('upper'), 3)}{']' if last else ')'}",
            str(r.get("count")),
            fmt(r.get("confidence")),
            fmt(r.get("accuracy")),
            fmt(r.get("gap"), 4),
            f"[{color}]{scen}[/]" if color else scen,
        )
    return t


def selection_table(cal: Any) -> Any:
    """A rich Table of an :class:`~calibkit.calibrators.AutoCalibrator`'s candidates, best first:
    the cross-validated score (mean and standard deviation over folds) and the winner."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(
        title=f"{cal.cv}-fold cross-validated {str(cal.scoring).upper()} (lower is better)",
        title_justify="left",
        header_style="bold",
    )
    t.add_column("Candidate")
    t.add_column("Mean", justify="right")
    t.add_column("Std", justify="right")
    t.add_column("")
    for r in cal.summary_rows():
        name = escape(str(r["name"]))
        if r["error"] is not None:
            t.add_row(name, "-", "-", f"[red]failed: {escape(str(r['error']))}[/]")
        else:
            mark = "[bold green]selected[/]" if r["selected"] else ""
            t.add_row(
                f"[bold]{name}[/]" if r["selected"] else name, fmt(r["mean"]), fmt(r["std"]), mark
            )
    return t
