"""One-vs-rest plumbing for calibrators that fit one binary map per class.

A 2-class problem (1-D input or ``(n, 2)``) gets a single binary map on the positive class; a
``K > 2`` problem gets ``K`` maps whose outputs are renormalised to sum to 1 (rows where every
map returns 0 become uniform), as scikit-learn's ``CalibratedClassifierCV``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray


def binary_columns(
    X: NDArray[np.float64], kind: Literal["logits", "probs"]
) -> list[NDArray[np.float64]]:
    """The 1-D score of each binary sub-problem.

    1-D input: itself. ``(n, 2)``: ``z1 - z0`` for logits, ``p1`` for probabilities.
    ``(n, K > 2)``: each column.
    """
    if X.ndim == 1:
        return [X]
    if X.shape[1] == 2:
        return [X[:, 1] - X[:, 0]] if kind == "logits" else [X[:, 1]]
    return [X[:, j] for j in range(X.shape[1])]


def binary_targets(y: NDArray[np.int64], n_classes: int) -> list[NDArray[np.float64]]:
    """``1[y == positive class]`` of each sub-problem (class 1 for a 2-class problem)."""
    if n_classes == 2:
        return [(y == 1).astype(np.float64)]
    return [(y == j).astype(np.float64) for j in range(n_classes)]


def combine(cols: list[NDArray[np.float64]], n_classes: int) -> NDArray[np.float64]:
    """Per-sub-problem probabilities -> ``(n, K)`` rows summing to 1."""
    if n_classes == 2:
        p = np.clip(cols[0], 0.0, 1.0)
        return np.stack([1.0 - p, p], axis=1)
    P = np.clip(np.stack(cols, axis=1), 0.0, None)
    tot = P.sum(axis=1, keepdims=True)
    out = np.full_like(P, 1.0 / n_classes)
    np.divide(P, tot, out=out, where=tot > 0)
    return out
