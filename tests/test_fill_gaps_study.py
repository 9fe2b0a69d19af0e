"""Paper 000 study: completion prompts for base models, the near-copy filter, the Real-N pool,
the seed intervals and the cached-generation reader (issue 16, item 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.test_synthetic import TOY_TASK, StubBackend

from calibkit.synthetic import GenerationRequest, SyntheticGenerator
from calibkit.synthetic.generate import near_duplicate
from calibkit.synthetic.prompts import COMPLETION_CUE, generation_completion, generation_messages


class BaseModelStub(StubBackend):
    """A generator without a chat template (a base model such as Gemma 3 270M) that records
    the prompts it gets."""

    has_chat_template = False

    def __init__(self, answer: str) -> None:
        super().__init__(answer)
        self.prompts: list[Any] = []

    def generate(self, prompts: Any, **kw: Any) -> Any:
        self.prompts.extend(prompts)
        return super().generate(prompts, **kw)


REQ = GenerationRequest("snow on the hills", 0, 0.35, 0.1, "low/over", source=7, bin=3)


def test_near_duplicate() -> None:
    assert near_duplicate("The sun burns!", "the sun burns")
    assert near_duplicate("the sun burns", "oh the sun burns today")  # containment
    assert near_duplicate("snow falls on the old hills", "snow falls on the hills")  # Jaccard 5/6
    assert not near_duplicate("a cold breeze at noon", "hot sand under my feet")
    assert not near_duplicate("snow on the road", "ice on the hills", threshold=0.7)
    with pytest.raises(ValueError, match="threshold"):
        near_duplicate("a", "b", threshold=0.0)


def test_completion_prompt_for_models_without_chat_template() -> None:
    msgs = generation_messages(TOY_TASK, "snow on the hills", 0.35, 0.1, "low/over")
    text = generation_completion(msgs)
    assert text.startswith(msgs[0]["content"].strip())
    assert msgs[1]["content"].strip() in text and text.endswith(COMPLETION_CUE)
    with pytest.raises(ValueError, match="no content"):
        generation_completion([{"role": "system", "content": " "}])

    # the model continues after the cue: its answer starts inside the first quoted bullet
    stub = BaseModelStub('ice on every road tonight"\n- "a freezing wind from the north"')
    gen = SyntheticGenerator(stub, TOY_TASK, progress=False)
    assert gen.chat is False
    out = gen.generate([REQ])
    assert stub.prompts == [generation_completion(msgs)] == [gen.prompt(REQ)]
    assert [t.text for t in out] == ["ice on every road tonight", "a freezing wind from the north"]
    # a chat model still gets messages
    assert SyntheticGenerator(StubBackend("x"), TOY_TASK).prompt(REQ) == msgs


def test_generator_drops_near_copies_of_source_and_examples() -> None:
    answer = (
        "1. snow on the hills again\n"  # the source with one word added: was kept before
        "2. it is freezing outside\n"  # a prompt example with a word added
        "3. frost covers every window"
    )
    gen = SyntheticGenerator(StubBackend(answer), TOY_TASK, progress=False)
    out = gen.generate([REQ])
    assert [t.text for t in out] == ["frost covers every window"]
    assert (gen.n_parsed, gen.n_near_duplicates) == (3, 2)


def test_load_splits_pool_holds_the_rows_train_size_left_out(data_dir: Any) -> None:
    from calibkit.experiments.fill_gaps import load_splits

    full = load_splits("subj", 0, data_dir=str(data_dir))
    s = load_splits("subj", 0, data_dir=str(data_dir), train_size=200)
    assert len(full["pool"][0]) == 0
    assert len(s["train"][0]) + len(s["val"][0]) == 200
    rest = full["val"][0] + full["train"][0]  # the seed's order of the non-test rows
    assert s["val"][0] + s["train"][0] + s["pool"][0] == rest
    assert s["test"][0] == full["test"][0]


def test_mean_ci_matches_scipy() -> None:
    from scipy import stats

    from calibkit.experiments.fill_gaps_study import mean_ci

    v = [0.12, 0.1, 0.15, 0.11]
    m, h = mean_ci(v)
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert m == pytest.approx(np.mean(v)) and h == pytest.approx((hi - lo) / 2)
    assert mean_ci([0.3]) == (0.3, 0.0)
    with pytest.raises(ValueError, match="finite"):
        mean_ci([0.1, float("nan")])


def _row(**kw: Any) -> dict[str, Any]:
    r = {"generator": "g", "task": "subj", "seed": 0, "source": 1, "label": 1,
         "scenario": "high/over", "text": "a text", "answer": '- "one two three"',
         "relabels": {"one two three": 1}}  # fmt: skip
    r.update(kw)
    return r


def test_read_generations_validates_rows(tmp_path: Path) -> None:
    from calibkit.experiments.fill_gaps_study import generator_table, read_generations

    p = tmp_path / "g.jsonl"
    p.write_text(json.dumps(_row()) + "\n" + json.dumps(_row(answer=None)) + "\n")
    rows = read_generations(p)
    table, usable = generator_table(rows)
    assert usable == {"g": 0.5} and "| g | subj | 2 | 50% | 1 |" in table
    bad = {"label": 2}, {"relabels": {"x": 5}}
    for b in bad:
        p.write_text(json.dumps(_row()) + "\n" + json.dumps(_row(**b)) + "\n")
        with pytest.raises(ValueError, match="line 2"):
            read_generations(p)
    p.write_text(json.dumps({k: v for k, v in _row().items() if k != "answer"}) + "\n")
    with pytest.raises(ValueError, match=r"line 1 lacks field\(s\) \['answer'\]"):
        read_generations(p)


def test_fill_gaps_cli_real_plus_s2_row_and_relabeler(
    data_dir: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from calibkit.cli.main import main
    from calibkit.scoring.backends import registry as reg
    from toy_llm import ToyLLM

    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))
    made: list[str] = []

    def factory(target: str, **kw: Any) -> Any:
        made.append(target)
        return ToyLLM(target)

    reg.register_backend("toy", factory)
    out = tmp_path / "fg"
    argv = ["experiment", "fill-gaps", "--dataset", "subj", "--train-size", "200", "--C", "10",
            "--model", "toy:gen", "--relabel-model", "toy:rel", "--seeds", "1", "--bins", "5",
            "--threshold", "0", "--max-targets", "4", "--batch-size", "4",
            "--data-dir", str(data_dir), "--output-dir", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert made == ["gen", "rel"]  # the relabeler is a second backend
    raw = pd.read_csv(out / "raw.csv")
    real, plus, ctrl = (raw[raw.method == m].iloc[0] for m in ("Real N", "Synthesis+", "Real+S2"))
    assert real.n_train == 200 and plus.n_train == 200 + plus.s2
    assert ctrl.s2 == plus.s2 and ctrl.n_train == 200 + plus.s2
    assert main([*argv[:7], "0", *argv[8:]]) == 2  # --C 0 is a one-line error


FIXTURE = Path(__file__).parent / "fixtures" / "fill_gaps" / "generations.jsonl"


def test_committed_generations_rebuild_table4(data_dir: Any) -> None:
    """The committed generations describe today's splits and rebuild Table 4 without a model:
    Real+S2 adds exactly as many real rows as Synthesis+ adds synthetic ones."""
    from dataclasses import replace

    from calibkit.experiments.fill_gaps_study import (
        StudyConfig,
        generator_table,
        read_generations,
        table4_rows,
    )

    rows = read_generations(FIXTURE)
    assert {r["generator"] for r in rows} == {"gemma3-270m", "smollm2"}
    _, usable = generator_table(rows)
    assert set(usable) == {"gemma3-270m", "smollm2"}
    cfg = replace(
        StudyConfig(data_dir=str(data_dir)), train_size=rows[0]["train_size"], C=rows[0]["C"]
    )
    one = [r for r in rows if r["task"] == "subj" and r["seed"] == 0]
    out = table4_rows(cfg, one, "gemma3-270m")
    by = {r["method"]: r for r in out}
    assert by["Real+S2"]["s2"] == by["Synthesis+"]["s2"]
    assert by["Real+S2"]["n_train"] == by["Synthesis+"]["n_train"] == 200 + by["Synthesis+"]["s2"]
    assert by["Synthesis"]["n_train"] == by["Real N"]["n_train"] == 200


def test_is_meta_flags_texts_about_the_task() -> None:
    from calibkit.synthetic.generate import is_meta

    for t in ("This utterance is a mix of not_complaint and complaint",
              "I'm ready to help. What's the task?",
              'Original example: "the zoom is loud"',
              "It belongs 60% to positive"):  # fmt: skip
        assert is_meta(t), t
    assert not is_meta("the zoom is loud but the pictures are great")
    assert not is_meta("for example, the battery died after a week")


def test_max_test_subsamples_texts_with_their_labels(data_dir: Any) -> None:
    from calibkit.experiments.fill_gaps_study import StudyConfig, _splits

    full = _splits(StudyConfig(data_dir=str(data_dir)), "cr", 1)
    sub = _splits(StudyConfig(data_dir=str(data_dir), max_test=50), "cr", 1)
    assert len(sub["test"][0]) == sub["test"][1].size == 50
    label = dict(zip(full["test"][0], full["test"][1].tolist(), strict=True))
    assert all(label[t] == y for t, y in zip(*sub["test"], strict=True))
    assert sub["train"][0] == full["train"][0]
    with pytest.raises(ValueError, match="classifier"):
        from calibkit.experiments.fill_gaps_study import _clf

        _clf(StudyConfig(classifier="bert"))


def test_committed_minilm_generations_are_valid() -> None:
    from calibkit.experiments.fill_gaps_study import generator_table, read_generations

    rows = read_generations(FIXTURE.with_name("generations_minilm.jsonl"))
    assert {(r["classifier"], r["C"], r["max_test"]) for r in rows} == {("minilm", 1.0, 500)}
    _, usable = generator_table(rows)
    assert set(usable) == {"gemma3-270m"} and 0 < usable["gemma3-270m"] < 3
