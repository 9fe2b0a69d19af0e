"""Shared fit/predict of affine maps on class logits: ``z' = z * w + b`` or ``z' = z @ W.T + b``.

Used by vector scaling, matrix scaling and Dirichlet calibration (matrix scaling of log-probs).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._math import softmax
from calibkit.calibrators._optim import affine_loss_grad, lbfgs
from calibkit.calibrators.base import Calibrator, FieldCheck, normalized

Regularization = Literal["odir", "l2", "none"]


def as_2col_logits(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Binary logits ``(n,)`` -> class logits ``(n, 2)`` = ``[0, z]``; ``(n, K)`` unchanged."""
    return np.stack([np.zeros_like(z), z], axis=1) if z.ndim == 1 else z


def penalty(
    coef: NDArray[np.float64],
    intercept: NDArray[np.float64],
    regularization: Regularization,
    reg_lambda: float,
    reg_mu: float,
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Regulariser value and gradients ``(value, d coef, d intercept)``.

    * ``"odir"`` (Kull et al. 2019): ``lambda/(K(K-1)) sum_{i!=j} W_ij^2 + mu/K sum_j b_j^2``;
      for a vector ``coef`` there is no off-diagonal, only the intercept term.
    * ``"l2"``: ``lambda/K^2 ||W - I||_F^2 + mu/K ||b||^2`` (``lambda/K ||w - 1||^2`` for a vector):
      shrinks towards the identity map, i.e. the uncalibrated model.
    * ``"none"``: 0.
    """
    k = intercept.shape[0]
    g_coef = np.zeros_like(coef)
    g_int = np.zeros_like(intercept)
    if regularization == "none":
        return 0.0, g_coef, g_int
    value = 0.0
    if reg_mu > 0:
        value += reg_mu / k * float(intercept @ intercept)
        g_int = 2.0 * reg_mu / k * intercept
    if reg_lambda > 0:
        if regularization == "odir":
            if coef.ndim == 2:
                off = coef - np.diag(np.diag(coef))
                scale = reg_lambda / (k * (k - 1))
                value += scale * float(np.sum(off * off))
                g_coef = 2.0 * scale * off
        elif regularization == "l2":
            dev = coef - (np.eye(k) if coef.ndim == 2 else np.ones(k))
            scale = reg_lambda / dev.size
            value += scale * float(np.sum(dev * dev))
            g_coef = 2.0 * scale * dev
        else:
            raise ValueError(
                f"regularization must be 'odir', 'l2' or 'none'; got {regularization!r}"
            )
    return value, g_coef, g_int


class _AffineScaling(Calibrator):
    """Common code of vector / matrix scaling and Dirichlet calibration (not registered)."""

    _shape: Literal["vector", "matrix"] = "matrix"
    _fitted_fields: ClassVar[tuple[str, ...]] = ("coef_", "intercept_")
    coef_: NDArray[np.float64]
    intercept_: NDArray[np.float64]

    # set by subclasses' __init__
    regularization: Regularization
    reg_lambda: float
    reg_mu: float
    tol: float
    max_iter: int

    def _validate_params(self, check: FieldCheck) -> None:
        check.choice("regularization", self.regularization, ("odir", "l2", "none"))
        check.number("reg_lambda", self.reg_lambda, low=0.0)
        check.number("reg_mu", self.reg_mu, low=0.0)
        check.number("tol", self.tol, low=0.0, strict=True)
        check.integer("max_iter", self.max_iter, low=1)

    def _validate_fitted(self, check: FieldCheck) -> None:
        k = int(self.n_classes_)
        shape = (k,) if self._shape == "vector" else (k, k)
        self.coef_ = check.array("coef_", self.coef_, shape)
        self.intercept_ = check.array("intercept_", self.intercept_, (k,))

    def _features(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """``(n, K)`` features the affine map acts on (logits here, log-probs for Dirichlet)."""
        return as_2col_logits(X)

    def _fit(
        self, X: NDArray[np.float64], y: NDArray[np.int64], w: NDArray[np.float64] | None
    ) -> None:
        z = self._features(X)
        k = z.shape[1]
        wn = normalized(w)
        eye = np.ones(k) if self._shape == "vector" else np.eye(k)
        nc = eye.size

        def fun(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
            coef = theta[:nc].reshape(eye.shape)
            b = theta[nc:]
            loss, g_coef, g_b = affine_loss_grad(z, y, wn, coef, b)
            r, gr_coef, gr_b = penalty(coef, b, self.regularization, self.reg_lambda, self.reg_mu)
            return loss + r, np.concatenate([(g_coef + gr_coef).ravel(), g_b + gr_b])

        theta0 = np.concatenate([eye.ravel(), np.zeros(k)])
        theta = lbfgs(
            fun,
            theta0,
            gtol=self.tol,
            ftol=1e-14,
            maxiter=self.max_iter,
            what=type(self).__name__,
            small=z.size * (k if self._shape == "matrix" else 1) < (1 << 22),
        )
        self.coef_ = theta[:nc].reshape(eye.shape).copy()
        self.intercept_ = theta[nc:].copy()

    def _transform(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        z = self._features(X)
        out = z * self.coef_ if self.coef_.ndim == 1 else z @ self.coef_.T
        out += self.intercept_
        return out

    def predict_logits(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated logits: ``(n, K)``, or ``(n,)`` binary logits for a 1-D binary input."""
        zc = self._transform(self._check_predict_input(X))
        return zc[:, 1] - zc[:, 0] if self.binary_input_ else zc

    def _predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return softmax(self._transform(X), axis=1)
