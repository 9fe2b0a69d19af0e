"""Prompt templates for classification and multiple-choice scoring.

A template turns one input into a prompt (see :mod:`calibkit.scoring.backends.base`): a list of
chat messages (rendered later with the model's chat template) or, with ``chat=False``, one plain
string for base models. Everything shared by all inputs (system prompt, task description, label
descriptions, few-shot examples) comes first, so backends that reuse a shared prompt prefix encode
it only once. :meth:`fingerprint` is a stable hash of every field, used in cache keys.

Classification (:class:`PromptTemplate`) follows the style of appendix C of *Fill In The Gaps*:
the task lists the classes, each optionally with a description and example utterances; the input
follows. Multiple choice (:class:`MultipleChoiceTemplate`) follows table 1 of *Restoring
Calibration for Aligned LLMs*: a system prompt that asks for a single letter, the question, the
lettered options and the hint ``Answer with only a single letter:``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from calibkit.scoring.backends.base import ChatMessage, Prompt

__all__ = [
    "APPENDIX_C_DESCRIPTIONS",
    "DEFAULT_CLASSIFY_SYSTEM",
    "MCQ_HINT",
    "MCQ_SYSTEM",
    "MultipleChoiceTemplate",
    "PromptTemplate",
    "mcq_user_message",
    "option_letters",
]

DEFAULT_CLASSIFY_SYSTEM = (
    "You are a careful annotator. You must only respond with the name of one class, "
    "without any explanation or additional text."
)
# Table 1 of "Restoring Calibration for Aligned Large Language Models".
MCQ_SYSTEM = (
    "You are an AI assistant that answers multiple choice questions. You must only respond with "
    "a single letter corresponding to your choice without any explanation or additional text."
)
MCQ_HINT = "Answer with only a single letter:"
#: Label descriptions of appendix C of "Fill In The Gaps" (TC = twitter_complaints, SE = cr).
APPENDIX_C_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "subj": {
        "objective": "assigned to text that presents factual information, descriptions, or "
        "statements without personal opinions, emotions, or bias. It focuses on delivering facts "
        "or information that is independent of the writer's personal feelings or beliefs",
        "subjective": "applied to text that expresses personal opinions, feelings, beliefs, or "
        "thoughts. It often includes evaluative language, personal experiences, or "
        "interpretations, reflecting the writer's personal stance or emotional reaction",
    },
    "cr": {
        "negative": "assigned to content that expresses negative feelings, emotions, or "
        "attitudes. Examples include statements of dissatisfaction, sadness, anger, or criticism",
        "positive": "applied to content that expresses positive feelings, emotions, or "
        "attitudes. Examples include statements of happiness, satisfaction, praise, or optimism",
    },
    "twitter_complaints": {
        "complaint": "about customer inquiries on a state of affairs, product, organization or "
        "event to express a negative mismatch between reality and expectations",
        "not_complaint": "the opposite of complaint mentioned above, about customer regular or "
        "normal inquiries on a state of affairs, product, organization or event without any "
        "expression related to a negative mismatch between reality and expectations",
    },
}
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TEMPLATE_VERSION = "1"


def option_letters(n: int) -> tuple[str, ...]:
    """The first ``n`` option letters ``A, B, ...`` (``1 <= n <= 26``)."""
    if not 1 <= n <= len(_LETTERS):
        raise ValueError(f"number of options must be in [1, 26], got {n}")
    return tuple(_LETTERS[:n])


def mcq_user_message(question: str, choices: Sequence[str], hint: str = MCQ_HINT) -> str:
    """The user message of table 1 of paper 002: question, ``Options:``, ``A. <choice>`` lines, hint.

    The one rendering of a multiple-choice question, shared by :class:`MultipleChoiceTemplate`
    (scoring) and :func:`calibkit.finetune.data.format_user_prompt` (fine-tuning), so a model is
    scored on exactly the prompt it was fine-tuned on. ``question`` is used as given.
    """
    letters = option_letters(len(choices))
    opts = "\n".join(f"{lt}. {c}" for lt, c in zip(letters, choices, strict=True))
    return f"{question}\nOptions:\n{opts}\n{hint}"


def _fingerprint(obj: Any) -> str:
    payload = json.dumps(
        {"kind": type(obj).__name__, "v": _TEMPLATE_VERSION, **asdict(obj)},
        sort_keys=True,
        ensure_ascii=False,
        default=list,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _plain(system: str | None, turns: Sequence[tuple[str, str]], final_user: str) -> str:
    """Join a conversation into one string for base models (no chat template)."""
    parts = [system] if system else []
    for user, answer in turns:
        parts.append(f"{user} {answer}")
    parts.append(final_user)
    return "\n\n".join(parts)


@dataclass(frozen=True, eq=True)
class PromptTemplate:
    """How a classification input becomes a prompt. Zero-shot by default.

    Parameters
    ----------
    instruction : str
        First line of the task description; ``{classes}`` is replaced by the comma-separated class
        names.
    system_prompt : str or None
        Put before the task description in the system message (``None``: no system prompt text).
    label_descriptions : mapping of str to str
        Optional description per class, rendered as ``"1. <class>, which is <description>"``.
    examples : sequence of (text, label) pairs
        Few-shot examples (label = class name). ``few_shot_style="grouped"`` lists them under
        their class in the task description (appendix C style); ``"dialogue"`` renders them as
        earlier user/assistant turns.
    input_template : str
        How the input is shown; must contain ``{text}``.
    answer_instruction : str
        Last line of the user message; ``{classes}`` is replaced by the class names.
    chat : bool or None
        ``True``: chat messages; ``False``: one plain string ending in ``answer_prefix``;
        ``None``: let the scorer decide (chat when the backend has a chat template).
    answer_prefix : str
        Appended after the input in plain-text mode (``"Answer:"``).
    """

    instruction: str = "Consider the task of classifying between the following classes:"
    system_prompt: str | None = DEFAULT_CLASSIFY_SYSTEM
    label_descriptions: Mapping[str, str] = field(default_factory=dict)
    examples: Sequence[tuple[str, str]] = ()
    few_shot_style: Literal["grouped", "dialogue"] = "grouped"
    input_template: str = "Text: {text}"
    answer_instruction: str = "Answer with only one of: {classes}."
    chat: bool | None = None
    answer_prefix: str = "Answer:"

    def __post_init__(self) -> None:
        if "{text}" not in self.input_template:
            raise ValueError(f"input_template must contain '{{text}}', got {self.input_template!r}")
        if self.few_shot_style not in ("grouped", "dialogue"):
            raise ValueError(
                f"few_shot_style must be 'grouped' or 'dialogue', got {self.few_shot_style!r}"
            )
        ex = tuple((str(t), str(lab)) for t, lab in self.examples)
        object.__setattr__(self, "examples", ex)
        object.__setattr__(self, "label_descriptions", dict(self.label_descriptions))

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    # ------------------------------------------------------------------ rendering
    def check_classes(self, classes: Sequence[str]) -> list[str]:
        """Validate class names against the examples and descriptions; returns them as str."""
        cls = [str(c) for c in classes]
        if len(cls) < 2:
            raise ValueError(f"need at least 2 classes, got {cls}")
        unknown = sorted({lab for _, lab in self.examples} - set(cls))
        if unknown:
            raise ValueError(f"few-shot examples use labels {unknown} that are not classes {cls}")
        extra = sorted(set(self.label_descriptions) - set(cls))
        if extra:
            raise ValueError(f"label_descriptions name unknown classes {extra}; classes are {cls}")
        return cls

    def task_description(self, classes: Sequence[str]) -> str:
        """The shared task text: instruction, then one numbered entry per class."""
        cls = self.check_classes(classes)
        names = ", ".join(cls)
        grouped = self.few_shot_style == "grouped" and bool(self.examples)
        head = self.instruction.replace("{classes}", names)
        if grouped and "{classes}" not in self.instruction and head.endswith(":"):
            head = head[:-1] + " (along with some examples):"
        lines = [head]
        for i, c in enumerate(cls, 1):
            entry = f"{i}. {c}"
            desc = self.label_descriptions.get(c)
            if desc:
                entry += f", which is {desc.rstrip('.')}."
            if grouped:
                ex = [t for t, lab in self.examples if lab == c]
                if ex:
                    entry += " Some examples of utterances include:\n" + "\n".join(
                        f'- "{t}"' for t in ex
                    )
            lines.append(entry)
        return "\n".join(lines)

    def _user(self, text: str, classes: Sequence[str]) -> str:
        ans = self.answer_instruction.replace("{classes}", ", ".join(classes))
        return self.input_template.replace("{text}", text) + ("\n" + ans if ans else "")

    def render(self, text: str, classes: Sequence[str], *, chat: bool | None = None) -> Prompt:
        """The prompt for one input.

        Parameters
        ----------
        text : str
            The input to classify.
        classes : sequence of str
            Class names, in column order.
        chat : bool, optional
            Overrides ``self.chat``; when both are ``None``, chat messages are returned.
        """
        cls = self.check_classes(classes)
        use_chat = self.chat if chat is None else chat
        use_chat = True if use_chat is None else use_chat
        system = "\n\n".join(s for s in (self.system_prompt, self.task_description(cls)) if s)
        dialogue = self.examples if self.few_shot_style == "dialogue" else ()
        if not use_chat:
            turns = [(self._user(t, cls) + "\n" + self.answer_prefix, lab) for t, lab in dialogue]
            final = self._user(str(text), cls) + "\n" + self.answer_prefix
            return _plain(system, turns, final)
        msgs: list[ChatMessage] = [{"role": "system", "content": system}]
        for t, lab in dialogue:
            msgs.append({"role": "user", "content": self._user(t, cls)})
            msgs.append({"role": "assistant", "content": lab})
        msgs.append({"role": "user", "content": self._user(str(text), cls)})
        return msgs

    def fingerprint(self) -> str:
        """Stable 16-hex-digit hash of every field (changes whenever the rendered prompt can)."""
        return _fingerprint(self)

    # ------------------------------------------------------------------ few-shot helper
    def with_examples(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        k: int,
        *,
        seed: int = 0,
    ) -> PromptTemplate:
        """A copy with ``k`` few-shot examples drawn from ``(texts, labels)``.

        Examples are drawn round-robin over the classes (balanced as far as possible), with a
        random order from ``seed``.
        """
        from dataclasses import replace

        if len(texts) != len(labels):
            raise ValueError(f"texts and labels differ in length: {len(texts)} vs {len(labels)}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if k > len(texts):
            raise ValueError(f"k={k} examples requested but only {len(texts)} are available")
        rng = np.random.default_rng(seed)
        by_class: dict[str, list[int]] = {}
        for i in rng.permutation(len(texts)):
            by_class.setdefault(str(labels[i]), []).append(int(i))
        order = sorted(by_class)
        chosen: list[int] = []
        while len(chosen) < k:
            for c in order:
                if by_class[c] and len(chosen) < k:
                    chosen.append(by_class[c].pop())
        return replace(self, examples=tuple((str(texts[i]), str(labels[i])) for i in chosen))


@dataclass(frozen=True, eq=True)
class MultipleChoiceTemplate:
    """How a multiple-choice question becomes a prompt (table 1 of paper 002 by default).

    The user message is ``question``, ``"Options:"``, one ``"A. <choice>"`` line per option and
    the hint; the system message asks for a single letter.

    Parameters
    ----------
    system_prompt : str or None
        System message (table 1's by default; ``None`` for none).
    hint : str
        Last line of the user message.
    examples : sequence of (question, choices, answer_index)
        Few-shot examples, rendered as earlier user/assistant turns answered with the letter.
    chat : bool or None
        As in :class:`PromptTemplate`.
    answer_prefix : str
        Appended in plain-text mode.
    """

    system_prompt: str | None = MCQ_SYSTEM
    hint: str = MCQ_HINT
    examples: Sequence[tuple[str, tuple[str, ...], int]] = ()
    chat: bool | None = None
    answer_prefix: str = "Answer:"

    def __post_init__(self) -> None:
        ex = []
        for q, ch, a in self.examples:
            ch = tuple(str(c) for c in ch)
            if not 0 <= int(a) < len(ch):
                raise ValueError(
                    f"few-shot example answer {a} is out of range for {len(ch)} options"
                )
            ex.append((str(q), ch, int(a)))
        object.__setattr__(self, "examples", tuple(ex))

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def _user(self, question: str, choices: Sequence[str]) -> str:
        return mcq_user_message(question, choices, self.hint)

    def render(self, question: str, choices: Sequence[str], *, chat: bool | None = None) -> Prompt:
        """The prompt for one question with ``len(choices)`` (2-26) options."""
        if len(choices) < 2:
            raise ValueError(f"a multiple-choice question needs >= 2 options, got {len(choices)}")
        use_chat = self.chat if chat is None else chat
        use_chat = True if use_chat is None else use_chat
        turns = [(self._user(q, ch), option_letters(len(ch))[a]) for q, ch, a in self.examples]
        if not use_chat:
            final = self._user(str(question), choices) + "\n" + self.answer_prefix
            turns = [(u + "\n" + self.answer_prefix, a) for u, a in turns]
            return _plain(self.system_prompt, turns, final)
        msgs: list[ChatMessage] = []
        if self.system_prompt:
            msgs.append({"role": "system", "content": self.system_prompt})
        for u, a in turns:
            msgs.append({"role": "user", "content": u})
            msgs.append({"role": "assistant", "content": a})
        msgs.append({"role": "user", "content": self._user(str(question), choices)})
        return msgs

    def fingerprint(self) -> str:
        """Stable 16-hex-digit hash of every field."""
        return _fingerprint(self)
