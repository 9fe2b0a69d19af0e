"""Logit-based confidence for LLM classification: section 2.1 of *Label with Confidence*.

For every input the :class:`ClassificationScorer`

1. gets the model's answer ``a`` (greedy decoding, ``mode="generate"``);
2. reads the answer-token log-probabilities at every output position;
3. aggregates them per class with the max over the class's matching tokens and positions
   (:mod:`calibkit.scoring.matching`), giving ``Scores.logits`` (``(n, K)`` class logits);
4. ``softmax`` over the classes is the uncalibrated score (``Scores.probs``); calibrators from
   :mod:`calibkit.calibrators` fit step 3 of the paper on these logits;
5. :func:`answer_confidence` keeps the score of the predicted answer ``s = z_a`` (step 4).

``mode="next_token"`` skips generation and reads the first-answer-position log-probabilities of the
matching tokens from one forward pass: the same numbers as ``generate`` whenever every class's
maximum is at the first output position, at a fraction of the cost.

Results go through a :class:`~calibkit.scoring.cache.ScoreCache` keyed by backend name, prompt
fingerprint, classes, mode and input text, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.scores import Scores
from calibkit.scoring.backends.base import Backend, Prompt
from calibkit.scoring.cache import ScoreCache, cache_key, map_cached
from calibkit.scoring.matching import (
    TokenSets,
    aggregate_generation,
    aggregate_next_token,
    matching_token_sets,
)
from calibkit.scoring.prompts import PromptTemplate

__all__ = [
    "ClassificationScorer",
    "answer_confidence",
    "open_cache",
    "parse_answer",
]

_KEY_VERSION = "classify-v1"
Mode = Literal["generate", "next_token"]


def open_cache(
    cache: ScoreCache | str | os.PathLike[str] | None, stack: ExitStack
) -> ScoreCache | None:
    """A :class:`ScoreCache` from a cache object, a path (opened and closed by ``stack``) or None."""
    if cache is None or isinstance(cache, ScoreCache):
        return cache
    if isinstance(cache, str | os.PathLike):
        return stack.enter_context(ScoreCache(cache))
    raise ValueError(f"cache must be a ScoreCache, a path or None, got {type(cache).__name__}")


def _norm(text: str) -> str:
    t = text.strip().lower().replace("_", " ").replace("-", " ")
    t = re.sub(r"^(answer|label|class|category)\s*[:\-]\s*", "", t)
    t = re.sub(r"[^\w\s]", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def parse_answer(
    text: str, classes: Sequence[str], aliases: Mapping[str, Sequence[str]] | None = None
) -> int:
    """Index of the class a generated answer names, or ``-1``.

    The answer and every class name / alias are normalised (lower case, ``_``/``-`` as spaces,
    punctuation dropped, a leading ``Answer:`` removed); the class whose form is the longest
    whole-word prefix of the answer wins. Failing that, a class named as a whole word exactly once
    anywhere in the answer (and no other class named) wins.
    """
    t = _norm(text)
    if not t:
        return -1
    aliases = aliases or {}
    forms = [(k, _norm(f)) for k, c in enumerate(classes) for f in [c, *aliases.get(str(c), [])]]
    best, best_len = -1, 0
    for k, f in forms:
        if f and (t == f or t.startswith(f + " ")) and len(f) > best_len:
            best, best_len = k, len(f)
    if best >= 0:
        return best
    hits = {k for k, f in forms if f and re.search(rf"\b{re.escape(f)}\b", t)}
    return hits.pop() if len(hits) == 1 else -1


def answer_confidence(scores: Scores) -> NDArray[np.float64]:
    """Step 4 of section 2.1: ``s = z_a``, the softmax score of the model's own answer ``a``.

    ``a`` is ``scores.meta["answer_index"]`` where the generated answer parsed to a class, else
    the argmax class. Pass calibrated Scores (``calibrator.calibrate(scores)``) to get calibrated
    confidences. Shape ``(n,)``.
    """
    a = np.asarray(scores.meta.get("answer_index", [-1] * len(scores)), dtype=np.int64)
    if a.shape != (len(scores),):
        raise ValueError(
            f"meta['answer_index'] has {a.shape[0]} entries but the Scores have {len(scores)} "
            "rows (per-item meta is not sliced by Scores.subset)"
        )
    a = np.where(a >= 0, a, scores.prediction)
    z = scores.probs
    return z[np.arange(len(scores)), a]


def _labels_to_index(
    labels: ArrayLike | Sequence[str], classes: Sequence[str], n: int
) -> NDArray[np.int64]:
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {arr.shape}")
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    lookup = {str(c): i for i, c in enumerate(classes)}
    bad = sorted({str(x) for x in arr} - set(lookup))
    if bad:
        raise ValueError(f"labels {bad[:5]} are not among the classes {list(classes)}")
    return np.asarray([lookup[str(x)] for x in arr], dtype=np.int64)


class ClassificationScorer:
    """Score texts with an LLM over a fixed set of classes -> :class:`~calibkit.Scores`.

    Parameters
    ----------
    backend : Backend
        Any object implementing :class:`~calibkit.scoring.backends.base.Backend`; if it also has
        ``tokenize(text) -> list[str]``, exact matching token sets are built with it.
    classes : sequence of K str
        Class names, used in the prompt and as ``Scores.classes``.
    template : PromptTemplate, optional
        Zero-shot :class:`PromptTemplate` by default.
    mode : {"generate", "next_token"}
        ``generate``: the paper's four steps over a greedy answer of up to ``max_new_tokens``
        tokens; ``next_token``: one forward pass, first answer position only.
    max_new_tokens : int
        Output positions ``T`` searched in ``generate`` mode.
    cache : ScoreCache, path or None
        Where finished items are stored and looked up.
    batch_size : int
        Items per backend call and per cache commit (a killed run loses at most one batch).
    aliases : mapping class -> list of str, optional
        Extra surface forms counted for a class.
    progress : bool
        Show a progress bar (items/s, ETA).
    """

    def __init__(
        self,
        backend: Backend,
        classes: Sequence[str],
        template: PromptTemplate | None = None,
        *,
        mode: Mode = "generate",
        max_new_tokens: int = 5,
        cache: ScoreCache | str | os.PathLike[str] | None = None,
        batch_size: int = 16,
        aliases: Mapping[str, Sequence[str]] | None = None,
        progress: bool = True,
    ) -> None:
        if mode not in ("generate", "next_token"):
            raise ValueError(f"mode must be 'generate' or 'next_token', got {mode!r}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.backend = backend
        self.classes = tuple(str(c) for c in classes)
        self.template = template if template is not None else PromptTemplate()
        self.mode: Mode = mode
        self.max_new_tokens = max_new_tokens
        self.cache = cache
        self.batch_size = batch_size
        self.aliases = {str(k): [str(a) for a in v] for k, v in (aliases or {}).items()}
        self.progress = progress
        tokenize: Callable[[str], list[str]] | None = getattr(backend, "tokenize", None)
        self.token_sets: TokenSets = matching_token_sets(
            self.classes,
            tokenize,
            aliases=self.aliases,
            first_token_only=(mode == "next_token"),
        )
        self.template.check_classes(self.classes)
        chat = self.template.chat
        self.chat: bool = (
            bool(getattr(backend, "has_chat_template", True)) if chat is None else chat
        )

    # ------------------------------------------------------------------ prompts and keys
    def prompt(self, text: str) -> Prompt:
        """The prompt sent for one input."""
        return self.template.render(text, self.classes, chat=self.chat)

    def _key_prefix(self) -> tuple[str, ...]:
        spec = json.dumps(
            {
                "classes": self.classes,
                "aliases": self.aliases,
                "tokens": self.token_sets.to_dict(),
                "chat": self.chat,
                "mode": self.mode,
                "T": self.max_new_tokens if self.mode == "generate" else 1,
            },
            sort_keys=True,
        )
        return (_KEY_VERSION, self.backend.name, self.template.fingerprint(), spec)

    # ------------------------------------------------------------------ scoring
    def _score_batch(self, batch: list[str]) -> list[dict[str, Any]]:
        prompts = [self.prompt(t) for t in batch]
        out: list[dict[str, Any]] = []
        if self.mode == "next_token":
            for lp in self.backend.next_token_logprobs(prompts, self.token_sets.candidates):
                z = aggregate_next_token(lp, self.token_sets)
                out.append(
                    {
                        "logits": z.tolist(),
                        "answer": "",
                        "answer_index": int(np.argmax(z)),
                        "position": [0] * len(z),
                    }
                )
            return out
        gens = self.backend.generate(
            prompts, max_new_tokens=self.max_new_tokens, candidates=self.token_sets.candidates
        )
        if len(gens) != len(prompts):
            raise ValueError(f"backend returned {len(gens)} generations for {len(prompts)} prompts")
        for g in gens:
            z, pos = aggregate_generation(g, self.token_sets)
            out.append(
                {
                    "logits": z.tolist(),
                    "answer": g.text,
                    "answer_index": parse_answer(g.text, self.classes, self.aliases),
                    "position": pos.tolist(),
                }
            )
        return out

    def score(
        self,
        texts: Sequence[str],
        labels: ArrayLike | Sequence[str] | None = None,
        ids: ArrayLike | None = None,
    ) -> Scores:
        """Score ``n`` texts.

        Parameters
        ----------
        texts : sequence of n str
        labels : n class names or class indices, optional
        ids : n ids, optional (default ``0..n-1``)

        Returns
        -------
        Scores
            ``logits`` (n, K): aggregated class log-probabilities (step 1); ``probs`` is the
            uncalibrated softmax (step 2). ``meta`` holds ``model``, ``template``, ``mode``,
            ``matching_tokens`` and per-item lists ``answer_text`` (generated answer),
            ``answer_index`` (parsed class, -1 if unparsed) and ``max_position`` (output
            position of each class's maximum), aligned with the rows.
        """
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not one string")
        texts = list(texts)
        n = len(texts)
        if n == 0:
            raise ValueError("texts is empty")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"texts[{i}] is {type(t).__name__}, expected str")
        y = None if labels is None else _labels_to_index(labels, self.classes, n)
        prefix = self._key_prefix()
        keys = [cache_key(*prefix, t) for t in texts]
        order = sorted(range(n), key=lambda i: len(texts[i]))  # similar lengths share a batch
        with ExitStack() as stack:
            cache = open_cache(self.cache, stack)
            recs_sorted = map_cached(
                self._score_batch,
                [texts[i] for i in order],
                [keys[i] for i in order],
                cache,
                batch_size=self.batch_size,
                desc=f"scoring ({self.mode})",
                progress=self.progress,
            )
        recs: list[dict[str, Any]] = [{}] * n
        for j, i in enumerate(order):
            recs[i] = recs_sorted[j]
        logits = np.asarray([r["logits"] for r in recs], dtype=np.float64)
        answer_index = [int(r["answer_index"]) for r in recs]
        meta: dict[str, Any] = {
            "task": "classify",
            "model": self.backend.name,
            "template": self.template.fingerprint(),
            "mode": self.mode,
            "max_new_tokens": self.max_new_tokens,
            "matching_tokens": self.token_sets.to_dict(),
            "answer_text": [r["answer"] for r in recs],
            "answer_index": answer_index,
            "max_position": [list(r["position"]) for r in recs],
            "n_unparsed": sum(a < 0 for a in answer_index),
        }
        return Scores(
            logits=logits,
            labels=y,
            classes=self.classes,
            ids=np.zeros(0, dtype=np.int64) if ids is None else np.asarray(ids),
            meta=meta,
        )

    def __repr__(self) -> str:
        return (
            f"ClassificationScorer({self.backend.name!r}, classes={self.classes!r}, "
            f"mode={self.mode!r})"
        )
