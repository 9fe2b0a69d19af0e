"""Figures for decisions with guarantees (matplotlib, imported only when drawing).

* :func:`risk_coverage_plot`: error rate among accepted items against the share accepted, over
  the threshold grid, with the one-sided ``1 - delta`` Clopper-Pearson bound, the target
  ``epsilon`` and the certified point (optionally the test-set curve beside it).
* :func:`set_size_histogram`: distribution of conformal prediction-set sizes, with the coverage.

Save with :func:`calibkit.plots.save_figure`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from calibkit.plots.reliability import _pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["risk_coverage_plot", "set_size_histogram"]


def risk_coverage_plot(
    policy: Any,
    *,
    test_confidence: ArrayLike | None = None,
    test_wrong: ArrayLike | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Figure:
    """Error among accepted items vs coverage for a global :class:`~calibkit.decisions.AutoLabelPolicy`.

    Parameters
    ----------
    policy : AutoLabelPolicy returned by :func:`~calibkit.decisions.certify_threshold` (it carries
        the calibration risk curve; a policy loaded from JSON does not).
    test_confidence, test_wrong : (m,) top-label probabilities and mistakes of held-out items,
        to draw their curve and the certified threshold's held-out point.
    """
    plt = _pyplot()
    curves = getattr(policy, "curves", ())
    if not curves:
        raise ValueError(
            "policy has no risk curve (policies loaded from JSON do not keep it); plot the "
            "policy returned by certify_threshold"
        )
    if getattr(policy, "by_class", False):
        raise ValueError("risk_coverage_plot draws a global policy; plot one class at a time")
    c = curves[0]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.2))
    else:
        fig = ax.figure
    has = c.n_acc > 0
    cov = c.coverage[has]
    ax.plot(cov, c.error[has], color="#3a6fb0", lw=1.6, label="calibration error among accepted")
    if policy.rule == "ltt":
        ax.plot(
            cov,
            c.upper[has],
            color="#3a6fb0",
            lw=1.0,
            ls="--",
            label=f"{1 - policy.delta:.0%} upper bound (Clopper-Pearson)",
        )
    else:
        ax.plot(cov, c.joint_error[has], color="#9467bd", lw=1.2, label="accepted and wrong / all")
    eps = policy.max_error[0]
    ax.axhline(eps, color="#d62728", lw=1.0, ls=":", label=f"target {eps:g}")
    t = policy.thresholds[0]
    j = int(np.flatnonzero(c.grid == t)[0]) if np.any(c.grid == t) else None
    if j is not None:
        ax.scatter(
            [c.coverage[j]],
            [c.error[j]],
            s=60,
            color="#d62728",
            zorder=5,
            label=f"certified: threshold {t:.4g}, coverage {c.coverage[j]:.1%}",
        )
    if test_confidence is not None and test_wrong is not None:
        from calibkit.decisions.threshold import accepted_counts, grid_cells

        tc = np.asarray(test_confidence, dtype=np.float64)
        tw = np.asarray(test_wrong, dtype=bool)
        na, ne = accepted_counts(grid_cells(tc, c.grid), tw, c.grid.size)
        ok = na > 0
        ax.plot(na[ok] / tc.size, ne[ok] / na[ok], color="#7f7f7f", lw=1.2, label="held-out data")
        if j is not None and na[j] > 0:
            ax.scatter(
                [na[j] / tc.size], [ne[j] / na[j]], s=40, marker="s", color="#7f7f7f", zorder=5
            )
    ax.set_xlabel("Coverage (share of items auto-labeled)")
    ax.set_ylabel("Error rate among auto-labeled items")
    ax.set_xlim(0, 1)
    top = max(3 * eps, float(np.nanmax(c.error[has][cov >= 0.05])) if np.any(cov >= 0.05) else eps)
    ax.set_ylim(0, min(1.0, top * 1.05))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or policy.guarantee().split(" (")[0], fontsize=9)
    return fig


def set_size_histogram(
    sets: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    alpha: float | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Figure:
    """Histogram of prediction-set sizes of ``(n, K)`` boolean sets (with coverage if labelled)."""
    plt = _pyplot()
    m = np.asarray(sets, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"sets must be (n, K) booleans; got shape {m.shape}")
    size = m.sum(axis=1)
    k = m.shape[1]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 3.8))
    else:
        fig = ax.figure
    counts = np.bincount(size, minlength=k + 1)
    ax.bar(np.arange(k + 1), counts / max(size.size, 1), color="#3a6fb0", width=0.8)
    ax.set_xlabel("Prediction-set size")
    ax.set_ylabel("Share of items")
    ax.set_xlim(-0.6, k + 0.6 if k <= 20 else max(size.max(), 1) + 0.6)
    text = f"mean size {size.mean():.2f}"
    if labels is not None:
        from calibkit.decisions.conformal import evaluate_sets

        rep = evaluate_sets(m, labels)
        text += f", coverage {rep.coverage:.3f}"
        if alpha is not None:
            text += f" (target {1 - alpha:.2f})"
    ax.set_title(title or text, fontsize=9)
    if title:
        ax.text(0.98, 0.95, text, transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig
