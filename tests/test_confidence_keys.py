"""The estimators' cache keys are stable: a cached run (and the study's caches) still hits."""

from __future__ import annotations

import json

from calibkit.scoring.cache import cache_key
from calibkit.scoring.confidence import PTrueConfidence, VerbalizedConfidence


class _Backend:
    name = "toy:keys"
    has_chat_template = True

    def generate(self, prompts, **kw):  # pragma: no cover - never called
        raise AssertionError


def _old(version: str, est, texts, **settings) -> list[str]:
    # the recipe each estimator spelled out before item_keys existed
    spec = json.dumps(
        {"classes": est.classes, "aliases": est.aliases, "chat": est.chat, **settings},
        sort_keys=True,
    )
    pre = (version, est.backend.name, est.template.fingerprint(), spec)
    return [cache_key(*pre, t) for t in texts]


def test_item_keys_equal_the_previous_recipe_and_separate_settings() -> None:
    from calibkit.scoring.confidence import ptrue, verbalized

    texts = ["a fine film", "a dull film"]
    v = VerbalizedConfidence(_Backend(), ["negative", "positive"], style="two-stage")
    got = v.item_keys(verbalized._KEY_VERSION, texts, style=v.style, k=v.k, T=v.max_new_tokens)
    assert got == _old(verbalized._KEY_VERSION, v, texts, style="two-stage", k=2, T=24)
    assert got != v.item_keys(verbalized._KEY_VERSION, texts, style="top-k", k=2, T=24)
    assert len(set(got)) == 2
    p = PTrueConfidence(_Backend(), ["negative", "positive"])
    kw = {"T": p.max_new_tokens, "question": p.question, "tokens": p.option_sets.to_dict()}
    assert p.item_keys(ptrue._KEY_VERSION, texts, **kw) == _old(ptrue._KEY_VERSION, p, texts, **kw)
