"""One task model (calibkit.tasks): task files, validation, data sources, the built-in suites."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from calibkit.tasks import DataSource, TaskSpec, load_task, load_task_frame, save_task

TREC_TASK = {
    "name": "trec_coarse",
    "classes": ["abbreviation", "entity", "description", "person", "location", "number"],
    "question": "What kind of answer does this question ask for?",
    "text_kind": "Question",
    "descriptions": {"person": "a question about a person or a group of people"},
    "examples": {"number": ["How many people live in Chile?"]},
    "data": {
        "path": "questions.csv",
        "text_column": "question",
        "label_column": "coarse",
        "class_labels": ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"],
    },
}


def _questions(folder: Path) -> Path:
    rows = [
        ("What does NASA stand for?", "ABBR"),
        ("What is a tuxedo?", "DESC"),
        ("Who wrote Hamlet?", "HUM"),
        ("Where is Lima?", "LOC"),
        ("How many moons has Mars?", "NUM"),
        ("What fruit is yellow?", "ENTY"),
    ]
    p = folder / "questions.csv"
    pd.DataFrame(rows, columns=["question", "coarse"]).to_csv(p, index=False)
    return p


def test_task_file_round_trip_and_relative_data_path(tmp_path: Path) -> None:
    _questions(tmp_path)
    f = tmp_path / "trec.yaml"
    f.write_text(yaml.safe_dump(TREC_TASK))
    spec = load_task(f)
    assert spec.classes[3] == "person" and spec.data is not None
    assert spec.data.path == str(tmp_path / "questions.csv")  # relative to the task file
    assert spec.examples["number"] == ("How many people live in Chile?",)
    for suffix in (".yaml", ".json"):
        again = load_task(save_task(spec, tmp_path / f"copy{suffix}"))
        assert again == spec
    frame = load_task_frame(spec)
    assert frame["label"].tolist() == [0, 2, 3, 4, 5, 1]
    assert frame["row"].tolist() == list(range(6)) and set(frame["split"]) == {"all"}


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    f = tmp_path / "my_task.json"
    f.write_text(json.dumps({"classes": ["a", "b"]}))
    assert load_task(f).name == "my_task"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"data": {"path": "q.csv", "text_col": "x"}}, "unknown field 'data.text_col'"),
        ({"classes": ["a", "a"]}, "field 'classes'"),
        ({"classes": "ab"}, "field 'classes'"),
        ({"descriptions": {"robot": "x"}}, "unknown classes"),
        ({"data": {"path": "q.csv", "class_labels": ["A", "B"]}}, "data.class_labels"),
        ({"data": {"path": "q.csv", "positive": ["NUM"]}}, "data.positive"),
        ({"data": {"path": "q.csv", "dataset": "trec"}}, "exactly one of"),
        ({"data": {"path": "q.csv", "unknown_labels": "ignore"}}, "data.unknown_labels"),
        ({"data": {"path": "q.csv", "positive_fraction": 1.5}}, "data.positive_fraction"),
        ({"question": 3}, "field 'question'"),
    ],
)
def test_task_file_errors_name_the_file_and_the_field(
    tmp_path: Path, change: dict, match: str
) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump({**TREC_TASK, **change}))
    with pytest.raises(ValueError, match=match) as e:
        load_task(f)
    assert str(f) in str(e.value)


def test_unparsable_and_missing_task_files(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("classes: [a, b\n")
    with pytest.raises(ValueError, match=str(f)):
        load_task(f)
    f.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_task(f)
    with pytest.raises(FileNotFoundError):
        load_task(tmp_path / "nope.yaml")


def test_a_label_of_no_class_is_an_error_naming_file_and_row(tmp_path: Path) -> None:
    p = _questions(tmp_path)
    df = pd.read_csv(p)
    df.loc[4, "coarse"] = "NUMBER"  # a typo in the user's file
    df.to_csv(p, index=False)
    spec = TaskSpec.from_dict(TREC_TASK, base_dir=tmp_path)
    with pytest.raises(ValueError, match=r"questions\.csv: row 4: label 'NUMBER'"):
        load_task_frame(spec)
    assert spec.data is not None
    lenient = TaskSpec(**{**spec.__dict__, "data": DataSource(**{**spec.data.__dict__,
                                                                "unknown_labels": "drop"})})  # fmt: skip
    frame = load_task_frame(lenient)
    assert frame["row"].tolist() == [0, 1, 2, 3, 5]  # row 4 left out, ids stay stable


def test_yes_no_task_from_a_multiclass_column(tmp_path: Path) -> None:
    _questions(tmp_path)
    spec = TaskSpec.from_dict(
        {
            "name": "asks_number",
            "question": "Does this question ask for a number?",
            "data": {"path": "questions.csv", "text_column": "question",
                     "label_column": "coarse", "positive": ["NUM"]},
        },
        base_dir=tmp_path,
    )  # fmt: skip
    assert spec.classes == ("no", "yes")
    frame = load_task_frame(spec)
    assert frame["label"].tolist() == [0, 0, 0, 0, 1, 0]
    only = TaskSpec.from_dict(
        {**spec.to_dict(), "data": {**spec.to_dict()["data"], "negatives": ["HUM", "LOC"]}}
    )
    assert load_task_frame(only)["row"].tolist() == [2, 3, 4]


def test_integer_labels_map_through_class_labels(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in
                         [("good", 1), ("bad", 0), ("fine", 1)]))  # fmt: skip
    spec = TaskSpec(
        "s", ("negative", "positive"), data=DataSource(path=str(p), class_labels=("0", "1"))
    )
    assert load_task_frame(spec)["label"].tolist() == [1, 0, 1]
    plain = TaskSpec("s", ("negative", "positive"), data=DataSource(path=str(p)))
    with pytest.raises(ValueError, match="class_labels"):
        load_task_frame(plain)


def test_examples_from_data_fill_only_missing_classes() -> None:
    spec = TaskSpec("t", ("a", "b"), examples={"a": ("given",)})
    texts = [f"text {i}" for i in range(10)]
    filled = spec.with_examples_from(texts, [i % 2 for i in range(10)], seed=0)
    assert filled.examples["a"] == ("given",) and len(filled.examples["b"]) == 3
    assert all(int(t.split()[1]) % 2 == 1 for t in filled.examples["b"])


def test_one_task_type_everywhere() -> None:
    import calibkit.synthetic as syn
    from calibkit.experiments import cascade, tasks
    from calibkit.tasks import TaskSpec as Canonical

    assert syn.TaskSpec is Canonical and tasks.TaskSpec is Canonical
    for table in (syn.TASKS, cascade.TASKS, tasks.TASKS):
        assert all(isinstance(t, Canonical) and t.data is not None for t in table.values())
        for t in table.values():  # every built-in task survives its own file format
            assert TaskSpec.from_dict(t.to_dict()) == t


def test_built_in_tasks_read_their_data(data_dir: Path) -> None:
    from calibkit.experiments.cascade import TASKS as CASCADE
    from calibkit.synthetic import get_task

    b77 = load_task_frame(get_task("banking77"), data_dir=data_dir)
    assert set(b77["source_label"]) == {"age_limit", "atm_support"}  # 75 intents dropped
    sst2 = load_task_frame(CASCADE["sst2"], data_dir=data_dir)
    raw = pd.read_csv(data_dir / "sst2" / "sst2.csv", keep_default_na=False)
    np.testing.assert_array_equal(sst2["label"], raw["label_id"])


def test_cascade_items_match_the_stored_fixtures(data_dir: Path) -> None:
    """sample_items on the TaskSpec data source draws the items the fixtures were scored on."""
    from calibkit import Scores
    from calibkit.experiments.cascade import DEMOS_PER_CLASS, sample_items

    fixtures = Path(__file__).parent / "fixtures" / "ensemble"
    files = sorted(fixtures.glob("*__smollm2-zs.parquet"))
    if not files:
        pytest.skip("no cascade fixtures")
    for f in files:
        s = Scores.load(f)
        _, labels, ids, demos = sample_items(
            s.meta["task"], int(s.meta["n_per_task"]), int(s.meta["seed"]), str(data_dir)
        )
        assert ids == [str(i) for i in s.ids], f.name
        assert [s.classes.index(y) for y in labels] == s.labels.tolist()
        # every class's DEMOS_PER_CLASS examples (8-shot labelers use all; 4-shot the prefix)
        assert len(demos) == DEMOS_PER_CLASS * len(s.classes)


def test_yes_and_no_in_a_task_file_are_class_names_not_booleans(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("classes: [no, yes]\ndescriptions:\n  yes: a match\n  no: anything else\n")
    spec = load_task(f)
    assert spec.classes == ("no", "yes") and spec.descriptions["yes"] == "a match"


def test_the_shipped_example_task_files_load(data_dir: Path) -> None:
    configs = Path(__file__).resolve().parents[1] / "configs"
    for f in sorted((configs / "tasks").glob("*.yaml")):
        spec = load_task(f)
        assert spec.data is not None and spec.question
        if Path(str(spec.data.path)).is_file():  # shared/ beside the checkout
            assert len(load_task_frame(spec)) == 5952
