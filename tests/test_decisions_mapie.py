"""calibkit's conformal sets against MAPIE (the dev-extra oracle) on the same data and the same
calibration split.

* LAC: MAPIE's quantile is the same order statistic, so quantiles and sets must be identical.
* APS, non-randomized: MAPIE (``include_last_label=True``) calibrates on randomized scores and
  then always includes the label that crosses the quantile; calibkit's deterministic score (the
  mass ranked strictly above the label) gives a quantile no larger, so every calibkit set is a
  subset of MAPIE's: the same coverage guarantee with sets no larger.
* APS, randomized: both draw their own uniforms, so sets are compared in distribution: mean set
  size and coverage averaged over seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibkit import Scores
from calibkit.decisions import SplitConformal, evaluate_sets

mapie_classification = pytest.importorskip("mapie.classification")

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ensemble"
RECORDS = ("wideresnet-16-4-cifar-10", "lenet-5-cifar-10", "wideresnet-16-4-cifar-100")


class _Prefit:
    """A fitted 'classifier' whose features are its own class probabilities."""

    def __init__(self, k: int) -> None:
        self.classes_ = np.arange(k)
        self.k = k

    def fit(self, X, y):  # pragma: no cover - prefit
        return self

    def predict_proba(self, X):
        return np.asarray(X)

    def predict(self, X):
        return np.asarray(X).argmax(axis=1)

    def get_params(self, deep=True):
        return {"k": self.k}

    def __sklearn_is_fitted__(self) -> bool:
        return True


def _mapie_sets(p_cal, y_cal, p_test, method, alpha, last, seed=0):
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Est(ClassifierMixin, BaseEstimator, _Prefit):
        pass

    est = Est(p_cal.shape[1])
    mp = mapie_classification.SplitConformalClassifier(
        estimator=est,
        confidence_level=1 - alpha,
        conformity_score=method,
        prefit=True,
        random_state=seed,
    ).conformalize(p_cal, y_cal)
    params = None if method == "lac" else {"include_last_label": last}
    _, sets = mp.predict_set(p_test, conformity_score_params=params)
    q = mp._mapie_classifier.conformity_score_function_.quantiles_
    return sets[:, :, 0], float(np.ravel(q)[0])


def _split(data_dir: Path, name: str, seed: int = 0):
    f = data_dir / "cifar_records" / f"{name}.npz"
    if not f.is_file():
        pytest.skip(f"{f} not found")
    d = np.load(f)
    p = d["predictions"].astype(np.float64)
    p /= p.sum(axis=1, keepdims=True)
    y = d["ground_truth"].astype(np.int64)
    perm = np.random.default_rng(seed).permutation(y.size)
    c, t = perm[: y.size // 2], perm[y.size // 2 :]
    return p[c], y[c], p[t], y[t]


@pytest.mark.parametrize("record", RECORDS)
def test_lac_identical_to_mapie(data_dir, record) -> None:
    pc, yc, pt, yt = _split(data_dir, record)
    ours = SplitConformal(0.1, "lac").fit(pc, yc)
    theirs, q = _mapie_sets(pc, yc, pt, "lac", 0.1, True)
    assert float(ours.quantile_) == pytest.approx(q, abs=1e-12)
    sets = ours.predict_sets(pt)
    # MAPIE compares with a 1e-8 tolerance; a difference would need a score within 1e-8 of q
    assert np.mean(sets != theirs) <= 1e-4
    a, b = evaluate_sets(sets, yt), evaluate_sets(theirs, yt)
    assert a.coverage == pytest.approx(b.coverage, abs=1e-3) and a.coverage >= 0.89
    assert a.mean_size <= b.mean_size + 1e-3


def test_lac_identical_to_mapie_on_llm_fixture() -> None:
    s = Scores.load(FIXTURES / "subj__smollm2-fs.parquet")
    perm = np.random.default_rng(0).permutation(len(s))  # the fixture is sorted by label
    p, y = s.probs[perm], s.require_labels()[perm]
    ours = SplitConformal(0.2, "lac").fit(p[:150], y[:150])
    theirs, q = _mapie_sets(p[:150], y[:150], p[150:], "lac", 0.2, True)
    assert float(ours.quantile_) == pytest.approx(q, abs=1e-12)
    np.testing.assert_array_equal(ours.predict_sets(p[150:]), theirs)


@pytest.mark.parametrize("record", RECORDS)
def test_aps_sets_no_larger_than_mapie(data_dir, record) -> None:
    pc, yc, pt, yt = _split(data_dir, record)
    ours = SplitConformal(0.1, "aps").fit(pc, yc)
    theirs, q = _mapie_sets(pc, yc, pt, "aps", 0.1, True)
    assert float(ours.quantile_) <= q + 1e-12
    sets = ours.predict_sets(pt)
    subset = np.all(~sets | theirs, axis=1)
    assert subset.mean() >= 0.999
    a, b = evaluate_sets(sets, yt), evaluate_sets(theirs, yt)
    assert a.coverage >= 0.9 - 3 * np.sqrt(0.09 / yt.size)
    assert a.mean_size <= b.mean_size


def test_randomized_aps_matches_mapie_in_distribution(data_dir) -> None:
    pc, yc, pt, yt = _split(data_dir, "wideresnet-16-4-cifar-100")
    ours_size, ours_cov, their_size, their_cov, qs = [], [], [], [], []
    for seed in range(6):
        cp = SplitConformal(0.1, "aps", randomized=True, seed=seed).fit(pc, yc)
        r = cp.evaluate(pt, yt)
        ours_size.append(r.mean_size)
        ours_cov.append(r.coverage)
        sets, q = _mapie_sets(pc, yc, pt, "aps", 0.1, "randomized", seed=seed)
        rm = evaluate_sets(sets, yt)
        their_size.append(rm.mean_size)
        their_cov.append(rm.coverage)
        qs.append((float(cp.quantile_), q))
    assert abs(np.mean(ours_cov) - np.mean(their_cov)) < 0.01
    assert np.mean(ours_size) <= 1.03 * np.mean(their_size)
    for a, b in qs:
        assert abs(a - b) < 0.01
