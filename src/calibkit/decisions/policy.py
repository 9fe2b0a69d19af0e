"""The saved auto-labeling policy: certified thresholds plus the figures that back them.

:func:`calibkit.decisions.certify_threshold` returns an :class:`AutoLabelPolicy`;
:meth:`AutoLabelPolicy.apply` labels what is safe and marks the rest for review;
:meth:`~AutoLabelPolicy.save` / :meth:`~AutoLabelPolicy.load` round-trip it through JSON. Loading
validates every field (a hand-edited threshold, a coverage that no longer matches its counts, an
unknown rule ...) and names the file and the field, because a tampered policy would otherwise
label data with a guarantee it does not have.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.decisions.risk import PVALUE_METHODS
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
        return _parse(d, source)

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
        return _parse(d, str(p))


# --------------------------------------------------------------------------- validation
class _Fields:
    def __init__(self, d: Any, source: str) -> None:
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(d).__name__}")
        self.d = d
        self.source = source

    def fail(self, name: str, what: str, value: Any) -> ValueError:
        shown = json.dumps(value)[:80] if _jsonable(value) else repr(value)[:80]
        return ValueError(f"{self.source}: field '{name}' {what}; got {shown}")

    def get(self, name: str, obj: dict[str, Any] | None = None, prefix: str = "") -> Any:
        src = self.d if obj is None else obj
        if name not in src:
            raise ValueError(f"{self.source}: field '{prefix}{name}' is missing")
        return src[name]


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _unit_open(f: _Fields, name: str, v: Any) -> float:
    if not _is_num(v) or not (0.0 < v < 1.0):
        raise f.fail(name, "must be a number in (0, 1)", v)
    return float(v)


def _threshold(f: _Fields, name: str, v: Any) -> float:
    if v is None:
        return math.inf
    if not _is_num(v) or not (0.0 <= v <= 1.0):
        raise f.fail(name, "must be a confidence in [0, 1] or null (never accept)", v)
    return float(v)


def _parse(d: Any, source: str) -> AutoLabelPolicy:
    f = _Fields(d, source)
    fmt = f.get("format")
    if fmt != FORMAT:
        raise f.fail("format", f"must be {FORMAT!r} (not a calibkit auto-labeling policy)", fmt)
    ver = f.get("version")
    if ver != VERSION:
        raise f.fail("version", f"must be {VERSION}", ver)
    conf = f.get("confidence")
    if conf != CONFIDENCE:
        raise f.fail("confidence", f"must be {CONFIDENCE!r}", conf)
    classes = f.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise f.fail("classes", "must be a list of >= 2 distinct non-empty strings", classes)
    rule = f.get("rule")
    if rule not in _RULES:
        raise f.fail("rule", f"must be one of {list(_RULES)}", rule)
    method = f.get("method")
    if method not in PVALUE_METHODS:
        raise f.fail("method", f"must be one of {list(PVALUE_METHODS)}", method)
    by_class = f.get("by_class")
    if not isinstance(by_class, bool):
        raise f.fail("by_class", "must be true or false", by_class)
    if by_class and rule == "crc":
        raise f.fail("by_class", "cannot be true with rule 'crc'", by_class)
    delta = _unit_open(f, "delta", f.get("delta"))
    max_err = f.get("max_error")
    if by_class:
        if not isinstance(max_err, dict) or sorted(max_err) != sorted(classes):
            raise f.fail("max_error", "must map every class to a number in (0, 1)", max_err)
        eps = tuple(_unit_open(f, f"max_error.{c}", max_err[c]) for c in classes)
        thr_map = f.get("thresholds")
        if not isinstance(thr_map, dict) or sorted(thr_map) != sorted(classes):
            raise f.fail("thresholds", "must map every class to a threshold or null", thr_map)
        thresholds = tuple(_threshold(f, f"thresholds.{c}", thr_map[c]) for c in classes)
        if "threshold" in d:
            raise f.fail(
                "threshold", "must be absent in a class-conditional policy", d["threshold"]
            )
    else:
        eps = (_unit_open(f, "max_error", max_err),)
        thresholds = (_threshold(f, "threshold", f.get("threshold")),)
        if "thresholds" in d:
            raise f.fail("thresholds", "must be absent unless by_class is true", d["thresholds"])
    cal = f.get("calibration")
    if not isinstance(cal, dict):
        raise f.fail("calibration", "must be an object", cal)
    ints = {}
    for key in ("n", "n_accepted", "n_errors", "grid_size"):
        v = f.get(key, cal, "calibration.")
        if not _is_int(v) or v < 0:
            raise f.fail(f"calibration.{key}", "must be a non-negative integer", v)
        ints[key] = int(v)
    n, na, ne = ints["n"], ints["n_accepted"], ints["n_errors"]
    if n < 1 or not (0 <= ne <= na <= n):
        raise f.fail(
            "calibration", "needs 0 <= n_errors <= n_accepted <= n and n >= 1", [n, na, ne]
        )
    cov = f.get("coverage", cal, "calibration.")
    if not _is_num(cov) or abs(cov - na / n) > 1e-9:
        raise f.fail("calibration.coverage", f"must equal n_accepted / n = {na / n:.12g}", cov)
    ci = f.get("coverage_ci", cal, "calibration.")
    if (
        not isinstance(ci, list)
        or len(ci) != 2
        or not all(_is_num(x) for x in ci)
        or not (0.0 <= ci[0] <= cov + 1e-12 <= ci[1] + 2e-12 <= 1.0 + 2e-12)
    ):
        raise f.fail("calibration.coverage_ci", "must be [low, high] around the coverage", ci)
    level = _unit_open(f, "calibration.ci_level", f.get("ci_level", cal, "calibration."))
    if ne > 0 and na > 0 and rule == "ltt" and not by_class:
        # a certified LTT threshold never has an empirical error rate above epsilon
        if ne / na > eps[0] + 1e-12:
            raise f.fail(
                "calibration.n_errors",
                f"gives an error rate {ne / na:.4g} above max_error {eps[0]:g}; "
                "the certificate does not hold",
                ne,
            )
    if not by_class and math.isinf(thresholds[0]):
        raise f.fail("threshold", "is null: a global policy must accept something", None)
    per_class: tuple[ClassReport, ...] = ()
    report = None
    if not by_class and "report" in d:
        report = _class_report(
            f, "report", d["report"], thresholds[0], eps[0] if rule == "ltt" else 1.0
        )
        if (report.n, report.n_accepted, report.n_errors) != (n, na, ne):
            raise f.fail("report", "counts differ from the calibration totals", [n, na, ne])
    if by_class:
        pc = f.get("per_class")
        if not isinstance(pc, dict) or sorted(pc) != sorted(classes):
            raise f.fail("per_class", "must hold one report per class", pc)
        reps = []
        for i, c in enumerate(classes):
            reps.append(_class_report(f, f"per_class.{c}", pc[c], thresholds[i], eps[i]))
        per_class = tuple(reps)
        if sum(r.n_accepted for r in reps) != na or sum(r.n_errors for r in reps) != ne:
            raise f.fail("per_class", "counts do not add up to the calibration totals", [na, ne])
        if sum(r.n for r in reps) != n:
            raise f.fail("per_class", "item counts do not add up to calibration.n", n)
    min_acc = d.get("min_accepted")
    if min_acc is not None and not (_is_int(min_acc) and min_acc >= 1):
        raise f.fail("min_accepted", "must be null or an integer >= 1", min_acc)
    curve = None
    if "curve" in d:
        curve = _parse_curve(f, d["curve"], n, ints["grid_size"])
        if by_class or rule != "ltt":
            raise f.fail("curve", "is only kept for global Learn-then-Test policies", "...")
        _check_certificate(f, curve, thresholds[0], na, ne, eps[0], delta, method, min_acc)
    return AutoLabelPolicy(
        classes=tuple(classes),
        thresholds=thresholds,
        max_error=eps,
        delta=delta,
        rule=rule,
        method=method,
        by_class=by_class,
        n_calibration=n,
        n_accepted=na,
        n_errors=ne,
        coverage=float(cov),
        coverage_ci=(float(ci[0]), float(ci[1])),
        ci_level=level,
        per_class=per_class,
        report=report,
        grid_size=ints["grid_size"],
        curve=curve,
        min_accepted=min_acc,
    )


def _parse_curve(
    f: _Fields, c: Any, n: int, grid_size: int
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    if not isinstance(c, dict):
        raise f.fail("curve", "must be an object with grid, n_accepted, n_errors", "...")
    g = f.get("grid", c, "curve.")
    if (
        not isinstance(g, list)
        or len(g) != grid_size
        or not all(_is_num(x) and 0.0 <= x <= 1.0 for x in g)
        or any(b >= a for a, b in itertools.pairwise(g))
    ):
        raise f.fail(
            "curve.grid", f"must be {grid_size} strictly decreasing confidences in [0, 1]", "..."
        )
    arrs = []
    for key in ("n_accepted", "n_errors"):
        v = f.get(key, c, "curve.")
        if not isinstance(v, list) or len(v) != grid_size or not all(_is_int(x) for x in v):
            raise f.fail(f"curve.{key}", f"must be {grid_size} integers", "...")
        a = np.asarray(v, dtype=np.int64)
        if a.size and (a.min() < 0 or a.max() > n or np.any(np.diff(a) < 0)):
            raise f.fail(f"curve.{key}", f"must be non-decreasing counts in [0, {n}]", "...")
        arrs.append(a)
    if np.any(arrs[1] > arrs[0]) or np.any(np.diff(arrs[0] - arrs[1]) < 0):
        raise f.fail("curve.n_errors", "is inconsistent with curve.n_accepted", "...")
    return np.asarray(g, dtype=np.float64), arrs[0], arrs[1]


def _check_certificate(
    f: _Fields,
    curve: tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]],
    threshold: float,
    na: int,
    ne: int,
    eps: float,
    delta: float,
    method: str,
    min_accepted: int | None,
) -> None:
    """Recompute Learn-then-Test from the saved counts: it must give the saved threshold."""
    from calibkit.decisions.threshold import ltt_select

    g, a, e = curve
    hit = np.flatnonzero(g == threshold)
    if hit.size != 1:
        raise f.fail("threshold", "is not a point of curve.grid", threshold)
    j = int(hit[0])
    if (int(a[j]), int(e[j])) != (na, ne):
        raise f.fail(
            "curve", "counts at the threshold differ from the calibration totals", [na, ne]
        )
    idx, _ = ltt_select(a, e, eps, delta, method=method, min_accepted=min_accepted)
    if int(idx) != j:
        got = "none" if int(idx) < 0 else f"{g[int(idx)]:.6g}"
        raise f.fail(
            "threshold",
            f"is not what Learn-then-Test certifies from the saved counts (that is {got})",
            threshold,
        )


def _class_report(f: _Fields, name: str, r: Any, thr: float, eps: float) -> ClassReport:
    if not isinstance(r, dict):
        raise f.fail(name, "must be an object", r)
    t = _threshold(f, f"{name}.threshold", f.get("threshold", r, f"{name}."))
    if t != thr:
        raise f.fail(f"{name}.threshold", f"differs from thresholds ({thr})", r.get("threshold"))
    vals: dict[str, int] = {}
    for key in ("n", "n_accepted", "n_errors"):
        v = f.get(key, r, f"{name}.")
        if not _is_int(v) or v < 0:
            raise f.fail(f"{name}.{key}", "must be a non-negative integer", v)
        vals[key] = int(v)
    if not (vals["n_errors"] <= vals["n_accepted"] <= vals["n"]):
        raise f.fail(name, "needs n_errors <= n_accepted <= n", list(vals.values()))
    if math.isinf(t) and vals["n_accepted"]:
        raise f.fail(
            f"{name}.n_accepted", "must be 0 when the class is never accepted", vals["n_accepted"]
        )
    if vals["n_accepted"] and vals["n_errors"] / vals["n_accepted"] > eps + 1e-12:
        raise f.fail(
            f"{name}.n_errors", f"gives an error rate above max_error {eps:g}", vals["n_errors"]
        )
    cov = f.get("coverage", r, f"{name}.")
    expect = vals["n_accepted"] / vals["n"] if vals["n"] else 0.0
    if not _is_num(cov) or abs(cov - expect) > 1e-9:
        raise f.fail(f"{name}.coverage", f"must equal n_accepted / n = {expect:.12g}", cov)

    def opt(key: str, lo: float = 0.0, hi: float = 1.0) -> float | None:
        v = r.get(key)
        if v is None:
            return None
        if not _is_num(v) or not (lo <= v <= hi):
            raise f.fail(f"{name}.{key}", f"must be null or a number in [{lo:g}, {hi:g}]", v)
        return float(v)

    ci = r.get("coverage_ci", [0.0, 0.0])
    if not isinstance(ci, list) or len(ci) != 2 or not all(_is_num(x) for x in ci):
        raise f.fail(f"{name}.coverage_ci", "must be [low, high]", ci)
    return ClassReport(
        threshold=t,
        n=vals["n"],
        n_accepted=vals["n_accepted"],
        n_errors=vals["n_errors"],
        coverage=float(cov),
        coverage_ci=(float(ci[0]), float(ci[1])),
        error=opt("error"),
        error_upper=opt("error_upper"),
        pvalue=opt("pvalue"),
        n_needed=opt("n_needed", 0.0, math.inf),
        n_needed_hoeffding=opt("n_needed_hoeffding", 0.0, math.inf),
    )
