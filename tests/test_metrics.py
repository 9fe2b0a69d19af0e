"""calibkit.metrics against independent references on real data.

Scores come from a scikit-learn LogisticRegression on TF-IDF features of the real datasets in
``../shared/data`` (subj: binary, trec: 6 classes, banking77: 77 classes), predicted on a held-out
half. References: netcal (ECE, MCE, ACE), torchmetrics (calibration_error l1/l2/max, debiased L2),
scikit-learn (brier_score_loss, log_loss, accuracy_score, calibration_curve). All to 1e-6 or better.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import calibkit.metrics as m
from calibkit._math import softmax

netcal_metrics = pytest.importorskip("netcal.metrics")
torch = pytest.importorskip("torch")
tmf = pytest.importorskip("torchmetrics.functional.classification")

BINS = (10, 14, 15, 20)  # the values the three papers use


# ---------------------------------------------------------------------- real-data fixtures
def _fit_scores(data_dir: Path, rel: str, label_col: str, seed: int = 0) -> dict[str, np.ndarray]:
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    df = pd.read_csv(data_dir / rel)
    y = pd.factorize(df[label_col], sort=True)[0].astype(np.int64)
    idx = np.random.default_rng(seed).permutation(len(df))
    tr, te = idx[: len(df) // 2], idx[len(df) // 2 :]
    x = TfidfVectorizer(min_df=2, max_features=5000, sublinear_tf=True).fit_transform(df["text"])
    with threadpool_limits(1):  # the test machine is small and shared
        lr = LogisticRegression(C=4.0, max_iter=100, tol=1e-3).fit(x[tr], y[tr])
        probs = lr.predict_proba(x[te])
        logits = lr.decision_function(x[te])
    return {"probs": probs, "logits": logits, "labels": y[te]}


@pytest.fixture(scope="module")
def subj(data_dir: Path) -> dict[str, np.ndarray]:
    """Binary: probs (n, 2), logits (n,) = log-odds of class 1, labels (n,)."""
    return _fit_scores(data_dir, "subj/subj.csv", "label_id")


@pytest.fixture(scope="module")
def trec(data_dir: Path) -> dict[str, np.ndarray]:
    """6-class: probs (n, 6), logits (n, 6), labels (n,)."""
    return _fit_scores(data_dir, "trec/trec.csv", "label")


def _netcal(cls_name: str, n_bins: int, p: np.ndarray, y: np.ndarray, **kw: object) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(getattr(netcal_metrics, cls_name)(bins=n_bins, **kw).measure(p, y))


# ---------------------------------------------------------------------- sanity of the fixtures
def test_fixture_scores_are_real_and_imperfect(subj, trec) -> None:
    for d, k in ((subj, 2), (trec, 6)):
        p, y = d["probs"], d["labels"]
        assert p.shape == (len(y), k)
        assert 0.6 < m.accuracy(p, y) < 0.99
        assert len(np.unique(y)) == k
        assert m.ece(p, y) > 1e-3  # something to measure


# ---------------------------------------------------------------------- netcal
@pytest.mark.parametrize("n_bins", BINS)
def test_ece_mce_match_netcal_binary(subj, n_bins: int) -> None:
    p1, y = subj["probs"][:, 1], subj["labels"]
    assert m.ece(p1, y, n_bins) == pytest.approx(_netcal("ECE", n_bins, p1, y), abs=1e-9)
    assert m.mce(p1, y, n_bins) == pytest.approx(_netcal("MCE", n_bins, p1, y), abs=1e-9)


@pytest.mark.parametrize("n_bins", BINS)
def test_ece_mce_match_netcal_multiclass(trec, n_bins: int) -> None:
    p, y = trec["probs"], trec["labels"]
    assert m.ece(p, y, n_bins) == pytest.approx(_netcal("ECE", n_bins, p, y), abs=1e-9)
    assert m.mce(p, y, n_bins) == pytest.approx(_netcal("MCE", n_bins, p, y), abs=1e-9)
    # paper 002's conf-ECE is the top-label ECE
    assert m.conf_ece(p, y, n_bins) == pytest.approx(_netcal("ECE", n_bins, p, y), abs=1e-9)


@pytest.mark.parametrize("n_bins", (10, 15))
def test_equal_mass_ece_and_ace_match_netcal(subj, trec, n_bins: int) -> None:
    for p, y in ((subj["probs"][:, 1], subj["labels"]), (trec["probs"], trec["labels"])):
        ref_ece = _netcal("ECE", n_bins, p, y, equal_intervals=False)
        ref_ace = _netcal("ACE", n_bins, p, y, equal_intervals=False)
        assert m.ece(p, y, n_bins, binning="quantile") == pytest.approx(ref_ece, abs=1e-9)
        assert m.ace(p, y, n_bins) == pytest.approx(ref_ace, abs=1e-9)
        # netcal's default ACE: equal-width bins, unweighted mean over non-empty bins
        ref_ace_u = _netcal("ACE", n_bins, p, y)
        assert m.ace(p, y, n_bins, binning="uniform") == pytest.approx(ref_ace_u, abs=1e-9)


def test_classwise_ece_is_mean_of_netcal_one_vs_rest(trec) -> None:
    p, y = trec["probs"], trec["labels"]
    for n_bins in (10, 15):
        ref = np.mean([_netcal("ECE", n_bins, p[:, k], (y == k).astype(int)) for k in range(6)])
        assert m.classwise_ece(p, y, n_bins) == pytest.approx(ref, abs=1e-9)
        refq = np.mean(
            [
                _netcal("ECE", n_bins, p[:, k], (y == k).astype(int), equal_intervals=False)
                for k in range(6)
            ]
        )
        assert m.classwise_ece(p, y, n_bins, binning="quantile") == pytest.approx(refq, abs=1e-9)


# ---------------------------------------------------------------------- torchmetrics
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", (10, 15))
def test_calibration_error_matches_torchmetrics_binary(subj, norm: str, n_bins: int) -> None:
    p1, y = np.ascontiguousarray(subj["probs"][:, 1]), subj["labels"]
    ref = tmf.binary_calibration_error(
        torch.from_numpy(p1), torch.from_numpy(y), n_bins=n_bins, norm=norm
    ).item()
    assert m.calibration_error(p1, y, n_bins, norm=norm) == pytest.approx(ref, abs=1e-9)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", (10, 15))
def test_calibration_error_matches_torchmetrics_multiclass(trec, norm: str, n_bins: int) -> None:
    p, y = trec["probs"], trec["labels"]
    ref = tmf.multiclass_calibration_error(
        torch.from_numpy(p), torch.from_numpy(y), num_classes=6, n_bins=n_bins, norm=norm
    ).item()
    # torchmetrics casts the top-label confidences to float32 and sums in float32
    assert m.calibration_error(p, y, n_bins, norm=norm) == pytest.approx(ref, abs=1e-6)
    p32 = p.astype(np.float32)
    assert m.calibration_error(p32, y, n_bins, norm=norm) == pytest.approx(ref, abs=1e-6)
    # top-label of a binary model = multiclass with K = 2. Here the public function's float32
    # sums are off by ~1e-6 (2926 of 2976 items share one bin), so run torchmetrics' own update
    # (top-label confidence, cast to float32) and its binning/norm code in float64.
    ce_mod = pytest.importorskip("torchmetrics.functional.classification.calibration_error")
    pb, yb = subj_like(p)
    conf, hit = ce_mod._multiclass_calibration_error_update(
        torch.from_numpy(pb), torch.from_numpy(yb)
    )
    refb = ce_mod._ce_compute(conf.double(), hit.double(), n_bins, norm=norm).item()
    assert m.calibration_error(pb.astype(np.float32), yb, n_bins, norm=norm) == pytest.approx(
        refb, abs=1e-12
    )


def subj_like(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A binary (n, 2) problem from a multiclass one: class 0 vs the rest."""
    q = np.stack([p[:, 0], 1.0 - p[:, 0]], axis=1)
    rng = np.random.default_rng(5)
    return q, (rng.random(len(p)) > q[:, 0]).astype(np.int64)


def test_debiased_matches_torchmetrics_kumar_estimator(subj, trec) -> None:
    ce_mod = pytest.importorskip("torchmetrics.functional.classification.calibration_error")
    for p, y in ((subj["probs"][:, 1], subj["labels"]), (trec["probs"], trec["labels"])):
        conf, out = m.binned_outcomes(p, y)
        st = m.binned_statistics(p, y, 15)
        assert st.count[st.count > 0].min() >= 2  # torchmetrics keeps singleton bins' bias term
        ref = ce_mod._ce_compute(
            torch.from_numpy(np.ascontiguousarray(conf, dtype=np.float64)),
            torch.from_numpy(out.astype(np.float64)),
            15,
            norm="l2",
            debias=True,
        ).item()
        assert m.debiased_ece(p, y, 15) == pytest.approx(ref, abs=1e-9)
        assert m.debiased_ece(p, y, 15, squared=True) < m.rms_ce(p, y, 15) ** 2


# ---------------------------------------------------------------------- scikit-learn
def test_brier_nll_accuracy_match_sklearn(subj, trec) -> None:
    from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

    p1, yb = subj["probs"][:, 1], subj["labels"]
    assert m.brier_score(p1, yb) == pytest.approx(brier_score_loss(yb, p1), abs=1e-12)
    assert m.nll(p1, yb) == pytest.approx(log_loss(yb, p1), abs=1e-12)
    assert m.accuracy(p1, yb) == pytest.approx(accuracy_score(yb, p1 > 0.5), abs=0)
    p, y = trec["probs"], trec["labels"]
    ref_brier = brier_score_loss(y, p, labels=list(range(6)), scale_by_half=False)
    assert m.brier_score(p, y) == pytest.approx(ref_brier, abs=1e-12)
    assert m.nll(p, y) == pytest.approx(log_loss(y, p, labels=list(range(6))), abs=1e-12)
    assert m.accuracy(p, y) == pytest.approx(accuracy_score(y, p.argmax(1)), abs=0)
    # (n, 2) Brier is the original two-class sum: twice the 1-D value
    assert m.brier_score(subj["probs"], yb) == pytest.approx(2 * brier_score_loss(yb, p1))


def test_reliability_table_matches_sklearn_calibration_curve(subj) -> None:
    from sklearn.calibration import calibration_curve

    p1, y = subj["probs"][:, 1], subj["labels"]
    for n_bins in (10, 15):
        tab = m.reliability_table(p1, y, n_bins)
        prob_true, prob_pred = calibration_curve(y, p1, n_bins=n_bins, strategy="uniform")
        full = tab.count > 0
        np.testing.assert_allclose(tab.accuracy[full], prob_true, atol=1e-12)
        np.testing.assert_allclose(tab.confidence[full], prob_pred, atol=1e-12)
        assert tab.n == len(y)
        assert np.histogram(p1, bins=tab.edges)[0].tolist() == tab.count.tolist()
        assert tab.ece == pytest.approx(m.ece(p1, y, n_bins), abs=1e-12)
        frame = tab.to_frame()
        assert list(frame["count"]) == tab.count.tolist()
        assert set(frame["scenario"]) <= {
            "low/over",
            "low/under",
            "high/over",
            "high/under",
            "empty",
            "calibrated",
        }


# ---------------------------------------------------------------------- logits, dtypes, streaming
def test_from_logits_equals_softmax_and_sigmoid(subj, trec) -> None:
    z, y = trec["logits"], trec["labels"]
    p = softmax(z, axis=1)
    for fn in (m.ece, m.mce, m.rms_ce, m.ace, m.conf_ece, m.classwise_ece, m.debiased_ece):
        assert fn(z, y, from_logits=True) == pytest.approx(fn(p, y), abs=1e-9), fn.__name__
    for fn in (m.brier_score, m.nll, m.accuracy):
        assert fn(z, y, from_logits=True) == pytest.approx(fn(p, y), abs=1e-9), fn.__name__
    zb, yb = subj["logits"], subj["labels"]
    pb = 1.0 / (1.0 + np.exp(-zb))
    for fn in (m.ece, m.mce, m.conf_ece, m.brier_score, m.nll, m.accuracy):
        assert fn(zb, yb, from_logits=True) == pytest.approx(fn(pb, yb), abs=1e-9), fn.__name__
    # the scikit-learn model's own probabilities are the sigmoid of its decision function
    np.testing.assert_allclose(pb, subj["probs"][:, 1], atol=1e-12)


def test_float32_input_agrees_with_float64(trec) -> None:
    p, y = trec["probs"], trec["labels"]
    p32 = p.astype(np.float32)
    for fn in (m.ece, m.mce, m.rms_ce, m.ace, m.classwise_ece, m.brier_score, m.nll):
        assert fn(p32, y) == pytest.approx(fn(p, y), abs=1e-5), fn.__name__
    conf, _ = m.binned_outcomes(p32, y)
    assert conf.dtype == np.float32  # no silent upcast of the (n,) confidences


def test_streaming_accumulators_equal_batch_functions(trec) -> None:
    p, y = trec["probs"], trec["labels"]
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(y)), size=7, replace=False))
    acc = m.CalibrationErrorAccumulator(15, classwise=True)
    other = m.CalibrationErrorAccumulator(15, classwise=True)
    rules = m.ScoringRuleAccumulator()
    for i, (pb, yb) in enumerate(zip(np.split(p, cuts), np.split(y, cuts), strict=True)):
        (acc if i % 2 else other).update(pb, yb)
        rules.update(pb, yb)
    acc.merge(other)
    assert acc.n == len(y)
    assert acc.ece() == pytest.approx(m.ece(p, y, 15), abs=1e-12)
    assert acc.mce() == pytest.approx(m.mce(p, y, 15), abs=1e-12)
    assert acc.rms_ce() == pytest.approx(m.rms_ce(p, y, 15), abs=1e-12)
    assert acc.debiased_ece() == pytest.approx(m.debiased_ece(p, y, 15), abs=1e-12)
    assert acc.classwise_ece() == pytest.approx(m.classwise_ece(p, y, 15), abs=1e-12)
    tab, ref = acc.reliability_table(), m.reliability_table(p, y, 15)
    assert tab.count.tolist() == ref.count.tolist()
    np.testing.assert_allclose(tab.confidence, ref.confidence, atol=1e-12)
    out = rules.compute()
    assert out["brier"] == pytest.approx(m.brier_score(p, y), abs=1e-12)
    assert out["nll"] == pytest.approx(m.nll(p, y), abs=1e-12)
    assert out["accuracy"] == pytest.approx(m.accuracy(p, y), abs=1e-12)


# ---------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_of_accuracy_matches_normal_approximation(subj) -> None:
    p1, y = subj["probs"][:, 1], subj["labels"]
    ci = m.bootstrap_ci(m.accuracy, p1, y, n_boot=400, seed=1)
    a, n = m.accuracy(p1, y), len(y)
    half = 1.959964 * np.sqrt(a * (1 - a) / n)  # Wald interval, accurate at n = 5000
    assert ci.estimate == a
    assert ci.low < a < ci.high
    assert ci.low == pytest.approx(a - half, abs=0.25 * half)
    assert ci.high == pytest.approx(a + half, abs=0.25 * half)
    again = m.bootstrap_ci(m.accuracy, p1, y, n_boot=400, seed=1)
    assert again == ci  # seeded
    ece_ci = m.bootstrap_ci(m.ece, subj["probs"], y, n_boot=100, seed=0, n_bins=10)
    assert ece_ci.low <= ece_ci.high
    assert ece_ci.estimate == m.ece(subj["probs"], y, 10)


# ---------------------------------------------------------------------- larger K
@pytest.mark.slow
def test_banking77_against_references(data_dir: Path) -> None:
    d = _fit_scores(data_dir, "banking77/banking77.csv", "label_id")
    p, y, z = d["probs"], d["labels"], d["logits"]
    for n_bins in (10, 15):
        assert m.ece(p, y, n_bins) == pytest.approx(_netcal("ECE", n_bins, p, y), abs=1e-9)
        assert m.mce(p, y, n_bins) == pytest.approx(_netcal("MCE", n_bins, p, y), abs=1e-9)
        ref = tmf.multiclass_calibration_error(
            torch.from_numpy(p), torch.from_numpy(y), num_classes=77, n_bins=n_bins
        ).item()
        assert m.ece(p, y, n_bins) == pytest.approx(ref, abs=1e-6)
    assert m.ece(z, y, from_logits=True) == pytest.approx(m.ece(p, y), abs=1e-9)
