"""Dirichlet calibration (Kull et al., 2019): matrix scaling of log-probabilities, with ODIR
regularisation chosen by cross-validation."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from calibkit._math import probs_to_logits
from calibkit.calibrators._affine import Regularization
from calibkit.calibrators._odir import _ODIRScaling

__all__ = ["DirichletCalibration"]


class DirichletCalibration(_ODIRScaling):
    """Dirichlet calibration: ``p' = softmax(W @ log p + b)``.

    The same fit as :class:`~calibkit.calibrators.MatrixScaling` (ODIR-regularised L-BFGS-B
    from ``W = I, b = 0``, i.e. from the identity map ``p' = p``, with ``reg_lambda`` chosen by
    cross-validated NLL by default) but on ``log p`` with ``p`` clipped to ``[1e-12, 1]``, so it
    takes probabilities. For binary input it is the unconstrained beta calibration
    ``sigmoid(a ln p - b ln(1 - p) + c)``.

    Parameters
    ----------
    regularization, reg_lambda, reg_mu, cv, seed, tol, max_iter
        As :class:`~calibkit.calibrators.MatrixScaling` (default ODIR with ``reg_lambda="auto"``
        and ``reg_mu`` tied to it).

    Input: probabilities ``(n, K)`` or ``(n,)`` = ``P(y=1)``.

    Attributes
    ----------
    coef_ : (K, K) float
        ``W``.
    intercept_ : (K,) float
        ``b``.
    reg_lambda_, reg_mu_, cv_results_
        As :class:`~calibkit.calibrators.MatrixScaling`.
    """

    input_kind = "probs"
    _shape = "matrix"

    def __init__(
        self,
        regularization: Regularization = "odir",
        reg_lambda: float | Literal["auto"] = "auto",
        reg_mu: float | Literal["auto"] = "auto",
        cv: int = 5,
        seed: int = 0,
        tol: float = 1e-9,
        max_iter: int = 1000,
    ) -> None:
        self.regularization = regularization
        self.reg_lambda = reg_lambda  # type: ignore[assignment]
        self.reg_mu = reg_mu  # type: ignore[assignment]
        self.cv = cv
        self.seed = seed
        self.tol = tol
        self.max_iter = max_iter

    def _features(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        p = np.stack([1.0 - X, X], axis=1) if X.ndim == 1 else X
        return probs_to_logits(p)
