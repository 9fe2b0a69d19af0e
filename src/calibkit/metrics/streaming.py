"""Streaming accumulators: feed batches, read metrics; memory ``O(bins)``, not ``O(n)``.

They keep only per-bin sums (:class:`~calibkit.metrics.binning.BinStats`) or running totals, so
results equal the batch functions on the concatenated data (up to float summation order), and
two accumulators over disjoint shards ``merge`` into the one over their union (for
multi-process / distributed evaluation). Equal-width bins only: equal-mass bins need all scores.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calibkit.metrics._inputs import score_ndim
from calibkit.metrics.binning import BinStats, bin_statistics, uniform_edges
from calibkit.metrics.calibration_error import (
    binned_outcomes,
    classwise_bin_statistics,
    stats_metric,
)
from calibkit.metrics.registry import get_metric, metric_names
from calibkit.metrics.reliability import ReliabilityTable

__all__ = ["CalibrationErrorAccumulator", "ScoringRuleAccumulator"]


class CalibrationErrorAccumulator:
    """Per-bin sums over batches for ECE, MCE, RMS-CE, debiased L2 CE and (optionally) cw-ECE.

    Parameters
    ----------
    n_bins : number of equal-width bins M
    from_logits : batches are logits (softmax / sigmoid applied per batch)
    classwise : also keep ``(K, M)`` per-class sums for :meth:`classwise_ece`

    The first batch fixes the view: 1-D ``P(y=1)`` batches use the binary view, ``(n, K)``
    batches the top-label view (see :mod:`calibkit.metrics.calibration_error`); later batches
    must match it (and K).

    Examples
    --------
    >>> acc = CalibrationErrorAccumulator(15)
    >>> for p, y in batches:  # doctest: +SKIP
    ...     acc.update(p, y)
    >>> acc.ece()  # doctest: +SKIP
    """

    def __init__(self, n_bins: int = 15, *, from_logits: bool = False, classwise: bool = False):
        self.n_bins = n_bins
        self.from_logits = from_logits
        self.classwise = classwise
        self._edges = uniform_edges(n_bins)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> CalibrationErrorAccumulator:
        """Forget all batches."""
        m = self._edges.size - 1
        z = np.zeros(m)
        self._stats = BinStats(self._edges, np.zeros(m, dtype=np.int64), z.copy(), z.copy())
        self._cw: BinStats | None = None
        self._shape: tuple[int, ...] | None = None  # () for binary view, (K,) for top-label
        return self

    def _check_shape(self, probs: ArrayLike) -> tuple[int, ...]:
        full = tuple(int(d) for d in getattr(probs, "shape", np.shape(probs)))
        shape: tuple[int, ...] = () if len(full) == 1 else full[1:]
        if self._shape is not None and shape != self._shape:
            raise ValueError(
                f"batch has per-row shape {shape} but earlier batches had {self._shape}"
            )
        return shape

    def update(self, probs: ArrayLike, labels: ArrayLike) -> CalibrationErrorAccumulator:
        """Add a batch: ``probs`` (b,) or (b, K) (logits with ``from_logits``), ``labels`` (b,)."""
        shape = self._check_shape(probs)
        conf, out = binned_outcomes(probs, labels, from_logits=self.from_logits)
        st = bin_statistics(conf, out, self._edges)
        cw = (
            classwise_bin_statistics(probs, labels, self.n_bins, from_logits=self.from_logits)
            if self.classwise
            else None
        )
        self._stats = self._stats + st
        if cw is not None:
            self._cw = cw if self._cw is None else self._cw + cw
        self._shape = shape
        return self

    def merge(self, other: CalibrationErrorAccumulator) -> CalibrationErrorAccumulator:
        """Add ``other``'s sums into this accumulator (same bins, view and options)."""
        if not isinstance(other, CalibrationErrorAccumulator):
            raise ValueError(f"can only merge a CalibrationErrorAccumulator; got {type(other)}")
        if (other.n_bins, other.from_logits, other.classwise) != (
            self.n_bins,
            self.from_logits,
            self.classwise,
        ):
            raise ValueError(
                "cannot merge accumulators with different n_bins/from_logits/classwise"
            )
        if other._shape is None:
            return self
        if self._shape is not None and other._shape != self._shape:
            raise ValueError(f"cannot merge views {self._shape} and {other._shape}")
        self._stats = self._stats + other._stats
        if other._cw is not None:
            self._cw = other._cw if self._cw is None else self._cw + other._cw
        self._shape = other._shape
        return self

    # ------------------------------------------------------------------ results
    @property
    def n(self) -> int:
        """Items seen so far."""
        return int(self._stats.count.sum())

    @property
    def stats(self) -> BinStats:
        """The per-bin sums (count, sum of scores, sum of outcomes)."""
        return self._stats

    def _need(self) -> BinStats:
        if self.n == 0:
            raise ValueError("no batches yet: call update() first")
        return self._stats

    def ece(self) -> float:
        """:func:`calibkit.metrics.ece` of all batches."""
        return stats_metric(self._need(), "l1")

    def mce(self) -> float:
        """:func:`calibkit.metrics.mce` of all batches."""
        return stats_metric(self._need(), "max")

    def rms_ce(self) -> float:
        """:func:`calibkit.metrics.rms_ce` of all batches."""
        return stats_metric(self._need(), "l2")

    def debiased_ece(self, *, squared: bool = False) -> float:
        """:func:`calibkit.metrics.debiased_ece` of all batches."""
        return stats_metric(self._need(), "debiased_l2_squared" if squared else "debiased_l2")

    def classwise_ece(self) -> float:
        """:func:`calibkit.metrics.classwise_ece` of all batches (needs ``classwise=True``)."""
        if not self.classwise:
            raise ValueError("construct with classwise=True to track classwise ECE")
        self._need()
        assert self._cw is not None
        st = self._cw
        return float(np.mean(np.abs(st.sum_outcome - st.sum_confidence).sum(axis=-1) / st.n))

    def reliability_table(self) -> ReliabilityTable:
        """:func:`calibkit.metrics.reliability_table` of all batches."""
        view = "binary" if self._shape == () else "top_label"
        return ReliabilityTable.from_stats(self._need(), view=view, binning="uniform")

    def compute(self) -> dict[str, float]:
        """All metrics: ece, mce, rms_ce, debiased_ece (and cw_ece with ``classwise``)."""
        out = {
            "ece": self.ece(),
            "mce": self.mce(),
            "rms_ce": self.rms_ce(),
            "debiased_ece": self.debiased_ece(),
        }
        if self.classwise:
            out["cw_ece"] = self.classwise_ece()
        return out

    def __repr__(self) -> str:
        return (
            f"CalibrationErrorAccumulator(n_bins={self.n_bins}, from_logits={self.from_logits}, "
            f"classwise={self.classwise}; n={self.n})"
        )


class ScoringRuleAccumulator:
    """Running totals over batches (memory ``O(1)``) of the *additive* registered metrics: the
    means of a per-item loss, :func:`~calibkit.metrics.accuracy`,
    :func:`~calibkit.metrics.brier_score`, :func:`~calibkit.metrics.nll` and any metric
    registered with ``additive=True`` (:func:`~calibkit.metrics.register_metric`).

    ``names`` picks some of them (default: every additive metric registered when the
    accumulator is made).
    """

    def __init__(self, *, from_logits: bool = False, names: list[str] | None = None):
        self.from_logits = from_logits
        keys = metric_names(additive=True) if names is None else [get_metric(k).name for k in names]
        for k in keys:
            if not get_metric(k).additive:
                raise ValueError(f"metric {k!r} is not a mean of per-item losses; cannot stream it")
        self.names = keys
        self.reset()

    def reset(self) -> ScoringRuleAccumulator:
        """Forget all batches."""
        self._n = 0
        self._sums = dict.fromkeys(self.names, 0.0)
        self._ndim: int | None = None
        return self

    def update(self, probs: ArrayLike, labels: ArrayLike) -> ScoringRuleAccumulator:
        """Add a batch: ``probs`` (b,) or (b, K) (logits with ``from_logits``), ``labels`` (b,)."""
        ndim = score_ndim(probs)
        if self._ndim is not None and ndim != self._ndim:
            raise ValueError(f"batch is {ndim}-D but earlier batches were {self._ndim}-D")
        b = len(probs) if ndim else 0  # type: ignore[arg-type]
        vals = {k: get_metric(k)(probs, labels, from_logits=self.from_logits) for k in self.names}
        for k, v in vals.items():
            self._sums[k] += v * b
        self._n += b
        self._ndim = ndim
        return self

    def merge(self, other: ScoringRuleAccumulator) -> ScoringRuleAccumulator:
        """Add ``other``'s totals into this accumulator."""
        if not isinstance(other, ScoringRuleAccumulator) or other.from_logits != self.from_logits:
            raise ValueError("can only merge a ScoringRuleAccumulator with the same from_logits")
        if other.names != self.names:
            raise ValueError(f"cannot merge accumulators of {other.names} into {self.names}")
        if self._ndim is not None and other._ndim is not None and other._ndim != self._ndim:
            raise ValueError("cannot merge 1-D and 2-D accumulators")
        for k in self._sums:
            self._sums[k] += other._sums[k]
        self._n += other._n
        self._ndim = self._ndim if self._ndim is not None else other._ndim
        return self

    @property
    def n(self) -> int:
        return self._n

    def compute(self) -> dict[str, float]:
        """Means over all items, by metric name (accuracy, brier, nll, ...)."""
        if self._n == 0:
            raise ValueError("no batches yet: call update() first")
        return {k: v / self._n for k, v in self._sums.items()}
