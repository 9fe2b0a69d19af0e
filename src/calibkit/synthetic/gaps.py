"""Step 1 of paper 000 (section 4.2): find the miscalibrated bins on the validation split.

The classifier's validation scores are put into a reliability table with ``M`` equal-width bins
(the paper tries ``M = 10, 15, 20``) by :func:`calibkit.metrics.reliability_table`. A bin is a
*target* when ``|D_m| > threshold`` (0.03 in the paper), where ``D_m`` is the difference between
the bin's fraction of positives (accuracy) and its mean predicted value. Each target is labeled
with its Table 1 scenario (``low/over``, ``low/under``, ``high/over``, ``high/under``; low
probability means mean confidence ``<= 0.5``), and its items are the texts the LLM imitates.

Binary classifiers (the paper's setting) are binned on ``P(y = 1)`` (the binary view, so both the
low- and the high-probability halves exist); ``(n, K > 2)`` scores fall back to the top-label
view, where every confidence is at least ``1 / K``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._validation import check_scores_input
from calibkit.metrics import ReliabilityTable, assign_bins, reliability_table

__all__ = ["GapReport", "TargetBin", "find_gaps", "scores_view"]


@dataclass(frozen=True)
class TargetBin:
    """One miscalibrated bin selected for synthetic data.

    Attributes
    ----------
    bin : int
        Bin index ``m`` in ``[0, M)``.
    lower, upper : float
        Bin edges.
    count : int
        Validation items in the bin (``|B_m|``).
    confidence : float
        Mean predicted value ``Conf(B_m)`` (``P(y=1)`` in the binary view).
    accuracy : float
        ``Acc(B_m)``: fraction of positives (binary view) or of correct predictions.
    gap : float
        ``confidence - accuracy``: > 0 over-confident, < 0 under-confident.
    scenario : str
        Table 1 cell: ``"low/over"``, ``"low/under"``, ``"high/over"`` or ``"high/under"``.
    indices : (count,) int64
        Positions of the bin's items in the validation arrays.
    """

    bin: int
    lower: float
    upper: float
    count: int
    confidence: float
    accuracy: float
    gap: float
    scenario: str
    indices: NDArray[np.int64]

    @property
    def over_confident(self) -> bool:
        return self.gap > 0


@dataclass(frozen=True)
class GapReport:
    """Reliability table of the validation scores and the bins over the threshold.

    Attributes
    ----------
    table : ReliabilityTable
    targets : list of TargetBin
        In bin order.
    threshold : float
    values : (n,) float64
        The binned score of every validation item (``P(y=1)`` or top-label confidence).
    bin_index : (n,) intp
        Bin of every validation item.
    """

    table: ReliabilityTable
    targets: list[TargetBin]
    threshold: float
    values: NDArray[np.float64]
    bin_index: NDArray[np.intp]

    @property
    def target_indices(self) -> NDArray[np.int64]:
        """Validation positions of all target items (the paper's ``S1`` points), sorted."""
        if not self.targets:
            return np.zeros(0, dtype=np.int64)
        return np.sort(np.concatenate([t.indices for t in self.targets]))

    @property
    def n_target(self) -> int:
        return int(sum(t.count for t in self.targets))


def scores_view(
    probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The scores a gap search bins: ``(n,)`` ``P(y=1)`` for binary input ((n,) or (n, 2)),
    ``(n, K)`` probabilities for ``K > 2``; with the validated labels."""
    p, y = check_scores_input(probs, labels, from_logits=from_logits)
    if p.ndim == 2 and p.shape[1] == 2:
        p = p[:, 1]
    return p, y


def find_gaps(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 10,
    *,
    threshold: float = 0.03,
    from_logits: bool = False,
) -> GapReport:
    """Target bins where ``|Acc(B_m) - Conf(B_m)| > threshold`` (paper 000, section 4.2 step 1).

    Parameters
    ----------
    probs : (n,) P(y=1), (n, 2) or (n, K) probabilities of the validation split
        (logits with ``from_logits=True``). ``(n, 2)`` is reduced to ``P(y=1)``.
    labels : (n,) int
    n_bins : int
        ``M`` equal-width bins (paper: 10, 15 or 20).
    threshold : float
        Minimum absolute gap, in ``[0, 1)``; 0.03 in the paper.

    Returns
    -------
    GapReport
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 2:
        raise ValueError(f"n_bins must be an int >= 2, got {n_bins!r}")
    p, y = scores_view(probs, labels, from_logits=from_logits)
    table = reliability_table(p, y, int(n_bins))
    values = p if p.ndim == 1 else p.max(axis=1)
    bins = assign_bins(values, table.edges)
    targets = []
    gaps = table.gap
    for row in table.rows():
        m = int(row["bin"])
        if row["count"] == 0 or not abs(gaps[m]) > threshold:
            continue
        targets.append(
            TargetBin(
                bin=m,
                lower=float(row["lower"]),
                upper=float(row["upper"]),
                count=int(row["count"]),
                confidence=float(row["confidence"]),
                accuracy=float(row["accuracy"]),
                gap=float(gaps[m]),
                scenario=str(row["scenario"]),
                indices=np.flatnonzero(bins == m).astype(np.int64),
            )
        )
    return GapReport(
        table=table,
        targets=targets,
        threshold=float(threshold),
        values=np.asarray(values, dtype=np.float64),
        bin_index=bins,
    )
