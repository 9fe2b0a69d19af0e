"""calibkit.io: table reading/writing by suffix, score-column detection, label mapping, errors."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibkit import probs_to_logits, softmax
from calibkit.io import detect_score_columns, read_table, scores_from_table, write_table

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def probs3() -> np.ndarray:
    rng = np.random.default_rng(0)
    return softmax(rng.normal(size=(50, 3)) * 2.0)


@pytest.fixture
def table3(probs3: np.ndarray) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    classes = np.array(["ant", "bee", "cat"])
    df = pd.DataFrame(
        {"id": [f"x{i}" for i in range(50)], "label": classes[rng.integers(0, 3, 50)]}
    )
    for j, c in enumerate(classes):
        df[f"prob_{c}"] = probs3[:, j]
    df["text"] = "hello"
    return df


# ---------------------------------------------------------------------- read / write
@pytest.mark.parametrize(
    "name", ["t.csv", "t.tsv", "t.jsonl", "t.json", "t.parquet", "t.csv.gz", "t.jsonl.bz2"]
)
def test_write_read_roundtrip_every_format(tmp_path: Path, table3: pd.DataFrame, name: str) -> None:
    path = write_table(table3, tmp_path / name)
    back = read_table(path)
    assert list(back.columns) == list(table3.columns)
    assert back["id"].tolist() == table3["id"].tolist()
    np.testing.assert_allclose(
        back["prob_bee"].to_numpy(), table3["prob_bee"].to_numpy(), rtol=1e-12
    )
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


def test_read_json_accepts_records_and_lines(tmp_path: Path) -> None:
    rec = [{"label": 1, "prob": 0.7}, {"label": 0, "prob": 0.2}]
    (tmp_path / "a.json").write_text(json.dumps(rec))
    (tmp_path / "b.json").write_text("\n".join(json.dumps(r) for r in rec))
    for f in ("a.json", "b.json"):
        df = read_table(tmp_path / f)
        assert df["prob"].tolist() == [0.7, 0.2]


def test_read_table_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"suffix.*\.csv"):
        read_table(tmp_path / "scores.xlsx")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("label,prob\n")
    with pytest.raises(ValueError, match="no rows"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match=r"cannot parse .*bad\.jsonl"):
        read_table(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="Parquet"):
        read_table(tmp_path / "x.parquet.gz")


# ---------------------------------------------------------------------- detection
def test_detect_prob_logit_and_binary_layouts() -> None:
    s = detect_score_columns(["label", "prob_a", "prob_b", "text"])
    assert (s.kind, s.columns, s.classes) == ("probs", ("prob_a", "prob_b"), ("a", "b"))
    s = detect_score_columns(["p_x", "p_y", "p_z", "label"])
    assert (s.kind, s.classes) == ("probs", ("x", "y", "z"))
    s = detect_score_columns(["id", "label", "logit_0", "logit_1"])
    assert (s.kind, s.classes) == ("logits", ("0", "1"))
    s = detect_score_columns(["label", "score"])
    assert (s.kind, s.columns, s.classes) == ("binary_prob", ("score",), ("0", "1"))
    s = detect_score_columns(["label", "logit"])
    assert (s.kind, s.columns) == ("binary_logit", ("logit",))
    # a lone prob_x column is not a (n, K) layout: fall back to the binary name
    s = detect_score_columns(["label", "prob_only", "p"])
    assert (s.kind, s.columns) == ("binary_prob", ("p",))


def test_detect_explicit_columns_and_classes() -> None:
    cols = ["gold", "m1", "m2", "m3"]
    s = detect_score_columns(cols, logit_cols="m1, m2,m3", classes=["a", "b", "c"])
    assert (s.kind, s.columns, s.classes) == ("logits", ("m1", "m2", "m3"), ("a", "b", "c"))
    s = detect_score_columns(cols, prob_cols=["m2"])
    assert (s.kind, s.columns) == ("binary_prob", ("m2",))
    s = detect_score_columns(cols, prob_col="m3", classes=["neg", "pos"])
    assert s.classes == ("neg", "pos")


def test_detect_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"no score columns found.*\['label', 'text'\]"):
        detect_score_columns(["label", "text"])
    with pytest.raises(ValueError, match="ambiguous score columns"):
        detect_score_columns(["logit_a", "logit_b", "prob_a", "prob_b"])
    with pytest.raises(ValueError, match=r"column\(s\) \['nope'\] not in the table"):
        detect_score_columns(["a", "b"], prob_cols="a,nope")
    with pytest.raises(ValueError, match="at most one of prob_cols, logit_cols"):
        detect_score_columns(["a", "b"], prob_cols="a,b", logit_cols="a,b")
    with pytest.raises(ValueError, match="classes has 3 names but the scores have 2"):
        detect_score_columns(["prob_a", "prob_b"], classes=["x", "y", "z"])
    with pytest.raises(ValueError, match="repeat"):
        detect_score_columns(["a", "b"], prob_cols="a,a")


# ---------------------------------------------------------------------- table -> Scores
def test_prob_columns_with_string_labels(table3: pd.DataFrame, probs3: np.ndarray) -> None:
    sc = scores_from_table(table3)
    assert sc.classes == ("ant", "bee", "cat")
    np.testing.assert_allclose(sc.probs, probs3, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(sc.logits, probs_to_logits(probs3))
    expected = table3["label"].map({"ant": 0, "bee": 1, "cat": 2}).to_numpy()
    np.testing.assert_array_equal(sc.labels, expected)
    assert sc.ids.tolist() == table3["id"].tolist()
    assert sc.meta["score_columns"] == ["prob_ant", "prob_bee", "prob_cat"]


def test_integer_labels_are_indices_or_names() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    df = pd.DataFrame(p, columns=["prob_x", "prob_y", "prob_z"])
    df["label"] = [0, 1, 2]
    np.testing.assert_array_equal(scores_from_table(df).labels, [0, 1, 2])
    # 1-based class names: integer labels match the names first
    df2 = pd.DataFrame(p, columns=["prob_1", "prob_2", "prob_3"])
    df2["label"] = [1, 2, 3]
    np.testing.assert_array_equal(scores_from_table(df2).labels, [0, 1, 2])
    df["label"] = [0, 1, 3]
    with pytest.raises(ValueError, match="value 3, which is neither a class name nor an index"):
        scores_from_table(df)
    df["label"] = ["x", "y", "w"]
    with pytest.raises(ValueError, match=r"holds \['w'\], not among the classes"):
        scores_from_table(df)


def test_binary_prob_column() -> None:
    p1 = np.array([0.9, 0.2, 0.0, 1.0, 0.5])
    df = pd.DataFrame({"label": [1, 0, 0, 1, 1], "prob": p1})
    sc = scores_from_table(df)
    assert sc.classes == ("0", "1")
    np.testing.assert_allclose(sc.probs[:, 1], p1, atol=1e-11)
    np.testing.assert_array_equal(sc.labels, [1, 0, 0, 1, 1])
    # bool labels
    df["label"] = [True, False, False, True, True]
    np.testing.assert_array_equal(scores_from_table(df).labels, [1, 0, 0, 1, 1])
    # string labels need to be told which is positive
    df["label"] = ["pos", "neg", "neg", "pos", "pos"]
    with pytest.raises(ValueError, match="say which class is positive"):
        scores_from_table(df)
    sc = scores_from_table(df, classes=["neg", "pos"])
    np.testing.assert_array_equal(sc.labels, [1, 0, 0, 1, 1])
    df["label"] = ["true", "false", "false", "true", "true"]
    sc = scores_from_table(df)
    assert sc.classes == ("false", "true")
    np.testing.assert_array_equal(sc.labels, [1, 0, 0, 1, 1])


def test_binary_logit_column_matches_sigmoid() -> None:
    z = np.array([-3.0, 0.0, 2.5, 40.0])
    sc = scores_from_table(pd.DataFrame({"label": [0, 1, 1, 1], "logit": z}))
    np.testing.assert_allclose(sc.probs[:, 1], 1.0 / (1.0 + np.exp(-z)), rtol=1e-12)


def test_logit_columns_kept_exactly() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(20, 4)) * 5
    df = pd.DataFrame(z, columns=[f"logit_{c}" for c in "abcd"])
    df["label"] = rng.integers(0, 4, 20)
    sc = scores_from_table(df)
    np.testing.assert_array_equal(sc.logits, z)
    np.testing.assert_allclose(sc.probs, softmax(z), rtol=1e-12)


def test_unlabeled_and_required_labels() -> None:
    df = pd.DataFrame({"prob_a": [0.3, 0.6], "prob_b": [0.7, 0.4]})
    assert scores_from_table(df).labels is None
    with pytest.raises(ValueError, match="label column 'label' not in the table"):
        scores_from_table(df, require_labels=True)


def test_value_errors_name_columns_and_rows() -> None:
    df = pd.DataFrame({"label": [0, 1, 1], "prob_a": [0.3, np.nan, 0.5], "prob_b": [0.7, 0.4, 0.5]})
    with pytest.raises(
        ValueError,
        match=r"column 'prob_a' has 1 missing/NaN value\(s\), first at row 1 \(0-based\)",
    ):
        scores_from_table(df)
    df["prob_a"] = [0.3, 0.6, 0.6]
    with pytest.raises(
        ValueError,
        match=r"must sum to 1 .*1 row\(s\) do not, first row 2 \(0-based\), which sums to 1\.1",
    ):
        scores_from_table(df)
    df["prob_a"] = [0.3, 0.6, 1.5]
    with pytest.raises(ValueError, match=r"'prob_a' leaves \[0, 1\].*logit"):
        scores_from_table(df)
    df["prob_a"] = ["0.3", "x", "0.5"]
    with pytest.raises(
        ValueError, match=r"column 'prob_a' is not numeric: row 1 \(0-based\) holds 'x'"
    ):
        scores_from_table(df)
    df = pd.DataFrame({"label": [0, None], "prob": [0.3, 0.6]})
    with pytest.raises(ValueError, match=r"label column 'label' has 1 missing value"):
        scores_from_table(df)
    df = pd.DataFrame({"label": [0.0, 0.5], "prob": [0.3, 0.6]})
    with pytest.raises(ValueError, match="non-integer"):
        scores_from_table(df)
    with pytest.raises(ValueError, match="DataFrame"):
        scores_from_table({"prob": [0.1]})
    df = pd.DataFrame({"label": [0, 1], "logit_a": [0.0, np.inf], "logit_b": [1.0, 0.0]})
    with pytest.raises(ValueError, match="infinite"):
        scores_from_table(df)


def test_example_csv_reads(tmp_path: Path) -> None:
    path = REPO / "examples" / "sst2_scores.csv"
    sc = scores_from_table(read_table(path))
    assert sc.classes == ("negative", "positive")
    assert len(sc) == 1821 and sc.labels is not None
    assert set(np.unique(sc.labels)) == {0, 1}


def test_ids_keep_leading_zeros(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("id,label,prob\n007,1,0.9\n010,0,0.2\n")
    (tmp_path / "s.jsonl").write_text(
        '{"id": "007", "label": 1, "prob": 0.9}\n{"id": "010", "label": 0, "prob": 0.2}\n'
    )
    assert read_table(tmp_path / "s.csv", text_columns=["id"])["id"].tolist() == ["007", "010"]
    assert read_table(tmp_path / "s.jsonl")["id"].tolist() == ["007", "010"]
    sc = scores_from_table(read_table(tmp_path / "s.csv", text_columns=["id", "absent"]))
    assert sc.ids.tolist() == ["007", "010"]


def test_atomic_write_permissions_and_failure(tmp_path: Path) -> None:
    from calibkit.io import atomic_write

    old = os.umask(0o022)
    try:
        out = write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
        assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not the 0o600 of a temp file
    finally:
        os.umask(old)
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("new")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["keep.txt", "t.csv"]


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 30),
    k=st.integers(2, 5),
    seed=st.integers(0, 2**31 - 1),
    suffix=st.sampled_from([".csv", ".jsonl", ".parquet"]),
)
def test_property_table_roundtrip_gives_back_probs_and_labels(
    n: int, k: int, seed: int, suffix: str
) -> None:
    import tempfile

    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, 0.3), size=n)
    p[rng.random((n, k)) < 0.1] = 0.0  # exact zeros ...
    p[p.sum(1) == 0, 0] = 1.0
    p /= p.sum(1, keepdims=True)  # ... and exact ones
    y = rng.integers(0, k, n)
    names = [f"c{j}" for j in range(k)]
    df = pd.DataFrame(p, columns=[f"prob_{c}" for c in names])
    df.insert(0, "label", np.asarray(names)[y])
    with tempfile.TemporaryDirectory() as d:
        sc = scores_from_table(read_table(write_table(df, Path(d) / f"t{suffix}")))
    assert sc.classes == tuple(names)
    np.testing.assert_array_equal(sc.labels, y)
    np.testing.assert_allclose(sc.probs, p, rtol=1e-9, atol=1e-11)
    np.testing.assert_array_equal(sc.prediction, p.argmax(1))
