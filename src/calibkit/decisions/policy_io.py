"""Validate a saved auto-labeling policy (JSON) field by field; errors name the source and field."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit.decisions.policy import (
    _RULES,
    CONFIDENCE,
    FORMAT,
    VERSION,
    AutoLabelPolicy,
    ClassReport,
)
from calibkit.decisions.risk import PVALUE_METHODS

__all__ = ["parse_policy_dict"]


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


def parse_policy_dict(d: Any, source: str) -> AutoLabelPolicy:
    """Rebuild and validate an :class:`AutoLabelPolicy`; errors name ``source`` and the field."""
    f = _Fields(d, source)
    classes, rule, method, by_class = _parse_header(f)
    delta = _unit_open(f, "delta", f.get("delta"))
    eps, thresholds = _parse_limits(f, classes, by_class)
    n, na, ne, grid_size, cov, ci, level = _parse_calibration(f)
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
    report, per_class = _parse_reports(f, classes, rule, by_class, eps, thresholds, (n, na, ne))
    min_acc = d.get("min_accepted")
    if min_acc is not None and not (_is_int(min_acc) and min_acc >= 1):
        raise f.fail("min_accepted", "must be null or an integer >= 1", min_acc)
    curve = None
    if "curve" in d:
        curve = _parse_curve(f, d["curve"], n, grid_size)
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
        grid_size=grid_size,
        curve=curve,
        min_accepted=min_acc,
    )


def _parse_header(f: _Fields) -> tuple[list[str], Any, Any, bool]:
    """``(classes, rule, method, by_class)`` after checking format, version and confidence."""
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
    return classes, rule, method, by_class


def _parse_limits(
    f: _Fields, classes: list[str], by_class: bool
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(max_error, thresholds)``: one each, or one per class with ``by_class``."""
    d = f.d
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
    return eps, thresholds


def _parse_calibration(f: _Fields) -> tuple[int, int, int, int, Any, Any, float]:
    """``(n, n_accepted, n_errors, grid_size, coverage, coverage_ci, ci_level)``."""
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
    return n, na, ne, ints["grid_size"], cov, ci, level


def _parse_reports(
    f: _Fields,
    classes: list[str],
    rule: str,
    by_class: bool,
    eps: tuple[float, ...],
    thresholds: tuple[float, ...],
    totals: tuple[int, int, int],
) -> tuple[ClassReport | None, tuple[ClassReport, ...]]:
    """``(report, per_class)``, checked against the calibration totals ``(n, na, ne)``."""
    d = f.d
    n, na, ne = totals
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
    return report, per_class


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
