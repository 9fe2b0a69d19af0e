"""Risk-coverage curves: the error rate of the accepted items as the confidence threshold falls.

Every curve is :func:`calibkit.metrics.ranking.risk_coverage_curve` and the AURC in the legend is
:func:`calibkit.metrics.ranking.aurc` on the same data, so the figure never disagrees with the
metrics. The oracle curve (every right answer accepted before any wrong one) of the first entry
is drawn dashed for reference; a random ranking would be a flat line at the overall error rate.

matplotlib is imported inside the function (``pip install 'calibkit[plot]'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from calibkit.plots.reliability import _as_pair, _pyplot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["risk_coverage_plot"]

_COLORS = ("#3a6fb0", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def risk_coverage_plot(
    results: Mapping[str, Any],
    *,
    ax: Axes | None = None,
    title: str | None = None,
    oracle: bool = True,
) -> Figure:
    """Risk-coverage curves of one or more scorings of the same items.

    Parameters
    ----------
    results : mapping of name -> labelled :class:`~calibkit.Scores` or ``(probs, labels)``
        ``probs`` ``(n, K)`` probabilities or ``(n,)`` ``P(y=1)`` (top-label view).
    ax : matplotlib Axes, optional
        Draw into it; default a new 6.4 x 4.2 inch figure.
    title : str, optional
    oracle : bool
        Also draw the oracle curve of the first entry (dashed) and its error rate (dotted).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from calibkit.metrics.ranking import aurc, risk_coverage_curve

    if not results:
        raise ValueError("risk_coverage_plot needs at least one entry")
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    else:
        root = ax.get_figure(root=True)
        if root is None:
            raise ValueError("ax is not attached to a figure")
        fig = root
    first = True
    for i, (name, value) in enumerate(results.items()):
        p, y = _as_pair(value, False, str(name))
        rc = risk_coverage_curve(p, y)
        a = aurc(p, y)
        x = np.r_[0.0, rc.coverage]
        r = np.r_[rc.risk[0], rc.risk]
        ax.step(
            x,
            r,
            where="post",
            color=_COLORS[i % len(_COLORS)],
            lw=max(1.0, 2.6 - i),
            label=f"{name} (AURC {a:.4f})",
            zorder=3 + i,
        )
        if oracle and first:
            err = float(rc.risk[-1])
            cov = np.linspace(0.0, 1.0, 201)[1:]
            ax.plot(
                cov,
                np.maximum(0.0, 1.0 - (1.0 - err) / cov),
                "--",
                color="#404040",
                lw=1.0,
                label="oracle",
            )
            ax.axhline(err, linestyle=":", color="#7f7f7f", lw=1.0, label="random (error rate)")
        first = False
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel("Coverage (fraction of items accepted)")
    ax.set_ylabel("Risk (error rate of accepted items)")
    ax.grid(True, linestyle=":", linewidth=0.5, alpha=0.7)
    ax.legend(loc="upper left", fontsize="small", framealpha=0.9)
    if title:
        ax.set_title(title)
    return fig
