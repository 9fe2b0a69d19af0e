"""Temperature scaling (Guo et al., 2017): ``p = softmax(z / T)`` with one scalar ``T > 0``."""

from __future__ import annotations

import warnings
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._math import softmax
from calibkit.calibrators._optim import lbfgs, temperature_newton, temperature_stats
from calibkit.calibrators.base import Calibrator, FieldCheck, normalized

__all__ = ["TemperatureScaling"]

#: search range of log T (T in [4.5e-5, 2.2e4]), as scikit-learn's method="temperature"
LOG_T_BOUNDS = (-10.0, 10.0)


def _as_2col(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Binary logits ``(n,)`` -> class logits ``(n, 2)`` = ``[0, z]``."""
    return np.stack([np.zeros_like(z), z], axis=1) if z.ndim == 1 else z


class TemperatureScaling(Calibrator):
    """Temperature scaling: calibrated logits ``z / T``.

    ``T`` minimises the (weighted) mean NLL of ``softmax(z / T)``. The NLL is convex in
    ``beta = 1 / T`` with analytic derivatives ``L' = mean(E_p[z] - z_y)`` and
    ``L'' = mean(Var_p[z])``, so the default solver is a safeguarded 1-D Newton iteration
    (a handful of passes over the data, block-streamed, float32 exponentials for the early
    steps of large inputs and float64 for the last); ``solver="lbfgs"`` minimises over
    ``log T`` with scipy's L-BFGS-B and the analytic gradient instead. Both start from ``T = 1``,
    search ``log T`` in ``[-10, 10]`` (as scikit-learn) and are deterministic. ``T > 1`` softens
    over-confident scores; the argmax and every ranking are unchanged.

    Parameters
    ----------
    solver : {"newton", "lbfgs"}
        Optimiser; both reach the same optimum (to ~1e-8 relative).

    Input: logits ``(n, K)``, or ``(n,)`` binary logits (then ``P(y=1) = sigmoid(z / T)``).

    Attributes
    ----------
    temperature_ : float
        Fitted ``T``.
    n_classes_, binary_input_, classes_ : see :class:`~calibkit.calibrators.Calibrator`.
    """

    input_kind = "logits"
    _fitted_fields: ClassVar[tuple[str, ...]] = ("temperature_",)
    temperature_: float

    def __init__(self, solver: Literal["newton", "lbfgs"] = "newton") -> None:
        self.solver = solver

    def _validate_params(self, check: FieldCheck) -> None:
        check.choice("solver", self.solver, ("newton", "lbfgs"))

    def _validate_fitted(self, check: FieldCheck) -> None:
        self.temperature_ = check.number("temperature_", self.temperature_, low=0.0, strict=True)

    def _fit(
        self, X: NDArray[np.float64], y: NDArray[np.int64], w: NDArray[np.float64] | None
    ) -> None:
        z = _as_2col(X)
        w = normalized(w)
        if self.solver == "newton":
            beta = temperature_newton(z, y, w, log_t_bounds=LOG_T_BOUNDS)
            self.temperature_ = float(1.0 / beta)
            self._warn_on_bound()
            return
        zmax = z.max(axis=1)
        dy = z[np.arange(z.shape[0]), y] - zmax

        def fun(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
            beta = float(np.exp(-theta[0]))
            loss, dbeta, _ = temperature_stats(z, zmax, dy, w, beta)
            return loss, np.array([-beta * dbeta])

        theta = lbfgs(
            fun,
            np.zeros(1),
            bounds=[LOG_T_BOUNDS],
            what="TemperatureScaling",
            small=z.size < (1 << 22),
        )
        self.temperature_ = float(np.exp(theta[0]))
        self._warn_on_bound()

    def _warn_on_bound(self) -> None:
        log_t = float(np.log(self.temperature_))
        if min(abs(log_t - LOG_T_BOUNDS[0]), abs(log_t - LOG_T_BOUNDS[1])) < 1e-6:
            warnings.warn(
                f"TemperatureScaling: the optimum lies on the search bound T={self.temperature_:.4g}"
                " (log T in [-10, 10]): the scores carry no signal about the labels (T -> inf)"
                " or separate them perfectly (T -> 0)",
                UserWarning,
                stacklevel=3,
            )

    def predict_logits(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated logits ``X / T``, same shape as ``X`` (logits, not probabilities)."""
        return self._check_predict_input(X) / self.temperature_

    def _predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return softmax(_as_2col(X) / self.temperature_, axis=1)
