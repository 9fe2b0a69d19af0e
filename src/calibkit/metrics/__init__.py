"""Calibration metrics: pure functions on numpy arrays plus thin streaming accumulators.

Conventions (see ``docs/architecture.md``): scores are probabilities unless
``from_logits=True``; a 1-D array is ``P(y = 1)`` compared with ``y`` (binary view); an ``(n, K)``
array is reduced to its top-label confidence (top-label view). Every metric returns a float and
raises ``ValueError`` naming the problem on bad input. Only numpy is imported.

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
============================  ==========================================================
"""

from calibkit.metrics.binning import (
    BinStats,
    assign_bins,
    bin_edges,
    bin_statistics,
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
from calibkit.metrics.pac import (
    PACECEBound,
    confidence_gap,
    pac_delta,
    pac_ece_bound,
    pac_epsilon,
    pac_sample_size,
)
from calibkit.metrics.reliability import ReliabilityTable, reliability_table
from calibkit.metrics.scoring_rules import accuracy, brier_score, nll
from calibkit.metrics.streaming import CalibrationErrorAccumulator, ScoringRuleAccumulator

__all__ = [
    "BinStats",
    "BootstrapCI",
    "CalibrationErrorAccumulator",
    "PACECEBound",
    "ReliabilityTable",
    "ScoringRuleAccumulator",
    "accuracy",
    "ace",
    "assign_bins",
    "bin_edges",
    "bin_statistics",
    "binned_outcomes",
    "binned_statistics",
    "bootstrap_ci",
    "brier_score",
    "calibration_error",
    "classwise_bin_statistics",
    "classwise_ece",
    "conf_ece",
    "confidence_gap",
    "debiased_ece",
    "ece",
    "mce",
    "nll",
    "pac_delta",
    "pac_ece_bound",
    "pac_epsilon",
    "pac_sample_size",
    "quantile_edges",
    "reliability_table",
    "rms_ce",
    "uniform_edges",
]
