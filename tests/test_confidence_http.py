"""Issue #14 item 1: confidence over HTTP from servers that return no log-probabilities.

A request says whether it wants log-probabilities (``generate(..., top_logprobs=0)`` and
``sample`` ask for none: no ``logprobs``/``top_logprobs`` in the body), and a reply without them
is accepted exactly when none were asked for; replies to requests that asked keep the strict
checks. The text-only estimators (verbalized, consistency) then work end to end against a stub
that never returns log-probabilities (``tests/confidence_server.py``), logits and P(True) fail
with one line naming the missing log-probabilities, and ``auto`` falls back to a text-only
estimator there and uses logits where the server returns them.

The expected values are computed from the stub's own definitions (``stated``, ``sampled``,
``belief``), not from calibkit's parser or scorer.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibkit.scoring.backends.base import Generation, ItemFailure
from calibkit.scoring.backends.openai_http import OpenAICompatibleBackend
from calibkit.scoring.backends.openai_schema import (
    Malformed,
    TextGeneration,
    build_payload,
    parse_reply,
    wants_logprobs,
)
from calibkit.scoring.cache import ScoreCache
from calibkit.scoring.classify import ItemsFailed
from calibkit.scoring.confidence import (
    ConsistencyConfidence,
    LogitsConfidence,
    PTrueConfidence,
    VerbalizedConfidence,
    choose_estimator,
    score_confidence,
)
from calibkit.scoring.confidence.base import cost_of
from calibkit.scoring.sampling import SamplingParams, decode_generation, encode_generation
from confidence_server import (
    CLASSES,
    ConfidenceServer,
    answer,
    belief,
    sampled,
    stated,
    truth,
)
from fault_server import FaultServer

CHAT = [{"role": "user", "content": "Text: hello\nAnswer:"}]
TEXTS = [f"review {i} {'good' if i % 3 else 'bad'} plot" for i in range(12)]
LABELS = [truth(t) for t in TEXTS]


def _backend(url: str, **kw) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(url, "stub", timeout=10, max_retries=0, backoff=0, **kw)


# ---------------------------------------------------------------------- the schema
def test_build_payload_text_only_omits_logprob_fields():
    chat = build_payload("m", CHAT, 5, 20, 0, logprobs=False)
    plain = build_payload("m", "Text: hi\nAnswer:", 5, 20, 0, logprobs=False)
    assert "logprobs" not in chat and "top_logprobs" not in chat
    assert "logprobs" not in plain and "top_logprobs" not in plain
    assert not wants_logprobs(chat) and not wants_logprobs(plain)
    # the default still asks (k = 0 on /completions asks for the chosen token's logprob)
    assert build_payload("m", CHAT, 5, 3, 0)["top_logprobs"] == 3
    assert wants_logprobs(build_payload("m", "x", 1, 0, 0))
    assert wants_logprobs(build_payload("m", CHAT, 1, 0, 0))


def _chat_reply(content, **extra):
    return {"choices": [{"message": {"role": "assistant", "content": content}, **extra}], **{}}


@pytest.mark.parametrize("chat", [True, False])
def test_text_only_reply_parsed_when_none_was_asked(chat):
    body = build_payload("m", CHAT if chat else "x", 5, 0, 0, logprobs=False)
    if chat:
        payload = {**_chat_reply("Confidence: 80%"), "usage": {"completion_tokens": 4}}
    else:
        payload = {"choices": [{"text": "Confidence: 80%"}], "usage": {"completion_tokens": 4}}
    g = parse_reply(payload, body)
    assert isinstance(g, TextGeneration)
    assert (g.text, g.tokens, g.logprobs, g.n_output_tokens) == ("Confidence: 80%", [], [], 4)
    # the same reply to a request that asked for log-probabilities is still refused
    with pytest.raises(Malformed, match="no log-probabilities"):
        parse_reply(payload, build_payload("m", CHAT if chat else "x", 5, 2, 0))


def test_text_only_reply_checks_the_text_and_usage():
    body = build_payload("m", CHAT, 5, 0, 0, logprobs=False)
    assert parse_reply(_chat_reply(None), body).text == ""  # a valid empty reply
    assert parse_reply(_chat_reply(""), body).text == ""
    assert parse_reply(_chat_reply("hi"), body).n_output_tokens is None  # usage not reported
    with pytest.raises(Malformed, match=r"choices\[0\]\.message\.content is int"):
        parse_reply(_chat_reply(7), body)
    with pytest.raises(Malformed, match="choices is missing"):
        parse_reply({"object": "x"}, body)
    with pytest.raises(Malformed, match=r"usage\.completion_tokens is -1"):
        parse_reply({**_chat_reply("hi"), "usage": {"completion_tokens": -1}}, body)
    with pytest.raises(Malformed, match=r"choices\[0\]\.text is missing"):
        parse_reply({"choices": [{"message": {"content": "x"}}]}, {"prompt": "x"})
    # log-probabilities nobody asked for are ignored (never read, so never trusted)
    bad = _chat_reply("hi", logprobs={"content": [{"token": "hi", "logprob": math.nan}]})
    assert parse_reply(bad, body) == TextGeneration(text="hi")


# ---------------------------------------------------------------------- the backend
def test_generate_top_logprobs_0_sends_a_text_only_request():
    with FaultServer() as srv:
        b = _backend(srv.url)
        msgs = [{"role": "user", "content": "Text: good @no_logprobs"}]
        (g,) = b.generate([msgs], max_new_tokens=3, top_logprobs=0)
        assert isinstance(g, Generation) and g.text == "positive" and g.logprobs == []
        body = srv.requests[-1]["body"]
        assert "logprobs" not in body and "top_logprobs" not in body
        (g,) = b.generate(["Text: good @no_logprobs"], max_new_tokens=3, top_logprobs=0)
        assert g.text == "positive" and "logprobs" not in srv.requests[-1]["body"]
        # asking for log-probabilities from the same reply is still an item failure
        (f,) = b.generate([msgs], max_new_tokens=3, top_logprobs=2)
        assert isinstance(f, ItemFailure) and "no log-probabilities" in f.reason


@pytest.mark.parametrize(
    ("tag", "needle"),
    [("@shape", "choices is missing"), ("@garbage", "not JSON"), ("@e400", "HTTP 400")],
)
def test_text_only_requests_keep_the_fault_handling(tag, needle):
    with FaultServer() as srv:
        b = _backend(srv.url)
        (f,) = b.generate([[{"role": "user", "content": f"Text: x {tag}"}]], top_logprobs=0)
        assert isinstance(f, ItemFailure) and needle in f.reason, f


def test_sample_asks_for_no_logprobs():
    with ConfidenceServer(logprobs=False) as srv:
        b = _backend(srv.url)
        prompt = [{"role": "user", "content": f"Text: {TEXTS[1]}\nAnswer:"}]
        (row,) = b.sample([prompt], SamplingParams(temperature=0.7, seed=3, n=4), 5)
        assert [g.text for g in row] == [sampled(TEXTS[1], 3 + j) for j in range(4)]
        assert all(isinstance(g, TextGeneration) and g.n_output_tokens == 1 for g in row)
        for r in srv.requests:
            assert "logprobs" not in r["body"] and "top_logprobs" not in r["body"]


def test_text_only_sample_round_trips_the_cache_with_its_token_count():
    g = TextGeneration(text="positive", n_output_tokens=3)
    back = decode_generation(encode_generation(g))
    assert back == g and cost_of(["p"], [back])["output_tokens"] == 3
    assert decode_generation(encode_generation(Generation("a", ["a"], [{"a": -1.0}]))) == (
        Generation("a", ["a"], [{"a": -1.0}])
    )
    with pytest.raises(ValueError, match="n_output_tokens"):
        decode_generation({"text": "a", "tokens": [], "logprobs": [], "n_output_tokens": -2})


# ---------------------------------------------------------------------- estimators, end to end
@pytest.mark.parametrize("style", ["one-stage", "two-stage", "top-k"])
def test_verbalized_end_to_end_without_logprobs(style):
    texts = [*TEXTS, "an @unparseable good one"]
    with ConfidenceServer(logprobs=False) as srv:
        s = VerbalizedConfidence(_backend(srv.url), CLASSES, style=style).score(
            texts, [truth(t) for t in texts], on_error="skip"
        )
        bodies = [r["body"] for r in srv.requests]
    assert all("logprobs" not in b and "top_logprobs" not in b for b in bodies)
    assert len(s) == len(TEXTS) and s.meta["n_unparseable"] == 1
    assert [f["row"] for f in s.meta["failures"]] == [len(TEXTS)]
    np.testing.assert_allclose(s.probs[:, 1], [stated(t) / 100 for t in TEXTS])
    calls = 2 if style == "two-stage" else 1
    assert s.meta["cost"]["model_calls"] == calls * len(TEXTS)
    # output tokens come from the replies' usage (words of the stub's replies), not 0
    words = {"one-stage": 4, "two-stage": 1 + 2, "top-k": 4}[style]
    assert s.meta["cost"]["output_tokens"] == words * len(TEXTS)


def test_consistency_end_to_end_without_logprobs(tmp_path):
    n, seed = 5, 11
    with ConfidenceServer(logprobs=False) as srv, ScoreCache(tmp_path / "c.sqlite") as cache:
        est = ConsistencyConfidence(_backend(srv.url), CLASSES, n=n, seed=seed, cache=cache)
        s = est.score(TEXTS, LABELS)
        n_requests = len(srv.requests)
        again = est.score(TEXTS, LABELS)  # all from the cache
        assert len(srv.requests) == n_requests == n * len(TEXTS)
    for i, t in enumerate(TEXTS):
        votes = [sampled(t, seed + j) for j in range(n)]
        expected = [votes.count(c) / n for c in CLASSES]
        np.testing.assert_allclose(s.probs[i], expected, atol=1e-9)
    np.testing.assert_array_equal(s.probs, again.probs)
    assert s.meta["cost"] == again.meta["cost"]
    assert s.meta["cost"]["output_tokens"] == n * len(TEXTS)  # one word per sample, from usage


@pytest.mark.parametrize("estimator", [LogitsConfidence, PTrueConfidence])
def test_logit_estimators_fail_in_one_line_naming_the_missing_logprobs(estimator):
    with ConfidenceServer(logprobs=False) as srv:
        with pytest.raises(ItemsFailed) as e:
            estimator(_backend(srv.url), CLASSES).score(TEXTS[:3], LABELS[:3])
    msg = str(e.value)
    assert "\n" not in msg and "no log-probabilities" in msg


def test_ptrue_proposes_its_answer_without_asking_for_logprobs():
    with ConfidenceServer(logprobs=True) as srv:
        s = PTrueConfidence(_backend(srv.url), CLASSES).score(TEXTS, LABELS)
        first = [r["body"] for r in srv.requests if r["body"]["max_tokens"] != 1]
        second = [r["body"] for r in srv.requests if r["body"]["max_tokens"] == 1]
    assert first and all("logprobs" not in b for b in first)
    assert second and all(b["logprobs"] is True for b in second)
    np.testing.assert_allclose(s.probs[:, 1], [belief(t) for t in TEXTS], rtol=1e-9)


def test_auto_falls_back_to_text_only_without_logprobs():
    with ConfidenceServer(logprobs=False) as srv:
        b = _backend(srv.url)
        choice = choose_estimator(b, CLASSES, TEXTS, LABELS)
        s = score_confidence("auto", b, CLASSES, TEXTS, LABELS)
    assert choice.name in ("verbalized", "consistency")
    assert choice.reason.startswith("no log-probabilities from backend")
    assert "\n" not in choice.reason
    assert set(choice.table) == {"verbalized", "consistency"}
    assert s.meta["estimator"] == choice.name
    assert s.meta["confidence_auto"]["chosen"] == choice.name


def test_auto_uses_logits_when_the_server_returns_them():
    with ConfidenceServer(logprobs=True) as srv:
        b = _backend(srv.url)
        s = score_confidence("auto", b, CLASSES, TEXTS, LABELS)
        assert not any("temperature" in r["body"] and r["body"]["temperature"] > 0
                       for r in srv.requests)  # fmt: skip
    assert s.meta["confidence_auto"]["chosen"] == "logits"
    assert "returns log-probabilities" in s.meta["confidence_auto"]["reason"]
    # the stub's first-position probabilities: log p for its answer, log(1 - p) for the other
    for i, t in enumerate(TEXTS):
        k = CLASSES.index(answer(t))
        assert s.probs[i, k] == pytest.approx(belief(t), rel=1e-6)


# ---------------------------------------------------------------------- transformers
try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
except ImportError:  # pragma: no cover - the HTTP tests above still run
    test_scoring = None
else:
    import test_scoring  # its tiny-model fixtures, shared

    tiny_tokenizer = test_scoring.tiny_tokenizer
    tiny_llama = test_scoring.tiny_llama


@pytest.mark.skipif(test_scoring is None, reason="torch/transformers not installed")
def test_transformers_generate_with_top_logprobs_0(tiny_llama, tiny_tokenizer):
    """The text-only estimators call generate(top_logprobs=0) on every backend: the local one
    decodes the same text and reports only the chosen token at each position."""
    b = test_scoring.make_backend(tiny_llama, tiny_tokenizer)
    prompts = [[{"role": "user", "content": "the movie begins"}], "plain prompt"]
    full = b.generate(prompts, max_new_tokens=4, top_logprobs=5)
    bare = b.generate(prompts, max_new_tokens=4, top_logprobs=0)
    assert [g.text for g in bare] == [g.text for g in full]
    for g in bare:
        assert [list(d) for d in g.logprobs] == [[t] for t in g.tokens]
