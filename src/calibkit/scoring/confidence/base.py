"""What every confidence estimator shares: the item loop with cache and failures, cost counting,
and the two ways a result becomes :class:`~calibkit.Scores`.

Representations
---------------
- **per-class** (``logits``, ``consistency``): ``Scores`` over the task's K classes, labels = the
  gold classes; any calibrator for K-class scores takes them.
- **right/wrong** (``ptrue``, ``verbalized``): the method only gives the confidence ``c`` that the
  model's own answer is right, so the ``Scores`` are binary with ``classes = ("wrong",
  "right")``, ``probs[:, 1] = c`` and labels = whether the answer was correct (an answer that
  names no class is wrong). Binary calibrators (Platt, isotonic, beta, histogram ...) map ``c``
  to P(correct). The answer itself is in ``per_item["answer_index"]`` / ``["answer_text"]``.

Cost
----
``meta["cost"]`` counts what the method costs per scored item, whether it came from the cache or
not: ``model_calls`` (requests / generate calls per prompt), ``output_tokens`` (generated
tokens) and ``prompt_chars`` (characters of every prompt sent; token counts of prompts depend on
the tokenizer), as totals and per-item means.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.scores import Scores
from calibkit.scoring.backends.base import Generation, ItemFailure, Prompt
from calibkit.scoring.cache import ScoreCache
from calibkit.scoring.classify import _labels_to_index

__all__ = ["OnError", "add_instruction", "cost_of", "prompt_chars", "run_items", "to_scores"]

OnError = Literal["fail", "skip"]
BINARY_CLASSES = ("wrong", "right")


def prompt_chars(p: Prompt) -> int:
    """Characters of a prompt (string, or the contents of its chat messages)."""
    return len(p) if isinstance(p, str) else sum(len(m.get("content", "")) for m in p)


def output_tokens(g: Generation) -> int:
    """Tokens a generation produced: its ``tokens``, or the count a text-only reply reported."""
    n = getattr(g, "n_output_tokens", None)
    if not g.tokens and isinstance(n, int) and not isinstance(n, bool) and n >= 0:
        return n
    return len(g.tokens)


def cost_of(prompts: Sequence[Prompt], gens: Sequence[Generation]) -> dict[str, int]:
    """Cost of one item: one call per prompt, the tokens generated, the prompt characters.

    A text-only reply (no per-token log-probabilities, so no ``tokens``) counts the server's
    ``usage.completion_tokens`` (its ``n_output_tokens``) where it was reported."""
    return {
        "model_calls": len(prompts),
        "output_tokens": sum(output_tokens(g) for g in gens),
        "prompt_chars": sum(prompt_chars(p) for p in prompts),
    }


def add_instruction(prompt: Prompt, instruction: str) -> Prompt:
    """Append ``instruction`` to the last user turn of a prompt (a new paragraph)."""
    if isinstance(prompt, str):
        return f"{prompt.rstrip()}\n\n{instruction}"
    msgs = [dict(m) for m in prompt]
    for m in reversed(msgs):
        if m.get("role") == "user":
            m["content"] = f"{m['content'].rstrip()}\n\n{instruction}"
            return msgs
    return [*msgs, {"role": "user", "content": instruction}]


def follow_up(prompt: Prompt, answer: str, question: str) -> Prompt:
    """The conversation ``prompt`` -> the model's ``answer`` -> a new user ``question``."""
    if isinstance(prompt, str):
        return f"{prompt}{answer}\n\n{question}\n"
    return [
        *[dict(m) for m in prompt],
        {"role": "assistant", "content": answer},
        {"role": "user", "content": question},
    ]


def run_items(
    fn: Callable[[list[str]], list[dict[str, Any] | ItemFailure]],
    texts: Sequence[str],
    keys: Sequence[str],
    cache: ScoreCache | str | os.PathLike[str] | None,
    *,
    batch_size: int,
    progress: bool,
    desc: str,
    on_error: OnError,
    check: Callable[[dict[str, Any]], str | None],
    stats: dict[str, int] | None = None,
) -> tuple[list[int], list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """Run ``fn`` over the texts through the cache: :func:`calibkit.scoring._runner.run_scorer`
    (the scorers' one runner) in input order, ids ``"0".."n-1"``.

    Returns ``(ok_rows, records, failures, stats)``; raises :class:`ItemsFailed` as
    :meth:`ClassificationScorer.score` does (``on_error="fail"`` and a failure, or nothing
    scored). ``check(record)`` validates a record (from the cache too); a problem is an error
    naming the item. ``stats`` is filled as :func:`map_cached` goes (up to date on an error).
    """
    from calibkit.scoring._runner import run_scorer

    def checked(r: Any) -> str | None:
        return check(r) if isinstance(r, dict) else f"is {type(r).__name__}, not an object"

    n = len(texts)
    res = run_scorer(
        fn,
        list(texts),
        list(keys),
        cache,
        ids=[str(i) for i in range(n)],
        order=list(range(n)),
        check=checked,
        on_error=on_error,
        batch_size=batch_size,
        desc=desc,
        progress=progress,
        stats=stats,
    )
    return res.ok, [res.records[i] for i in res.ok], res.failures, res.stats


def check_cost(r: dict[str, Any]) -> str | None:
    cost = r.get("cost")
    if not isinstance(cost, dict):
        return "has no 'cost' object"
    for k in ("model_calls", "output_tokens", "prompt_chars"):
        v = cost.get(k)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            return f"has cost.{k} = {v!r}, expected an int >= 0"
    return None


def cost_meta(good: Sequence[dict[str, Any]]) -> dict[str, Any]:
    m = max(len(good), 1)
    tot = {
        k: int(sum(r["cost"][k] for r in good))
        for k in ("model_calls", "output_tokens", "prompt_chars")
    }
    return {**tot, "per_item": {k: v / m for k, v in tot.items()}}


def to_scores(
    *,
    probs: NDArray[np.float64],
    classes: Sequence[str],
    answer_index: Sequence[int],
    labels: ArrayLike | Sequence[str] | None,
    task_classes: Sequence[str],
    ok: Sequence[int],
    n: int,
    ids: ArrayLike | None,
    meta: dict[str, Any],
    per_item: dict[str, Any],
) -> Scores:
    """Build the Scores of the rows ``ok`` of ``n``: per-class when ``classes == task_classes``,
    else right/wrong (labels = answer correct)."""
    keep = np.asarray(ok, dtype=np.int64)
    y = None if labels is None else _labels_to_index(labels, task_classes, n)[keep]
    a = np.asarray(answer_index, dtype=np.int64)
    binary = tuple(classes) == BINARY_CLASSES
    if binary and y is not None:
        y = (a == y).astype(np.int64)
    id_arr = None if ids is None else np.asarray(ids)
    if id_arr is not None and id_arr.shape != (n,):
        raise ValueError(f"ids must have shape ({n},), got {id_arr.shape}")
    return Scores.from_probs(
        probs,
        labels=y,
        classes=tuple(classes),
        ids=keep if id_arr is None else id_arr[keep],
        meta=meta,
        per_item={"answer_index": a, **per_item},
    )


class EstimatorBase:
    """Shared constructor of the estimators over a classification task.

    Parameters
    ----------
    backend : Backend
        The model (any :class:`~calibkit.scoring.backends.base.Backend`; ``consistency`` needs
        ``sample``).
    classes : sequence of K str
        Class names.
    template : PromptTemplate, optional
        How an input becomes the answer prompt (zero-shot default).
    cache : ScoreCache, path or None
        Where finished items are stored; a rerun resumes.
    batch_size : int
        Items per backend call and per cache commit.
    aliases : mapping class -> list of str, optional
        Extra surface forms of a class when parsing answers.
    progress : bool
        Show a progress bar.
    """

    name = "base"

    def __init__(
        self,
        backend: Any,
        classes: Sequence[str],
        template: Any = None,
        *,
        cache: ScoreCache | str | os.PathLike[str] | None = None,
        batch_size: int = 16,
        aliases: Any = None,
        progress: bool = False,
    ) -> None:
        from calibkit.scoring.prompts import PromptTemplate

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(classes, str) or len(classes) < 2:
            raise ValueError(f"classes must be a sequence of >= 2 names, got {classes!r}")
        self.backend = backend
        self.classes = tuple(str(c) for c in classes)
        self.template = template if template is not None else PromptTemplate()
        self.template.check_classes(self.classes)
        self.cache = cache
        self.batch_size = batch_size
        self.aliases = {str(k): [str(a) for a in v] for k, v in (aliases or {}).items()}
        self.progress = progress
        #: counts of the last :meth:`score` call: n_items, n_cached, n_new, n_failed
        self.last_run: dict[str, int] = {}
        chat = self.template.chat
        self.chat: bool = (
            bool(getattr(backend, "has_chat_template", True)) if chat is None else chat
        )

    def prompt(self, text: str) -> Prompt:
        """The answer prompt of one input."""
        return self.template.render(text, self.classes, chat=self.chat)

    def parse(self, text: str) -> int:
        from calibkit.scoring.classify import parse_answer

        return parse_answer(text, self.classes, self.aliases)

    def item_keys(self, version: str, texts: Sequence[str], **settings: Any) -> list[str]:
        """One cache key per text: ``version``, the backend, the template's fingerprint and the
        JSON of the classes, their aliases, the chat flag and the estimator's ``settings``."""
        import json

        from calibkit.scoring.cache import cache_key

        spec = json.dumps(
            {"classes": self.classes, "aliases": self.aliases, "chat": self.chat, **settings},
            sort_keys=True,
        )
        pre = (version, self.backend.name, self.template.fingerprint(), spec)
        return [cache_key(*pre, t) for t in texts]

    @staticmethod
    def check_texts(texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not one string")
        out = list(texts)
        if not out:
            raise ValueError("texts is empty")
        for i, t in enumerate(out):
            if not isinstance(t, str):
                raise ValueError(f"texts[{i}] is {type(t).__name__} ({t!r}), expected a string")
        return out

    def score(
        self,
        texts: Sequence[str],
        labels: ArrayLike | Sequence[str] | None = None,
        ids: ArrayLike | None = None,
        *,
        on_error: OnError = "fail",
    ) -> Scores:  # pragma: no cover - overridden
        raise NotImplementedError
