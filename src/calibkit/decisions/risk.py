r"""Finite-sample tests and bounds for an error rate: the statistics behind every certificate.

All functions are vectorised: ``k`` (errors) and ``n`` (trials) broadcast against each other, so a
whole risk curve (or a batch of curves) is tested in one call.

For ``k`` errors among ``n`` accepted items, the error rate among accepted items is tested with the
null hypothesis ``H: rate > epsilon``; a small p-value certifies ``rate <= epsilon``.

* :func:`binomial_pvalue` is the exact binomial tail ``P(Bin(n, epsilon) <= k)``: the test that
  inverts the Clopper-Pearson upper bound (:func:`clopper_pearson_upper`).
* :func:`hoeffding_bentkus_pvalue` is Bates et al. (2021)'s
  ``min(exp(-n h(min(k/n, epsilon), epsilon)), e P(Bin(n, epsilon) <= k))`` with
  ``h(a, b) = a log(a/b) + (1-a) log((1-a)/(1-b))``. It is valid for any loss in ``[0, 1]``;
  for the 0/1 loss here it is never smaller than the exact binomial p-value, so it is offered for
  comparison with the literature and as the conservative choice.
* :func:`labels_needed` answers "how many accepted items would certify ``epsilon`` at the
  observed error rate", next to paper 000's Hoeffding sample size (:mod:`calibkit.metrics.pac`).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "PVALUE_METHODS",
    "PValueMethod",
    "batch_pvalue",
    "binomial_pvalue",
    "calibration_size_needed",
    "check_unit_interval",
    "clopper_pearson_interval",
    "clopper_pearson_upper",
    "hoeffding_bentkus_pvalue",
    "hoeffding_sample_size",
    "labels_needed",
    "min_certifiable_n",
    "pvalue",
]

PValueMethod = Literal["binomial", "hoeffding_bentkus"]
#: names accepted by :func:`pvalue`
PVALUE_METHODS: tuple[str, ...] = ("binomial", "hoeffding_bentkus")


def check_unit_interval(x: float, name: str) -> float:
    """``float(x)`` if it lies strictly inside ``(0, 1)``, else a ValueError naming ``name``."""
    if isinstance(x, bool):
        raise ValueError(f"{name} must be a number in (0, 1); got {x!r}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1); got {x!r}") from None
    if not (0.0 < v < 1.0):
        raise ValueError(f"{name} must be in (0, 1); got {v}")
    return v


def _counts(k: ArrayLike, n: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    kk = np.asarray(k, dtype=np.float64)
    nn = np.asarray(n, dtype=np.float64)
    if not (np.all(np.isfinite(kk)) and np.all(np.isfinite(nn))):
        raise ValueError("k and n must be finite counts")
    if np.any(nn < 0) or np.any(kk < 0) or np.any(kk > nn):
        raise ValueError("counts must satisfy 0 <= k <= n")
    if np.any(kk != np.round(kk)) or np.any(nn != np.round(nn)):
        raise ValueError("k and n must be whole numbers")
    return np.broadcast_arrays(kk, nn)  # type: ignore[return-value]


def binomial_pvalue(k: ArrayLike, n: ArrayLike, epsilon: float) -> NDArray[np.float64]:
    """Exact binomial p-value ``P(Bin(n, epsilon) <= k)`` of ``H: rate > epsilon``.

    Parameters
    ----------
    k, n : array-like of int, broadcastable
        Errors and trials (accepted items); ``n = 0`` gives p-value 1 (no evidence).
    epsilon : float in (0, 1)
        The error rate to certify.

    Returns
    -------
    (broadcast shape) float64 p-values in ``[0, 1]``.
    """
    from scipy.stats import binom

    eps = check_unit_interval(epsilon, "epsilon")
    kk, nn = _counts(k, n)
    p = binom.cdf(kk, nn, eps)
    return np.where(nn > 0, np.clip(p, 0.0, 1.0), 1.0)


def _h1(a: NDArray[np.float64], b: float) -> NDArray[np.float64]:
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(a > 0, a * np.log(a / b), 0.0)
        t2 = np.where(a < 1, (1 - a) * np.log((1 - a) / (1 - b)), 0.0)
    return np.asarray(t1 + t2, dtype=np.float64)


def hoeffding_bentkus_pvalue(k: ArrayLike, n: ArrayLike, epsilon: float) -> NDArray[np.float64]:
    """Hoeffding-Bentkus p-value of ``H: rate > epsilon`` (Bates et al. 2021, eq. 11).

    ``min(1, exp(-n h(min(k/n, epsilon), epsilon)), e * P(Bin(n, epsilon) <= k))``; ``n = 0``
    gives 1. Same parameters and shape as :func:`binomial_pvalue`.
    """
    from scipy.stats import binom

    eps = check_unit_interval(epsilon, "epsilon")
    kk, nn = _counts(k, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        rhat = np.where(nn > 0, kk / np.maximum(nn, 1.0), 1.0)
    hoeff = np.exp(-nn * _h1(np.minimum(rhat, eps), eps))
    bentkus = math.e * binom.cdf(kk, nn, eps)
    p = np.minimum(np.minimum(hoeff, bentkus), 1.0)
    return np.where(nn > 0, p, 1.0)


def pvalue(
    k: ArrayLike, n: ArrayLike, epsilon: float, method: str = "binomial"
) -> NDArray[np.float64]:
    """:func:`binomial_pvalue` or :func:`hoeffding_bentkus_pvalue` by ``method``."""
    if method == "binomial":
        return binomial_pvalue(k, n, epsilon)
    if method == "hoeffding_bentkus":
        return hoeffding_bentkus_pvalue(k, n, epsilon)
    raise ValueError(f"method must be one of {', '.join(PVALUE_METHODS)}; got {method!r}")


def clopper_pearson_upper(k: ArrayLike, n: ArrayLike, delta: float) -> NDArray[np.float64]:
    """One-sided ``1 - delta`` Clopper-Pearson upper bound on an error rate from ``k`` of ``n``.

    ``Beta(1 - delta; k + 1, n - k)`` quantile; 1 when ``k = n`` (including ``n = 0``).
    ``binomial_pvalue(k, n, eps) <= delta`` exactly when this bound is ``<= eps``.
    """
    from scipy.stats import beta

    d = check_unit_interval(delta, "delta")
    kk, nn = _counts(k, n)
    with np.errstate(invalid="ignore"):
        ub = beta.ppf(1.0 - d, kk + 1.0, np.maximum(nn - kk, 1e-300))
    return np.where(kk < nn, ub, 1.0)


def clopper_pearson_interval(
    k: ArrayLike, n: ArrayLike, level: float = 0.95
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Two-sided Clopper-Pearson interval ``(low, high)`` for a proportion ``k / n`` at ``level``.

    ``n = 0`` gives ``(0, 1)``.
    """
    from scipy.stats import beta

    lv = check_unit_interval(level, "level")
    a = 1.0 - lv
    kk, nn = _counts(k, n)
    with np.errstate(invalid="ignore"):
        lo = beta.ppf(a / 2, np.maximum(kk, 1e-300), nn - kk + 1.0)
        hi = beta.ppf(1 - a / 2, kk + 1.0, np.maximum(nn - kk, 1e-300))
    lo = np.where(kk > 0, lo, 0.0)
    hi = np.where(kk < nn, hi, 1.0)
    return lo, hi


def min_certifiable_n(epsilon: float, delta: float) -> int:
    """Fewest accepted items that can certify ``epsilon`` at all: ``ceil(log delta / log(1-eps))``.

    With fewer, even zero errors give a p-value above ``delta`` (both p-value methods).
    """
    eps = check_unit_interval(epsilon, "epsilon")
    d = check_unit_interval(delta, "delta")
    return max(1, math.ceil(math.log(d) / math.log1p(-eps) - 1e-12))


def labels_needed(
    error_rate: ArrayLike, epsilon: float, delta: float, *, max_n: float = 1e9
) -> NDArray[np.float64]:
    """Accepted items ``m`` needed to certify ``epsilon`` when their error rate is ``error_rate``.

    The smallest ``m`` with ``P(Bin(m, epsilon) <= error_rate * m) <= delta`` (the binomial tail
    with a real-valued ``k``, via the regularised incomplete beta function, so that ``m`` is
    monotone in the rate). ``inf`` where ``error_rate >= epsilon`` (no sample size suffices) or
    above ``max_n``.

    Parameters
    ----------
    error_rate : array-like of float in [0, 1]
        Expected error rate among accepted items (e.g. the calibration estimate).
    epsilon, delta : float in (0, 1)

    Returns
    -------
    (shape of error_rate) float64: whole numbers or ``inf``.
    """
    from scipy.special import betainc

    eps = check_unit_interval(epsilon, "epsilon")
    d = check_unit_interval(delta, "delta")
    r = np.asarray(error_rate, dtype=np.float64)
    if np.any(~np.isfinite(r)) or np.any(r < 0) or np.any(r > 1):
        raise ValueError("error_rate must lie in [0, 1]")

    def passes(m: NDArray[np.float64]) -> NDArray[np.bool_]:
        k = r * m
        # P(Bin(m, eps) <= k) = I_{1-eps}(m - k, k + 1) for real 0 <= k < m
        p = betainc(np.maximum(m - k, 1e-300), k + 1.0, 1.0 - eps)
        return np.asarray(p <= d)

    feasible = r < eps
    m0 = float(min_certifiable_n(eps, d))  # the answer at rate 0; fewer never pass
    lo = np.full(r.shape, m0 - 1.0)  # invariant: passes(lo) is False (lo = 0 counts as failing)
    hi = np.full(r.shape, m0)
    todo = feasible & ~passes(hi)
    while np.any(todo):  # doubling until passes(hi)
        lo = np.where(todo, hi, lo)
        hi = np.where(todo, hi * 2.0, hi)
        todo &= hi <= max_n
        todo &= ~passes(hi)
    for _ in range(80):  # bisection: passes(hi), not passes(lo)
        gap = hi - lo > 1
        if not np.any(gap & feasible):
            break
        mid = np.floor((lo + hi) / 2.0)
        good = passes(mid)
        hi = np.where(gap & good, mid, hi)
        lo = np.where(gap & ~good, mid, lo)
    out = hi
    return np.where(feasible & (out <= max_n), out, np.inf)


def hoeffding_sample_size(error_rate: float, epsilon: float, delta: float) -> float:
    """Paper 000's Hoeffding sample size (eq. 3) for ``epsilon_a = epsilon - error_rate``.

    ``ceil(log(2/delta) / (2 (epsilon - error_rate)^2))``: the accepted items that pin the error
    rate down to within ``epsilon - error_rate`` with probability ``1 - delta``
    (:func:`calibkit.metrics.pac.pac_sample_size` with ``epsilon_ece = epsilon - error_rate``,
    ``delta_ece = 2 delta``). ``inf`` when ``error_rate >= epsilon``. It ignores that the errors
    are Bernoulli, so it is larger than :func:`labels_needed`.
    """
    from calibkit.metrics.pac import pac_sample_size

    eps = check_unit_interval(epsilon, "epsilon")
    d = check_unit_interval(delta, "delta")
    r = float(error_rate)
    if not (0.0 <= r <= 1.0):
        raise ValueError(f"error_rate must lie in [0, 1]; got {r}")
    if r >= eps:
        return math.inf
    if 2.0 * d >= 1.0:  # outside pac_sample_size's domain (delta_ece < 1); same formula
        return float(math.ceil(math.log(2.0 / d) / (2.0 * (eps - r) ** 2)))
    return float(pac_sample_size(eps - r, 2.0 * d))


def calibration_size_needed(
    error_rate: float, coverage: float, epsilon: float, delta: float
) -> tuple[float, float]:
    """Labelled calibration items needed to certify ``epsilon`` for a rule that accepts a share
    ``coverage`` of items whose error rate is ``error_rate``.

    Returns
    -------
    (exact, hoeffding) : ``ceil(labels_needed / coverage)`` and the same with paper 000's
    Hoeffding count (:func:`hoeffding_sample_size`); ``inf`` when impossible.
    """
    q = float(coverage)
    if not (0.0 <= q <= 1.0):
        raise ValueError(f"coverage must lie in [0, 1]; got {q}")
    if q == 0.0:
        return math.inf, math.inf
    m = float(labels_needed(error_rate, epsilon, delta))
    h = hoeffding_sample_size(float(error_rate), epsilon, delta)
    return (
        math.ceil(m / q) if math.isfinite(m) else math.inf,
        math.ceil(h / q) if math.isfinite(h) else math.inf,
    )


def batch_pvalue(
    k_cal: ArrayLike, n_cal: ArrayLike, m_batch: ArrayLike, epsilon: float
) -> NDArray[np.float64]:
    """p-value of ``H: more than floor(epsilon m) of the m accepted batch items are wrong``.

    Calibration and batch items are exchangeable, so given the ``n + m`` accepted items and their
    ``T`` errors, the calibration errors ``k`` are hypergeometric ``Hyp(n + m, T, n)``; under
    ``H``, ``T >= k + floor(epsilon m) + 1``, and the p-value is that hypergeometric CDF at ``k``
    with ``T = k + floor(epsilon m) + 1`` (the CDF only falls as ``T`` grows). It certifies the
    error rate **realised on this batch**, not the population rate.

    Parameters
    ----------
    k_cal, n_cal : errors and accepted calibration items; m_batch : accepted batch items
        (broadcastable int arrays). ``m = 0`` gives 0 (nothing accepted, nothing wrong).
    epsilon : float in (0, 1).

    Returns
    -------
    float64 p-values. Entries with ``k > epsilon n`` are set to 1 (never rejected: conservative,
    still valid) to keep the exact summation short.
    """
    eps = check_unit_interval(epsilon, "epsilon")
    k, n = _counts(k_cal, n_cal)
    m = np.asarray(m_batch, dtype=np.float64)
    k, n, m = np.broadcast_arrays(k, n, m)
    if np.any(m < 0) or np.any(m != np.round(m)):
        raise ValueError("m_batch must be non-negative whole numbers")
    e0 = np.floor(eps * m) + 1.0
    T = k + e0
    N = n + m
    out = np.ones(k.shape, dtype=np.float64)
    out[m == 0] = 0.0
    todo = (m > 0) & (k <= eps * n) & (T <= N)
    if not np.any(todo):
        return out
    from scipy.special import gammaln

    kk, nn, TT, NN = k[todo], n[todo], T[todo], N[todo]

    def lchoose(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1))

    lo = np.maximum(0.0, nn - (NN - TT))  # smallest possible number of calibration errors
    # log pmf at k, then the left tail summed downwards in linear space relative to pmf(k):
    # pmf(i - 1) / pmf(i) = i (N - T - n + i) / ((T - i + 1)(n - i + 1)); in the left tail the
    # terms shrink geometrically, so the sum stops once they are negligible
    lpk = lchoose(TT, kk) + lchoose(NN - TT, nn - kk) - lchoose(NN, nn)
    term = np.ones_like(kk)
    total = np.ones_like(kk)
    i = kk.copy()
    idx = np.flatnonzero(i > lo)
    while idx.size:
        ii = i[idx]
        r = ii * (NN[idx] - TT[idx] - nn[idx] + ii) / ((TT[idx] - ii + 1.0) * (nn[idx] - ii + 1.0))
        t = term[idx] * r
        term[idx] = t
        total[idx] += t
        i[idx] = ii - 1.0
        keep = (i[idx] > lo[idx]) & (t > 1e-17 * total[idx])
        idx = idx[keep]
    acc = lpk + np.log(total)
    out[todo] = np.clip(np.exp(acc), 0.0, 1.0)
    return out
