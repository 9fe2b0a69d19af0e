"""Issue #10 item 8: per-item fields are first-class in ``Scores`` (sliced, joined, saved)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from calibkit.scores import Scores, merge_meta
from calibkit.scoring.backends.base import Generation, Prompt
from calibkit.scoring.classify import ClassificationScorer, answer_confidence


def _scores(n: int = 6) -> Scores:
    rng = np.random.default_rng(0)
    return Scores(
        logits=rng.normal(size=(n, 3)),
        labels=np.arange(n) % 3,
        classes=("a", "b", "NA"),
        ids=np.array([f"{i:03d}" for i in range(n)], dtype=object),
        meta={"model": "m", "n_unparsed": 2},
        per_item={
            "answer_text": ["a", "", "NA", "[b]", "null", "a, b"][:n],
            "answer_index": [0, -1, 2, 1, -1, 0][:n],
            "max_position": np.arange(3 * n).reshape(n, 3),
            "trace": [[1], [], [2, 3], None, "s", {"k": 1}][:n],
            "score": [0.1, np.nan, np.inf, -1.0, 2.0, 1e-300][:n],
            "flag": [True, False, True, True, False, False][:n],
        },
    )


def _same(a: Scores, b: Scores) -> None:
    np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert list(a.ids) == list(b.ids) and a.classes == b.classes
    assert sorted(a.per_item) == sorted(b.per_item)
    for k, v in a.per_item.items():
        w = b.per_item[k]
        assert (v.dtype, v.shape) == (w.dtype, w.shape), k
        if v.dtype.kind == "f":
            np.testing.assert_array_equal(v, w)
        else:
            assert v.tolist() == w.tolist(), k


def test_subset_slices_every_per_item_field() -> None:
    s = _scores()
    t = s.subset([4, 1])
    assert t.per_item["answer_text"].tolist() == ["null", ""]
    assert t.per_item["answer_index"].tolist() == [-1, -1]
    np.testing.assert_array_equal(t.per_item["max_position"], [[12, 13, 14], [3, 4, 5]])
    assert t.per_item["trace"].tolist() == ["s", []]
    m = s.subset(np.array([True, False, False, False, False, True]))
    assert m.per_item["answer_text"].tolist() == ["a", "a, b"]
    assert t.meta["n_unparsed"] == 2 and m.meta["n_unparsed"] == 0  # recounted on the rows
    with pytest.raises(ValueError, match="boolean index"):
        s.subset(np.array([True, False]))


def test_concat_joins_fields_and_adds_counters() -> None:
    s = _scores()
    parts = [s.subset([0, 1, 2]), s.subset([3, 4, 5])]
    back = Scores.concat(parts)
    _same(back, s)
    assert back.meta["n_unparsed"] == 2
    with pytest.raises(ValueError, match="different per-item fields"):
        Scores.concat([parts[0], Scores(logits=np.zeros((1, 3)), classes=s.classes, labels=[0])])


def test_merge_meta_rules() -> None:
    a = {"model": "m", "n_unparsed": 1, "failures": [{"row": 1}], "filled_per_class": {"x": 1}}
    b = {"model": "m", "n_unparsed": 3, "failures": [{"row": 7}], "filled_per_class": {"x": 2}}
    merged = merge_meta([a, b, a])
    assert merged["n_unparsed"] == 5
    assert merged["failures"] == [{"row": 1}, {"row": 7}]  # repeated entries kept once
    assert merged["filled_per_class"] == {"x": 4}
    with pytest.raises(ValueError, match="n_unparsed"):
        merge_meta([a, {"n_unparsed": "3"}])


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_save_load_round_trip_keeps_per_item_fields(tmp_path: Path, suffix: str) -> None:
    s = _scores()
    back = Scores.load(s.save(tmp_path / f"s{suffix}"))
    _same(back, s)
    assert back.meta == s.meta
    frame = back.to_frame()
    assert list(frame.columns[:5]) == ["id", "label", "logit_a", "logit_b", "logit_NA"]
    assert frame["answer_text"].tolist() == s.per_item["answer_text"].tolist()


def test_validation_of_names_and_lengths() -> None:
    z = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"per_item\['x'\] has 2 entries but the Scores have 3"):
        Scores(logits=z, per_item={"x": [1, 2]})
    for bad in ("id", "label", "logit_yes"):
        with pytest.raises(ValueError, match="reserved"):
            Scores(logits=z, per_item={bad: [1, 2, 3]})
    with pytest.raises(ValueError, match="non-empty strings"):
        Scores(logits=z, per_item={"": [1, 2, 3]})
    with pytest.raises(ValueError, match="sequence of 3 values"):
        Scores(logits=z, per_item={"x": "abc"})
    s = Scores(logits=z, per_item={"x": [1, 2, 3]})
    assert not s.per_item["x"].flags.writeable


def test_per_item_lists_in_meta_are_moved_and_checked() -> None:
    """Older files and writers kept these lists in meta, where subset/concat left them stale."""
    z = np.zeros((3, 2))
    s = Scores(logits=z, meta={"answer_index": [1, -1, 0], "answer_text": ["b", "?", "a"]})
    assert "answer_index" not in s.meta and s.per_item["answer_index"].tolist() == [1, -1, 0]
    assert s.subset([2]).per_item["answer_text"].tolist() == ["a"]
    with pytest.raises(ValueError, match=r"answer_index'\] has 2 entries"):
        Scores(logits=z, meta={"answer_index": [1, 0]})


def test_old_files_with_per_item_meta_load_aligned(tmp_path: Path) -> None:
    import json

    s = Scores(logits=np.zeros((2, 2)), labels=[0, 1])
    p = s.save(tmp_path / "old.csv")
    side = tmp_path / "old.csv.meta.json"
    header = json.loads(side.read_text())
    header.pop("per_item")
    header["meta"]["answer_index"] = [1, -1]
    side.write_text(json.dumps(header))
    back = Scores.load(p)
    assert back.per_item["answer_index"].tolist() == [1, -1]
    assert back.subset([1]).per_item["answer_index"].tolist() == [-1]


# ---------------------------------------------------------------------- answer_confidence
class _Backend:
    """Generated answers and logprobs fixed by the text (``a<i>``: answer i % 3)."""

    name = "fixed"
    has_chat_template = False

    def _row(self, p: Prompt) -> int:
        assert isinstance(p, str)
        return int(p.split("Text: a")[1].split("\n")[0])

    def generate(
        self, prompts: Sequence[Prompt], *, max_new_tokens: int = 8, candidates=(), top_logprobs=20
    ) -> list[Generation]:
        out = []
        for p in prompts:
            i = self._row(p)
            lp = {"yes": -0.2 - 0.01 * i, "no": -1.5 + 0.02 * i}
            text = ["yes", "no", "unsure"][i % 3]
            out.append(Generation(text=text, tokens=[text], logprobs=[lp]))
        return out

    def next_token_logprobs(self, prompts, candidates):  # pragma: no cover - unused
        raise NotImplementedError


def test_answer_confidence_follows_the_rows_after_subset_and_concat() -> None:
    texts = [f"a{i}" for i in range(9)]
    s = ClassificationScorer(_Backend(), ["yes", "no"], max_new_tokens=1, progress=False).score(
        texts
    )
    full = answer_confidence(s)
    # by hand: the answer's probability; the argmax where the answer did not parse
    p = s.probs
    answer = [0, 1, int(np.argmax(p[2])), 0, 1, int(np.argmax(p[5])), 0, 1, int(np.argmax(p[8]))]
    np.testing.assert_allclose(full, p[np.arange(9), answer])
    idx = [7, 1, 4]
    np.testing.assert_allclose(answer_confidence(s.subset(idx)), full[idx])
    np.testing.assert_allclose(
        answer_confidence(Scores.concat([s.subset([5, 6, 7, 8]), s.subset([0, 1, 2, 3, 4])])),
        full[[5, 6, 7, 8, 0, 1, 2, 3, 4]],
    )
    assert s.subset(idx).meta["n_unparsed"] == 0 and s.meta["n_unparsed"] == 3
    bad = Scores(logits=s.logits, per_item={"answer_index": np.full(9, 5)})
    with pytest.raises(ValueError, match="not a class index"):
        answer_confidence(bad)
