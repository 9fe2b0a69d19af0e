"""LLM confidence scoring: backends, prompts, classification and multiple-choice scorers.

Importing this package is light: the names below load their module (and torch / transformers,
where needed) on first access.

>>> from calibkit.scoring import ClassificationScorer, TransformersBackend   # doctest: +SKIP
>>> backend = TransformersBackend.from_pretrained()          # bundled SmolLM2-135M-Instruct
>>> scores = ClassificationScorer(backend, ["objective", "subjective"]).score(texts)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from calibkit.scoring.backends.base import Backend, Generation, Prompt
    from calibkit.scoring.backends.transformers_backend import TransformersBackend
    from calibkit.scoring.cache import ScoreCache, cache_key, default_cache_dir, map_cached
    from calibkit.scoring.classify import ClassificationScorer, answer_confidence, parse_answer
    from calibkit.scoring.matching import TokenSets, matching_token_sets
    from calibkit.scoring.mcq import MultipleChoiceScorer, parse_letter
    from calibkit.scoring.models import load_causal_lm, resolve_model
    from calibkit.scoring.prompts import MultipleChoiceTemplate, PromptTemplate

_EXPORTS: dict[str, str] = {
    "Backend": "calibkit.scoring.backends.base",
    "Generation": "calibkit.scoring.backends.base",
    "Prompt": "calibkit.scoring.backends.base",
    "TransformersBackend": "calibkit.scoring.backends.transformers_backend",
    "ScoreCache": "calibkit.scoring.cache",
    "cache_key": "calibkit.scoring.cache",
    "default_cache_dir": "calibkit.scoring.cache",
    "map_cached": "calibkit.scoring.cache",
    "ClassificationScorer": "calibkit.scoring.classify",
    "answer_confidence": "calibkit.scoring.classify",
    "parse_answer": "calibkit.scoring.classify",
    "TokenSets": "calibkit.scoring.matching",
    "matching_token_sets": "calibkit.scoring.matching",
    "MultipleChoiceScorer": "calibkit.scoring.mcq",
    "parse_letter": "calibkit.scoring.mcq",
    "load_causal_lm": "calibkit.scoring.models",
    "resolve_model": "calibkit.scoring.models",
    "MultipleChoiceTemplate": "calibkit.scoring.prompts",
    "PromptTemplate": "calibkit.scoring.prompts",
}

__all__ = [
    "Backend",
    "ClassificationScorer",
    "Generation",
    "MultipleChoiceScorer",
    "MultipleChoiceTemplate",
    "Prompt",
    "PromptTemplate",
    "ScoreCache",
    "TokenSets",
    "TransformersBackend",
    "answer_confidence",
    "cache_key",
    "default_cache_dir",
    "load_causal_lm",
    "map_cached",
    "matching_token_sets",
    "parse_answer",
    "parse_letter",
    "resolve_model",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'calibkit.scoring' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
