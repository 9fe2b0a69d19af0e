"""Input checks shared by every public function: clear ``ValueError`` messages naming the problem."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._math import to_probs

__all__ = ["check_labels", "check_logits", "check_probs", "check_scores_input", "top_label"]

SIMPLEX_ATOL = 1e-4


def check_probs(probs: ArrayLike, name: str = "probs") -> NDArray[np.float64]:
    """Validate probabilities: ``(n,)`` in ``[0, 1]`` or ``(n, K)`` rows summing to 1; finite."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, K); got shape {p.shape}")
    if p.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if p.ndim == 2 and p.shape[1] < 2:
        raise ValueError(f"{name} has {p.shape[1]} column(s); a (n, K) array needs K >= 2")
    if not np.all(np.isfinite(p)):
        raise ValueError(
            f"{name} contains NaN or infinite values ({int(np.sum(~np.isfinite(p)))} entries)"
        )
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1] (got min={p.min():.4g}, max={p.max():.4g}); "
            "pass from_logits=True if these are logits"
        )
    if p.ndim == 2:
        s = p.sum(axis=1)
        bad = np.abs(s - 1.0) > SIMPLEX_ATOL
        if np.any(bad):
            i = int(np.argmax(bad))
            raise ValueError(
                f"rows of {name} must sum to 1 (row {i} sums to {s[i]:.6g}); "
                "pass from_logits=True if these are logits"
            )
    return p


def check_logits(logits: ArrayLike, name: str = "logits") -> NDArray[np.float64]:
    """Validate logits: finite, ``(n,)`` binary or ``(n, K)`` with ``K >= 2``."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, K); got shape {z.shape}")
    if z.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if z.ndim == 2 and z.shape[1] < 2:
        raise ValueError(f"{name} has {z.shape[1]} column(s); a (n, K) array needs K >= 2")
    if np.isfinite(z.sum()):  # fast path: one pass, no temporaries
        return z
    if np.any(np.isnan(z)):
        raise ValueError(f"{name} contains NaN values ({int(np.isnan(z).sum())} entries)")
    if np.any(np.isposinf(z)):
        raise ValueError(f"{name} contains +inf")
    return z


def check_labels(
    labels: ArrayLike, n: int, n_classes: int | None = None, name: str = "labels"
) -> NDArray[np.int64]:
    """Validate integer class labels of length ``n`` in ``[0, n_classes)``."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,); got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has length {y.shape[0]} but the scores have {n} rows")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if not np.all(y == np.round(y)):
            raise ValueError(f"{name} must be integers; got non-integral floats")
    elif y.dtype.kind == "b":
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer class indices; got dtype {y.dtype}")
    yi = y.astype(np.int64)
    if yi.size and yi.min() < 0:
        raise ValueError(f"{name} must be >= 0; got {yi.min()}")
    if n_classes is not None and yi.size and yi.max() >= n_classes:
        raise ValueError(f"{name} has value {yi.max()} but there are only {n_classes} classes")
    return yi


def check_scores_input(
    scores: ArrayLike, labels: ArrayLike, *, from_logits: bool = False, name: str = "probs"
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Validate a (scores, labels) pair and return ``(probs, labels)``.

    ``scores`` are probabilities unless ``from_logits`` is true, in which case they are converted
    (sigmoid for ``(n,)``, softmax for ``(n, K)``). Binary ``(n,)`` inputs need labels in {0, 1}.
    """
    if from_logits:
        probs = to_probs(check_logits(scores, name="logits"))
    else:
        probs = check_probs(scores, name=name)
    k = 2 if probs.ndim == 1 else probs.shape[1]
    y = check_labels(labels, probs.shape[0], k)
    return probs, y


def top_label(probs: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Top-label ``(confidence, prediction)`` of ``(n, K)`` probabilities (ties: lowest index)."""
    pred = np.argmax(probs, axis=1)
    conf = probs[np.arange(probs.shape[0]), pred]
    return conf, pred.astype(np.int64)
