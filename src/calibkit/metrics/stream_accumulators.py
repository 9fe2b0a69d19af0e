"""Mergeable accumulators of an out-of-core evaluation: a fine AUROC histogram and an evaluator
holding every streamable metric (see :mod:`calibkit.metrics.out_of_core` for the AUROC bound)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from calibkit.metrics.calibration_error import binned_outcomes
from calibkit.metrics.reliability import ReliabilityTable
from calibkit.metrics.scoring_rules import nll
from calibkit.metrics.streaming import CalibrationErrorAccumulator, ScoringRuleAccumulator

__all__ = ["AUROC_BINS", "AurocHistogram", "StreamingEvaluator"]

#: default number of AUROC histogram bins
AUROC_BINS = 1 << 20


# ---------------------------------------------------------------------- AUROC by histogram
class AurocHistogram:
    """AUROC of a score for a binary outcome from two fine histograms (memory ``O(B)``).

    Parameters
    ----------
    n_bins : int
        Equal-width bins ``B`` of [0, 1]; scores must lie in [0, 1].

    See the module docstring for the error bound (:meth:`bound`).
    """

    def __init__(self, n_bins: int = AUROC_BINS):
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"n_bins must be an int >= 1; got {n_bins!r}")
        self.n_bins = n_bins
        self.pos = np.zeros(n_bins, dtype=np.int64)
        self.neg = np.zeros(n_bins, dtype=np.int64)

    def update(self, scores: ArrayLike, outcomes: ArrayLike) -> AurocHistogram:
        """Add ``scores`` (b,) in [0, 1] with boolean ``outcomes`` (b,)."""
        s = np.asarray(scores, dtype=np.float64)
        o = np.asarray(outcomes, dtype=bool)
        if s.shape != o.shape or s.ndim != 1:
            raise ValueError(
                f"scores and outcomes must be 1-D of equal length; got {s.shape}, {o.shape}"
            )
        if s.size and not (np.min(s) >= 0.0 and np.max(s) <= 1.0):
            raise ValueError("AUROC scores must lie in [0, 1] (NaN is not allowed)")
        idx = np.minimum((s * self.n_bins).astype(np.intp), self.n_bins - 1)
        # add.at, not bincount(minlength=B): no B-sized temporaries per batch, and faster
        np.add.at(self.pos, idx[o], 1)
        np.add.at(self.neg, idx[~o], 1)
        return self

    def merge(self, other: AurocHistogram) -> AurocHistogram:
        """Add another histogram's counts (same ``n_bins``)."""
        if not isinstance(other, AurocHistogram) or other.n_bins != self.n_bins:
            raise ValueError("can only merge an AurocHistogram with the same n_bins")
        self.pos += other.pos
        self.neg += other.neg
        return self

    def _totals(self) -> tuple[float, float]:
        n1, n0 = int(self.pos.sum()), int(self.neg.sum())
        if n1 == 0 or n0 == 0:
            raise ValueError("AUROC needs both outcomes (some correct and some wrong predictions)")
        if n1 * n0 >= 2**62:
            raise ValueError("AUROC histogram: more than ~4e9 rows would overflow the exact counts")
        return float(n1), float(n0)

    def auroc(self) -> float:
        """Estimated AUROC: ``P(s_1 > s_0) + P(same bin) / 2``."""
        n1, n0 = self._totals()
        below = np.cumsum(self.neg)
        below -= self.neg  # wrong ones in strictly lower bins
        # integer dot products: exact while n1 * n0 < 2**63 (about 6e9 rows)
        wins2 = 2 * int(self.pos @ below) + int(self.pos @ self.neg)
        return wins2 / (2.0 * n1 * n0)

    def bound(self) -> float:
        """Largest possible ``|estimate - exact AUROC|`` (half the within-bin pair fraction)."""
        n1, n0 = self._totals()
        return 0.5 * int(self.pos @ self.neg) / (n1 * n0)

    def __getstate__(self) -> dict[str, Any]:  # sparse: a batch fills few of the 2**20 bins
        nz_p, nz_n = np.flatnonzero(self.pos), np.flatnonzero(self.neg)
        return {
            "n_bins": self.n_bins,
            "pos": (nz_p, self.pos[nz_p]),
            "neg": (nz_n, self.neg[nz_n]),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.n_bins = int(state["n_bins"])
        self.pos = np.zeros(self.n_bins, dtype=np.int64)
        self.neg = np.zeros(self.n_bins, dtype=np.int64)
        self.pos[state["pos"][0]] = state["pos"][1]
        self.neg[state["neg"][0]] = state["neg"][1]


# ---------------------------------------------------------------------- all metrics at once
class StreamingEvaluator:
    """The ``calibkit evaluate`` metrics over batches of probabilities (memory ``O(bins)``).

    Parameters
    ----------
    n_bins : int
        Equal-width bins of the ECE family (and conf-ECE / cw-ECE, as ``calibkit evaluate``).
    auroc_bins : int
        Bins of the AUROC histogram.

    ``update(probs, labels)`` takes ``(b, K)`` probabilities (top-label view) or ``(b,)``
    ``P(y = 1)`` with 0/1 labels (binary view); the first batch fixes the view.
    """

    def __init__(self, n_bins: int = 15, *, auroc_bins: int = AUROC_BINS):
        self.n_bins = n_bins
        self.cal = CalibrationErrorAccumulator(n_bins, classwise=True)
        self.top = CalibrationErrorAccumulator(n_bins)  # conf-ECE of a 1-D input (binary view)
        self.rules = ScoringRuleAccumulator()
        self.auc = AurocHistogram(auroc_bins)
        self.ndim: int | None = None
        self.nll_from_logits: bool | None = None
        self._nll_logits = 0.0

    def update(
        self, probs: ArrayLike, labels: ArrayLike, logits: ArrayLike | None = None
    ) -> StreamingEvaluator:
        """Add a batch: ``probs`` (b,) or (b, K) probabilities, ``labels`` (b,) int.

        ``logits`` (same shape; a binary logit for 1-D ``probs``): when given, the NLL is
        computed from them exactly (``calibkit.metrics.nll(..., from_logits=True)``), as
        ``calibkit evaluate`` does for logit columns. Give them for every batch or for none.
        """
        p = np.asarray(probs, dtype=np.float64)
        if self.ndim is not None and p.ndim != self.ndim:
            raise ValueError(f"batch is {p.ndim}-D but earlier batches were {self.ndim}-D")
        with_logits = logits is not None
        if self.nll_from_logits is not None and with_logits != self.nll_from_logits:
            raise ValueError("give logits with every batch or with none")
        if p.shape[0] == 0:
            return self
        self.cal.update(p, labels)
        if p.ndim == 1:
            self.top.update(np.stack([1.0 - p, p], axis=1), labels)
        self.rules.update(p, labels)
        if logits is not None:
            self._nll_logits += nll(logits, labels, from_logits=True) * p.shape[0]
        s, o = binned_outcomes(p, labels)
        self.auc.update(s, o)
        self.ndim = p.ndim
        self.nll_from_logits = with_logits
        return self

    def merge(self, other: StreamingEvaluator) -> StreamingEvaluator:
        """Add another evaluator's sums (same bins)."""
        if not isinstance(other, StreamingEvaluator):
            raise ValueError(f"can only merge a StreamingEvaluator; got {type(other).__name__}")
        if other.ndim is None:
            return self
        if self.ndim is not None and other.ndim != self.ndim:
            raise ValueError("cannot merge a 1-D (binary view) and a 2-D (top-label) evaluator")
        if self.nll_from_logits is not None and other.nll_from_logits != self.nll_from_logits:
            raise ValueError("cannot merge evaluators with and without logits")
        self._nll_logits += other._nll_logits
        self.nll_from_logits = other.nll_from_logits
        self.cal.merge(other.cal)
        self.top.merge(other.top)
        self.rules.merge(other.rules)
        self.auc.merge(other.auc)
        self.ndim = other.ndim
        return self

    @property
    def n(self) -> int:
        return self.rules.n

    def compute(self) -> dict[str, float]:
        """accuracy, ece, mce, rms_ce, debiased_ece, conf_ece, cw_ece, brier, nll, auroc and
        auroc_bound (the AUROC's largest possible error)."""
        out = dict(self.cal.compute())
        out["conf_ece"] = self.top.ece() if self.ndim == 1 else out["ece"]
        out.update(self.rules.compute())
        if self.nll_from_logits:
            out["nll"] = self._nll_logits / self.n
        try:
            out["auroc"], out["auroc_bound"] = self.auc.auroc(), self.auc.bound()
        except ValueError:  # all predictions right (or all wrong): AUROC undefined
            out["auroc"] = out["auroc_bound"] = float("nan")
        return out

    def reliability_table(self) -> ReliabilityTable:
        return self.cal.reliability_table()
