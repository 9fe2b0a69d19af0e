"""Beta calibration (Kull, Silva Filho & Flach, 2017)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from calibkit._math import sigmoid
from calibkit.calibrators._optim import fit_logistic
from calibkit.calibrators._ovr import binary_columns, binary_targets, combine
from calibkit.calibrators.base import Calibrator, FieldCheck

__all__ = ["BetaCalibration"]

_EPS = 1e-12


def _beta_features(p: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(n, 2)`` = ``[ln p, -ln(1 - p)]`` with ``p`` clipped to ``[1e-12, 1 - 1e-12]``."""
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return np.stack([np.log(q), -np.log1p(-q)], axis=1)


class BetaCalibration(Calibrator):
    """Beta calibration: ``P(y=1) = sigmoid(a ln p - b ln(1 - p) + c)`` with ``a, b >= 0``.

    The three-parameter ("abm") family of Kull et al. (2017); it contains the identity
    (``a = b = 1, c = 0``, the starting point), is monotone, and can fix both over- and
    under-confidence and asymmetric distortions that the sigmoid cannot. Fitted as the
    *constrained* maximum likelihood (L-BFGS-B with bounds ``a, b >= 0``), which the original
    ``betacal`` package approximates by dropping a negative coefficient and refitting.
    ``(n, K > 2)``: one map per class on ``p_k`` vs ``1[y == k]``, renormalised.

    Input: probabilities (clipped to ``[1e-12, 1 - 1e-12]``; exact 0 and 1 are fine).

    Attributes
    ----------
    a_, b_, c_ : (m,) float
        Parameters of each map (``m = 1`` for a binary problem, ``K`` otherwise).
    """

    input_kind = "probs"
    _fitted_fields: ClassVar[tuple[str, ...]] = ("a_", "b_", "c_")
    a_: NDArray[np.float64]
    b_: NDArray[np.float64]
    c_: NDArray[np.float64]

    def _validate_fitted(self, check: FieldCheck) -> None:
        m = self._n_maps()
        self.a_ = check.array("a_", self.a_, (m,), low=0.0)
        self.b_ = check.array("b_", self.b_, (m,), low=0.0)
        self.c_ = check.array("c_", self.c_, (m,))

    def _fit(
        self, X: NDArray[np.float64], y: NDArray[np.int64], w: NDArray[np.float64] | None
    ) -> None:
        a_, b_, c_ = [], [], []
        for p, t in zip(
            binary_columns(X, "probs"), binary_targets(y, self.n_classes_), strict=True
        ):
            coef, c = fit_logistic(
                _beta_features(p), t, w, np.ones(2), 0.0, nonneg=True, what="BetaCalibration"
            )
            a_.append(coef[0])
            b_.append(coef[1])
            c_.append(c)
        self.a_ = np.asarray(a_)
        self.b_ = np.asarray(b_)
        self.c_ = np.asarray(c_)

    def _predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        cols = [
            sigmoid(_beta_features(p) @ np.array([a, b]) + c)
            for p, a, b, c in zip(
                binary_columns(X, "probs"), self.a_, self.b_, self.c_, strict=True
            )
        ]
        return combine(cols, self.n_classes_)
