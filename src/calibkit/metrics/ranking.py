r"""Ranking and selective-prediction metrics: does confidence put right answers above wrong ones?

Every function takes ``probs`` -- ``(n, K)`` class probabilities, or ``(n,)`` = ``P(y = 1)`` of a
binary task (logits with ``from_logits=True``: softmax / sigmoid) -- and ``labels`` ``(n,)``, and
reduces them to the top-label view (as :func:`calibkit.metrics.ece`):

* confidence ``c_i = max_k p_ik`` (1-D input: ``max(p_i, 1 - p_i)``);
* correctness ``o_i = 1[argmax_k p_ik = y_i]`` (1-D input: ``1[(p_i > 0.5) = y_i]``).

Ties. Items with equal confidence are indistinguishable to a threshold, so every quantity that
depends on the order of the items (the risk-coverage curve, AURC, E-AURC, PRR, selective
accuracy) is the *expectation over a uniformly random order of tied items*: within a group of
``m`` tied items with ``e`` errors, the first ``j`` of them carry ``j e / m`` expected errors.
On tie-free input this is the plain sorted-order value (what HELM and LM-Polygraph compute); on
tied input it does not depend on how a sort happens to break the ties. AUROC counts a tied
(right, wrong) pair as 1/2 and AUPRC groups tied scores, both as scikit-learn does.

============================  ==========================================================
:func:`auroc`                 AUROC of confidence for correctness (= sklearn roc_auc_score)
:func:`auroc_ci`              AUROC with a DeLong (1988) normal confidence interval
:func:`binary_auroc`          AUROC of any score for a binary target (``binary_auroc_ci``)
:func:`auprc`                 average precision of confidence for correctness (or errors)
:func:`risk_coverage_curve`   selective risk at every confidence threshold
:func:`aurc`                  area under the risk-coverage curve (Geifman et al. 2019)
:func:`e_aurc`                excess AURC over the oracle ranking
:func:`prr`                   prediction-rejection ratio (LM-Polygraph's ``prr_normalized``)
:func:`selective_accuracy`    accuracy of the most confident ``coverage`` fraction
:func:`selective_acc_at_10`   HELM's ``selective_acc@10``
:func:`selective_cov_acc_area` HELM's ``selective_cov_acc_area`` (= 1 - AURC)
:func:`ece_10_bin`            HELM's ``ece_10_bin``: top-label ECE, 10 equal-mass bins
:func:`ece_1_bin`             HELM's ``ece_1_bin``: ``|mean confidence - accuracy|``
============================  ==========================================================

All return a Python float; a quantity that is undefined on the input (AUROC when every
prediction is right, or every one wrong) is ``nan``, never a made-up value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.metrics._inputs import top_label_outcomes

__all__ = [
    "RANKING_METRICS",
    "AUROCInterval",
    "RiskCoverage",
    "auprc",
    "aurc",
    "auroc",
    "auroc_ci",
    "binary_auroc",
    "binary_auroc_ci",
    "confidence_correctness",
    "e_aurc",
    "ece_1_bin",
    "ece_10_bin",
    "prr",
    "risk_coverage_curve",
    "selective_acc_at_10",
    "selective_accuracy",
    "selective_cov_acc_area",
]


# ---------------------------------------------------------------------- inputs
def confidence_correctness(
    probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Top-label ``(confidence (n,) float64, correct (n,) bool)``, validated (module docstring)."""
    conf, correct = top_label_outcomes(probs, labels, from_logits=from_logits)
    return np.asarray(conf, dtype=np.float64), np.asarray(correct, dtype=bool)


def _midranks(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """1-based ranks of ``x`` with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = x.size
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], n]
    avg = 0.5 * (starts + ends + 1)  # mean of ranks starts+1 .. ends
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def binary_auroc(scores: ArrayLike, targets: ArrayLike) -> float:
    """AUROC of real ``scores`` ``(n,)`` for boolean ``targets`` ``(n,)`` (Mann-Whitney U / n1 n0).

    A tied (positive, negative) pair counts 1/2, which equals scikit-learn's ``roc_auc_score``
    (trapezoidal ROC). ``nan`` when ``targets`` holds a single class.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets, dtype=bool)
    if s.shape != t.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and targets {t.shape} must be the same 1-D shape")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    n1 = int(t.sum())
    n0 = t.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = _midranks(s)
    return float((r[t].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


# ---------------------------------------------------------------------- AUROC / AUPRC
def auroc(probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False) -> float:
    """AUROC of confidence for correctness: the probability that a random right answer gets a
    higher confidence than a random wrong one (ties 1/2).

    0.5 is a confidence that carries no information about correctness; below 0.5 the confidence
    ranks wrong answers above right ones. ``nan`` when all predictions are right or all wrong.

    Parameters
    ----------
    probs : (n, K) probabilities or (n,) P(y=1); logits with ``from_logits=True``
    labels : (n,) int class indices
    """
    conf, correct = confidence_correctness(probs, labels, from_logits=from_logits)
    return binary_auroc(conf, correct)


class AUROCInterval(NamedTuple):
    """AUROC with its DeLong standard error and the two-sided ``1 - alpha`` normal interval."""

    estimate: float
    low: float
    high: float
    se: float


def auroc_ci(
    probs: ArrayLike, labels: ArrayLike, *, alpha: float = 0.05, from_logits: bool = False
) -> AUROCInterval:
    """:func:`auroc` with DeLong, DeLong & Clarke-Pearson's (1988) variance and a normal interval
    ``estimate +- z_{1-alpha/2} se`` clipped to [0, 1] (see :func:`binary_auroc_ci`)."""
    conf, correct = confidence_correctness(probs, labels, from_logits=from_logits)
    return binary_auroc_ci(conf, correct, alpha=alpha)


def binary_auroc_ci(scores: ArrayLike, targets: ArrayLike, *, alpha: float = 0.05) -> AUROCInterval:
    """:func:`binary_auroc` of ``scores`` ``(n,)`` for boolean ``targets`` ``(n,)`` with DeLong's
    standard error and the normal ``1 - alpha`` interval clipped to [0, 1].

    DeLong's structural components (midranks for ties): for each positive ``i``,
    ``V_i = P(s_neg < s_i) + P(=)/2``; for each negative ``j``, ``W_j = P(s_pos > s_j) + P(=)/2``;
    ``se^2 = var(V)/n_pos + var(W)/n_neg`` (sample variances). Interval and ``se`` are ``nan``
    with fewer than two positives or two negatives.
    """
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets, dtype=bool)
    est = binary_auroc(s, t)
    n1 = int(t.sum())
    n0 = t.size - n1
    if n1 < 2 or n0 < 2:
        nan = float("nan")
        return AUROCInterval(est, nan, nan, nan)
    r_all = _midranks(s)
    v10 = (r_all[t] - _midranks(s[t])) / n0  # share of negatives below each positive
    v01 = 1.0 - (r_all[~t] - _midranks(s[~t])) / n1  # share of positives above each negative
    se = math.sqrt(float(np.var(v10, ddof=1)) / n1 + float(np.var(v01, ddof=1)) / n0)
    from scipy.stats import norm

    z = float(norm.ppf(1.0 - alpha / 2.0))
    return AUROCInterval(est, max(0.0, est - z * se), min(1.0, est + z * se), se)


def auprc(
    probs: ArrayLike,
    labels: ArrayLike,
    *,
    positive: Literal["correct", "error"] = "correct",
    from_logits: bool = False,
) -> float:
    r"""Average precision of confidence for correctness (``positive="correct"``), or of
    ``-confidence`` for errors (``positive="error"``, "AUPR-Error").

    :math:`\mathrm{AP} = \sum_t (R_t - R_{t-1}) P_t` over the distinct thresholds ``t`` taken from
    the highest score down (tied scores enter together), exactly scikit-learn's
    ``average_precision_score``. Its chance level is the positive rate. ``nan`` without positives.
    """
    if positive not in ("correct", "error"):
        raise ValueError(f"positive must be 'correct' or 'error'; got {positive!r}")
    conf, correct = confidence_correctness(probs, labels, from_logits=from_logits)
    score, target = (conf, correct) if positive == "correct" else (-conf, ~correct)
    n_pos = int(target.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], target[order]
    last = np.r_[s[1:] != s[:-1], True]  # last index of each tie group
    tp = np.cumsum(t)[last].astype(np.float64)
    k = (np.flatnonzero(last) + 1).astype(np.float64)
    precision = tp / k
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# ---------------------------------------------------------------------- risk-coverage
def _expected_cum_errors(
    conf: NDArray[np.float64], correct: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Items sorted by confidence, highest first: ``(sorted conf, E[# errors among the first k]
    for k = 1..n, is-last-of-its-tie-group)``, ties broken uniformly at random in expectation."""
    order = np.argsort(-conf, kind="mergesort")
    c = conf[order]
    err = (~correct[order]).astype(np.float64)
    n = c.size
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    sizes = np.diff(np.r_[starts, n])
    group_err = np.add.reduceat(err, starts)
    before = np.r_[0.0, np.cumsum(group_err)[:-1]]
    gid = np.repeat(np.arange(starts.size), sizes)
    j = np.arange(1, n + 1) - starts[gid]  # position inside the group, 1-based
    cum = before[gid] + j * (group_err / sizes)[gid]
    last = np.r_[c[1:] != c[:-1], True]
    return c, cum, last


@dataclass(frozen=True)
class RiskCoverage:
    """The risk-coverage curve at every distinct confidence threshold (highest first).

    Attributes
    ----------
    coverage : (m,) float
        Fraction of items with confidence ``>= threshold``.
    risk : (m,) float
        Error rate among them (selective risk).
    threshold : (m,) float
        The confidence thresholds, decreasing.
    """

    coverage: NDArray[np.float64]
    risk: NDArray[np.float64]
    threshold: NDArray[np.float64]


def risk_coverage_curve(
    probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False
) -> RiskCoverage:
    """Selective risk (error rate of the accepted items) against coverage (fraction accepted)
    when accepting every item whose confidence reaches a threshold, for every distinct threshold.

    The last point is full coverage, whose risk is the overall error rate.
    """
    conf, correct = confidence_correctness(probs, labels, from_logits=from_logits)
    c, cum, last = _expected_cum_errors(conf, correct)
    k = np.flatnonzero(last) + 1
    return RiskCoverage(
        coverage=k / c.size, risk=cum[last] / k, threshold=c[last].astype(np.float64)
    )


def _aurc_parts(
    probs: ArrayLike, labels: ArrayLike, from_logits: bool
) -> tuple[float, float, float]:
    """``(AURC, oracle AURC, error rate)``."""
    conf, correct = confidence_correctness(probs, labels, from_logits=from_logits)
    n = conf.size
    _, cum, _ = _expected_cum_errors(conf, correct)
    k = np.arange(1, n + 1, dtype=np.float64)
    n_err = float(n - int(correct.sum()))
    oracle = np.maximum(0.0, k - (n - n_err)) / k  # all right answers first
    return float(np.mean(cum / k)), float(np.mean(oracle)), n_err / n


def aurc(probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False) -> float:
    r"""Area under the risk-coverage curve (Geifman, Uziel & El-Yaniv 2019), lower is better:

    .. math:: \mathrm{AURC} = \frac1n \sum_{k=1}^{n} \frac{\#\text{errors among the } k
              \text{ most confident}}{k}.

    A random ranking scores the error rate; a perfect one scores :func:`e_aurc`'s oracle value.
    """
    return _aurc_parts(probs, labels, from_logits)[0]


def e_aurc(probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False) -> float:
    r"""Excess AURC: :func:`aurc` minus the AURC of the oracle ranking (every right answer before
    every wrong one), :math:`\frac1n\sum_k \max(0, k - n_{right})/k`. 0 is a perfect ranking.

    This is the exact finite-sample oracle; Geifman et al.'s ``r + (1 - r) ln(1 - r)`` (``r`` the
    error rate) is its continuous approximation.
    """
    a, opt, _ = _aurc_parts(probs, labels, from_logits)
    return a - opt


def prr(probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False) -> float:
    r"""Prediction-rejection ratio (Malinin et al. 2019), as LM-Polygraph's ``prr_normalized``.

    LM-Polygraph's ``PredictionRejectionArea`` is the mean quality of the retained items over all
    rejection levels, which for quality = correctness is ``1 - AURC``; it normalises it as
    ``(ue - random) / (oracle - random)`` with ``oracle`` the score of the ideal ranking and
    ``random`` the mean over random rankings (whose expectation is the accuracy). Hence

    .. math:: \mathrm{PRR} = \frac{\mathrm{err} - \mathrm{AURC}}{\mathrm{err} - \mathrm{AURC}^*}

    (LM-Polygraph estimates ``random`` from 1000 shuffles; this is its expectation). 1 is an
    oracle ranking, 0 random, negative worse than random. ``nan`` if all right or all wrong.
    """
    a, opt, err = _aurc_parts(probs, labels, from_logits)
    den = err - opt
    if den <= 0.0:
        return float("nan")
    return (err - a) / den


def _selective_at(
    probs: ArrayLike, labels: ArrayLike, k_of_n: Callable[[int], int], from_logits: bool
) -> float:
    conf, correct = confidence_correctness(probs, labels, from_logits=from_logits)
    n = conf.size
    k = int(min(max(k_of_n(n), 1), n))
    _, cum, _ = _expected_cum_errors(conf, correct)
    return 1.0 - float(cum[k - 1]) / k


def selective_accuracy(
    probs: ArrayLike, labels: ArrayLike, coverage: float = 0.1, *, from_logits: bool = False
) -> float:
    """Accuracy of the ``ceil(coverage * n)`` most confident predictions (at least one).

    Parameters
    ----------
    coverage : float in (0, 1]
        Fraction of items kept (0.1: the 10% most confident).
    """
    if not (0.0 < coverage <= 1.0):
        raise ValueError(f"coverage must be in (0, 1]; got {coverage}")
    return _selective_at(probs, labels, lambda n: math.ceil(coverage * n - 1e-9), from_logits)


def selective_acc_at_10(probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False) -> float:
    """HELM's ``selective_acc@10``: the accuracy of the ``floor(0.1 n) + 1`` most confident
    predictions (HELM reads ``accs[int(0.1 * n)]`` of the cumulative accuracies, one item more than
    :func:`selective_accuracy` at ``coverage=0.1`` when ``0.1 n`` is whole)."""
    return _selective_at(probs, labels, lambda n: int(0.1 * n) + 1, from_logits)


def selective_cov_acc_area(
    probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False
) -> float:
    """HELM's ``selective_cov_acc_area``: mean accuracy of the ``k`` most confident over
    ``k = 1..n``, i.e. ``1 - AURC``."""
    return 1.0 - aurc(probs, labels, from_logits=from_logits)


# ---------------------------------------------------------------------- HELM's ECE names
def _helm_equal_mass_bins(conf: NDArray[np.float64], n_bins: int) -> NDArray[np.intp]:
    """Bin index of each confidence under HELM's equal-mass rule (``get_equal_bins``): sorted
    confidences split into ``min(n_bins, n)`` near-equal groups (``numpy.array_split``), upper
    boundaries at the midpoints between neighbouring groups plus 1.0, deduplicated; a value equal
    to a boundary belongs to the lower bin (``searchsorted(..., side="left")``)."""
    s = np.sort(conf)
    m = min(n_bins, s.size)
    groups = np.array_split(s, m)
    bounds = [(groups[i][-1] + groups[i + 1][0]) / 2.0 for i in range(m - 1)]
    edges = np.unique(np.asarray([*bounds, 1.0], dtype=np.float64))
    return np.searchsorted(edges, conf, side="left")


def ece_10_bin(probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False) -> float:
    """HELM's ``ece_10_bin``: top-label ECE over 10 equal-mass bins with HELM's bin rule
    (see ``_helm_equal_mass_bins``). On tie-free confidences with ``n`` a multiple of 10 it equals
    ``ece(probs, labels, n_bins=10, binning="quantile")``."""
    conf, correct = confidence_correctness(probs, labels, from_logits=from_logits)
    b = _helm_equal_mass_bins(conf, 10)
    m = int(b.max()) + 1
    gap = np.bincount(b, weights=conf, minlength=m) - np.bincount(
        b, weights=correct.astype(np.float64), minlength=m
    )
    return float(np.sum(np.abs(gap)) / conf.size)


def ece_1_bin(probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False) -> float:
    """HELM's ``ece_1_bin``: ``|mean top-label confidence - accuracy|`` (one bin)."""
    conf, correct = confidence_correctness(probs, labels, from_logits=from_logits)
    return float(abs(conf.mean() - correct.mean()))


#: metric key -> (display name, lower is better, ``fn(probs, labels) -> float``), for the metric
#: registry of ``calibkit evaluate`` and the HTML report
RANKING_METRICS: dict[str, tuple[str, bool, Callable[..., float]]] = {
    "auroc": ("AUROC", False, auroc),
    "auprc": ("AUPRC", False, auprc),
    "aurc": ("AURC", True, aurc),
    "e_aurc": ("E-AURC", True, e_aurc),
    "prr": ("PRR", False, prr),
    "selective_acc@10": ("Sel. acc@10", False, selective_acc_at_10),
    "ece_10_bin": ("ECE 10-bin (HELM)", True, ece_10_bin),
    "ece_1_bin": ("ECE 1-bin (HELM)", True, ece_1_bin),
}
