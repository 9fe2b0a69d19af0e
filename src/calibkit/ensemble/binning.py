"""A-priori confidence bins and nested bin-index keys (paper 001, section 3.1).

Model ``k``'s confidence is mapped to a bin by its sorted *interior* edges ``e_1 <= ... <= e_{B-1}``:
bin ``b`` is ``[e_b, e_{b+1})`` with ``e_0 = -inf`` and ``e_B = +inf`` (so ``B = len(edges) + 1``
bins). After ``k`` models an item carries the key ``(b_1, ..., b_k)``; keys are nested: every
depth-``k+1`` key extends a depth-``k`` key. Keys are encoded as mixed-radix integers
``((b_1 * B_2 + b_2) * B_3 + b_3) ...`` for fast group-by, and written ``"b1/b2/b3"`` for people.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "bin_indices",
    "bin_label",
    "check_edges",
    "decode_key",
    "format_key",
    "parse_key",
    "prefix_codes",
    "quantile_edges",
    "uniform_edges",
]


def check_edges(
    edges: Sequence[ArrayLike], n_models: int | None = None
) -> list[NDArray[np.float64]]:
    """Validate per-model interior edges: finite, non-decreasing 1-D arrays (possibly empty)."""
    if isinstance(edges, np.ndarray) and edges.ndim == 1:
        raise ValueError("edges must be one sequence of edges per model, e.g. [[0.7, 0.9], [0.8]]")
    out: list[NDArray[np.float64]] = []
    for k, e in enumerate(edges):
        a = np.asarray(e, dtype=np.float64).reshape(-1) if np.ndim(e) <= 1 else None
        if a is None:
            raise ValueError(f"edges[{k}] must be 1-D; got shape {np.shape(e)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"edges[{k}] contains NaN or infinite values")
        if a.size > 1 and np.any(np.diff(a) < 0):
            raise ValueError(f"edges[{k}] must be sorted in increasing order; got {a.tolist()}")
        out.append(a)
    if not out:
        raise ValueError("edges is empty; give one sequence of edges per model")
    if n_models is not None and len(out) != n_models:
        raise ValueError(f"got edges for {len(out)} models but there are {n_models} models")
    return out


def uniform_edges(
    n_bins: int | Sequence[int], n_models: int, low: float = 0.5, high: float = 1.0
) -> list[NDArray[np.float64]]:
    """Equal-width interior edges on ``[low, high]`` (top-label confidence of C classes lies in
    ``[1/C, 1]``: use ``low = 1/C``)."""
    nb = _n_bins_list(n_bins, n_models)
    if not low < high:
        raise ValueError(f"need low < high; got low={low}, high={high}")
    return [np.linspace(low, high, b + 1)[1:-1] for b in nb]


def quantile_edges(scores: ArrayLike, n_bins: int | Sequence[int]) -> list[NDArray[np.float64]]:
    """Equal-mass interior edges of each model's confidences ``scores`` ``(n, K)``."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] == 0:
        raise ValueError(f"scores must be a non-empty (n, K) array; got shape {s.shape}")
    nb = _n_bins_list(n_bins, s.shape[1])
    return [np.quantile(s[:, k], np.linspace(0, 1, b + 1)[1:-1]) for k, b in enumerate(nb)]


def _n_bins_list(n_bins: int | Sequence[int], n_models: int) -> list[int]:
    nb = (
        [int(n_bins)] * n_models
        if isinstance(n_bins, (int, np.integer))
        else [int(b) for b in n_bins]
    )
    if len(nb) != n_models:
        raise ValueError(f"n_bins has {len(nb)} entries but there are {n_models} models")
    if any(b < 1 for b in nb):
        raise ValueError(f"n_bins must be >= 1; got {nb}")
    return nb


def bin_indices(scores: ArrayLike, edges: Sequence[ArrayLike]) -> NDArray[np.int64]:
    """Bin index of every confidence: ``(n, K)`` scores -> ``(n, K)`` int64 in ``[0, B_k)``."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (n, K); got shape {s.shape}")
    e = check_edges(edges, s.shape[1])
    out = np.empty(s.shape, dtype=np.int64)
    for k, ek in enumerate(e):
        out[:, k] = np.searchsorted(ek, s[:, k], side="right")
    return out


def prefix_codes(bins: NDArray[np.int64], n_bins: Sequence[int], depth: int) -> NDArray[np.int64]:
    """Mixed-radix integer code of each row's first ``depth`` bin indices, in ``[0, prod B_1..B_depth)``."""
    if not 1 <= depth <= bins.shape[1]:
        raise ValueError(f"depth must be in [1, {bins.shape[1]}]; got {depth}")
    code = bins[:, 0].astype(np.int64, copy=True)
    for j in range(1, depth):
        code *= int(n_bins[j])
        code += bins[:, j]
    return code


def decode_key(code: int, n_bins: Sequence[int], depth: int) -> tuple[int, ...]:
    """Inverse of :func:`prefix_codes` for one code."""
    out = []
    c = int(code)
    for j in range(depth - 1, -1, -1):
        c, r = divmod(c, int(n_bins[j]))
        out.append(r)
    return tuple(reversed(out))


def format_key(key: Sequence[int]) -> str:
    """``(3, 1) -> "3/1"``."""
    return "/".join(str(int(b)) for b in key)


def parse_key(text: str) -> tuple[int, ...]:
    """``"3/1" -> (3, 1)``."""
    try:
        key = tuple(int(t) for t in text.split("/"))
    except ValueError:
        raise ValueError(f"bad bin key {text!r}; expected e.g. '3/1'") from None
    if any(b < 0 for b in key):
        raise ValueError(f"bad bin key {text!r}: negative bin index")
    return key


def bin_label(edges: ArrayLike, b: int, digits: int = 3) -> str:
    """Readable interval of bin ``b``, e.g. ``"[0.62, 0.75)"``."""
    e = np.asarray(edges, dtype=np.float64)
    lo = "-inf" if b == 0 else f"{e[b - 1]:.{digits}g}"
    hi = "inf" if b == e.size else f"{e[b]:.{digits}g}"
    return f"[{lo}, {hi})"
