r"""Matrix-shaped affine calibrators whose regularisation is chosen by cross-validation.

Kull et al. (2019, "Beyond temperature scaling") fit matrix scaling and Dirichlet calibration
with ODIR (off-diagonal and intercept regularisation) and choose its strength by cross-validated
NLL on the calibration set. Without that, ``K^2 + K`` parameters overfit whenever ``K^2`` is not
small next to ``n``: on a WideResNet's CIFAR-100 outputs (K = 100, 5,000 calibration rows) a
fixed ``lambda = 1e-2`` takes the test NLL from 0.96 to 6.9.

Here ``reg_lambda="auto"`` (the default of :class:`MatrixScaling` and
:class:`DirichletCalibration`) walks the decade grid :data:`ODIR_GRID` from the strongest
regularisation down, fitting ``cv`` folds per value (warm-started from the previous value's
fold solutions), and stops once the mean held-out NLL is ``0.5%`` above the best so far or has
not improved for two values in a row (smaller values only overfit more, and cost the most
iterations). ``reg_mu="auto"`` ties ``mu`` to ``lambda``. The chosen value is refitted on all
rows; ``cv_results_`` keeps the table.

Every fit is L-BFGS-B on a Jacobi-preconditioned parametrisation (each parameter divided by the
square root of the objective's curvature along it at the starting point): an exact change of
variables, so the optimum is unchanged, but strong penalties no longer make the problem stiff
(on the CIFAR-100 problem a fit at ``lambda = 1e5`` takes 38 iterations instead of > 1000).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from calibkit._math import log_softmax, softmax
from calibkit.calibrators._affine import _AffineScaling, penalty
from calibkit.calibrators._cv import Folds, make_folds
from calibkit.calibrators._optim import affine_loss_grad, lbfgs
from calibkit.calibrators.base import FieldCheck, normalized

__all__ = ["MIN_ROWS_PER_PARAMETER", "ODIR_GRID", "ODIRPath", "affine_fit", "odir_path"]

#: candidate ``reg_lambda`` values, strongest first (Kull et al. search a log grid too)
ODIR_GRID: tuple[float, ...] = (1e5, 1e4, 1e3, 1e2, 1e1, 1.0, 1e-1, 1e-2, 1e-3)

#: the path stops once the mean held-out NLL is this much (relative) above the best so far
_STOP_RELATIVE = 0.005
#: ... or after this many grid values without improvement
_STOP_PATIENCE = 2
#: tolerances of the cross-validation fits (held-out NLLs agree with tight fits to ~1e-5)
_CV_GTOL, _CV_FTOL = 1e-5, 1e-10

#: fewer calibration rows than this per free parameter draws a warning (an events-per-variable
#: rule of thumb; see also :mod:`calibkit.calibrators.diagnostics`)
MIN_ROWS_PER_PARAMETER = 10


def _affine(z: NDArray[np.float64], coef: NDArray[np.float64], b: NDArray[np.float64]) -> Any:
    return (z * coef if coef.ndim == 1 else z @ coef.T) + b


def _split(theta: NDArray[np.float64], k: int, shape: str) -> tuple[Any, Any]:
    nc = k if shape == "vector" else k * k
    coef = theta[:nc] if shape == "vector" else theta[:nc].reshape(k, k)
    return coef, theta[nc:]


def identity_theta(k: int, shape: str) -> NDArray[np.float64]:
    """Parameters of the identity map (``W = I`` or ``w = 1``, ``b = 0``), flattened."""
    eye = np.ones(k) if shape == "vector" else np.eye(k).ravel()
    return np.concatenate([eye, np.zeros(k)])


def _curvature(
    z: NDArray[np.float64],
    w: NDArray[np.float64] | None,
    theta: NDArray[np.float64],
    shape: str,
    regularization: str,
    lam: float,
    mu: float,
) -> NDArray[np.float64]:
    """Diagonal of the (Gauss-Newton) Hessian of mean NLL + penalty at ``theta``, flattened."""
    k = z.shape[1]
    coef, b = _split(theta, k, shape)
    p = softmax(_affine(z, coef, b), axis=1)
    v = p * (1.0 - p)
    if w is not None:
        v *= w[:, None] * z.shape[0]  # weights sum to 1: mean -> weighted mean
    z2 = z * z
    h_coef = np.mean(v * z2, axis=0) if shape == "vector" else (v.T @ z2) / z.shape[0]
    h_b = v.mean(axis=0)
    if regularization != "none":
        if lam > 0 and regularization == "odir" and shape == "matrix":
            h_coef = h_coef + 2.0 * lam / (k * (k - 1)) * (1.0 - np.eye(k))
        elif lam > 0 and regularization == "l2":
            h_coef = h_coef + 2.0 * lam / h_coef.size
        if mu > 0:
            h_b = h_b + 2.0 * mu / k
    h = np.concatenate([np.ravel(h_coef), h_b])
    return np.maximum(h, 1e-8 * max(float(h.max()), 1e-300))


def affine_fit(
    z: NDArray[np.float64],
    y: NDArray[np.int64],
    w: NDArray[np.float64] | None,
    *,
    shape: Literal["vector", "matrix"],
    regularization: str,
    reg_lambda: float,
    reg_mu: float,
    theta0: NDArray[np.float64] | None = None,
    gtol: float = 1e-9,
    ftol: float = 1e-14,
    max_iter: int = 1000,
    what: str = "affine calibrator",
) -> NDArray[np.float64]:
    """Minimise ``mean NLL(softmax(affine(z))) + penalty`` (see ``_affine.penalty``) by
    preconditioned L-BFGS-B from ``theta0`` (default: the identity map); return the flat
    ``[coef, intercept]``.

    Parameters
    ----------
    z : (n, K) features (logits, or log-probabilities for Dirichlet calibration)
    y : (n,) class indices
    w : (n,) weights summing to 1, or None (uniform)
    """
    k = z.shape[1]
    th0 = identity_theta(k, shape) if theta0 is None else np.asarray(theta0, dtype=np.float64)
    sc = 1.0 / np.sqrt(_curvature(z, w, th0, shape, regularization, reg_lambda, reg_mu))

    def fun(u: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        coef, b = _split(u * sc, k, shape)
        loss, g_coef, g_b = affine_loss_grad(z, y, w, coef, b)
        r, gr_coef, gr_b = penalty(coef, b, regularization, reg_lambda, reg_mu)  # type: ignore[arg-type]
        return loss + r, np.concatenate([(g_coef + gr_coef).ravel(), g_b + gr_b]) * sc

    u = lbfgs(
        fun,
        th0 / sc,
        gtol=gtol,
        ftol=ftol,
        maxiter=max_iter,
        what=what,
        # single-threaded BLAS up to ~1e8 multiply-adds per evaluation: threads help only on
        # bigger problems and are 10-30x slower than one thread on a busy machine
        small=z.size * (k if shape == "matrix" else 1) < (1 << 27),
    )
    return u * sc


def _weighted_nll(
    z: NDArray[np.float64], y: NDArray[np.int64], w: NDArray[np.float64] | None
) -> float:
    lp = log_softmax(z, axis=1)[np.arange(y.shape[0]), y]
    return float(-np.mean(lp) if w is None else -(w @ lp) / w.sum())


@dataclass
class ODIRPath:
    """Cross-validated NLL along the regularisation path (grid values in the order tried).

    ``oof[i][f]`` are the ``(n_test_f, K)`` held-out calibrated probabilities of fold ``f`` at
    ``lambdas[i]``; ``thetas[i][f]`` the fold's parameters.
    """

    lambdas: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    oof: list[list[NDArray[np.float64]]] = field(default_factory=list)
    thetas: list[list[NDArray[np.float64]]] = field(default_factory=list)

    @property
    def best(self) -> int:
        return int(np.argmin(self.mean))

    def table(self) -> dict[str, list[float]]:
        return {
            "lambda": list(self.lambdas),
            "mean_nll": list(self.mean),
            "std_nll": list(self.std),
        }


def odir_path(
    z: NDArray[np.float64],
    y: NDArray[np.int64],
    w: NDArray[np.float64] | None,
    folds: Folds,
    *,
    shape: Literal["vector", "matrix"],
    regularization: str,
    reg_mu: float | None,
    grid: tuple[float, ...] = ODIR_GRID,
    max_iter: int = 1000,
    what: str = "affine calibrator",
) -> ODIRPath:
    """K-fold held-out NLL for each ``lambda`` of ``grid`` (strongest first, early stopping; see
    the module docstring). ``reg_mu=None`` ties ``mu`` to ``lambda``."""
    k = z.shape[1]
    path = ODIRPath()
    thetas = [identity_theta(k, shape) for _ in folds]
    best, since_best = math.inf, 0
    for lam in sorted(grid, reverse=True):
        mu = lam if reg_mu is None else reg_mu
        losses, probs = [], []
        for f, (tr, te) in enumerate(folds):
            wtr = None if w is None else w[tr] / w[tr].sum()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # approximate fits; the final fit warns
                thetas[f] = affine_fit(
                    z[tr],
                    y[tr],
                    wtr,
                    shape=shape,
                    regularization=regularization,
                    reg_lambda=lam,
                    reg_mu=mu,
                    theta0=thetas[f],
                    gtol=_CV_GTOL,
                    ftol=_CV_FTOL,
                    max_iter=max_iter,
                    what=what,
                )
            coef, b = _split(thetas[f], k, shape)
            zt = _affine(z[te], coef, b)
            losses.append(_weighted_nll(zt, y[te], None if w is None else w[te]))
            probs.append(softmax(zt, axis=1))
        mean = float(np.mean(losses))
        path.lambdas.append(float(lam))
        path.mean.append(mean)
        path.std.append(float(np.std(losses)))
        path.oof.append(probs)
        path.thetas.append([t.copy() for t in thetas])
        if mean < best:
            best, since_best = mean, 0
        else:
            since_best += 1
        if since_best >= _STOP_PATIENCE or mean > best * (1.0 + _STOP_RELATIVE):
            break
    return path


def _is_auto(v: Any) -> bool:
    return isinstance(v, str) and v == "auto"


class _ODIRScaling(_AffineScaling):
    """Matrix-shaped affine calibrator with ``reg_lambda`` / ``reg_mu`` = ``"auto"`` (CV)."""

    _fitted_fields = ("coef_", "intercept_", "reg_lambda_", "reg_mu_", "cv_results_")
    reg_lambda_: float
    reg_mu_: float
    cv_results_: dict[str, list[float]] | None

    # set by subclasses' __init__ (besides _AffineScaling's)
    cv: int
    seed: int

    def _validate_params(self, check: FieldCheck) -> None:
        check.choice("regularization", self.regularization, ("odir", "l2", "none"))
        for name in ("reg_lambda", "reg_mu"):
            v = getattr(self, name)
            if not _is_auto(v):
                if isinstance(v, str):
                    check.fail(name, "'auto' or a finite number >= 0", v)
                check.number(name, v, low=0.0)
        check.integer("cv", self.cv, low=2)
        check.integer("seed", self.seed, low=0)
        check.number("tol", self.tol, low=0.0, strict=True)
        check.integer("max_iter", self.max_iter, low=1)

    def _validate_fitted(self, check: FieldCheck) -> None:
        super()._validate_fitted(check)
        self.reg_lambda_ = check.number("reg_lambda_", self.reg_lambda_, low=0.0)
        self.reg_mu_ = check.number("reg_mu_", self.reg_mu_, low=0.0)
        table = self.cv_results_
        if table is None:
            return
        if not isinstance(table, dict) or set(table) != {"lambda", "mean_nll", "std_nll"}:
            check.fail("cv_results_", "null or an object with lambda, mean_nll, std_nll", table)
        n = len(table["lambda"]) if isinstance(table["lambda"], list) else -1
        out = {
            key: check.array(f"cv_results_.{key}", table[key], (n,), low=0.0).tolist()
            for key in ("lambda", "mean_nll", "std_nll")
        }
        self.cv_results_ = out

    @property
    def _auto(self) -> bool:
        return self.regularization != "none" and _is_auto(self.reg_lambda)

    def _fixed_mu(self) -> float | None:
        return None if _is_auto(self.reg_mu) else float(self.reg_mu)

    def _n_parameters(self, k: int) -> int:
        return k * k + k

    def _final_fit(
        self,
        z: NDArray[np.float64],
        y: NDArray[np.int64],
        wn: NDArray[np.float64] | None,
        lam: float,
        mu: float,
        theta0: NDArray[np.float64] | None,
    ) -> None:
        theta = affine_fit(
            z,
            y,
            wn,
            shape="matrix",
            regularization=self.regularization,
            reg_lambda=lam,
            reg_mu=mu,
            theta0=theta0,
            gtol=self.tol,
            ftol=1e-14,
            max_iter=self.max_iter,
            what=type(self).__name__,
        )
        k = z.shape[1]
        coef, b = _split(theta, k, "matrix")
        self.coef_ = np.array(coef, dtype=np.float64)
        self.intercept_ = np.array(b, dtype=np.float64)
        self.reg_lambda_ = float(lam)
        self.reg_mu_ = float(mu)

    def _fit(
        self, X: NDArray[np.float64], y: NDArray[np.int64], w: NDArray[np.float64] | None
    ) -> None:
        self._fit_folds(X, y, w, None)

    def _fit_folds(
        self,
        X: NDArray[np.float64],
        y: NDArray[np.int64],
        w: NDArray[np.float64] | None,
        folds: Folds | None,
    ) -> list[NDArray[np.float64]] | None:
        """Fit; with ``reg_lambda="auto"`` choose it by CV on ``folds`` (default: ``cv`` seeded
        folds) and return the held-out probabilities of each fold at the chosen value."""
        z = self._features(X)
        k = z.shape[1]
        wn = normalized(w)
        n = z.shape[0]
        if not self._auto:
            lam = 0.0 if self.regularization == "none" else float(self.reg_lambda)
            mu_fixed = self._fixed_mu()
            mu = 0.0 if self.regularization == "none" else (lam if mu_fixed is None else mu_fixed)
            self.cv_results_ = None
            self._final_fit(z, y, wn, lam, mu, None)
            self._warn_capacity(n, k, lam)
            return None
        if folds is None:
            try:
                folds = make_folds(y, int(self.cv), int(self.seed))
            except ValueError:
                folds = None
        if folds is None:
            lam = max(ODIR_GRID)
            warnings.warn(
                f"{type(self).__name__}: {n} rows are too few for {self.cv}-fold "
                f"cross-validation of reg_lambda; using the strongest value, {lam:g}",
                UserWarning,
                stacklevel=5,
            )
            mu_fixed = self._fixed_mu()
            self.cv_results_ = None
            self._final_fit(z, y, wn, lam, lam if mu_fixed is None else mu_fixed, None)
            return None
        path = odir_path(
            z,
            y,
            wn,
            folds,
            shape="matrix",
            regularization=self.regularization,
            reg_mu=self._fixed_mu(),
            max_iter=self.max_iter,
            what=type(self).__name__,
        )
        i = path.best
        lam = path.lambdas[i]
        mu_fixed = self._fixed_mu()
        self.cv_results_ = path.table()
        theta0 = np.mean(path.thetas[i], axis=0)
        self._final_fit(z, y, wn, lam, lam if mu_fixed is None else mu_fixed, theta0)
        return path.oof[i]

    def _warn_capacity(self, n: int, k: int, lam: float) -> None:
        p = self._n_parameters(k)
        if n >= MIN_ROWS_PER_PARAMETER * p:
            return
        reg = "no regularisation" if self.regularization == "none" else f"reg_lambda={lam:g}"
        warnings.warn(
            f"{type(self).__name__}: {p:,} parameters (K={k}) for {n:,} calibration rows "
            f"(fewer than {MIN_ROWS_PER_PARAMETER} rows per parameter) with a fixed {reg}: it "
            "can overfit and end worse than no calibration. Use reg_lambda='auto' "
            f"(cross-validated), VectorScaling ({2 * k} parameters) or TemperatureScaling (1)",
            UserWarning,
            stacklevel=5,
        )
