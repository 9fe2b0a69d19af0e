"""Reliability diagrams in the style of Guo et al. (2017) and the calibkit papers.

Every figure is built from :func:`calibkit.metrics.reliability_table`, and the ECE printed on it is
:func:`calibkit.metrics.ece` (cw-ECE: :func:`calibkit.metrics.classwise_ece`) on the same bins, so
a figure never disagrees with the metrics table.

* ``(n, K)`` probabilities: x = top-label confidence, y = accuracy (confidence calibration).
* ``(n,)`` probabilities: x = predicted ``P(y=1)``, y = fraction of positives (the reliability of
  the positive class, as in paper 000's low/high-probability scenarios).

matplotlib is imported inside the functions (``pip install 'calibkit[plot]'``); with no display
the non-interactive Agg backend is selected.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._validation import check_scores_input
from calibkit.io import atomic_write
from calibkit.scores import Scores

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FIGURE_FORMATS",
    "classwise_reliability_diagram",
    "compare_reliability",
    "reliability_diagram",
    "save_figure",
]

#: file suffixes :func:`save_figure` writes
FIGURE_FORMATS = (".png", ".svg", ".pdf")

# colours close to the papers' figures (Guo et al. blue bars, red hatched gap)
_BAR = "#3a6fb0"
_GAP = "#d62728"
_HIST = "#7f7f7f"

#: view -> (x label, y label / bar legend, histogram accuracy line, histogram confidence line)
_VIEW_LABELS = {
    "top_label": ("Confidence", "Accuracy", "Accuracy", "Avg. confidence"),
    "binary": ("Predicted P(y = 1)", "Fraction of positives", "Base rate", "Mean P(y = 1)"),
    "class": ("Predicted P(y = k)", "Frequency of class k", "Class frequency", "Mean P(y = k)"),
}


def _pyplot() -> Any:
    """``matplotlib.pyplot``, selecting Agg first when there is no display to draw on."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - matplotlib is installed in dev
        raise ImportError("plots need matplotlib: pip install 'calibkit[plot]'") from exc
    headless = (
        sys.platform.startswith("linux")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
    )
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND") and headless:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------- bin statistics
@dataclass(frozen=True)
class _Bins:
    """Per-bin arrays of one reliability table (M bins)."""

    edges: NDArray[np.float64]  # (M + 1,)
    count: NDArray[np.int64]  # (M,)
    confidence: NDArray[np.float64]  # (M,) mean confidence (NaN when empty)
    accuracy: NDArray[np.float64]  # (M,) accuracy / fraction positive (NaN when empty)
    ece: float
    n: int
    mean_confidence: float
    mean_accuracy: float


def _bins(
    probs: NDArray[np.float64], labels: NDArray[np.int64], n_bins: int, binning: str
) -> _Bins:
    from calibkit.metrics import ece, reliability_table

    tab = reliability_table(probs, labels, n_bins=n_bins, binning=binning)
    count = np.asarray(tab.count, dtype=np.int64)
    conf = np.asarray(tab.confidence, dtype=np.float64)
    acc = np.asarray(tab.accuracy, dtype=np.float64)
    empty = count == 0
    conf = np.where(empty, np.nan, conf)
    acc = np.where(empty, np.nan, acc)
    n = int(count.sum())
    w = count / max(n, 1)
    return _Bins(
        edges=np.asarray(tab.edges, dtype=np.float64),
        count=count,
        confidence=conf,
        accuracy=acc,
        ece=float(ece(probs, labels, n_bins=n_bins, binning=binning)),
        n=n,
        mean_confidence=float(np.nansum(w * conf)),
        mean_accuracy=float(np.nansum(w * acc)),
    )


# ---------------------------------------------------------------------- drawing
def _draw(
    ax: Axes,
    hist_ax: Axes | None,
    b: _Bins,
    *,
    view: str,
    twin_histogram: bool,
    color_by_count: bool,
    legend: bool = True,
) -> None:
    left = b.edges[:-1]
    width = np.diff(b.edges)
    full = b.count > 0
    if color_by_count and full.any():
        import matplotlib as mpl

        frac = b.count / b.count.max()
        colors: Any = [mpl.colormaps["YlOrBr"](0.25 + 0.7 * f) for f in frac[full]]
    else:
        colors = _BAR
    x_name, y_name, _, _ = _VIEW_LABELS[view]
    ax.bar(
        left[full],
        b.accuracy[full],
        width=width[full],
        align="edge",
        color=colors,
        edgecolor="black",
        linewidth=0.6,
        label=y_name,
        zorder=2,
    )
    gap = b.confidence[full] - b.accuracy[full]
    ax.bar(
        left[full],
        gap,
        bottom=b.accuracy[full],
        width=width[full],
        align="edge",
        color=_GAP,
        alpha=0.25,
        edgecolor=_GAP,
        hatch="//",
        linewidth=0.6,
        label="Gap",
        zorder=3,
    )
    ax.plot(
        [0, 1],
        [0, 1],
        linestyle="--",
        color="#404040",
        linewidth=1.0,
        label="Perfect calibration",
        zorder=4,
    )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel(y_name)
    ax.set_aspect("auto")
    ax.grid(True, linestyle=":", linewidth=0.5, alpha=0.7, zorder=0)
    ax.set_axisbelow(True)
    if legend:
        ax.legend(loc="upper left", fontsize="small", framealpha=0.9)
    if hist_ax is None:
        ax.set_xlabel(x_name)
        if twin_histogram:
            _draw_twin_histogram(ax, b)
        return
    _draw_histogram(hist_ax, b, view=view, legend=legend)
    ax.tick_params(labelbottom=False)


def _draw_twin_histogram(ax: Axes, b: _Bins) -> None:
    """Share of samples per bin as an outline on a twin axis (readable over the bars)."""
    tw = ax.twinx()
    frac = b.count / max(b.n, 1)
    tw.stairs(frac, b.edges, color="#303030", linewidth=1.2, label="% samples")
    tw.stairs(frac, b.edges, fill=True, color=_HIST, alpha=0.2)
    top = float(frac.max()) if frac.size else 1.0
    tw.set_ylim(0.0, 4.0 * top if top > 0 else 1.0)  # histogram fills the lower quarter
    tw.set_ylabel("% samples", color="#303030")
    tw.yaxis.set_major_formatter(_percent_formatter())
    tw.tick_params(axis="y", colors="#303030", labelsize="small")


def _draw_histogram(hist_ax: Axes, b: _Bins, *, view: str, legend: bool) -> None:
    """Share of samples per bin on its own axis, with the mean accuracy and confidence."""
    x_name, _, acc_label, conf_label = _VIEW_LABELS[view]
    left = b.edges[:-1]
    width = np.diff(b.edges)
    frac = b.count / max(b.n, 1)
    hist_ax.bar(
        left, frac, width=width, align="edge", color=_HIST, edgecolor="black", linewidth=0.4
    )
    hist_ax.axvline(b.mean_accuracy, color=_BAR, linestyle="--", linewidth=1.2, label=acc_label)
    hist_ax.axvline(b.mean_confidence, color=_GAP, linestyle=":", linewidth=1.5, label=conf_label)
    hist_ax.set_xlim(0.0, 1.0)
    hist_ax.set_xlabel(x_name)
    hist_ax.set_ylabel("% samples")
    hist_ax.yaxis.set_major_formatter(_percent_formatter())
    hist_ax.grid(True, linestyle=":", linewidth=0.5, alpha=0.7)
    hist_ax.set_axisbelow(True)
    if legend:
        hist_ax.legend(loc="upper left", fontsize="x-small", framealpha=0.9)


def _percent_formatter() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0, decimals=0)


def _ece_title(title: str | None, label: str, value: float) -> str:
    head = f"{label} = {value:.4f}"
    return f"{title}\n{head}" if title else head


def _grid(
    plt: Any, n_panels: int, show_histogram: bool, ncols: int, panel: tuple[float, float]
) -> tuple[Figure, list[tuple[Axes, Axes | None]]]:
    nrows = -(-n_panels // ncols)
    w, h = panel
    if show_histogram:
        fig = plt.figure(figsize=(w * ncols, (h + h / 3) * nrows), layout="constrained")
        gs = fig.add_gridspec(2 * nrows, ncols, height_ratios=[3, 1] * nrows)
    else:
        fig = plt.figure(figsize=(w * ncols, h * nrows), layout="constrained")
        gs = fig.add_gridspec(nrows, ncols)
    pairs: list[tuple[Axes, Axes | None]] = []
    for i in range(n_panels):
        r, c = divmod(i, ncols)
        if show_histogram:
            top = fig.add_subplot(gs[2 * r, c])
            bottom = fig.add_subplot(gs[2 * r + 1, c], sharex=top)
            pairs.append((top, bottom))
        else:
            pairs.append((fig.add_subplot(gs[r, c]), None))
    return fig, pairs


def _as_pair(
    value: Any, from_logits: bool, name: str
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    if isinstance(value, Scores):
        return value.probs, value.require_labels()
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(
            f"{name}: expected (probs, labels) or a labelled Scores; got {type(value).__name__}"
        )
    return check_scores_input(value[0], value[1], from_logits=from_logits)


def _check_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    return int(n_bins)


# ---------------------------------------------------------------------- public API
def reliability_diagram(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    from_logits: bool = False,
    ax: Axes | None = None,
    title: str | None = None,
    show_histogram: bool = True,
    binning: str = "uniform",
    color_by_count: bool = False,
) -> Figure:
    """Reliability diagram: accuracy bars, red hatched gap to the mean confidence, diagonal.

    Parameters
    ----------
    probs : (n, K) or (n,) array
        Probabilities (rows on the simplex, or ``P(y=1)``); logits with ``from_logits=True``.
    labels : (n,) int
        Class indices (``{0, 1}`` for 1-D input).
    n_bins : int
        Number of bins ``M``.
    ax : matplotlib Axes, optional
        Draw into this axes (the confidence histogram then becomes a faint twin-axis panel).
        Default: a new figure with the histogram in a panel below.
    title : str, optional
        First title line; the second is ``ECE = ...`` (:func:`calibkit.metrics.ece`, same bins).
    show_histogram : bool
        Draw the distribution of confidences (fraction of samples per bin).
    binning : {"uniform", "quantile"}
        Equal-width or equal-mass bins (bars then have unequal widths).
    color_by_count : bool
        Shade accuracy bars by bin population (darker = more samples), as in paper 002's figures.

    Returns
    -------
    matplotlib.figure.Figure
    """
    n_bins = _check_bins(n_bins)
    p, y = check_scores_input(probs, labels, from_logits=from_logits)
    b = _bins(p, y, n_bins, binning)
    plt = _pyplot()
    if ax is None:
        fig, [(top, bottom)] = _grid(plt, 1, show_histogram, 1, (5.0, 4.6))
    else:
        root = ax.get_figure(root=True)
        if root is None:
            raise ValueError("ax is not attached to a figure")
        fig, top, bottom = root, ax, None
    _draw(
        top,
        bottom,
        b,
        view="binary" if p.ndim == 1 else "top_label",
        twin_histogram=show_histogram and ax is not None,
        color_by_count=color_by_count,
    )
    top.set_title(_ece_title(title, "ECE", b.ece))
    return fig


def compare_reliability(
    results: Mapping[str, Any],
    n_bins: int = 15,
    *,
    from_logits: bool = False,
    title: str | None = None,
    show_histogram: bool = True,
    binning: str = "uniform",
    color_by_count: bool = False,
) -> Figure:
    """Reliability diagrams side by side (e.g. before / after calibration), one per entry.

    Parameters
    ----------
    results : mapping of name -> (probs, labels) or labelled :class:`~calibkit.Scores`
        Panels in mapping order; each panel title is the name and its ECE.
    n_bins, from_logits, show_histogram, binning, color_by_count
        As in :func:`reliability_diagram` (``from_logits`` applies to every tuple entry).
    title : str, optional
        Figure suptitle.
    """
    n_bins = _check_bins(n_bins)
    if not results:
        raise ValueError("results is empty: give at least one name -> (probs, labels)")
    pairs = [(str(k), _as_pair(v, from_logits, str(k))) for k, v in results.items()]
    plt = _pyplot()
    fig, axes = _grid(plt, len(pairs), show_histogram, len(pairs), (4.6, 4.4))
    for i, ((name, (p, y)), (top, bottom)) in enumerate(zip(pairs, axes, strict=True)):
        b = _bins(p, y, n_bins, binning)
        _draw(
            top,
            bottom,
            b,
            view="binary" if p.ndim == 1 else "top_label",
            twin_histogram=False,
            color_by_count=color_by_count,
            legend=i == 0,
        )
        top.set_title(_ece_title(name, "ECE", b.ece))
        if i > 0:
            top.set_ylabel("")
            if bottom is not None:
                bottom.set_ylabel("")
    if title:
        fig.suptitle(title)
    return fig


def classwise_reliability_diagram(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    from_logits: bool = False,
    classes: Sequence[str] | None = None,
    max_classes: int = 12,
    ncols: int | None = None,
    title: str | None = None,
    show_histogram: bool = True,
    binning: str = "uniform",
    color_by_count: bool = False,
) -> Figure:
    """One reliability panel per class ``k``: predicted ``p_k`` against the frequency of ``y = k``.

    The suptitle gives cw-ECE (:func:`calibkit.metrics.classwise_ece`, over all classes) and
    each panel its one-vs-rest ECE (:func:`calibkit.metrics.ece` on ``(p[:, k], y == k)``).

    Parameters
    ----------
    probs : (n, K) array
        Probabilities (logits with ``from_logits=True``); 1-D ``P(y=1)`` is read as
        ``[1 - p, p]``.
    labels : (n,) int
        Class indices.
    classes : sequence of K str, optional
        Panel names (default ``"class 0"``, ...).
    max_classes : int
        Draw at most this many panels: the most frequent classes when ``K`` is larger.
    ncols : int, optional
        Panels per row (default ``min(K, 4)``).
    """
    from calibkit.metrics import classwise_ece

    n_bins = _check_bins(n_bins)
    p, y = check_scores_input(probs, labels, from_logits=from_logits)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    k = p.shape[1]
    names = [f"class {j}" for j in range(k)] if classes is None else [str(c) for c in classes]
    if len(names) != k:
        raise ValueError(f"classes has {len(names)} names but probs has {k} columns")
    if max_classes < 1:
        raise ValueError(f"max_classes must be >= 1; got {max_classes}")
    shown = list(range(k))
    if k > max_classes:
        support = np.bincount(y, minlength=k)
        shown = sorted(np.argsort(-support, kind="stable")[:max_classes].tolist())
    cw = float(classwise_ece(p, y, n_bins=n_bins, binning=binning))
    cols = ncols or min(len(shown), 4)
    plt = _pyplot()
    fig, axes = _grid(plt, len(shown), show_histogram, cols, (3.6, 3.4))
    for i, (j, (top, bottom)) in enumerate(zip(shown, axes, strict=True)):
        b = _bins(p[:, j], (y == j).astype(np.int64), n_bins, binning)
        _draw(
            top,
            bottom,
            b,
            view="class",
            twin_histogram=False,
            color_by_count=color_by_count,
            legend=i == 0,
        )
        top.set_title(f"{names[j]}: ECE = {b.ece:.4f}", fontsize="medium")
        if i % cols:
            top.set_ylabel("")
            if bottom is not None:
                bottom.set_ylabel("")
    head = f"cw-ECE = {cw:.4f}"
    if len(shown) < k:
        head += f"  ({len(shown)} most frequent of {k} classes shown)"
    fig.suptitle(f"{title}\n{head}" if title else head)
    return fig


def save_figure(
    fig: Figure, path: str | os.PathLike[str], *, dpi: int = 150, close: bool = False
) -> Path:
    """Save ``fig`` atomically as PNG, SVG or PDF (by suffix); returns the path.

    ``close=True`` also closes the figure (free its memory when making many in a loop).
    """
    p = Path(path)
    fmt = p.suffix.lower()
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"cannot save a figure as {p.name!r}: use a suffix in {FIGURE_FORMATS}")
    # no timestamps, so the same figure gives the same SVG/PDF bytes
    meta: dict[str, Any] = {}
    if fmt == ".svg":
        meta["Date"] = None
    elif fmt == ".pdf":
        meta["CreationDate"] = None
    with atomic_write(p) as tmp:
        fig.savefig(tmp, format=fmt[1:], dpi=dpi, bbox_inches="tight", metadata=meta)
    if close:
        _pyplot().close(fig)
    return p
