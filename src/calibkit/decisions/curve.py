"""The risk curve: accepted items, errors, p-values and bounds along a threshold grid."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.decisions.risk import PVALUE_METHODS, clopper_pearson_upper, pvalue
from calibkit.decisions.selection import _check_grid, accepted_counts, grid_cells

__all__ = ["RiskCurve", "risk_curve"]


@dataclass(frozen=True)
class RiskCurve:
    """Calibration statistics along the threshold grid (one curve; per class: one per class).

    Attributes
    ----------
    grid : (J,) thresholds, decreasing.
    n_acc, n_err : (J,) accepted items and errors among them.
    n_total : calibration items (of that class, per class).
    pvalues : (J,) LTT p-values (NaN for ``rule="crc"``).
    delta : level of :attr:`upper`.
    upper : (J,) one-sided ``1 - delta`` Clopper-Pearson upper bound on the accepted error rate
        (computed on first use).
    """

    grid: NDArray[np.float64]
    n_acc: NDArray[np.int64]
    n_err: NDArray[np.int64]
    n_total: int
    pvalues: NDArray[np.float64]
    delta: float

    @cached_property
    def upper(self) -> NDArray[np.float64]:
        """(J,) one-sided ``1 - delta`` Clopper-Pearson bound on the accepted error rate."""
        return clopper_pearson_upper(self.n_err, self.n_acc, self.delta)

    @property
    def coverage(self) -> NDArray[np.float64]:
        """(J,) share of items accepted."""
        return self.n_acc / max(self.n_total, 1)

    @property
    def error(self) -> NDArray[np.float64]:
        """(J,) error rate among accepted items (NaN where none is accepted)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_acc > 0, self.n_err / np.maximum(self.n_acc, 1), np.nan)

    @property
    def joint_error(self) -> NDArray[np.float64]:
        """(J,) share of all items that are accepted and wrong."""
        return self.n_err / max(self.n_total, 1)


def risk_curve(
    confidence: ArrayLike,
    wrong: ArrayLike,
    grid: ArrayLike,
    *,
    epsilon: float = 0.05,
    delta: float = 0.1,
    method: str = "binomial",
) -> RiskCurve:
    """The :class:`RiskCurve` of one calibration set (p-values for ``epsilon``, bounds at ``delta``)."""
    g = _check_grid(grid)
    w = np.asarray(wrong, dtype=bool)
    n_acc, n_err = accepted_counts(grid_cells(confidence, g), w, g.size)
    pv = (
        pvalue(n_err, n_acc, epsilon, method)
        if method in PVALUE_METHODS
        else np.full(g.size, np.nan)
    )
    return RiskCurve(
        grid=g,
        n_acc=n_acc,
        n_err=n_err,
        n_total=int(w.size),
        pvalues=pv,
        delta=float(delta),
    )
