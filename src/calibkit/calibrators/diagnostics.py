"""Diagnostics of scores and fitted calibrators: what a metrics table does not tell you.

:func:`diagnose` is a pure function returning a list of :class:`Finding` (code, severity, one
sentence of what it means, one of what to do, and the numbers behind it). Checks:

==============================  ===============================================================
``inverted_scores``             the scores rank the classes the wrong way round: AUROC of the
                                class score (binary: the margin ``z_1 - z_0``; else each class's
                                log-probability, one-vs-rest) below 0.5 at the one-sided
                                ``1 - alpha`` level (DeLong standard error)
``no_signal``                   no class's AUROC interval (two-sided ``1 - alpha``) excludes 0.5
``inverted_ranking``            confidence ranks wrong answers above right ones: AUROC of
                                confidence for correctness below 0.5 at the one-sided
                                ``1 - alpha`` level
``inverted_fit``                the calibrator flips the scores: a negative temperature, negative
                                vector-scaling / Platt slopes, a negative matrix diagonal
``temperature_at_bound``        temperature scaling ended on its search bound (log T = +-10):
                                the scores carry no signal (T -> inf) or separate perfectly
``few_rows_for_parameters``     fewer than 10 calibration rows per free parameter
``few_rows_for_ece``            fewer rows than paper 000's PAC bound needs for the ECE
                                precision asked (:func:`calibkit.metrics.pac_sample_size`)
``class_absent``                a class never occurs among the calibration labels
``prior_shift``                 label frequencies differ between the calibration and the
                                evaluated data: chi-square test of homogeneity p < 0.01 *and*
                                total-variation distance > 0.05 (both: significant and large)
``ties_change_ranking``         isotonic / histogram maps pool distinct scores into ties, which
                                changes the predicted class or lowers the ranking quality
==============================  ===============================================================

``scores`` are the data evaluated (labels needed for the label-based checks); ``calibrator``
a fitted calibrator; ``fit_scores`` the labelled data it was (or will be) fitted on. Checks
whose inputs are missing are skipped. ``severity`` is ``"warning"`` (a result you should not
trust as is) or ``"info"``. Nothing here fits or changes anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from calibkit.calibrators._odir import MIN_ROWS_PER_PARAMETER
from calibkit.calibrators.base import Calibrator
from calibkit.scores import Scores

__all__ = [
    "MIN_ROWS_PER_PARAMETER",
    "PRIOR_SHIFT_P",
    "PRIOR_SHIFT_TV",
    "Finding",
    "diagnose",
    "format_findings",
    "n_parameters",
]

Severity = Literal["warning", "info"]

#: prior shift: chi-square p-value below this ...
PRIOR_SHIFT_P = 0.01
#: ... and total-variation distance above this
PRIOR_SHIFT_TV = 0.05
#: isotonic/histogram ties: flagged when they change this share of predicted classes ...
TIES_PRED_CHANGE = 0.005
#: ... or lower the AUROC (confidence for correctness; binary: P(y=1) for the label) this much
TIES_AUROC_DROP = 0.005


@dataclass(frozen=True)
class Finding:
    """One diagnostic.

    Attributes
    ----------
    code : str
        Stable identifier (see the module table).
    severity : {"warning", "info"}
    message : str
        What was found and what it means, one sentence.
    advice : str
        What to do, one sentence.
    numbers : dict
        The measured quantities behind it (JSON-ready floats, ints, strings, lists).
    """

    code: str
    severity: Severity
    message: str
    advice: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "advice": self.advice,
            "numbers": dict(self.numbers),
        }

    def __str__(self) -> str:
        return f"{self.severity}: [{self.code}] {self.message} {self.advice}"


def format_findings(findings: Sequence[Finding]) -> str:
    """One line per finding (``severity: [code] message advice``); empty string for none."""
    return "\n".join(str(f) for f in findings)


# ---------------------------------------------------------------------- helpers
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


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


# ---------------------------------------------------------------------- checks
def _one_sided(est: float, se: float, alpha: float) -> float:
    """Upper one-sided ``1 - alpha`` bound ``est + z_{1-alpha} se`` (``nan`` if ``se`` is)."""
    from scipy.stats import norm

    return est + float(norm.ppf(1.0 - alpha)) * se


def _check_inverted_ranking(scores: Scores, alpha: float) -> list[Finding]:
    from calibkit.metrics.ranking import auroc_ci

    if scores.labels is None:
        return []
    ci = auroc_ci(scores.probs, scores.labels, alpha=alpha)
    upper = _one_sided(ci.estimate, ci.se, alpha)
    if not math.isfinite(upper) or upper >= 0.5:
        return []
    level = round(100 * (1 - alpha))
    return [
        Finding(
            "inverted_ranking",
            "warning",
            f"Confidence ranks wrong answers above right ones: the AUROC of confidence for "
            f"correctness is {_f(ci.estimate)} (one-sided {level}% upper bound {_f(upper)}), "
            "below the 0.5 of a random score.",
            "Fix the source (prompt, answer-token mapping, label order) rather than calibrate; "
            "a calibrator can only hide this by flipping the scores.",
            {"auroc": ci.estimate, "se": ci.se, "upper_bound": upper, "alpha": alpha},
        )
    ]


def _class_aurocs(scores: Scores) -> list[tuple[str, float, float]]:
    """``(class, AUROC, DeLong se)`` of each class score for its one-vs-rest target; for two
    classes one entry, the margin ``z_1 - z_0`` for class 1 (classes with < 2 members skipped)."""
    from calibkit.metrics.ranking import binary_auroc_ci

    y = scores.require_labels()
    z = np.asarray(scores.logits, dtype=np.float64)
    if scores.n_classes == 2:
        pairs = [(scores.classes[1], z[:, 1] - z[:, 0], y == 1)]
    else:
        lp = scores.log_probs
        pairs = [(c, lp[:, k], y == k) for k, c in enumerate(scores.classes)]
    out = []
    for c, s, t in pairs:
        ci = binary_auroc_ci(s, t)
        if math.isfinite(ci.se):
            out.append((c, ci.estimate, ci.se))
    return out


def _check_discrimination(scores: Scores, alpha: float) -> list[Finding]:
    from scipy.stats import norm

    if scores.labels is None:
        return []
    rows = _class_aurocs(scores)
    if not rows:
        return []
    level = round(100 * (1 - alpha))
    inverted = [(c, a, se) for c, a, se in rows if _one_sided(a, se, alpha) < 0.5]
    what = "P(y = {c}) for y = {c}" if scores.n_classes == 2 else "P(y = {c}) one-vs-rest"
    if inverted:
        shown = "; ".join(
            f"{what.format(c=c)}: AUROC {_f(a)} (upper bound {_f(_one_sided(a, se, alpha))})"
            for c, a, se in inverted[:5]
        )
        return [
            Finding(
                "inverted_scores",
                "warning",
                f"The scores rank the classes the wrong way round: {shown}, below 0.5 at the "
                f"one-sided {level}% level. Any accuracy a calibrator gains here comes from "
                "flipping the scores.",
                "Check the label-to-answer mapping, the prompt and the class order before "
                "calibrating; then re-score.",
                {
                    "classes": [c for c, _, _ in inverted],
                    "auroc": [a for _, a, _ in inverted],
                    "se": [se for _, _, se in inverted],
                    "alpha": alpha,
                },
            )
        ]
    z = float(norm.ppf(1.0 - alpha / 2.0))
    if all(a - z * se <= 0.5 for _, a, se in rows):
        best = max(rows, key=lambda r: r[1])
        return [
            Finding(
                "no_signal",
                "warning",
                f"The scores do not separate the classes better than chance: every class's "
                f"AUROC interval contains 0.5 (best: {what.format(c=best[0])} AUROC "
                f"{_f(best[1])} +- {_f(z * best[2])}). Calibration can then only move the "
                "probabilities towards the label frequencies.",
                "Improve the scores (prompt, few-shot examples, a larger model) before "
                "calibrating; treat any calibration gain as a prior correction.",
                {
                    "classes": [c for c, _, _ in rows],
                    "auroc": [a for _, a, _ in rows],
                    "se": [se for _, _, se in rows],
                    "alpha": alpha,
                },
            )
        ]
    return []


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


def _check_ece_rows(n: int, epsilon: float, delta: float, which: str) -> list[Finding]:
    from calibkit.metrics.pac import pac_sample_size

    need = pac_sample_size(epsilon, delta)
    if n >= need:
        return []
    achieved = math.sqrt(math.log(4.0 / delta) / (2.0 * n))
    return [
        Finding(
            "few_rows_for_ece",
            "warning" if which == "calibration" else "info",
            f"The {which} data have {n:,} rows; paper 000's PAC bound needs {need:,} to know "
            f"the ECE within +-{epsilon:g} with probability {1 - delta:g} (with {n:,} rows: "
            f"+-{achieved:.3f}).",
            f"Read ECE differences smaller than {achieved:.3f} as noise, or collect at least "
            f"{need:,} labelled rows.",
            {
                "rows": n,
                "rows_needed": need,
                "epsilon": epsilon,
                "delta": delta,
                "epsilon_achieved": achieved,
                "data": which,
            },
        )
    ]


def _check_absent(fit_scores: Scores) -> list[Finding]:
    y = fit_scores.require_labels()
    counts = np.bincount(y, minlength=fit_scores.n_classes)
    absent = [fit_scores.classes[i] for i in np.flatnonzero(counts == 0)]
    if not absent:
        return []
    shown = ", ".join(absent[:10]) + (" ..." if len(absent) > 10 else "")
    return [
        Finding(
            "class_absent",
            "warning",
            f"{len(absent)} class(es) never occur among the {len(y):,} calibration labels "
            f"({shown}): calibrators learn nothing about them and push their probability "
            "towards zero.",
            "Add calibration examples of those classes (calibkit.selection can pick them), or "
            "use temperature scaling, which treats all classes alike.",
            {"absent": absent, "rows": len(y)},
        )
    ]


def _check_prior_shift(fit_scores: Scores, scores: Scores) -> list[Finding]:
    from scipy.stats import chi2_contingency

    k = scores.n_classes
    a = np.bincount(fit_scores.require_labels(), minlength=k).astype(np.float64)
    b = np.bincount(scores.require_labels(), minlength=k).astype(np.float64)
    keep = (a + b) > 0
    if keep.sum() < 2:
        return []
    table = np.stack([a[keep], b[keep]])
    stat, p_value, dof, _ = chi2_contingency(table, correction=False)
    tv = 0.5 * float(np.sum(np.abs(a / a.sum() - b / b.sum())))
    if not (p_value < PRIOR_SHIFT_P and tv > PRIOR_SHIFT_TV):
        return []
    j = int(np.argmax(np.abs(a / a.sum() - b / b.sum())))
    return [
        Finding(
            "prior_shift",
            "warning",
            f"The label frequencies differ between calibration and evaluation data: total "
            f"variation {tv:.3f} (> {PRIOR_SHIFT_TV}), chi-square p = {p_value:.2g} "
            f"(< {PRIOR_SHIFT_P}); e.g. {scores.classes[j]!r} is {a[j] / a.sum():.1%} of one "
            f"and {b[j] / b.sum():.1%} of the other, so a calibrator's class bias is fitted "
            "to the wrong prior.",
            "Calibrate on data drawn like the data you apply it to, or re-weight the "
            "calibration rows to the target prior (sample_weight).",
            {
                "total_variation": tv,
                "chi2": float(stat),
                "dof": int(dof),
                "p_value": float(p_value),
                "fit_prior": (a / a.sum()).tolist(),
                "eval_prior": (b / b.sum()).tolist(),
            },
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


def diagnose(
    scores: Scores,
    calibrator: Calibrator | None = None,
    fit_scores: Scores | None = None,
    *,
    ece_epsilon: float = 0.05,
    ece_delta: float = 0.1,
    alpha: float = 0.05,
) -> list[Finding]:
    """Diagnose ``scores`` (and a calibrator and its calibration data); see the module table.

    Parameters
    ----------
    scores : Scores
        The data evaluated (raw, uncalibrated scores; labelled for the label-based checks).
    calibrator : Calibrator, optional
        A fitted calibrator meant for these scores (an :class:`AutoCalibrator` is looked through).
    fit_scores : Scores, optional
        The labelled data the calibrator was fitted on (calibration set). ``calibkit fit``'s
        warnings: ``diagnose(fit_scores, calibrator, fit_scores)`` (the same object: the
        evaluation-data checks that would repeat the calibration-data ones are skipped).
    ece_epsilon, ece_delta : float
        ECE precision asked: ``|ECE_measured - ECE_true| <= ece_epsilon`` with probability
        ``1 - ece_delta`` (paper 000, section 3.1, with no confidence gap).
    alpha : float
        1 - level of the AUROC interval.

    Returns
    -------
    list of Finding, warnings first.
    """
    if not isinstance(scores, Scores):
        raise ValueError(f"scores must be calibkit Scores; got {type(scores).__name__}")
    if fit_scores is not None:
        if not isinstance(fit_scores, Scores):
            raise ValueError(f"fit_scores must be calibkit Scores; got {type(fit_scores).__name__}")
        fit_scores.require_labels()
        if fit_scores.classes != scores.classes:
            raise ValueError(
                f"fit_scores classes {fit_scores.classes} differ from the scores' {scores.classes}"
            )
    out: list[Finding] = []
    out += _check_discrimination(scores, alpha)
    out += _check_inverted_ranking(scores, alpha)
    if calibrator is not None:
        if not isinstance(calibrator, Calibrator):
            raise ValueError(
                f"calibrator must be a fitted calibkit Calibrator; got {type(calibrator).__name__}"
            )
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(calibrator, "n_classes_")
        usable = calibrator.n_classes_ == scores.n_classes
        out += _check_inverted_fit(calibrator, scores if usable else None)
        out += _check_temperature_bound(calibrator)
        if fit_scores is not None:
            out += _check_parameters(calibrator, fit_scores)
        if usable:
            out += _check_ties(calibrator, scores)
    if fit_scores is not None:
        out += _check_ece_rows(len(fit_scores), ece_epsilon, ece_delta, "calibration")
        out += _check_absent(fit_scores)
        if scores.labels is not None:
            out += _check_prior_shift(fit_scores, scores)
    if scores.labels is not None and scores is not fit_scores:
        out += _check_ece_rows(len(scores), ece_epsilon, ece_delta, "evaluation")
    order = {"warning": 0, "info": 1}
    return sorted(out, key=lambda f: order[f.severity])
