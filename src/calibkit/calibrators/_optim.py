"""Private numerics shared by the scaling calibrators.

* :func:`lbfgs`: scipy L-BFGS-B with tight, deterministic tolerances and a convergence warning;
* chunked softmax cross-entropy kernels with analytic gradients for temperature, vector and
  matrix scaling. They stream over row blocks of ``~2**16`` entries so a ``1M x 100`` fit never
  allocates more than one block-sized temporary per evaluation.
* :func:`binary_logistic_loss_grad`: weighted logistic loss of ``sigmoid(F @ theta)`` (Platt, beta).

All losses are *means* over the rows (or weighted means with weights summing to 1).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from calibkit._math import sigmoid

_BLOCK = 1 << 16  # entries (rows * K) per streamed block: a 512 KiB float64 buffer

_MAX_STEP = 16.0  # largest factor by which one Newton step may change beta

LossGrad = Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]]


def lbfgs(
    fun: LossGrad,
    x0: NDArray[np.float64],
    *,
    bounds: Sequence[tuple[float | None, float | None]] | None = None,
    gtol: float = 1e-10,
    ftol: float = 64 * np.finfo(float).eps,
    maxiter: int = 1000,
    what: str = "calibrator",
    small: bool = True,
) -> NDArray[np.float64]:
    """Minimise ``fun`` (returning ``(loss, grad)``) with L-BFGS-B from ``x0``; return the argmin.

    ``small``: the problem is cheap per evaluation, so BLAS runs single-threaded (thread
    start-up and oversubscription otherwise dominate, 5x slower on a busy 2-core machine).
    Warns (``ConvergenceWarning``) if the iteration limit is hit or the final gradient is large.
    """
    from contextlib import nullcontext

    from scipy.optimize import minimize
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas") if small else nullcontext():
        res = minimize(
            fun,
            np.asarray(x0, dtype=np.float64),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"gtol": gtol, "ftol": ftol, "maxiter": maxiter, "maxcor": 20},
        )
    x = np.asarray(res.x, dtype=np.float64)
    if res.status == 1 or not np.all(np.isfinite(x)):
        warnings.warn(
            f"{what}: L-BFGS-B did not converge ({res.message}); result may be inaccurate",
            ConvergenceWarning,
            stacklevel=3,
        )
    elif not res.success:
        # typically "ABNORMAL_TERMINATION_IN_LNSRCH": no further decrease at machine precision.
        g = np.asarray(res.jac, dtype=np.float64)
        if bounds is not None:
            lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
            hi = np.array([np.inf if b[1] is None else b[1] for b in bounds])
            g = np.where((x <= lo) & (g > 0) | (x >= hi) & (g < 0), 0.0, g)
        if np.max(np.abs(g)) > 1e-5:
            warnings.warn(
                f"{what}: L-BFGS-B stopped early ({res.message}), |grad|={np.max(np.abs(g)):.2e}",
                ConvergenceWarning,
                stacklevel=3,
            )
    return x


def _block_rows(n: int, k: int) -> int:
    return int(max(1, min(n, _BLOCK // max(k, 1))))


def temperature_stats(
    z: NDArray[np.float64],
    zmax: NDArray[np.float64],
    dy: NDArray[np.float64],
    w: NDArray[np.float64] | None,
    beta: float,
    dtype: type[np.floating] = np.float64,
    clip: bool = True,
) -> tuple[float, float, float]:
    """Mean NLL of ``softmax(beta * z)`` and its first two derivatives in ``beta``.

    ``z`` is ``(n, K)`` logits with row max ``zmax`` and ``dy = z_y - zmax``. With
    ``d = z - zmax`` and ``p = softmax(beta * d)``: ``L = mean(log sum exp(beta d) - beta d_y)``,
    ``L' = mean(E_p[d] - d_y)``, ``L'' = mean(Var_p[d]) >= 0`` (``L`` is convex in ``beta``).
    Row blocks are streamed (no full-size temporary); totals accumulate in float64.
    ``dtype=np.float32`` runs the per-entry work in single precision (float32 ``exp`` is 4-5x
    faster on CPUs without AVX-512); shifted logits below ``-1e30`` are clipped there
    (``clip=False`` skips this when the caller knows there are none).
    """
    n, k = z.shape
    rows = _block_rows(n, k)
    d = np.empty((rows, k), dtype=dtype)
    b = np.empty((rows, k), dtype=dtype)
    single = dtype is not np.float64 and clip
    loss = grad = hess = 0.0
    for s in range(0, n, rows):
        e = min(n, s + rows)
        dc = d[: e - s]
        bc = b[: e - s]
        np.subtract(z[s:e], zmax[s:e, None], out=dc, casting="same_kind")
        if single:
            np.maximum(dc, -1e30, out=dc)  # float64 -> float32 may give -inf, and 0 * inf = nan
        np.multiply(dc, beta, out=bc, casting="same_kind")
        np.exp(bc, out=bc)
        tot = bc.sum(axis=1, dtype=np.float64)
        bc *= dc
        e1 = bc.sum(axis=1, dtype=np.float64) / tot
        e2 = np.einsum("ij,ij->i", bc, dc).astype(np.float64) / tot
        li = np.log(tot) - beta * dy[s:e]
        gi = e1 - dy[s:e]
        hi = np.maximum(e2 - e1 * e1, 0.0)
        if w is None:
            loss += float(li.sum())
            grad += float(gi.sum())
            hess += float(hi.sum())
        else:
            ws = w[s:e]
            loss += float(ws @ li)
            grad += float(ws @ gi)
            hess += float(ws @ hi)
    if w is None:
        loss, grad, hess = loss / n, grad / n, hess / n
    return loss, grad, hess


def _newton_1d(
    stats: Callable[[float], tuple[float, float]],
    beta: float,
    lo: float,
    hi: float,
    tol: float,
    max_iter: int,
) -> float:
    """Safeguarded Newton for the minimiser of a convex 1-D function on ``[lo, hi]``.

    ``stats(beta) -> (L', L'')``. Steps change ``beta`` by at most a factor ``_MAX_STEP`` and stay
    inside a bracket of the root of ``L'`` (geometric bisection otherwise). Stops once a Newton
    step is ``<= tol * beta``, or at a bound whose derivative points outwards.
    """
    a, c = lo, hi  # bracket; an end is "evaluated" once we have been there
    a_ev = c_ev = False
    for _ in range(max_iter):
        g, h = stats(beta)
        if g > 0:
            c, c_ev = beta, True
        elif g < 0:
            a, a_ev = beta, True
        else:
            break
        if (g < 0 and beta >= hi) or (g > 0 and beta <= lo):
            break  # the optimum lies on the bound
        new = beta - g / h if h > 0 else (_MAX_STEP * beta if g < 0 else beta / _MAX_STEP)
        new = min(max(new, beta / _MAX_STEP), _MAX_STEP * beta)
        if abs(new - beta) <= tol * beta:
            beta = new
            break
        if new <= a:
            new = float(np.sqrt(a * c)) if a_ev else a
        elif new >= c:
            new = float(np.sqrt(a * c)) if c_ev else c
        beta = new
    return min(max(beta, lo), hi)


def temperature_newton(
    z: NDArray[np.float64],
    y: NDArray[np.int64],
    w: NDArray[np.float64] | None,
    *,
    log_t_bounds: tuple[float, float] = (-10.0, 10.0),
    rtol: float = 1e-10,
    max_iter: int = 100,
) -> float:
    """Inverse temperature ``beta`` minimising the NLL of ``softmax(beta * z)``.

    Safeguarded Newton on the convex objective. Inputs with ``n*K > 2**20`` are warm-started on
    an evenly strided row subsample, then iterated with float32 exponentials to a relative step
    of ``1e-3``; float64 Newton steps always finish, until a step is ``<= sqrt(rtol)`` relative
    (quadratic convergence: the error after it is ``O(step**2)``, and usually one float64 pass
    suffices). The warm start only affects speed, not the optimum. Deterministic.
    """
    n = z.shape[0]
    zmax = z.max(axis=1)
    dy = z[np.arange(n), y] - zmax
    lo, hi = float(np.exp(-log_t_bounds[1])), float(np.exp(-log_t_bounds[0]))
    beta = 1.0
    if z.size > (1 << 20):
        stride = max(1, z.size // (1 << 20))
        ws = None
        if w is not None:
            ws = w[::stride] / w[::stride].sum() if w[::stride].sum() > 0 else None
        zs = np.ascontiguousarray(z[::stride])
        zms, dys = zmax[::stride], dy[::stride]
        beta = _newton_1d(
            lambda b: temperature_stats(zs, zms, dys, ws, b)[1:], beta, lo, hi, 1e-6, max_iter
        )
        del zs
        clip = float(zmax.max()) - float(z.min()) > 1e30
        beta = _newton_1d(
            lambda b: temperature_stats(z, zmax, dy, w, b, np.float32, clip)[1:],
            beta,
            lo,
            hi,
            1e-3,
            max_iter,
        )
    return _newton_1d(
        lambda b: temperature_stats(z, zmax, dy, w, b)[1:],
        beta,
        lo,
        hi,
        float(np.sqrt(rtol)),
        max_iter,
    )


def affine_loss_grad(
    z: NDArray[np.float64],
    y: NDArray[np.int64],
    w: NDArray[np.float64] | None,
    coef: NDArray[np.float64],
    intercept: NDArray[np.float64],
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Mean NLL of ``softmax(z * coef + intercept)`` (``coef`` ``(K,)``: vector scaling) or of
    ``softmax(z @ coef.T + intercept)`` (``coef`` ``(K, K)``: matrix scaling), with gradients
    ``(loss, d coef, d intercept)``.
    """
    n, k = z.shape
    rows = _block_rows(n, k)
    buf = np.empty((rows, k))
    loss = 0.0
    g_coef = np.zeros_like(coef)
    g_int = np.zeros(k)
    vector = coef.ndim == 1
    for s in range(0, n, rows):
        e = min(n, s + rows)
        m = e - s
        b = buf[:m]
        zc = z[s:e]
        yc = y[s:e]
        if vector:
            np.multiply(zc, coef, out=b)
        else:
            np.matmul(zc, coef.T, out=b)
        b += intercept
        bmax = b.max(axis=1)
        idx = np.arange(m)
        b_y = b[idx, yc] - bmax
        b -= bmax[:, None]
        np.exp(b, out=b)
        tot = b.sum(axis=1)
        li = np.log(tot) - b_y
        # b <- (softmax - onehot) * row weight
        b /= tot[:, None]
        b[idx, yc] -= 1.0
        if w is None:
            loss += float(li.sum())
        else:
            loss += float(w[s:e] @ li)
            b *= w[s:e, None]
        if vector:
            g_coef += np.einsum("ij,ij->j", b, zc)
        else:
            g_coef += b.T @ zc
        g_int += b.sum(axis=0)
    if w is None:
        loss /= n
        g_coef /= n
        g_int /= n
    return loss, g_coef, g_int


def binary_logistic_loss_grad(
    theta: NDArray[np.float64],
    F: NDArray[np.float64],
    t: NDArray[np.float64],
    w: NDArray[np.float64] | None,
) -> tuple[float, NDArray[np.float64]]:
    """Mean cross-entropy of ``sigmoid(F @ theta)`` against soft targets ``t`` in ``[0, 1]``.

    ``F`` is ``(n, d)`` features (last column usually ones for the intercept).
    """
    s = F @ theta
    # log(1 + exp(s)) - t * s, stable
    li = np.logaddexp(0.0, s) - t * s
    g = sigmoid(s) - t
    if w is None:
        n = s.shape[0]
        return float(li.sum() / n), (F.T @ g) / n
    return float(w @ li), F.T @ (w * g)


def fit_logistic(
    F: NDArray[np.float64],
    t: NDArray[np.float64],
    w: NDArray[np.float64] | None,
    coef0: NDArray[np.float64],
    intercept0: float,
    *,
    nonneg: bool = False,
    what: str = "logistic calibrator",
) -> tuple[NDArray[np.float64], float]:
    """Weighted logistic regression ``P = sigmoid(F @ coef + intercept)`` on soft targets ``t``.

    Unregularised maximum likelihood by L-BFGS-B with analytic gradients, from ``(coef0,
    intercept0)``. Columns of ``F`` (``(n, d)``) are standardised internally for conditioning
    (an exact reparametrisation: the optimum is unchanged). ``nonneg`` constrains ``coef >= 0``.
    """
    n, dim = F.shape
    mu = F.mean(axis=0)
    sd = F.std(axis=0)
    sd[sd == 0] = 1.0
    Fs = np.empty((n, dim + 1))
    Fs[:, :dim] = (F - mu) / sd
    Fs[:, dim] = 1.0
    theta0 = np.concatenate([coef0 * sd, [intercept0 + float(coef0 @ mu)]])
    wn = None if w is None else w / w.sum()
    bounds = [(0.0, None)] * dim + [(None, None)] if nonneg else None
    theta = lbfgs(
        lambda th: binary_logistic_loss_grad(th, Fs, t, wn),
        theta0,
        bounds=bounds,
        what=what,
        small=n < (1 << 20),
    )
    coef = theta[:dim] / sd
    return coef, float(theta[dim] - coef @ mu)
