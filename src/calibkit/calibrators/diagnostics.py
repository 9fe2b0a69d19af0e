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

:class:`Finding` and the flagging limits are in :mod:`calibkit.calibrators.findings`, the checks
of the scores in :mod:`calibkit.calibrators.score_checks`, those of a fitted calibrator (and
:func:`n_parameters`) in :mod:`calibkit.calibrators.fit_checks`; all re-exported here.
"""

from __future__ import annotations

from calibkit.calibrators._odir import MIN_ROWS_PER_PARAMETER
from calibkit.calibrators.base import Calibrator
from calibkit.calibrators.findings import (
    PRIOR_SHIFT_P,
    PRIOR_SHIFT_TV,
    TIES_AUROC_DROP,
    TIES_PRED_CHANGE,
    Finding,
    format_findings,
)
from calibkit.calibrators.fit_checks import (
    _check_inverted_fit,
    _check_parameters,
    _check_temperature_bound,
    _check_ties,
    n_parameters,
)
from calibkit.calibrators.score_checks import (
    _check_absent,
    _check_discrimination,
    _check_ece_rows,
    _check_inverted_ranking,
    _check_prior_shift,
)
from calibkit.scores import Scores

__all__ = [
    "MIN_ROWS_PER_PARAMETER",
    "PRIOR_SHIFT_P",
    "PRIOR_SHIFT_TV",
    "TIES_AUROC_DROP",
    "TIES_PRED_CHANGE",
    "Finding",
    "diagnose",
    "format_findings",
    "n_parameters",
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
