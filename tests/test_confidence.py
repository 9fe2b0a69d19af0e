"""Confidence estimators (issue #14) on a scripted backend whose answers the test controls, the
confidence parser's edge cases, and sampling: reproducible under a seed, independent of batching,
resumed exactly from the cache after an interruption (transformers backend on a tiny model).

References are hand computations (P(True) = p_A / (p_A + p_B); vote shares and entropy by hand /
scipy) and the backend's own greedy ``generate`` for temperature 0.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from calibkit.scoring.backends.base import Generation, ItemFailure, PartialResults, Prompt
from calibkit.scoring.cache import ScoreCache
from calibkit.scoring.classify import ItemsFailed
from calibkit.scoring.confidence import (
    ESTIMATORS,
    ConsistencyConfidence,
    LogitsConfidence,
    PTrueConfidence,
    VerbalizedConfidence,
    make_estimator,
    parse_confidence,
    parse_top_k,
)
from calibkit.scoring.sampling import SamplingParams, sample_cached

CLASSES = ["negative", "positive"]


def _text_of(prompt: Prompt) -> str:
    """The item text: the 'Text: ...' line of the first user turn."""
    msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    for m in msgs:
        for line in m["content"].splitlines():
            if line.startswith("Text: "):
                return line[len("Text: ") :]
    raise AssertionError(f"no item text in {prompt!r}")


def _last_user(prompt: Prompt) -> str:
    assert isinstance(prompt, list)
    return [m for m in prompt if m["role"] == "user"][-1]["content"]


class Scripted:
    """Replies chosen by the test: ``reply(prompt) -> str | ItemFailure``, ``lp(prompt) -> dict``,
    ``votes[text]`` = the answers sample j cycles through (a function of seed + j)."""

    name = "scripted-conf"
    has_chat_template = True

    def __init__(
        self,
        reply: Callable[[Prompt], Any] | None = None,
        lp: Callable[[Prompt], Any] | None = None,
        votes: dict[str, list[str]] | None = None,
        fail_after: int | None = None,
    ) -> None:
        self.reply, self.lp, self.votes = reply, lp, votes or {}
        self.calls: list[tuple[str, int]] = []  # (method, n prompts)
        self.seen: list[Prompt] = []
        self.fail_after = fail_after

    def generate(self, prompts, *, max_new_tokens=8, candidates=(), top_logprobs=20):
        self.calls.append(("generate", len(prompts)))
        self.seen.extend(prompts)
        out = []
        for p in prompts:
            r = self.reply(p)  # type: ignore[misc]
            if isinstance(r, ItemFailure):
                out.append(r)
            else:
                out.append(Generation(text=r, tokens=r.split() or [""], logprobs=[]))
        return out

    def next_token_logprobs(self, prompts, candidates):
        self.calls.append(("next_token_logprobs", len(prompts)))
        self.seen.extend(prompts)
        return [self.lp(p) for p in prompts]  # type: ignore[misc]

    def sample(self, prompts, params, max_new_tokens=64):
        self.calls.append(("sample", len(prompts)))
        out = []
        for p in prompts:
            if self.fail_after is not None and len(self.calls) > self.fail_after:
                raise KeyboardInterrupt
            opts = self.votes[_text_of(p)]
            row = []
            for j in range(params.n):
                h = hashlib.sha256(f"{params.seed + j}|{_text_of(p)}".encode()).digest()
                t = opts[h[0] % len(opts)]
                row.append(Generation(text=t, tokens=[t], logprobs=[{t: -0.5}]))
            out.append(row)
        return out


# ---------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: positive\nConfidence: 85%", (0.85, "number")),
        ("Confidence: 85 %", (0.85, "number")),
        ("confidence: 85 percent", (0.85, "number")),
        ("Confidence: 85/100", (0.85, "number")),
        ("Confidence: 0.85", (0.85, "number")),
        ("Confidence: 1.0", (1.0, "number")),
        ("Confidence: 1", (0.01, "number")),  # a bare whole number is a percentage
        ("Confidence: 0", (0.0, "number")),
        ("Confidence: 100%", (1.0, "number")),
        ("Confidence: .9", (0.9, "number")),
        ("I am 70% sure", (0.70, "number")),
        ("Confidence: high", (0.8, "word")),
        ("Confidence: Very High.", (0.9, "word")),
        ("low", (0.3, "word")),
        ("Confidence: not high", None),
        ("Confidence: 150%", None),
        ("Confidence: -5%", None),
        ("Confidence: 80-90%", None),
        ("Confidence: unsure", None),
        ("", None),
        ("positive", None),
        ("3 of 4 reviews, 80%", None),  # two numbers and no 'confidence': ambiguous
    ],
)
def test_parse_confidence_edge_cases(text, expected):
    got = parse_confidence(text)
    if expected is None:
        assert got is None
    else:
        assert got is not None and got[1] == expected[1]
        assert got[0] == pytest.approx(expected[0])


def test_parse_top_k_keeps_lines_naming_a_class():
    from calibkit.scoring.classify import parse_answer

    text = "1. positive: 70%\n2. negative: 0.25\nneutral: 5%\nfoo"
    got = parse_top_k(text, CLASSES, lambda t: parse_answer(t, CLASSES))
    assert got == [(1, pytest.approx(0.70)), (0, pytest.approx(0.25))]


# ---------------------------------------------------------------------------- verbalized
def test_verbalized_one_stage_scores_and_unparseable_is_a_failure():
    replies = {
        "a": "Answer: positive\nConfidence: 90%",
        "b": "Answer: negative\nConfidence: 0.6",
        "c": "Answer: positive\nConfidence: I cannot say",
        "d": "Answer: negative\nConfidence: high",
    }
    be = Scripted(reply=lambda p: replies[_text_of(p)])
    est = VerbalizedConfidence(be, CLASSES)
    with pytest.raises(ItemsFailed, match=r"item 2.*unparseable"):
        est.score(list(replies), labels=["positive", "positive", "negative", "negative"])
    s = est.score(
        list(replies), labels=["positive", "positive", "negative", "negative"], on_error="skip"
    )
    assert s.classes == ("wrong", "right")
    np.testing.assert_allclose(s.probs[:, 1], [0.9, 0.6, 0.8])  # never a made-up 0.5 for c
    assert s.ids.tolist() == [0, 1, 3]
    assert s.labels.tolist() == [1, 0, 1]  # right, wrong (said negative), right
    assert s.per_item["answer_index"].tolist() == [1, 0, 0]
    assert s.meta["n_unparseable"] == 1 and s.meta["n_word_confidence"] == 1
    assert s.meta["cost"]["model_calls"] == 3
    assert "Confidence: <number>%" in _last_user(be.seen[0])


def test_verbalized_two_stage_asks_a_follow_up_and_counts_two_calls():
    def reply(p):
        last = _last_user(p)
        if "How confident" in last:
            assert p[-2] == {"role": "assistant", "content": "positive"}
            return "Confidence: 40%"
        return "positive"

    be = Scripted(reply=reply)
    s = VerbalizedConfidence(be, CLASSES, style="two-stage").score(["x", "y"], labels=[1, 0])
    np.testing.assert_allclose(s.probs[:, 1], [0.4, 0.4])
    assert s.labels.tolist() == [1, 0]
    assert s.meta["cost"]["model_calls"] == 4 and s.meta["cost"]["per_item"]["model_calls"] == 2


def test_verbalized_top_k_takes_the_most_probable_guess():
    be = Scripted(reply=lambda p: "negative: 30%\npositive: 65%")
    s = VerbalizedConfidence(be, CLASSES, style="top-k", k=2).score(["x"], labels=[1])
    np.testing.assert_allclose(s.probs[:, 1], [0.65])
    assert s.per_item["answer_index"].tolist() == [1] and s.labels.tolist() == [1]


def test_verbalized_results_are_cached_and_resumed(tmp_path):
    be = Scripted(reply=lambda p: "Answer: positive\nConfidence: 70%")
    path = tmp_path / "c.sqlite"
    a = VerbalizedConfidence(be, CLASSES, cache=path).score(["x", "y"])
    n_calls = len(be.calls)
    b = VerbalizedConfidence(be, CLASSES, cache=path).score(["x", "y"])
    assert len(be.calls) == n_calls  # nothing asked again
    np.testing.assert_array_equal(a.probs, b.probs)
    assert b.meta["cost"] == a.meta["cost"]  # the method's cost, not what this run spent


# ---------------------------------------------------------------------------- P(True)
def test_ptrue_by_hand_and_the_follow_up_prompt():
    answers = {"a": "positive", "b": "negative", "c": "maybe"}
    lps = {
        "a": {"A": math.log(0.6), "B": math.log(0.2), "C": math.log(0.1)},
        "b": {" A": math.log(0.3), "B": math.log(0.5)},
        "c": {"A": math.log(0.9), "B": math.log(0.05)},
    }
    be = Scripted(reply=lambda p: answers[_text_of(p)], lp=lambda p: lps[_text_of(p)])
    s = PTrueConfidence(be, CLASSES).score(list(answers), labels=[1, 1, 0])
    np.testing.assert_allclose(s.probs[:, 1], [0.6 / 0.8, 0.3 / 0.8, 0.9 / 0.95])
    # right, wrong, and an answer naming no class is wrong
    assert s.labels.tolist() == [1, 0, 0]
    assert s.meta["n_unparsed_answer"] == 1
    assert [c[0] for c in be.calls] == ["generate", "next_token_logprobs"]
    follow = be.seen[-1]
    assert follow[-2] == {"role": "assistant", "content": "maybe"}
    assert "(A) True" in follow[-1]["content"]
    assert s.meta["cost"]["per_item"]["model_calls"] == 2


def test_ptrue_missing_option_is_bounded_or_fails():
    lps = {
        "a": {"A": math.log(0.7), "x": math.log(0.01)},  # B outside the top-k: bounded by 0.01
        "b": ItemFailure("no log-probabilities"),
    }
    be = Scripted(reply=lambda p: "positive", lp=lambda p: lps[_text_of(p)])
    s = PTrueConfidence(be, CLASSES).score(["a", "b"], on_error="skip")
    np.testing.assert_allclose(s.probs[:, 1], [0.7 / 0.71])
    assert s.meta["n_filled_missing"] == 1
    assert "no log-probabilities" in s.meta["failures"][0]["reason"]


# ---------------------------------------------------------------------------- consistency
def test_consistency_vote_share_entropy_and_no_vote_failure():
    from scipy.stats import entropy

    votes = {"a": ["positive"], "b": ["positive", "negative", "Positive."], "c": ["dunno"]}
    be = Scripted(votes=votes)
    est = ConsistencyConfidence(be, CLASSES, n=6, seed=3)
    with pytest.raises(ItemsFailed, match=r"item 2.*none of the 6 samples"):
        est.score(list(votes))
    s = est.score(list(votes), labels=[1, 0, 1], on_error="skip")
    counts = np.asarray(s.per_item["votes"].tolist(), dtype=float)
    assert counts.sum(axis=1).tolist() == [6, 6]
    np.testing.assert_allclose(s.probs, counts / 6, atol=1e-9)
    np.testing.assert_allclose(s.per_item["vote_entropy"], entropy(counts.T / 6))
    assert counts[0].tolist() == [0, 6] and s.labels.tolist() == [1, 0]
    assert s.meta["cost"]["model_calls"] == 12
    assert s.meta["sampling"] == {"T": 0.7, "top_p": 1.0, "seed": 3, "n": 6}


def test_consistency_resumes_exactly_after_an_interrupt(tmp_path):
    votes = {t: ["positive", "negative", "negative"] for t in "abcdef"}
    path = tmp_path / "s.sqlite"
    full = ConsistencyConfidence(Scripted(votes=votes), CLASSES, n=4).score(list(votes))
    killed = Scripted(votes=votes, fail_after=2)
    est = ConsistencyConfidence(killed, CLASSES, n=4, cache=path, batch_size=4)
    with pytest.raises(KeyboardInterrupt, match="samples cached; rerun to resume"):
        est.score(list(votes))
    with ScoreCache(path) as c:
        kept = len(c)
    assert 0 < kept < 24
    again = Scripted(votes=votes)
    res = ConsistencyConfidence(again, CLASSES, n=4, cache=path, batch_size=4).score(list(votes))
    assert sum(n for _, n in again.calls) == 24 - kept  # only the missing samples
    np.testing.assert_array_equal(res.probs, full.probs)


def test_consistency_rejects_greedy_and_a_backend_without_sampling():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ConsistencyConfidence(Scripted(), CLASSES, temperature=0)

    class NoSample:
        name = "ns"

    with pytest.raises(ValueError, match="cannot sample"):
        ConsistencyConfidence(NoSample(), CLASSES)


# ---------------------------------------------------------------------------- registry, calibration
def test_registry_and_binary_scores_feed_a_calibrator():
    from calibkit.calibrators import PlattScaling

    assert set(ESTIMATORS) == {"logits", "ptrue", "verbalized", "consistency"}
    with pytest.raises(ValueError, match="unknown confidence estimator 'x'"):
        make_estimator("x", Scripted(), CLASSES)
    rng = np.random.default_rng(0)
    conf = {f"t{i}": int(rng.integers(1, 100)) for i in range(40)}
    be = Scripted(reply=lambda p: f"Answer: positive\nConfidence: {conf[_text_of(p)]}%")
    texts = list(conf)
    labels = ["positive" if rng.random() < conf[t] / 100 else "negative" for t in texts]
    s = make_estimator("verbalized", be, CLASSES).score(texts, labels=labels)
    out = PlattScaling().fit_scores(s).calibrate(s)
    assert out.probs.shape == (40, 2) and out.classes == ("wrong", "right")
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0)
    # labels were drawn with P(right) = stated confidence: the fitted map increases with it
    order = np.argsort(s.probs[:, 1], kind="stable")
    assert np.all(np.diff(out.probs[order, 1]) >= -1e-12)
    assert out.probs[order[-1], 1] > out.probs[order[0], 1]


def test_logits_estimator_wraps_the_classification_scorer():
    from calibkit.scoring.classify import ClassificationScorer

    class LP(Scripted):
        def generate(self, prompts, *, max_new_tokens=8, candidates=(), top_logprobs=20):
            return [
                Generation("positive", ["positive"], [{"positive": -0.2, "negative": -1.9}])
                for _ in prompts
            ]

    be = LP()
    s = LogitsConfidence(be, CLASSES).score(["a", "b"], labels=[1, 0])
    ref = ClassificationScorer(be, CLASSES, progress=False).score(["a", "b"], labels=[1, 0])
    np.testing.assert_array_equal(s.logits, ref.logits)
    assert s.meta["estimator"] == "logits" and s.meta["cost"]["model_calls"] == 2


# ---------------------------------------------------------------------------- auto / evaluation
def test_pcorrect_ece_by_hand_and_correctness_views():
    from calibkit.scores import Scores
    from calibkit.scoring.confidence import correctness
    from calibkit.scoring.confidence.select import pcorrect_ece

    # bins of width 0.5: {0.2, 0.4} acc 1/2 conf 0.3; {0.6, 1.0} acc 1 conf 0.8
    conf = [0.2, 0.4, 0.6, 1.0]
    assert pcorrect_ece(conf, [1, 0, 1, 1], n_bins=2) == pytest.approx(0.5 * 0.2 + 0.5 * 0.2)
    binary = Scores.from_probs([0.3, 0.9], labels=[0, 1], classes=("wrong", "right"))
    c, r = correctness(binary)
    np.testing.assert_allclose(c, [0.3, 0.9])
    assert r.tolist() == [False, True]
    per_class = Scores.from_probs([[0.2, 0.8], [0.6, 0.4]], labels=[1, 1])
    c, r = correctness(per_class)
    np.testing.assert_allclose(c, [0.8, 0.6])
    assert r.tolist() == [True, False]


def _auto_backend(with_logprobs: bool) -> Scripted:
    votes = {
        f"t{i}": ["positive"] if i % 2 == 0 else ["positive", "positive", "negative"]
        for i in range(20)
    }

    def lp(p):
        if with_logprobs:
            return {"positive": -0.1, "negative": -2.4}
        return ItemFailure("choices[0].logprobs is null: no log-probabilities")

    return Scripted(reply=lambda p: "Answer: positive\nConfidence: 99%", lp=lp, votes=votes)


def test_auto_uses_logprobs_when_the_backend_gives_them():
    from calibkit.scoring.confidence import choose_estimator

    texts = [f"t{i}" for i in range(20)]
    labels = ["positive" if i % 2 == 0 else "negative" for i in range(20)]
    choice = choose_estimator(_auto_backend(True), CLASSES, texts, labels)
    assert choice.name == "logits" and choice.table == {}


def test_auto_picks_the_cheapest_text_only_estimator_meeting_the_target():
    from calibkit.scoring.confidence import choose_estimator, score_confidence

    texts = [f"t{i}" for i in range(20)]
    labels = ["positive" if i % 2 == 0 else "negative" for i in range(20)]
    be = _auto_backend(False)
    # verbalized says 99% always: no ranking (AUROC 0.5); the vote share ranks right over wrong
    c = choose_estimator(be, CLASSES, texts, labels, metric="auroc", target=0.8)
    assert c.name == "consistency"
    assert c.table["verbalized"]["auroc"] == pytest.approx(0.5)
    from sklearn.metrics import roc_auc_score

    from calibkit.scoring.confidence import correctness

    conf, right = correctness(ConsistencyConfidence(be, CLASSES).score(texts, labels))
    assert c.table["consistency"]["auroc"] == pytest.approx(roc_auc_score(right, conf))
    assert c.table["consistency"]["auroc"] > 0.8
    assert c.table["verbalized"]["calls_per_item"] == 1
    assert c.table["consistency"]["calls_per_item"] == 5
    # a loose ECE target is met by the cheaper one after calibration
    assert choose_estimator(be, CLASSES, texts, labels, metric="ece", target=0.5).name == (
        "verbalized"
    )
    with pytest.warns(UserWarning, match="no estimator met auroc target 1.1"):
        assert choose_estimator(be, CLASSES, texts, labels, metric="auroc", target=1.1).name == (
            "consistency"
        )
    s = score_confidence("auto", be, CLASSES, texts, labels, auto_metric="auroc", auto_target=0.8)
    assert s.meta["estimator"] == "consistency"
    assert s.meta["confidence_auto"]["chosen"] == "consistency"
    with pytest.raises(ValueError, match="needs labelled items"):
        score_confidence("auto", be, CLASSES, texts)
    with pytest.raises(ValueError, match="--confidence must be one of"):
        score_confidence("bogus", be, CLASSES, texts)


def test_cli_hook_options_and_scorer():
    import argparse

    from calibkit.scoring.confidence.cli import (
        add_confidence_arguments,
        check_confidence_args,
        confidence_scorer,
    )

    p = argparse.ArgumentParser()
    p.add_argument("--task", default="classify")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", default="generate")
    p.add_argument("--max-new-tokens", type=int, default=5)
    add_confidence_arguments(p)
    args = p.parse_args([])
    assert args.confidence == "logits"
    assert confidence_scorer(args, Scripted(), CLASSES, None, cache=None, batch_size=4) is None
    for bad, msg in (
        (["--confidence", "verbalized", "--task", "mcq"], "supports --task classify only"),
        (["--confidence", "consistency", "--samples", "1"], "--samples must be >= 2"),
        (["--confidence", "consistency", "--temperature", "0"], "--temperature must be > 0"),
    ):
        with pytest.raises(ValueError, match=msg):
            check_confidence_args(p.parse_args(bad))
    args = p.parse_args(["--confidence", "consistency", "--samples", "4", "--seed", "2"])
    check_confidence_args(args)
    votes = {"a": ["positive", "negative"], "b": ["negative"]}
    sc = confidence_scorer(args, Scripted(votes=votes), CLASSES, None, cache=None, batch_size=4)
    assert sc is not None
    s = sc.score(["a", "b"], labels=[1, 0], ids=["x", "y"], on_error="skip")
    assert s.meta["sampling"]["n"] == 4 and s.meta["sampling"]["seed"] == 2
    assert s.ids.tolist() == ["x", "y"]
    assert sc.last_run == {"n_items": 2, "n_cached": 0, "n_new": 2, "n_failed": 0}


# ---------------------------------------------------------------------------- sampling
def test_sampling_params_validation():
    for bad in (
        {"temperature": -1},
        {"temperature": float("nan")},
        {"top_p": 0},
        {"top_p": 1.5},
        {"n": 0},
        {"seed": -1},
        {"seed": 1.5},
    ):
        with pytest.raises(ValueError):
            SamplingParams(**bad)
    p = SamplingParams(temperature=0.5, seed=10, n=3)
    assert p.for_sample(2) == SamplingParams(temperature=0.5, seed=12, n=1)


def test_http_backend_sends_one_request_per_sample_with_seed_plus_j(monkeypatch):
    from calibkit.scoring.backends.openai_http import OpenAICompatibleBackend

    be = OpenAICompatibleBackend("http://127.0.0.1:9/v1", model="m")
    sent: list[dict[str, Any]] = []

    def fake_run_all(payloads):
        sent.extend(payloads)
        return [Generation(text=str(b["seed"])) for b in payloads]

    monkeypatch.setattr(be, "_run_all", fake_run_all)
    out = be.sample(
        [[{"role": "user", "content": "hi"}], "plain"],
        SamplingParams(temperature=0.8, top_p=0.9, seed=5, n=3),
        max_new_tokens=7,
    )
    assert [[g.text for g in row] for row in out] == [["5", "6", "7"], ["5", "6", "7"]]
    assert all(b["n"] == 1 and b["temperature"] == 0.8 and b["top_p"] == 0.9 for b in sent)
    assert all(b["max_tokens"] == 7 for b in sent)

    def interrupted(payloads):
        raise PartialResults({0: Generation("a"), 1: Generation("b"), 2: Generation("c"), 4: 0})

    monkeypatch.setattr(be, "_run_all", interrupted)
    with pytest.raises(PartialResults) as e:
        be.sample(["x", "y"], SamplingParams(n=3))
    assert sorted(e.value.results) == [0]  # only prompt 0 has all its samples


# ---------------------------------------------------------------------------- transformers
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
import test_scoring  # noqa: E402  (its tiny-model fixtures, shared)

make_backend = test_scoring.make_backend
tiny_tokenizer = test_scoring.tiny_tokenizer
tiny_llama = test_scoring.tiny_llama

PROMPTS: list[Prompt] = [
    [{"role": "user", "content": "the movie begins in the past"}],
    [{"role": "user", "content": "an inelegant combination of two unrelated shorts"}],
    "for its seriousness and stunning acting",
    [{"role": "user", "content": "objective subjective"}],
    [{"role": "user", "content": "Consider the task of classifying"}],
]


def _texts(rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    return [[g.text for g in r] for r in rows]


def test_transformers_sampling_seeded_and_batch_independent(tiny_llama, tiny_tokenizer):
    p = SamplingParams(temperature=3.0, seed=11, n=3)
    b1 = make_backend(tiny_llama, tiny_tokenizer, batch_size=1, prefix_reuse=False)
    b4 = make_backend(tiny_llama, tiny_tokenizer, batch_size=4)
    a = b1.sample(PROMPTS, p, max_new_tokens=6)
    assert _texts(a) == _texts(b1.sample(PROMPTS, p, max_new_tokens=6))  # reproducible
    assert _texts(a) == _texts(b4.sample(PROMPTS, p, max_new_tokens=6))  # batching
    assert _texts(a) == _texts(b4.sample(PROMPTS[::-1], p, max_new_tokens=6))[::-1]
    # sample j alone (n=1, seed + j) is sample j of the n-sample call
    for j in range(3):
        alone = b4.sample(PROMPTS, p.for_sample(j), max_new_tokens=6)
        assert [r[0].text for r in alone] == [r[j].text for r in a]
    # T > 0 with a hot temperature does not collapse to one answer everywhere
    assert len({g.text for r in a for g in r}) > len(PROMPTS)
    other = b4.sample(PROMPTS, SamplingParams(temperature=3.0, seed=12, n=3), max_new_tokens=6)
    assert _texts(other) != _texts(a)
    for row in a:
        for g in row:
            assert len(g.tokens) == len(g.logprobs) and all(
                v <= 0 for d in g.logprobs for v in d.values()
            )


def test_transformers_sampling_at_temperature_zero_is_greedy(tiny_llama, tiny_tokenizer):
    be = make_backend(tiny_llama, tiny_tokenizer, batch_size=2)
    greedy = [g.text for g in be.generate(PROMPTS, max_new_tokens=5)]
    s = be.sample(PROMPTS, SamplingParams(temperature=0.0, n=2), max_new_tokens=5)
    assert _texts(s) == [[t, t] for t in greedy]


def test_transformers_top_p_restricts_to_the_nucleus(tiny_llama, tiny_tokenizer):
    from calibkit.scoring.sampling import sample_token

    logp = torch.log_softmax(torch.tensor([2.0, 1.0, 0.0, -1.0]), dim=-1)
    probs = logp.exp()  # 0.644, 0.237, 0.087, 0.032: top_p 0.7 keeps the first two
    g = torch.Generator().manual_seed(0)
    seen = {sample_token(logp, SamplingParams(top_p=0.7), g) for _ in range(300)}
    assert seen == {0, 1} and float(probs[0]) < 0.7


def test_sample_cached_resumes_exactly_on_the_tiny_model(tiny_llama, tiny_tokenizer, tmp_path):
    be = make_backend(tiny_llama, tiny_tokenizer, batch_size=2)
    p = SamplingParams(temperature=2.0, seed=4, n=3)
    ref = sample_cached(be, PROMPTS, p, max_new_tokens=5, batch_size=4)
    calls = {"n": 0}
    real = be.sample

    def dying(prompts, params, max_new_tokens=64):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(prompts, params, max_new_tokens)

    path = tmp_path / "samples.sqlite"
    with ScoreCache(path) as cache:
        be.sample = dying  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            sample_cached(be, PROMPTS, p, max_new_tokens=5, cache=cache, batch_size=4)
        be.sample = real  # type: ignore[method-assign]
        kept = len(cache)
        assert 0 < kept < 15
        stats: dict[str, int] = {}
        got = sample_cached(
            be, PROMPTS, p, max_new_tokens=5, cache=cache, batch_size=4, stats=stats
        )
        assert stats["n_cached"] == kept and stats["n_new"] == 15 - kept
        # raising n reuses the samples already drawn
        more = sample_cached(
            be, PROMPTS, SamplingParams(temperature=2.0, seed=4, n=4), max_new_tokens=5,
            cache=cache, batch_size=4, stats=stats,
        )  # fmt: skip
        assert stats["n_cached"] == 15
    assert _texts(got) == _texts(ref)
    assert [r[:3] for r in _texts(more)] == _texts(ref)


# ---------------------------------------------------------------------------- the bundled SmolLM2
@pytest.mark.slow
def test_every_estimator_on_smollm2(tmp_path):
    """Each estimator end to end on the real SmolLM2-135M-Instruct: valid Scores, costs as
    documented, sampling seeded and resumable. Numbers are not asserted: a 135M model's stated
    confidences are not expected to mean much (it rarely writes a class name or a confidence in
    the requested format: such items are failures, never made-up scores)."""
    from calibkit.scoring.backends import make_backend

    be = make_backend("smollm2", batch_size=4)
    texts = [
        "a gorgeous , witty , seductive movie .",
        "the plot is nothing but boilerplate clichés from start to finish .",
        "it 's a charming and often affecting journey .",
        "the acting is dreadful and the jokes fall flat .",
    ]
    labels = ["positive", "negative", "positive", "negative"]
    path = tmp_path / "c.sqlite"
    out = {}
    for name in ESTIMATORS:
        opts: dict[str, Any] = {"n": 3, "seed": 1} if name == "consistency" else {}
        est = make_estimator(name, be, CLASSES, cache=path, batch_size=4, **opts)
        try:
            out[name] = s = est.score(texts, labels, on_error="skip")
        except ItemsFailed as e:  # a 135M model may never state a readable confidence
            assert name == "verbalized", e
            assert all("unparseable" in f["reason"] for f in e.failures)
            continue
        assert len(s) + len(s.meta.get("failures", [])) == 4
        assert np.all((s.probs >= 0) & (s.probs <= 1))
        assert s.meta["cost"]["model_calls"] >= len(s)
    assert out["ptrue"].meta["cost"]["per_item"]["model_calls"] == 2
    assert out["consistency"].meta["cost"]["per_item"]["model_calls"] == 3
    again = make_estimator("consistency", be, CLASSES, cache=path, n=3, seed=1)
    s2 = again.score(texts, labels, on_error="skip")
    assert again.last_run["n_cached"] == len(s2)  # resumed from the cache, nothing sampled
    np.testing.assert_array_equal(s2.probs, out["consistency"].probs)


# ---------------------------------------------------------------------------- the study (skeleton)
def test_compare_estimators_rows_against_sklearn():
    from sklearn.metrics import brier_score_loss, roc_auc_score

    from calibkit.experiments.confidence_methods import compare_estimators
    from calibkit.scoring.confidence import correctness

    texts = [f"t{i}" for i in range(40)]
    labels = ["positive" if i % 2 == 0 else "negative" for i in range(40)]
    votes = {
        t: ["positive"] if i % 2 == 0 else ["positive", "negative", "negative", "positive", "x"]
        for i, t in enumerate(texts)
    }
    be = _auto_backend(False)
    be.votes = votes
    rows = compare_estimators(
        be, CLASSES, texts, labels, estimators=["consistency", "verbalized", "ptrue"], seed=3
    )
    by = {r["estimator"]: r for r in rows}
    assert "error" in by["ptrue"] and by["ptrue"]["n_failed"] == 40  # no log-probabilities
    s = ConsistencyConfidence(be, CLASSES).score(texts, labels)
    conf, right = correctness(s)
    test = ~(np.random.default_rng(3).permutation(40) < 20)
    r = by["consistency"]
    assert r["n_test"] == 20 and r["calls_per_item"] == 5
    assert r["auroc"][0] == pytest.approx(roc_auc_score(right[test], conf[test]))
    assert r["brier_raw"][0] == pytest.approx(brier_score_loss(right[test], conf[test]))
    assert r["auroc"][1] <= r["auroc"][0] <= r["auroc"][2]
    assert by["verbalized"]["no_better_than_chance"] is True  # a constant 99% ranks nothing
