"""Histogram binning (Zadrozny & Elkan, 2001): replace a probability by its bin's accuracy."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from calibkit.calibrators._ovr import binary_columns, binary_targets, combine
from calibkit.calibrators.base import Calibrator, FieldCheck
from calibkit.metrics.binning import MAX_BINS

__all__ = ["HistogramBinning"]


def _bin_index(p: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.intp]:
    """Bin of each ``p``: ``[e_i, e_{i+1})``, the last bin closed at ``e_M = 1``."""
    return np.searchsorted(edges[1:-1], p, side="right")


class HistogramBinning(Calibrator):
    """Histogram binning: ``P(y=1 | p in bin) =`` (weighted) fraction of positives in the bin.

    Binary input (``(n,)`` = ``P(y=1)`` or ``(n, 2)``): one histogram on ``P(y=1)``.
    ``(n, K > 2)``: one histogram per class on ``p_k`` vs ``1[y == k]`` (one-vs-rest), outputs
    renormalised to sum to 1 (all-zero rows become uniform).

    Parameters
    ----------
    n_bins : int
        Number of bins ``M`` (default 15).
    binning : {"uniform", "quantile"}
        Equal-width bins on ``[0, 1]``, or equal-mass bins (edges at the quantiles of the
        fitting scores, unweighted; tied edges merge, so there may be fewer bins).

    Bins are ``[e_i, e_{i+1})`` with the last one closed at 1. A bin that received no fitting
    score maps to its midpoint (the identity, for lack of evidence).

    Input: probabilities.

    Attributes
    ----------
    bin_edges_ : list of m (M_j + 1,) float arrays
        Edges from 0 to 1 (``m = 1`` for a binary problem, ``K`` otherwise).
    bin_values_ : list of m (M_j,) float arrays
        Calibrated probability of each bin.
    """

    input_kind = "probs"
    _fitted_fields: ClassVar[tuple[str, ...]] = ("bin_edges_", "bin_values_")
    bin_edges_: list[NDArray[np.float64]]
    bin_values_: list[NDArray[np.float64]]

    def __init__(
        self, n_bins: int = 15, binning: Literal["uniform", "quantile"] = "uniform"
    ) -> None:
        self.n_bins = n_bins
        self.binning = binning

    def _validate_params(self, check: FieldCheck) -> None:
        check.integer("n_bins", self.n_bins, low=1, high=MAX_BINS)
        check.choice("binning", self.binning, ("uniform", "quantile"))

    def _validate_fitted(self, check: FieldCheck) -> None:
        m = self._n_maps()
        edges_all = check.arrays("bin_edges_", self.bin_edges_, m)
        values_all = check.arrays("bin_values_", self.bin_values_, m)
        edges_out, values_out = [], []
        for j in range(m):
            e = check.array(f"bin_edges_[{j}]", edges_all[j], (-1,), low=0.0, high=1.0)
            if e.size < 2 or e[0] != 0.0 or e[-1] != 1.0 or np.any(np.diff(e) <= 0):
                check.fail(
                    f"bin_edges_[{j}]", "strictly increasing edges from 0 to 1", edges_all[j]
                )
            v = check.array(f"bin_values_[{j}]", values_all[j], (e.size - 1,), low=0.0, high=1.0)
            edges_out.append(e)
            values_out.append(v)
        self.bin_edges_ = edges_out
        self.bin_values_ = values_out

    def _edges(self, p: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.binning == "uniform":
            return np.linspace(0.0, 1.0, self.n_bins + 1)
        edges = np.quantile(p, np.linspace(0.0, 1.0, self.n_bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
        return np.unique(np.clip(edges, 0.0, 1.0))

    def _fit(
        self, X: NDArray[np.float64], y: NDArray[np.int64], w: NDArray[np.float64] | None
    ) -> None:
        edges_all, values_all = [], []
        for p, t in zip(
            binary_columns(X, "probs"), binary_targets(y, self.n_classes_), strict=True
        ):
            edges = self._edges(p)
            m = edges.size - 1
            idx = _bin_index(p, edges)
            wt = np.ones_like(p) if w is None else w
            mass = np.bincount(idx, weights=wt, minlength=m)
            hits = np.bincount(idx, weights=wt * t, minlength=m)
            values = 0.5 * (edges[:-1] + edges[1:])
            np.divide(hits, mass, out=values, where=mass > 0)
            edges_all.append(edges)
            values_all.append(values)
        self.bin_edges_ = edges_all
        self.bin_values_ = values_all

    def _predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        cols = [
            v[_bin_index(p, e)]
            for p, e, v in zip(
                binary_columns(X, "probs"), self.bin_edges_, self.bin_values_, strict=True
            )
        ]
        return combine(cols, self.n_classes_)
