"""Numerically stable conversions between logits and probabilities.

Conventions used across calibkit:

* a *logit* array is unnormalised log-probability: ``(n, K)`` class logits, or ``(n,)``
  binary logits ``log p / (1 - p)`` of the positive class;
* a *probability* array is either ``(n, K)`` rows on the simplex, or ``(n,)`` holding
  ``P(y = 1)`` of a binary problem.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "PROB_FLOOR",
    "log_softmax",
    "logit",
    "probs_to_logits",
    "sigmoid",
    "softmax",
    "to_probs",
]

#: the one floor calibkit puts under a probability before taking its log: ``log(0)`` becomes
#: ``log(1e-12) = -27.63`` in :func:`probs_to_logits`, ``Scores.from_probs`` and the NLL of
#: probabilities (:func:`calibkit.metrics.nll`)
PROB_FLOOR = 1e-12
_EPS = PROB_FLOOR


def softmax(logits: ArrayLike, axis: int = -1) -> NDArray[np.float64]:
    """Softmax of ``logits`` along ``axis`` (max-shifted, so it never overflows)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - np.max(z, axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= np.sum(z, axis=axis, keepdims=True)
    return z


def log_softmax(logits: ArrayLike, axis: int = -1) -> NDArray[np.float64]:
    """Log-softmax of ``logits`` along ``axis``."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - np.max(z, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def sigmoid(x: ArrayLike) -> NDArray[np.float64]:
    """Logistic function, stable for large ``|x|``."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def logit(p: ArrayLike, eps: float = _EPS) -> NDArray[np.float64]:
    """Inverse sigmoid ``log(p / (1 - p))``, with ``p`` clipped to ``[eps, 1 - eps]``."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def to_probs(logits: ArrayLike) -> NDArray[np.float64]:
    """Logits to probabilities: sigmoid for ``(n,)`` binary logits, softmax for ``(n, K)``."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        return sigmoid(z)
    if z.ndim == 2:
        return softmax(z, axis=1)
    raise ValueError(f"logits must be 1-D (binary) or 2-D (n, K); got shape {z.shape}")


def probs_to_logits(probs: ArrayLike, eps: float = _EPS) -> NDArray[np.float64]:
    """Probabilities to logits: ``logit(p)`` for ``(n,)``, clipped ``log(p)`` for ``(n, K)``.

    The ``(n, K)`` result is a log-probability, a valid logit up to a per-row constant.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        return logit(p, eps)
    if p.ndim == 2:
        return np.log(np.clip(p, eps, 1.0))
    raise ValueError(f"probs must be 1-D (binary) or 2-D (n, K); got shape {p.shape}")
