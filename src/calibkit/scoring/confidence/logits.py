"""Answer-token logits (paper 001, section 2.1): today's :class:`ClassificationScorer`, wrapped.

Needs log-probabilities from the backend. The result is per-class ``Scores`` (the class
log-probabilities of :class:`~calibkit.scoring.classify.ClassificationScorer`), with the cost
added to ``meta["cost"]``: one call per item; ``output_tokens`` is the number of positions read
(``1`` in ``next_token`` mode, else the tokens generated, at most ``max_new_tokens``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from numpy.typing import ArrayLike

from calibkit.scores import Scores
from calibkit.scoring.confidence.base import EstimatorBase, OnError, prompt_chars

__all__ = ["LogitsConfidence"]


class LogitsConfidence(EstimatorBase):
    """Class log-probabilities of the answer tokens -> per-class :class:`~calibkit.Scores`.

    Parameters (besides those of :class:`~calibkit.scoring.confidence.base.EstimatorBase`)
    ----------
    mode : {"generate", "next_token"}
    max_new_tokens : int
        See :class:`~calibkit.scoring.classify.ClassificationScorer`.
    """

    name = "logits"

    def __init__(
        self,
        backend: Any,
        classes: Sequence[str],
        template: Any = None,
        *,
        mode: Any = "generate",
        max_new_tokens: int = 5,
        **kwargs: Any,
    ) -> None:
        from calibkit.scoring.classify import ClassificationScorer

        super().__init__(backend, classes, template, **kwargs)
        self.scorer = ClassificationScorer(
            backend,
            self.classes,
            self.template,
            mode=mode,
            max_new_tokens=max_new_tokens,
            cache=self.cache,
            batch_size=self.batch_size,
            aliases=self.aliases,
            progress=self.progress,
        )

    def score(
        self,
        texts: Sequence[str],
        labels: ArrayLike | Sequence[str] | None = None,
        ids: ArrayLike | None = None,
        *,
        on_error: OnError = "fail",
    ) -> Scores:
        """:meth:`ClassificationScorer.score`, with ``meta["estimator"]`` and ``meta["cost"]``."""
        texts = self.check_texts(texts)
        try:
            s = self.scorer.score(texts, labels, ids, on_error=on_error)
        finally:
            self.last_run = self.scorer.last_run
        n = len(s)
        pos = s.per_item.get("max_position")
        if self.scorer.mode == "next_token" or pos is None:
            out_tokens = n
        else:  # tokens generated: at least one past the last position read, at most T
            out_tokens = n * self.scorer.max_new_tokens
        all_chars = [prompt_chars(self.prompt(t)) for t in texts]
        chars = round(n * sum(all_chars) / len(all_chars))  # mean over the texts, times rows
        tot = {"model_calls": n, "output_tokens": out_tokens, "prompt_chars": chars}
        m = max(n, 1)
        meta = dict(s.meta)
        meta["estimator"] = self.name
        meta["cost"] = {**tot, "per_item": {k: v / m for k, v in tot.items()}}
        meta["cost_output_tokens_is_upper_bound"] = self.scorer.mode == "generate"
        return Scores(
            logits=s.logits,
            labels=s.labels,
            classes=s.classes,
            ids=s.ids,
            meta=meta,
            per_item=s.per_item,
        )
