"""Issue #10 item 19: the transformers backend uses the current KV-cache API.

transformers 5.x deprecates ``model(past_key_values=...)`` (a ``FutureWarning`` on every local
run, and a hard break in a later release) in favour of ``cache=``. Runs here turn that warning
into an error and also watch transformers' own logger, on the tiny in-process models of
``test_scoring.py``; the log-probabilities must equal an unpadded forward pass without a cache.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from test_scoring import (  # noqa: E402  (fixtures of the tiny models)
    _one_thread,  # noqa: F401
    make_backend,
    ref_next_logprobs,
    tiny_llama,  # noqa: F401
    tiny_t5,  # noqa: F401
    tiny_tokenizer,  # noqa: F401
)

PROMPTS = [
    "Consider the task of classifying between the following classes: objective subjective",
    "Consider the task of classifying between the following classes: positive negative",
    "the movie begins in the past where a young boy named sam attempts to save a friend .",
]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _no_deprecation(run):  # type: ignore[no-untyped-def]
    """Run ``run()`` with FutureWarning/DeprecationWarning as errors and transformers' logger
    recorded (its ``warning_once`` cache cleared, so a message already shown counts again)."""
    clear = getattr(logging.Logger.warning_once, "cache_clear", None)
    if clear is not None:
        clear()
    rec = _Records()
    hf = logging.getLogger("transformers")
    hf.addHandler(rec)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            warnings.filterwarnings("error", message=".*past_key_values.*")
            out = run()
    finally:
        hf.removeHandler(rec)
    bad = [m for m in rec.messages if "past_key_values" in m or "deprecated" in m.lower()]
    assert not bad, bad
    return out


def test_decoder_runs_without_cache_deprecation_and_logits_are_unchanged(
    tiny_llama,  # noqa: F811  (fixtures imported from test_scoring)
    tiny_tokenizer,  # noqa: F811
) -> None:
    be = make_backend(tiny_llama, tiny_tokenizer, batch_size=2, min_prefix_tokens=4)
    mat = _no_deprecation(lambda: be.next_token_logprob_matrix(PROMPTS))
    assert be.stats["reused_tokens"] > 0  # the prefix-cache path ran
    for i, p in enumerate(PROMPTS):
        ref = ref_next_logprobs(tiny_llama, be.encode(p))
        np.testing.assert_allclose(mat[i], ref, atol=2e-5)
    gens = _no_deprecation(lambda: be.generate(PROMPTS, max_new_tokens=3, top_logprobs=3))
    assert len(gens) == 3 and all(len(g.tokens) >= 1 for g in gens)
    # greedy steps 1 and 2 equal unpadded forward passes over the prompt (+ the first token)
    checked = 0
    for p, g in zip(PROMPTS, gens, strict=True):
        ref1 = ref_next_logprobs(tiny_llama, be.encode(p))
        assert g.logprobs[0][g.tokens[0]] == pytest.approx(float(ref1.max()), abs=2e-5)
        if len(g.tokens) < 2:
            continue
        ref2 = ref_next_logprobs(tiny_llama, [*be.encode(p), int(np.argmax(ref1))])
        assert g.logprobs[1][g.tokens[1]] == pytest.approx(float(ref2.max()), abs=2e-5)
        checked += 1
    assert checked >= 1


def test_encoder_decoder_runs_without_cache_deprecation(
    tiny_t5,  # noqa: F811
    tiny_tokenizer,  # noqa: F811
) -> None:
    be = make_backend(tiny_t5, tiny_tokenizer, batch_size=2)
    gens = _no_deprecation(lambda: be.generate(PROMPTS[:2], max_new_tokens=3))
    assert len(gens) == 2
