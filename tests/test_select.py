"""Cross-validated regularisation of matrix / Dirichlet scaling, and calibkit.calibrators.select."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_softmax, softmax
from sklearn.base import clone

from calibkit import metrics as m
from calibkit.calibrators import (
    CALIBRATORS,
    AutoCalibrator,
    DirichletCalibration,
    IdentityCalibrator,
    MatrixScaling,
    TemperatureScaling,
    VectorScaling,
    from_dict,
    load,
    make_calibrator,
    select,
)
from calibkit.calibrators._cv import make_folds
from calibkit.calibrators._odir import ODIR_GRID, affine_fit
from calibkit.scores import Scores


def _overconfident(n: int, k: int, seed: int, scale: float = 2.5):
    """Labels drawn from softmax(t); observed logits ``scale * t`` (over-confident)."""
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(n, k)) * 1.5
    y = np.array([rng.choice(k, p=p) for p in softmax(t, axis=1)])
    return scale * t, y


def _nll(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-300))))


# ---------------------------------------------------------------------- ODIR lambda by CV
def test_default_matrix_not_worse_than_uncalibrated_where_fixed_lambda_is() -> None:
    # K = 25: 650 parameters for 400 calibration rows. The old default (fixed lambda 1e-2)
    # overfits far past the uncalibrated NLL; the cross-validated default does not.
    z, y = _overconfident(2400, 25, seed=1, scale=2.0)
    zc, yc, zt, yt = z[:400], y[:400], z[400:], y[400:]
    none = _nll(softmax(zt, axis=1), yt)
    with pytest.warns(UserWarning, match="fewer than 10 rows per parameter"):
        fixed = MatrixScaling(reg_lambda=1e-2, reg_mu=1e-2).fit(zc, yc)
    assert _nll(fixed.predict_proba(zt), yt) > none + 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no capacity warning with CV
        auto = MatrixScaling().fit(zc, yc)
    assert _nll(auto.predict_proba(zt), yt) <= none + 1e-3
    assert auto.reg_lambda_ in ODIR_GRID and auto.reg_mu_ == auto.reg_lambda_
    res = auto.cv_results_
    assert res is not None and auto.reg_lambda_ == res["lambda"][int(np.argmin(res["mean_nll"]))]
    # Dirichlet on the probabilities: the same
    p = softmax(z, axis=1)
    d = DirichletCalibration().fit(p[:400], yc)
    assert _nll(d.predict_proba(p[400:]), yt) <= none + 1e-3


def test_cv_table_is_the_held_out_nll_of_independent_fits() -> None:
    z, y = _overconfident(300, 3, seed=2)
    cal = MatrixScaling(cv=3, seed=4).fit(z, y)
    res = cal.cv_results_
    assert res is not None
    folds = make_folds(y, 3, 4)
    lam = res["lambda"][1]
    losses = []
    for tr, te in folds:  # refit each fold from scratch at this lambda, tight tolerance
        th = affine_fit(
            z[tr], y[tr], None, shape="matrix", regularization="odir", reg_lambda=lam, reg_mu=lam
        )
        w_, b_ = th[:9].reshape(3, 3), th[9:]
        lp = log_softmax(z[te] @ w_.T + b_, axis=1)
        losses.append(-lp[np.arange(len(te)), y[te]].mean())
    assert res["mean_nll"][1] == pytest.approx(np.mean(losses), abs=2e-4)
    assert res["std_nll"][1] == pytest.approx(np.std(losses), abs=2e-4)


def test_fixed_lambda_keeps_old_behaviour_and_preconditioning_keeps_the_optimum() -> None:
    z, y = _overconfident(500, 4, seed=3)
    cal = MatrixScaling(reg_lambda=0.3, reg_mu=0.1).fit(z, y)
    assert cal.cv_results_ is None and cal.reg_lambda_ == 0.3 and cal.reg_mu_ == 0.1
    # the preconditioned solution is a stationary point of the plain objective: compare with
    # scipy's BFGS on the same objective written independently
    from scipy.optimize import minimize

    k = 4

    def obj(th: np.ndarray) -> float:
        w_, b_ = th[: k * k].reshape(k, k), th[k * k :]
        lp = log_softmax(z @ w_.T + b_, axis=1)[np.arange(len(y)), y]
        off = w_ - np.diag(np.diag(w_))
        return float(-lp.mean() + 0.3 * np.sum(off**2) / (k * (k - 1)) + 0.1 * np.sum(b_**2) / k)

    ref = minimize(
        obj,
        np.concatenate([np.eye(k).ravel(), np.zeros(k)]),
        method="BFGS",
        options={"gtol": 1e-10},
    )
    theta = np.concatenate([cal.coef_.ravel(), cal.intercept_])
    assert obj(theta) <= ref.fun + 1e-9
    np.testing.assert_allclose(
        cal.predict_proba(z),
        softmax(z @ ref.x[: k * k].reshape(k, k).T + ref.x[k * k :], axis=1),
        atol=2e-5,
    )


def test_auto_lambda_round_trip_and_bad_values(tmp_path: Path) -> None:
    z, y = _overconfident(200, 3, seed=5)
    cal = MatrixScaling(cv=3).fit(z, y)
    back = load(cal.save(tmp_path / "m.json"))
    assert back.reg_lambda_ == cal.reg_lambda_ and back.cv_results_ == cal.cv_results_
    np.testing.assert_allclose(back.predict_proba(z), cal.predict_proba(z))
    with pytest.raises(ValueError, match="parameter 'reg_lambda' must be"):
        MatrixScaling(reg_lambda="cv").fit(z, y)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="parameter 'cv' must be"):
        MatrixScaling(cv=1).fit(z, y)
    d = cal.to_dict()
    d["fitted"]["reg_lambda_"] = -1.0
    with pytest.raises(ValueError, match=r"fitted\.reg_lambda_"):
        from_dict(d)


def test_too_few_rows_for_cv_warns_and_uses_strongest() -> None:
    z, y = _overconfident(8, 3, seed=6)
    y[:3] = [0, 1, 2]
    with pytest.warns(UserWarning, match="too few for 5-fold"):
        cal = MatrixScaling().fit(z, y)
    assert cal.reg_lambda_ == max(ODIR_GRID)


# ---------------------------------------------------------------------- select
def test_identity_calibrator() -> None:
    z, y = _overconfident(50, 3, seed=7)
    c = IdentityCalibrator().fit(z, y)
    np.testing.assert_allclose(c.predict_proba(z), softmax(z, axis=1))
    b = IdentityCalibrator().fit(z[:, 1] - z[:, 0], (y == 1).astype(int))
    assert b.predict_proba(z[:, 1] - z[:, 0]).shape == (50, 2)
    assert CALIBRATORS["none"] is IdentityCalibrator and CALIBRATORS["auto"] is AutoCalibrator


def test_select_scores_are_independent_fold_scores() -> None:
    z, y = _overconfident(600, 4, seed=8)
    auto = select(z, y, candidates=["temperature", "vector", "isotonic"], cv=4, seed=3)
    assert set(auto.cv_results_) == {"none", "temperature", "vector", "isotonic"}
    folds = make_folds(y, 4, 3)
    for name in ("temperature", "isotonic", "none"):
        proto = make_calibrator(name)
        x = z if proto.input_kind == "logits" else softmax(z, axis=1)
        ref = [
            m.nll(clone(proto).fit(x[tr], y[tr]).predict_proba(x[te]), y[te]) for tr, te in folds
        ]
        np.testing.assert_allclose(auto.cv_results_[name]["folds"], ref, rtol=1e-10)
        assert auto.cv_results_[name]["mean"] == pytest.approx(np.mean(ref))
    means = {k: v["mean"] for k, v in auto.cv_results_.items()}
    assert auto.selected_ == min(means, key=lambda k: means[k])
    assert means[auto.selected_] <= means["none"]
    # over-confident logits: a scaling calibrator beats none
    assert auto.selected_ in ("temperature", "vector")
    assert type(auto.calibrator_) is CALIBRATORS[auto.selected_]
    np.testing.assert_allclose(
        auto.predict_proba(z), CALIBRATORS[auto.selected_]().fit(z, y).predict_proba(z)
    )


def test_select_keeps_none_when_nothing_helps() -> None:
    # labels drawn from the softmax of the very logits: already calibrated; histogram binning
    # with many bins on 200 rows only adds noise
    rng = np.random.default_rng(9)
    z = rng.normal(size=(200, 3)) * 2
    y = np.array([rng.choice(3, p=p) for p in softmax(z, axis=1)])
    auto = select(z, y, candidates=["histogram"])
    assert auto.selected_ == "none"
    assert auto.cv_results_["none"]["mean"] < auto.cv_results_["histogram"]["mean"]
    np.testing.assert_allclose(auto.predict_proba(z), softmax(z, axis=1))


def test_select_matrix_uses_inner_cv_on_the_same_folds() -> None:
    z, y = _overconfident(300, 3, seed=10)
    auto = select(z, y, candidates=["matrix"], cv=3, seed=1)
    inner = auto.calibrator_ if auto.selected_ == "matrix" else None
    res = auto.cv_results_["matrix"]
    mat = MatrixScaling(cv=3, seed=1).fit(z, y)
    i = int(np.argmin(mat.cv_results_["mean_nll"]))  # type: ignore[index]
    # the candidate score is the inner path's held-out NLL at the chosen lambda (same folds)
    assert res["mean"] == pytest.approx(mat.cv_results_["mean_nll"][i], rel=1e-9)  # type: ignore[index]
    if inner is not None:
        assert inner.reg_lambda_ == mat.reg_lambda_


def test_select_scorings_weights_and_scores_input() -> None:
    z, y = _overconfident(300, 2, seed=11)
    s = Scores(logits=z, labels=y, classes=("a", "b"))
    for scoring in ("brier", "ece"):
        auto = select(s, candidates=["temperature", "platt", "beta"], scoring=scoring, cv=3)
        assert auto.selected_ in ("none", "temperature", "platt", "beta")
        assert auto.cv_results_[auto.selected_]["mean"] <= auto.cv_results_["none"]["mean"]
    w = np.ones(300)
    a1 = select(z, y, candidates=["temperature"], sample_weight=w, cv=3)
    a2 = select(z, y, candidates=["temperature"], cv=3)
    assert a1.cv_results_["temperature"]["mean"] == pytest.approx(
        a2.cv_results_["temperature"]["mean"]
    )
    with pytest.raises(ValueError, match="sample_weight"):
        select(z, y, candidates=["temperature"], scoring="ece", sample_weight=w)
    with pytest.raises(ValueError, match="parameter 'candidates'"):
        select(z, y, candidates=["bogus"])
    with pytest.raises(ValueError, match="parameter 'scoring'"):
        select(z, y, scoring="auc")  # type: ignore[arg-type]
    cal = select(s, candidates=["temperature"], cv=3)
    out = cal.calibrate(s)
    np.testing.assert_allclose(out.probs, cal.predict_proba(z), atol=1e-12)
    assert "selected:" in cal.summary()


def test_select_default_candidates_binary_and_round_trip(tmp_path: Path) -> None:
    z, y = _overconfident(400, 2, seed=12)
    zb = z[:, 1] - z[:, 0]
    auto = select(zb, y, cv=3)
    assert set(auto.cv_results_) == set(CALIBRATORS) - {"auto"}
    path = auto.save(tmp_path / "auto.json")
    back = load(path)
    assert isinstance(back, AutoCalibrator) and back.selected_ == auto.selected_
    assert back.cv_results_ == json.loads(json.dumps(auto.cv_results_))
    np.testing.assert_allclose(back.predict_proba(zb), auto.predict_proba(zb))
    assert back.fingerprint() == auto.fingerprint()
    # a tampered file names the field
    d = json.loads(path.read_text())
    d["fitted"]["selected_"] = "bogus"
    with pytest.raises(ValueError, match=r"fitted\.selected_"):
        from_dict(d)
    d = json.loads(path.read_text())
    d["fitted"]["calibrator_"]["class"] = "Nope"
    with pytest.raises(ValueError, match="calibrator_"):
        from_dict(d)


def test_select_never_worse_than_none_property() -> None:
    for seed in range(4):
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(150, 3)) * rng.uniform(0.2, 4)
        y = rng.integers(0, 3, 150)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            auto = select(z, y, candidates=["temperature", "vector", "histogram"], cv=3)
        res = auto.cv_results_
        assert res[auto.selected_]["mean"] <= res["none"]["mean"]


# ---------------------------------------------------------------------- CIFAR acceptance
def _cifar(data_dir: Path, name: str):
    d = np.load(data_dir / "cifar_records" / f"{name}.npz")
    p = d["predictions"].astype(np.float64)
    p /= p.sum(1, keepdims=True)
    y = d["ground_truth"].astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(y))
    return np.log(p), p, y, idx[:5000], idx[5000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["wideresnet-16-4-cifar-100", "wideresnet-16-4-cifar-10", "lenet-5-cifar-10"]
)
def test_cifar_defaults_not_worse_and_auto_near_best(data_dir: Path, name: str) -> None:
    z, p, y, a, b = _cifar(data_dir, name)
    none = m.nll(p[b], y[b])
    test_nll = {}
    for key in ("temperature", "vector", "matrix", "dirichlet"):
        cal = make_calibrator(key)
        x = z if cal.input_kind == "logits" else p
        cal.fit(x[a], y[a])
        test_nll[key] = m.nll(cal.predict_proba(x[b]), y[b])
    assert test_nll["matrix"] <= none and test_nll["dirichlet"] <= none
    auto = select(z[a], y[a], candidates=["temperature", "vector", "matrix", "dirichlet"])
    auto_nll = m.nll(auto.predict_proba(z[b]), y[b])
    assert auto_nll <= none
    assert auto_nll <= 1.01 * min(test_nll.values())


def test_temperature_is_not_affected() -> None:
    z, y = _overconfident(300, 3, seed=13)
    t = TemperatureScaling().fit(z, y)
    v = VectorScaling().fit(z, y)
    assert t.temperature_ > 1.5 and v.coef_.shape == (3,)


def test_auto_passes_over_a_winner_that_inverts_the_scores() -> None:
    """On SmolLM2's SST-2 4-shot scores vector scaling wins CV NLL with a negative slope (a sign
    flip); auto must choose the next best fit that keeps the scores' direction, and say why."""
    from pathlib import Path

    from calibkit import Scores
    from calibkit.calibrators.select import _inversion

    path = Path(__file__).parent / "fixtures" / "ensemble" / "sst2__smollm2-fs.parquet"
    s = Scores.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = AutoCalibrator(allow_inverted=True).fit(s.logits, s.labels)
        auto = AutoCalibrator().fit(s.logits, s.labels)
    assert _inversion(kept.calibrator_) is not None  # the CV winner inverts
    assert auto.selected_ != kept.selected_
    assert _inversion(auto.calibrator_) is None
    assert auto.cv_results_[kept.selected_]["error"].startswith("excluded:")
    assert "excluded" in auto.summary()
    best_kept = min(r["mean"] for n, r in auto.cv_results_.items() if r["error"] is None)
    assert auto.cv_results_[auto.selected_]["mean"] == best_kept
    assert auto.cv_results_[auto.selected_]["mean"] < auto.cv_results_["none"]["mean"]
