"""Slow: ``calibkit demo`` end to end with the real SmolLM2 on a reduced number of items."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

FIXTURE = Path(__file__).parent / "fixtures" / "ensemble" / "sst2__smollm2-fs.parquet"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_demo_cli_end_to_end(tmp_path, capsys):
    from sklearn.metrics import roc_auc_score

    from calibkit.calibrators import TemperatureScaling
    from calibkit.cli.demo import _split_halves
    from calibkit.cli.main import main
    from calibkit.metrics import nll
    from calibkit.scores import Scores

    out = tmp_path / "out"
    cache = tmp_path / "demo.sqlite"
    argv = ["demo", "--n", "24", "--out", str(out), "--cache", str(cache)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for word in ("uncalibrated", "temperature", "auto (->", "AUROC", "ECE", "Accuracy"):
        assert word in printed
    assert "Diagnostics" in printed
    result = json.loads((out / "metrics.json").read_text())
    assert result["dataset"].startswith("SST-2") and result["mode"] == "next_token"
    assert result["n_items"] == 24 and result["n_calibration"] + result["n_test"] == 24
    assert (out / "reliability.png").stat().st_size > 1000
    assert set(result["findings"]) == {"uncalibrated", "temperature", "auto"}
    for method in ("uncalibrated", "temperature", "auto"):
        m = result["metrics"][method]
        assert 0.0 <= m["ece"] <= 1.0 and 0.0 <= m["accuracy"] <= 1.0 and m["nll"] > 0
    # temperature scaling preserves the argmax: same accuracy before and after
    assert (
        result["metrics"]["temperature"]["accuracy"]
        == result["metrics"]["uncalibrated"]["accuracy"]
    )

    # the bundled sample, prompt and examples are calibkit cascade's smollm2-fs labeler: the
    # demo's scores reproduce the committed fixture's for the same items
    scores = Scores.load(out / "scores.parquet")
    ref = Scores.load(FIXTURE)
    pos = {str(i): k for k, i in enumerate(ref.ids)}
    rows = [pos[str(i)] for i in scores.ids]
    np.testing.assert_allclose(scores.logits, ref.logits[rows], atol=2e-3)
    assert list(scores.require_labels()) == list(ref.require_labels()[rows])

    # AUROC of confidence for correctness on the test half, against scikit-learn
    cal, test = _split_halves(len(scores), 0, scores.require_labels())
    st = scores.subset(test)
    correct = st.probs.argmax(1) == st.require_labels()
    if 0 < correct.sum() < len(correct):
        assert np.isclose(
            result["metrics"]["uncalibrated"]["auroc"],
            roc_auc_score(correct, st.probs.max(1)),
        )

    # the saved scores reproduce the fitted temperature, and on the calibration half the fitted
    # T cannot have a higher NLL than T = 1 (it minimises that NLL)
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


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_demo_subj_zero_shot_runs(tmp_path, capsys):
    from calibkit.cli.main import main

    out = tmp_path / "out"
    argv = ["demo", "--task", "subj", "--n", "20", "--out", str(out), "--no-cache"]
    assert main([*argv, "--max-new-tokens", "2", "--no-plots"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["dataset"].startswith("SUBJ") and result["n_items"] == 20
    assert "auto (->" in capsys.readouterr().out


def test_demo_rejects_bad_n(tmp_path):
    from calibkit.cli.demo import run_demo

    with pytest.raises(ValueError, match="--n"):
        run_demo(n=5, out=tmp_path)
    with pytest.raises(ValueError, match="task"):
        run_demo(n=30, out=tmp_path, task="classify")
