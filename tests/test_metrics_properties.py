"""Properties and hand-computed examples for calibkit.metrics (no optional dependencies).

Hypothesis checks the vectorised metrics against a deliberately naive pure-Python binning, and
the edge cases: confidences exactly 0 and 1, values on bin edges, empty bins, a single class,
ties, NaN / inf and mismatched lengths (ValueError). Small examples are worked out by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import calibkit.metrics as m

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# values that stress the binning: exact 0 and 1, exact edges of 10/15-bin grids, halves
_SPECIAL = [0.0, 1.0, 0.5, 0.1, 0.2, 0.3, 0.7, 1 / 15, 2 / 15, 14 / 15, 0.25, 0.75]
unit = st.one_of(st.sampled_from(_SPECIAL), st.floats(0.0, 1.0, allow_nan=False))


# ---------------------------------------------------------------------- naive references
def naive_groups(conf: list[float], out: list[float], edges: list[float]) -> list[list[tuple]]:
    """Bin by explicit interval tests: [e_j, e_j+1), last bin closed."""
    mm = len(edges) - 1
    groups: list[list[tuple]] = [[] for _ in range(mm)]
    for c, o in zip(conf, out, strict=True):
        for j in range(mm):
            lo, hi = edges[j], edges[j + 1]
            if lo <= c < hi or (j == mm - 1 and c <= hi):
                groups[j].append((c, o))
                break
    return groups


def naive_metrics(conf, out, edges) -> dict[str, float]:
    n = len(conf)
    g = [grp for grp in naive_groups(list(conf), list(out), list(edges)) if grp]
    gaps = [abs(sum(o for _, o in grp) / len(grp) - sum(c for c, _ in grp) / len(grp)) for grp in g]
    sizes = [len(grp) for grp in g]
    return {
        "ece": sum(s * d for s, d in zip(sizes, gaps, strict=True)) / n,
        "mce": max(gaps),
        "rms": math.sqrt(sum(s * d * d for s, d in zip(sizes, gaps, strict=True)) / n),
        "ace": sum(gaps) / len(gaps),
    }


def top_label_naive(p: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    conf, out = [], []
    for row, label in zip(p.tolist(), y.tolist(), strict=True):
        best = max(range(len(row)), key=lambda j: (row[j], -j))  # first index among ties
        conf.append(row[best])
        out.append(1.0 if best == label else 0.0)
    return conf, out


@st.composite
def binary_data(draw, min_n: int = 1, max_n: int = 60):
    n = draw(st.integers(min_n, max_n))
    p = np.array(draw(st.lists(unit, min_size=n, max_size=n)))
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.int64)
    return p, y


@st.composite
def multiclass_data(draw, max_n: int = 30, max_k: int = 5):
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(2, max_k))
    w = np.array(
        draw(
            st.lists(
                st.lists(
                    st.sampled_from([0.0, 1.0, 2.0, 3.0, 0.5]) | st.floats(0, 5),
                    min_size=k,
                    max_size=k,
                ),
                min_size=n,
                max_size=n,
            )
        )
    )
    w[w.sum(axis=1) == 0, 0] = 1.0  # a row of zeros becomes a one-hot row
    p = w / w.sum(axis=1, keepdims=True)
    y = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)), dtype=np.int64)
    return p, y


# ---------------------------------------------------------------------- binning
@SETTINGS
@given(st.lists(unit, min_size=1, max_size=200), st.integers(1, 40))
def test_uniform_assign_bins_equals_searchsorted(vals: list[float], n_bins: int) -> None:
    e = m.uniform_edges(n_bins)
    v = np.array(vals + list(e) + list(np.nextafter(e, -1.0)) + list(np.nextafter(e, 2.0)))
    v = np.clip(v, 0.0, 1.0)
    ref = np.minimum(np.searchsorted(e, v, side="right") - 1, n_bins - 1)
    assert np.array_equal(m.assign_bins(v, e), ref)
    assert np.array_equal(
        m.assign_bins(v.astype(np.float32), e),
        m.assign_bins(v.astype(np.float32).astype(np.float64), e),
    )
    # numpy.histogram uses the same convention
    assert np.array_equal(np.bincount(m.assign_bins(v, e), minlength=n_bins), np.histogram(v, e)[0])


def test_bin_edges_and_quantile_ties() -> None:
    np.testing.assert_array_equal(m.uniform_edges(4), [0, 0.25, 0.5, 0.75, 1])
    e = m.quantile_edges([0.2, 0.2, 0.2, 0.2, 0.9], 4)  # ties -> repeated edges
    assert e[0] == 0 and e[-1] == 1 and np.all(np.diff(e) >= 0)
    b = m.assign_bins([0.2, 0.9], e)
    assert b[0] == np.max(np.nonzero(e[:-1] <= 0.2)[0])  # tied scores share the highest bin
    with pytest.raises(ValueError, match="binning"):
        m.bin_edges([0.5], 4, "kmeans")
    with pytest.raises(ValueError, match="non-decreasing"):
        m.assign_bins([0.5], [0, 0.6, 0.4, 1])


# ---------------------------------------------------------------------- against the naive reference
@SETTINGS
@given(binary_data(), st.integers(1, 20))
def test_binary_metrics_equal_naive_reference(data, n_bins: int) -> None:
    p, y = data
    ref = naive_metrics(p.tolist(), y.astype(float).tolist(), m.uniform_edges(n_bins).tolist())
    assert m.ece(p, y, n_bins) == pytest.approx(ref["ece"], abs=1e-12)
    assert m.mce(p, y, n_bins) == pytest.approx(ref["mce"], abs=1e-12)
    assert m.rms_ce(p, y, n_bins) == pytest.approx(ref["rms"], abs=1e-12)
    assert m.ace(p, y, n_bins, binning="uniform") == pytest.approx(ref["ace"], abs=1e-12)
    q = m.quantile_edges(p, n_bins).tolist()
    refq = naive_metrics(p.tolist(), y.astype(float).tolist(), q)
    assert m.ace(p, y, n_bins) == pytest.approx(refq["ace"], abs=1e-12)
    assert m.ece(p, y, n_bins, binning="quantile") == pytest.approx(refq["ece"], abs=1e-12)


@SETTINGS
@given(multiclass_data(), st.integers(1, 20))
def test_multiclass_metrics_equal_naive_reference(data, n_bins: int) -> None:
    p, y = data
    conf, out = top_label_naive(p, y)
    edges = m.uniform_edges(n_bins).tolist()
    ref = naive_metrics(conf, out, edges)
    assert m.ece(p, y, n_bins) == pytest.approx(ref["ece"], abs=1e-12)
    assert m.conf_ece(p, y, n_bins) == pytest.approx(ref["ece"], abs=1e-12)
    assert m.mce(p, y, n_bins) == pytest.approx(ref["mce"], abs=1e-12)
    assert m.accuracy(p, y) == pytest.approx(np.mean(out), abs=0)
    k = p.shape[1]
    cw = [
        naive_metrics(p[:, j].tolist(), (y == j).astype(float).tolist(), edges)["ece"]
        for j in range(k)
    ]
    assert m.classwise_ece(p, y, n_bins) == pytest.approx(np.mean(cw), abs=1e-12)
    # one bin: ECE is |mean confidence - accuracy|
    assert m.ece(p, y, 1) == pytest.approx(abs(np.mean(conf) - np.mean(out)), abs=1e-12)


@SETTINGS
@given(multiclass_data(), st.integers(1, 15))
def test_orderings_and_ranges(data, n_bins: int) -> None:
    p, y = data
    e, mc, r = m.ece(p, y, n_bins), m.mce(p, y, n_bins), m.rms_ce(p, y, n_bins)
    assert 0.0 <= e <= r + 1e-12 <= mc + 2e-12 <= 1.0 + 2e-12  # Jensen: L1 <= L2 <= max
    assert 0.0 <= m.ace(p, y, n_bins) <= m.mce(p, y, n_bins, binning="quantile") + 1e-12
    assert 0.0 <= m.classwise_ece(p, y, n_bins) <= 1.0
    assert 0.0 <= m.brier_score(p, y) <= 2.0
    assert m.nll(p, y) >= 0.0
    assert m.debiased_ece(p, y, n_bins) <= r + 1e-12  # the correction only subtracts
    perm = np.random.default_rng(0).permutation(len(y))
    assert m.ece(p[perm], y[perm], n_bins) == pytest.approx(e, abs=1e-12)


@SETTINGS
@given(multiclass_data(), st.integers(2, 12))
def test_streaming_merge_equals_batch(data, n_bins: int) -> None:
    p, y = data
    cut = len(y) // 2
    a = m.CalibrationErrorAccumulator(n_bins, classwise=True)
    b = m.CalibrationErrorAccumulator(n_bins, classwise=True)
    if cut:
        a.update(p[:cut], y[:cut])
    b.update(p[cut:], y[cut:])
    a.merge(b)
    assert a.ece() == pytest.approx(m.ece(p, y, n_bins), abs=1e-12)
    assert a.mce() == pytest.approx(m.mce(p, y, n_bins), abs=1e-12)
    assert a.classwise_ece() == pytest.approx(m.classwise_ece(p, y, n_bins), abs=1e-12)
    assert a.reliability_table().count.sum() == len(y)


# ---------------------------------------------------------------------- edge cases
def test_confidence_exactly_zero_and_one() -> None:
    p = np.array([0.0, 1.0, 0.0, 1.0])
    assert m.ece(p, [0, 1, 0, 1]) == 0.0 and m.mce(p, [0, 1, 0, 1]) == 0.0
    assert m.ece(p, [1, 0, 1, 0]) == 1.0 and m.mce(p, [1, 0, 1, 0]) == 1.0
    assert m.brier_score(p, [0, 1, 0, 1]) == 0.0
    assert m.nll(p, [0, 1, 0, 1]) == 0.0
    # the documented floor: a zero probability costs -log(1e-12) (calibkit's one clip rule)
    assert m.nll(p, [1, 1, 1, 1]) == pytest.approx(-0.5 * math.log(1e-12))
    assert m.nll(p, [1, 1, 1, 1], eps=np.finfo(float).eps) == pytest.approx(
        -0.5 * math.log(np.finfo(float).eps)
    )
    assert m.nll(p, [1, 1, 1, 1], eps=1e-3) == pytest.approx(-0.5 * math.log(1e-3))
    tab = m.reliability_table(p, [0, 1, 0, 1], n_bins=10)
    assert tab.count[0] == 2 and tab.count[-1] == 2  # 0 in the first bin, 1 in the closed last
    one_hot = np.eye(3)[[0, 1, 2, 0]]
    assert m.ece(one_hot, [0, 1, 2, 0]) == 0.0
    assert m.ece(one_hot, [1, 1, 2, 0]) == pytest.approx(0.25)
    assert m.classwise_ece(one_hot, [0, 1, 2, 0]) == 0.0


def test_empty_bins_take_no_part() -> None:
    p = np.array([0.91, 0.93, 0.95, 0.97])  # everything in the last of 10 bins
    y = np.array([1, 1, 0, 1])
    gap = abs(0.94 - 0.75)
    for n_bins in (2, 5, 10):
        assert m.mce(p, y, n_bins) == pytest.approx(gap)
        assert m.ece(p, y, n_bins) == pytest.approx(gap)
    assert m.ace(p, y, n_bins=10, binning="uniform") == pytest.approx(gap)
    tab = m.reliability_table(p, y, 10)
    assert np.isnan(tab.confidence[:9]).all() and tab.scenario[:9] == ["empty"] * 9


def test_single_class() -> None:
    p = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    y = np.zeros(3, dtype=int)
    assert m.accuracy(p, y) == pytest.approx(2 / 3)
    assert m.ece(p, y, 10) == pytest.approx((0.2 + 0.4 + 0.7) / 3)
    # class 1 never occurs: its one-vs-rest ECE is its mean predicted probability
    cw1 = (0.2 + 0.4 + 0.7) / 3
    cw0 = (abs(1 - 0.8) + abs(1 - 0.6) + abs(1 - 0.3)) / 3
    assert m.classwise_ece(p, y, 10) == pytest.approx((cw0 + cw1) / 2)
    assert m.ece(np.array([0.2, 0.4]), [0, 0], 10) == pytest.approx(0.3)


def test_ties_go_to_the_lowest_index() -> None:
    p = np.array([[0.5, 0.5], [0.5, 0.5]])
    assert m.accuracy(p, [0, 0]) == 1.0 and m.accuracy(p, [1, 1]) == 0.0
    p3 = np.array([[0.4, 0.4, 0.2], [0.2, 0.4, 0.4]])
    assert m.accuracy(p3, [0, 1]) == 1.0
    assert m.accuracy(np.array([0.5]), [0]) == 1.0  # 1-D: predicts 1 only when p > 0.5
    assert m.conf_ece(np.array([0.5]), [0]) == pytest.approx(0.5)


def test_float32_logits_and_all_minus_inf_rows() -> None:
    z = np.array([[0.0, -np.inf, 1.0], [2.0, 0.0, -1.0]], dtype=np.float32)
    p = np.exp(z.astype(np.float64)) / np.exp(z.astype(np.float64)).sum(1, keepdims=True)
    assert m.ece(z, [2, 0], from_logits=True) == pytest.approx(m.ece(p, [2, 0]), abs=1e-6)
    assert m.nll(z, [2, 0], from_logits=True) == pytest.approx(m.nll(p, [2, 0]), abs=1e-6)
    with pytest.raises(ValueError, match="all -inf"):
        m.ece(np.array([[-np.inf, -np.inf], [0.0, 1.0]]), [0, 1], from_logits=True)


# ---------------------------------------------------------------------- bad input
ALL = [
    m.ece,
    m.mce,
    m.rms_ce,
    m.ace,
    m.conf_ece,
    m.classwise_ece,
    m.debiased_ece,
    m.brier_score,
    m.nll,
    m.accuracy,
    m.reliability_table,
]
_OK = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
_Y = np.array([0, 1, 1])


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        (np.array([[0.7, np.nan], [0.2, 0.8], [0.5, 0.5]]), _Y, "NaN"),
        (np.array([0.7, np.nan, 0.5]), _Y, "NaN"),
        (np.array([[0.7, np.inf], [0.2, 0.8], [0.5, 0.5]]), _Y, "NaN or infinite"),
        (_OK, np.array([0, 1]), "length"),
        (_OK[:2], _Y, "length"),
        (_OK, np.array([0, 1, 2]), "only 2 classes"),
        (_OK, np.array([0, -1, 1]), ">= 0"),
        (_OK, np.array([0.0, 1.5, 1.0]), "integers"),
        (_OK, np.array(["a", "b", "c"]), "integer"),
        (np.array([[0.7, 0.2], [0.2, 0.8], [0.5, 0.5]]), _Y, "sum to 1"),
        (np.array([[1.2, -0.2], [0.2, 0.8], [0.5, 0.5]]), _Y, r"\[0, 1\]"),
        (np.array([1.2, 0.3, 0.5]), _Y, r"\[0, 1\]"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "empty"),
        (np.ones((3, 1)), _Y, "K >= 2"),
        (np.ones((3, 2, 2)) / 2, _Y, "1-D"),
    ],
)
def test_bad_input_raises_value_error(fn, probs, labels, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fn(probs, labels)


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_nan_logits_raise(fn) -> None:
    with pytest.raises(ValueError, match="NaN"):
        fn(np.array([[0.0, np.nan], [1.0, 2.0]]), [0, 1], from_logits=True)
    with pytest.raises(ValueError, match="NaN"):
        fn(np.array([0.0, np.nan]), [0, 1], from_logits=True)


@pytest.mark.parametrize(
    "fn", [m.ece, m.mce, m.rms_ce, m.ace, m.classwise_ece, m.reliability_table]
)
def test_bad_bins_raise(fn) -> None:
    for bad in (0, -3, True, 2.5):
        with pytest.raises(ValueError, match="n_bins"):
            fn(_OK, _Y, bad)
    with pytest.raises(ValueError, match="binning"):
        fn(_OK, _Y, 10, binning="equal")


def test_other_argument_errors() -> None:
    with pytest.raises(ValueError, match="norm"):
        m.calibration_error(_OK, _Y, norm="l3")
    with pytest.raises(ValueError, match="eps"):
        m.nll(_OK, _Y, eps=0.0)
    with pytest.raises(ValueError, match="n_boot"):
        m.bootstrap_ci(m.ece, _OK, _Y, n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        m.bootstrap_ci(m.ece, _OK, _Y, alpha=1.5)
    with pytest.raises(ValueError, match="rows"):
        m.bootstrap_ci(m.ece, _OK, _Y[:2])
    acc = m.CalibrationErrorAccumulator(10)
    with pytest.raises(ValueError, match="update"):
        acc.ece()
    acc.update(_OK, _Y)
    with pytest.raises(ValueError, match="per-row shape"):
        acc.update(np.array([0.2, 0.7]), [0, 1])
    with pytest.raises(ValueError, match="classwise=True"):
        acc.classwise_ece()
    with pytest.raises(ValueError, match="n_bins"):
        acc.merge(m.CalibrationErrorAccumulator(5))
    with pytest.raises(ValueError, match="update"):
        m.ScoringRuleAccumulator().compute()


# ---------------------------------------------------------------------- hand-computed examples
def _top(conf: list[float], hit: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) rows whose top label is class 1 with confidence c; label 1 iff hit."""
    c = np.array(conf)
    return np.stack([1 - c, c], axis=1), np.array(hit)


def test_ace_hand_example_paper_001_eq2() -> None:
    p, y = _top([0.55, 0.6, 0.7, 0.8, 0.9], [0, 0, 1, 1, 0])
    # 2 equal-mass bins: the median 0.7 is the inner edge; [0, 0.7) = {0.55, 0.6}: mean 0.575,
    # hits 0/2 -> gap 0.575; [0.7, 1] = {0.7, 0.8, 0.9}: mean 0.8, hits 2/3 -> gap 0.1333...
    assert m.ace(p, y, n_bins=2) == pytest.approx((0.575 + (0.8 - 2 / 3)) / 2)
    # the mass-weighted version of the same bins
    assert m.ece(p, y, n_bins=2, binning="quantile") == pytest.approx(
        (2 * 0.575 + 3 * (0.8 - 2 / 3)) / 5
    )
    p2, y2 = _top([0.55, 0.65, 0.75, 0.95], [0, 1, 1, 1])
    assert m.ace(p2, y2, n_bins=2) == pytest.approx((0.1 + 0.15) / 2)


_P3 = np.array([[0.72, 0.17, 0.11], [0.34, 0.55, 0.11], [0.06, 0.11, 0.83], [0.32, 0.23, 0.45]])
_Y3 = np.array([0, 0, 2, 1])


def test_conf_ece_hand_example_paper_002() -> None:
    # top labels: 0.72 right, 0.55 wrong, 0.83 right, 0.45 wrong; each alone in a 0.1-wide bin
    assert m.conf_ece(_P3, _Y3, n_bins=10) == pytest.approx((0.28 + 0.55 + 0.17 + 0.45) / 4)


def test_classwise_ece_hand_example_paper_002() -> None:
    # class 0: p = .72 .34 .06 .32, y==0: 1 1 0 0; bins 7 | 3,3 | 0
    #   bin 3: mean .33, acc .5 -> 2 * .17; bin 7: .28; bin 0: .06  -> .68 / 4 = .17
    # class 1: p = .17 .55 .11 .23, y==1: 0 0 0 1; bins 1,1 | 5 | 2
    #   bin 1: mean .14, acc 0 -> 2 * .14; bin 5: .55; bin 2: |1 - .23| = .77 -> 1.6 / 4 = .4
    # class 2: p = .11 .11 .83 .45, y==2: 0 0 1 0; bins 1,1 | 8 | 4
    #   bin 1: 2 * .11; bin 8: .17; bin 4: .45 -> .84 / 4 = .21
    assert m.classwise_ece(_P3, _Y3, n_bins=10) == pytest.approx((0.17 + 0.4 + 0.21) / 3)
    st_ = m.classwise_bin_statistics(_P3, _Y3, 10)
    assert st_.count.shape == (3, 10) and (st_.count.sum(axis=1) == 4).all()


def test_debiased_hand_example() -> None:
    # one bin (M = 1) holding 4 items: conf mean .9, acc .25
    # (.9 - .25)^2 - .25 * .75 / (4 - 1) = .4225 - .0625 = .36
    p, y = _top([0.85, 0.9, 0.9, 0.95], [1, 0, 0, 0])
    assert m.debiased_ece(p, y, 1, squared=True) == pytest.approx(0.36)
    assert m.debiased_ece(p, y, 1) == pytest.approx(0.6)
    assert m.rms_ce(p, y, 1) == pytest.approx(0.65)
    # a singleton bin contributes nothing (Kumar et al.); a calibrated-looking one goes negative
    assert m.debiased_ece(*_top([0.9], [0]), 1, squared=True) == 0.0
    p2, y2 = _top([0.55, 0.55], [1, 0])
    assert m.debiased_ece(p2, y2, 1, squared=True) == pytest.approx(0.05**2 - 0.25)
    assert m.debiased_ece(p2, y2, 1) == 0.0


def test_reliability_table_scenarios_paper_000_table1() -> None:
    # 5 bins of width 0.2; P(y=1) view
    p = np.array([0.1, 0.15, 0.25, 0.3, 0.4375, 0.5625, 0.65, 0.7, 0.85, 0.9])
    y = np.array([1, 0, 0, 0, 0, 1, 0, 1, 1, 1])
    tab = m.reliability_table(p, y, n_bins=5)
    assert tab.view == "binary"
    assert tab.count.tolist() == [2, 2, 2, 2, 2]
    np.testing.assert_allclose(tab.confidence, [0.125, 0.275, 0.5, 0.675, 0.875])
    np.testing.assert_allclose(tab.accuracy, [0.5, 0.0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(tab.gap, [-0.375, 0.275, 0.0, 0.175, -0.125])
    assert tab.scenario == ["low/under", "low/over", "calibrated", "high/over", "high/under"]
    assert tab.low_probability.tolist() == [True, True, True, False, False]  # 0.5 is "low"
    assert tab.over_confident.tolist() == [False, True, False, True, False]
    assert tab.under_confident.tolist() == [True, False, False, False, True]
    rows = tab.rows()
    assert rows[3]["scenario"] == "high/over" and rows[3]["probability"] == "high"
    assert rows[0]["lower"] == 0.0 and rows[-1]["upper"] == 1.0
    assert tab.ece == pytest.approx((0.375 + 0.275 + 0 + 0.175 + 0.125) / 5)
    # confidence gap against the diagonal is the ECE (paper 000, section 3.2)
    assert m.confidence_gap(tab) == pytest.approx(tab.ece)
    shifted = m.reliability_table(np.clip(p + 0.01, 0, 1), y, n_bins=5)
    assert m.confidence_gap(tab, shifted) == pytest.approx(0.01)


# ---------------------------------------------------------------------- PAC bound (paper 000, 3.1)
def test_pac_bound_hand_example() -> None:
    b = m.pac_ece_bound(0.05, 0.05, conf_gap=0.02)
    assert b.epsilon_ece == pytest.approx(0.07)  # epsilon_a + gap
    assert b.delta_ece == pytest.approx(0.10)  # 2 delta_a
    # log(4 / 0.1) / (2 * 0.05^2) = 3.68888 / 0.005 = 737.78
    assert b.n_ece == pytest.approx(737.7759, abs=1e-3)
    assert m.pac_sample_size(0.07, 0.10, conf_gap=0.02) == 738
    # from n instead: epsilon_a = sqrt(3.688879 / 1476) = sqrt(0.00249924) ~ 0.0499924
    bn = m.pac_ece_bound(n=738, delta_a=0.05, conf_gap=0.02)
    assert bn.epsilon_a == pytest.approx(0.0499924, abs=1e-6)
    assert bn.n_ece == pytest.approx(738.0)


@SETTINGS
@given(
    st.floats(0.005, 0.3),
    st.floats(1e-4, 0.45),
    st.floats(0.0, 0.2),
)
def test_pac_sample_size_is_minimal(eps_a: float, delta_a: float, gap: float) -> None:
    eps_ece, delta_ece = eps_a + gap, 2 * delta_a
    assume(eps_ece - gap > 1e-3)
    n = m.pac_sample_size(eps_ece, delta_ece, gap)
    assert m.pac_delta(n, eps_ece, gap) <= delta_ece * (1 + 1e-9)
    if n > 1:
        assert m.pac_delta(n - 1, eps_ece, gap) > delta_ece
    # the accuracy half: Hoeffding's epsilon at that n is at most epsilon_a
    assert m.pac_epsilon(n, delta_a) <= eps_a * (1 + 1e-9)


def test_pac_hoeffding_holds_empirically() -> None:
    # accuracy of n Bernoulli(0.8) predictions misses 0.8 by > epsilon_a in at most delta_a of runs
    eps_a, delta_a = 0.05, 0.1
    b = m.pac_ece_bound(eps_a, delta_a)
    n = math.ceil(b.n_ece)
    rng = np.random.default_rng(0)
    acc = rng.binomial(n, 0.8, size=20000) / n
    assert np.mean(np.abs(acc - 0.8) > eps_a) <= delta_a


def test_pac_argument_errors() -> None:
    with pytest.raises(ValueError, match="exceed"):
        m.pac_sample_size(0.02, 0.1, conf_gap=0.05)
    with pytest.raises(ValueError, match="exactly one"):
        m.pac_ece_bound(0.05, 0.05, n=100)
    with pytest.raises(ValueError, match="exactly one"):
        m.pac_ece_bound()
    with pytest.raises(ValueError, match="delta_a"):
        m.pac_ece_bound(0.05, 0.6)
    with pytest.raises(ValueError, match="conf_gap"):
        m.pac_ece_bound(0.05, 0.05, conf_gap=-0.1)
    with pytest.raises(ValueError, match="n must"):
        m.pac_epsilon(0, 0.05)
    assert m.pac_delta(10, 0.01, conf_gap=0.05) == 1.0  # vacuous


def test_bootstrap_ci_degenerate_and_generator_seed() -> None:
    p = np.full(20, 0.9)
    y = np.ones(20, dtype=int)
    ci = m.bootstrap_ci(m.ece, p, y, n_boot=50, seed=np.random.default_rng(3))
    assert ci == (pytest.approx(0.1), pytest.approx(0.1), pytest.approx(0.1))
    assert ci.low == ci[-2] and ci.high == ci[-1]
