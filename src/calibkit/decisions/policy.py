"""The saved auto-labeling policy: certified thresholds plus the figures that back them.

:func:`calibkit.decisions.certify_threshold` returns an :class:`AutoLabelPolicy`;
:meth:`AutoLabelPolicy.apply` labels what is safe and marks the rest for review;
:meth:`~AutoLabelPolicy.save` / :meth:`~AutoLabelPolicy.load` round-trip it through JSON. Loading
validates every field (a hand-edited threshold, a coverage that no longer matches its counts, an
unknown rule ...) and names the file and the field, because a tampered policy would otherwise
label data with a guarantee it does not have.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.scores import Scores

__all__ = ["FORMAT", "AutoLabelPolicy", "ClassReport", "LabelDecisions"]

FORMAT = "calibkit-autolabel-policy"
VERSION = 1
CONFIDENCE = "top_label_probability"
_RULES = ("ltt", "crc")


@dataclass(frozen=True)
class ClassReport:
    """Calibration figures of one certified threshold (global, or one predicted class).

    Attributes
    ----------
    threshold : accept when confidence >= threshold; ``inf``: never.
    n : calibration items (of this predicted class).
    n_accepted, n_errors : accepted items and wrong labels among them.
    coverage : n_accepted / n; coverage_ci : its Clopper-Pearson interval.
    error : n_errors / n_accepted (None when nothing is accepted).
    error_upper : one-sided ``1 - delta`` Clopper-Pearson bound on the accepted error rate.
    pvalue : the LTT p-value at the threshold (None for CRC or when not certified).
    n_needed : labelled calibration items (all classes) that would certify ``max_error`` at the
        observed error rate and coverage (exact binomial); n_needed_hoeffding : the same with
        paper 000's Hoeffding sample size.
    """

    threshold: float
    n: int
    n_accepted: int
    n_errors: int
    coverage: float
    coverage_ci: tuple[float, float]
    error: float | None
    error_upper: float | None
    pvalue: float | None
    n_needed: float | None = None
    n_needed_hoeffding: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": None if math.isinf(self.threshold) else self.threshold,
            "n": self.n,
            "n_accepted": self.n_accepted,
            "n_errors": self.n_errors,
            "coverage": self.coverage,
            "coverage_ci": list(self.coverage_ci),
            "error": self.error,
            "error_upper": self.error_upper,
            "pvalue": self.pvalue,
            "n_needed": _num_or_none(self.n_needed),
            "n_needed_hoeffding": _num_or_none(self.n_needed_hoeffding),
        }


def _num_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


@dataclass(frozen=True)
class LabelDecisions:
    """What :meth:`AutoLabelPolicy.apply` decided for ``n`` items.

    Attributes
    ----------
    prediction : (n,) int64 top-label class index.
    confidence : (n,) float64 top-label probability.
    accepted : (n,) bool: auto-labeled (True) or sent to review (False).
    threshold : (n,) float64 threshold applied to each item (``inf``: its class is never accepted).
    """

    prediction: NDArray[np.int64]
    confidence: NDArray[np.float64]
    accepted: NDArray[np.bool_]
    threshold: NDArray[np.float64]

    @property
    def coverage(self) -> float:
        """Share of items auto-labeled."""
        return float(self.accepted.mean()) if self.accepted.size else 0.0

    @property
    def review(self) -> NDArray[np.int64]:
        """(m,) indices of the items that need review."""
        return np.flatnonzero(~self.accepted).astype(np.int64)


@dataclass(frozen=True, eq=False)
class AutoLabelPolicy:
    """Certified confidence thresholds for auto-labeling (see :mod:`calibkit.decisions.threshold`).

    Attributes
    ----------
    classes : K class names, in score-column order.
    thresholds : 1 global threshold, or K per predicted class (``by_class``); ``inf`` = never.
    max_error : 1 or K values of ``epsilon``.
    delta : failure probability of the guarantee (LTT; recorded but unused by CRC).
    rule : "ltt" or "crc"; method : LTT p-value ("binomial" or "hoeffding_bentkus").
    n_calibration, n_accepted, n_errors, coverage, coverage_ci, ci_level : calibration figures.
    per_class : K :class:`ClassReport` (``by_class`` only).
    report : the global :class:`ClassReport` (error bound, p-value, items needed; not ``by_class``).
    grid_size : number of grid thresholds tested.
    curves : the calibration :class:`~calibkit.decisions.threshold.RiskCurve` (not saved).
    curve : ``(grid, n_accepted, n_errors)`` of a global LTT policy, saved so that loading can
        recompute the certificate and :meth:`apply` can certify a batch (``batch=True``).
    min_accepted : the fixed-sequence gate used (None: the default).
    """

    classes: tuple[str, ...]
    thresholds: tuple[float, ...]
    max_error: tuple[float, ...]
    delta: float
    rule: Literal["ltt", "crc"]
    method: Literal["binomial", "hoeffding_bentkus"]
    by_class: bool
    n_calibration: int
    n_accepted: int
    n_errors: int
    coverage: float
    coverage_ci: tuple[float, float]
    ci_level: float = 0.95
    per_class: tuple[ClassReport, ...] = ()
    report: ClassReport | None = None
    grid_size: int = 0
    curves: tuple[Any, ...] = field(default=(), repr=False)
    curve: tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]] | None = field(
        default=None, repr=False
    )
    min_accepted: int | None = None

    # ------------------------------------------------------------------ derived
    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def threshold(self) -> float:
        """The global threshold (ValueError for a class-conditional policy)."""
        if self.by_class:
            raise ValueError("a class-conditional policy has one threshold per class")
        return self.thresholds[0]

    @property
    def error(self) -> float | None:
        """Calibration error rate among accepted items."""
        return self.n_errors / self.n_accepted if self.n_accepted else None

    def class_thresholds(self) -> NDArray[np.float64]:
        """(K,) threshold per predicted class."""
        t = np.asarray(self.thresholds, dtype=np.float64)
        return np.repeat(t, self.n_classes) if t.size == 1 else t

    def guarantee(self, batch: bool = False) -> str:
        """The guarantee in one sentence (``batch``: that of :meth:`apply` with ``batch=True``)."""
        uniq = sorted(set(self.max_error))
        eps = (
            f"{uniq[0]:g}"
            if len(uniq) == 1
            else ", ".join(f"{c}: {e:g}" for c, e in zip(self.classes, self.max_error, strict=True))
        )
        if self.rule == "crc":
            return (
                f"expected share of all items auto-labeled wrongly <= {eps} "
                "(conformal risk control, in expectation over calibration and test draws)"
            )
        per = " in every predicted class" if self.by_class else ""
        if batch:
            return (
                f"with probability >= {1 - self.delta:.4g} over the calibration sample and this "
                f"batch, at most {eps} of the batch items auto-labeled are wrong "
                "(Learn-then-Test with exchangeability p-values)"
            )
        return (
            f"with probability >= {1 - self.delta:.4g} over the calibration sample, the error "
            f"rate among auto-labeled items{per} is <= {eps} (Learn-then-Test, {self.method} "
            "p-values, fixed-sequence testing)"
        )

    # ------------------------------------------------------------------ apply
    def apply(
        self,
        scores: Scores | ArrayLike,
        *,
        from_logits: bool = False,
        batch: bool = False,
    ) -> LabelDecisions:
        """Accept items whose top-label probability reaches their predicted class's threshold.

        Parameters
        ----------
        scores : Scores (columns matched to ``classes`` by name, any order) or an ``(n, K)``
            probability array (logits with ``from_logits``; ``(n,)`` ``P(y=1)`` when K = 2) in
            the policy's class order. Labels are not needed.
        batch : certify the error realised on *these* items instead of using the saved
            threshold: with probability ``1 - delta`` over the calibration sample and this
            batch, at most ``max_error`` of the accepted items are wrong
            (:func:`~calibkit.decisions.batch_select`; global LTT policies only). The threshold
            may differ from :attr:`threshold`; nothing is accepted when none is certified.
        """
        from calibkit.decisions.threshold import top_label_outcomes_of

        if isinstance(scores, Scores):
            scores = self.align(scores)
        conf, pred, _, k = top_label_outcomes_of(
            scores, None, from_logits=from_logits, need_labels=False
        )
        if k != self.n_classes:
            raise ValueError(
                f"scores have {k} classes but the policy was certified on {self.n_classes} "
                f"({', '.join(self.classes)})"
            )
        if batch:
            thr = np.full(pred.shape, self.batch_threshold(conf))
        else:
            thr = self.class_thresholds()[pred]
        return LabelDecisions(prediction=pred, confidence=conf, accepted=conf >= thr, threshold=thr)

    def batch_threshold(self, confidence: ArrayLike) -> float:
        """The threshold certified for a batch with these ``(n,)`` top-label probabilities.

        ``inf`` when no threshold is certified for the batch (see :meth:`apply` with ``batch``).
        """
        from calibkit.decisions.threshold import accepted_counts, batch_select, grid_cells

        if self.curve is None or self.rule != "ltt" or self.by_class:
            raise ValueError(
                "a batch guarantee needs a global Learn-then-Test policy with its calibration "
                "curve (certify_threshold(..., rule='ltt', by_class=False))"
            )
        g, n_acc, n_err = self.curve
        c = np.asarray(confidence, dtype=np.float64)
        m, _ = accepted_counts(grid_cells(c, g), np.zeros(c.size, dtype=bool), g.size)
        idx, _ = batch_select(
            n_acc, n_err, m, self.max_error[0], self.delta, min_accepted=self.min_accepted
        )
        return float(g[int(idx)]) if int(idx) >= 0 else math.inf

    def align(self, scores: Scores) -> Scores:
        """``scores`` with its columns reordered to the policy's classes (names must match)."""
        if tuple(scores.classes) == self.classes:
            return scores
        if sorted(scores.classes) != sorted(self.classes):
            raise ValueError(
                f"the scores' classes {list(scores.classes)} differ from the policy's "
                f"{list(self.classes)}"
            )
        order = [scores.classes.index(c) for c in self.classes]
        return Scores(
            logits=scores.logits[:, order],
            labels=None if scores.labels is None else np.argsort(order)[scores.labels],
            classes=self.classes,
            ids=scores.ids,
            meta=scores.meta,
        )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the risk curves are not included)."""
        d: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "confidence": CONFIDENCE,
            "classes": list(self.classes),
            "rule": self.rule,
            "method": self.method,
            "by_class": self.by_class,
            "delta": self.delta,
            "guarantee": self.guarantee(),
        }
        if self.by_class:
            d["max_error"] = dict(zip(self.classes, self.max_error, strict=True))
            d["thresholds"] = {
                c: (None if math.isinf(t) else t)
                for c, t in zip(self.classes, self.thresholds, strict=True)
            }
        else:
            d["max_error"] = self.max_error[0]
            d["threshold"] = None if math.isinf(self.thresholds[0]) else self.thresholds[0]
        d["calibration"] = {
            "n": self.n_calibration,
            "n_accepted": self.n_accepted,
            "n_errors": self.n_errors,
            "coverage": self.coverage,
            "coverage_ci": list(self.coverage_ci),
            "ci_level": self.ci_level,
            "grid_size": self.grid_size,
        }
        if self.report is not None:
            d["report"] = self.report.to_dict()
        d["min_accepted"] = self.min_accepted
        if self.curve is not None:
            g, a, e = self.curve
            d["curve"] = {
                "grid": [float(x) for x in g],
                "n_accepted": [int(x) for x in a],
                "n_errors": [int(x) for x in e],
            }
        if self.per_class:
            d["per_class"] = {
                c: r.to_dict() for c, r in zip(self.classes, self.per_class, strict=True)
            }
        return d

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the policy as indented JSON, atomically."""
        from calibkit._atomic import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "policy") -> AutoLabelPolicy:
        """Rebuild and validate a policy; errors name ``source`` and the field."""
        from calibkit.decisions.policy_io import parse_policy_dict

        return parse_policy_dict(d, source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AutoLabelPolicy:
        """Read a policy written by :meth:`save`, validating every field."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"policy file {p} not found")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p} is not valid JSON: {exc}") from None
        return cls.from_dict(d, source=str(p))
