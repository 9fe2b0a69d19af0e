"""Tests of calibkit.datasets against the real files in ../shared/data.

Expected row counts and label sets come from the data folder's README (an independent record of
the files), not from running the loaders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from calibkit import datasets
from calibkit.datasets import MCQItem


@pytest.mark.parametrize(
    ("name", "rows", "n_labels"),
    [
        ("subj", 10_000, 2),
        ("cr", 3_771, 2),
        ("sst2", 9_613, 2),
        ("trec", 5_952, 6),
        ("banking77", 13_083, 77),
        ("twitter_complaints", 3_449, 2),
        ("ddxplus_sample", 686, None),
    ],
)
def test_load_classification_counts_and_columns(data_dir, name, rows, n_labels):
    df = datasets.load_classification(name, data_dir=data_dir)
    assert list(df.columns[:4]) == ["text", "label", "label_id", "split"]
    assert len(df) == rows
    if n_labels is not None:
        assert df["label"].nunique() == n_labels
    # label <-> label_id is one-to-one
    pairs = df[["label", "label_id"]].drop_duplicates()
    assert len(pairs) == df["label"].nunique() == df["label_id"].nunique()
    assert df["text"].map(type).eq(str).all()


def test_classification_matches_raw_csv(data_dir):
    raw = pd.read_csv(data_dir / "cr" / "cr.csv")
    df = datasets.load_classification("cr", data_dir=data_dir)
    assert df["text"].tolist() == raw["text"].astype(str).tolist()
    assert df["label_id"].tolist() == raw["label_id"].tolist()
    test = datasets.load_classification("cr", split="test", data_dir=data_dir)
    assert len(test) == int((raw["split"] == "test").sum())
    assert set(test["split"]) == {"test"}


def test_classification_split_errors_and_no_split(data_dir):
    subj = datasets.load_classification("subj", data_dir=data_dir)
    assert set(subj["split"]) == {"all"}
    assert dict(zip(subj["label"], subj["label_id"], strict=True)) == {
        "objective": 0,
        "subjective": 1,
    }
    with pytest.raises(ValueError, match="no split 'train'"):
        datasets.load_classification("subj", split="train", data_dir=data_dir)
    with pytest.raises(ValueError, match="unknown classification dataset"):
        datasets.load_classification("imdb", data_dir=data_dir)
    # trec has no label_id column: ids are the sorted label names' indices
    trec = datasets.load_classification("trec", data_dir=data_dir)
    names = sorted(trec["label"].unique())
    assert (trec["label_id"] == trec["label"].map(names.index)).all()


@pytest.mark.parametrize(
    ("name", "split", "rows"),
    [
        ("arc_challenge", "test", 1_172),
        ("arc_challenge", "validation", 299),
        ("arc_easy", "test", 2_376),
        ("mmlu", "test", 14_042),
        ("medmcqa", "validation", 4_183),
        ("openbookqa", "test", 500),
    ],
)
def test_load_mcq_counts(data_dir, name, split, rows):
    items = datasets.load_mcq(name, split=split, data_dir=data_dir)
    assert len(items) == rows
    assert all(isinstance(it, MCQItem) for it in items)
    assert all(0 <= it.answer < len(it.choices) for it in items)
    assert len({it.id for it in items}) == rows  # ids are unique


def test_mcq_items_match_raw_jsonl(data_dir):
    path = data_dir / "arc_challenge" / "arc_challenge_test.jsonl"
    raw = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    items = datasets.load_mcq("arc_challenge", split="test", data_dir=data_dir)
    for r, it in zip(raw, items, strict=True):
        assert it.question == r["question"] and list(it.choices) == r["choices"]
        assert it.answer == r["answer"] and it.answer_letter == r["answer_letter"]
        assert it.id == r["id"]
    # ARC has a few 3- and 5-option questions (README)
    assert {len(it.choices) for it in items} >= {3, 4, 5}
    both = datasets.load_mcq("arc_challenge", data_dir=data_dir)
    assert len(both) == 1_172 + 299
    with pytest.raises(ValueError, match="no split"):
        datasets.load_mcq("medmcqa", split="test", data_dir=data_dir)


def test_load_pairs(data_dir):
    uf = datasets.load_pairs("ultrafeedback", data_dir=data_dir)
    assert len(uf) == 1_193 and list(uf.columns[:3]) == ["prompt", "chosen", "rejected"]
    hh = datasets.load_pairs("hh_rlhf", data_dir=data_dir)
    assert len(hh) == 2_308
    assert hh["prompt"].str.endswith("Assistant:").all()


def test_mcq_item_validation():
    with pytest.raises(ValueError, match="out of range"):
        MCQItem("q", ("a", "b"), 2)
    with pytest.raises(ValueError, match=">= 2 choices"):
        MCQItem("q", ("a",), 0)


def test_default_data_dir_env_and_search(monkeypatch, tmp_path, data_dir):
    monkeypatch.setenv("CALIBKIT_DATA", str(data_dir))
    assert datasets.default_data_dir() == data_dir
    monkeypatch.setenv("CALIBKIT_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="CALIBKIT_DATA"):
        datasets.default_data_dir()
    monkeypatch.delenv("CALIBKIT_DATA")
    fake = tmp_path / "proj" / "shared" / "data"
    fake.mkdir(parents=True)
    deep = tmp_path / "proj" / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert datasets.default_data_dir() == fake
    with pytest.raises(FileNotFoundError, match="data_dir"):
        datasets.load_classification("subj", data_dir=tmp_path / "nope")


def test_bundled_subj_sample_is_real_and_balanced(data_dir):
    sample = datasets.load_bundled_sample("subj")
    assert len(sample) == 300
    assert sample["label"].value_counts().to_dict() == {"objective": 150, "subjective": 150}
    assert not sample["text"].duplicated().any()
    full = datasets.load_classification("subj", data_dir=data_dir)
    lookup = dict(zip(full["text"], full["label"], strict=False))
    assert all(lookup.get(t) == lab for t, lab in zip(sample["text"], sample["label"], strict=True))


def test_bundled_arc_sample_is_real(data_dir):
    sample = datasets.load_bundled_sample("arc_challenge")
    assert len(sample) == 100
    full = {it.id: it for it in datasets.load_mcq("arc_challenge", split="test", data_dir=data_dir)}
    for it in sample:
        ref = full[it.id]
        assert (it.question, it.choices, it.answer) == (ref.question, ref.choices, ref.answer)
    with pytest.raises(ValueError, match="unknown bundled"):
        datasets.load_bundled_sample("mmlu")


def test_bundled_sample_files_are_documented():
    import calibkit

    data = Path(calibkit.__file__).parent / "data"
    readme = (data / "README.md").read_text()
    for f in data.iterdir():
        if f.suffix in (".csv", ".jsonl"):
            assert f.name in readme
    assert "license" in readme.lower()


def test_list_datasets():
    known = datasets.list_datasets()
    assert "subj" in known["classification"] and "mmlu" in known["mcq"]
    assert "hh_rlhf" in known["pairs"]


def test_read_classification_file_maps_columns_and_names_bad_rows(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text("q,lab,part\nhello there,A,train\nsecond one,B,test\n")
    df = datasets.read_classification_file(p, text_column="q", label_column="lab",
                                           split_column="part")  # fmt: skip
    assert df[["text", "label", "split", "row"]].values.tolist() == [
        ["hello there", "A", "train", 0],
        ["second one", "B", "test", 1],
    ]
    with pytest.raises(ValueError, match="no column 'label'"):
        datasets.read_classification_file(p, text_column="q")
    p.write_text("q,lab\nfine,A\nempty label,\n")
    with pytest.raises(ValueError, match=r"mine\.csv: row 1: empty label in column 'lab'"):
        datasets.read_classification_file(p, text_column="q", label_column="lab")
    j = tmp_path / "mine.jsonl"
    j.write_text(json.dumps({"text": "a", "label": 1}) + "\n")
    assert datasets.read_classification_file(j)["label"].tolist() == ["1"]
    with pytest.raises(ValueError, match=r"use a \.csv"):
        datasets.read_classification_file(p.rename(tmp_path / "mine.txt"))


def test_user_multiple_choice_file_feeds_the_finetune_splits(tmp_path):
    from calibkit.finetune.data import load_mcq_examples

    p = tmp_path / "quiz.jsonl"
    rows = [{"question": f"q{i}", "choices": ["a", "b", "c", "d"], "answer": i % 4}
            for i in range(5)]  # fmt: skip
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    exs = load_mcq_examples(str(p))
    assert [e.answer for e in exs] == [0, 1, 2, 3, 0] and exs[0].source == "quiz"
    assert len({e.id for e in exs}) == 5
    p.write_text(json.dumps({"question": "q", "choices": ["a", "b"], "answer": "B"}) + "\n")
    with pytest.raises(ValueError, match="row 0: 'answer'"):
        datasets.load_mcq_file(p)
