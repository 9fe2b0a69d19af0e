"""Multiple-choice confidence: equation 1 of *Restoring Calibration for Aligned LLMs*.

The question and its lettered options go to the model with table 1's system prompt and hint
(:class:`~calibkit.scoring.prompts.MultipleChoiceTemplate`). The confidence in option ``i`` is the
softmax over the option letters' log-probabilities at the first answer position,

    p_i = exp(z_i) / sum_j exp(z_j),    z_i = max over the letter's tokens ("A", " A") of lp(token),

(the paper's equation 1 is lost in the text extraction; this is the standard form it describes:
a softmax restricted to the option letters). Questions with fewer options than the widest one get
the logit :data:`MISSING_OPTION_LOGIT` (``-1e4``: probability ``exp(-1e4) = 0`` in float64, yet
finite, so every calibrator accepts the Scores) for the letters they lack. ``mode="generate"`` instead takes, per
letter, the maximum over the first ``max_new_tokens`` output positions and parses the answer letter
from the generated text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any, Literal

import numpy as np

from calibkit.scores import Scores
from calibkit.scoring.backends.base import Backend, Prompt
from calibkit.scoring.cache import ScoreCache, cache_key, map_cached
from calibkit.scoring.classify import open_cache
from calibkit.scoring.matching import (
    TokenSets,
    aggregate_generation,
    aggregate_next_token,
    matching_token_sets,
)
from calibkit.scoring.prompts import MultipleChoiceTemplate, option_letters

__all__ = ["MISSING_OPTION_LOGIT", "MultipleChoiceScorer", "parse_letter"]

_KEY_VERSION = "mcq-v1"
#: logit of an option letter past a question's last option
MISSING_OPTION_LOGIT = -1e4


def _as_item(item: Any, i: int) -> tuple[str, tuple[str, ...], int | None, str]:
    """(question, choices, answer or None, id) from an MCQItem or a mapping."""
    if isinstance(item, Mapping):
        q, ch, a, iid = (
            item.get("question"),
            item.get("choices"),
            item.get("answer"),
            item.get("id"),
        )
    else:
        q, ch = getattr(item, "question", None), getattr(item, "choices", None)
        a, iid = getattr(item, "answer", None), getattr(item, "id", None)
    if not isinstance(q, str):
        raise ValueError(f"item {i}: 'question' must be a string")
    if ch is None or isinstance(ch, str) or len(ch) < 2:
        raise ValueError(f"item {i}: 'choices' must be a list of at least 2 options")
    choices = tuple(str(c) for c in ch)
    if len(choices) > 26:
        raise ValueError(f"item {i}: {len(choices)} options; at most 26 are supported")
    ans = None
    if a is not None and not (isinstance(a, float) and np.isnan(a)):
        ans = int(a)
        if not 0 <= ans < len(choices):
            raise ValueError(f"item {i}: answer {ans} is out of range for {len(choices)} options")
    return q, choices, ans, str(i) if iid is None or iid == "" else str(iid)


def parse_letter(text: str, n_options: int) -> int:
    """Index of the option letter a generated answer gives (``"B"``, ``"(B)"``, ``"B. ..."``,
    ``"Answer: B"``), or ``-1``."""
    import re

    letters = option_letters(n_options)
    t = text.strip()
    t = re.sub(r"^(the\s+)?(correct\s+)?(answer|option)\s*(is)?\s*[:\-]?\s*", "", t, flags=re.I)
    m = re.match(r"^[\(\[\"'*]*([A-Za-z])(?![A-Za-z])", t)
    if m and m.group(1).upper() in letters:
        return letters.index(m.group(1).upper())
    return -1


class MultipleChoiceScorer:
    """Score multiple-choice questions -> :class:`~calibkit.Scores` over the option letters.

    Parameters
    ----------
    backend : Backend
        Model backend (see :mod:`calibkit.scoring.backends.base`).
    template : MultipleChoiceTemplate, optional
        Table 1 of paper 002 by default.
    mode : {"next_token", "generate"}
        ``next_token`` (default): equation 1 from one forward pass.
    max_new_tokens : int
        Output positions searched in ``generate`` mode.
    n_options : int, optional
        Number of columns ``K`` (letters ``A..``); default: the most options of any item.
    cache, batch_size, progress
        As in :class:`~calibkit.scoring.classify.ClassificationScorer`.
    """

    def __init__(
        self,
        backend: Backend,
        template: MultipleChoiceTemplate | None = None,
        *,
        mode: Literal["next_token", "generate"] = "next_token",
        max_new_tokens: int = 3,
        n_options: int | None = None,
        cache: ScoreCache | str | os.PathLike[str] | None = None,
        batch_size: int = 16,
        progress: bool = True,
    ) -> None:
        if mode not in ("generate", "next_token"):
            raise ValueError(f"mode must be 'generate' or 'next_token', got {mode!r}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if n_options is not None and not 2 <= n_options <= 26:
            raise ValueError(f"n_options must be in [2, 26], got {n_options}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.backend = backend
        self.template = template if template is not None else MultipleChoiceTemplate()
        self.mode = mode
        self.max_new_tokens = max_new_tokens
        self.n_options = n_options
        self.cache = cache
        self.batch_size = batch_size
        self.progress = progress
        chat = self.template.chat
        self.chat: bool = (
            bool(getattr(backend, "has_chat_template", True)) if chat is None else chat
        )

    def token_sets(self, k: int) -> TokenSets:
        """Matching tokens of the ``k`` option letters (``"A"`` and ``" A"``; no case variants)."""
        return matching_token_sets(
            option_letters(k),
            getattr(self.backend, "tokenize", None),
            first_token_only=self.mode == "next_token",
            case_variants=False,
        )

    def prompt(self, question: str, choices: Sequence[str]) -> Prompt:
        """The prompt sent for one question."""
        return self.template.render(question, choices, chat=self.chat)

    def score(self, items: Sequence[Any]) -> Scores:
        """Score ``n`` questions (:class:`~calibkit.datasets.MCQItem` or mappings with
        ``question``, ``choices``, optional ``answer`` index and ``id``).

        Returns
        -------
        Scores
            ``logits`` (n, K) letter log-probabilities (:data:`MISSING_OPTION_LOGIT` past an item's
            last option),
            ``classes`` ``("A", "B", ...)``, ``labels`` = answers when every item has one.
            ``meta["answer_index"]`` is the parsed letter (generate mode) or the argmax.
        """
        if isinstance(items, str | bytes):
            raise ValueError("items must be a sequence of questions")
        parsed = [_as_item(it, i) for i, it in enumerate(items)]
        if not parsed:
            raise ValueError("items is empty")
        widest = max(len(ch) for _, ch, _, _ in parsed)
        k = self.n_options or widest
        if widest > k:
            raise ValueError(f"an item has {widest} options but n_options={k}")
        sets = self.token_sets(k)
        spec = json.dumps(
            {
                "K": k,
                "tokens": sets.to_dict(),
                "chat": self.chat,
                "mode": self.mode,
                "T": self.max_new_tokens if self.mode == "generate" else 1,
            },
            sort_keys=True,
        )
        prefix = (_KEY_VERSION, self.backend.name, self.template.fingerprint(), spec)
        keys = [cache_key(*prefix, q, json.dumps(ch)) for q, ch, _, _ in parsed]

        def run(batch: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, Any]]:
            prompts = [self.prompt(q, ch) for q, ch in batch]
            out: list[dict[str, Any]] = []
            if self.mode == "next_token":
                for (_, ch), lp in zip(
                    batch, self.backend.next_token_logprobs(prompts, sets.candidates), strict=True
                ):
                    z = aggregate_next_token(lp, sets)
                    z[len(ch) :] = MISSING_OPTION_LOGIT
                    out.append(
                        {"logits": z.tolist(), "answer": "", "answer_index": int(np.argmax(z))}
                    )
                return out
            gens = self.backend.generate(
                prompts, max_new_tokens=self.max_new_tokens, candidates=sets.candidates
            )
            for (_, ch), g in zip(batch, gens, strict=True):
                z, _ = aggregate_generation(g, sets)
                z[len(ch) :] = MISSING_OPTION_LOGIT
                out.append(
                    {
                        "logits": z.tolist(),
                        "answer": g.text,
                        "answer_index": parse_letter(g.text, len(ch)),
                    }
                )
            return out

        order = sorted(
            range(len(parsed)), key=lambda i: len(parsed[i][0]) + sum(map(len, parsed[i][1]))
        )
        with ExitStack() as stack:
            cache = open_cache(self.cache, stack)
            recs_sorted = map_cached(
                run,
                [(parsed[i][0], parsed[i][1]) for i in order],
                [keys[i] for i in order],
                cache,
                batch_size=self.batch_size,
                desc=f"scoring mcq ({self.mode})",
                progress=self.progress,
            )
        recs: list[dict[str, Any]] = [{}] * len(parsed)
        for j, i in enumerate(order):
            recs[i] = recs_sorted[j]
        logits = np.asarray([r["logits"] for r in recs], dtype=np.float64)
        answers = [a for _, _, a, _ in parsed]
        labels = None if any(a is None for a in answers) else np.asarray(answers, dtype=np.int64)
        meta = {
            "task": "mcq",
            "model": self.backend.name,
            "template": self.template.fingerprint(),
            "mode": self.mode,
            "matching_tokens": sets.to_dict(),
            "n_options": [len(ch) for _, ch, _, _ in parsed],
            "answer_text": [r["answer"] for r in recs],
            "answer_index": [int(r["answer_index"]) for r in recs],
        }
        ids = np.asarray([iid for _, _, _, iid in parsed], dtype=object)
        return Scores(logits=logits, labels=labels, classes=option_letters(k), ids=ids, meta=meta)

    def __repr__(self) -> str:
        return f"MultipleChoiceScorer({self.backend.name!r}, mode={self.mode!r})"
