"""Input checks shared by every public function: clear ``ValueError`` messages naming the problem.

Probability rows must sum to 1 within a tolerance that follows the precision the numbers were
stored or computed in (:func:`simplex_atol`). Rounding each of ``K`` probabilities to a float
format with machine epsilon ``eps`` moves their sum by at most ``eps / 2`` (the errors are
relative to entries that sum to 1); summing in that format adds a random walk of about
``sqrt(K) eps / 2`` (the worst case ``K eps / 2`` is not met in practice: torch and numpy
softmax outputs stay below ``0.8 eps`` off for float16/bfloat16 up to ``K = 1000`` and ``37 eps``
for float32 at ``K = 50,000``). calibkit allows about twice that:

    ``atol = max(1e-4, (2 + sqrt(K)) * eps)``, with ``eps`` at least float32's ``2**-23``:

float64 and float32: 1e-4 (the bound calibkit always used, so nothing accepted before is
rejected now; rows rounded to 4 decimals sit at this edge) up to ``K ~ 700,000``;
float16 (``eps = 2**-10``): ``K = 2``: 3.3e-3, ``K = 10``: 5.0e-3; bfloat16 (``eps = 2**-7``):
``K = 2``: 2.7e-2, ``K = 10``: 4.0e-2. float64 arrays get float32's bound because they often
hold float32-computed values. Rows further off are an error; when they are within a half-precision
tolerance the message says so (renormalise, or pass the array in its original dtype) instead of
pointing to ``from_logits=True``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._math import to_probs

__all__ = [
    "SIMPLEX_ATOL",
    "as_float_array",
    "check_labels",
    "check_logits",
    "check_probs",
    "check_scores_input",
    "simplex_atol",
    "simplex_error",
    "source_eps",
    "top_label",
]

#: row-sum tolerance for probabilities read from text files (decimal rounding: 4 decimals and up)
SIMPLEX_ATOL = 1e-4

#: smallest row-sum tolerance (float64 and float32 data): the old fixed bound, so nothing that was
#: accepted before is rejected now; coarser formats (float16, bfloat16) get a wider one
SIMPLEX_ATOL_MIN = 1e-4

_EPS32 = 2.0**-23
#: machine epsilon of the float formats probabilities arrive in, by dtype name
_EPS_BY_NAME = {
    "float64": 2.0**-52,
    "double": 2.0**-52,
    "float32": _EPS32,
    "float": _EPS32,
    "float16": 2.0**-10,
    "half": 2.0**-10,
    "bfloat16": 2.0**-7,
}


def source_eps(x: Any) -> float:
    """Machine epsilon of the float format ``x`` is stored in (numpy, torch or ml_dtypes arrays);
    float64's for anything else (lists, integers)."""
    dt = getattr(x, "dtype", None)
    if dt is None:
        return _EPS_BY_NAME["float64"]
    name = str(dt).removeprefix("torch.")
    return _EPS_BY_NAME.get(name, _EPS_BY_NAME["float64"])


def simplex_atol(eps: float, k: int) -> float:
    """Row-sum tolerance of ``K``-class probabilities stored with machine epsilon ``eps``:
    ``max(1e-4, (2 + sqrt(K)) * max(eps, 2**-23))`` (see the module docstring)."""
    return max(SIMPLEX_ATOL_MIN, (2.0 + math.sqrt(k)) * max(float(eps), _EPS32))


def as_float_array(x: ArrayLike, name: str = "probs") -> tuple[NDArray[Any], float]:
    """``(array, eps)``: ``x`` as a numpy array (float32/float64 kept; half precision, bfloat16,
    torch tensors, ints and bools become float64) and the machine epsilon of its source format."""
    eps = source_eps(x)
    if type(x).__module__.startswith("torch"):
        t: Any = x
        x = t.detach().cpu().double().numpy() if eps > _EPS32 else t.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype not in (np.float32, np.float64):
        if a.dtype.name == "bfloat16" or a.dtype.kind in "biuf":
            a = a.astype(np.float64)
        else:
            raise ValueError(f"{name} must be numeric; got dtype {a.dtype}")
    return a, eps


def simplex_error(name: str, row: int, total: float, k: int, eps: float) -> ValueError:
    """The error for a probability row that does not sum to 1 (the hint depends on how far off)."""
    atol = simplex_atol(eps, k)
    off = abs(float(total) - 1.0)
    msg = (
        f"rows of {name} must sum to 1 (row {row} sums to {float(total):.8g}, off by {off:.2g}; "
        f"the tolerance for {k} classes at this precision is {atol:.2g})"
    )
    if np.isfinite(off) and off <= simplex_atol(_EPS_BY_NAME["bfloat16"], k):
        return ValueError(
            msg + ": these look like probabilities rounded to low precision (float16/bfloat16 or "
            "a few decimals); pass them in their original dtype or renormalise them with "
            "p / p.sum(axis=1, keepdims=True)"
        )
    return ValueError(msg + "; pass from_logits=True if these are logits")


def check_probs(probs: ArrayLike, name: str = "probs") -> NDArray[np.float64]:
    """Validate probabilities: ``(n,)`` in ``[0, 1]`` or ``(n, K)`` rows summing to 1; finite.

    The row-sum tolerance follows the input's dtype (:func:`simplex_atol`). Returns float64.
    """
    a, eps = as_float_array(probs, name)
    p = np.asarray(a, dtype=np.float64)
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
        k = p.shape[1]
        s = p.sum(axis=1)
        bad = np.abs(s - 1.0) > simplex_atol(eps, k)
        if np.any(bad):
            i = int(np.argmax(bad))
            raise simplex_error(name, i, s[i], k, eps)
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
