"""calibkit.sklearn.CalibratedClassifier: scikit-learn's estimator checks, equality with
CalibratedClassifierCV on the same folds, Pipeline and GridSearchCV."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import check_estimator

from calibkit.calibrators import PlattScaling, TemperatureScaling
from calibkit.sklearn import CalibratedClassifier


def _data(k: int, n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=n, n_features=8, n_informative=5, n_classes=k, n_clusters_per_class=1,
        random_state=seed,
    )  # fmt: skip
    return X, y


@pytest.mark.parametrize(
    "method", ["temperature", pytest.param("sigmoid", marks=pytest.mark.slow), "isotonic"]
)
def test_sklearn_estimator_checks(method: str) -> None:
    """Every applicable check passes; check_array_api_input is skipped by scikit-learn itself
    unless SCIPY_ARRAY_API=1 (the calibrators are numpy-only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checks' random data makes some fits degenerate
        results = check_estimator(
            CalibratedClassifier(LogisticRegression(), method=method, cv=3), on_fail=None
        )
    failed = [
        (r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"
    ]
    assert failed == []
    assert sum(r["status"] == "passed" for r in results) >= 60


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("ensemble", [True, False])
@pytest.mark.parametrize(
    ("estimator", "method"),
    [
        (LogisticRegression(C=0.5), "sigmoid"),  # decision_function: the same scores as sklearn
        (LinearSVC(), "sigmoid"),
        (GaussianNB(), "isotonic"),  # predict_proba only: the same probabilities as sklearn
    ],
)
def test_matches_calibrated_classifier_cv(estimator, method: str, k: int, ensemble: bool) -> None:
    X, y = _data(k)
    ours = CalibratedClassifier(estimator, method=method, cv=5, ensemble=ensemble)
    ref = CalibratedClassifierCV(estimator, method=method, cv=5, ensemble=ensemble)
    ours.fit(X[:400], y[:400])
    ref.fit(X[:400], y[:400])
    np.testing.assert_allclose(ours.predict_proba(X[400:]), ref.predict_proba(X[400:]), atol=1e-6)
    np.testing.assert_array_equal(ours.classes_, ref.classes_)
    assert len(ours.calibrated_classifiers_) == (5 if ensemble else 1)


def test_platt_without_prior_correction_differs_from_sklearn() -> None:
    """The configuration matters: plain maximum-likelihood Platt is not sklearn's sigmoid."""
    X, y = _data(2, n=120)
    a = CalibratedClassifier(LogisticRegression(), method="platt").fit(X[:80], y[:80])
    b = CalibratedClassifierCV(LogisticRegression(), method="sigmoid").fit(X[:80], y[:80])
    assert np.abs(a.predict_proba(X[80:]) - b.predict_proba(X[80:])).max() > 1e-4
    c = CalibratedClassifier(LogisticRegression(), method=PlattScaling(prior_correction=True))
    np.testing.assert_allclose(
        c.fit(X[:80], y[:80]).predict_proba(X[80:]), b.predict_proba(X[80:]), atol=1e-6
    )


def test_pipeline_and_grid_search() -> None:
    X, y = _data(3, n=450, seed=1)
    pipe = make_pipeline(StandardScaler(), CalibratedClassifier(LogisticRegression(), cv=3))
    grid = GridSearchCV(
        pipe,
        {
            "calibratedclassifier__method": ["temperature", "sigmoid", "isotonic"],
            "calibratedclassifier__estimator__C": [0.01, 1.0],
        },
        scoring="neg_log_loss",
        cv=3,
    ).fit(X[:300], y[:300])
    assert len(grid.cv_results_["params"]) == 6
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    best = grid.best_estimator_
    p = best.predict_proba(X[300:])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert best.score(X[300:], y[300:]) > 0.5  # a real signal: far above 1/3
    # the refitted best pipeline is the same as fitting its parameters directly
    direct = make_pipeline(StandardScaler(), CalibratedClassifier(LogisticRegression(), cv=3))
    direct.set_params(**grid.best_params_).fit(X[:300], y[:300])
    np.testing.assert_allclose(direct.predict_proba(X[300:]), p, atol=1e-12)


def test_string_labels_weights_and_inputs() -> None:
    X, y = _data(3, n=300, seed=2)
    names = np.array(["cat", "dog", "emu"])[y]
    clf = CalibratedClassifier(LogisticRegression(), method="vector", cv=3).fit(X, names)
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    assert set(clf.predict(X[:20])) <= set(clf.classes_)
    assert clf.n_features_in_ == 8
    w = np.where(y == 0, 3.0, 1.0)
    weighted = CalibratedClassifier(LogisticRegression(), cv=3).fit(X, names, sample_weight=w)
    plain = CalibratedClassifier(LogisticRegression(), cv=3).fit(X, names)
    assert np.abs(weighted.predict_proba(X) - plain.predict_proba(X)).max() > 1e-3
    # temperature on decision_function logits: the calibrator saw the logistic regression's logits
    t = CalibratedClassifier(LogisticRegression(), cv=3).fit(X, y)
    _, cal = t.calibrated_classifiers_[0]
    assert isinstance(cal, TemperatureScaling)
    np.testing.assert_allclose(
        t.predict_proba(X[:5]),
        np.mean(
            [c.predict_proba(est.decision_function(X[:5])) for est, c in t.calibrated_classifiers_],
            axis=0,
        ),
    )


def test_errors() -> None:
    X, y = _data(2, n=60)
    with pytest.raises(ValueError, match="unknown calibrator"):
        CalibratedClassifier(method="nope").fit(X, y)
    with pytest.raises(ValueError, match="at least 5 examples"):
        CalibratedClassifier(cv=5).fit(X[:12], np.r_[np.zeros(8), np.ones(4)].astype(int))
    yy = np.repeat([0, 1, 2], 20)
    with pytest.raises(ValueError, match=r"training fold .* lacks some classes"):
        CalibratedClassifier(cv=KFold(3)).fit(X, yy)  # unshuffled: each fold misses a class

    class NoScores:
        def fit(self, X, y):
            self.classes_ = np.unique(y)
            return self

        def get_params(self, deep: bool = True) -> dict:
            return {}

    with pytest.raises(ValueError, match="neither predict_proba nor a decision_function"):
        CalibratedClassifier(NoScores(), cv=3).fit(X, y)


def test_auto_method() -> None:
    from calibkit.calibrators.registry import CALIBRATORS

    X, y = _data(3, n=300)
    clf = CalibratedClassifier(LogisticRegression(), method="auto", cv=3)
    if "auto" in CALIBRATORS:
        p = clf.fit(X, y).predict_proba(X)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    else:
        with pytest.raises(ValueError, match=r"calibkit\.calibrators\.select"):
            clf.fit(X, y)
