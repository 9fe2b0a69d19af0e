"""In-task selection of calibration examples under a label budget (paper 001, section 2.2.2).

Three strategies pick which ``budget`` items of a task to label for fitting a calibrator:

* **U** - :func:`uniform_sample`: simple random sampling without replacement;
* **SE** - :func:`stratified_by_error_sample`: stratified sampling over strata of the
  *surrogate calibration error*, equal allocation per stratum by default;
* **IE** - :func:`importance_by_error_sample`: fixed-size probability-proportional-to-size
  sampling, inclusion probability of item ``i`` proportional to its surrogate error.

The surrogate error (:func:`surrogate_error`) is, as the paper defines it, "the absolute difference
between the uncalibrated score and the top-performing out-of-task calibration score". The *score*
is the paper's step-4 prediction score ``s = z_a``: the probability that the (uncalibrated or
calibrated) softmax gives to the **LLM's answer** ``a``. We take ``a`` to be the argmax of the
uncalibrated class scores (the LLM's answer in one-forward-pass scoring) and read column ``a`` under
both the uncalibrated and the out-of-task calibrated softmax, so that

    e_i = | z_uncal[i, a_i] - z_oot[i, a_i] |,   a_i = argmax_c z_uncal[i, c].

Temperature scaling never changes the argmax, so for it this is the difference of top-label
confidences; a vector-scaling calibrator may move the argmax, and we still read the column of the
LLM's answer, as the paper's step 4 does ("conditioned on the LLM's predicted answer ... keep the
corresponding scaled logit").

Every sampler returns **sorted** ``int64`` indices into the pool, draws its randomness only from
``seed``, and returns every index when ``budget >= n`` (no sampling is needed then).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._validation import check_probs

__all__ = [
    "STRATEGIES",
    "answer_confidence",
    "error_strata",
    "importance_by_error_sample",
    "inclusion_probabilities",
    "sample_calibration_set",
    "stratified_by_error_sample",
    "surrogate_error",
    "uniform_sample",
]

Seed = int | np.random.Generator


# --------------------------------------------------------------------------- validation helpers
def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an int or a numpy Generator; got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def _check_budget(budget: Any) -> int:
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer):
        raise ValueError(f"budget must be a non-negative int; got {budget!r}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0; got {budget}")
    return int(budget)


def _check_errors(errors: ArrayLike, name: str = "surrogate_error") -> NDArray[np.float64]:
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,); got shape {e.shape}")
    if e.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(e)):
        raise ValueError(f"{name} contains NaN or infinite values ({int(np.sum(~np.isfinite(e)))})")
    if e.min() < 0:
        raise ValueError(f"{name} must be >= 0; got min {e.min():.4g}")
    return e


def _pool_size(pool: ArrayLike | int) -> int:
    if isinstance(pool, int | np.integer) and not isinstance(pool, bool):
        if pool <= 0:
            raise ValueError(f"the pool size must be >= 1; got {pool}")
        return int(pool)
    a = np.asarray(pool)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"pool must be a positive int or a non-empty 1-D array; got shape {a.shape}"
        )
    return int(a.shape[0])


# --------------------------------------------------------------------------- surrogate error
def answer_confidence(probs: ArrayLike, answer: ArrayLike | None = None) -> NDArray[np.float64]:
    """Prediction score ``s = z_a`` of paper 001 (step 4).

    Parameters
    ----------
    probs : (n, K) probabilities (not logits)
        Class probabilities, uncalibrated or calibrated.
    answer : (n,) int, optional
        The LLM's answer per item; defaults to ``argmax(probs, axis=1)``.

    Returns
    -------
    (n,) float64: ``probs[i, answer[i]]``.
    """
    p = check_probs(probs, name="probs")
    if p.ndim != 2:
        raise ValueError(f"probs must be (n, K) class probabilities; got shape {p.shape}")
    if answer is None:
        a = np.argmax(p, axis=1)
    else:
        a = np.asarray(answer)
        if a.shape != (p.shape[0],):
            raise ValueError(f"answer must have shape ({p.shape[0]},); got {a.shape}")
        if a.dtype.kind not in "iu":
            raise ValueError(f"answer must be integer class indices; got dtype {a.dtype}")
        if a.min() < 0 or a.max() >= p.shape[1]:
            raise ValueError(f"answer has values outside [0, {p.shape[1]})")
    return np.ascontiguousarray(p[np.arange(p.shape[0]), a], dtype=np.float64)


def surrogate_error(
    uncalibrated_scores: ArrayLike, oot_calibrated_scores: ArrayLike
) -> NDArray[np.float64]:
    """Surrogate calibration error ``|s_uncal - s_oot|`` used by SE and IE.

    Parameters
    ----------
    uncalibrated_scores : (n,) or (n, K) probabilities
        Either the prediction scores ``s = z_a`` (1-D) or the uncalibrated class probabilities
        (2-D); in the 2-D case ``a = argmax`` of each row (the LLM's answer).
    oot_calibrated_scores : same shape, probabilities
        The same items under the best out-of-task calibrator (1-D: its score of the LLM's answer;
        2-D: its class probabilities, read at the LLM's answer ``a``).

    Returns
    -------
    (n,) float64 in ``[0, 1]``.
    """
    u = np.asarray(uncalibrated_scores, dtype=np.float64)
    c = np.asarray(oot_calibrated_scores, dtype=np.float64)
    if u.shape != c.shape:
        raise ValueError(
            f"uncalibrated_scores and oot_calibrated_scores must have the same shape; "
            f"got {u.shape} and {c.shape}"
        )
    if u.ndim == 1:
        su = check_probs(u, name="uncalibrated_scores")
        sc = check_probs(c, name="oot_calibrated_scores")
    elif u.ndim == 2:
        pu = check_probs(u, name="uncalibrated_scores")
        a = np.argmax(pu, axis=1)
        su = answer_confidence(pu, a)
        sc = answer_confidence(check_probs(c, name="oot_calibrated_scores"), a)
    else:
        raise ValueError(f"scores must be (n,) or (n, K); got shape {u.shape}")
    return np.abs(su - sc)


# --------------------------------------------------------------------------- U
def uniform_sample(
    surrogate_error: ArrayLike | int, budget: int, *, seed: Seed
) -> NDArray[np.int64]:
    """**U**: ``budget`` indices drawn uniformly without replacement.

    Parameters
    ----------
    surrogate_error : (n,) array or int
        Only its length ``n`` is used (an int ``n`` is accepted), so all samplers share one
        signature.
    budget : int
        Number of items to label; ``budget >= n`` returns all ``n`` indices.
    seed : int or numpy Generator

    Returns
    -------
    (min(budget, n),) sorted int64 indices.
    """
    n = _pool_size(surrogate_error)
    b = _check_budget(budget)
    rng = _rng(seed)
    if b >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=b, replace=False)).astype(np.int64)


# --------------------------------------------------------------------------- SE
def error_strata(
    surrogate_error: ArrayLike,
    n_strata: int = 5,
    *,
    strata: Literal["uniform", "quantile"] = "uniform",
) -> NDArray[np.int64]:
    """Stratum index of each item: partitions of the surrogate-error values.

    Parameters
    ----------
    surrogate_error : (n,) non-negative floats
    n_strata : int
        Number of partitions before dropping empty ones.
    strata : "uniform" or "quantile"
        ``uniform``: equal-width intervals over ``[min, max]`` of the errors (the high-error tail
        gets its own strata, which is what lets SE oversample it); ``quantile``: equal-count
        intervals (tied edges are merged).

    Returns
    -------
    (n,) int64 stratum ids, renumbered ``0..S-1`` over the non-empty strata in increasing error.
    """
    e = _check_errors(surrogate_error)
    if isinstance(n_strata, bool) or not isinstance(n_strata, int | np.integer) or n_strata < 1:
        raise ValueError(f"n_strata must be an int >= 1; got {n_strata!r}")
    lo, hi = float(e.min()), float(e.max())
    if hi <= lo or n_strata == 1:
        return np.zeros(e.shape[0], dtype=np.int64)
    if strata == "uniform":
        inner = np.linspace(lo, hi, int(n_strata) + 1)[1:-1]
    elif strata == "quantile":
        inner = np.unique(np.quantile(e, np.linspace(0.0, 1.0, int(n_strata) + 1)[1:-1]))
    else:
        raise ValueError(f"strata must be 'uniform' or 'quantile'; got {strata!r}")
    raw = np.searchsorted(inner, e, side="right")
    _, ids = np.unique(raw, return_inverse=True)
    return ids.astype(np.int64)


def _equal_allocation(
    sizes: NDArray[np.int64], budget: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Split ``budget`` as evenly as possible over strata, capped by their sizes (water-filling)."""
    alloc = np.zeros_like(sizes)
    active = [int(s) for s in np.flatnonzero(sizes > 0)]
    left = budget
    while left > 0 and active:
        share, rem = divmod(left, len(active))
        full = [s for s in active if sizes[s] - alloc[s] <= share]
        if full:
            for s in full:
                left -= int(sizes[s] - alloc[s])
                alloc[s] = sizes[s]
                active.remove(s)
            continue
        for s in active:
            alloc[s] += share
        left -= share * len(active)
        if rem:
            for s in rng.choice(np.asarray(active), size=rem, replace=False):
                alloc[int(s)] += 1
            left -= rem
    return alloc


def _proportional_allocation(
    sizes: NDArray[np.int64], budget: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Largest-remainder allocation proportional to stratum size (ties broken at random)."""
    quota = budget * sizes / sizes.sum()
    alloc = np.floor(quota).astype(np.int64)
    rem = budget - int(alloc.sum())
    if rem:
        frac = quota - alloc + rng.uniform(0, 1e-9, size=sizes.shape)
        alloc[np.argsort(-frac)[:rem]] += 1
    return np.minimum(alloc, sizes)


def stratified_by_error_sample(
    surrogate_error: ArrayLike,
    budget: int,
    *,
    seed: Seed,
    n_strata: int = 5,
    strata: Literal["uniform", "quantile"] = "uniform",
    allocation: Literal["equal", "proportional"] = "equal",
) -> NDArray[np.int64]:
    """**SE**: stratified sampling over partitions of the surrogate error.

    The errors are cut into ``n_strata`` partitions (:func:`error_strata`); the budget is split
    over the non-empty strata (``equal``: as evenly as the stratum sizes allow, the surplus of a
    small stratum going to the others; ``proportional``: by stratum size), then each stratum is
    sampled uniformly without replacement. With equal allocation every non-empty stratum gets at
    least one item whenever ``budget >= number of strata``; with a smaller budget the strata that
    get one item are drawn at random.

    Parameters
    ----------
    surrogate_error : (n,) non-negative floats
    budget : int
    seed : int or numpy Generator
    n_strata, strata : see :func:`error_strata`
    allocation : "equal" (default) or "proportional"

    Returns
    -------
    (min(budget, n),) sorted int64 indices.
    """
    e = _check_errors(surrogate_error)
    b = _check_budget(budget)
    rng = _rng(seed)
    n = e.shape[0]
    if b >= n:
        return np.arange(n, dtype=np.int64)
    ids = error_strata(e, n_strata, strata=strata)
    sizes = np.bincount(ids).astype(np.int64)
    if allocation == "equal":
        alloc = _equal_allocation(sizes, b, rng)
    elif allocation == "proportional":
        alloc = _proportional_allocation(sizes, b, rng)
        short = b - int(alloc.sum())
        if short:  # capped strata: fill the rest evenly
            alloc += _equal_allocation(sizes - alloc, short, rng)
    else:
        raise ValueError(f"allocation must be 'equal' or 'proportional'; got {allocation!r}")
    picked = [
        rng.choice(np.flatnonzero(ids == s), size=int(k), replace=False)
        for s, k in enumerate(alloc)
        if k > 0
    ]
    out = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    return np.sort(out).astype(np.int64)


# --------------------------------------------------------------------------- IE
def inclusion_probabilities(weights: ArrayLike, budget: int) -> NDArray[np.float64]:
    """First-order inclusion probabilities of a fixed-size sample proportional to ``weights``.

    ``pi_i = min(1, c * w_i)`` with ``c`` chosen so that ``sum(pi) = min(budget, n)`` (items whose
    share would exceed 1 are taken with certainty and the rest re-scaled). If fewer than
    ``budget`` items have positive weight, all of them get ``pi = 1`` and the remaining budget is
    spread uniformly over the zero-weight items.

    Parameters
    ----------
    weights : (n,) non-negative floats (e.g. surrogate errors)
    budget : int

    Returns
    -------
    (n,) float64 in ``[0, 1]`` summing to ``min(budget, n)``.
    """
    w = _check_errors(weights, name="weights")
    b = _check_budget(budget)
    n = w.shape[0]
    if b >= n:
        return np.ones(n)
    pi = np.zeros(n)
    if b == 0:
        return pi
    pos = w > 0
    n_pos = int(pos.sum())
    if n_pos <= b:
        pi[pos] = 1.0
        rest = b - n_pos
        if rest:
            pi[~pos] = rest / (n - n_pos)
        return pi
    certain = np.zeros(n, dtype=bool)
    while True:
        left = b - int(certain.sum())
        free = pos & ~certain
        scale = left / w[free].sum()
        newly = free & (w * scale >= 1.0)
        if not newly.any():
            pi[free] = w[free] * scale
            pi[certain] = 1.0
            return np.clip(pi, 0.0, 1.0)
        certain |= newly


def importance_by_error_sample(
    surrogate_error: ArrayLike,
    budget: int,
    *,
    seed: Seed,
    floor: float = 0.0,
) -> NDArray[np.int64]:
    """**IE**: fixed-size sample with inclusion probability proportional to the surrogate error.

    Uses randomised systematic PPS sampling (Madow 1949): the items are put in a random order,
    laid end to end on ``[0, budget)`` with lengths ``pi_i`` from :func:`inclusion_probabilities`,
    and the points ``u, u + 1, ..., u + budget - 1`` (``u ~ U[0, 1)``) pick the items they land in.
    This yields exactly ``budget`` distinct items and inclusion probabilities **exactly** equal to
    ``pi_i`` (an item with zero error is never picked unless the positive-error items cannot fill
    the budget).

    Parameters
    ----------
    surrogate_error : (n,) non-negative floats
    budget : int
    seed : int or numpy Generator
    floor : float, default 0
        Added to every error before computing the probabilities, to give zero-error items a
        chance (the paper uses mass proportional to the error itself, i.e. ``floor = 0``).

    Returns
    -------
    (min(budget, n),) sorted int64 indices.
    """
    e = _check_errors(surrogate_error)
    b = _check_budget(budget)
    if not np.isfinite(floor) or floor < 0:
        raise ValueError(f"floor must be a finite float >= 0; got {floor!r}")
    rng = _rng(seed)
    n = e.shape[0]
    if b >= n:
        return np.arange(n, dtype=np.int64)
    if b == 0:
        return np.zeros(0, dtype=np.int64)
    pi = inclusion_probabilities(e + floor, b)
    order = rng.permutation(n)
    cum = np.cumsum(pi[order])
    cum *= b / cum[-1]  # exact total, so every point u + m falls inside [0, b)
    points = rng.uniform() + np.arange(b)
    pos = np.minimum(np.searchsorted(cum, points, side="right"), n - 1)
    picked = order[pos]
    if np.unique(picked).size != b:  # pragma: no cover - only reachable through rounding
        raise RuntimeError("systematic PPS sampling picked an item twice; please report this")
    return np.sort(picked).astype(np.int64)


# --------------------------------------------------------------------------- dispatcher
STRATEGIES: dict[str, Callable[..., NDArray[np.int64]]] = {
    "U": uniform_sample,
    "SE": stratified_by_error_sample,
    "IE": importance_by_error_sample,
}


def sample_calibration_set(
    strategy: str, surrogate_error: ArrayLike, budget: int, *, seed: Seed, **kwargs: Any
) -> NDArray[np.int64]:
    """Dispatch to a sampler by its paper name: ``"U"``, ``"SE"`` or ``"IE"`` (case-insensitive);
    ``kwargs`` go to the sampler (e.g. ``n_strata`` for SE)."""
    key = str(strategy).upper()
    if key not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[key](surrogate_error, budget, seed=seed, **kwargs)
