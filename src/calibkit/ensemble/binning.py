"""A-priori confidence bins and nested bin-index keys (paper 001, section 3.1).

Bins here are given by **cut points**: each model's sorted interior bin boundaries
``c_1 <= ... <= c_{B-1}``; bin ``b`` is ``[c_b, c_{b+1})`` with ``c_0 = -inf`` and
``c_B = +inf`` (so ``B = len(cut_points) + 1`` bins). Calibkit's **edges** are the other
convention, the ``M + 1`` boundaries on ``[0, 1]`` of :mod:`calibkit.metrics.binning` (outer
edges included); :func:`cut_points_to_edges` and :func:`edges_to_cut_points` convert, and for
scores in ``[0, 1]`` both give every score the same bin. (``CascadePolicy(edges=...)``, its
``edges_``, ``search_edges`` and the saved policy's ``"edges"`` field keep their names for
compatibility: they hold cut points.)

After ``k`` models an item carries the key ``(b_1, ..., b_k)``; keys are nested: every
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
    "check_cut_points",
    "cut_points_to_edges",
    "decode_key",
    "edges_to_cut_points",
    "format_key",
    "parse_key",
    "prefix_codes",
    "quantile_cut_points",
    "uniform_cut_points",
]


def check_cut_points(
    edges: Sequence[ArrayLike], n_models: int | None = None
) -> list[NDArray[np.float64]]:
    """Validate per-model cut points (interior edges): finite, non-decreasing 1-D arrays
    (possibly empty). ``edges`` is one sequence per model (named so in messages and saved
    policies)."""
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


def uniform_cut_points(
    n_bins: int | Sequence[int], n_models: int, low: float = 0.5, high: float = 1.0
) -> list[NDArray[np.float64]]:
    """Equal-width cut points on ``[low, high]`` (top-label confidence of C classes lies in
    ``[1/C, 1]``: use ``low = 1/C``), ``n_bins - 1`` per model. With ``low=0, high=1`` these
    are the interior of :func:`calibkit.metrics.binning.uniform_edges`."""
    nb = _n_bins_list(n_bins, n_models)
    if not low < high:
        raise ValueError(f"need low < high; got low={low}, high={high}")
    return [np.linspace(low, high, b + 1)[1:-1] for b in nb]


def quantile_cut_points(
    scores: ArrayLike, n_bins: int | Sequence[int]
) -> list[NDArray[np.float64]]:
    """Equal-mass cut points of each model's confidences ``scores`` ``(n, K)`` (the interior of
    :func:`calibkit.metrics.binning.quantile_edges` of each column)."""
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
    e = check_cut_points(edges, s.shape[1])
    out = np.empty(s.shape, dtype=np.int64)
    for k, ek in enumerate(e):
        out[:, k] = np.searchsorted(ek, s[:, k], side="right")
    return out


def cut_points_to_edges(
    cut_points: ArrayLike, low: float = 0.0, high: float = 1.0
) -> NDArray[np.float64]:
    """One model's cut points ``(B - 1,)`` -> the ``(B + 1,)`` edges of
    :mod:`calibkit.metrics.binning` on ``[low, high]`` (cut points must lie inside)."""
    (c,) = check_cut_points([cut_points])
    if c.size and (c[0] < low or c[-1] > high):
        raise ValueError(f"cut points {c.tolist()} lie outside [{low}, {high}]")
    return np.concatenate([[low], c, [high]]).astype(np.float64)


def edges_to_cut_points(edges: ArrayLike) -> NDArray[np.float64]:
    """``(M + 1,)`` edges of :mod:`calibkit.metrics.binning` -> the ``(M - 1,)`` cut points."""
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"edges must be 1-D with at least 2 entries; got shape {e.shape}")
    (c,) = check_cut_points([e])
    return c[1:-1].copy()


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
