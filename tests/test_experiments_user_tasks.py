"""Every experiment on a user's own data (a CSV + a task file) with any model spec.

The data is a slice of TREC (not one of the experiments' built-in tasks) written to a CSV with
the user's own column names; the model is the toy LLM of ``toy_llm.py``, either registered as a
backend prefix from outside the package (``toy:``) or served over the OpenAI protocol by a local
stub server (``openai:<url>::<model>``), so the same commands run against an HTTP model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from calibkit import Scores
from calibkit.cli.main import main
from calibkit.scoring.backends import registry as reg
from toy_llm import ToyLLM, toy_server


@pytest.fixture
def toy_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))
    reg.register_backend("toy", lambda target, **kw: ToyLLM(target))


@pytest.fixture(params=["toy", "http"])
def model(request: pytest.FixtureRequest, toy_prefix: None) -> Iterator[str]:
    """A model spec: the registered toy backend, or the toy behind a local OpenAI server."""
    if request.param == "toy":
        yield "toy:m"
        return
    pytest.importorskip("requests")
    with toy_server() as srv:
        yield f"openai:{srv.url}::toy-model?max_retries=0&timeout=10"


@pytest.fixture
def user_files(tmp_path: Path, data_dir: Path) -> dict[str, Path]:
    """``questions.csv`` (TREC rows, user column names) and three task files beside it."""
    trec = pd.read_csv(data_dir / "trec" / "trec.csv", keep_default_na=False)
    part = pd.concat([trec[trec.split == "train"].iloc[:420], trec[trec.split == "test"].iloc[:80]])
    csv = tmp_path / "questions.csv"
    part.rename(columns={"text": "question", "label": "coarse", "split": "part"})[
        ["question", "coarse", "part"]
    ].to_csv(csv, index=False)
    data = {"path": "questions.csv", "text_column": "question", "label_column": "coarse",
            "split_column": "part"}  # fmt: skip
    tasks = {
        "trec_coarse": {
            "classes": ["abbreviation", "entity", "description", "person", "location", "number"],
            "question": "What kind of answer does this question ask for?",
            "text_kind": "Question",
            "data": {**data, "class_labels": ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"]},
        },
        "asks_number": {
            "question": "Does this question ask for a number?",
            "text_kind": "Question",
            "descriptions": {"yes": "a question answered by a number, a date or an amount",
                             "no": "a question answered by anything else"},
            "examples": {"yes": ["How many moons has Mars?"], "no": ["Who wrote Hamlet?"]},
            "data": {**data, "positive": ["NUM"]},
        },
        "asks_person": {
            "question": "Does this question ask about a person?",
            "text_kind": "Question",
            "data": {**data, "positive": ["HUM"]},
        },
    }  # fmt: skip
    out = {"csv": csv}
    for name, t in tasks.items():
        out[name] = tmp_path / f"{name}.yaml"
        out[name].write_text(yaml.safe_dump(t))
    return out


def test_fill_gaps_on_a_user_task(user_files: dict[str, Path], model: str, tmp_path: Path) -> None:
    out = tmp_path / "fg"
    argv = ["experiment", "fill-gaps", "--task", str(user_files["asks_number"]),
            "--data", str(user_files["csv"]), "--model", model, "--seeds", "1", "--bins", "5",
            "--threshold", "0", "--max-targets", "4", "--eval-bins", "5", "--batch-size", "4",
            "--output-dir", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    raw = pd.read_csv(out / "raw.csv")
    assert set(raw.dataset) == {"asks_number"}
    assert {"Uncalibrated", "Isotonic", "Real N", "Synthesis", "Synthesis+"} <= set(raw.method)
    syn = raw[raw.method == "Synthesis"].iloc[0]
    assert syn.s1 == 4 and syn.gen_requests == 4 and syn.gen_generated > 0  # the model ran
    assert syn.gen_failed_generation == 0
    assert "asks_number" in (out / "report.md").read_text()


def test_fill_gaps_refuses_a_multiclass_task(user_files: dict[str, Path], toy_prefix: None) -> None:
    argv = ["experiment", "fill-gaps", "--task", str(user_files["trec_coarse"]),
            "--model", "toy:m", "--no-progress"]  # fmt: skip
    assert main(argv) == 2


class HashEmbedder:
    """A cheap stand-in for the sentence embedder (SIM-OOT needs some task embedding; the real
    one is tested in test_selection and test_label_efficiency)."""

    def __init__(self, model: object = None, **kw: object) -> None:
        pass

    def encode(self, texts: list[str]) -> np.ndarray:
        from sklearn.feature_extraction.text import HashingVectorizer

        x = HashingVectorizer(n_features=64, norm="l2").transform(list(texts)).toarray()
        return np.asarray(x, dtype=np.float64)


def _le_config(tmp_path: Path, model: str) -> Path:
    cfg = {
        "output_dir": str(tmp_path / "le_out"),
        "scores_dir": str(tmp_path / "le_scores"),
        "models": [model],
        "tasks": ["trec_coarse.yaml", "asks_number.yaml", "asks_person.yaml"],  # beside it
        "n_per_task": 60,
        "shots": [10],
        "seeds": 1,
        "ace_bins": 5,
        "batch_size": 8,
    }
    p = tmp_path / "le.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_label_efficiency_on_user_tasks(
    user_files: dict[str, Path], model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("calibkit.selection.embedding.SentenceEmbedder", HashEmbedder)
    cfg = _le_config(tmp_path, model)
    argv = ["experiment", "label-efficiency", "--config", str(cfg), "--quiet"]
    assert main(argv) == 0
    mdir = next(p for p in (tmp_path / "le_out").iterdir() if p.is_dir())
    summ = pd.read_csv(mdir / "summary.csv")
    assert (summ.n_tasks == 3).all()
    assert {"uncalibrated", "ALL-OOT", "SIM-OOT", "U", "SE", "IE"} == set(summ.strategy)
    stored = Scores.load(next((tmp_path / "le_scores").glob("*/trec_coarse.parquet")))
    assert stored.classes[-1] == "number" and len(stored) == 60
    assert stored.meta["task_fingerprint"]
    # stored scores are reused as they are ...
    assert main([*argv, "--no-score"]) == 0
    # ... but never for an edited task file
    f = user_files["asks_person"]
    f.write_text(f.read_text().replace("about a person", "about a person or a group"))
    assert main([*argv, "--no-score"]) == 2


def test_cascade_on_user_tasks(user_files: dict[str, Path], model: str, tmp_path: Path) -> None:
    # two labelers of the same kind (distinct names, so distinct cache keys)
    spec_a, spec_b = (model.replace("toy:m", f"toy:{x}").replace("toy-model", f"toy-{x}")
                      for x in ("a", "b"))  # fmt: skip
    tasks = f"{user_files['asks_number']},{user_files['asks_person']}"
    argv = ["experiment", "cascade", "--tasks", tasks, "--model", f"small={spec_a}",
            "--model", f"large={spec_b}", "--shots", "2", "--n-per-task", "40",
            "--time-items", "4", "--threads", "0", "--repeats", "1", "--bins", "2",
            "--trials", "4", "--splits", "2", "--fixtures", str(tmp_path / "fx"),
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0
    s = Scores.load(tmp_path / "fx" / "asks_number__small.parquet")
    assert len(s) == 40 and s.meta["shots"] == 2 and s.meta["flops_per_item"] is None
    table = (tmp_path / "out" / "cascade_table.md").read_text()
    assert "cost = seconds" in table and "Cascading (cal.)" in table
    # a FLOPs cost cannot be made up for a model without local weights
    with pytest.raises(ValueError, match="--cost seconds"):
        from calibkit.experiments.cascade_analysis import load_fixtures

        load_fixtures(tmp_path / "fx", ["asks_number"], ["small", "large"], order_by="flops")


def test_cascade_refuses_a_multiclass_task(user_files: dict[str, Path], toy_prefix: None) -> None:
    argv = ["experiment", "cascade", "--tasks", str(user_files["trec_coarse"]), "--model",
            "toy:m", "--stage", "score"]  # fmt: skip
    assert main(argv) == 2
