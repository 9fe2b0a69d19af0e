"""``calibkit evaluate`` and ``calibkit fit`` surface the diagnostics as ``warning:`` lines and
under ``"warnings"`` in --json (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calibkit.cli.main import main
from calibkit.scores import Scores

ROOT = Path(__file__).resolve().parents[1]
SUBJ = ROOT / "tests" / "fixtures" / "ensemble" / "subj__smollm2-zs.parquet"
SST2 = ROOT / "examples" / "sst2_scores.csv"


def test_fit_warns_about_the_inverted_vector_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "v.json"
    assert main(["fit", str(SUBJ), "-m", "vector", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert any("[inverted_fit]" in ln and "sign flip" in ln for ln in lines), err
    assert any("[inverted_scores]" in ln for ln in lines), err

    assert main(["fit", str(SUBJ), "-m", "vector", "-o", str(out), "--json"]) == 0
    cap = capsys.readouterr()
    rep = json.loads(cap.out)
    assert any("[inverted_fit]" in w for w in rep["warnings"])
    codes = {d["code"] for d in rep["diagnostics"]["fit"]}
    assert {"inverted_fit", "inverted_scores"} <= codes
    # the saved fit really has a negative slope (read from the JSON, not from the diagnostics)
    from calibkit.calibrators import load

    assert load(out).coef_.min() < 0


def test_fit_temperature_on_good_scores_has_no_inversion_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fit", str(SST2), "-m", "temperature", "-o", str(tmp_path / "t.json"), "--json"]
    assert main(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert not any("inverted" in w for w in rep["warnings"])


def test_fit_eval_prior_shift_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Scores.load(SUBJ)
    y = s.require_labels()
    import numpy as np

    # eval data: every subjective row, a tenth of the objective ones -> a shifted prior
    obj = np.flatnonzero(y == 0)
    keep = np.sort(np.concatenate([np.flatnonzero(y == 1), obj[: len(obj) // 10]]))
    shifted = tmp_path / "shifted.parquet"
    s.subset(keep).save(shifted)
    argv = ["fit", str(SUBJ), "-m", "temperature", "-o", str(tmp_path / "t.json")]
    assert main([*argv, "--eval", str(shifted), "--json"]) == 0
    cap = capsys.readouterr()
    rep = json.loads(cap.out)
    assert any(w.startswith("--eval data: [prior_shift]") for w in rep["warnings"])
    assert "warning: --eval data: [prior_shift]" in cap.err
    # a finding of the fit is not repeated for the --eval data
    assert sum("[few_rows_for_ece]" in w for w in rep["warnings"]) == 1


def test_evaluate_quiet_on_sst2_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(SST2)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["evaluate", str(SST2), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["warnings"] == []


def test_evaluate_warns_on_inverted_scores(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(SUBJ), "--json"]) == 0
    cap = capsys.readouterr()
    rep = json.loads(cap.out)
    assert any("[inverted_scores]" in w for w in rep["warnings"])
    assert "warning: [inverted_scores]" in cap.err
    assert any(d["code"] == "inverted_scores" for d in rep["diagnostics"])
