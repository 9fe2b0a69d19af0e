"""Fast, memory-lean input handling shared by every metric.

The checks are those of :mod:`calibkit._validation` (same messages), but done in cache-sized
row blocks on the caller's dtype, so an ``(n, K)`` float32 array is never copied to float64 nor
materialised again as a boolean mask: peak extra memory is ``O(n + block)``, not ``O(n K)``.
Half-precision input (float16, bfloat16, torch tensors) is converted to float64 once; its
row-sum tolerance is that of its source dtype (:func:`calibkit._validation.simplex_atol`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._math import sigmoid
from calibkit._validation import as_float_array, check_labels, simplex_atol, simplex_error

__all__ = [
    "as_scores",
    "as_scores_eps",
    "binary_outcomes",
    "full_probs_blocks",
    "label_prob_blocks",
    "score_ndim",
    "top_label_outcomes",
]

# elements per block: 2^18 float32 = 1 MiB, comfortably inside L2
_BLOCK_ELEMS = 1 << 18


def _block_rows(k: int) -> int:
    return max(256, _BLOCK_ELEMS // max(k, 1))


def score_ndim(scores: ArrayLike) -> int:
    """``ndim`` of an array-like without converting it (torch bfloat16 tensors have no numpy view)."""
    nd = getattr(scores, "ndim", None)
    return int(nd) if isinstance(nd, int) else int(np.ndim(scores))


def as_scores(scores: ArrayLike, *, from_logits: bool, name: str) -> NDArray[np.floating]:
    """Array view of ``scores`` as float32 or float64 (kept as given; other dtypes -> float64).

    Checks the shape only; values are checked block-wise by the callers.
    """
    return as_scores_eps(scores, from_logits=from_logits, name=name)[0]


def as_scores_eps(
    scores: ArrayLike, *, from_logits: bool, name: str
) -> tuple[NDArray[np.floating], float]:
    """:func:`as_scores` and the machine epsilon of the source dtype (for the row-sum check)."""
    a, eps = as_float_array(scores, name)
    if a.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, K); got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if a.ndim == 2 and a.shape[1] < 2:
        raise ValueError(f"{name} has {a.shape[1]} column(s); a (n, K) array needs K >= 2")
    return a, eps


def _name(from_logits: bool) -> str:
    return "logits" if from_logits else "probs"


def _check_prob_block(
    blk: NDArray[np.floating], start: int, name: str, eps: float = 2.0**-52
) -> None:
    lo, hi = blk.min(), blk.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(np.sum(~np.isfinite(blk)))
        raise ValueError(
            f"{name} contains NaN or infinite values ({bad} entries in rows {start}..)"
        )
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1] (got min={float(lo):.4g}, max={float(hi):.4g} in rows "
            f"{start}..); pass from_logits=True if these are logits"
        )
    if blk.ndim == 2:
        k = blk.shape[1]
        s = blk.sum(axis=1, dtype=np.float64)
        bad_rows = np.abs(s - 1.0) > simplex_atol(eps, k)
        if bad_rows.any():
            i = int(np.argmax(bad_rows))
            raise simplex_error(name, start + i, float(s[i]), k, eps)


def _check_logit_block(blk: NDArray[np.floating], start: int, name: str) -> None:
    hi = blk.max()
    if np.isnan(hi) or np.isnan(blk.min()):
        raise ValueError(
            f"{name} contains NaN values ({int(np.isnan(blk).sum())} entries in rows {start}..)"
        )
    if np.isposinf(hi):
        raise ValueError(f"{name} contains +inf")
    if blk.ndim == 2:
        rmax = blk.max(axis=1)
        if np.isneginf(rmax).any():
            i = int(np.argmax(np.isneginf(rmax)))
            raise ValueError(f"row {start + i} of {name} is all -inf (no class has any mass)")


def _blocks(n: int, k: int) -> Iterator[tuple[int, int]]:
    step = _block_rows(k)
    for s in range(0, n, step):
        yield s, min(n, s + step)


def _top_columns(
    blk: NDArray[np.floating],
) -> tuple[NDArray[np.floating], NDArray[np.intp], NDArray[np.floating], NDArray[np.floating]]:
    """``(max, argmax, row sum, row min)`` of a few-column block, one column at a time.

    For small K numpy's reductions over a short last axis are slow; K vectorised column passes
    are not. Ties keep the lowest index, as ``argmax`` does.
    """
    first = blk[:, 0]
    if blk.shape[1] == 2:
        second = blk[:, 1]
        pred2 = (second > first).astype(np.intp)
        return np.maximum(first, second), pred2, first + second, np.minimum(first, second)
    top = first.copy()
    pred = np.zeros(blk.shape[0], dtype=np.intp)
    total = first.copy()
    low = first.copy()
    for j in range(1, blk.shape[1]):
        c = blk[:, j]
        better = c > top
        np.copyto(top, c, where=better)
        np.putmask(pred, better, j)
        total += c
        np.minimum(low, c, out=low)
    return top, pred, total, low


_SMALL_K = 8


def top_label_outcomes(
    scores: ArrayLike, labels: ArrayLike, *, from_logits: bool = False
) -> tuple[NDArray[np.floating], NDArray[np.bool_]]:
    """Top-label ``(confidence, correct)`` of ``(n, K)`` scores, validated block-wise.

    A 1-D ``P(y=1)`` (or binary logit) is read as the two columns ``[1 - p, p]``
    (prediction ``p > 0.5``; ties go to class 0, as ``argmax`` does).

    Returns
    -------
    confidence : (n,) float32 or float64 (the input's float dtype)
    correct : (n,) bool
    """
    name = _name(from_logits)
    a, eps = as_scores_eps(scores, from_logits=from_logits, name=name)
    n = a.shape[0]
    if a.ndim == 1:
        p = _binary_probs(a, from_logits=from_logits, name=name)
        y = check_labels(labels, n, 2)
        pred1 = p > 0.5
        conf = np.where(pred1, p, 1.0 - p)
        return conf, pred1 == (y == 1)
    k = a.shape[1]
    y = check_labels(labels, n, k)
    conf = np.empty(n, dtype=a.dtype)
    correct = np.empty(n, dtype=bool)
    for s, e in _blocks(n, k):
        blk = a[s:e]
        if from_logits:
            _check_logit_block(blk, s, name)
            pred = blk.argmax(axis=1)
            top = np.take_along_axis(blk, pred[:, None], axis=1)[:, 0]
            # softmax of the top class = 1 / sum_j exp(z_j - z_max)
            conf[s:e] = 1.0 / np.exp(blk - top[:, None]).sum(axis=1)
        else:
            if k <= _SMALL_K:
                top, pred, total, low = _top_columns(blk)
            else:
                pred = blk.argmax(axis=1)
                top = np.take_along_axis(blk, pred[:, None], axis=1)[:, 0]
                # row sums as a BLAS mat-vec: ~2x numpy's sum(axis=1); NaN/inf propagate
                total = blk @ np.ones(k, dtype=blk.dtype)
                low = blk.min()
            _check_prob_summary(blk, s, name, total, low, top, eps)
            conf[s:e] = top
        correct[s:e] = pred == y[s:e]
    return conf, correct


def _check_prob_summary(
    blk: NDArray[np.floating],
    start: int,
    name: str,
    total: NDArray[np.floating],
    low: NDArray[np.floating] | np.floating,
    top: NDArray[np.floating],
    eps: float,
) -> None:
    """The checks of :func:`_check_prob_block` from per-row (sum, min, max): NaN and inf make the
    row sum non-finite, so no extra pass over the block is needed on valid input."""
    ok_sum = np.abs(total - 1.0) <= simplex_atol(eps, blk.shape[1])  # False for NaN / inf rows
    if ok_sum.all() and np.min(low) >= 0.0 and top.max() <= 1.0:
        return
    _check_prob_block(blk, start, name, eps)  # finds and names the problem
    raise AssertionError("unreachable: block failed the summary check but passed the full check")


def _binary_probs(a: NDArray[np.floating], *, from_logits: bool, name: str) -> NDArray[np.floating]:
    if from_logits:
        if np.isnan(a).any():
            raise ValueError(f"{name} contains NaN values ({int(np.isnan(a).sum())} entries)")
        return sigmoid(a)
    _check_prob_block(a, 0, name)
    return a


def binary_outcomes(
    scores: ArrayLike, labels: ArrayLike, *, from_logits: bool = False
) -> tuple[NDArray[np.floating], NDArray[np.bool_]]:
    """``(P(y=1), y == 1)`` of a 1-D binary score, validated (labels must be 0/1)."""
    name = _name(from_logits)
    a = as_scores(scores, from_logits=from_logits, name=name)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D here; got shape {a.shape}")
    p = _binary_probs(a, from_logits=from_logits, name=name)
    y = check_labels(labels, a.shape[0], 2)
    return p, y == 1


def full_probs_blocks(
    scores: ArrayLike, labels: ArrayLike, *, from_logits: bool = False
) -> tuple[int, int, NDArray[np.int64], Iterator[tuple[int, NDArray[np.floating]]]]:
    """Validated ``(n, K)`` probabilities as an iterator of ``(start, block)`` row blocks.

    1-D input is expanded to ``[1 - p, p]`` (K = 2). With ``from_logits`` each block is
    softmaxed. Returns ``(n, K, labels, blocks)``.
    """
    name = _name(from_logits)
    a, eps = as_scores_eps(scores, from_logits=from_logits, name=name)
    n = a.shape[0]
    if a.ndim == 1:
        p = _binary_probs(a, from_logits=from_logits, name=name)
        y = check_labels(labels, n, 2)
        two = np.stack([1.0 - p, p], axis=1)
        return n, 2, y, iter([(0, two)])
    k = a.shape[1]
    y = check_labels(labels, n, k)

    def gen() -> Iterator[tuple[int, NDArray[np.floating]]]:
        for s, e in _blocks(n, k):
            blk = a[s:e]
            if from_logits:
                _check_logit_block(blk, s, name)
                z = blk - blk.max(axis=1, keepdims=True)
                np.exp(z, out=z)
                z /= z.sum(axis=1, keepdims=True)
                yield s, z
            else:
                _check_prob_block(blk, s, name, eps)
                yield s, blk

    return n, k, y, gen()


def label_prob_blocks(
    scores: ArrayLike, labels: ArrayLike, *, from_logits: bool = False
) -> tuple[int, Iterator[tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]]]:
    """Validated ``(n, K)`` scores as blocks of ``(p_y, log p_y, sum_k p_k^2)``, float64.

    With ``from_logits``, ``log p_y`` is the exact log-softmax (no clipping). Returns ``(n, blocks)``.
    """
    name = _name(from_logits)
    a, eps = as_scores_eps(scores, from_logits=from_logits, name=name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be (n, K) here; got shape {a.shape}")
    n, k = a.shape
    y = check_labels(labels, n, k)

    def gen() -> Iterator[tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]]:
        for s, e in _blocks(n, k):
            blk = a[s:e]
            yb = y[s:e, None]
            if from_logits:
                _check_logit_block(blk, s, name)
                z = blk.astype(np.float64)
                z -= z.max(axis=1, keepdims=True)
                ez = np.exp(z)
                se = ez.sum(axis=1)
                lpy = np.take_along_axis(z, yb, axis=1)[:, 0] - np.log(se)
                ez /= se[:, None]
                py = np.take_along_axis(ez, yb, axis=1)[:, 0]
                sq = np.einsum("ij,ij->i", ez, ez)
            else:
                _check_prob_block(blk, s, name, eps)
                b = blk.astype(np.float64, copy=False)
                py = np.take_along_axis(b, yb, axis=1)[:, 0]
                with np.errstate(divide="ignore"):
                    lpy = np.log(py)
                sq = np.einsum("ij,ij->i", b, b)
            yield py, lpy, sq

    return n, gen()
