"""calibkit evaluate / fit / apply, in-process through ``calibkit.cli.main.main`` and once as a
subprocess; numbers are checked against the Python API and hand computations."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calibkit import metrics
from calibkit.calibrators import load
from calibkit.cli.main import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The README's example file, copied so the default diagram lands in tmp_path."""
    dst = tmp_path / "sst2_scores.csv"
    shutil.copy(EXAMPLES / "sst2_scores.csv", dst)
    return dst


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    dst = tmp_path / "sst2_dev_scores.csv"
    shutil.copy(EXAMPLES / "sst2_dev_scores.csv", dst)
    return dst


def _probs_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the example CSV by hand (pandas only): probabilities and 0/1 labels."""
    df = pd.read_csv(path)
    p = df[["prob_negative", "prob_positive"]].to_numpy()
    y = (df["label"] == "positive").to_numpy().astype(int)
    return p, y


def _run_json(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------------- evaluate
def test_evaluate_json_matches_api(capsys, example: Path) -> None:
    out = _run_json(capsys, ["evaluate", str(example), "--bins", "10"])
    p, y = _probs_labels(example)
    m = out["metrics"]
    assert out["n"] == len(y) == 1821
    assert out["classes"] == ["negative", "positive"]
    assert m["ece"] == pytest.approx(metrics.ece(p, y, n_bins=10), abs=1e-9)
    assert m["mce"] == pytest.approx(metrics.mce(p, y, n_bins=10), abs=1e-9)
    assert m["ace"] == pytest.approx(metrics.ace(p, y, n_bins=10), abs=1e-9)
    assert m["cw_ece"] == pytest.approx(metrics.classwise_ece(p, y, n_bins=10), abs=1e-9)
    # independent references: accuracy and NLL by hand
    assert m["accuracy"] == pytest.approx(float(np.mean(p.argmax(1) == y)), abs=1e-12)
    assert m["nll"] == pytest.approx(float(-np.mean(np.log(p[np.arange(len(y)), y]))), rel=1e-6)
    # per-bin table sums to n; no diagram unless asked (issue 10, item 12)
    assert sum(r["count"] for r in out["reliability_table"]) == len(y)
    assert out["plot"] is None
    assert sorted(f.name for f in example.parent.iterdir()) == [example.name]
    assert out["intervals"] is None


def test_evaluate_rich_output(capsys, example: Path, tmp_path: Path) -> None:
    capsys.readouterr()
    svg = tmp_path / "rel.svg"
    cw = tmp_path / "cw.png"
    assert main(["evaluate", str(example), "--plot", str(svg), "--classwise-plot", str(cw)]) == 0
    text = capsys.readouterr().out
    for word in ("Accuracy", "ECE", "MCE", "ACE", "RMS-CE", "conf-ECE", "cw-ECE", "Brier", "NLL"):
        assert word in text
    assert "Reliability table" in text and str(svg) in text
    assert svg.read_bytes().lstrip().startswith(b"<?xml")
    assert cw.read_bytes().startswith(b"\x89PNG") and str(cw) in text


def test_evaluate_bootstrap_and_positive_view(capsys, example: Path) -> None:
    out = _run_json(
        capsys, ["evaluate", str(example), "--no-plot", "--bootstrap", "100", "--seed", "3"]
    )
    assert out["plot"] is None
    assert set(out["intervals"]) == set(out["metrics"])
    for key, (lo, hi) in out["intervals"].items():
        assert lo <= hi, key
    lo, hi = out["intervals"]["accuracy"]
    assert lo <= out["metrics"]["accuracy"] <= hi
    again = _run_json(
        capsys, ["evaluate", str(example), "--no-plot", "--bootstrap", "100", "--seed", "3"]
    )
    assert again["intervals"] == out["intervals"]  # seeded
    pos = _run_json(capsys, ["evaluate", str(example), "--no-plot", "--positive", "positive"])
    p, y = _probs_labels(example)
    assert pos["view"] == "P(y=positive)"
    assert pos["metrics"]["ece"] == pytest.approx(metrics.ece(p[:, 1], y), abs=1e-9)
    scen = {r.get("scenario") for r in pos["reliability_table"] if r["count"]}
    assert len(scen) > 1  # both low- and high-probability bins appear in the P(y=1) view


def test_evaluate_other_formats_and_columns(capsys, tmp_path: Path, example: Path) -> None:
    p, y = _probs_labels(example)
    base = _run_json(capsys, ["evaluate", str(example), "--no-plot"])["metrics"]
    df = pd.DataFrame({"gold": y, "m_a": np.log(p[:, 0]), "m_b": np.log(p[:, 1])})
    pq = tmp_path / "logits.parquet"
    df.to_parquet(pq)
    out = _run_json(
        capsys,
        ["evaluate", str(pq), "--no-plot", "--label-col", "gold", "--logit-cols", "m_a,m_b"],
    )
    for k in ("ece", "accuracy", "brier", "nll"):
        assert out["metrics"][k] == pytest.approx(base[k], abs=1e-9)
    jl = tmp_path / "binary.jsonl"
    pd.DataFrame({"label": y, "prob": p[:, 1]}).to_json(jl, orient="records", lines=True)
    out = _run_json(capsys, ["evaluate", str(jl), "--no-plot"])
    assert out["metrics"]["ece"] == pytest.approx(base["ece"], abs=1e-6)


def test_evaluate_errors(capsys, tmp_path: Path, example: Path) -> None:
    assert main(["evaluate", str(tmp_path / "missing.csv")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("label,prob_a,prob_b\na,0.5,0.6\n")
    assert main(["evaluate", str(bad), "--no-plot"]) == 2
    assert "sum to 1" in capsys.readouterr().err
    nolabel = tmp_path / "nolabel.csv"
    nolabel.write_text("prob_a,prob_b\n0.5,0.5\n")
    assert main(["evaluate", str(nolabel), "--no-plot"]) == 2
    assert "label column 'label' not in the table" in capsys.readouterr().err
    assert main(["evaluate", str(example), "--bins", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["evaluate", str(example), "--binning", "nope"])


def test_python_m_calibkit_evaluate_subprocess(example: Path) -> None:
    env = {**os.environ, "COLUMNS": "120"}
    res = subprocess.run(
        [sys.executable, "-m", "calibkit", "evaluate", str(example), "--json", "--no-plot"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    p, y = _probs_labels(example)
    assert out["metrics"]["ece"] == pytest.approx(metrics.ece(p, y, n_bins=15), abs=1e-9)


# ---------------------------------------------------------------------- fit / apply
METHODS = ["temperature", "vector", "matrix", "platt", "isotonic", "histogram", "beta", "dirichlet"]


@pytest.mark.parametrize("method", METHODS)
def test_fit_apply_roundtrip_reproduces_predict_proba(
    capsys, tmp_path: Path, dev: Path, example: Path, method: str
) -> None:
    cal_path = tmp_path / "cal.json"
    rep = _run_json(capsys, ["fit", str(dev), "--method", method, "-o", str(cal_path)])
    assert rep["method"] == method and cal_path.is_file()
    before, after = rep["fit"]["before"], rep["fit"]["after"]
    if method in ("temperature", "vector", "matrix", "platt", "dirichlet", "beta"):
        # likelihood fits with the identity map inside the family: NLL cannot get worse
        assert after["nll"] <= before["nll"] + 1e-9
    out_csv = tmp_path / "out.csv"
    res = _run_json(capsys, ["apply", str(cal_path), str(example), "-o", str(out_csv)])
    assert res["columns"] == ["prob_negative", "prob_positive"]
    got = pd.read_csv(out_csv)
    assert list(got.columns) == ["id", "label", "prob_negative", "prob_positive", "calibrated_by"]
    assert got["calibrated_by"].nunique() == 1 and res["fingerprint"] == got["calibrated_by"][0]
    # reference: the saved calibrator applied to the raw columns in Python
    cal = load(cal_path)
    p, y = _probs_labels(example)
    # the file's rows sum to 1 up to its 8 printed digits; Scores renormalises them exactly
    x = np.log(p) if cal.input_kind == "logits" else p / p.sum(1, keepdims=True)
    ref = cal.predict_proba(x)
    np.testing.assert_allclose(got[["prob_negative", "prob_positive"]].to_numpy(), ref, atol=1e-9)
    assert res["ece_after"] == pytest.approx(metrics.ece(ref, y), abs=1e-6)
    assert res["ece_before"] == pytest.approx(metrics.ece(p, y), abs=1e-9)


def test_fit_rich_output_eval_and_plot(capsys, tmp_path: Path, dev: Path, example: Path) -> None:
    capsys.readouterr()
    png = tmp_path / "ba.png"
    argv = ["fit", str(dev), "-m", "temperature", "-o", str(tmp_path / "t.json")]
    assert main([*argv, "--eval", str(example), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "temperature_" in text and "Before" in text and "After" in text
    assert "held-out" in text
    assert png.read_bytes().startswith(b"\x89PNG")
    rep = _run_json(capsys, [*argv, "--eval", str(example)])
    p, y = _probs_labels(example)
    assert rep["eval"]["before"]["ece"] == pytest.approx(metrics.ece(p, y), abs=1e-9)
    t = load(tmp_path / "t.json").temperature_
    p_t = np.exp(np.log(p) / t)
    p_t /= p_t.sum(1, keepdims=True)
    assert rep["eval"]["after"]["ece"] == pytest.approx(metrics.ece(p_t, y), abs=1e-9)


def test_fit_params_and_errors(capsys, tmp_path: Path, dev: Path) -> None:
    out = tmp_path / "h.json"
    rep = _run_json(
        capsys, ["fit", str(dev), "-m", "histogram", "--param", "n_bins=5", "-o", str(out)]
    )
    assert rep["params"] == {"n_bins": 5}
    assert load(out).n_bins == 5
    assert main(["fit", str(dev), "-m", "histogram", "--param", "nope=1", "-o", str(out)]) == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", str(dev), "-m", "magic", "-o", str(out)])
    with pytest.raises(SystemExit):
        main(["fit", str(dev), "-m", "temperature", "--param", "novalue", "-o", str(out)])


def test_apply_keeps_columns_reorders_classes_and_checks_shape(
    capsys, tmp_path: Path, dev: Path, example: Path
) -> None:
    cal_path = tmp_path / "cal.json"
    _run_json(capsys, ["fit", str(dev), "-m", "platt", "-o", str(cal_path)])
    ref_csv = tmp_path / "ref.csv"
    _run_json(capsys, ["apply", str(cal_path), str(example), "-o", str(ref_csv)])
    ref = pd.read_csv(ref_csv)
    # the same scores with columns swapped, an extra text column, no labels, JSONL out
    df = pd.read_csv(example)
    swapped = df[["id", "prob_positive", "prob_negative"]].assign(text="t")
    src = tmp_path / "swapped.parquet"
    swapped.to_parquet(src)
    out = tmp_path / "out.jsonl"
    res = _run_json(capsys, ["apply", str(cal_path), str(src), "-o", str(out), "--keep-scores"])
    assert "ece_after" not in res  # unlabeled
    got = pd.read_json(out, lines=True)
    assert list(got.columns) == [
        "id",
        "uncal_prob_positive",
        "uncal_prob_negative",
        "text",
        "prob_negative",
        "prob_positive",
        "calibrated_by",
    ]
    np.testing.assert_allclose(got["prob_positive"], ref["prob_positive"], atol=1e-12)
    np.testing.assert_allclose(got["uncal_prob_positive"], df["prob_positive"], atol=1e-12)
    # a 3-class file cannot be calibrated by a 2-class calibrator
    three = tmp_path / "three.csv"
    three.write_text("label,prob_a,prob_b,prob_c\na,0.2,0.3,0.5\n")
    assert main(["apply", str(cal_path), str(three), "-o", str(tmp_path / "x.csv")]) == 2
    assert "fitted on 2 classes" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    other.write_text("label,prob_x,prob_y\nx,0.2,0.8\n")
    assert main(["apply", str(cal_path), str(other), "-o", str(tmp_path / "x.csv")]) == 2
    assert "differ from the calibrator's" in capsys.readouterr().err
    assert main(["apply", str(tmp_path / "none.json"), str(example), "-o", "x.csv"]) == 2


def test_readme_example_runs(capsys, example: Path, tmp_path: Path, monkeypatch) -> None:
    """`calibkit evaluate examples/sst2_scores.csv` gives a table and writes nothing."""
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(example)]) == 0
    assert "ECE" in capsys.readouterr().out
    assert sorted(f.name for f in tmp_path.iterdir()) == [example.name]


@pytest.mark.slow
def test_example_files_are_reproduced_by_the_script(data_dir: Path, tmp_path: Path) -> None:
    """The shipped example CSVs are exactly what examples/make_example_scores.py writes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mk", EXAMPLES / "make_example_scores.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (
        mod.main(["--data", str(data_dir / "sst2" / "sst2.csv"), "--out-dir", str(tmp_path)]) == 0
    )
    for name in ("sst2_scores.csv", "sst2_dev_scores.csv"):
        new, shipped = pd.read_csv(tmp_path / name), pd.read_csv(EXAMPLES / name)
        assert new[["id", "label"]].equals(shipped[["id", "label"]])
        np.testing.assert_allclose(
            new[["prob_negative", "prob_positive"]],
            shipped[["prob_negative", "prob_positive"]],
            atol=1e-7,
        )
        src = pd.read_csv(data_dir / "sst2" / "sst2.csv")
        split = "test" if name == "sst2_scores.csv" else "dev"
        assert new["label"].tolist() == src.loc[src["split"] == split, "label"].tolist()


def test_apply_a_calibrator_saved_from_python(capsys, tmp_path: Path, example: Path) -> None:
    from calibkit.calibrators import TemperatureScaling

    p, y = _probs_labels(example)
    cal = TemperatureScaling().fit(np.log(p), y)
    cal.save(tmp_path / "py.json")  # no class names recorded: columns are taken in file order
    out = tmp_path / "o.parquet"
    _run_json(capsys, ["apply", str(tmp_path / "py.json"), str(example), "-o", str(out)])
    got = pd.read_parquet(out)[["prob_negative", "prob_positive"]].to_numpy()
    np.testing.assert_allclose(got, cal.predict_proba(np.log(p)), atol=1e-12)
    nolabel = tmp_path / "nolabel.csv"
    pd.read_csv(example).drop(columns="label").to_csv(nolabel, index=False)
    assert main(["fit", str(nolabel), "-o", str(tmp_path / "x.json")]) == 2
    assert "label column 'label' not in the table" in capsys.readouterr().err
