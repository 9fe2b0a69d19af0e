"""Checks of a fitted calibrator (see :mod:`calibkit.calibrators.diagnostics`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from calibkit.calibrators._odir import MIN_ROWS_PER_PARAMETER
from calibkit.calibrators.base import Calibrator
from calibkit.calibrators.findings import TIES_AUROC_DROP, TIES_PRED_CHANGE, Finding, _f
from calibkit.scores import Scores

__all__ = ["n_parameters"]


def _inner(cal: Calibrator) -> tuple[str, Calibrator]:
    """``(label, calibrator)``: an AutoCalibrator is looked through to its chosen calibrator."""
    from calibkit.calibrators.select import AutoCalibrator

    if isinstance(cal, AutoCalibrator):
        return f"auto -> {cal.selected_}", cal.calibrator_
    return type(cal).__name__, cal


def n_parameters(cal: Calibrator) -> int | None:
    """Effective number of free parameters of a fitted calibrator (``None``: non-parametric).

    Temperature 1; vector scaling ``2K``; matrix / Dirichlet ``K^2 + K``, or ``2K`` when their
    off-diagonal regularisation was chosen by cross-validation (the off-diagonal part is then
    controlled by held-out data); Platt ``2m``, beta ``3m``, histogram binning ``bins * m``
    (``m`` one-vs-rest maps); isotonic regression (non-parametric) ``None``; identity 0.
    """
    from calibkit.calibrators import (
        BetaCalibration,
        DirichletCalibration,
        HistogramBinning,
        IdentityCalibrator,
        MatrixScaling,
        PlattScaling,
        TemperatureScaling,
        VectorScaling,
    )

    _, c = _inner(cal)
    k = int(c.n_classes_)
    m = 1 if k == 2 else k
    if isinstance(c, IdentityCalibrator):
        return 0
    if isinstance(c, TemperatureScaling):
        return 1
    if isinstance(c, VectorScaling):
        return 2 * k
    if isinstance(c, MatrixScaling | DirichletCalibration):
        cv = getattr(c, "cv_results_", None)
        return 2 * k if cv is not None else k * k + k
    if isinstance(c, PlattScaling):
        return 2 * m
    if isinstance(c, BetaCalibration):
        return 3 * m
    if isinstance(c, HistogramBinning):
        return int(sum(len(v) for v in c.bin_values_))
    return None


def _check_inverted_fit(cal: Calibrator, scores: Scores | None) -> list[Finding]:
    from calibkit.calibrators import (
        DirichletCalibration,
        MatrixScaling,
        PlattScaling,
        TemperatureScaling,
        VectorScaling,
    )

    label, c = _inner(cal)
    neg: list[float] = []
    what = ""
    if isinstance(c, TemperatureScaling) and c.temperature_ < 0:
        neg, what = [float(c.temperature_)], "temperature"
    elif isinstance(c, VectorScaling | PlattScaling):
        coef = np.atleast_1d(np.asarray(c.coef_, dtype=np.float64))
        neg, what = [float(v) for v in coef if v < 0], "slope(s)"
    elif isinstance(c, MatrixScaling | DirichletCalibration):
        diag = np.diag(np.asarray(c.coef_, dtype=np.float64))
        neg, what = [float(v) for v in diag if v < 0], "diagonal coefficient(s)"
    if not neg:
        return []
    numbers: dict[str, Any] = {"negative": neg, "calibrator": label}
    gain = ""
    if scores is not None and scores.labels is not None:
        from calibkit.metrics import accuracy
        from calibkit.metrics.ranking import auroc

        after = cal.calibrate(scores)
        a0, a1 = accuracy(scores.probs, scores.labels), accuracy(after.probs, scores.labels)
        r0, r1 = auroc(scores.probs, scores.labels), auroc(after.probs, scores.labels)
        numbers.update(accuracy_before=a0, accuracy_after=a1, auroc_before=r0, auroc_after=r1)
        gain = (
            f" On these data accuracy goes {_f(a0)} -> {_f(a1)} and AUROC {_f(r0)} -> {_f(r1)}: "
            "the gain is a sign flip, not a correction."
        )
    shown = ", ".join(f"{v:.3g}" for v in neg[:6]) + (" ..." if len(neg) > 6 else "")
    return [
        Finding(
            "inverted_fit",
            "warning",
            f"{label} has negative {what} ({shown}): it turns the scores around, so higher "
            f"model scores now mean lower calibrated probability.{gain}",
            "Treat the model's scores as inverted (check the prompt and label mapping) and "
            "report the flip explicitly instead of as calibration.",
            numbers,
        )
    ]


def _check_temperature_bound(cal: Calibrator) -> list[Finding]:
    from calibkit.calibrators import TemperatureScaling
    from calibkit.calibrators.temperature import LOG_T_BOUNDS

    label, c = _inner(cal)
    if not isinstance(c, TemperatureScaling) or c.temperature_ <= 0:
        return []
    log_t = math.log(c.temperature_)
    lo, hi = LOG_T_BOUNDS
    if min(abs(log_t - lo), abs(log_t - hi)) > 1e-3:
        return []
    upper = abs(log_t - hi) <= 1e-3
    meaning = (
        "the scores carry no usable signal about the labels (the best fit is T -> infinity, "
        "i.e. the same probability for every class)"
        if upper
        else "the scores separate the calibration labels perfectly (T -> 0), an overfit "
        "or leaked calibration set"
    )
    return [
        Finding(
            "temperature_at_bound",
            "warning",
            f"{label} ended on its search bound, T = {c.temperature_:.4g} (log T = {log_t:.2f}): "
            f"{meaning}.",
            "Do not use these calibrated probabilities; check that scores and labels belong "
            "together and that the model has signal on this task (AUROC well above 0.5).",
            {"temperature": c.temperature_, "log_t": log_t, "bound": hi if upper else lo},
        )
    ]


def _check_parameters(cal: Calibrator, fit_scores: Scores) -> list[Finding]:
    label, _ = _inner(cal)
    p = n_parameters(cal)
    n = len(fit_scores)
    if p is None or p == 0 or n >= MIN_ROWS_PER_PARAMETER * p:
        return []
    k = fit_scores.n_classes
    return [
        Finding(
            "few_rows_for_parameters",
            "warning",
            f"{label} has {p:,} free parameters for {n:,} calibration rows ({n / p:.1f} per "
            f"parameter, fewer than {MIN_ROWS_PER_PARAMETER}): it can fit noise and end worse "
            "than no calibration on new data.",
            f"Use temperature scaling (1 parameter) or vector scaling ({2 * k}), matrix or "
            "Dirichlet with reg_lambda='auto', calibkit.calibrators.select, or more "
            "calibration data.",
            {"parameters": p, "rows": n, "rows_per_parameter": n / p},
        )
    ]


def _check_ties(cal: Calibrator, scores: Scores) -> list[Finding]:
    from calibkit.calibrators import HistogramBinning, IsotonicCalibrator
    from calibkit.metrics.ranking import auroc, binary_auroc

    label, c = _inner(cal)
    if not isinstance(c, IsotonicCalibrator | HistogramBinning):
        return []
    if getattr(c, "binary_input_", False) or scores.n_classes != c.n_classes_:
        return []
    after = cal.calibrate(scores)
    changed = float(np.mean(after.prediction != scores.prediction))
    p_before, p_after = scores.probs, after.probs
    distinct_before = int(np.unique(p_before.max(axis=1)).size)
    distinct_after = int(np.unique(p_after.max(axis=1)).size)
    numbers: dict[str, Any] = {
        "predictions_changed": changed,
        "distinct_confidences_before": distinct_before,
        "distinct_confidences_after": distinct_after,
    }
    drop = 0.0
    if scores.labels is not None:
        if scores.n_classes == 2:
            y1 = scores.labels == 1
            r0, r1 = binary_auroc(p_before[:, 1], y1), binary_auroc(p_after[:, 1], y1)
        else:
            r0, r1 = auroc(p_before, scores.labels), auroc(p_after, scores.labels)
        if math.isfinite(r0) and math.isfinite(r1):
            drop = r0 - r1
            numbers.update(auroc_before=r0, auroc_after=r1)
    if changed <= TIES_PRED_CHANGE and drop <= TIES_AUROC_DROP:
        return []
    parts = []
    if changed > TIES_PRED_CHANGE:
        parts.append(f"changes the predicted class of {changed:.1%} of the items")
    if drop > TIES_AUROC_DROP:
        parts.append(f"lowers the AUROC from {r0:.3f} to {r1:.3f}")
    return [
        Finding(
            "ties_change_ranking",
            "warning",
            f"{label} pools {distinct_before:,} distinct confidences into {distinct_after:,} "
            f"tied values and {' and '.join(parts)}: its flat steps discard ranking "
            "information.",
            "Prefer a smooth calibrator (temperature, Platt, beta) when ranking matters, or "
            "fit the isotonic map on more data.",
            numbers,
        )
    ]
