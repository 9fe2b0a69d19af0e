"""Bin edges, bin assignment and per-bin sums: the one binning every calibkit metric shares.

Convention (the one of netcal, torchmetrics and ``numpy.histogram``): with edges
``0 = e_0 <= e_1 <= ... <= e_M = 1`` bin ``m`` is ``[e_m, e_{m+1})``, except the last bin,
which is closed, ``[e_{M-1}, 1]``. A score of exactly 0 falls in bin 0 and exactly 1 in bin
``M - 1``. When edges repeat (equal-mass bins over tied scores) the bins between equal edges
are empty and the tied scores go to the highest bin that starts at their value.

These ``M + 1`` boundaries are what calibkit calls **edges**. The cascade's bins
(:mod:`calibkit.ensemble.binning`) are given by **cut points**, the interior edges only
(``edges[1:-1]``; ``calibkit.ensemble.binning.cut_points_to_edges`` converts).

Everything is vectorised (``searchsorted`` + ``bincount``): no Python loop over samples.
``n_bins`` is at most :data:`MAX_BINS` (one million), so memory is bounded for any argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "MAX_BINS",
    "MAX_CLASSWISE_CELLS",
    "BinStats",
    "Binning",
    "assign_bins",
    "bin_edges",
    "bin_statistics",
    "check_n_bins",
    "quantile_edges",
    "uniform_edges",
]

Binning = Literal["uniform", "quantile"]


#: the most bins a binned metric accepts. Each bin costs a few float64 entries (edges, counts,
#: sums), so memory stays bounded (tens of MB) whatever ``n_bins`` a caller passes; beyond the
#: number of items extra bins can only be empty anyway.
MAX_BINS = 1_000_000

#: the most (class, bin) cells of the classwise metrics (``K * n_bins``)
MAX_CLASSWISE_CELLS = 10_000_000


def check_n_bins(n_bins: int) -> int:
    """``n_bins`` as an int in ``[1, MAX_BINS]``; ``ValueError`` naming the problem otherwise."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer):
        raise ValueError(f"n_bins must be an int; got {type(n_bins).__name__}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    if n_bins > MAX_BINS:
        raise ValueError(
            f"n_bins={int(n_bins):,} is above the maximum of {MAX_BINS:,} bins (each bin takes "
            "memory, and with n items at most n bins can be non-empty)"
        )
    return int(n_bins)


def uniform_edges(n_bins: int) -> NDArray[np.float64]:
    """``(M + 1,)`` equal-width edges ``linspace(0, 1, M + 1)`` (Guo et al. 2017)."""
    return np.linspace(0.0, 1.0, check_n_bins(n_bins) + 1)


def quantile_edges(values: ArrayLike, n_bins: int) -> NDArray[np.float64]:
    """``(M + 1,)`` equal-mass edges: the ``m / M`` quantiles of ``values`` (linear interpolation),
    with the outer edges set to 0 and 1.

    Each bin then holds ``n / M`` scores up to ties and rounding (ties stay together, so a bin can
    be larger, and another empty). This is netcal's ``equal_intervals=False`` binning.
    """
    m = check_n_bins(n_bins)
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("quantile_edges needs at least one value")
    e = np.quantile(v, np.linspace(0.0, 1.0, m + 1))
    e[0], e[-1] = 0.0, 1.0
    return np.maximum.accumulate(e)


def bin_edges(
    values: ArrayLike, n_bins: int, binning: Binning | str = "uniform"
) -> NDArray[np.float64]:
    """Edges for ``binning`` = ``"uniform"`` (equal width) or ``"quantile"`` (equal mass)."""
    if binning == "uniform":
        return uniform_edges(n_bins)
    if binning == "quantile":
        return quantile_edges(values, n_bins)
    raise ValueError(f"binning must be 'uniform' or 'quantile'; got {binning!r}")


def _check_edges(edges: ArrayLike) -> NDArray[np.float64]:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"edges must be 1-D with at least 2 entries; got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError("edges contain NaN or infinite values")
    if np.any(np.diff(e) < 0):
        raise ValueError("edges must be non-decreasing")
    return e


def _is_uniform(e: NDArray[np.float64]) -> bool:
    m = e.size - 1
    return e[0] == 0.0 and e[-1] == 1.0 and bool(np.array_equal(e, np.linspace(0.0, 1.0, m + 1)))


def _uniform_bins(v: NDArray[np.floating], e: NDArray[np.float64]) -> NDArray[np.intp]:
    # O(1) per value: candidate floor(v * M), then one exact correction step against the
    # float64 edges (the candidate is off by at most one, and only within a few ulps of an edge),
    # so the result equals searchsorted on ``e`` bit for bit, about 10x faster.
    m = e.size - 1
    v64 = v.astype(np.float64, copy=False)
    c = (v64 * m).astype(np.intp)
    np.clip(c, 0, m - 1, out=c)
    c -= v64 < e[c]
    upper = np.append(e[:-1], np.inf)  # last bin is closed: nothing moves past it
    np.clip(c, 0, m - 1, out=c)
    c += v64 >= upper[c + 1]
    return c


def assign_bins(values: ArrayLike, edges: ArrayLike) -> NDArray[np.intp]:
    """Bin index in ``[0, M)`` of each value (convention in the module docstring).

    Values below ``edges[0]`` go to bin 0 and above ``edges[-1]`` to bin ``M - 1``.

    Parameters
    ----------
    values : (n,) scores
    edges : (M + 1,) non-decreasing bin edges

    Returns
    -------
    (n,) intp
    """
    e = _check_edges(edges)
    v = np.asarray(values)
    if v.dtype not in (np.float32, np.float64):
        v = v.astype(np.float64)
    out = np.empty(v.shape, dtype=np.intp)
    flat_v, flat_o = v.reshape(-1), out.reshape(-1)
    uniform = _is_uniform(e)
    for s in range(0, flat_v.size, _CHUNK):
        flat_o[s : s + _CHUNK] = _assign(flat_v[s : s + _CHUNK], e, uniform)
    return out


# values per chunk: temporaries stay in cache and no page faults on fresh n-sized arrays
_CHUNK = 1 << 16


def _assign(v: NDArray[np.floating], e: NDArray[np.float64], uniform: bool) -> NDArray[np.intp]:
    if e.size == 2:
        return np.zeros(v.shape, dtype=np.intp)
    if uniform:
        return _uniform_bins(v, e)
    # compare in float64 (as netcal / numpy.histogram do) rather than rounding the edges
    return np.searchsorted(e[1:-1], v.astype(np.float64, copy=False), side="right").astype(
        np.intp, copy=False
    )


@dataclass(frozen=True)
class BinStats:
    """Per-bin sums, the sufficient statistics of every binned calibration metric.

    Attributes
    ----------
    edges : (M + 1,) float64
    count : (..., M) int64, samples per bin (leading axes: e.g. one row per class)
    sum_confidence : (..., M) float64, sum of the scores in each bin
    sum_outcome : (..., M) float64, number of positives / correct predictions in each bin
    """

    edges: NDArray[np.float64]
    count: NDArray[np.int64]
    sum_confidence: NDArray[np.float64]
    sum_outcome: NDArray[np.float64]

    @property
    def n_bins(self) -> int:
        return int(self.count.shape[-1])

    @property
    def n(self) -> NDArray[np.int64]:
        """Total count (summed over the bin axis)."""
        return np.asarray(self.count.sum(axis=-1))

    @property
    def mean_confidence(self) -> NDArray[np.float64]:
        """Per-bin mean score; NaN for empty bins."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.sum_confidence / self.count, np.nan)

    @property
    def accuracy(self) -> NDArray[np.float64]:
        """Per-bin accuracy (top-label) or fraction of positives (binary); NaN for empty bins."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.sum_outcome / self.count, np.nan)

    def __add__(self, other: BinStats) -> BinStats:
        if self.edges.shape != other.edges.shape or not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot add BinStats with different bin edges")
        return BinStats(
            self.edges,
            self.count + other.count,
            self.sum_confidence + other.sum_confidence,
            self.sum_outcome + other.sum_outcome,
        )


def bin_statistics(
    confidence: ArrayLike,
    outcome: ArrayLike,
    edges: ArrayLike,
    *,
    bins: NDArray[np.intp] | None = None,
) -> BinStats:
    """Per-bin count, sum of ``confidence`` and sum of ``outcome`` (one pass of ``bincount``).

    Parameters
    ----------
    confidence : (n,) scores in [0, 1]
    outcome : (n,) bool or 0/1, whether the prediction was right (or the label is positive)
    edges : (M + 1,) bin edges
    bins : (n,) precomputed :func:`assign_bins` result, optional
    """
    e = _check_edges(edges)
    m = e.size - 1
    c = np.asarray(confidence)
    o = np.asarray(outcome)
    if c.shape != o.shape or c.ndim != 1:
        raise ValueError(
            f"confidence and outcome must be 1-D of equal length; got {c.shape}, {o.shape}"
        )
    if bins is not None and bins.shape != c.shape:
        raise ValueError(f"bins has shape {bins.shape} but confidence has {c.shape}")
    uniform = _is_uniform(e)
    count = np.zeros(m, dtype=np.int64)
    s_conf = np.zeros(m, dtype=np.float64)
    s_out = np.zeros(m, dtype=np.float64)
    for s in range(0, c.size, _CHUNK):
        cc, oc = c[s : s + _CHUNK], o[s : s + _CHUNK]
        if bins is not None:
            b = bins[s : s + _CHUNK]
        else:
            b = _assign(cc, e, uniform)
        s_conf += np.bincount(b, weights=cc, minlength=m)
        if oc.dtype == bool:
            # one pass for both: counts of (bin, outcome) pairs
            pair = np.bincount(2 * b + oc, minlength=2 * m).reshape(m, 2)
            count += pair.sum(axis=1)
            s_out += pair[:, 1]
        else:
            count += np.bincount(b, minlength=m)
            s_out += np.bincount(b, weights=oc, minlength=m)
    return BinStats(e, count, s_conf, s_out)
