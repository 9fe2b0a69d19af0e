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

Failures are values, not guesses: an item whose backend call failed (see
:class:`~calibkit.scoring.backends.base.ItemFailure`) or whose answer has nothing to score is
never given a score and never cached. ``score(..., on_error="fail")`` (default) raises
:class:`ItemsFailed` naming the item after committing the successes; ``on_error="skip"`` returns
the successful rows only and lists the failures in ``meta["failures"]``. Ctrl-C during a run
raises ``KeyboardInterrupt("N of M items cached; rerun to resume")``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.scores import Scores
from calibkit.scoring._runner import (
    ItemsFailed,
    OnError,
    backend_records,
    check_on_error,
    check_record,
    open_cache,
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
from calibkit.scoring.prompts import PromptTemplate
from calibkit.selection.in_task import answer_confidence as _score_of_answer

__all__ = [
    "ClassificationScorer",
    "ItemsFailed",
    "answer_confidence",
    "open_cache",
    "parse_answer",
]

# v2: top-k fill from all reported tokens, prefix matching without a tokenizer, failures never
# cached (v1 values may hold a wrong fill or a 50/50 score for a reply without log-probabilities).
_KEY_VERSION = "classify-v2"
Mode = Literal["generate", "next_token"]


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

    ``a`` is ``scores.per_item["answer_index"]`` where the generated answer parsed to a class,
    else the argmax class (also when the Scores have no ``answer_index``). Pass calibrated Scores
    (``calibrator.calibrate(scores)``) to get calibrated confidences. Shape ``(n,)``.

    The Scores front end of :func:`calibkit.selection.in_task.answer_confidence` (probabilities
    and answer indices), which computes ``z_a``; this function only picks ``a``.
    """
    n = len(scores)
    raw = scores.per_item.get("answer_index")
    if raw is None:
        a = np.full(n, -1, dtype=np.int64)
    else:
        if raw.shape != (n,) or raw.dtype.kind not in "iu":
            raise ValueError(
                f"per_item['answer_index'] must be {n} integers; got dtype {raw.dtype}, "
                f"shape {raw.shape}"
            )
        a = raw.astype(np.int64)
        if a.size and a.max() >= scores.n_classes:
            i = int(np.argmax(a >= scores.n_classes))
            raise ValueError(
                f"per_item['answer_index'] of item {scores.ids[i]!r} is {int(a[i])}, not a class "
                f"index of the {scores.n_classes} classes"
            )
    a = np.where(a >= 0, a, scores.prediction)
    return _score_of_answer(scores.probs, a)


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
        Items per backend call and per cache commit (a killed run loses at most one batch;
        failed items are never cached).
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
        #: counts of the last :meth:`score` call: n_items, n_cached (found in the cache),
        #: n_new (scored now), n_failed
        self.last_run: dict[str, int] = {}
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
                "prefix_match": self.token_sets.prefix_match,
                "chat": self.chat,
                "mode": self.mode,
                "T": self.max_new_tokens if self.mode == "generate" else 1,
            },
            sort_keys=True,
        )
        return (_KEY_VERSION, self.backend.name, self.template.fingerprint(), spec)

    # ------------------------------------------------------------------ scoring
    def _record(self, g: Generation | ItemFailure) -> dict[str, Any] | ItemFailure:
        if isinstance(g, ItemFailure):
            return g
        if not isinstance(g, Generation):
            return ItemFailure(f"backend returned {type(g).__name__}, expected a Generation")
        try:
            z, pos = aggregate_generation(g, self.token_sets)
        except ValueError as e:
            return ItemFailure(str(e))
        return {
            "logits": z.tolist(),
            "answer": g.text,
            "answer_index": parse_answer(g.text, self.classes, self.aliases),
            "position": pos.tolist(),
            "filled": [int(c) for c in np.flatnonzero(pos < 0)],
        }

    def _next_token_record(
        self, lp: dict[str, float] | ItemFailure
    ) -> dict[str, Any] | ItemFailure:
        if isinstance(lp, ItemFailure):
            return lp
        try:
            z, filled = aggregate_next_token_filled(lp, self.token_sets)
        except ValueError as e:
            return ItemFailure(str(e))
        return {
            "logits": z.tolist(),
            "answer": "",
            "answer_index": int(np.argmax(z)),
            "position": [-1 if f else 0 for f in filled],
            "filled": [int(c) for c in np.flatnonzero(filled)],
        }

    def _score_batch(self, batch: list[str]) -> list[dict[str, Any] | ItemFailure]:
        prompts = [self.prompt(t) for t in batch]
        if self.mode == "next_token":
            return backend_records(
                lambda: self.backend.next_token_logprobs(prompts, self.token_sets.candidates),
                lambda _, r: self._next_token_record(r),
                len(prompts),
            )
        return backend_records(
            lambda: self.backend.generate(
                prompts, max_new_tokens=self.max_new_tokens, candidates=self.token_sets.candidates
            ),
            lambda _, r: self._record(r),
            len(prompts),
        )

    def score(
        self,
        texts: Sequence[str],
        labels: ArrayLike | Sequence[str] | None = None,
        ids: ArrayLike | None = None,
        *,
        on_error: OnError = "fail",
    ) -> Scores:
        """Score ``n`` texts.

        Parameters
        ----------
        texts : sequence of n str
        labels : n class names or class indices, optional
        ids : n ids, optional (default ``0..n-1``)
        on_error : {"fail", "skip"}
            What to do with items that could not be scored (an HTTP error after the retries, a
            reply without usable log-probabilities, an empty answer ...). Either way they get no
            score and are not cached, while every success is. ``"fail"``: stop at the first
            batch with a failure and raise :class:`ItemsFailed` naming the item. ``"skip"``:
            score everything else and return those rows only; ``meta["failures"]`` lists the
            rest (``row`` = position in ``texts``, ``id``, ``reason``); if nothing succeeded,
            raise :class:`ItemsFailed`.

        Returns
        -------
        Scores
            ``logits`` (m, K): aggregated class log-probabilities (step 1) of the ``m`` rows
            scored (``m = n`` unless items were skipped); ``probs`` is the uncalibrated softmax
            (step 2); ``ids`` are the given ids (default: the row positions in ``texts``) of
            those rows. ``meta`` holds ``model``, ``template``, ``mode``, ``matching_tokens``,
            ``failures``, ``n_filled_missing`` (rows where a class was outside the server's
            top-k and got its upper bound, see :mod:`calibkit.scoring.matching`),
            ``filled_per_class`` and ``n_unparsed``; ``per_item`` holds ``answer_text``
            (generated answer), ``answer_index`` (parsed class, -1 if unparsed),
            ``max_position`` (output position of each class's maximum, -1 where filled) and
            ``filled_missing`` (bool), aligned with the rows.

        Raises
        ------
        ItemsFailed
            ``on_error="fail"`` and an item failed, or every item failed.
        KeyboardInterrupt
            On Ctrl-C, with the message ``"N of M items cached; rerun to resume"``.
        """
        check_on_error(on_error)
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not one string")
        texts = list(texts)
        n = len(texts)
        if n == 0:
            raise ValueError("texts is empty")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"texts[{i}] is {type(t).__name__} ({t!r}), expected a string")
        y = None if labels is None else _labels_to_index(labels, self.classes, n)
        id_arr = None if ids is None else np.asarray(ids)
        if id_arr is not None and id_arr.shape != (n,):
            raise ValueError(f"ids must have shape ({n},), got {id_arr.shape}")
        prefix = self._key_prefix()
        stats: dict[str, int] = {}
        self.last_run = stats
        k = len(self.classes)
        run = run_scorer(
            self._score_batch,
            texts,
            [cache_key(*prefix, t) for t in texts],
            self.cache,
            ids=[str(i) if id_arr is None else str(id_arr[i]) for i in range(n)],
            order=sorted(range(n), key=lambda i: len(texts[i])),  # similar lengths share a batch
            check=lambda r: check_record(r, k),
            on_error=on_error,
            batch_size=self.batch_size,
            desc=f"scoring ({self.mode})",
            progress=self.progress,
            stats=stats,
        )
        recs, ok, failures = run.records, run.ok, run.failures
        good = [recs[i] for i in ok]
        logits = np.asarray([r["logits"] for r in good], dtype=np.float64)
        answer_index = [int(r["answer_index"]) for r in good]
        filled = [list(r.get("filled", [])) for r in good]
        meta: dict[str, Any] = {
            "task": "classify",
            "model": self.backend.name,
            "template": self.template.fingerprint(),
            "mode": self.mode,
            "max_new_tokens": self.max_new_tokens,
            "matching_tokens": self.token_sets.to_dict(),
            "n_unparsed": sum(a < 0 for a in answer_index),
            "n_filled_missing": sum(1 for f in filled if f),
            "filled_per_class": {
                c: sum(1 for f in filled if j in f) for j, c in enumerate(self.classes)
            },
            "failures": failures,
        }
        per_item: dict[str, Any] = {
            "answer_text": [r["answer"] for r in good],
            "answer_index": answer_index,
            "max_position": _object_array([list(r["position"]) for r in good]),
            "filled_missing": np.asarray([bool(f) for f in filled], dtype=bool),
        }
        keep = np.asarray(ok, dtype=np.int64)
        return Scores(
            logits=logits,
            labels=None if y is None else y[keep],
            classes=self.classes,
            ids=keep if id_arr is None else id_arr[keep],
            meta=meta,
            per_item=per_item,
        )

    def __repr__(self) -> str:
        return (
            f"ClassificationScorer({self.backend.name!r}, classes={self.classes!r}, "
            f"mode={self.mode!r})"
        )


def _object_array(values: list[Any]) -> NDArray[Any]:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out
