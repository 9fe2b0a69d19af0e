"""The signal screen of the label-efficiency study: does a labeler rank right above wrong?

A calibration study on a labeler whose scores carry no information about the label measures
noise. Before the study, every (task, labeler) pair is screened: the AUROC of the *class margin*
against the label, with a ``1 - alpha`` confidence interval, beside the labeler's accuracy and the
majority-class baseline. A task is kept for a labeler only where the interval's lower end is
above 0.5.

* binary task (classes ``(c0, c1)``): AUROC of the margin ``z_1 - z_0`` (logits) for
  ``y == 1``, with DeLong's interval (:func:`calibkit.metrics.binary_auroc_ci`);
* ``K > 2`` classes: macro one-vs-rest AUROC of the margins ``z_k - max_{j != k} z_j`` (classes
  present and absent in the sample), with a seeded percentile-bootstrap interval
  (:func:`calibkit.metrics.bootstrap_ci`).

The screen reads every item of the task (calibration pool and evaluation set alike): it selects
tasks on ranking, never on calibration error, so the ACE measured later is not what was selected
on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit.scores import Scores

__all__ = ["class_margins", "margin_auroc", "render_screen", "screen_labeler", "screen_task"]

#: a class whose answer tokens the backend never produced has logit -inf; floored as in the study
_LOGIT_FLOOR = -1e4


def class_margins(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(n, K)`` margins ``z_k - max_{j != k} z_j`` of logits ``(n, K)``, ``K >= 2``."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must be (n, K) with K >= 2; got shape {z.shape}")
    out = np.empty_like(z)
    for k in range(z.shape[1]):
        out[:, k] = z[:, k] - np.delete(z, k, axis=1).max(axis=1)
    return out


def _macro_ovr(margins: NDArray[np.float64], labels: NDArray[np.int64]) -> float:
    """Mean over classes with positives and negatives of the AUROC of ``margins[:, k]``."""
    from calibkit.metrics import binary_auroc

    vals = []
    for k in range(margins.shape[1]):
        t = labels == k
        if 0 < t.sum() < t.size:
            vals.append(binary_auroc(margins[:, k], t))
    return float(np.mean(vals)) if vals else float("nan")


def margin_auroc(
    logits: NDArray[np.float64],
    labels: NDArray[np.int64],
    *,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float, str]:
    """AUROC of the class margin for the label, and its ``1 - alpha`` interval.

    Parameters
    ----------
    logits : (n, K) class logits (not probabilities; the margin is a logit difference)
    labels : (n,) int class indices
    alpha : 1 - coverage of the interval
    n_boot, seed : bootstrap resamples and seed (``K > 2`` only)

    Returns
    -------
    (auroc, low, high, method) with method ``"DeLong"`` (binary) or ``"bootstrap"`` (K > 2);
    ``low``/``high`` are ``nan`` where the interval is undefined (fewer than 2 items of a class).
    """
    from calibkit.metrics import binary_auroc_ci, bootstrap_ci

    z = np.maximum(np.asarray(logits, dtype=np.float64), _LOGIT_FLOOR)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"logits {z.shape} and labels {y.shape} must be (n, K) and (n,)")
    if np.isnan(z).any():
        raise ValueError("logits contain NaN")
    m = class_margins(z)
    if z.shape[1] == 2:
        ci = binary_auroc_ci(m[:, 1], y == 1, alpha=alpha)
        return ci.estimate, ci.low, ci.high, "DeLong"
    b = bootstrap_ci(_macro_ovr, m, y, n_boot=int(n_boot), alpha=alpha, seed=seed)
    return b.estimate, b.low, b.high, "bootstrap"


def screen_task(
    name: str, scores: Scores, *, alpha: float = 0.05, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """One row of the screen: n, AUROC of the margin with its interval, accuracy, the
    majority-class baseline and ``kept`` (the interval's lower end > 0.5)."""
    y = scores.require_labels()
    if len(y) == 0:
        raise ValueError(f"task {name!r}: no items to screen")
    z = np.asarray(scores.logits, dtype=np.float64)
    if np.isnan(z).any():
        raise ValueError(f"task {name!r}: logits contain NaN")
    est, low, high, method = margin_auroc(z, y, alpha=alpha, n_boot=n_boot, seed=seed)
    acc = float(np.mean(np.argmax(z, axis=1) == y))
    majority = float(np.bincount(y, minlength=z.shape[1]).max() / y.size)
    kept = bool(np.isfinite(low) and low > 0.5)
    if kept:
        reason = ""
    elif not np.isfinite(low):
        reason = "interval undefined"
    elif high < 0.5:
        reason = "inverted: CI below 0.5"
    else:
        reason = "CI includes 0.5"
    return dict(
        task=name,
        n=int(y.size),
        n_classes=int(z.shape[1]),
        auroc=est,
        low=low,
        high=high,
        ci=method,
        accuracy=acc,
        majority=majority,
        kept=kept,
        reason=reason,
    )


def screen_labeler(
    scores: Mapping[str, Scores], *, alpha: float = 0.05, n_boot: int = 1000, seed: int = 0
) -> Any:
    """The screen of one labeler: a DataFrame with one :func:`screen_task` row per task."""
    import pandas as pd

    rows = [screen_task(n, s, alpha=alpha, n_boot=n_boot, seed=seed) for n, s in scores.items()]
    return pd.DataFrame(rows)


def _f(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.2f}"


def render_screen(screen: Any, *, alpha: float = 0.05) -> str:
    """Markdown table of a screen (columns of :func:`screen_task` plus ``labeler``), one row per
    (labeler, task), and per labeler the tasks kept and dropped."""
    cov = round(100 * (1 - alpha))
    lines = [
        f"| labeler | task | n | AUROC of the margin [{cov}% CI] | accuracy | majority | kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in screen.iterrows():
        mark = "yes" if r.kept else f"no ({r.reason})"
        lines.append(
            f"| {r.labeler} | {r.task} | {int(r.n)} | {_f(r.auroc)} [{_f(r.low)}, {_f(r.high)}]"
            f" ({r.ci}) | {r.accuracy:.2f} | {r.majority:.2f} | {mark} |"
        )
    lines.append("")
    for lab, g in screen.groupby("labeler", sort=False):
        kept = list(g.task[g.kept])
        dropped = list(g.task[~g.kept])
        lines.append(
            f"- **{lab}**: {len(kept)}/{len(g)} kept"
            + (f"; dropped: {', '.join(dropped)}" if dropped else "")
        )
    return "\n".join(lines) + "\n"
