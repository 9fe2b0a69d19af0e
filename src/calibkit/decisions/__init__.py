"""Decisions with guarantees: auto-labeling at a certified error rate, conformal prediction sets
and certified cascade stages.

Inputs are any :class:`calibkit.Scores` (logits or probabilities) or score arrays: ``(n, K)``
probabilities (logits with ``from_logits=True``) or 1-D ``P(y = 1)`` of a binary task. The
confidence of an item is its **top-label probability** (softmax of the logits).

==========================================  ======================================================
:func:`certify_threshold`                   Learn-then-Test / conformal risk control threshold ->
                                            :class:`AutoLabelPolicy` (apply, save, load);
                                            ``apply(..., batch=True)`` bounds the error realised
                                            on the labeled batch (:func:`batch_select`)
:class:`SplitConformal`                     split conformal sets: LAC, APS, RAPS, Mondrian
:func:`certify_cascade`                     certify each stage of a trained cascade (paper 001)
:mod:`~calibkit.decisions.risk`             binomial / Hoeffding-Bentkus p-values, Clopper-Pearson
                                            bounds, labelled items needed (paper 000's n)
==========================================  ======================================================

numpy and scipy only; the plots are in :mod:`calibkit.plots.decisions`.
"""

from calibkit.decisions.cascade import (
    CascadeComparison,
    CertifiedCascade,
    CertifiedCascadeResult,
    StageCertificate,
    certify_cascade,
    compare_cascades,
)
from calibkit.decisions.conformal import (
    CONFORMAL_METHODS,
    ConformalReport,
    SplitConformal,
    conformal_quantile,
    evaluate_sets,
    label_scores,
    prediction_sets,
)
from calibkit.decisions.policy import AutoLabelPolicy, ClassReport, LabelDecisions
from calibkit.decisions.risk import (
    batch_pvalue,
    binomial_pvalue,
    calibration_size_needed,
    clopper_pearson_interval,
    clopper_pearson_upper,
    hoeffding_bentkus_pvalue,
    hoeffding_sample_size,
    labels_needed,
    min_certifiable_n,
)
from calibkit.decisions.threshold import (
    CertificationError,
    RiskCurve,
    accepted_counts,
    batch_select,
    certify_threshold,
    crc_select,
    default_min_accepted,
    fixed_sequence,
    grid_cells,
    ltt_select,
    risk_curve,
    threshold_grid,
)

__all__ = [
    "CONFORMAL_METHODS",
    "AutoLabelPolicy",
    "CascadeComparison",
    "CertificationError",
    "CertifiedCascade",
    "CertifiedCascadeResult",
    "ClassReport",
    "ConformalReport",
    "LabelDecisions",
    "RiskCurve",
    "SplitConformal",
    "StageCertificate",
    "accepted_counts",
    "batch_pvalue",
    "batch_select",
    "binomial_pvalue",
    "calibration_size_needed",
    "certify_cascade",
    "certify_threshold",
    "clopper_pearson_interval",
    "clopper_pearson_upper",
    "compare_cascades",
    "conformal_quantile",
    "crc_select",
    "default_min_accepted",
    "evaluate_sets",
    "fixed_sequence",
    "grid_cells",
    "hoeffding_bentkus_pvalue",
    "hoeffding_sample_size",
    "label_scores",
    "labels_needed",
    "ltt_select",
    "min_certifiable_n",
    "prediction_sets",
    "risk_curve",
    "threshold_grid",
]
