"""Issue #10 items 5, 6 and 9 for calibrators: a saved calibrator is validated on load (file and
field named), hyper-parameters are validated at ``fit``, and calibration records provenance."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calibkit.calibrators import (
    CALIBRATORS,
    BetaCalibration,
    DirichletCalibration,
    HistogramBinning,
    IsotonicCalibrator,
    MatrixScaling,
    PlattScaling,
    TemperatureScaling,
    VectorScaling,
    from_dict,
    load,
)
from calibkit.metrics import ece
from calibkit.scores import Scores


def _data(k: int = 3, n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 2.5
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return z, y


def _fitted(name: str, k: int = 3) -> Any:
    z, y = _data(k)
    cls = CALIBRATORS[name]
    x = z if cls.input_kind == "logits" else Scores(logits=z).probs
    return cls().fit(x, y)


def _save(cal: Any, tmp_path: Path, d: dict[str, Any] | None = None) -> Path:
    p = tmp_path / "cal.json"
    p.write_text(json.dumps(cal.to_dict() if d is None else d))
    return p


def _arr(values: Any) -> dict[str, Any]:
    a = np.asarray(values, dtype=np.float64)
    return {"__ndarray__": a.tolist(), "dtype": "float64", "shape": list(a.shape)}


# ---------------------------------------------------------------------- item 5: load
@pytest.mark.parametrize("value", [-2.0, 0.0, float("inf"), float("nan"), [1.0, 2.0], "2", True])
def test_tampered_temperature_is_rejected_naming_file_and_field(tmp_path: Path, value) -> None:
    cal = _fitted("temperature")
    d = cal.to_dict()
    d["fitted"]["temperature_"] = value
    path = _save(cal, tmp_path, d)
    with pytest.raises(ValueError) as e:
        load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: field 'fitted.temperature_' must be a positive finite number")
    assert "got" in msg


def test_the_issue_example_would_have_wrecked_ece(tmp_path: Path) -> None:
    """T = -2 loaded and applied silently on the old code (ECE 0.07 -> 0.60 in the issue)."""
    z, y = _data(2, 600)
    cal = TemperatureScaling().fit(z, y)
    d = cal.to_dict()
    d["fitted"]["temperature_"] = -2.0
    flipped = -z / 2.0
    assert ece(flipped, y, from_logits=True) > ece(z, y, from_logits=True) + 0.2
    with pytest.raises(ValueError, match="temperature_"):
        load(_save(cal, tmp_path, d))


def _scaled(encoded: dict[str, Any], factor: float) -> dict[str, Any]:
    """An encoded list of arrays with every value multiplied by ``factor`` (same shapes)."""
    out = copy.deepcopy(encoded)
    for a in out["__list__"]:
        a["__ndarray__"] = [x * factor for x in a["__ndarray__"]]
    return out


TAMPER: list[tuple[str, str, Any, str]] = [
    # (calibrator, fitted field, bad value, expected words)
    ("vector", "coef_", _arr([1.0, 2.0]), "shape"),
    ("vector", "intercept_", _arr([0.0, float("nan"), 1.0]), "finite"),
    ("matrix", "coef_", _arr(np.eye(2)), "shape"),
    ("dirichlet", "intercept_", _arr([[0.0, 1.0, 2.0]]), "shape"),
    ("platt", "coef_", _arr([1.0]), "shape"),
    ("beta", "a_", _arr([-1.0, 1.0, 1.0]), "within [0"),
    ("isotonic", "x_thresholds_", {"__list__": [_arr([0.1, 0.9])]}, "3 arrays"),
    ("isotonic", "x_thresholds_", {"__list__": [_arr([0.9, 0.1])] * 3}, "non-decreasing"),
    ("isotonic", "y_thresholds_", lambda v: _scaled(v, 1.5), "within [0, 1]"),
    ("histogram", "bin_values_", {"__list__": [_arr([2.0] * 15)] * 3}, "within [0, 1]"),
    ("histogram", "bin_edges_", {"__list__": [_arr([0.0, 0.7, 0.5, 1.0])] * 3}, "edges"),
    ("temperature", "n_classes_", 1, "int >= 2"),
    ("temperature", "n_classes_", 2.5, "int >= 2"),
    ("temperature", "binary_input_", "yes", "true or false"),
    ("temperature", "classes_", _arr([0.0, 1.0]), "shape"),
]


@pytest.mark.parametrize(("name", "field", "value", "words"), TAMPER)
def test_tampered_fitted_state_is_rejected(tmp_path: Path, name, field, value, words) -> None:
    cal = _fitted(name)
    d = cal.to_dict()
    d["fitted"][field] = value(d["fitted"][field]) if callable(value) else value
    path = _save(cal, tmp_path, d)
    with pytest.raises(ValueError, match=f"fitted.{field}") as e:
        load(path)
    assert str(e.value).startswith(f"{path}: ")
    assert words in str(e.value)


def test_isotonic_thresholds_that_would_have_applied_silently(tmp_path: Path) -> None:
    """Reversed thresholds made ``np.interp`` return plausible numbers on the old code."""
    cal = _fitted("isotonic", 2)
    d = cal.to_dict()
    xs = d["fitted"]["x_thresholds_"]["__list__"][0]["__ndarray__"]
    xs.reverse()
    with pytest.raises(ValueError, match=r"fitted.x_thresholds_\[0\]' must be non-decreasing"):
        load(_save(cal, tmp_path, d))


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: d["fitted"].pop("temperature_"), "missing field 'fitted.temperature_'"),
        (lambda d: d.pop("fitted"), "field 'fitted' must be a JSON object"),
        (lambda d: d["fitted"].update(__class__=1), "unknown field 'fitted.__class__'"),
        (lambda d: d["params"].update(solver="sgd"), "field 'params.solver' must be one of"),
        (lambda d: d["params"].update(alpha=1), "bad field 'params'"),
        (lambda d: d.update({"class": "Nope"}), "unknown calibrator class 'Nope'"),
        (lambda d: d.pop("calibkit_calibrator"), "not a calibkit calibrator"),
        (
            lambda d: d["fitted"].update(
                classes_={"__ndarray__": [0, 1], "dtype": "object", "shape": [2]}
            ),
            "unsupported array dtype",
        ),
        (
            lambda d: d["fitted"].update(
                classes_={"__ndarray__": [0, 1], "dtype": "int64", "shape": [3]}
            ),
            "is not a int64 array of shape [3]",
        ),
    ],
)
def test_malformed_files_name_the_field(tmp_path: Path, mutate, words) -> None:
    cal = _fitted("temperature", 2)
    d = copy.deepcopy(cal.to_dict())
    mutate(d)
    path = _save(cal, tmp_path, d)
    with pytest.raises(ValueError) as e:
        load(path)
    assert str(e.value).startswith(f"{path}: ")
    assert words in str(e.value)


def test_not_json_and_not_an_object(tmp_path: Path) -> None:
    p = tmp_path / "cal.json"
    p.write_text("{ not json")
    with pytest.raises(ValueError, match=f"{p}: not valid JSON"):
        load(p)
    p.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        load(p)
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match=str(p)):
        load(p)


@pytest.mark.parametrize("name", sorted(CALIBRATORS))
def test_every_calibrator_round_trips_unchanged(tmp_path: Path, name: str) -> None:
    for k in (2, 4):
        cal = _fitted(name, k)
        back = load(cal.save(tmp_path / f"{name}{k}.json"))
        z, _ = _data(k, 50, seed=9)
        x = z if cal.input_kind == "logits" else Scores(logits=z).probs
        np.testing.assert_array_equal(back.predict_proba(x), cal.predict_proba(x))
        assert back.fingerprint() == cal.fingerprint()
    binary = CALIBRATORS[name]().fit(
        *(lambda z, y: (z[:, 1] - z[:, 0], y))(*_data(2))
        if CALIBRATORS[name].input_kind == "logits"
        else (Scores(logits=_data(2)[0]).probs[:, 1], _data(2)[1])
    )
    assert from_dict(binary.to_dict()).binary_input_ is True


# ---------------------------------------------------------------------- item 9: params
@pytest.mark.parametrize(
    ("cal", "param"),
    [
        (VectorScaling(regularization="bogus"), "regularization"),  # type: ignore[arg-type]
        (VectorScaling(max_iter=-1), "max_iter"),
        (VectorScaling(max_iter=2.5), "max_iter"),  # type: ignore[arg-type]
        (VectorScaling(reg_lambda=float("nan")), "reg_lambda"),
        (VectorScaling(reg_mu=-1.0), "reg_mu"),
        (MatrixScaling(reg_lambda=float("inf")), "reg_lambda"),
        (MatrixScaling(tol=0.0), "tol"),
        (MatrixScaling(max_iter=True), "max_iter"),  # type: ignore[arg-type]
        (DirichletCalibration(regularization="L2"), "regularization"),  # type: ignore[arg-type]
        (TemperatureScaling(solver="adam"), "solver"),  # type: ignore[arg-type]
        (PlattScaling(prior_correction="yes"), "prior_correction"),  # type: ignore[arg-type]
        (HistogramBinning(n_bins=-3), "n_bins"),
        (HistogramBinning(n_bins=10**9), "n_bins"),
        (HistogramBinning(binning="log"), "binning"),  # type: ignore[arg-type]
    ],
)
def test_bad_hyper_parameters_fail_at_fit(cal: Any, param: str) -> None:
    z, y = _data(3)
    x = z if cal.input_kind == "logits" else Scores(logits=z).probs
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "only warns" any more: an error before any work
        with pytest.raises(ValueError, match=f"parameter '{param}' must be"):
            cal.fit(x, y)


def test_good_hyper_parameters_still_fit() -> None:
    z, y = _data(3)
    VectorScaling(regularization="odir", reg_lambda=1e-3, max_iter=50).fit(z, y)
    MatrixScaling(regularization="none", reg_lambda=0, reg_mu=0).fit(z, y)
    HistogramBinning(n_bins=np.int64(7)).fit(Scores(logits=z).probs, y)
    BetaCalibration().fit(Scores(logits=z).probs, y)


# ---------------------------------------------------------------------- item 6: provenance
def test_fingerprint_is_stable_and_sensitive(tmp_path: Path) -> None:
    cal = _fitted("vector")
    fp = cal.fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert load(cal.save(tmp_path / "a.json")).fingerprint() == fp
    d = cal.to_dict()
    d["calibkit_version"] = "0.0.0"  # the version is not part of the identity
    assert from_dict(d).fingerprint() == fp
    d["fitted"]["intercept_"]["__ndarray__"][0] += 1e-9
    assert from_dict(d).fingerprint() != fp
    other = VectorScaling(reg_lambda=0.5).fit(*_data(3))
    assert other.fingerprint() != fp
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        VectorScaling().fingerprint()


def test_calibrate_records_provenance_and_warns_on_a_second_pass() -> None:
    z, y = _data(3, 600)
    s = Scores(logits=z, labels=y, meta={"model": "m"}, per_item={"row": np.arange(600)})
    ts = TemperatureScaling().fit(z, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        once = ts.calibrate(s)
    assert once.meta["calibrated_by"] == [
        {"method": "TemperatureScaling", "fingerprint": ts.fingerprint()}
    ]
    assert once.meta["model"] == "m" and "calibrated_by" not in s.meta
    np.testing.assert_array_equal(once.per_item["row"], np.arange(600))
    iso = IsotonicCalibrator().fit(once.probs, y)
    with pytest.warns(UserWarning, match=r"already calibrated \(by TemperatureScaling\)"):
        twice = iso.calibrate(once)
    assert [c["method"] for c in twice.meta["calibrated_by"]] == [
        "TemperatureScaling",
        "IsotonicCalibrator",
    ]
    with pytest.raises(ValueError, match="calibrated_by"):
        ts.calibrate(Scores(logits=z, meta={"calibrated_by": "yes"}))


def test_a_degenerate_loaded_state_fails_naming_the_calibrator() -> None:
    """A positive but absurd temperature overflows: an error, not 'Scores.logits contains NaN'."""
    cal = _fitted("temperature", 2)
    d = cal.to_dict()
    d["fitted"]["temperature_"] = 1e-310
    bad = from_dict(d)
    z = np.array([[0.0, 1e3], [2.0, 1.0]])
    with pytest.raises(ValueError, match=r"TemperatureScaling \(fingerprint [0-9a-f]{16}\) gave"):
        bad.calibrate(Scores(logits=z, ids=np.array(["x", "y"], dtype=object)))


def test_sklearn_tags_and_n_features_in() -> None:
    """Calibrators behave as scikit-learn classifiers: tags, n_features_in_, stratified CV."""
    from sklearn.base import is_classifier
    from sklearn.model_selection import cross_val_score

    from calibkit.calibrators import TemperatureScaling, VectorScaling
    from calibkit.calibrators.base import from_dict

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = (x + rng.normal(size=x.shape)).argmax(axis=1)
    cal = VectorScaling()
    assert is_classifier(cal)
    cal.fit(x, y)
    assert cal.n_features_in_ == 3
    assert TemperatureScaling().fit(x[:, 0] - x[:, 1], (y == 0).astype(int)).n_features_in_ == 1
    back = from_dict(cal.to_dict())
    assert back.n_features_in_ == 3 and back.fingerprint() == cal.fingerprint()
    assert "n_features_in_" not in cal.to_dict()["fitted"]
    scores = cross_val_score(TemperatureScaling(), x, y, cv=3, scoring="neg_log_loss")
    assert np.all(np.isfinite(scores)) and np.all(scores < 0)
