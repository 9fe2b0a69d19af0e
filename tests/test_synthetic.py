"""Tests of calibkit.synthetic (paper 000, Fill In The Gaps) and its experiment runner."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from calibkit.scoring.backends.base import Generation, ItemFailure
from calibkit.synthetic import (
    GenerationRequest,
    SyntheticGenerator,
    SyntheticText,
    TaskSpec,
    TfidfLogisticClassifier,
    augment,
    find_gaps,
    generate_synthetic,
    generation_messages,
    get_task,
    parse_utterances,
    relabel,
    requests_from_gaps,
    revised_confidence,
    select_synthetic,
    toy_example,
)

# ----------------------------------------------------------------------------- helpers


def _hand_table() -> tuple[np.ndarray, np.ndarray, dict[int, tuple[str, float, int]]]:
    """Binary-view scores with known per-bin gaps (10 bins).

    bin 1: p=0.15, 10 items, 5 positive -> acc 0.5,  gap -0.35 -> low/under
    bin 3: p=0.35, 10 items, 0 positive -> acc 0.0,  gap +0.35 -> low/over
    bin 4: p=0.48, 4 items, 0 positive  -> acc 0.0,  gap +0.48 -> low/over
    bin 5: p=0.55, 20 items, 11 positive -> acc .55, gap 0     -> calibrated, not a target
    bin 6: p=0.62, 50 items, 32 positive -> acc .64, gap -0.02 -> under the 0.03 threshold
    bin 7: p=0.75, 8 items, 8 positive  -> acc 1.0,  gap -0.25 -> high/under
    bin 8: p=0.85, 10 items, 5 positive -> acc 0.5,  gap +0.35 -> high/over
    """
    spec = [(0.15, 10, 5), (0.35, 10, 0), (0.48, 4, 0), (0.55, 20, 11), (0.62, 50, 32),
            (0.75, 8, 8), (0.85, 10, 5)]  # fmt: skip
    p, y = [], []
    for prob, n, pos in spec:
        p += [prob] * n
        y += [1] * pos + [0] * (n - pos)
    expected = {
        1: ("low/under", 0.15 - 0.5, 10),
        3: ("low/over", 0.35, 10),
        4: ("low/over", 0.48, 4),
        7: ("high/under", 0.75 - 1.0, 8),
        8: ("high/over", 0.85 - 0.5, 10),
    }
    return np.array(p), np.array(y), expected


class StubBackend:
    """A Backend whose generator writes canned answers and whose classifier reads keywords.

    ``generate`` answers every prompt with ``answer``; ``next_token_logprobs`` gives the class
    named by the first keyword (``"hot"`` / ``"cold"``) in the text being classified.
    """

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.generate_calls = 0
        self.classify_calls = 0

    @property
    def name(self) -> str:
        return "stub"

    def generate(
        self,
        prompts: Sequence[Any],
        *,
        max_new_tokens: int = 8,
        candidates: Sequence[str] = (),
        top_logprobs: int = 20,
    ) -> list[Generation]:
        self.generate_calls += len(prompts)
        return [Generation(text=self.answer) for _ in prompts]

    def next_token_logprobs(
        self, prompts: Sequence[Any], candidates: Sequence[str]
    ) -> list[dict[str, float]]:
        self.classify_calls += len(prompts)
        out = []
        for p in prompts:
            text = p[-1]["content"].split("Text:", 1)[1].lower()
            cls = "hot" if "hot" in text.split() else "cold"
            out.append({c: (0.0 if c.strip().lower() == cls else -6.0) for c in candidates})
        return out


TOY_TASK = TaskSpec(
    "weather",
    ("cold", "hot"),
    {"cold": "about low temperatures", "hot": "about high temperatures"},
    {"cold": ("it is freezing", "snow again", "ice on the road"),
     "hot": ("a scorching day", "the sun burns", "heat wave")},
)  # fmt: skip


# ----------------------------------------------------------------------------- gaps


def test_find_gaps_scenarios_of_hand_made_table() -> None:
    p, y, expected = _hand_table()
    rep = find_gaps(p, y, 10, threshold=0.03)
    assert [t.bin for t in rep.targets] == sorted(expected)
    for t in rep.targets:
        scen, gap, count = expected[t.bin]
        assert t.scenario == scen
        assert t.gap == pytest.approx(gap)
        assert t.count == count
        assert np.allclose(p[t.indices], p[t.indices][0])  # every index is from that bin
        assert t.indices.size == count
    assert rep.n_target == sum(c for _, _, c in expected.values())
    # the calibrated bin and the bin under the threshold are not targets
    assert 5 not in [t.bin for t in rep.targets] and 6 not in [t.bin for t in rep.targets]
    # a larger threshold drops the 0.25 gap
    assert 7 not in [t.bin for t in find_gaps(p, y, 10, threshold=0.3).targets]


def test_find_gaps_two_column_input_is_binary_view() -> None:
    p, y, _ = _hand_table()
    a = find_gaps(p, y, 10)
    b = find_gaps(np.stack([1 - p, p], axis=1), y, 10)
    assert [(t.bin, t.scenario) for t in a.targets] == [(t.bin, t.scenario) for t in b.targets]
    # from logits: the same
    z = np.log(np.stack([1 - p, p], axis=1))
    c = find_gaps(z, y, 10, from_logits=True)
    assert [t.bin for t in c.targets] == [t.bin for t in a.targets]


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"n_bins": 1}, "n_bins"),
    ],
)
def test_find_gaps_rejects_bad_arguments(kwargs: dict[str, Any], msg: str) -> None:
    p, y, _ = _hand_table()
    with pytest.raises(ValueError, match=msg):
        find_gaps(p, y, **kwargs)


def test_find_gaps_rejects_bad_scores() -> None:
    with pytest.raises(ValueError, match="NaN"):
        find_gaps(np.array([0.2, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match="length"):
        find_gaps(np.array([0.2, 0.3]), np.array([0, 1, 1]))


# ----------------------------------------------------------------------------- prompts


@pytest.mark.parametrize(
    ("conf", "diff", "scenario", "expected"),
    [
        (30, 10, "low/under", 40), (40, 15, "low/under", 45), (45, 5, "low/under", 45),
        (30, 10, "low/over", 20), (10, 15, "low/over", 5), (10, 10, "low/over", 5),
        (70, 10, "high/under", 80), (90, 15, "high/under", 95), (90, 10, "high/under", 95),
        (80, 10, "high/over", 70), (60, 15, "high/over", 55), (60, 10, "high/over", 55),
    ],
)  # fmt: skip
def test_revised_confidence_follows_appendix_a(
    conf: int, diff: int, scenario: str, expected: int
) -> None:
    assert revised_confidence(conf, diff, scenario) == expected


def test_revised_confidence_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="scenario"):
        revised_confidence(30, 5, "calibrated")
    with pytest.raises(ValueError, match="conf"):
        revised_confidence(130, 5, "low/over")
    with pytest.raises(ValueError, match="integer"):
        revised_confidence(0.3, 5, "low/over")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scenario", "confidence", "gap", "conf1", "rev1"),
    [
        ("low/over", 0.35, 0.10, 35, 25),
        ("low/under", 0.15, -0.20, 15, 35),
        ("high/over", 0.85, 0.40, 85, 55),
        ("high/under", 0.75, -0.25, 75, 95),
    ],
)
def test_generation_prompt_text_per_scenario(
    scenario: str, confidence: float, gap: float, conf1: int, rev1: int
) -> None:
    task = get_task("se")
    msgs = generation_messages(task, "bluetooth does not work .", confidence, gap, scenario)
    assert [m["role"] for m in msgs] == ["system", "user"]
    expected = (
        f'An example: "bluetooth does not work ." which belongs {100 - conf1}% to negative and '
        f"{conf1}% to positive (based on a classifier's categorization). Now I ask you to act as "
        "that classifier and based on this example, generate a diverse set of 3 short utterances "
        f"where each utterance belongs {100 - rev1}% to negative and {rev1}% to positive "
        "(no explanation):"
    )
    assert msgs[1]["content"] == expected


def test_system_prompt_has_definitions_and_three_examples_per_label() -> None:
    for name in ("twitter_complaints", "subj", "banking77", "cr"):
        task = get_task(name)
        text = task.system_prompt()
        assert text.startswith(
            "Consider the task of classifying between the following classes (along with some "
            "examples):"
        )
        for k, c in enumerate(task.classes, 1):
            assert f"{k}. {c}, which is {task.descriptions[c]}" in text
            assert len(task.examples[c]) == 3
            for ex in task.examples[c]:
                assert f'- "{ex}"' in text
    with pytest.raises(ValueError, match="no appendix C prompt"):
        get_task("imdb")


def test_taskspec_from_data_draws_examples_per_class() -> None:
    texts = [f"text {i}" for i in range(20)]
    labels = [i % 2 for i in range(20)]
    t = TaskSpec.from_data("x", ("a", "b"), texts, labels, seed=3)
    assert all(len(t.examples[c]) == 3 for c in ("a", "b"))
    assert all(int(s.split()[1]) % 2 == 0 for s in t.examples["a"])
    with pytest.raises(ValueError, match="no training text"):
        TaskSpec.from_data("x", ("a", "b", "c"), texts, labels)


# ----------------------------------------------------------------------------- generation


def test_parse_utterances_cleans_lists() -> None:
    answer = (
        "Here are 3 short utterances:\n"
        '1. "The zoom is loud but the pictures are great." (55% negative, 45% positive)\n'
        "2) Battery life could be better, honestly.\n"
        "- battery life could be better, honestly!\n"
        "* Works fine.\n"
        "3. I like the screen, yet the menus confuse me - 55% negative"
    )
    assert parse_utterances(answer) == [
        "The zoom is loud but the pictures are great.",
        "Battery life could be better, honestly.",
        "I like the screen, yet the menus confuse me",
    ]
    one_line = "1. first short utterance here 2. second short utterance here 3. third one is here"
    assert parse_utterances(one_line, 2) == [
        "first short utterance here",
        "second short utterance here",
    ]
    assert parse_utterances("") == []
    loop = "I'm not sure. I'm not sure. I'm not sure. I'm not sure.\n2. A real short utterance."
    assert parse_utterances(loop) == ["A real short utterance."]


def test_relabel_drops_wrong_class_texts() -> None:
    backend = StubBackend("unused")
    items = [
        SyntheticText("a hot and sunny day", 1, 0, "high/over", 70),
        SyntheticText("such a hot summer", 0, 1, "low/over", 20),  # wrong class: dropped
        SyntheticText("cold wind tonight", 0, 2, "low/over", 20),
        SyntheticText("cold rain again", 1, 3, "high/under", 80),  # wrong class: dropped
    ]
    kept, pred = relabel(backend, TOY_TASK, items, progress=False)
    assert pred.tolist() == [1, 1, 0, 0]
    assert [k.text for k in kept] == ["a hot and sunny day", "cold wind tonight"]
    assert [k.relabel for k in kept] == [1, 0]


class PerSourceStub(StubBackend):
    """StubBackend whose answer to a prompt about the snow differs from its answer to others."""

    def generate(self, prompts, **kw):  # type: ignore[no-untyped-def]
        gens = super().generate(prompts, **kw)
        snow = "1. hot wind from the south\n2. cold rain on the hills tonight\n3. a freezing dawn"
        return [
            Generation(text=snow) if "snow on the hills" in str(p) else g
            for p, g in zip(prompts, gens, strict=True)
        ]


def test_generate_synthetic_two_stages_and_cache(tmp_path: Any) -> None:
    answer = "1. hot sand under my feet\n2. a cold breeze at noon\n3. hot air all day"
    backend = PerSourceStub(answer)
    reqs = [
        GenerationRequest("the sun burns today", 1, 0.85, 0.3, "high/over", source=4, bin=8),
        GenerationRequest("snow on the hills", 0, 0.35, 0.1, "low/over", source=7, bin=3),
    ]
    cache = tmp_path / "gen.sqlite"
    kept, stats = generate_synthetic(backend, TOY_TASK, reqs, cache=cache, progress=False)
    assert stats == {
        "requests": 2,
        "parsed": 6,
        "near_duplicates": 0,
        "meta": 0,
        "generated": 6,
        "kept": 4,
        "unparsed": 0,
        "failed_generation": 0,
        "failed_relabel": 0,
    }
    assert [(k.text, k.label, k.source) for k in kept] == [
        ("hot sand under my feet", 1, 4),
        ("hot air all day", 1, 4),
        ("cold rain on the hills tonight", 0, 7),
        ("a freezing dawn", 0, 7),
    ]
    assert kept[0].target_percent == 55  # 85 - 30 bounded at 55
    assert kept[2].target_percent == 25
    # the same answer for every request is one text, not one per request
    _, st = generate_synthetic(StubBackend(answer), TOY_TASK, reqs, progress=False)
    assert (st["parsed"], st["near_duplicates"], st["generated"]) == (6, 3, 3)
    calls = backend.generate_calls, backend.classify_calls
    again, _ = generate_synthetic(backend, TOY_TASK, reqs, cache=cache, progress=False)
    assert again == kept
    assert (backend.generate_calls, backend.classify_calls) == calls  # all from the cache


class FailingBackend(StubBackend):
    """StubBackend that fails (ItemFailure) on one generation prompt and one relabel prompt."""

    def generate(self, prompts, **kw):  # type: ignore[no-untyped-def]
        good = super().generate(prompts, **kw)
        return [
            ItemFailure("HTTP 500") if "hills" in str(p) else g
            for p, g in zip(prompts, good, strict=True)
        ]

    def next_token_logprobs(self, prompts, candidates):  # type: ignore[no-untyped-def]
        good = super().next_token_logprobs(prompts, candidates)
        return [
            ItemFailure("timeout") if "noon" in str(p) else g
            for p, g in zip(prompts, good, strict=True)
        ]


def test_failed_items_are_counted_never_made_up(tmp_path: Any) -> None:
    answer = "1. hot sand under my feet\n2. a cold breeze at noon\n3. hot air all day"
    reqs = [
        GenerationRequest("the sun burns today", 1, 0.85, 0.3, "high/over", source=4, bin=8),
        GenerationRequest("snow on the hills", 0, 0.35, 0.1, "low/over", source=7, bin=3),
    ]
    kept, stats = generate_synthetic(
        FailingBackend(answer), TOY_TASK, reqs, cache=tmp_path / "g.sqlite", progress=False
    )
    # request 2 failed: no text for it; "a cold breeze at noon" (of request 1) failed to relabel
    assert stats["failed_generation"] == 1 and stats["failed_relabel"] == 1
    assert stats["generated"] == 3 and stats["unparsed"] == 1
    assert [(k.text, k.source) for k in kept] == [
        ("hot sand under my feet", 4),
        ("hot air all day", 4),
    ]
    # failures are not cached: a healthy backend fills them in on the rerun
    _, stats2 = generate_synthetic(
        PerSourceStub(answer), TOY_TASK, reqs, cache=tmp_path / "g.sqlite", progress=False
    )
    assert stats2["failed_generation"] == 0 and stats2["generated"] == 6


def test_generator_rejects_multiclass_task() -> None:
    task = TaskSpec("three", ("a", "b", "c"))
    with pytest.raises(ValueError, match="binary"):
        SyntheticGenerator(StubBackend(""), task)


def test_requests_from_gaps_cap_is_proportional_and_seeded() -> None:
    p, y, expected = _hand_table()
    rep = find_gaps(p, y, 10)
    texts = [f"t{i}" for i in range(p.size)]
    full = requests_from_gaps(rep, texts, y)
    assert len(full) == rep.n_target
    assert {r.scenario for r in full} == {s for s, _, _ in expected.values()}
    capped = requests_from_gaps(rep, texts, y, max_total=10, seed=1)
    assert len(capped) == 10
    assert {r.bin for r in capped} == set(expected)  # every target bin keeps at least one
    assert capped == requests_from_gaps(rep, texts, y, max_total=10, seed=1)
    for r in capped:
        assert texts[r.source] == r.text and y[r.source] == r.label


# ----------------------------------------------------------------------------- augment


def _syn(n: int, label: int = 1) -> list[SyntheticText]:
    return [SyntheticText(f"syn {i}", label, i // 3, "low/over", 20) for i in range(n)]


@pytest.mark.parametrize("n_syn", [3, 5, 9])
def test_synthesis_keeps_size_and_synthesis_plus_grows_by_s2(n_syn: int) -> None:
    texts = [f"real {i}" for i in range(20)]
    labels = np.array([i % 2 for i in range(20)])
    targets = np.array([2, 5, 7, 11, 13])  # S1 = 5
    syn = _syn(n_syn)
    s2 = min(n_syn, targets.size)
    a = augment(texts, labels, targets, syn, mode="synthesis", seed=0)
    assert len(a) == len(texts)
    assert a.n_added == s2 and a.n_removed == s2
    removed = set(texts) - set(a.texts)
    assert len(removed) == s2 and removed <= {texts[i] for i in targets}
    assert sum(a.is_synthetic) == s2
    b = augment(texts, labels, targets, syn, mode="synthesis+", seed=0)
    assert len(b) == len(texts) + s2
    assert b.texts[: len(texts)] == texts
    assert b.labels[len(texts) :].tolist() == [1] * s2


def test_select_synthetic_spreads_over_sources() -> None:
    syn = _syn(9)  # sources 0, 1, 2 with 3 texts each
    pick = select_synthetic(syn, 3, seed=0)
    assert sorted(s.source for s in pick) == [0, 1, 2]


def test_augment_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="mode"):
        augment(["a", "b"], [0, 1], [0], [], mode="replace")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target_index"):
        augment(["a", "b"], [0, 1], [5], [])
    with pytest.raises(ValueError, match="duplicate"):
        augment(["a", "b"], [0, 1], [0, 0], [])


# ----------------------------------------------------------------------------- classifiers


def test_tfidf_classifier_matches_sklearn_pipeline() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(0)
    words = [["good", "great", "fine", "nice"], ["bad", "awful", "poor", "sad"]]
    y = rng.integers(0, 2, 60)
    texts = [" ".join(rng.choice(words[k], 3)) + " the item" for k in y]
    clf = TfidfLogisticClassifier(C=2.0).fit(texts, y)
    ref = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), max_features=50000, sublinear_tf=True),
        LogisticRegression(C=2.0, max_iter=1000),
    ).fit(texts, y)
    test = ["good nice the item", "awful bad sad", "fine poor"]
    np.testing.assert_allclose(clf.predict_proba(test), ref.predict_proba(test), atol=1e-10)
    assert clf.predict(test).tolist() == ref.predict(test).tolist()
    z = clf.predict_logits(test)
    assert z.shape == (3, 2)


def test_classifier_rejects_bad_input() -> None:
    clf = TfidfLogisticClassifier()
    with pytest.raises(ValueError, match="not one string"):
        clf.fit("abc", [0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2 classes"):
        clf.fit(["a b", "c d"], [1, 1])
    with pytest.raises(ValueError, match="length"):
        clf.fit(["a b", "c d"], [0, 1, 1])


def _tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "great", "awful", "it"]
    t = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=t, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]",
    )  # fmt: skip


@pytest.mark.slow
def test_hf_encoder_classifier_tiny_bert_and_mc_dropout() -> None:
    from transformers import BertConfig

    from calibkit.synthetic import HFEncoderClassifier

    tok = _tiny_tokenizer()
    assert 1 not in tok("good bad it")["input_ids"]  # no [UNK]: the vocabulary is used
    cfg = BertConfig(vocab_size=10, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32, initializer_range=0.2)  # fmt: skip
    texts = ["good great it", "bad awful it", "great good", "awful bad"] * 8
    y = np.array([1, 0, 1, 0] * 8)
    clf = HFEncoderClassifier(cfg, tok, learning_rate=1e-2, batch_size=8, epochs=15, seed=0)
    clf.fit(texts, y)
    assert clf.model_.config.classifier_dropout == 0.5
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    p = clf.predict_proba(["good it", "bad it"])
    assert p.shape == (2, 2) and np.allclose(p.sum(1), 1)
    assert p[0, 1] > 0.5 > p[1, 1]
    np.testing.assert_allclose(p, clf.predict_proba(["good it", "bad it"]))  # eval: deterministic
    mc = clf.predict_proba(["good it", "bad it"], mc_dropout=10)
    assert mc.shape == (2, 2) and np.allclose(mc.sum(1), 1)
    assert not np.allclose(mc, p)  # dropout was active
    assert not clf.model_.training  # back in eval mode
    with pytest.raises(ValueError, match="mc_dropout"):
        clf.predict_proba(["good"], mc_dropout=-1)
    with pytest.raises(ValueError, match="tokenizer"):
        HFEncoderClassifier(cfg).fit(texts, y)


# ----------------------------------------------------------------------------- toy


def test_toy_example_moves_fit_toward_true_curve() -> None:
    before, after = [], []
    for seed in range(20):
        r = toy_example(seed=seed)
        assert r.x.shape == (300,) and r.x.min() >= -10 and r.x.max() <= 10
        assert len(r.fits) == len(r.target_bins) + 1
        for m, sx in zip(r.target_bins, r.synthetic_x, strict=True):
            assert r.tables[0].over_confident[m]
            assert sx.size == r.tables[0].count[m]
        before.append(r.fits[0].distance)
        after.append(r.fits[-1].distance)
    before_a, after_a = np.array(before), np.array(after)
    assert after_a.mean() < before_a.mean()
    assert np.mean(after_a < before_a) >= 0.7


@pytest.mark.parametrize("C", [0.1, 1.0])
def test_fit_logistic_matches_sklearn(C: float) -> None:
    from sklearn.linear_model import LogisticRegression

    from calibkit.synthetic.toy import fit_logistic, simulate_logistic

    x, y = simulate_logistic(300, seed=3)
    b0, b1 = fit_logistic(x, y, C=C)
    ref = LogisticRegression(C=C, max_iter=1000, tol=1e-10).fit(x[:, None], y)
    assert b0 == pytest.approx(ref.intercept_[0], abs=1e-5)
    assert b1 == pytest.approx(ref.coef_[0, 0], abs=1e-5)


def test_toy_example_first_fit_is_shrunk_like_the_paper() -> None:
    slopes = [toy_example(seed=s).fits[0].beta1 for s in range(10)]
    assert 0.9 < np.mean(slopes) < 1.5  # the paper's first fit: beta1 = 1.13 (true 2)


@pytest.mark.slow
def test_plot_toy_has_four_panels() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from calibkit.synthetic import plot_toy

    fig = plot_toy(toy_example(seed=0))
    assert len([a for a in fig.axes if a.get_title()]) >= 4


# ----------------------------------------------------------------------------- experiment


def test_load_splits_banking77_two_intents(data_dir: Any) -> None:
    from calibkit.experiments.fill_gaps import load_splits

    s = load_splits("banking77", 0, data_dir=str(data_dir))
    assert len(s["test"][0]) == 80
    assert len(s["train"][0]) + len(s["val"][0]) == 197
    assert len(s["val"][0]) == round(0.2 * 197)
    assert set(np.unique(s["train"][1])) == {0, 1}
    s1 = load_splits("banking77", 1, data_dir=str(data_dir))
    assert s1["test"][0] == s["test"][0] and s1["val"][0] != s["val"][0]


def test_summarize_and_format_table() -> None:
    from calibkit.experiments.fill_gaps import format_table, summarize

    rows = [
        {"seed": s, "method": m, "bins": b, "acc": a, "ece": e, "n_train": 100, "s1": 5, "s2": 4}
        for s, (a, e) in enumerate([(0.8, 0.1), (0.9, 0.05), (0.85, 0.06)])
        for m, b in (("Uncalibrated", 0), ("Synthesis", 10))
    ]
    summ = summarize(rows)
    r = summ[summ.method == "Synthesis"].iloc[0]
    assert r.acc_mean == pytest.approx(np.mean([0.8, 0.9, 0.85]))
    assert r.ece_std == pytest.approx(np.std([0.1, 0.05, 0.06], ddof=1))
    table = format_table(summ, "b77")
    assert "| Uncalibrated | 0.850 (0.050) |" in table and "**10 bins**" in table


def test_experiment_arguments_parse() -> None:
    from calibkit.experiments.fill_gaps import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    a = p.parse_args(["--dataset", "subj", "--bins", "10", "15", "20", "--seeds", "3"])
    assert a.bins == [10, 15, 20] and a.seeds == 3 and a.classifier == "tfidf"
    assert a.generator == "smollm2" and a.threshold == 0.03


# ----------------------------------------------------------------------------- real LLM


@pytest.mark.slow
def test_smollm2_generates_and_relabels(tmp_path: Any) -> None:
    pytest.importorskip("transformers")
    from calibkit.scoring import TransformersBackend

    try:
        backend = TransformersBackend.from_pretrained(None, batch_size=2)
    except (ImportError, FileNotFoundError) as e:  # pragma: no cover - environment
        pytest.skip(f"bundled SmolLM2 unavailable: {e}")
    task = get_task("subj")
    reqs = [
        GenerationRequest("the film is a total delight .", 1, 0.85, 0.2, "high/over", 0, 8),
        GenerationRequest("a young boy moves to paris .", 0, 0.15, -0.1, "low/under", 1, 1),
    ]
    gen = SyntheticGenerator(backend, task, max_new_tokens=48, cache=tmp_path / "c.sqlite",
                             progress=False)  # fmt: skip
    texts = gen.generate(reqs)
    assert texts, "SmolLM2 produced no parsable utterance"
    assert all(isinstance(t.text, str) and len(t.text.split()) >= 3 for t in texts)
    kept, pred = relabel(backend, task, texts, progress=False)
    assert pred.shape == (len(texts),) and set(pred.tolist()) <= {0, 1}
    assert all(k.label == k.relabel for k in kept)
