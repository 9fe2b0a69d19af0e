"""Voting rules over K models' (answer, confidence) pairs, vectorised over items.

All functions take ``answers`` ``(n, k)`` int class indices and, where needed, ``scores`` ``(n, k)``
confidences of those answers (probabilities, not logits), and return ``(n,)`` int64 answers.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["majority_vote", "most_confident", "vote_counts", "weighted_majority_vote"]


def _check(
    answers: ArrayLike, scores: ArrayLike | None, n_classes: int | None
) -> tuple[NDArray[np.int64], NDArray[np.float64] | None, int]:
    a = np.asarray(answers)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"answers must be (n, k) with k >= 1; got shape {a.shape}")
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and a.size and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise ValueError(f"answers must be integer class indices; got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if a.size and a.min() < 0:
        raise ValueError(f"answers must be >= 0; got {a.min()}")
    c = int(a.max()) + 1 if n_classes is None else int(n_classes)
    if a.size and a.max() >= c:
        raise ValueError(f"answers has class {a.max()} but n_classes={c}")
    s = None
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != a.shape:
            raise ValueError(f"scores shape {s.shape} differs from answers shape {a.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError("scores contains NaN or infinite values")
    return a, s, c


def vote_counts(
    answers: ArrayLike, n_classes: int | None = None, weights: ArrayLike | None = None
) -> NDArray[np.float64]:
    """``(n, C)`` votes: ``V[i, c] = sum_k w[i, k] * 1[answers[i, k] == c]`` (``w = 1`` if None)."""
    a, w, c = _check(answers, weights, n_classes)
    n, k = a.shape
    v = np.zeros((n, c), dtype=np.float64)
    rows = np.arange(n)
    for j in range(k):
        # one entry per row per column j, so fancy-index += has no duplicate targets
        v[rows, a[:, j]] += 1.0 if w is None else w[:, j]
    return v


def weighted_majority_vote(
    answers: ArrayLike, scores: ArrayLike, n_classes: int | None = None
) -> NDArray[np.int64]:
    """Paper 001 equation (1): ``a = argmax_c sum_k s_k 1[a_k = c]``.

    Ties go to the lowest class index.
    """
    v = vote_counts(answers, n_classes, weights=scores)
    return np.argmax(v, axis=1).astype(np.int64)


def majority_vote(
    answers: ArrayLike, n_classes: int | None = None, scores: ArrayLike | None = None
) -> NDArray[np.int64]:
    """Plain (unweighted) majority vote.

    Ties between equally voted classes are broken by the summed confidence of their voters when
    ``scores`` is given, then by the lowest class index.
    """
    v = vote_counts(answers, n_classes)
    if scores is not None:
        w = vote_counts(answers, v.shape[1], weights=scores)
        top = v == v.max(axis=1, keepdims=True)
        v = np.where(top, w, -np.inf)
    return np.argmax(v, axis=1).astype(np.int64)


def most_confident(answers: ArrayLike, scores: ArrayLike) -> NDArray[np.int64]:
    """The answer of the most confident model (ties: the earliest, i.e. cheapest, model)."""
    a, s, _ = _check(answers, scores, None)
    assert s is not None
    j = np.argmax(s, axis=1)
    return a[np.arange(a.shape[0]), j]
