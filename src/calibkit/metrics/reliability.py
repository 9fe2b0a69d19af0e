"""Reliability table: per-bin count, mean confidence, accuracy, gap and the four miscalibration
scenarios of Table 1 of paper 000 ("Fill In The Gaps").

Paper 000, section 2 and 3.2: a bin above the diagonal (``acc(B_m) > conf(B_m)``) is
*under-confident*, one below it (``acc(B_m) < conf(B_m)``) *over-confident*; with the predicted
probability 0.5 as the cut-off a bin is *low probability* (``conf(B_m) <= 0.5``) or *high
probability* (``> 0.5``). The four combinations are the four cells of Table 1. The low/high split
is meaningful for the binary view (1-D ``P(y=1)``), the setting of the paper; for the top-label
view every confidence is at least ``1/K``.

The direction to move a bin's predicted probability is toward its accuracy: *decrease* for an
over-confident bin, *increase* for an under-confident one. This is what the paper's appendix A
prompt code does (``conf - diff`` for "over", ``conf + diff`` for "under", in both halves); the
text of Table 1 says "increase" for High Probability & Over Confidence, which contradicts that
code and the definition, so we follow the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.metrics._inputs import score_ndim
from calibkit.metrics.binning import Binning, BinStats
from calibkit.metrics.calibration_error import binned_statistics

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ReliabilityTable", "reliability_table"]


@dataclass(frozen=True)
class ReliabilityTable:
    """Per-bin reliability statistics of M bins.

    Attributes
    ----------
    edges : (M + 1,) float64 bin edges
    count : (M,) int64 items per bin
    confidence : (M,) float64 mean score per bin (NaN if empty)
    accuracy : (M,) float64 accuracy (top-label) or fraction of positives (binary); NaN if empty
    view : "binary" (1-D ``P(y=1)`` input) or "top_label" (``(n, K)`` input)
    binning : "uniform", "quantile" or "custom"
    """

    edges: NDArray[np.float64]
    count: NDArray[np.int64]
    confidence: NDArray[np.float64]
    accuracy: NDArray[np.float64]
    view: str = "top_label"
    binning: str = "uniform"

    @classmethod
    def from_stats(cls, stats: BinStats, *, view: str, binning: str) -> ReliabilityTable:
        """Build from 1-D per-bin sums (e.g. a streaming accumulator's)."""
        if stats.count.ndim != 1:
            raise ValueError("ReliabilityTable needs 1-D BinStats (one row of bins)")
        return cls(
            edges=stats.edges,
            count=stats.count,
            confidence=stats.mean_confidence,
            accuracy=stats.accuracy,
            view=view,
            binning=binning,
        )

    # ------------------------------------------------------------------ derived columns
    @property
    def n(self) -> int:
        return int(self.count.sum())

    @property
    def n_bins(self) -> int:
        return int(self.count.size)

    @property
    def gap(self) -> NDArray[np.float64]:
        """(M,) ``confidence - accuracy``: > 0 over-confident, < 0 under-confident; NaN if empty."""
        return self.confidence - self.accuracy

    @property
    def over_confident(self) -> NDArray[np.bool_]:
        """(M,) ``accuracy < confidence`` (below the diagonal); False for empty bins."""
        return np.asarray(np.nan_to_num(self.gap, nan=0.0) > 0)

    @property
    def under_confident(self) -> NDArray[np.bool_]:
        """(M,) ``accuracy > confidence`` (above the diagonal); False for empty bins."""
        return np.asarray(np.nan_to_num(self.gap, nan=0.0) < 0)

    @property
    def low_probability(self) -> NDArray[np.bool_]:
        """(M,) mean confidence ``<= 0.5`` (bin midpoint for an empty bin)."""
        mid = 0.5 * (self.edges[:-1] + self.edges[1:])
        c = np.where(self.count > 0, self.confidence, mid)
        return np.asarray(c <= 0.5)

    @property
    def scenario(self) -> list[str]:
        """Table 1 cell per bin: ``"low/over"``, ``"low/under"``, ``"high/over"``,
        ``"high/under"``; ``"calibrated"`` when the gap is exactly 0, ``"empty"`` for no items."""
        out = []
        for c, lo, ov, un in zip(
            self.count, self.low_probability, self.over_confident, self.under_confident, strict=True
        ):
            if c == 0:
                out.append("empty")
            elif not (ov or un):
                out.append("calibrated")
            else:
                out.append(f"{'low' if lo else 'high'}/{'over' if ov else 'under'}")
        return out

    @property
    def ece(self) -> float:
        """ECE of these bins: ``sum_m (n_m / n) |gap_m|``."""
        w = self.count / max(self.n, 1)
        return float(np.sum(np.where(self.count > 0, w * np.abs(np.nan_to_num(self.gap)), 0.0)))

    # ------------------------------------------------------------------ export
    def rows(self) -> list[dict[str, Any]]:
        """One dict per bin: bin, lower, upper, count, confidence, accuracy, gap,
        over_confident, under_confident, probability ("low"/"high"), scenario."""
        scen = self.scenario
        low = self.low_probability
        over, under = self.over_confident, self.under_confident
        gap = self.gap
        return [
            {
                "bin": m,
                "lower": float(self.edges[m]),
                "upper": float(self.edges[m + 1]),
                "count": int(self.count[m]),
                "confidence": float(self.confidence[m]),
                "accuracy": float(self.accuracy[m]),
                "gap": float(gap[m]),
                "over_confident": bool(over[m]),
                "under_confident": bool(under[m]),
                "probability": "low" if low[m] else "high",
                "scenario": scen[m],
            }
            for m in range(self.n_bins)
        ]

    def to_frame(self) -> pd.DataFrame:
        """The :meth:`rows` as a pandas DataFrame (one row per bin)."""
        import pandas as pd

        return pd.DataFrame(self.rows()).set_index("bin")


def reliability_table(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    from_logits: bool = False,
    binning: Binning | str = "uniform",
) -> ReliabilityTable:
    """Reliability table of scores, on the same bins as :func:`calibkit.metrics.ece`.

    Parameters
    ----------
    probs : (n,) P(y=1) (binary view) or (n, K) probabilities (top-label view);
        logits with ``from_logits=True``
    labels : (n,) int
    n_bins : M
    binning : "uniform" (equal width) or "quantile" (equal mass)

    Returns
    -------
    ReliabilityTable
    """
    view = "binary" if score_ndim(probs) == 1 else "top_label"
    st = binned_statistics(probs, labels, n_bins, binning=binning, from_logits=from_logits)
    return ReliabilityTable.from_stats(st, view=view, binning=str(binning))
