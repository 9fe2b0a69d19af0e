"""Ranking and selective-prediction metrics against scikit-learn, hand computations and literal
re-implementations of LM-Polygraph's and HELM's code (ties included)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from calibkit import metrics as m
from calibkit.metrics import ranking as r


def _data(n: int = 400, k: int = 4, seed: int = 0, round_to: int | None = None):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2.0
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    if round_to is not None:  # many tied confidences
        p = np.round(p, round_to)
        p[:, -1] = 1.0 - p[:, :-1].sum(1)
        p = np.clip(p, 0, 1)
        p /= p.sum(1, keepdims=True)
    y = np.where(rng.random(n) < 0.6, p.argmax(1), rng.integers(0, k, n))
    return p, y


def _conf_correct(p, y):
    return p.max(1), p.argmax(1) == y


# ---------------------------------------------------------------------- AUROC / AUPRC
@pytest.mark.parametrize("round_to", [None, 1, 2])
def test_auroc_auprc_match_sklearn(round_to: int | None) -> None:
    p, y = _data(round_to=round_to)
    c, o = _conf_correct(p, y)
    assert r.auroc(p, y) == pytest.approx(roc_auc_score(o, c), abs=1e-12)
    assert r.auprc(p, y) == pytest.approx(average_precision_score(o, c), abs=1e-12)
    assert r.auprc(p, y, positive="error") == pytest.approx(
        average_precision_score(~o, -c), abs=1e-12
    )


def test_auroc_by_hand_with_ties() -> None:
    # right answers at 0.9, 0.6, 0.6; wrong at 0.6, 0.55. Pairs (right, wrong):
    # (.9,.6)=1 (.9,.55)=1 (.6,.6)=.5 (.6,.55)=1 (.6,.6)=.5 (.6,.55)=1 -> 5/6
    conf = np.array([0.9, 0.6, 0.6, 0.6, 0.55])
    correct = np.array([1, 1, 1, 0, 0], bool)
    p = np.stack([conf, 1 - conf], 1)
    y = np.where(correct, 0, 1)
    assert r.auroc(p, y) == pytest.approx(5 / 6)
    assert r.binary_auroc(conf, correct) == pytest.approx(5 / 6)


def test_binary_input_uses_top_label() -> None:
    p1 = np.array([0.9, 0.2, 0.6, 0.45])
    y = np.array([1, 0, 0, 0])
    # confidence max(p, 1-p) = .9 .8 .6 .55; correct = T T F T
    assert r.auroc(p1, y) == pytest.approx(roc_auc_score([1, 1, 0, 1], [0.9, 0.8, 0.6, 0.55]))


def test_auroc_undefined_is_nan_and_inverted_below_half() -> None:
    p, _ = _data(50)
    assert math.isnan(r.auroc(p, p.argmax(1)))  # all right
    # confidence perfectly anti-ordered with correctness
    conf = np.linspace(0.55, 0.99, 40)
    correct = conf < 0.77
    pp = np.stack([conf, 1 - conf], 1)
    yy = np.where(correct, 0, 1)
    assert r.auroc(pp, yy) == 0.0
    ci = r.auroc_ci(pp, yy)
    assert ci.high < 0.5


def test_auroc_ci_matches_delong_by_brute_force() -> None:
    p, y = _data(120, round_to=2, seed=3)
    c, o = _conf_correct(p, y)
    pos, neg = c[o], c[~o]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(1), psi.mean(0)
    se = math.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))
    ci = r.auroc_ci(p, y, alpha=0.05)
    assert ci.estimate == pytest.approx(psi.mean())
    assert ci.se == pytest.approx(se)
    assert ci.low == pytest.approx(psi.mean() - 1.959963984540054 * se)


# ---------------------------------------------------------------------- risk-coverage
def _aurc_over_orders(conf: np.ndarray, correct: np.ndarray) -> float:
    """Mean AURC over every order of the tied items (brute force)."""
    vals = []
    for perm in itertools.permutations(range(conf.size)):
        perm = np.array(perm)
        c = conf[perm]
        e = ~correct[perm]
        order = np.argsort(-c, kind="stable")
        err = np.cumsum(e[order]) / np.arange(1, c.size + 1)
        vals.append(err.mean())
    return float(np.mean(vals))


def test_aurc_by_hand_and_tie_expectation() -> None:
    # distinct confidences: order right, wrong, right, wrong
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, False, True, False])
    p = np.stack([conf, 1 - conf], 1)
    y = np.where(correct, 0, 1)
    # risks at k=1..4: 0, 1/2, 1/3, 2/4 -> mean
    assert r.aurc(p, y) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    # oracle: right, right, wrong, wrong -> 0, 0, 1/3, 1/2
    assert r.e_aurc(p, y) == pytest.approx(r.aurc(p, y) - (1 / 3 + 1 / 2) / 4)
    # with ties: expectation over random tie orders equals the brute-force mean
    conf_t = np.array([0.9, 0.7, 0.7, 0.7, 0.5, 0.5])
    corr_t = np.array([False, True, False, True, True, False])
    pt = np.stack([conf_t, 1 - conf_t], 1)
    yt = np.where(corr_t, 0, 1)
    assert r.aurc(pt, yt) == pytest.approx(_aurc_over_orders(conf_t, corr_t))


def _lm_polygraph_prr(conf: np.ndarray, correct: np.ndarray) -> float:
    """LM-Polygraph: PredictionRejectionArea (estimator = uncertainty = -confidence, target =
    correctness), normalised by the oracle (estimator = -target) and the random baseline (its
    expectation, the mean target; LM-Polygraph averages 1000 shuffles)."""

    def pra(estimator: np.ndarray, target: np.ndarray) -> float:
        ue_argsort = np.argsort(estimator, kind="stable")
        sorted_metrics = target[ue_argsort]
        cumsum = np.cumsum(sorted_metrics)
        scores = (cumsum / np.arange(1, target.size + 1))[::-1]
        return float(np.sum(scores) / target.size)

    t = correct.astype(float)
    ue = pra(-conf, t)
    oracle = pra(-t, t)
    random = t.mean()
    return (ue - random) / (oracle - random)


def test_prr_matches_lm_polygraph_definition() -> None:
    p, y = _data(300, seed=5)  # continuous confidences: no ties
    c, o = _conf_correct(p, y)
    assert np.unique(c).size == c.size
    assert r.prr(p, y) == pytest.approx(_lm_polygraph_prr(c, o), abs=1e-12)
    # PRR and AURC: 1 - AURC is LM-Polygraph's raw area
    assert 1 - r.aurc(p, y) == pytest.approx(r.selective_cov_acc_area(p, y))
    # oracle ranking -> 1, reversed oracle -> strongly negative
    conf = np.linspace(0.5, 1.0, 50)
    correct = conf > 0.7
    pp = np.stack([conf, 1 - conf], 1)
    assert r.prr(pp, np.where(correct, 0, 1)) == pytest.approx(1.0)
    assert r.prr(pp, np.where(~correct, 0, 1)) < 0
    assert r.e_aurc(pp, np.where(correct, 0, 1)) == pytest.approx(0.0, abs=1e-15)


def test_prr_random_baseline_by_simulation() -> None:
    # a confidence unrelated to correctness has PRR ~ 0 on average
    rng = np.random.default_rng(0)
    vals = []
    for _ in range(200):
        conf = rng.uniform(0.5, 1, 200)
        correct = rng.random(200) < 0.7
        pp = np.stack([conf, 1 - conf], 1)
        vals.append(r.prr(pp, np.where(correct, 0, 1)))
    assert abs(np.mean(vals)) < 0.03


def test_risk_coverage_curve_points() -> None:
    conf = np.array([0.9, 0.8, 0.8, 0.6])
    correct = np.array([True, False, True, False])
    p = np.stack([conf, 1 - conf], 1)
    rc = r.risk_coverage_curve(p, np.where(correct, 0, 1))
    np.testing.assert_allclose(rc.coverage, [0.25, 0.75, 1.0])
    np.testing.assert_allclose(rc.risk, [0.0, 1 / 3, 0.5])
    np.testing.assert_allclose(rc.threshold, [0.9, 0.8, 0.6])


# ---------------------------------------------------------------------- selective accuracy
def _helm_selective_stats(probs: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """HELM (calibration package) get_selective_stats, written out."""
    sort_indices = np.argsort(-probs, kind="stable")
    sorted_correct = correct[sort_indices]
    accs = np.cumsum(sorted_correct) / np.arange(1, len(sorted_correct) + 1)
    return float(np.mean(accs)), float(accs[int(0.1 * len(sorted_correct))])


def test_selective_metrics_match_helm() -> None:
    p, y = _data(437, seed=7)
    c, o = _conf_correct(p, y)
    area, acc10 = _helm_selective_stats(c, o.astype(float))
    assert r.selective_acc_at_10(p, y) == pytest.approx(acc10)
    assert r.selective_cov_acc_area(p, y) == pytest.approx(area)
    # selective_accuracy(0.1) keeps ceil(0.1 n) = 44 items
    order = np.argsort(-c)
    assert r.selective_accuracy(p, y, 0.1) == pytest.approx(o[order[:44]].mean())
    assert r.selective_accuracy(p, y, 1.0) == pytest.approx(o.mean())
    with pytest.raises(ValueError, match="coverage"):
        r.selective_accuracy(p, y, 0.0)


def test_selective_accuracy_ties_in_expectation() -> None:
    conf = np.array([0.9, 0.8, 0.8, 0.8, 0.8, 0.5, 0.5, 0.5, 0.5, 0.5])
    correct = np.array([1, 1, 0, 0, 0, 1, 1, 1, 1, 1], bool)
    p = np.stack([conf, 1 - conf], 1)
    y = np.where(correct, 0, 1)
    # top 2: the 0.9 (right) + one of four tied 0.8 (1 right in 4) -> (1 + 1/4) / 2
    assert r.selective_accuracy(p, y, 0.2) == pytest.approx((1 + 0.25) / 2)


# ---------------------------------------------------------------------- HELM ECE names
def _helm_ece_em(conf: np.ndarray, correct: np.ndarray, num_bins: int) -> float:
    """HELM (calibration package) get_ece_em with top-label input, written out."""
    sorted_probs = np.sort(conf)
    nb = min(num_bins, conf.size)
    groups = np.array_split(sorted_probs, nb)
    bins = sorted({(groups[i][-1] + groups[i + 1][0]) / 2.0 for i in range(nb - 1)} | {1.0})
    idx = np.searchsorted(bins, conf)
    total = 0.0
    for b in range(len(bins)):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(conf[sel].mean() - correct[sel].mean())
    return total


@pytest.mark.parametrize(("n", "round_to"), [(500, None), (437, None), (300, 1), (23, 2)])
def test_ece_10_bin_matches_helm(n: int, round_to: int | None) -> None:
    p, y = _data(n, seed=n, round_to=round_to)
    c, o = _conf_correct(p, y)
    assert r.ece_10_bin(p, y) == pytest.approx(_helm_ece_em(c, o.astype(float), 10), abs=1e-12)
    assert r.ece_1_bin(p, y) == pytest.approx(abs(c.mean() - o.mean()))


def test_ece_10_bin_equals_quantile_ece_without_ties() -> None:
    p, y = _data(500, seed=11)
    assert r.ece_10_bin(p, y) == pytest.approx(m.ece(p, y, n_bins=10, binning="quantile"))
    assert r.ece_1_bin(p, y) == pytest.approx(m.ece(p, y, n_bins=1))


def test_registry_and_validation() -> None:
    p, y = _data(100)
    for key, (name, lower, fn) in r.RANKING_METRICS.items():
        v = fn(p, y)
        assert isinstance(v, float) and np.isfinite(v), key
        assert isinstance(name, str) and isinstance(lower, bool)
    with pytest.raises(ValueError, match="labels"):
        r.auroc(p, y[:-1])
    with pytest.raises(ValueError):
        r.aurc(p * 2, y)
    # logits give the same values as their softmax
    z = np.log(p)
    assert r.aurc(z, y, from_logits=True) == pytest.approx(r.aurc(p, y))
