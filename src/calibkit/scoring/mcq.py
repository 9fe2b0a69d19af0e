"""Multiple-choice confidence: equation 1 of *Restoring Calibration for Aligned LLMs*.

The question and its lettered options go to the model with table 1's system prompt and hint
(:class:`~calibkit.scoring.prompts.MultipleChoiceTemplate`). The confidence in option ``i`` is the
softmax over the option letters' log-probabilities at the first answer position,

    p_i = exp(z_i) / sum_j exp(z_j),    z_i = max over the letter's tokens ("A", " A") of lp(token),

(the paper's equation 1 is lost in the text extraction; this is the standard form it describes:
a softmax restricted to the option letters; :func:`~calibkit.scoring.option_probs.option_distribution`
is its one implementation, shared with :mod:`calibkit.finetune`, and ``Scores.probs`` of the
result equals it). Questions with fewer options than the widest one get
the logit :data:`MISSING_OPTION_LOGIT` (``-1e4``: probability ``exp(-1e4) = 0`` in float64, yet
finite, so every calibrator accepts the Scores) for the letters they lack. ``mode="generate"`` instead takes, per
letter, the maximum over the first ``max_new_tokens`` output positions and parses the answer letter
from the generated text.

Failures (``on_error``), the cache and Ctrl-C behave as in
:class:`~calibkit.scoring.classify.ClassificationScorer`: a failed item is never scored or cached.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from calibkit.scores import Scores
from calibkit.scoring._runner import (
    OnError,
    backend_records,
    check_on_error,
    check_record,
    run_scorer,
)
from calibkit.scoring.backends.base import Backend, Generation, ItemFailure, Prompt
from calibkit.scoring.cache import ScoreCache, cache_key
from calibkit.scoring.matching import (
    TokenSets,
    aggregate_generation,
    aggregate_next_token_filled,
    matching_token_sets,
)
from calibkit.scoring.option_probs import option_distribution
from calibkit.scoring.prompts import MultipleChoiceTemplate, option_letters

__all__ = ["MISSING_OPTION_LOGIT", "MultipleChoiceScorer", "option_distribution", "parse_letter"]

_KEY_VERSION = "mcq-v2"  # v2: see classify._KEY_VERSION
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
        #: counts of the last :meth:`score` call (see ClassificationScorer.last_run)
        self.last_run: dict[str, int] = {}
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

    def _key_prefix(self, k: int, sets: TokenSets) -> tuple[str, ...]:
        """Cache-key parts shared by every question of a run (backend, template, K, tokens)."""
        spec = json.dumps(
            {
                "K": k,
                "tokens": sets.to_dict(),
                "prefix_match": sets.prefix_match,
                "chat": self.chat,
                "mode": self.mode,
                "T": self.max_new_tokens if self.mode == "generate" else 1,
            },
            sort_keys=True,
        )
        return (_KEY_VERSION, self.backend.name, self.template.fingerprint(), spec)

    def _record(
        self, g: Generation | dict[str, float] | ItemFailure, n_choices: int, sets: TokenSets
    ) -> dict[str, Any] | ItemFailure:
        if isinstance(g, ItemFailure):
            return g
        try:
            if isinstance(g, Generation):
                z, pos = aggregate_generation(g, sets)
                filled = pos < 0
                answer, idx = g.text, parse_letter(g.text, n_choices)
            else:
                z, filled = aggregate_next_token_filled(g, sets)
                answer, idx = "", -1
        except ValueError as e:
            return ItemFailure(str(e))
        z[n_choices:] = MISSING_OPTION_LOGIT
        filled[n_choices:] = False
        if idx < 0 and not isinstance(g, Generation):
            idx = int(np.argmax(z))
        return {
            "logits": z.tolist(),
            "answer": answer,
            "answer_index": idx,
            "filled": [int(c) for c in np.flatnonzero(filled)],
        }

    def score(self, items: Sequence[Any], *, on_error: OnError = "fail") -> Scores:
        """Score ``n`` questions (:class:`~calibkit.datasets.MCQItem` or mappings with
        ``question``, ``choices``, optional ``answer`` index and ``id``).

        ``on_error`` as in :meth:`ClassificationScorer.score
        <calibkit.scoring.classify.ClassificationScorer.score>`: ``"fail"`` raises
        :class:`~calibkit.scoring.classify.ItemsFailed` naming the question, ``"skip"`` keeps
        the questions scored and lists the others in ``meta["failures"]``.

        Returns
        -------
        Scores
            ``logits`` (m, K) letter log-probabilities (:data:`MISSING_OPTION_LOGIT` past an item's
            last option),
            ``classes`` ``("A", "B", ...)``, ``labels`` = answers when every item has one.
            ``meta["answer_index"]`` is the parsed letter (generate mode) or the argmax;
            ``meta["n_filled_missing"]`` counts rows where a letter was outside the server's
            top-k (filled with its upper bound).
        """
        check_on_error(on_error)
        if isinstance(items, str | bytes):
            raise ValueError("items must be a sequence of questions")
        parsed = [_as_item(it, i) for i, it in enumerate(items)]
        if not parsed:
            raise ValueError("items is empty")
        n = len(parsed)
        widest = max(len(ch) for _, ch, _, _ in parsed)
        k = self.n_options or widest
        if widest > k:
            raise ValueError(f"an item has {widest} options but n_options={k}")
        sets = self.token_sets(k)
        prefix = self._key_prefix(k, sets)

        def run(batch: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, Any] | ItemFailure]:
            prompts = [self.prompt(q, ch) for q, ch in batch]

            def call() -> Sequence[Any]:
                if self.mode == "next_token":
                    return self.backend.next_token_logprobs(prompts, sets.candidates)
                return self.backend.generate(
                    prompts, max_new_tokens=self.max_new_tokens, candidates=sets.candidates
                )

            return backend_records(
                call, lambda i, g: self._record(g, len(batch[i][1]), sets), len(prompts)
            )

        stats: dict[str, int] = {}
        self.last_run = stats
        ids_all = [iid for _, _, _, iid in parsed]
        result = run_scorer(
            run,
            [(q, ch) for q, ch, _, _ in parsed],
            [cache_key(*prefix, q, json.dumps(ch)) for q, ch, _, _ in parsed],
            self.cache,
            ids=ids_all,
            order=sorted(range(n), key=lambda i: len(parsed[i][0]) + sum(map(len, parsed[i][1]))),
            check=lambda r: check_record(r, k),
            on_error=on_error,
            batch_size=self.batch_size,
            desc=f"scoring mcq ({self.mode})",
            progress=self.progress,
            stats=stats,
            noun="question",
        )
        recs, ok, failures = result.records, result.ok, result.failures
        good = [recs[i] for i in ok]
        logits = np.asarray([r["logits"] for r in good], dtype=np.float64)
        answers = [parsed[i][2] for i in ok]
        labels = None if any(a is None for a in answers) else np.asarray(answers, dtype=np.int64)
        filled = [list(r.get("filled", [])) for r in good]
        letters = option_letters(k)
        meta = {
            "task": "mcq",
            "model": self.backend.name,
            "template": self.template.fingerprint(),
            "mode": self.mode,
            "matching_tokens": sets.to_dict(),
            "n_unparsed": sum(int(r["answer_index"]) < 0 for r in good),
            "n_filled_missing": sum(1 for f in filled if f),
            "filled_per_class": {
                c: sum(1 for f in filled if j in f) for j, c in enumerate(letters)
            },
            "failures": failures,
        }
        per_item: dict[str, Any] = {
            "n_options": np.asarray([len(parsed[i][1]) for i in ok], dtype=np.int64),
            "answer_text": [r["answer"] for r in good],
            "answer_index": np.asarray([int(r["answer_index"]) for r in good], dtype=np.int64),
            "filled_missing": np.asarray([bool(f) for f in filled], dtype=bool),
        }
        ids = np.asarray([ids_all[i] for i in ok], dtype=object)
        return Scores(
            logits=logits, labels=labels, classes=letters, ids=ids, meta=meta, per_item=per_item
        )

    def __repr__(self) -> str:
        return f"MultipleChoiceScorer({self.backend.name!r}, mode={self.mode!r})"
