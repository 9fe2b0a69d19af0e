"""Verbalized confidence (Tian et al. 2023; Xiong et al. 2024): the model states how sure it is.

Text only, no log-probabilities. Three prompting styles:

- ``"one-stage"``: one request, "answer, then your confidence (0-100%)";
- ``"two-stage"``: the plain answer prompt, then (as the next user turn) "how confident are you
  that your answer is correct? (0-100%)": two requests;
- ``"top-k"``: "your k best guesses, each with the probability that it is correct"; the most
  probable guess that names a class is the answer and its probability the confidence.

The result is right/wrong ``Scores`` (see :mod:`calibkit.scoring.confidence.base`). A reply whose
confidence cannot be read is an item failure (counted in ``meta["n_unparseable"]``), never a
made-up 0.5.

Parsing rules (:func:`parse_confidence`): the number after the last "confidence" in the reply (or
the only number when the word is absent); ``85%``, ``85 %``, ``85 percent`` and ``85/100`` are
percentages; a decimal <= 1 without a percent sign (``0.85``, ``1.0``) is a probability; a bare
whole number 0-100 is a percentage (the prompt asks for one); anything above 100%, negative, or a
range (``80-90%``) is unparseable. The words ``very low/low/medium/moderate/high/very high`` map to
0.1/0.3/0.5/0.5/0.8/0.9 (``meta["n_word_confidence"]`` counts them; a negated word is
unparseable).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from calibkit.scores import Scores
from calibkit.scoring.backends.base import Generation, ItemFailure, PartialResults
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

__all__ = ["VerbalizedConfidence", "parse_confidence", "parse_top_k"]

_KEY_VERSION = "verbalized-v1"
Style = Literal["one-stage", "two-stage", "top-k"]

ONE_STAGE = (
    "Answer with one of: {classes}. Then give your confidence that your answer is correct, as a "
    "percentage from 0 to 100, in exactly this format:\nAnswer: <class>\nConfidence: <number>%"
)
TWO_STAGE = (
    "How confident are you that your answer is correct? Reply with only a percentage from 0 to "
    "100, e.g. 'Confidence: 70%'."
)
TOP_K = (
    "Give your {k} best guesses among: {classes}, each with the probability (0 to 100%) that it "
    "is correct, one per line, in exactly this format:\n<class>: <number>%"
)

_WORDS = {
    "very low": 0.1,
    "low": 0.3,
    "medium": 0.5,
    "moderate": 0.5,
    "high": 0.8,
    "very high": 0.9,
}
_NUM = re.compile(
    r"(?<![\w.])(-?\d+(?:\.\d+)?|\.\d+)\s*(%|percent\b|/\s*100\b)?(\s*[-–]\s*\d)?", re.IGNORECASE
)
_WORD = re.compile(r"^\W*(very\s+)?(low|medium|moderate|high)\b(\s+confidence)?\W*$")


def parse_confidence(text: str) -> tuple[float, str] | None:
    """Confidence in [0, 1] stated in ``text`` and how it was read (``"number"`` or ``"word"``),
    or ``None`` when it cannot be read (rules in the module docstring)."""
    if not isinstance(text, str):
        return None
    low = text.lower()
    cut = low.rfind("confidence")
    seg = low[cut + len("confidence") :] if cut >= 0 else low
    found = list(_NUM.finditer(seg))
    if found:
        if cut < 0 and len(found) > 1:
            return None
        m = found[0]
        if m.group(3):  # a range such as 80-90%
            return None
        raw, unit = m.group(1), (m.group(2) or "").strip()
        v = float(raw)
        if v < 0:
            return None
        if unit:
            p = v / 100
        elif "." in raw and v <= 1:
            p = v
        else:
            p = v / 100
        return (p, "number") if 0 <= p <= 1 else None
    seg = seg.strip().lstrip(":").strip()
    if re.search(r"\b(not|no|un)\b", seg):
        return None
    w = _WORD.match(seg)
    if w is None:
        return None
    key = ("very " if w.group(1) else "") + w.group(2)
    return _WORDS[key], "word"


def parse_top_k(text: str, classes: Sequence[str], parse: Any) -> list[tuple[int, float]]:
    """``(class index, probability)`` of each line ``<guess>: <confidence>`` that names a class and
    a readable confidence, in reply order."""
    out = []
    for line in text.splitlines():
        if ":" not in line:
            continue
        guess, _, conf = line.rpartition(":")
        k = parse(re.sub(r"^\s*(\d+[.)]|[-*])\s*", "", guess))
        c = parse_confidence(conf)
        if k >= 0 and c is not None:
            out.append((k, c[0]))
    return out


def _split_one_stage(text: str) -> tuple[str, str]:
    low = text.lower()
    cut = low.find("confidence")
    answer = text[:cut] if cut >= 0 else text
    answer = re.sub(r"^\s*answer\s*:\s*", "", answer.strip(), flags=re.IGNORECASE)
    return answer.strip(), text[cut:] if cut >= 0 else ""


class VerbalizedConfidence(EstimatorBase):
    """Stated confidence -> right/wrong :class:`~calibkit.Scores`.

    Parameters (besides those of :class:`~calibkit.scoring.confidence.base.EstimatorBase`)
    ----------
    style : {"one-stage", "two-stage", "top-k"}
    k : int
        Guesses asked for with ``"top-k"`` (>= 2).
    max_new_tokens : int
        Tokens generated per request.
    """

    name = "verbalized"

    def __init__(
        self,
        backend: Any,
        classes: Sequence[str],
        template: Any = None,
        *,
        style: Style = "one-stage",
        k: int = 2,
        max_new_tokens: int = 24,
        **kwargs: Any,
    ) -> None:
        super().__init__(backend, classes, template, **kwargs)
        if style not in ("one-stage", "two-stage", "top-k"):
            raise ValueError(f"style must be 'one-stage', 'two-stage' or 'top-k', got {style!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ValueError(f"k must be an int >= 2, got {k!r}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.style: Style = style
        self.k = k
        self.max_new_tokens = max_new_tokens

    def _first_prompt(self, text: str) -> Any:
        from dataclasses import replace

        if self.style == "two-stage":
            return self.prompt(text)
        instr = ONE_STAGE if self.style == "one-stage" else TOP_K.replace("{k}", str(self.k))
        tpl = replace(self.template, answer_instruction=instr)
        return tpl.render(text, self.classes, chat=self.chat)

    def _gen(self, prompts: list[Any]) -> list[Generation | ItemFailure]:
        # text only: no log-probabilities asked for (servers that return none still answer)
        res = list(
            self.backend.generate(prompts, max_new_tokens=self.max_new_tokens, top_logprobs=0)
        )
        if len(res) != len(prompts):
            raise ValueError(f"backend returned {len(res)} results for {len(prompts)} prompts")
        return res

    def _batch(self, batch: list[str]) -> list[dict[str, Any] | ItemFailure]:
        first = [self._first_prompt(t) for t in batch]
        second: list[Any] = [None] * len(batch)
        g2: list[Any] = [None] * len(batch)
        try:
            g1 = self._gen(first)
            out: list[dict[str, Any] | ItemFailure] = []
            if self.style == "two-stage":
                second = [
                    None if isinstance(g, ItemFailure) else follow_up(p, g.text, TWO_STAGE)
                    for p, g in zip(first, g1, strict=True)
                ]
                live = [i for i, p in enumerate(second) if p is not None]
                g2_live = self._gen([second[i] for i in live]) if live else []
                for i, g in zip(live, g2_live, strict=True):
                    g2[i] = g
        except PartialResults:
            raise PartialResults({}) from None
        for i in range(len(batch)):
            a = g1[i]
            if isinstance(a, ItemFailure):
                out.append(a)
                continue
            if self.style == "one-stage":
                ans, conf_text = _split_one_stage(a.text)
                idx = self.parse(ans)
                parsed = parse_confidence(conf_text) if conf_text else None
                cost = cost_of([first[i]], [a])
                reply = a.text
            elif self.style == "two-stage":
                b = g2[i]
                if isinstance(b, ItemFailure):
                    out.append(b)
                    continue
                ans, idx = a.text, self.parse(a.text)
                parsed = parse_confidence(b.text)
                cost = cost_of([first[i], second[i]], [a, b])
                reply = b.text
            else:
                guesses = parse_top_k(a.text, self.classes, self.parse)
                cost = cost_of([first[i]], [a])
                reply = a.text
                if guesses:
                    idx, p = max(guesses, key=lambda kp: kp[1])
                    ans, parsed = self.classes[idx], (p, "number")
                else:
                    ans, idx, parsed = a.text, -1, None
            if parsed is None:
                out.append(
                    ItemFailure(f"unparseable verbalized confidence in the reply {reply[:80]!r}")
                )
                continue
            out.append(
                {
                    "answer": ans,
                    "answer_index": int(idx),
                    "confidence": float(parsed[0]),
                    "source": parsed[1],
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
        """Right/wrong Scores of ``n`` texts: ``probs[:, 1]`` = stated confidence of the answer.

        ``meta``: ``estimator``, ``style``, ``cost``, ``n_unparseable`` (replies whose confidence
        could not be read; they are failures, see ``on_error`` in
        :meth:`~calibkit.scoring.classify.ClassificationScorer.score`), ``n_word_confidence``,
        ``n_unparsed_answer``; ``per_item``: ``answer_index``, ``answer_text``, ``confidence``.
        """
        texts = self.check_texts(texts)
        keys = self.item_keys(
            _KEY_VERSION, texts, style=self.style, k=self.k, T=self.max_new_tokens
        )
        self.last_run = {}
        ok, good, failures, _ = run_items(
            self._batch,
            texts,
            keys,
            self.cache,
            batch_size=self.batch_size,
            progress=self.progress,
            desc=f"verbalized ({self.style})",
            on_error=on_error,
            check=_check,
            stats=self.last_run,
        )
        conf = np.asarray([r["confidence"] for r in good], dtype=np.float64)
        meta = {
            "task": "classify",
            "estimator": self.name,
            "style": self.style,
            "model": self.backend.name,
            "task_classes": list(self.classes),
            "cost": cost_meta(good),
            "n_unparseable": sum("unparseable" in f["reason"] for f in failures),
            "n_word_confidence": sum(r["source"] == "word" for r in good),
            "n_unparsed_answer": sum(r["answer_index"] < 0 for r in good),
            "failures": failures,
        }
        return to_scores(
            probs=conf,
            classes=BINARY_CLASSES,
            answer_index=[r["answer_index"] for r in good],
            labels=labels,
            task_classes=self.classes,
            ok=ok,
            n=len(texts),
            ids=ids,
            meta=meta,
            per_item={
                "answer_text": [r["answer"] for r in good],
                "confidence": conf,
            },
        )


def _check(r: dict[str, Any]) -> str | None:
    c = r.get("confidence")
    if isinstance(c, bool) or not isinstance(c, int | float) or not 0 <= c <= 1:
        return f"has confidence {c!r}, expected a number in [0, 1]"
    if not isinstance(r.get("answer_index"), int) or not isinstance(r.get("answer"), str):
        return "lacks 'answer' / 'answer_index'"
    if r.get("source") not in ("number", "word"):
        return f"has source {r.get('source')!r}"
    return check_cost(r)
