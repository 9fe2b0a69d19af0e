"""Calibration metrics: pure functions on numpy arrays plus thin streaming accumulators.

Conventions (see ``docs/architecture.md``): scores are probabilities unless
``from_logits=True``; a 1-D array is ``P(y = 1)`` compared with ``y`` (binary view); an ``(n, K)``
array is reduced to its top-label confidence (top-label view). Every metric returns a float and
raises ``ValueError`` naming the problem on bad input. Only numpy is imported.

Numerical rules (``docs/metrics.md``): probability rows must sum to 1 within a tolerance that
follows their dtype (:func:`calibkit._validation.simplex_atol`: 1e-6 for float64/float32 with
few classes, ~3e-3 for float16, ~3e-2 for bfloat16 at K = 2); the NLL of logits is exact and that of
probabilities clips at :data:`PROB_FLOOR` = 1e-12; binned metrics take at most :data:`MAX_BINS`
bins.

============================  ==========================================================
:func:`ece`                   expected calibration error (equal-width or equal-mass bins)
:func:`mce`                   maximum calibration error
:func:`rms_ce`                root-mean-square (L2) calibration error
:func:`calibration_error`     any of the three by ``norm`` ("l1", "l2", "max")
:func:`debiased_ece`          Kumar et al. (2019) debiased L2 calibration error
:func:`ace`                   adaptive calibration error, paper 001 eq. 2
:func:`conf_ece`              confidence-ECE, paper 002 appendix C.1
:func:`classwise_ece`         classwise ECE, paper 002 appendix C.1
:func:`brier_score`           Brier score
:func:`nll`                   negative log-likelihood
:func:`accuracy`              top-label accuracy
:func:`bootstrap_ci`          percentile bootstrap interval of any metric
:func:`reliability_table`     per-bin table with paper 000's Table 1 scenarios
:func:`pac_ece_bound` ...     PAC bound on the ECE, paper 000 section 3.1
:func:`auroc` ... :func:`prr`  ranking / selective prediction (:mod:`calibkit.metrics.ranking`):
                              AUROC, AUPRC, AURC, E-AURC, PRR, selective accuracy, HELM's
                              ``ece_10_bin`` / ``ece_1_bin``
:func:`compute_metrics`       any registered metrics by name (:data:`METRICS`,
                              :func:`register_metric`); :func:`bootstrap_metrics` their CIs
============================  ==========================================================
"""

from calibkit.metrics.binning import (
    MAX_BINS,
    BinStats,
    assign_bins,
    bin_edges,
    bin_statistics,
    check_n_bins,
    quantile_edges,
    uniform_edges,
)
from calibkit.metrics.bootstrap import BootstrapCI, bootstrap_ci
from calibkit.metrics.calibration_error import (
    ace,
    binned_outcomes,
    binned_statistics,
    calibration_error,
    classwise_bin_statistics,
    classwise_ece,
    conf_ece,
    debiased_ece,
    ece,
    mce,
    rms_ce,
)
from calibkit.metrics.compute import bootstrap_metrics, compute_metrics
from calibkit.metrics.pac import (
    PACECEBound,
    confidence_gap,
    pac_delta,
    pac_ece_bound,
    pac_epsilon,
    pac_sample_size,
)
from calibkit.metrics.ranking import (
    AUROCInterval,
    RiskCoverage,
    auprc,
    aurc,
    auroc,
    auroc_ci,
    binary_auroc,
    binary_auroc_ci,
    e_aurc,
    ece_1_bin,
    ece_10_bin,
    prr,
    risk_coverage_curve,
    selective_acc_at_10,
    selective_accuracy,
    selective_cov_acc_area,
)
from calibkit.metrics.registry import (
    METRICS,
    Metric,
    get_metric,
    metric_names,
    register_metric,
    resolve_metric_names,
    unregister_metric,
)
from calibkit.metrics.reliability import ReliabilityTable, reliability_table
from calibkit.metrics.scoring_rules import PROB_FLOOR, accuracy, brier_score, nll
from calibkit.metrics.streaming import CalibrationErrorAccumulator, ScoringRuleAccumulator

__all__ = [
    "MAX_BINS",
    "METRICS",
    "PROB_FLOOR",
    "AUROCInterval",
    "BinStats",
    "BootstrapCI",
    "CalibrationErrorAccumulator",
    "Metric",
    "PACECEBound",
    "ReliabilityTable",
    "RiskCoverage",
    "ScoringRuleAccumulator",
    "accuracy",
    "ace",
    "assign_bins",
    "auprc",
    "aurc",
    "auroc",
    "auroc_ci",
    "bin_edges",
    "bin_statistics",
    "binary_auroc",
    "binary_auroc_ci",
    "binned_outcomes",
    "binned_statistics",
    "bootstrap_ci",
    "bootstrap_metrics",
    "brier_score",
    "calibration_error",
    "check_n_bins",
    "classwise_bin_statistics",
    "classwise_ece",
    "compute_metrics",
    "conf_ece",
    "confidence_gap",
    "debiased_ece",
    "e_aurc",
    "ece",
    "ece_1_bin",
    "ece_10_bin",
    "get_metric",
    "mce",
    "metric_names",
    "nll",
    "pac_delta",
    "pac_ece_bound",
    "pac_epsilon",
    "pac_sample_size",
    "prr",
    "quantile_edges",
    "register_metric",
    "reliability_table",
    "resolve_metric_names",
    "risk_coverage_curve",
    "rms_ce",
    "selective_acc_at_10",
    "selective_accuracy",
    "selective_cov_acc_area",
    "uniform_edges",
    "unregister_metric",
]
