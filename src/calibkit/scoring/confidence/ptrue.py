"""P(True) (Kadavath et al. 2022): propose an answer, then ask the model whether it is true.

Per item, two calls:

1. the answer prompt, decoded greedily (``generate``): the proposed answer;
2. the same conversation followed by the proposed answer and the question
   "Is the proposed answer true? (A) True (B) False", with one forward pass
   (``next_token_logprobs``) reading the log-probabilities of the tokens that spell ``A`` and
   ``B`` (matched as class names by :mod:`calibkit.scoring.matching`, so ``" A"`` counts too;
   lower-case ``a`` does not: it is also the English article).

``P(True) = exp(l_A) / (exp(l_A) + exp(l_B))``, normalised over the two options. Where a server
reports only its top-k and one option is missing, it gets the smallest reported value (an upper
bound; counted in ``meta["n_filled_missing"]``); with no value at all the item fails. The result
is right/wrong ``Scores`` (see :mod:`calibkit.scoring.confidence.base`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from calibkit.scores import Scores
from calibkit.scoring.backends.base import ItemFailure, PartialResults
from calibkit.scoring.confidence.base import (
    BINARY_CLASSES,
    EstimatorBase,
    OnError,
    check_cost,
    cost_meta,
    cost_of,
    follow_up,
    run_items,
    to_scores,
)

__all__ = ["PTRUE_QUESTION", "PTrueConfidence"]

_KEY_VERSION = "ptrue-v1"
PTRUE_QUESTION = (
    "Is the proposed answer true?\n(A) True\n(B) False\nAnswer with only the letter A or B."
)


class PTrueConfidence(EstimatorBase):
    """P(True) of the model's own answer -> right/wrong :class:`~calibkit.Scores`.

    Parameters (besides those of :class:`~calibkit.scoring.confidence.base.EstimatorBase`)
    ----------
    max_new_tokens : int
        Tokens of the proposed answer.
    question : str
        The follow-up question; its options must be the letters ``A`` (true) and ``B`` (false).
    """

    name = "ptrue"

    def __init__(
        self,
        backend: Any,
        classes: Sequence[str],
        template: Any = None,
        *,
        max_new_tokens: int = 5,
        question: str = PTRUE_QUESTION,
        **kwargs: Any,
    ) -> None:
        from calibkit.scoring.matching import matching_token_sets

        super().__init__(backend, classes, template, **kwargs)
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.max_new_tokens = max_new_tokens
        self.question = question
        self.option_sets = matching_token_sets(
            ("A", "B"),
            getattr(backend, "tokenize", None),
            first_token_only=True,
            case_variants=False,  # "a" is also the English article
        )

    def _batch(self, batch: list[str]) -> list[dict[str, Any] | ItemFailure]:
        from calibkit.scoring.matching import aggregate_next_token_filled

        first = [self.prompt(t) for t in batch]
        try:
            # the proposed answer needs only its text (top_logprobs=0: none asked for)
            g1 = list(
                self.backend.generate(first, max_new_tokens=self.max_new_tokens, top_logprobs=0)
            )
            if len(g1) != len(batch):
                raise ValueError(f"backend returned {len(g1)} results for {len(batch)} prompts")
            live = [i for i, g in enumerate(g1) if not isinstance(g, ItemFailure)]
            second = {i: follow_up(first[i], g1[i].text, self.question) for i in live}
            lps = (
                list(
                    self.backend.next_token_logprobs(
                        [second[i] for i in live], self.option_sets.candidates
                    )
                )
                if live
                else []
            )
            if len(lps) != len(live):
                raise ValueError(f"backend returned {len(lps)} results for {len(live)} prompts")
        except PartialResults:
            raise PartialResults({}) from None
        by = dict(zip(live, lps, strict=True))
        out: list[dict[str, Any] | ItemFailure] = []
        for i in range(len(batch)):
            g = g1[i]
            if isinstance(g, ItemFailure):
                out.append(g)
                continue
            lp = by[i]
            if isinstance(lp, ItemFailure):
                out.append(ItemFailure(f"P(True) question: {lp.reason}"))
                continue
            try:
                z, filled = aggregate_next_token_filled(lp, self.option_sets)
            except ValueError as e:
                out.append(ItemFailure(f"P(True) question: {e}"))
                continue
            p_true = float(np.exp(z[0] - np.logaddexp(z[0], z[1])))
            cost = cost_of([first[i], second[i]], [g])
            cost["output_tokens"] += 1  # the one position read for A/B
            out.append(
                {
                    "answer": g.text,
                    "answer_index": self.parse(g.text),
                    "p_true": p_true,
                    "filled": bool(filled.any()),
                    "cost": cost,
                }
            )
        return out

    def score(
        self,
        texts: Sequence[str],
        labels: ArrayLike | Sequence[str] | None = None,
        ids: ArrayLike | None = None,
        *,
        on_error: OnError = "fail",
    ) -> Scores:
        """Right/wrong Scores of ``n`` texts: ``probs[:, 1]`` = P(True) of the proposed answer.

        ``meta``: ``estimator``, ``cost``, ``n_filled_missing``, ``n_unparsed_answer`` (proposed
        answers naming no class: they count as wrong); ``per_item``: ``answer_index``,
        ``answer_text``, ``p_true``.
        """
        texts = self.check_texts(texts)
        keys = self.item_keys(
            _KEY_VERSION,
            texts,
            T=self.max_new_tokens,
            question=self.question,
            tokens=self.option_sets.to_dict(),
        )
        self.last_run = {}
        ok, good, failures, _ = run_items(
            self._batch,
            texts,
            keys,
            self.cache,
            batch_size=self.batch_size,
            progress=self.progress,
            desc="P(True)",
            on_error=on_error,
            check=_check,
            stats=self.last_run,
        )
        p = np.asarray([r["p_true"] for r in good], dtype=np.float64)
        meta = {
            "task": "classify",
            "estimator": self.name,
            "model": self.backend.name,
            "task_classes": list(self.classes),
            "cost": cost_meta(good),
            "n_filled_missing": sum(bool(r["filled"]) for r in good),
            "n_unparsed_answer": sum(r["answer_index"] < 0 for r in good),
            "failures": failures,
        }
        return to_scores(
            probs=p,
            classes=BINARY_CLASSES,
            answer_index=[r["answer_index"] for r in good],
            labels=labels,
            task_classes=self.classes,
            ok=ok,
            n=len(texts),
            ids=ids,
            meta=meta,
            per_item={"answer_text": [r["answer"] for r in good], "p_true": p},
        )


def _check(r: dict[str, Any]) -> str | None:
    p = r.get("p_true")
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
        return f"has p_true {p!r}, expected a number in [0, 1]"
    if not isinstance(r.get("answer_index"), int) or not isinstance(r.get("answer"), str):
        return "lacks 'answer' / 'answer_index'"
    return check_cost(r)
