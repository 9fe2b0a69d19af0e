"""Slow: ``calibkit demo`` end to end with the real SmolLM2 on a reduced number of items."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("matplotlib")


@pytest.mark.filterwarnings("ignore:TemperatureScaling:UserWarning")
def test_demo_cli_end_to_end(tmp_path, capsys):
    from calibkit.calibrators import TemperatureScaling
    from calibkit.cli.demo import _split_halves
    from calibkit.cli.main import main
    from calibkit.metrics import nll
    from calibkit.scores import Scores

    out = tmp_path / "out"
    cache = tmp_path / "demo.sqlite"
    argv = ["demo", "--n", "24", "--out", str(out), "--cache", str(cache), "--max-new-tokens", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for word in ("uncalibrated", "temperature", "vector scaling", "ECE", "ACE", "Accuracy"):
        assert word in printed
    result = json.loads((out / "metrics.json").read_text())
    assert result["n_items"] == 24 and result["n_calibration"] + result["n_test"] == 24
    assert (out / "reliability.png").stat().st_size > 1000
    for method in ("uncalibrated", "temperature", "vector"):
        m = result["metrics"][method]
        assert 0.0 <= m["ece"] <= 1.0 and 0.0 <= m["accuracy"] <= 1.0 and m["nll"] > 0
    # temperature scaling preserves the argmax: same accuracy before and after
    assert (
        result["metrics"]["temperature"]["accuracy"]
        == result["metrics"]["uncalibrated"]["accuracy"]
    )

    # the saved scores reproduce the fitted temperature, and on the calibration half the fitted
    # T cannot have a higher NLL than T = 1 (it minimises that NLL)
    scores = Scores.load(out / "scores.parquet")
    cal, _ = _split_halves(len(scores), 0, scores.require_labels())
    sc = scores.subset(cal)
    ts = TemperatureScaling().fit(sc.logits, sc.require_labels())
    assert np.isclose(ts.temperature_, result["temperature"], rtol=1e-6)
    assert (
        nll(ts.predict_proba(sc.logits), sc.require_labels())
        <= nll(sc.probs, sc.require_labels()) + 1e-9
    )

    # a second run reads every score from the cache
    assert main(argv) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["metrics"] == result["metrics"]
    assert again["timings"]["score_s"] < max(5.0, result["timings"]["score_s"] / 5)


def test_demo_rejects_bad_n(tmp_path):
    from calibkit.cli.demo import run_demo

    with pytest.raises(ValueError, match="--n"):
        run_demo(n=5, out=tmp_path)
