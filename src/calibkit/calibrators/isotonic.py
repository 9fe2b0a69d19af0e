"""Isotonic-regression calibration (Zadrozny & Elkan, 2002)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from calibkit.calibrators._ovr import binary_columns, binary_targets, combine
from calibkit.calibrators.base import Calibrator, FieldCheck

__all__ = ["IsotonicCalibrator"]


class IsotonicCalibrator(Calibrator):
    """Isotonic calibration: a non-decreasing, piecewise-linear map of each class probability.

    Binary input (``(n,)`` = ``P(y=1)`` or ``(n, 2)``): one map fitted by scikit-learn's
    ``IsotonicRegression`` on ``P(y=1)`` vs ``y``. ``(n, K > 2)``: one map per class on
    ``p_k`` vs ``1[y == k]``, outputs renormalised (all-zero rows become uniform), as
    scikit-learn's ``CalibratedClassifierCV(method="isotonic")``. Between fitted thresholds
    the map interpolates linearly; outside them it is clipped to the end values.

    Input: probabilities (exact 0 and 1 are fine). Ties in the input are pooled.

    Attributes
    ----------
    x_thresholds_, y_thresholds_ : list of m (t_j,) float arrays
        Knots of each map (``m = 1`` for a binary problem, ``K`` otherwise), as scikit-learn's
        ``X_thresholds_`` / ``y_thresholds_``.
    """

    input_kind = "probs"
    _fitted_fields: ClassVar[tuple[str, ...]] = ("x_thresholds_", "y_thresholds_")
    x_thresholds_: list[NDArray[np.float64]]
    y_thresholds_: list[NDArray[np.float64]]

    def _validate_fitted(self, check: FieldCheck) -> None:
        m = self._n_maps()
        xs_all = check.arrays("x_thresholds_", self.x_thresholds_, m)
        ys_all = check.arrays("y_thresholds_", self.y_thresholds_, m)
        xs, ys = [], []
        for j in range(m):
            x = check.array(
                f"x_thresholds_[{j}]", xs_all[j], (-1,), low=0.0, high=1.0, increasing=True
            )
            y = check.array(
                f"y_thresholds_[{j}]", ys_all[j], (x.size,), low=0.0, high=1.0, increasing=True
            )
            xs.append(x)
            ys.append(y)
        self.x_thresholds_ = xs
        self.y_thresholds_ = ys

    def _fit(
        self, X: NDArray[np.float64], y: NDArray[np.int64], w: NDArray[np.float64] | None
    ) -> None:
        from sklearn.isotonic import IsotonicRegression

        xs, ys = [], []
        for p, t in zip(
            binary_columns(X, "probs"), binary_targets(y, self.n_classes_), strict=True
        ):
            iso = IsotonicRegression(out_of_bounds="clip").fit(p, t, sample_weight=w)
            xs.append(np.asarray(iso.X_thresholds_, dtype=np.float64))
            ys.append(np.asarray(iso.y_thresholds_, dtype=np.float64))
        self.x_thresholds_ = xs
        self.y_thresholds_ = ys

    def _predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        cols = [
            np.interp(p, xt, yt)
            for p, xt, yt in zip(
                binary_columns(X, "probs"), self.x_thresholds_, self.y_thresholds_, strict=True
            )
        ]
        return combine(cols, self.n_classes_)
