"""Why no threshold could be certified, and how many labelled items would certify one."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from calibkit.decisions.curve import RiskCurve
from calibkit.decisions.risk import labels_needed

__all__ = ["CertificationError"]


class CertificationError(ValueError):
    """No threshold can be certified; ``needed`` estimates the labelled items that would do it."""

    def __init__(self, message: str, needed: float | None = None) -> None:
        super().__init__(message)
        self.needed = needed


def _needed_for_curve(
    c: RiskCurve, eps: float, delta: float, n_total_all: int
) -> tuple[float | None, int, float, float]:
    """(labelled items needed, grid index, its error rate, its coverage) at the most promising
    threshold: the one that minimises ``labels_needed(rate) / coverage``.

    Thresholds with at least 20 accepted items are preferred (a rate from a handful of items is
    noise); when none of them has a rate below ``eps``, any non-empty threshold is used. ``None``
    when every non-empty threshold errs at a rate ``>= eps`` (the index is then the lowest rate).
    """
    nonempty = c.n_acc > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(nonempty, c.n_err / np.maximum(c.n_acc, 1), 1.0)
    cov = c.n_acc / max(n_total_all, 1)
    supported = c.n_acc >= min(20, max(int(c.n_acc.max()), 1))
    # with enough data the sequence starts where eps / 2 would certify (default_min_accepted)
    m_half = float(labels_needed(eps / 2.0, eps, delta))
    for pool in (supported & nonempty, nonempty):
        if not np.any(pool & (rate < eps)):
            continue
        cand = pool & (rate < eps)
        uniq, inv = np.unique(rate[cand], return_inverse=True)
        need = np.full(rate.shape, np.inf)
        need[cand] = np.maximum(labels_needed(uniq, eps, delta), m_half)[inv]
        with np.errstate(divide="ignore", invalid="ignore"):
            total = np.where(pool & (cov > 0), need / np.maximum(cov, 1e-300), np.inf)
        j = int(np.argmin(total))
        if np.isfinite(total[j]):
            return float(math.ceil(total[j])), j, float(rate[j]), float(cov[j])
    j = int(np.argmin(np.where(nonempty, rate, np.inf))) if nonempty.any() else 0
    return None, j, float(rate[j]), float(cov[j])


def _refusal(
    curves: list[RiskCurve],
    eps: NDArray[np.float64],
    delta: float,
    rule: str,
    n: int,
    names: Sequence[str] | None,
) -> tuple[str, float | None]:
    if rule == "crc":
        need = math.ceil(1.0 / float(eps[0]) - 1.0)
        msg = (
            f"no threshold satisfies conformal risk control at max_error={float(eps[0]):g} with "
            f"{n} calibration items: (errors + 1) / (n + 1) exceeds it even at the highest "
            f"threshold; at least {need} items are needed (more if the most confident items err)"
        )
        return msg, float(need)
    best: tuple[float, str] | None = None
    parts = []
    for i, c in enumerate(curves):
        e_i = float(eps[i])
        needed, j, r, q = _needed_for_curve(c, e_i, delta, n)
        who = "" if names is None else f" for class {names[i]!r}"
        if needed is None:
            parts.append(
                f"at every threshold{who} the calibration error rate among accepted items is "
                f">= {e_i:g} (lowest: {int(c.n_err[j])}/{int(c.n_acc[j])} at confidence >= "
                f"{c.grid[j]:.6g})"
            )
            continue
        parts.append(
            f"best threshold{who} {c.grid[j]:.6g} accepts {int(c.n_acc[j])} items with "
            f"{int(c.n_err[j])} errors (rate {r:.4g}, coverage {q:.3g})"
        )
        if best is None or needed < best[0]:
            best = (needed, who)
    head = (
        f"no threshold certifies error <= {', '.join(f'{e:g}' for e in np.unique(eps))} among "
        f"accepted items with probability {1 - delta:.4g} from {n} calibration items: "
        + "; ".join(parts)
    )
    if best is None:
        return (
            head + ". No amount of data certifies this; raise --max-error or improve the model",
            None,
        )
    return (
        head + f". About {int(best[0])} labelled calibration items (at these error rates and "
        f"coverages) would be needed{best[1]}",
        best[0],
    )
