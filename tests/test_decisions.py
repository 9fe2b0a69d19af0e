"""calibkit.decisions: p-values and bounds against scipy and hand computations, the threshold
rules, the saved policy (and its validation), conformal sets against hand computations, the
certified cascade and the two CLI commands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.special import betainc
from scipy.stats import beta, binom, binomtest, hypergeom

from calibkit import Scores
from calibkit.cli.main import main
from calibkit.decisions import (
    AutoLabelPolicy,
    CertificationError,
    CertifiedCascade,
    SplitConformal,
    accepted_counts,
    batch_pvalue,
    batch_select,
    binomial_pvalue,
    calibration_size_needed,
    certify_cascade,
    certify_threshold,
    clopper_pearson_interval,
    clopper_pearson_upper,
    compare_cascades,
    conformal_quantile,
    crc_select,
    default_min_accepted,
    evaluate_sets,
    fixed_sequence,
    grid_cells,
    hoeffding_bentkus_pvalue,
    hoeffding_sample_size,
    label_scores,
    labels_needed,
    ltt_select,
    min_certifiable_n,
    threshold_grid,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ensemble"


def _toy(n: int = 4000, seed: int = 0, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated synthetic scores: y ~ Categorical(p), so P(correct | conf) = conf."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 2.5
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    return p, y


# --------------------------------------------------------------------------- risk
@pytest.mark.parametrize(
    ("k", "n", "eps"), [(0, 10, 0.1), (3, 100, 0.05), (7, 50, 0.2), (5, 5, 0.5)]
)
def test_binomial_pvalue_matches_scipy_binomtest(k, n, eps) -> None:
    ref = binomtest(k, n, eps, alternative="less").pvalue
    assert binomial_pvalue(k, n, eps) == pytest.approx(ref, rel=1e-10)


def test_pvalues_vectorise_and_n_zero_is_no_evidence() -> None:
    k = np.array([[0, 1], [2, 0]])
    n = np.array([[0, 10], [20, 30]])
    p = binomial_pvalue(k, n, 0.1)
    assert p.shape == (2, 2) and p[0, 0] == 1.0
    assert p[1, 1] == pytest.approx(0.9**30)
    assert hoeffding_bentkus_pvalue(0, 0, 0.1) == 1.0


def test_hoeffding_bentkus_by_hand() -> None:
    # k = 2, n = 100, eps = 0.1: rhat = 0.02
    a, b = 0.02, 0.1
    h = a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))
    hoeff = math.exp(-100 * h)
    bentkus = math.e * sum(math.comb(100, i) * b**i * (1 - b) ** (100 - i) for i in range(3))
    assert hoeffding_bentkus_pvalue(2, 100, 0.1) == pytest.approx(min(hoeff, bentkus), rel=1e-9)
    # above epsilon the Hoeffding term is exp(0) = 1 and Bentkus' e * cdf may exceed 1
    assert hoeffding_bentkus_pvalue(20, 100, 0.1) == 1.0
    # never below the exact binomial p-value for 0/1 losses
    ks = np.arange(0, 30)
    assert np.all(hoeffding_bentkus_pvalue(ks, 200, 0.1) >= binomial_pvalue(ks, 200, 0.1) - 1e-15)


def test_clopper_pearson_against_scipy_and_duality() -> None:
    lo, hi = clopper_pearson_interval(3, 10, 0.95)
    ci = binomtest(3, 10).proportion_ci(0.95, method="exact")
    assert (lo, hi) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert clopper_pearson_upper(3, 40, 0.05) == pytest.approx(beta.ppf(0.95, 4, 37))
    assert clopper_pearson_upper(5, 5, 0.05) == 1.0
    assert clopper_pearson_upper(0, 0, 0.05) == 1.0
    assert clopper_pearson_interval(0, 10)[0] == 0.0 and clopper_pearson_interval(10, 10)[1] == 1.0
    # p <= delta  <=>  upper bound <= eps
    for k in range(0, 12):
        ub = float(clopper_pearson_upper(k, 200, 0.05))
        assert (binomial_pvalue(k, 200, ub + 1e-9) <= 0.05) and (
            binomial_pvalue(k, 200, ub - 1e-6) > 0.05
        )


def test_min_certifiable_n_and_labels_needed() -> None:
    m0 = min_certifiable_n(0.02, 0.05)
    assert m0 == math.ceil(math.log(0.05) / math.log(0.98)) == 149
    assert 0.98**m0 <= 0.05 < 0.98 ** (m0 - 1)
    assert labels_needed(0.0, 0.02, 0.05) == m0
    r = np.array([0.005, 0.01, 0.015])
    m = labels_needed(r, 0.02, 0.05)
    # the defining property, checked with scipy's incomplete beta directly
    for ri, mi in zip(r, m, strict=True):
        assert betainc(mi - ri * mi, ri * mi + 1, 0.98) <= 0.05
        assert betainc(mi - 1 - ri * (mi - 1), ri * (mi - 1) + 1, 0.98) > 0.05
    assert np.all(np.diff(m) > 0)
    assert np.isinf(labels_needed(0.02, 0.02, 0.05)) and np.isinf(labels_needed(0.5, 0.02, 0.05))
    # paper 000's Hoeffding count is far larger than the exact binomial count
    h = hoeffding_sample_size(0.01, 0.02, 0.05)
    assert h == math.ceil(math.log(2 / 0.05) / (2 * 0.01**2))
    assert h > 10 * m[1]
    exact, hoeff = calibration_size_needed(0.01, 0.5, 0.02, 0.05)
    assert exact == math.ceil(m[1] / 0.5) and hoeff == math.ceil(h / 0.5)


def test_batch_pvalue_matches_scipy_hypergeom() -> None:
    rng = np.random.default_rng(40)
    for eps in (0.02, 0.1, 0.3):
        n = rng.integers(1, 500, 400)
        k = (rng.random(400) * eps * n).astype(int)
        m = rng.integers(1, 500, 400)
        T = k + np.floor(eps * m) + 1
        ref = hypergeom.cdf(k, n + m, T, n)
        np.testing.assert_allclose(batch_pvalue(k, n, m, eps), ref, rtol=1e-9, atol=1e-300)
    # nothing accepted in the batch: nothing can be wrong
    assert batch_pvalue(3, 10, 0, 0.1) == 0.0
    # calibration error above eps: never rejected (conservative)
    assert batch_pvalue(5, 20, 30, 0.1) == 1.0


def test_batch_select_by_hand() -> None:
    n_acc = np.array([100, 200, 400])
    n_err = np.array([0, 2, 30])
    m = np.array([90, 210, 380])
    idx, pv = batch_select(n_acc, n_err, m, 0.05, 0.05, min_accepted=100)
    ref = hypergeom.cdf(n_err, n_acc + m, n_err + np.floor(0.05 * m) + 1, n_acc)
    ref[2] = 1.0  # 30 / 400 > eps: not computed, never rejected
    np.testing.assert_allclose(pv, ref, rtol=1e-9)
    assert idx == (1 if ref[1] <= 0.05 else 0)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan"), "x", True])
def test_risk_rejects_bad_epsilon_and_delta(bad) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        binomial_pvalue(1, 10, bad)
    with pytest.raises(ValueError, match="delta"):
        clopper_pearson_upper(1, 10, bad)


def test_counts_must_be_valid() -> None:
    with pytest.raises(ValueError, match="0 <= k <= n"):
        binomial_pvalue(5, 3, 0.1)
    with pytest.raises(ValueError, match="whole"):
        binomial_pvalue(1.5, 3, 0.1)


# --------------------------------------------------------------------------- grid, counts, rules
def test_grid_and_counts_by_hand() -> None:
    g = np.array([0.9, 0.7, 0.5, 0.0])
    conf = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.3])
    wrong = np.array([False, True, False, True, False, True])
    cells = grid_cells(conf, g)
    # 0.9 is accepted at 0.9 (>=); 0.7 at 0.7; 0.3 only at 0.0
    assert cells.tolist() == [0, 0, 1, 1, 2, 3]
    n_acc, n_err = accepted_counts(cells, wrong, g.size)
    assert n_acc.tolist() == [2, 4, 5, 6] and n_err.tolist() == [1, 2, 2, 3]
    g1000 = threshold_grid(10)
    assert g1000[0] == 1.0 and g1000[-1] == 0.0 and np.all(np.diff(g1000) < 0)
    assert g1000[-2] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="decreasing"):
        grid_cells(conf, [0.5, 0.9])


def test_fixed_sequence_by_hand() -> None:
    p = np.array([0.5, 0.01, 0.02, 0.2, 0.001])
    assert fixed_sequence(p, 0.05) == -1  # the first hypothesis already fails
    # skipping untested hypotheses: 0.5 is not tested, then 0.01, 0.02 pass, 0.2 stops
    assert fixed_sequence(p, 0.05, tested=[False, True, True, True, True]) == 2
    # batched with per-row deltas
    out = fixed_sequence(np.array([[0.01, 0.04, 0.2], [0.01, 0.04, 0.2]]), np.array([0.05, 0.3]))
    assert out.tolist() == [1, 2]


def test_ltt_select_skips_thin_thresholds_and_stops_at_failure() -> None:
    # ten grid points: the first three accept too few items to ever certify eps = 0.1
    n_acc = np.array([1, 5, 20, 60, 80, 100, 120, 150, 200, 300])
    n_err = np.array([0, 0, 0, 0, 1, 2, 5, 15, 40, 90])
    m0 = min_certifiable_n(0.1, 0.05)
    idx, pv = ltt_select(n_acc, n_err, 0.1, 0.05, min_accepted=m0)
    ref = binom.cdf(n_err, n_acc, 0.1)
    np.testing.assert_allclose(pv, ref)
    tested = n_acc >= m0
    expect = -1
    for j in range(10):
        if not tested[j]:
            continue
        if ref[j] > 0.05:
            break
        expect = j
    assert idx == expect == 6
    # the default gate starts where an error rate of eps / 2 would certify (capped at n / 4)
    assert int(labels_needed(0.05, 0.1, 0.05)) == 107
    assert int(default_min_accepted(0.1, 0.05, 300)) == 75
    assert int(default_min_accepted(0.1, 0.05, 1000)) == 107
    assert int(default_min_accepted(0.1, 0.05, 40)) == m0
    # a single confident error among the first ~m0 items no longer ends the sequence
    acc2 = np.array([30, 60, 110, 200, 300])
    err2 = np.array([1, 2, 3, 8, 20])
    assert ltt_select(acc2, err2, 0.1, 0.05, min_accepted=m0)[0] == -1
    assert ltt_select(acc2, err2, 0.1, 0.05)[0] == 4


def test_crc_select_by_hand() -> None:
    n_err = np.array([0, 1, 3, 9, 20])
    # (k + 1) / (n + 1) <= 0.05 with n = 99: k <= 4
    assert crc_select(n_err, 99, 0.05) == 2
    assert crc_select(np.array([5, 6]), 99, 0.05) == -1


# --------------------------------------------------------------------------- certify_threshold
def test_certify_threshold_matches_brute_force() -> None:
    p, y = _toy()
    pol = certify_threshold(p, y, max_error=0.05, delta=0.1)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    g = threshold_grid(3)
    # brute force: walk the grid, skipping thin thresholds, stop at the first failure
    last = None
    m0 = int(default_min_accepted(0.05, 0.1, y.size))
    for lam in g:
        acc = conf >= lam
        n, k = int(acc.sum()), int((pred[acc] != y[acc]).sum())
        if n < m0:
            continue
        if binomtest(k, n, 0.05, alternative="less").pvalue > 0.1:
            break
        last = lam
    assert last is not None and pol.threshold == last
    acc = conf >= last
    assert pol.n_accepted == acc.sum() and pol.n_errors == (pred[acc] != y[acc]).sum()
    assert pol.coverage == pytest.approx(acc.mean())
    lo, hi = pol.coverage_ci
    ci = binomtest(int(acc.sum()), y.size).proportion_ci(0.95, method="exact")
    assert (lo, hi) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert pol.error <= 0.05
    assert pol.report is not None and pol.report.error_upper <= 0.05 + 1e-12
    # the items-needed estimate is consistent: what we have certifies, so the need is <= n
    assert pol.report.n_needed <= y.size
    assert pol.report.n_needed_hoeffding > pol.report.n_needed


def test_scores_logits_and_probabilities_agree() -> None:
    p, y = _toy(2000, seed=1)
    a = certify_threshold(p, y, max_error=0.1, delta=0.1)
    b = certify_threshold(np.log(p), y, max_error=0.1, delta=0.1, from_logits=True)
    c = certify_threshold(Scores.from_probs(p, y), max_error=0.1, delta=0.1)
    assert a.threshold == b.threshold == c.threshold
    assert a.n_accepted == b.n_accepted == c.n_accepted


def test_binary_1d_probabilities() -> None:
    rng = np.random.default_rng(2)
    q = rng.beta(0.4, 0.4, size=3000)
    y = (rng.random(3000) < q).astype(int)
    pol1 = certify_threshold(q, y, max_error=0.05, delta=0.05)
    pol2 = certify_threshold(np.stack([1 - q, q], axis=1), y, max_error=0.05, delta=0.05)
    assert pol1.threshold == pol2.threshold and pol1.classes == ("0", "1")
    dec = pol1.apply(q)
    assert dec.accepted.sum() == pol1.n_accepted


def test_all_correct_and_all_wrong_and_tiny_n() -> None:
    p, _y = _toy(500, seed=3)
    pred = p.argmax(axis=1)
    # all correct: everything accepted
    pol = certify_threshold(p, pred, max_error=0.02, delta=0.05)
    assert pol.threshold == 0.0 and pol.coverage == 1.0 and pol.n_errors == 0
    # all wrong: refused, and no amount of data helps
    wrong_y = (pred + 1) % 3
    with pytest.raises(CertificationError, match="No amount of data") as e:
        certify_threshold(p, wrong_y, max_error=0.02, delta=0.05)
    assert e.value.needed is None
    # n tiny: refused with an estimate of the labelled items needed
    with pytest.raises(CertificationError, match=r"About \d+ labelled") as e2:
        certify_threshold(p[:20], pred[:20], max_error=0.02, delta=0.05)
    assert e2.value.needed is not None and e2.value.needed >= min_certifiable_n(0.02, 0.05)


def test_refusal_estimate_is_roughly_right() -> None:
    """The 'items needed' of a refusal is enough: certify succeeds on that many fresh items."""
    p, y = _toy(20000, seed=4)
    small = 150
    with pytest.raises(CertificationError) as e:
        certify_threshold(p[:small], y[:small], max_error=0.05, delta=0.05)
    need = int(e.value.needed)
    assert small < need < 20000
    pol = certify_threshold(
        p[: min(2 * need, 20000)], y[: min(2 * need, 20000)], max_error=0.05, delta=0.05
    )
    assert pol.n_accepted > 0


def test_ties_in_confidence() -> None:
    # every item has the same confidence: a threshold accepts all of them or none
    p = np.tile([0.8, 0.1, 0.1], (400, 1))
    y = np.zeros(400, dtype=int)
    y[:8] = 1  # 2% errors
    pol = certify_threshold(p, y, max_error=0.06, delta=0.05)
    assert pol.n_accepted == 400 and pol.threshold <= 0.8
    assert pol.apply(p).accepted.all()


def test_by_class_thresholds_and_per_class_epsilon() -> None:
    p, y = _toy(6000, seed=5)
    pol = certify_threshold(
        p, y, max_error={"0": 0.02, "1": 0.1, "2": 0.1}, delta=0.1, by_class=True
    )
    pred = p.argmax(axis=1)
    conf = p.max(axis=1)
    t = pol.class_thresholds()
    for c in range(3):
        acc = (pred == c) & (conf >= t[c])
        r = pol.per_class[c]
        assert r.n_accepted == acc.sum() and r.n == (pred == c).sum()
        if r.n_accepted:
            assert r.n_errors / r.n_accepted <= pol.max_error[c]
    # the strict class needs a higher threshold
    assert t[0] >= max(t[1], t[2])
    assert "every predicted class" in pol.guarantee()


def test_crc_rule_controls_joint_error_in_expectation() -> None:
    p, y = _toy(3000, seed=6)
    pol = certify_threshold(p, y, max_error=0.05, rule="crc")
    conf, wrong = p.max(axis=1), p.argmax(axis=1) != y
    acc = conf >= pol.threshold
    assert (np.sum(acc & wrong) + 1) / (y.size + 1) <= 0.05
    assert "expected share" in pol.guarantee()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_error": 0.0}, "max_error"),
        ({"max_error": 1.2}, "max_error"),
        ({"max_error": 0.05, "delta": 0.0}, "delta"),
        ({"max_error": 0.05, "delta": 1.0}, "delta"),
        ({"max_error": 0.05, "rule": "fdr"}, "rule"),
        ({"max_error": 0.05, "method": "wilson"}, "method"),
        ({"max_error": [0.1, 0.1]}, "max_error"),
        ({"max_error": {"0": 0.1}, "by_class": True}, "max_error"),
        ({"max_error": 0.05, "by_class": True, "rule": "crc"}, "by_class"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field) -> None:
    p, y = _toy(300)
    with pytest.raises(ValueError, match=field):
        certify_threshold(p, y, **kwargs)


def test_unlabeled_scores_are_refused() -> None:
    p, _ = _toy(100)
    with pytest.raises(ValueError, match="scores: these Scores are unlabeled"):
        certify_threshold(Scores.from_probs(p), max_error=0.1)
    with pytest.raises(ValueError, match="labels"):
        certify_threshold(p, max_error=0.1)
    with pytest.raises(ValueError, match="sum to 1"):
        certify_threshold(p * 0.5, np.zeros(100, dtype=int), max_error=0.1)


# --------------------------------------------------------------------------- the saved policy
def _policy(tmp_path: Path, **kw) -> tuple[AutoLabelPolicy, Path]:
    p, y = _toy(3000, seed=7)
    pol = certify_threshold(
        Scores.from_probs(p, y, classes=("a", "b", "c")), max_error=0.1, delta=0.1, **kw
    )
    return pol, pol.save(tmp_path / "policy.json")


@pytest.mark.parametrize("by_class", [False, True])
def test_policy_round_trip(tmp_path, by_class) -> None:
    pol, path = _policy(tmp_path, by_class=by_class)
    back = AutoLabelPolicy.load(path)
    assert back.thresholds == pol.thresholds and back.classes == pol.classes
    assert back.to_dict() == pol.to_dict()
    p, _ = _toy(500, seed=8)
    np.testing.assert_array_equal(back.apply(p).accepted, pol.apply(p).accepted)


def test_apply_reorders_classes_by_name(tmp_path) -> None:
    pol, _ = _policy(tmp_path)
    p, y = _toy(400, seed=9)
    s = Scores.from_probs(p, y, classes=("a", "b", "c"))
    perm = [2, 0, 1]
    shuffled = Scores.from_probs(p[:, perm], np.argsort(perm)[y], classes=("c", "a", "b"))
    np.testing.assert_array_equal(pol.apply(s).accepted, pol.apply(shuffled).accepted)
    with pytest.raises(ValueError, match="differ"):
        pol.apply(Scores.from_probs(p, classes=("a", "b", "x")))


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.update(threshold=1.5), "'threshold'"),
        (lambda d: d.update(threshold="0.9"), "'threshold'"),
        (lambda d: d.update(threshold=None), "'threshold'"),
        (lambda d: d.update(max_error=0), "'max_error'"),
        (lambda d: d.update(delta=2), "'delta'"),
        (lambda d: d.update(rule="magic"), "'rule'"),
        (lambda d: d.update(format="something"), "'format'"),
        (lambda d: d.update(version=2), "'version'"),
        (lambda d: d.update(classes=["a", "a", "b"]), "'classes'"),
        (lambda d: d["calibration"].update(coverage=0.99), "'calibration.coverage'"),
        (lambda d: d["calibration"].update(n_errors=10**6), "'calibration'"),
        (
            lambda d: d["calibration"].update(n_errors=d["calibration"]["n_accepted"] // 2),
            "n_errors",
        ),
        (lambda d: d["calibration"].pop("n"), "'calibration.n' is missing"),
        (lambda d: d.update(by_class="yes"), "'by_class'"),
        (lambda d: d.update(thresholds={"a": 0.9}), "'thresholds'"),
    ],
)
def test_tampered_policy_is_rejected_naming_file_and_field(tmp_path, edit, field) -> None:
    _, path = _policy(tmp_path)
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError) as e:
        AutoLabelPolicy.load(path)
    assert str(path) in str(e.value) and field in str(e.value)


def test_saved_certificate_is_recomputed_on_load(tmp_path) -> None:
    pol, path = _policy(tmp_path)
    d = json.loads(path.read_text())
    g = d["curve"]["grid"]
    j = g.index(d["threshold"])
    a, e = d["curve"]["n_accepted"], d["curve"]["n_errors"]
    # a lower grid threshold, still under max_error in-sample, with the totals made to match:
    # Learn-then-Test on the saved curve does not certify it
    k = next(i for i in range(j + 1, len(g)) if a[i] > a[j] and e[i] <= 0.1 * a[i])
    d["threshold"] = g[k]
    d["calibration"]["n_accepted"] = a[k]
    d["calibration"]["n_errors"] = e[k]
    n = d["calibration"]["n"]
    d["calibration"]["coverage"] = d["calibration"]["n_accepted"] / n
    lo, hi = clopper_pearson_interval(d["calibration"]["n_accepted"], n)
    d["calibration"]["coverage_ci"] = [float(lo), float(hi)]
    d.pop("report")
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="not what Learn-then-Test certifies"):
        AutoLabelPolicy.load(path)
    # errors removed from the curve
    d = json.loads((pol.save(tmp_path / "p2.json")).read_text())
    d["curve"]["n_errors"] = [0] * len(d["curve"]["n_errors"])
    (tmp_path / "p2.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="'curve"):
        AutoLabelPolicy.load(tmp_path / "p2.json")


def test_apply_batch_certifies_the_batch(tmp_path) -> None:
    p, y = _toy(6000, seed=41)
    pol = certify_threshold(p[:3000], y[:3000], max_error=0.1, delta=0.05)
    back = AutoLabelPolicy.from_dict(json.loads(json.dumps(pol.to_dict())))
    dec = back.apply(p[3000:], batch=True)
    t = dec.threshold[0]
    # the same rule by hand
    g, a, e = pol.curve
    conf = p[3000:].max(1)
    m = np.array([(conf >= lam).sum() for lam in g])
    idx, _ = batch_select(a, e, m, 0.1, 0.05)
    assert t == g[idx]
    assert dec.accepted.sum() == (conf >= t).sum()
    assert "this batch" in pol.guarantee(batch=True)
    by_class = certify_threshold(p[:3000], y[:3000], max_error=0.3, delta=0.05, by_class=True)
    with pytest.raises(ValueError, match="batch guarantee"):
        by_class.apply(p[3000:], batch=True)


def test_tampered_class_policy_is_rejected(tmp_path) -> None:
    _, path = _policy(tmp_path, by_class=True)
    d = json.loads(path.read_text())
    d["thresholds"]["a"] = 0.5
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"per_class\.a\.threshold"):
        AutoLabelPolicy.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        AutoLabelPolicy.load(path)
    with pytest.raises(FileNotFoundError):
        AutoLabelPolicy.load(tmp_path / "missing.json")


# --------------------------------------------------------------------------- conformal
def test_label_scores_by_hand() -> None:
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    np.testing.assert_allclose(label_scores(p, "lac"), 1 - p)
    # APS u = 0: mass ranked strictly above each label
    np.testing.assert_allclose(label_scores(p, "aps"), [[0.0, 0.5, 0.8], [0.9, 0.0, 0.6]])
    u = np.array([0.5, 1.0])
    np.testing.assert_allclose(label_scores(p, "aps", u=u), [[0.25, 0.65, 0.9], [1.0, 0.6, 0.9]])
    # RAPS: + lam * max(0, rank - k_reg), ranks 1..3
    np.testing.assert_allclose(
        label_scores(p, "raps", k_reg=1, lam=0.1), [[0.0, 0.6, 1.0], [1.1, 0.0, 0.7]]
    )


def test_conformal_quantile_by_hand() -> None:
    s = np.arange(1, 20, dtype=float)  # n = 19
    # ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(s, 0.1) == 18.0
    assert conformal_quantile(s, 0.04) == np.inf  # ceil(20 * 0.96) = 20 > 19
    assert conformal_quantile(np.vstack([s, s + 1]), 0.1).tolist() == [18.0, 19.0]


def test_split_conformal_sets_and_report() -> None:
    p, y = _toy(3000, seed=10)
    cp = SplitConformal(0.1, "lac").fit(p[:1500], y[:1500])
    q = np.sort(1 - p[np.arange(1500), y[:1500]])[math.ceil(1501 * 0.9) - 1]
    assert cp.quantile_ == pytest.approx(q)
    sets = cp.predict_sets(p[1500:])
    np.testing.assert_array_equal(sets, (1 - p[1500:]) <= q)
    rep = cp.evaluate(p[1500:], y[1500:])
    assert rep.coverage == pytest.approx(sets[np.arange(1500), y[1500:]].mean())
    assert rep.size_counts.sum() == 1500 and rep.mean_size == pytest.approx(sets.sum(1).mean())
    assert rep.coverage >= 0.87


def test_randomized_sets_are_seeded() -> None:
    p, y = _toy(2000, seed=11)
    a = SplitConformal(0.1, "aps", randomized=True, seed=3).fit(p[:1000], y[:1000])
    b = SplitConformal(0.1, "aps", randomized=True, seed=3).fit(p[:1000], y[:1000])
    c = SplitConformal(0.1, "aps", randomized=True, seed=4).fit(p[:1000], y[:1000])
    np.testing.assert_array_equal(a.predict_sets(p[1000:]), b.predict_sets(p[1000:]))
    np.testing.assert_array_equal(a.predict_sets(p[1000:]), a.predict_sets(p[1000:]))
    assert a.quantile_ != c.quantile_


def test_mondrian_has_one_quantile_per_class() -> None:
    p, y = _toy(3000, seed=12)
    cp = SplitConformal(0.1, "lac", mondrian=True).fit(p, y)
    for c in range(3):
        s = np.sort(1 - p[y == c, c])
        k = math.ceil((s.size + 1) * 0.9)
        assert cp.quantile_[c] == pytest.approx(s[k - 1])
    sets = cp.predict_sets(p)
    np.testing.assert_array_equal(sets, (1 - p) <= cp.quantile_[None, :])


def test_conformal_small_n_gives_full_sets_and_binary_1d() -> None:
    p, y = _toy(30, seed=13)
    cp = SplitConformal(0.01, "lac").fit(p, y)
    assert cp.infinite_quantile and cp.predict_sets(p).all()
    q = np.random.default_rng(0).random(200)
    yy = (q > 0.5).astype(int)
    s1 = SplitConformal(0.2).fit(q, yy).predict_sets(q)
    s2 = SplitConformal(0.2).fit(np.stack([1 - q, q], 1), yy).predict_sets(np.stack([1 - q, q], 1))
    np.testing.assert_array_equal(s1, s2)


def test_conformal_bad_input() -> None:
    p, y = _toy(100)
    with pytest.raises(ValueError, match="alpha"):
        SplitConformal(1.5).fit(p, y)
    with pytest.raises(ValueError, match="method"):
        SplitConformal(0.1, "naive").fit(p, y)
    with pytest.raises(ValueError, match="unlabeled"):
        SplitConformal(0.1).fit(Scores.from_probs(p))
    with pytest.raises(ValueError, match="classes"):
        SplitConformal(0.1).fit(p, y).predict_sets(np.full((3, 4), 0.25))
    with pytest.raises(ValueError, match="sets must be"):
        evaluate_sets(np.ones(3, bool), [0, 1, 0])


def test_conformal_on_mcq_letter_scores() -> None:
    """MCQ letter scores (``calibkit score --task mcq``): classes A-D, a missing 4th option has
    the logit -1e4 (probability 0) and never enters a set unless every set is full."""
    rng = np.random.default_rng(14)
    z = rng.normal(size=(400, 4)) * 2
    z[:100, 3] = -1e4
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in p])
    s = Scores(logits=z, labels=y, classes=("A", "B", "C", "D"), meta={"task": "mcq"})
    cp = SplitConformal(0.1, "aps").fit(s.subset(np.arange(200)))
    sets = cp.predict_sets(s.subset(np.arange(200, 400)))
    assert not sets[:0].any()
    cp2 = SplitConformal(0.1, "lac").fit(s.subset(np.arange(200, 400)))
    assert not cp2.predict_sets(s.subset(np.arange(100)))[:, 3].any()


# --------------------------------------------------------------------------- cascade
def _cifar_stack(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for name in ("lenet-5-cifar-10", "wideresnet-16-4-cifar-10"):
        f = data_dir / "cifar_records" / f"{name}.npz"
        if not f.is_file():
            pytest.skip(f"{f} not found")
        d = np.load(f)
        p = d["predictions"].astype(np.float64)
        out.append(p / p.sum(1, keepdims=True))
        y = d["ground_truth"].astype(np.int64)
    return np.stack(out, axis=1), y


def test_certified_cascade_bounds_each_stage(data_dir, tmp_path) -> None:
    from calibkit.ensemble import CascadePolicy

    X, y = _cifar_stack(data_dir)
    perm = np.random.default_rng(0).permutation(y.size)
    tr, ca, te = perm[:3000], perm[3000:6000], perm[6000:]
    pol = CascadePolicy(
        n_bins=5, costs=[1.0, 10.0], cost_penalty=0.02, model_names=["lenet", "wrn"]
    )
    pol.fit(X[tr], y[tr])
    base = pol.cascade(X[ca])
    assert (base.depth == 1).mean() > 0.05  # the cheap model labels part of the items
    err1 = np.mean(base.predictions[base.depth == 1] != y[ca][base.depth == 1])
    cert = certify_cascade(pol, X[ca], y[ca], max_error=0.05, delta=0.05)
    s1 = cert.stages[0]
    assert s1.certified and not cert.stages[1].certified
    assert s1.n_candidates == (base.depth == 1).sum()
    if s1.n_accepted:
        assert s1.n_errors / s1.n_accepted <= 0.05 and s1.error_upper <= 0.05 + 1e-12
    res = cert.cascade(X[ca])
    assert (res.exit_stage == 1).sum() == s1.n_accepted
    assert not res.review.any()
    # the certificate restricts the F1-optimal policy: never cheaper
    comp = compare_cascades(cert, X[te], y[te], average="macro")
    f1row, crow = comp.rows
    assert crow["relative_cost"] >= f1row["relative_cost"] - 1e-12
    assert err1 > 0.05 or crow["stage_share"][0] == pytest.approx(f1row["stage_share"][0])
    assert "|" in comp.table(["lenet", "wrn"])
    # save / load keeps the behaviour; a tampered file is refused
    path = cert.save(tmp_path / "cert.json")
    back = CertifiedCascade.load(path)
    np.testing.assert_array_equal(back.cascade(X[te]).predictions, cert.cascade(X[te]).predictions)
    d = json.loads(path.read_text())
    d["stages"][0]["threshold"] = 7
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"stages\[0\]\.threshold"):
        CertifiedCascade.load(path)


def test_certified_cascade_replace_mode_lets_cheap_model_label(data_dir) -> None:
    from calibkit.ensemble import CascadePolicy

    X, y = _cifar_stack(data_dir)
    perm = np.random.default_rng(1).permutation(y.size)
    tr, ca, te = perm[:3000], perm[3000:6000], perm[6000:]
    pol = CascadePolicy(n_bins=5, costs=[1.0, 10.0], model_names=["lenet", "wrn"]).fit(X[tr], y[tr])
    assert (pol.cascade(X[ca]).depth == 1).sum() == 0  # F1-optimal: never trust LeNet
    cert = certify_cascade(pol, X[ca], y[ca], max_error=0.1, delta=0.05, mode="replace")
    res = cert.cascade(X[te])
    lab = res.exit_stage == 1
    assert lab.mean() > 0.03
    comp = compare_cascades(cert, X[te], y[te], average="macro")
    assert comp.rows[1]["relative_cost"] < comp.rows[0]["relative_cost"]
    # held-out error of what LeNet labels stays near the bound
    assert np.mean(res.predictions[lab] != y[te][lab]) <= 0.13


def test_certify_cascade_bad_input(data_dir) -> None:
    from calibkit.ensemble import CascadePolicy

    X, y = _cifar_stack(data_dir)
    pol = CascadePolicy(n_bins=3).fit(X[:500], y[:500])
    with pytest.raises(ValueError, match="max_error"):
        certify_cascade(pol, X[500:900], y[500:900], max_error=0)
    with pytest.raises(ValueError, match="stages"):
        certify_cascade(pol, X[500:900], y[500:900], max_error=0.1, stages=[3])
    with pytest.raises(ValueError, match="mode"):
        certify_cascade(pol, X[500:900], y[500:900], max_error=0.1, mode="x")
    with pytest.raises(ValueError, match="policy"):
        certify_cascade(CascadePolicy(), X[500:900], y[500:900], max_error=0.1)


# --------------------------------------------------------------------------- CLI
@pytest.fixture
def cal_test_files(tmp_path: Path) -> tuple[Path, Path]:
    p, y = _toy(6000, seed=20)
    names = ("neg", "neu", "pos")
    a = Scores.from_probs(p[:3000], y[:3000], classes=names).save(tmp_path / "cal.csv")
    b = Scores.from_probs(p[3000:], y[3000:], classes=names).save(tmp_path / "test.parquet")
    return a, b


def test_cli_threshold_certify_apply_roundtrip(capsys, tmp_path, cal_test_files) -> None:
    cal, test = cal_test_files
    pol_path = tmp_path / "policy.json"
    capsys.readouterr()
    rc = main(
        [
            "threshold",
            str(cal),
            "--max-error",
            "0.1",
            "--delta",
            "0.05",
            "-o",
            str(pol_path),
            "--eval",
            str(test),
            "--plot",
            str(tmp_path / "risk.png"),
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    api = certify_threshold(Scores.load(cal), max_error=0.1, delta=0.05)
    assert out["policy"]["threshold"] == api.threshold
    assert out["policy"]["calibration"]["n_accepted"] == api.n_accepted
    assert (tmp_path / "risk.png").stat().st_size > 0
    labeled = tmp_path / "labeled.csv"
    rc = main(
        [
            "threshold",
            "apply",
            str(pol_path),
            str(test),
            "-o",
            str(labeled),
            "--review-out",
            str(tmp_path / "review.csv"),
            "--guarantee",
            "population",
            "--json",
        ]
    )
    assert rc == 0
    summ = json.loads(capsys.readouterr().out)
    import pandas as pd

    df = pd.read_csv(labeled)
    ts = Scores.load(test)
    dec = api.apply(ts)
    assert summ["n_auto"] == dec.accepted.sum() == (df["decision"] == "auto").sum()
    assert (pd.read_csv(tmp_path / "review.csv")["decision"] == "review").all()
    np.testing.assert_array_equal(df["prediction"], np.asarray(ts.classes)[dec.prediction])
    rc = main(
        ["threshold", "apply", str(pol_path), str(test), "-o", str(labeled), "--batch", "--json"]
    )
    assert rc == 0
    summ = json.loads(capsys.readouterr().out)
    assert summ["threshold"] == api.batch_threshold(ts.confidence)
    assert "this batch" in summ["guarantee"]
    # the default is the batch guarantee wherever the policy supports it
    rc = main(["threshold", "apply", str(pol_path), str(test), "-o", str(labeled), "--json"])
    assert rc == 0
    default = json.loads(capsys.readouterr().out)
    assert default["threshold"] == summ["threshold"] and default["guarantee"] == summ["guarantee"]


def test_cli_threshold_refusal_is_one_line(capsys, cal_test_files) -> None:
    cal, _ = cal_test_files
    capsys.readouterr()
    assert main(["threshold", str(cal), "--max-error", "0.001"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no threshold certifies")
    assert "labelled calibration items" in err[0] or "No amount" in err[0]


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["--max-error", "1.5"], "--max-error"),
        (["--max-error", "0.1", "--delta", "0"], "--delta"),
        ([], "--max-error is required"),
        (["--max-error", "0.1", "--class-max-error", "neg=0.1"], "--by-class"),
    ],
)
def test_cli_threshold_bad_arguments(capsys, cal_test_files, argv, msg) -> None:
    cal, _ = cal_test_files
    capsys.readouterr()
    assert main(["threshold", str(cal), *argv]) == 2
    assert msg in capsys.readouterr().err


def test_cli_threshold_tampered_policy(capsys, tmp_path, cal_test_files) -> None:
    cal, test = cal_test_files
    pol = tmp_path / "p.json"
    assert main(["threshold", str(cal), "--max-error", "0.1", "-o", str(pol), "--json"]) == 0
    d = json.loads(pol.read_text())
    d["threshold"] = -1
    pol.write_text(json.dumps(d))
    capsys.readouterr()
    assert main(["threshold", "apply", str(pol), str(test), "-o", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert str(pol) in err and "'threshold'" in err


def test_cli_conformal(capsys, tmp_path, cal_test_files) -> None:
    cal, test = cal_test_files
    sets_path = tmp_path / "sets.csv"
    capsys.readouterr()
    rc = main(
        [
            "conformal",
            str(test),
            "--calib",
            str(cal),
            "--alpha",
            "0.1",
            "--method",
            "aps",
            "-o",
            str(sets_path),
            "--plot",
            str(tmp_path / "sizes.png"),
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    cp = SplitConformal(0.1, "aps").fit(Scores.load(cal))
    ref = cp.evaluate(Scores.load(test))
    assert out["report"]["coverage"] == pytest.approx(ref.coverage)
    assert out["mean_size"] == pytest.approx(ref.mean_size)
    import pandas as pd

    df = pd.read_csv(sets_path)
    assert df["size"].mean() == pytest.approx(ref.mean_size)
    assert set(df.columns) >= {"id", "set", "size", "label", "covered"}
    # the calib-frac form splits one labelled file with a seed
    rc = main(["conformal", str(test), "--calib-frac", "0.4", "--mondrian", "--json"])
    assert rc == 0
    out2 = json.loads(capsys.readouterr().out)
    assert out2["calibration"] == {"calibration": 1200, "test": 1800, "seed": 0}
    assert main(["conformal", str(test), "--alpha", "2"]) == 2


def test_cli_threshold_cascade(capsys, tmp_path, data_dir) -> None:
    from calibkit.ensemble import CascadePolicy

    X, y = _cifar_stack(data_dir)
    names = [f"c{i}" for i in range(10)]
    perm = np.random.default_rng(0).permutation(y.size)
    tr, ca = perm[:3000], perm[3000:6000]
    pol = CascadePolicy(
        n_bins=5, costs=[1.0, 10.0], cost_penalty=0.02, model_names=["lenet", "wrn"]
    )
    pol.fit(X[tr], y[tr])
    pol_path = pol.save(tmp_path / "cascade.json")
    files = []
    for k, m in enumerate(["lenet", "wrn"]):
        s = Scores.from_probs(X[ca, k], y[ca], classes=names, ids=ca, meta={"name": m})
        files.append(str(s.save(tmp_path / f"{m}.parquet")))
    cert_path = tmp_path / "cert.json"
    capsys.readouterr()
    rc = main(
        [
            "threshold",
            "cascade",
            str(pol_path),
            *files,
            "--max-error",
            "0.1",
            "-o",
            str(cert_path),
            "--average",
            "macro",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    api = certify_cascade(pol, X[ca], y[ca], max_error=0.1, delta=0.05)
    assert api.stages[0].n_accepted > 0
    t = out["certificate"]["stages"][0]["threshold"]
    assert (math.inf if t is None else t) == api.stages[0].threshold
    rows = out["comparison"]["calibration"]
    assert rows[0]["policy"] == "F1-optimal cascade"
    rc = main(
        ["threshold", "apply", str(cert_path), *files, "-o", str(tmp_path / "lab.csv"), "--json"]
    )
    assert rc == 0
    summ = json.loads(capsys.readouterr().out)
    res = api.cascade(X[ca])
    assert summ["share_by_stage"][0] == pytest.approx(np.mean(res.exit_stage == 1))


# --------------------------------------------------------------------------- plots
def test_plots(tmp_path) -> None:
    from calibkit.plots import save_figure
    from calibkit.plots.decisions import risk_coverage_plot, set_size_histogram

    p, y = _toy(3000, seed=30)
    pol = certify_threshold(p[:2000], y[:2000], max_error=0.1, delta=0.1)
    conf, wrong = p[2000:].max(1), p[2000:].argmax(1) != y[2000:]
    fig = risk_coverage_plot(pol, test_confidence=conf, test_wrong=wrong)
    ax = fig.axes[0]
    # the certified point sits at the policy's calibration coverage and error
    pts = [c.get_offsets()[0] for c in ax.collections]
    assert any(np.allclose(pt, [pol.coverage, pol.error]) for pt in pts)
    assert save_figure(fig, tmp_path / "risk.svg", close=True).stat().st_size > 0
    with pytest.raises(ValueError, match="no risk curve"):
        risk_coverage_plot(AutoLabelPolicy.from_dict(pol.to_dict()))
    sets = SplitConformal(0.1).fit(p[:2000], y[:2000]).predict_sets(p[2000:])
    fig2 = set_size_histogram(sets, y[2000:], alpha=0.1)
    heights = [b.get_height() for b in fig2.axes[0].patches]
    np.testing.assert_allclose(heights, np.bincount(sets.sum(1), minlength=4) / 1000)
    assert "coverage" in fig2.axes[0].get_title()
    save_figure(fig2, tmp_path / "sizes.png", close=True)


@pytest.mark.slow
def test_conformal_and_threshold_on_real_mcq_letter_scores(capsys, tmp_path) -> None:
    """SmolLM2 letter scores on bundled ARC-Challenge questions (``calibkit score --task mcq``)."""
    out = tmp_path / "arc.parquet"
    argv = ["score", "--data", "sample:arc_challenge", "--task", "mcq", "--limit", "60"]
    argv += ["--mode", "next_token", "--cache", str(tmp_path / "c.sqlite"), "-o", str(out)]
    assert main(argv) == 0
    s = Scores.load(out)
    assert s.classes[:4] == ("A", "B", "C", "D") and s.labels is not None
    capsys.readouterr()
    rc = main(
        [
            "conformal",
            str(out),
            "--alpha",
            "0.2",
            "--method",
            "aps",
            "--calib-frac",
            "0.5",
            "--json",
        ]
    )
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    perm = np.random.default_rng(0).permutation(len(s))
    cal, test = s.subset(np.sort(perm[:30])), s.subset(np.sort(perm[30:]))
    ref = SplitConformal(0.2, "aps").fit(cal).evaluate(test)
    assert rep["report"]["coverage"] == pytest.approx(ref.coverage)
    assert rep["mean_size"] == pytest.approx(ref.mean_size)
    # a 135M model on 4-option questions: certifying 10% error is refused with a count
    assert main(["threshold", str(out), "--max-error", "0.1"]) == 2
    assert "error: no threshold certifies" in capsys.readouterr().err
