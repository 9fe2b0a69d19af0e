"""Tests of calibkit.calibrators against independent references (scikit-learn, scipy, hand math)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import approx_fprime, check_grad, minimize
from scipy.special import log_softmax as sp_log_softmax
from scipy.special import logsumexp
from scipy.special import softmax as sp_softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from calibkit import Scores, to_probs
from calibkit.calibrators import (
    CALIBRATORS,
    BetaCalibration,
    Calibrator,
    DirichletCalibration,
    HistogramBinning,
    IsotonicCalibrator,
    MatrixScaling,
    PlattScaling,
    TemperatureScaling,
    VectorScaling,
    available_calibrators,
    load,
    make_calibrator,
)
from calibkit.calibrators._affine import penalty
from calibkit.calibrators._optim import affine_loss_grad

# ---------------------------------------------------------------------------- real-data fixtures


def _text_scores(data_dir: Path, name: str) -> dict[str, Any]:
    """Decision values of a TF-IDF + LogisticRegression on half of a real dataset; the other half
    is split into a calibration and a test part."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    df = pd.read_csv(data_dir / name / f"{name}.csv")
    classes = sorted(df["label"].unique())
    y = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    idx = np.random.default_rng(0).permutation(len(df))
    half = len(df) // 2
    tr, rest = idx[:half], idx[half:]
    cal, te = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    vec = TfidfVectorizer(min_df=2, sublinear_tf=True)
    Xtr = vec.fit_transform(df["text"].iloc[tr])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = LogisticRegression(C=10.0, solver="newton-cg", max_iter=100).fit(Xtr, y[tr])

    def dec(ii: np.ndarray) -> np.ndarray:
        return np.asarray(lr.decision_function(vec.transform(df["text"].iloc[ii])), dtype=float)

    return {"zc": dec(cal), "yc": y[cal], "zt": dec(te), "yt": y[te], "K": len(classes)}


@pytest.fixture(scope="module")
def subj(data_dir: Path) -> dict[str, Any]:
    return _text_scores(data_dir, "subj")


@pytest.fixture(scope="module")
def trec(data_dir: Path) -> dict[str, Any]:
    return _text_scores(data_dir, "trec")


@pytest.fixture(params=["subj", "trec"])
def real(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------------------- sklearn stand-ins
class _LogitsModel(ClassifierMixin, BaseEstimator):
    """'Classifier' whose decision_function is its input: wraps precomputed logits for
    CalibratedClassifierCV. A single column means binary decision values."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> _LogitsModel:
        self.classes_ = np.unique(y)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        return X[:, 0] if X.shape[1] == 1 else X

    def predict(self, X: np.ndarray) -> np.ndarray:
        d = self.decision_function(X)
        return (d > 0).astype(int) if d.ndim == 1 else d.argmax(1)


class _ProbsModel(ClassifierMixin, BaseEstimator):
    """'Classifier' whose predict_proba is its input (one column = P(y=1))."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> _ProbsModel:
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        return np.hstack([1 - X, X]) if X.shape[1] == 1 else X

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(1)


def _sklearn_calibrated(method: str, model: BaseEstimator, Xc, yc, Xt) -> tuple[Any, np.ndarray]:
    X2c = Xc[:, None] if Xc.ndim == 1 else Xc
    X2t = Xt[:, None] if Xt.ndim == 1 else Xt
    cal = CalibratedClassifierCV(FrozenEstimator(model.fit(X2c, yc)), method=method)
    cal.fit(X2c, yc)
    return cal, cal.predict_proba(X2t)


def _nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-300, None))))


# ---------------------------------------------------------------------------- sklearn references
def test_temperature_matches_sklearn(real: dict[str, Any]) -> None:
    zc, yc, zt = real["zc"], real["yc"], real["zt"]
    cal, p_ref = _sklearn_calibrated("temperature", _LogitsModel(), zc, yc, zt)
    beta = float(cal.calibrated_classifiers_[0].calibrators[0].beta_)
    ts = TemperatureScaling().fit(zc, yc)
    # sklearn turns binary decision values x into logits (-x, x): softmax(beta*(-x,x)) = sigmoid(2 beta x)
    t_ref = 1.0 / (2.0 * beta) if zc.ndim == 1 else 1.0 / beta
    assert ts.temperature_ == pytest.approx(t_ref, rel=1e-6)
    assert ts.temperature_ != pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(ts.predict_proba(zt), p_ref, atol=1e-6)


def test_temperature_binary_two_column_equals_one_dimensional(subj: dict[str, Any]) -> None:
    # (n, 2) logits whose difference is z behave as the binary logit z (checked against sklearn above)
    z2c = np.stack([-subj["zc"] / 2, subj["zc"] / 2], axis=1)
    z2t = np.stack([-subj["zt"] / 2, subj["zt"] / 2], axis=1)
    ts2 = TemperatureScaling().fit(z2c, subj["yc"])
    ts1 = TemperatureScaling().fit(subj["zc"], subj["yc"])
    assert ts2.temperature_ == pytest.approx(ts1.temperature_, rel=1e-9)
    np.testing.assert_allclose(ts2.predict_proba(z2t), ts1.predict_proba(subj["zt"]), atol=1e-12)


def test_platt_prior_correction_matches_sklearn_sigmoid(real: dict[str, Any]) -> None:
    zc, yc, zt = real["zc"], real["yc"], real["zt"]
    cal, p_ref = _sklearn_calibrated("sigmoid", _LogitsModel(), zc, yc, zt)
    platt = PlattScaling(prior_correction=True).fit(zc, yc)
    np.testing.assert_allclose(platt.predict_proba(zt), p_ref, atol=1e-6)
    # sklearn's sigmoid is expit(-(a x + b)): our (a, b) = -(its a, b)
    ref_a = [-c.a_ for c in cal.calibrated_classifiers_[0].calibrators]
    ref_b = [-c.b_ for c in cal.calibrated_classifiers_[0].calibrators]
    np.testing.assert_allclose(platt.coef_, ref_a, rtol=1e-5)
    np.testing.assert_allclose(platt.intercept_, ref_b, rtol=1e-5, atol=1e-7)


def test_platt_default_is_plain_logistic_regression(subj: dict[str, Any]) -> None:
    zc, yc = subj["zc"], subj["yc"]
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(zc[:, None], yc)
    platt = PlattScaling().fit(zc, yc)
    assert platt.coef_[0] == pytest.approx(lr.coef_[0, 0], rel=1e-6)
    assert platt.intercept_[0] == pytest.approx(lr.intercept_[0], rel=1e-6, abs=1e-8)
    np.testing.assert_allclose(
        platt.predict_proba(subj["zt"]), lr.predict_proba(subj["zt"][:, None]), atol=1e-7
    )
    # (n, 2) logits are reduced to z1 - z0
    z2 = np.stack([np.zeros_like(zc), zc], axis=1)
    np.testing.assert_allclose(PlattScaling().fit(z2, yc).coef_, platt.coef_, rtol=1e-9)


def test_isotonic_matches_sklearn(real: dict[str, Any]) -> None:
    pc, pt = to_probs(real["zc"]), to_probs(real["zt"])
    _, p_ref = _sklearn_calibrated("isotonic", _ProbsModel(), pc, real["yc"], pt)
    iso = IsotonicCalibrator().fit(pc, real["yc"])
    np.testing.assert_allclose(iso.predict_proba(pt), p_ref, atol=1e-12)
    np.testing.assert_allclose(iso.predict_proba(pt).sum(axis=1), 1.0, atol=1e-12)


# ---------------------------------------------------------------------------- temperature by hand
def _ts_nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    s = z / t
    return float(np.mean(logsumexp(s, axis=1) - s[np.arange(len(y)), y]))


def test_temperature_gradient_zero_at_optimum(trec: dict[str, Any]) -> None:
    z, y = trec["zc"], trec["yc"]
    ts = TemperatureScaling().fit(z, y)
    t = ts.temperature_
    h = 1e-5 * t
    deriv = (_ts_nll(z, y, t + h) - _ts_nll(z, y, t - h)) / (2 * h)
    assert abs(deriv) < 1e-7
    assert _ts_nll(z, y, t) < min(_ts_nll(z, y, t * 1.01), _ts_nll(z, y, t / 1.01))
    # closed-form first-order condition: mean(E_p[z] - z_y) = 0 at beta = 1/T
    p = sp_softmax(z / t, axis=1)
    assert abs(np.mean((p * z).sum(1) - z[np.arange(len(y)), y])) < 1e-8
    assert abs(t - 1.0) > 1e-3  # moved away from its start
    assert TemperatureScaling(solver="lbfgs").fit(z, y).temperature_ == pytest.approx(t, rel=1e-7)


def test_temperature_large_input_float32_warm_start_is_exact() -> None:
    # n*K > 2**20 takes the float32 warm start; the result must still be the float64 optimum
    rng = np.random.default_rng(1)
    n, k = 20_000, 64
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 2.0
    z *= 3.0
    t = TemperatureScaling().fit(z, y).temperature_
    h = 1e-5 * t
    deriv = (_ts_nll(z, y, t + h) - _ts_nll(z, y, t - h)) / (2 * h)
    assert abs(deriv) < 1e-7
    assert TemperatureScaling(solver="lbfgs").fit(z, y).temperature_ == pytest.approx(t, rel=1e-7)


def test_temperature_weights_equal_repeated_rows(trec: dict[str, Any]) -> None:
    z, y = trec["zc"][:300], trec["yc"][:300]
    w = np.random.default_rng(0).integers(0, 4, len(y))
    rep = np.repeat(np.arange(len(y)), w)
    for make in (TemperatureScaling, PlattScaling, IsotonicCalibrator, HistogramBinning):
        cal = make()
        x = z if cal.input_kind == "logits" else to_probs(z)
        a = make().fit(x, y, sample_weight=w).predict_proba(x)
        b = make().fit(x[rep], y[rep]).predict_proba(x)
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=make.__name__)


# ---------------------------------------------------------------------------- vector / matrix / Dirichlet
def _affine_objective(
    theta: np.ndarray, feats: np.ndarray, y: np.ndarray, shape: str, reg: str, lam: float, mu: float
) -> float:
    """The penalised NLL written independently of calibkit's kernels."""
    k = feats.shape[1]
    if shape == "vector":
        w, b = theta[:k], theta[k:]
        s = feats * w + b
        off = 0.0
        dev = np.sum((w - 1) ** 2) / k if reg == "l2" else 0.0
    else:
        W, b = theta[: k * k].reshape(k, k), theta[k * k :]
        s = feats @ W.T + b
        off = np.sum((W - np.diag(np.diag(W))) ** 2) / (k * (k - 1)) if reg == "odir" else 0.0
        dev = np.sum((W - np.eye(k)) ** 2) / k**2 if reg == "l2" else 0.0
    nll = -np.mean(sp_log_softmax(s, axis=1)[np.arange(len(y)), y])
    return float(nll + lam * (off + dev) + mu * np.sum(b**2) / k)


@pytest.mark.parametrize(
    ("make", "shape", "reg", "lam", "mu", "refit"),
    [
        (lambda: VectorScaling(), "vector", "l2", 0.0, 0.0, True),
        (lambda: VectorScaling(reg_lambda=0.1, reg_mu=0.05), "vector", "l2", 0.1, 0.05, True),
        (
            lambda: MatrixScaling(reg_lambda=1e-2, reg_mu=1e-2),
            *("matrix", "odir", 1e-2, 1e-2, True),
        ),
        (
            lambda: MatrixScaling(regularization="l2", reg_lambda=0.5, reg_mu=0.1),
            *("matrix", "l2", 0.5, 0.1, False),
        ),
        (
            lambda: DirichletCalibration(reg_lambda=0.1, reg_mu=0.1),
            "matrix",
            "odir",
            0.1,
            0.1,
            False,
        ),
    ],
)
def test_affine_scaling_matches_numerical_gradient_fit(
    trec: dict[str, Any], make: Any, shape: str, reg: str, lam: float, mu: float, refit: bool
) -> None:
    cal = make()
    z, y = trec["zc"][:300], trec["yc"][:300]
    x = z if cal.input_kind == "logits" else to_probs(z)
    feats = x if cal.input_kind == "logits" else np.log(np.clip(x, 1e-12, 1))
    k = feats.shape[1]
    cal.fit(x, y)
    theta = np.concatenate([cal.coef_.ravel(), cal.intercept_])
    obj = lambda th: _affine_objective(th, feats, y, shape, reg, lam, mu)  # noqa: E731
    # 1) calibration lowers the training NLL below the uncalibrated one
    p_fit = cal.predict_proba(x)
    assert _nll(p_fit, y) < _nll(sp_softmax(feats, axis=1), y)
    # 2) the fitted point is a stationary point of the independently written objective
    assert np.max(np.abs(approx_fprime(theta, obj, 1e-7))) < 1e-5
    if not refit:
        return
    # 3) a fit with finite-difference gradients (no analytic ones) lands on the same probabilities
    eye = np.ones(k) if shape == "vector" else np.eye(k).ravel()
    ref = minimize(obj, np.concatenate([eye, np.zeros(k)]), method="BFGS", options={"gtol": 1e-9})
    if shape == "vector":
        s_ref = feats * ref.x[:k] + ref.x[k:]
    else:
        s_ref = feats @ ref.x[: k * k].reshape(k, k).T + ref.x[k * k :]
    np.testing.assert_allclose(p_fit, sp_softmax(s_ref, axis=1), atol=1e-5)
    assert obj(theta) <= ref.fun + 1e-9


def test_affine_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(3)
    n, k = 200, 4
    z = rng.normal(size=(n, k)) * 2
    y = rng.integers(0, k, n)
    w = rng.uniform(0.1, 2.0, n)
    w /= w.sum()
    for nc, reg in ((k, "l2"), (k * k, "odir"), (k * k, "l2")):

        def f(th: np.ndarray, nc: int = nc, reg: str = reg) -> float:
            coef = th[:nc].reshape((k,) if nc == k else (k, k))
            loss = affine_loss_grad(z, y, w, coef, th[nc:])[0]
            return loss + penalty(coef, th[nc:], reg, 0.3, 0.2)[0]  # type: ignore[arg-type]

        def g(th: np.ndarray, nc: int = nc, reg: str = reg) -> np.ndarray:
            coef = th[:nc].reshape((k,) if nc == k else (k, k))
            _, gc, gb = affine_loss_grad(z, y, w, coef, th[nc:])
            _, rc, rb = penalty(coef, th[nc:], reg, 0.3, 0.2)  # type: ignore[arg-type]
            return np.concatenate([(gc + rc).ravel(), gb + rb])

        th0 = rng.normal(size=nc + k)
        assert check_grad(f, g, th0) < 1e-5


def test_dirichlet_binary_is_unconstrained_beta(subj: dict[str, Any]) -> None:
    p = to_probs(subj["zc"])
    d = DirichletCalibration(regularization="none").fit(p, subj["yc"])
    feats = np.stack([np.log(np.clip(p, 1e-12, 1)), np.log(np.clip(1 - p, 1e-12, 1))], axis=1)
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(feats, subj["yc"])
    np.testing.assert_allclose(d.predict_proba(p), lr.predict_proba(feats), atol=1e-6)


# ---------------------------------------------------------------------------- beta / histogram
def test_beta_matches_logistic_regression_when_unconstrained(subj: dict[str, Any]) -> None:
    p = to_probs(subj["zc"])
    feats = np.stack([np.log(p), -np.log1p(-p)], axis=1)
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(feats, subj["yc"])
    assert np.all(lr.coef_ > 0)  # the constraint a, b >= 0 is inactive here
    beta = BetaCalibration().fit(p, subj["yc"])
    np.testing.assert_allclose([beta.a_[0], beta.b_[0]], lr.coef_[0], rtol=1e-5)
    assert beta.c_[0] == pytest.approx(lr.intercept_[0], rel=1e-5, abs=1e-7)
    pt = to_probs(subj["zt"])
    ft = np.stack([np.log(pt), -np.log1p(-pt)], axis=1)
    np.testing.assert_allclose(beta.predict_proba(pt), lr.predict_proba(ft), atol=1e-7)


def test_beta_constraint_active() -> None:
    # P(y=1 | p) decreasing in p: the unconstrained fit has a < 0, the constrained one a = b = 0
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, 2000)
    y = (rng.uniform(size=p.size) < 1 - p).astype(int)
    beta = BetaCalibration().fit(p, y)
    assert beta.a_[0] == 0.0 and beta.b_[0] == 0.0
    # the only free parameter left is c: the base rate
    assert 1 / (1 + np.exp(-beta.c_[0])) == pytest.approx(y.mean(), abs=1e-6)


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_histogram_binning_by_hand(subj: dict[str, Any], binning: str) -> None:
    p, y = to_probs(subj["zc"]), subj["yc"]
    hb = HistogramBinning(n_bins=10, binning=binning).fit(p, y)
    edges = hb.bin_edges_[0]
    if binning == "uniform":
        np.testing.assert_allclose(edges, np.linspace(0, 1, 11))
    else:
        np.testing.assert_allclose(edges[1:-1], np.quantile(p, np.linspace(0, 1, 11))[1:-1])
    counts, _ = np.histogram(p, bins=edges)  # numpy: [e_i, e_i+1), last bin closed
    hits, _ = np.histogram(p, bins=edges, weights=y)
    mids = (edges[:-1] + edges[1:]) / 2
    expected = np.where(counts > 0, hits / np.maximum(counts, 1), mids)
    np.testing.assert_allclose(hb.bin_values_[0], expected, atol=1e-12)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, len(counts) - 1)
    np.testing.assert_allclose(hb.predict_proba(p)[:, 1], expected[which], atol=1e-12)


def test_histogram_empty_bins_and_extremes() -> None:
    p = np.array([0.0, 0.0, 0.05, 1.0, 1.0, 0.97])
    y = np.array([0, 0, 1, 1, 1, 0])
    hb = HistogramBinning(n_bins=10).fit(p, y)
    out = hb.predict_proba(np.array([0.0, 0.55, 1.0]))[:, 1]
    assert out[0] == pytest.approx(1 / 3)  # bin [0, .1): labels 0, 0, 1
    assert out[1] == pytest.approx(0.55)  # empty bin [.5, .6): its midpoint
    assert out[2] == pytest.approx(2 / 3)  # last bin [.9, 1]: labels 1, 1, 0


# ---------------------------------------------------------------------------- shared behaviour
def _toy(kind: str, k: int, n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2 if k == 1 else k, n)
    y[:2] = [0, 1]
    if k == 1:
        z = rng.normal(size=n) + 1.5 * (2 * y - 1)
    else:
        z = rng.normal(size=(n, k))
        z[np.arange(n), y] += 1.5
    return (z, y) if kind == "logits" else (to_probs(z), y)


@pytest.mark.parametrize("name", available_calibrators())
@pytest.mark.parametrize("k", [1, 2, 4])
def test_save_load_round_trip(tmp_path: Path, name: str, k: int) -> None:
    cal = make_calibrator(name)
    x, y = _toy(cal.input_kind, k)
    cal.fit(x, y)
    path = cal.save(tmp_path / "sub" / f"{name}.json")
    assert [p.name for p in path.parent.iterdir()] == [f"{name}.json"]  # no temp file left
    back = load(path)
    assert type(back) is type(cal)
    assert back.get_params() == cal.get_params()
    np.testing.assert_array_equal(back.predict_proba(x), cal.predict_proba(x))
    assert json.loads(path.read_text())["class"] == type(cal).__name__


def test_load_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load(bad)
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a calibkit calibrator"):
        load(bad)
    bad.write_text(json.dumps({"calibkit_calibrator": 1, "class": "Nope"}))
    with pytest.raises(ValueError, match="unknown calibrator class"):
        load(bad)


@pytest.mark.parametrize("name", available_calibrators())
def test_calibrate_scores(name: str) -> None:
    cal = make_calibrator(name)
    z, y = _toy("logits", 3)
    scores = Scores(logits=z, labels=y, classes=("a", "b", "c"), ids=np.arange(len(y)) + 100)
    cal.fit_scores(scores)
    out = cal.calibrate(scores)
    x = scores.logits if cal.input_kind == "logits" else scores.probs
    np.testing.assert_allclose(out.probs, cal.predict_proba(x), atol=1e-9)
    np.testing.assert_array_equal(out.labels, scores.labels)
    np.testing.assert_array_equal(out.ids, scores.ids)
    assert out.classes == scores.classes
    assert out.meta["calibrator"] == type(cal).__name__


@pytest.mark.parametrize("name", available_calibrators())
def test_calibrate_two_class_scores_with_binary_calibrator(name: str) -> None:
    cal = make_calibrator(name)
    x, y = _toy(cal.input_kind, 1)
    cal.fit(x, y)
    scores = Scores.from_probs(to_probs(x) if cal.input_kind == "logits" else x, labels=y)
    out = cal.calibrate(scores)
    np.testing.assert_allclose(out.probs, cal.predict_proba(x), atol=1e-6)
    with pytest.raises(ValueError, match="binary"):
        cal.calibrate(Scores(logits=np.zeros((3, 3))))


@pytest.mark.parametrize("name", available_calibrators())
def test_errors(name: str) -> None:
    cal = make_calibrator(name)
    x, y = _toy(cal.input_kind, 3)
    with pytest.raises(NotFittedError):
        cal.predict_proba(x)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        make_calibrator(name).fit(bad, y)
    with pytest.raises(ValueError, match="length"):
        make_calibrator(name).fit(x, y[:-1])
    with pytest.raises(ValueError, match="single class"):
        make_calibrator(name).fit(x, np.zeros_like(y))
    with pytest.raises(ValueError, match="only 3 classes"):
        make_calibrator(name).fit(x, np.where(y == 0, 3, y))
    with pytest.raises(ValueError, match="sample_weight"):
        make_calibrator(name).fit(x, y, sample_weight=-np.ones(len(y)))
    cal.fit(x, y)
    with pytest.raises(ValueError, match="3 columns"):
        cal.predict_proba(np.full((4, 4), 0.25))
    with pytest.raises(ValueError, match="3 columns"):
        cal.predict_proba(np.full(4, 0.5))
    with pytest.raises(ValueError, match="NaN"):
        cal.predict_proba(bad)
    if cal.input_kind == "probs":
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            make_calibrator(name).fit(x * 2 - 0.5, y)
    else:
        z = x.copy()
        z[0, 0] = -np.inf
        with pytest.raises(ValueError, match="-inf"):
            make_calibrator(name).fit(z, y)
    b1, yb = _toy(cal.input_kind, 1)
    fitted_1d = make_calibrator(name).fit(b1, yb)
    with pytest.raises(ValueError, match="1-D"):
        fitted_1d.predict_proba(np.stack([1 - b1, b1], 1) if cal.input_kind == "probs" else x)


def test_make_calibrator() -> None:
    assert set(available_calibrators()) == {
        "temperature", "vector", "matrix", "platt", "isotonic", "histogram", "beta", "dirichlet",
        "none", "auto",
    }  # fmt: skip
    assert isinstance(make_calibrator("sigmoid"), PlattScaling)
    assert make_calibrator("histogram", n_bins=7).get_params()["n_bins"] == 7
    with pytest.raises(ValueError, match="unknown calibrator"):
        make_calibrator("nope")
    with pytest.raises(ValueError, match="bad arguments"):
        make_calibrator("temperature", n_bins=3)
    for name, cls in CALIBRATORS.items():
        assert cls.input_kind in ("logits", "probs"), name
        c = clone(make_calibrator(name))  # sklearn estimator contract
        assert isinstance(c, Calibrator) and c.get_params(deep=False) == cls().get_params()
    with pytest.raises(ValueError, match="solver"):
        TemperatureScaling(solver="adam").fit(*_toy("logits", 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_bins"):
        HistogramBinning(n_bins=0).fit(*_toy("probs", 3))


def test_predict_logits_consistent() -> None:
    for cls in (TemperatureScaling, VectorScaling, MatrixScaling, PlattScaling):
        for k in (1, 2, 4):
            x, y = _toy("logits", k)
            cal = cls().fit(x, y)
            zl = cal.predict_logits(x)
            assert zl.shape == x.shape
            np.testing.assert_allclose(
                to_probs(zl).reshape(len(y), -1)[:, -1], cal.predict_proba(x)[:, -1], atol=1e-12
            )
            np.testing.assert_array_equal(cal.predict(x), cal.predict_proba(x).argmax(1))


# ---------------------------------------------------------------------------- hypothesis properties
_FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def _problem(draw: st.DrawFn, kind: str) -> tuple[np.ndarray, np.ndarray]:
    k = draw(st.sampled_from([1, 2, 3, 5]))
    n = draw(st.integers(8, 60))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kk = 2 if k == 1 else k
    y = rng.integers(0, kk, n)
    y[0], y[1] = 0, 1
    scale = draw(st.sampled_from([0.0, 1.0, 10.0, 60.0]))
    z = rng.normal(size=(n,) if k == 1 else (n, k)) * scale
    if draw(st.booleans()):  # ties
        z = np.round(z)
    if kind == "logits":
        return z, y
    p = to_probs(z)
    if draw(st.booleans()):  # exact 0 / 1 probabilities
        p = np.round(p) if k == 1 else np.eye(kk)[np.argmax(p, axis=1)] if kk > 1 else p
    return p, y


@pytest.mark.parametrize("name", available_calibrators())
@_FAST
@given(data=st.data())
def test_property_valid_probabilities(name: str, data: st.DataObject) -> None:
    cal = make_calibrator(name)
    x, y = data.draw(_problem(cal.input_kind))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # separable toy data may hit the search bounds
        cal.fit(x, y)
    p = cal.predict_proba(x)
    k = 2 if x.ndim == 1 else x.shape[1]
    assert p.shape == (len(y), k)
    assert np.all(np.isfinite(p)) and p.min() >= 0.0 and p.max() <= 1.0
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)


@_FAST
@given(data=st.data())
def test_property_temperature_preserves_ranking(data: st.DataObject) -> None:
    z, y = data.draw(_problem("logits"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = TemperatureScaling().fit(z, y)
    assert ts.temperature_ > 0
    p = ts.predict_proba(z)
    z2 = np.stack([np.zeros_like(z), z], 1) if z.ndim == 1 else z
    rows, a, b = np.nonzero(z2[:, :, None] < z2[:, None, :])
    assert np.all(p[rows, a] <= p[rows, b])
    # and across rows for binary logits: P(y=1) is monotone in z
    if z.ndim == 1:
        order = np.argsort(z, kind="stable")
        assert np.all(np.diff(p[order, 1]) >= 0)


@pytest.mark.parametrize("name", ["platt", "isotonic", "beta"])
@_FAST
@given(data=st.data())
def test_property_binary_maps_are_monotone(name: str, data: st.DataObject) -> None:
    cal = make_calibrator(name)
    x, y = data.draw(_problem(cal.input_kind))
    if x.ndim != 1:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal.fit(x, y)
    grid = np.linspace(x.min(), x.max(), 50)
    q = cal.predict_proba(grid)[:, 1]
    # isotonic and beta (a, b >= 0) are non-decreasing by construction; Platt follows sign(a)
    sign = np.sign(cal.coef_[0]) if name == "platt" else 1.0
    assert np.all(sign * np.diff(q) >= -1e-12)
