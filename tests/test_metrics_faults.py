"""Issue #10 items 7, 9 and 15 in the metrics: exact NLL from logits and one probability rule,
row-sum tolerances that follow the dtype, and bounded memory for any ``n_bins``.

References are independent of calibkit: torch / scipy log-softmax, scikit-learn's ``log_loss``,
hand computations.
"""

from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np
import pytest

import calibkit.metrics as m
from calibkit._validation import check_probs, simplex_atol
from calibkit.calibrators import IsotonicCalibrator
from calibkit.scores import Scores

torch = pytest.importorskip("torch")
special = pytest.importorskip("scipy.special")


def _data(n: int = 400, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 3.0
    y = rng.integers(0, k, size=n)
    return z, y


# ---------------------------------------------------------------------- item 7: NLL
def test_nll_from_logits_is_exact_log_softmax_without_a_cap() -> None:
    z, y = _data()
    z[0] = [0.0, -50.0, 3.0, 1.0]  # the true class (1) is ~53 nats down: no cap may apply
    y[0] = 1
    z[1] = [-1e4, 0.0, 0.0, 0.0]  # a -1e4 "missing" logit as the label costs ~1e4 nats
    y[1] = 0
    ref_torch = torch.nn.functional.cross_entropy(
        torch.tensor(z, dtype=torch.float64), torch.tensor(y), reduction="mean"
    ).item()
    ref_scipy = -float(np.mean(special.log_softmax(z, axis=1)[np.arange(len(y)), y]))
    assert m.nll(z, y, from_logits=True) == pytest.approx(ref_torch, rel=1e-12)
    assert m.nll(z, y, from_logits=True) == pytest.approx(ref_scipy, rel=1e-12)
    # a single item: the exact value, far above the old per-item cap of -log(eps) = 36.04
    assert m.nll(z[:1], y[:1], from_logits=True) == pytest.approx(
        -float(special.log_softmax(z[0])[1]), rel=1e-12
    )
    assert m.nll(z[:1], y[:1], from_logits=True) > 50.0


def test_nll_binary_logits_exact() -> None:
    zb = np.array([-60.0, 0.3, 45.0, -2.0])
    yb = np.array([1, 0, 0, 1])
    ref = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(zb, dtype=torch.float64), torch.tensor(yb, dtype=torch.float64)
    ).item()
    assert m.nll(zb, yb, from_logits=True) == pytest.approx(ref, rel=1e-12)
    assert m.nll(zb[:1], yb[:1], from_logits=True) == pytest.approx(60.0, rel=1e-12)


def test_nll_probability_rule_is_the_documented_floor() -> None:
    from sklearn.metrics import log_loss

    p = np.array([[0.0, 1.0], [0.25, 0.75], [1e-13, 1.0 - 1e-13], [0.5, 0.5]])
    y = np.array([0, 1, 0, 1])
    by_hand = -(math.log(1e-12) + math.log(0.75) + math.log(1e-12) + math.log(0.5)) / 4
    assert m.PROB_FLOOR == 1e-12
    assert m.nll(p, y) == pytest.approx(by_hand, rel=1e-12)
    # where every true-class probability is >= 1e-12 the rule is plain log loss (sklearn)
    q, yq = special.softmax(_data()[0], axis=1), _data()[1]
    assert m.nll(q, yq) == pytest.approx(log_loss(yq, q, labels=range(4)), rel=1e-12)


def test_nll_api_and_stored_scores_agree() -> None:
    """The CLI evaluates ``Scores.probs`` (log-probabilities clipped at 1e-12, then softmaxed);
    the API gets raw probabilities. One rule means one number (issue #10 item 7)."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(600, 3)) * 4.0
    p = special.softmax(z, axis=1)
    y = (rng.random(600)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)  # y ~ p: informative
    iso = IsotonicCalibrator().fit(p[:300], y[:300])
    raw = iso.predict_proba(p[300:])  # isotonic maps give exact zeros
    assert (raw[np.arange(300), y[300:]] == 0).any()
    cal = iso.calibrate(Scores.from_probs(p[300:], labels=y[300:]))
    api = m.nll(raw, y[300:])
    assert m.nll(cal.probs, y[300:]) == pytest.approx(api, rel=1e-9)
    assert m.nll(cal.logits, y[300:], from_logits=True) == pytest.approx(api, rel=1e-9)
    assert m.nll(Scores.from_probs(raw).probs, y[300:]) == pytest.approx(api, rel=1e-9)


def test_scoring_rule_accumulator_uses_the_same_rules() -> None:
    z, y = _data()
    acc = m.ScoringRuleAccumulator(from_logits=True)
    for s in range(0, len(y), 70):
        acc.update(z[s : s + 70], y[s : s + 70])
    assert acc.compute()["nll"] == pytest.approx(m.nll(z, y, from_logits=True), rel=1e-12)


# ---------------------------------------------------------------------- item 9: tolerances
def test_tolerance_follows_the_dtype() -> None:
    assert simplex_atol(np.finfo(np.float64).eps, 2) == 1e-4  # the old fixed bound: never tighter
    assert simplex_atol(np.finfo(np.float32).eps, 2) == 1e-4
    assert simplex_atol(np.finfo(np.float16).eps, 2) == pytest.approx((2 + 2**0.5) * 2.0**-10)
    assert simplex_atol(2.0**-7, 9) == pytest.approx(5 * 2.0**-7)  # bfloat16
    assert simplex_atol(np.finfo(np.float32).eps, 10_000) == 1e-4
    assert simplex_atol(np.finfo(np.float32).eps, 10**8) == pytest.approx(10_002 * 2.0**-23)


@pytest.mark.parametrize("k", [2, 10, 100, 1000])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_real_softmax_outputs_fit_their_tolerance(k: int, dtype: str) -> None:
    """torch's softmax in (or cast to) each precision lands inside the bound, with room."""
    z = torch.tensor(np.random.default_rng(k).normal(size=(500, k)) * 3.0)
    dt = getattr(torch, dtype)
    eps = torch.finfo(dt).eps
    for p in (torch.softmax(z.to(dt), dim=1), torch.softmax(z.float(), dim=1).to(dt)):
        off = (p.double().sum(dim=1) - 1).abs().max().item()
        assert off < simplex_atol(eps, k) / 2
        assert m.ece(p, np.zeros(500, dtype=np.int64)) >= 0.0


def test_float16_probabilities_are_accepted() -> None:
    z, y = _data(n=300, k=3, seed=1)
    p16 = special.softmax(z, axis=1).astype(np.float16)
    off = np.abs(p16.astype(np.float64).sum(axis=1) - 1.0).max()
    assert 1e-4 < off < simplex_atol(2.0**-10, 3)  # beyond the old fixed 1e-4, within fp16's
    renorm = p16.astype(np.float64) / p16.astype(np.float64).sum(axis=1, keepdims=True)
    assert m.ece(p16, y) == pytest.approx(m.ece(renorm, y), abs=2e-3)
    assert m.nll(p16, y) == pytest.approx(m.nll(renorm, y), abs=2e-3)
    assert m.brier_score(p16, y) == pytest.approx(m.brier_score(renorm, y), abs=2e-3)
    assert m.accuracy(p16, y) == m.accuracy(renorm, y)
    assert m.classwise_ece(p16, y) == pytest.approx(m.classwise_ece(renorm, y), abs=2e-3)
    np.testing.assert_allclose(Scores.from_probs(p16).probs, renorm, atol=1e-12)
    np.testing.assert_allclose(check_probs(p16), p16.astype(np.float64))


def test_bfloat16_tensors_are_accepted() -> None:
    z, y = _data(n=300, k=4, seed=2)
    pb = torch.softmax(torch.tensor(z, dtype=torch.float32), dim=1).to(torch.bfloat16)
    as64 = pb.double().numpy()
    assert np.abs(as64.sum(axis=1) - 1.0).max() > 1e-3  # bf16 rows are coarse
    renorm = as64 / as64.sum(axis=1, keepdims=True)
    assert m.ece(pb, y) == pytest.approx(m.ece(renorm, y), abs=2e-2)
    assert m.nll(pb, y) == pytest.approx(m.nll(renorm, y), abs=2e-2)
    tab = m.reliability_table(pb, y)
    assert tab.view == "top_label" and tab.n == len(y)
    IsotonicCalibrator().fit(pb, y)  # calibrators validate through the same check
    Scores.from_probs(pb, labels=y)


def test_rounded_rows_get_a_renormalise_hint_not_from_logits() -> None:
    p = np.array([[0.333, 0.333, 0.333], [0.2, 0.3, 0.5]])  # 3 decimals: sums to 0.999
    for fn in (m.ece, m.nll):
        with pytest.raises(ValueError, match="renormalise") as e:
            fn(p, [0, 1])
        assert "from_logits" not in str(e.value)
    with pytest.raises(ValueError, match="renormalise") as e:
        Scores.from_probs(p)
    assert "from_logits" not in str(e.value)
    far = np.array([[0.9, 0.9], [0.5, 0.5]])  # not probabilities at all: the logits hint stays
    with pytest.raises(ValueError, match="from_logits=True"):
        m.ece(far, [0, 1])
    with pytest.raises(ValueError, match="from_logits=True"):
        check_probs(far)
    bad16 = np.array([[0.5, 0.4], [0.5, 0.5]], dtype=np.float16)  # 0.9 is wrong at any precision
    with pytest.raises(ValueError, match="row 0"):
        m.ece(bad16, [0, 1])


def test_float64_tolerance_keeps_the_old_bound() -> None:
    """float32/float64 keep the old 1e-4 (arrays that were accepted still are); only coarser
    formats get a wider bound."""
    ok = np.array([[0.5, 0.5 - 5e-5], [0.5, 0.5]])  # accepted by the old fixed 1e-4
    assert m.ece(ok, [0, 1]) >= 0.0
    p = np.array([[0.5, 0.5 - 5e-4], [0.5, 0.5]])
    with pytest.raises(ValueError, match="row 0"):
        m.ece(p, [0, 1])


# ---------------------------------------------------------------------- item 15: bins
def _conf_correct(seed: int = 0, n: int = 1821) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2)) * 2.0
    return special.softmax(z, axis=1), rng.integers(0, 2, size=n)


@pytest.mark.parametrize(
    "fn",
    [m.ece, m.mce, m.rms_ce, m.debiased_ece, m.reliability_table, m.classwise_ece, m.ace],
)
def test_absurd_n_bins_is_a_clear_error_in_bounded_memory(fn) -> None:
    p, y = _conf_correct()
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=r"n_bins=100,000,000 is above the maximum"):
            fn(p, y, n_bins=100_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20  # the old code allocated ~2.4 GB here
    assert time.perf_counter() - t0 < 5.0


def test_many_bins_up_to_the_maximum_answer_exactly() -> None:
    p, y = _conf_correct(seed=4)
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    big = m.MAX_BINS
    # hand reference: group the items by equal-width bin, sum |acc - conf| weighted by mass
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(conf):
        groups.setdefault(min(int(c * big), big - 1), []).append(i)
    ref = sum(abs(correct[ix].mean() - conf[ix].mean()) * len(ix) for ix in groups.values())
    assert m.ece(p, y, n_bins=big) == pytest.approx(ref / len(y), abs=1e-12)
    with pytest.raises(ValueError, match="maximum"):
        m.ece(p, y, n_bins=big + 1)
    with pytest.raises(ValueError, match="maximum"):
        m.CalibrationErrorAccumulator(n_bins=10**8)


def test_classwise_cells_are_bounded_too() -> None:
    rng = np.random.default_rng(0)
    p = special.softmax(rng.normal(size=(50, 20)), axis=1)
    y = rng.integers(0, 20, size=50)
    with pytest.raises(ValueError, match="classwise binning of 20 classes"):
        m.classwise_ece(p, y, n_bins=m.MAX_BINS)
