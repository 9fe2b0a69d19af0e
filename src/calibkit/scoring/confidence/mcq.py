"""Multiple-choice questions as classification items, so that every confidence estimator runs on them.

An MCQ item (question, options A..) becomes one classification item whose text shows the question
and its lettered options (:func:`calibkit.scoring.prompts.mcq_user_message`, the project's one
rendering of a multiple-choice question) and whose classes are the option letters. The answer is
then matched exactly to a letter, as for any classification task, and every estimator of
:data:`calibkit.scoring.confidence.ESTIMATORS` (logits over the letters, P(True) of the proposed
letter, verbalized confidence, the vote over sampled letters) works unchanged.

All items of one task must have the same number of options (the classes are fixed per task):
:func:`mcq_as_classification` raises naming the first item that differs; select items first
(e.g. ``[it for it in items if len(it.choices) == 4]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from calibkit.scoring.prompts import PromptTemplate, mcq_user_message, option_letters

__all__ = ["MCQ_INSTRUCTION", "MCQClassification", "mcq_as_classification", "mcq_template"]

MCQ_INSTRUCTION = (
    "Answer a multiple-choice question by choosing the letter of the correct option, one of: "
    "{classes}."
)


@dataclass(frozen=True)
class MCQClassification:
    """MCQ items as a classification task.

    Attributes
    ----------
    texts : list of n str
        Question and lettered options of each item (no answer hint: the template asks for it).
    labels : list of n str
        The gold option letter of each item.
    classes : tuple of K str
        The option letters ``("A", "B", ...)``.
    template : PromptTemplate
        A zero-shot template that asks for one letter.
    ids : list of n str
        The items' ids.
    """

    texts: list[str]
    labels: list[str]
    classes: tuple[str, ...]
    template: PromptTemplate
    ids: list[str]


def mcq_template() -> PromptTemplate:
    """The zero-shot template of MCQ items: the default template with an MCQ instruction and the
    input shown as ``Question: ...``."""
    return PromptTemplate(instruction=MCQ_INSTRUCTION, input_template="Question: {text}")


def mcq_as_classification(items: Sequence[Any]) -> MCQClassification:
    """Turn MCQ items (:class:`calibkit.datasets.MCQItem` or anything with ``question``,
    ``choices``, ``answer`` (0-based index) and optionally ``id``) into a classification task.

    Raises ``ValueError`` naming the item when the items are empty, an item has a different number
    of options than the first, or an answer index is out of range.
    """
    if isinstance(items, str) or len(items) == 0:
        raise ValueError("mcq_as_classification needs a non-empty sequence of MCQ items")
    k = len(items[0].choices)
    if k < 2:
        raise ValueError(f"MCQ item 0 ({getattr(items[0], 'id', '')!r}) has {k} options, need >= 2")
    letters = tuple(option_letters(k))
    texts, labels, ids = [], [], []
    for i, it in enumerate(items):
        name = getattr(it, "id", "") or str(i)
        choices = [str(c) for c in it.choices]
        if len(choices) != k:
            raise ValueError(
                f"MCQ item {i} ({name!r}) has {len(choices)} options but item 0 has {k}: the "
                "classes of a task are fixed; keep items with the same number of options"
            )
        a = it.answer
        if isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < k:
            raise ValueError(
                f"MCQ item {i} ({name!r}) has answer {a!r}, expected an int in [0, {k})"
            )
        texts.append(mcq_user_message(str(it.question), choices, hint="").rstrip())
        labels.append(letters[a])
        ids.append(str(name))
    return MCQClassification(texts, labels, letters, mcq_template(), ids)
