"""Platt scaling (Platt, 1999): ``P(y=1) = sigmoid(a z + b)`` on a binary logit/score ``z``."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._math import sigmoid
from calibkit.calibrators._optim import fit_logistic
from calibkit.calibrators._ovr import binary_columns, binary_targets, combine
from calibkit.calibrators.base import Calibrator, FieldCheck

__all__ = ["PlattScaling"]


class PlattScaling(Calibrator):
    """Platt (sigmoid) scaling; one-vs-rest with renormalisation for ``K > 2``.

    Binary input (``(n,)`` logits, or ``(n, 2)`` logits reduced to ``z1 - z0``): one logistic
    map ``P(y=1) = sigmoid(a z + b)``. ``(n, K > 2)``: one map per column ``k`` fitted on
    ``1[y == k]``, outputs renormalised to sum to 1 (as scikit-learn's sigmoid method).
    Fitted by L-BFGS-B with analytic gradients (maximum likelihood, no regularisation).

    Parameters
    ----------
    prior_correction : bool
        Platt's Bayesian targets: fit against ``(N+ + 1)/(N+ + 2)`` for positives and
        ``1/(N- + 2)`` for negatives instead of 1 and 0 (``N`` = (weighted) class counts). This
        is what scikit-learn's ``CalibratedClassifierCV(method="sigmoid")`` always does, and it
        guards against probabilities of exactly 0/1 on small sets. Default ``False``: plain
        maximum likelihood (as netcal and most calibration papers).

    Input: logits (any real-valued scores, e.g. SVM decision values).

    Attributes
    ----------
    coef_ : (m,) float
        Slopes ``a`` (``m = 1`` for a binary problem, ``K`` otherwise).
    intercept_ : (m,) float
        Intercepts ``b``.
    """

    input_kind = "logits"
    _fitted_fields: ClassVar[tuple[str, ...]] = ("coef_", "intercept_")
    coef_: NDArray[np.float64]
    intercept_: NDArray[np.float64]

    def __init__(self, prior_correction: bool = False) -> None:
        self.prior_correction = prior_correction

    def _validate_params(self, check: FieldCheck) -> None:
        check.boolean("prior_correction", self.prior_correction)

    def _validate_fitted(self, check: FieldCheck) -> None:
        m = self._n_maps()
        self.coef_ = check.array("coef_", self.coef_, (m,))
        self.intercept_ = check.array("intercept_", self.intercept_, (m,))

    def _fit(
        self, X: NDArray[np.float64], y: NDArray[np.int64], w: NDArray[np.float64] | None
    ) -> None:
        coefs, intercepts = [], []
        for z, t in zip(
            binary_columns(X, "logits"), binary_targets(y, self.n_classes_), strict=True
        ):
            if self.prior_correction:
                wt = np.ones_like(t) if w is None else w
                n_pos = float(wt @ t)
                n_neg = float(wt.sum() - n_pos)
                t = np.where(t > 0, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
            a, b = fit_logistic(z[:, None], t, w, np.ones(1), 0.0, what="PlattScaling")
            coefs.append(a[0])
            intercepts.append(b)
        self.coef_ = np.asarray(coefs)
        self.intercept_ = np.asarray(intercepts)

    def _ovr_probs(self, X: NDArray[np.float64]) -> list[NDArray[np.float64]]:
        return [
            sigmoid(a * z + b)
            for z, a, b in zip(
                binary_columns(X, "logits"), self.coef_, self.intercept_, strict=True
            )
        ]

    def predict_logits(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated logits: ``(n,)`` ``a z + b`` for 1-D binary input; otherwise ``(n, K)``
        log-probabilities (for ``K = 2``: ``[0, a (z1 - z0) + b]``)."""
        x = self._check_predict_input(X)
        cols = binary_columns(x, "logits")
        if self.n_classes_ == 2:
            s = self.coef_[0] * cols[0] + self.intercept_[0]
            return s if self.binary_input_ else np.stack([np.zeros_like(s), s], axis=1)
        return np.log(np.clip(combine(self._ovr_probs(x), self.n_classes_), 1e-300, None))

    def _predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return combine(self._ovr_probs(X), self.n_classes_)
