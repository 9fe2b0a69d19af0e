"""calibkit.calibrators.diagnostics and ``calibkit diagnose``."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import chi2_contingency
from sklearn.metrics import roc_auc_score

from calibkit.calibrators import (
    IsotonicCalibrator,
    MatrixScaling,
    TemperatureScaling,
    VectorScaling,
    select,
)
from calibkit.calibrators.diagnostics import Finding, diagnose, format_findings, n_parameters
from calibkit.cli.main import main
from calibkit.io import read_scores_table
from calibkit.scores import Scores

REPO = Path(__file__).resolve().parents[1]
SUBJ = REPO / "tests" / "fixtures" / "ensemble" / "subj__smollm2-zs.parquet"
SST2 = REPO / "examples" / "sst2_scores.csv"
SST2_DEV = REPO / "examples" / "sst2_dev_scores.csv"


def _codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def _signal(n: int, k: int, seed: int, scale: float = 1.0) -> Scores:
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(n, k)) * 2.0
    y = np.array([rng.choice(k, p=p) for p in softmax(t, axis=1)])
    return Scores(logits=scale * t, labels=y)


# ---------------------------------------------------------------------- acceptance
def test_flags_inverted_smollm2_subj_scores() -> None:
    s = Scores.load(SUBJ)
    found = diagnose(s)
    assert "inverted_scores" in _codes(found)
    f = next(f for f in found if f.code == "inverted_scores")
    margin = s.logits[:, 1] - s.logits[:, 0]
    assert f.numbers["auroc"][0] == pytest.approx(roc_auc_score(s.labels == 1, margin))
    assert f.numbers["auroc"][0] < 0.5 and f.severity == "warning"
    # vector scaling on these scores "gains" accuracy by flipping them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vs = VectorScaling().fit(s.logits, s.labels)
    inv = next(f for f in diagnose(s, vs, s) if f.code == "inverted_fit")
    assert min(inv.numbers["negative"]) < 0
    assert inv.numbers["accuracy_after"] > inv.numbers["accuracy_before"]


def test_flags_temperature_at_bound() -> None:
    # every (score order, label) pair equally often: the true class's logit averages the row
    # mean, so the NLL falls all the way to T -> infinity
    i = np.arange(900)
    z = np.stack([np.roll([1.0, 0.0, -1.0], k) for k in i % 3])
    y = (i // 3) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = TemperatureScaling().fit(z, y)
    s = Scores(logits=z, labels=y)
    found = diagnose(s, ts, s)
    f = next(f for f in found if f.code == "temperature_at_bound")
    assert f.numbers["log_t"] == pytest.approx(10.0)
    assert "no_signal" in _codes(found)
    # and through an AutoCalibrator that picked temperature
    good = _signal(600, 3, 1, scale=2.0)
    auto = select(good, candidates=["temperature"])
    assert "temperature_at_bound" not in _codes(diagnose(good, auto, good))


def test_quiet_on_tfidf_sst2() -> None:
    s, _ = read_scores_table(SST2)
    assert diagnose(s) == []
    dev, _ = read_scores_table(SST2_DEV)
    ts = TemperatureScaling().fit(dev.logits, dev.labels)
    assert diagnose(s, ts, dev) == []
    assert format_findings([]) == ""


# ---------------------------------------------------------------------- each check
def test_inverted_ranking_of_confidence() -> None:
    rng = np.random.default_rng(2)
    n = 600
    y = rng.integers(0, 2, n)
    conf = rng.uniform(0.5, 1.0, n)
    # make high confidence mostly wrong
    pred = np.where(rng.random(n) < 1.2 - conf, y, 1 - y)
    p1 = np.where(pred == 1, conf, 1 - conf)
    s = Scores.from_probs(p1, labels=y)
    f = next(f for f in diagnose(s) if f.code == "inverted_ranking")
    correct = pred == y
    assert f.numbers["auroc"] == pytest.approx(roc_auc_score(correct, conf), abs=1e-9)
    assert f.numbers["upper_bound"] < 0.5


def test_parameter_count_rule() -> None:
    s = _signal(300, 10, 3, scale=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = MatrixScaling(reg_lambda=1e-2, reg_mu=1e-2).fit(s.logits, s.labels)
    f = next(f for f in diagnose(s, fixed, s) if f.code == "few_rows_for_parameters")
    assert f.numbers["parameters"] == 110 and f.numbers["rows"] == 300
    auto = MatrixScaling(cv=3).fit(s.logits, s.labels)
    assert n_parameters(auto) == 20
    assert "few_rows_for_parameters" not in _codes(diagnose(s, auto, s))
    assert n_parameters(TemperatureScaling().fit(s.logits, s.labels)) == 1


def test_ece_sample_size_is_paper_000s_bound() -> None:
    s = _signal(300, 2, 4)
    found = diagnose(s, fit_scores=s, ece_epsilon=0.05, ece_delta=0.1)
    f = next(f for f in found if f.code == "few_rows_for_ece" and f.severity == "warning")
    # n = log(4 / delta) / (2 eps^2), by hand
    assert f.numbers["rows_needed"] == math.ceil(math.log(4 / 0.1) / (2 * 0.05**2)) == 738
    assert f.numbers["epsilon_achieved"] == pytest.approx(math.sqrt(math.log(40) / 600))
    assert not [f for f in diagnose(s, fit_scores=s, ece_epsilon=0.2) if "ece" in f.code]
    # fit-time use (the same Scores as both): the rule is reported once, for the calibration data
    assert [f.code for f in found].count("few_rows_for_ece") == 1


def test_absent_class_and_prior_shift() -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(size=(1000, 3)) + 3 * np.eye(3)[rng.integers(0, 3, 1000)]
    y_fit = np.where(rng.random(1000) < 0.5, 0, 1)  # class 2 absent, 50/50
    fit = Scores(logits=z, labels=y_fit, classes=("a", "b", "c"))
    y_eval = np.where(rng.random(1000) < 0.2, 0, 1)
    ev = Scores(logits=z, labels=y_eval, classes=("a", "b", "c"))
    found = diagnose(ev, fit_scores=fit)
    absent = next(f for f in found if f.code == "class_absent")
    assert absent.numbers["absent"] == ["c"]
    shift = next(f for f in found if f.code == "prior_shift")
    a = np.bincount(y_fit, minlength=3)
    b = np.bincount(y_eval, minlength=3)
    assert shift.numbers["total_variation"] == pytest.approx(
        0.5 * np.abs(a / 1000 - b / 1000).sum()
    )
    assert shift.numbers["p_value"] == pytest.approx(
        chi2_contingency(np.stack([a[:2], b[:2]]), correction=False)[1]
    )
    same = Scores(logits=z, labels=y_fit, classes=("a", "b", "c"))
    assert "prior_shift" not in _codes(diagnose(same, fit_scores=fit))


def test_isotonic_ties_change_ranking() -> None:
    tr = _signal(60, 4, 6)
    te = _signal(2000, 4, 7)
    iso = IsotonicCalibrator().fit(tr.probs, tr.labels)
    f = next(f for f in diagnose(te, iso) if f.code == "ties_change_ranking")
    assert f.numbers["distinct_confidences_after"] < f.numbers["distinct_confidences_before"]
    after = iso.calibrate(te)
    assert f.numbers["predictions_changed"] == pytest.approx(
        np.mean(after.prediction != te.prediction)
    )


def test_input_errors() -> None:
    s = _signal(50, 3, 8)
    with pytest.raises(ValueError, match="Scores"):
        diagnose(s.logits)  # type: ignore[arg-type]
    other = Scores(logits=s.logits, labels=s.labels, classes=("x", "y", "z"))
    with pytest.raises(ValueError, match="classes"):
        diagnose(s, fit_scores=other)


# ---------------------------------------------------------------------- CLI
def test_cli_diagnose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", str(SST2)]) == 0
    assert "no findings" in capsys.readouterr().out
    assert main(["diagnose", str(SST2), "--strict"]) == 0
    assert main(["diagnose", str(SUBJ)]) == 0
    out = capsys.readouterr().out
    assert "[inverted_scores]" in out and "what to do:" in out
    assert main(["diagnose", str(SUBJ), "--strict"]) == 1
    capsys.readouterr()
    cal = tmp_path / "ts.json"
    assert main(["fit", str(SST2_DEV), "-m", "temperature", "-o", str(cal)]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "diagnose",
                str(SST2),
                "--calibrator",
                str(cal),
                "--fit-data",
                str(SST2_DEV),
                "--json",
                "--strict",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == []
    assert main(["diagnose", str(SST2), "--ece-epsilon", "2"]) == 2
