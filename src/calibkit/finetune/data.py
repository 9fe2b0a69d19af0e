"""Multiple-choice fine-tuning data (paper 002, Table 1 and Section 6.1).

In-domain: MMLU, MedMCQA and OpenBookQA pooled (Scheme 1); out-of-domain: ARC-Challenge
(Scheme 2). Each question is rendered with the model's chat template as::

    system:    <SYSTEM_PROMPT of Table 1>
    user:      <question>\\nOptions:\\nA. <choice>\\nB. <choice>\\n...\\nAnswer with only a single letter:
    assistant: <letter>

The completion is the answer letter followed by the template's end-of-turn token (anything the
template writes after it, such as a newline, is dropped). The option distribution of paper
eq. (1) is the softmax over the logits of the ``K`` letter tokens at the position that predicts
the answer letter.

Label masks (``labels`` aligned with ``input_ids``; ``-100`` = no loss):

* ``"completion"`` (CFT, label smoothing): exactly the completion tokens (letter + end of turn);
* ``"prompt_and_answer"`` (RCFT): everything from the first token of the user message's content
  (question and options) to the end, i.e. all but the system turn and the template's user header.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from calibkit.scoring.prompts import (
    MCQ_HINT,
    MCQ_SYSTEM,
    MultipleChoiceTemplate,
    mcq_user_message,
    option_letters,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_SPLITS",
    "IN_DOMAIN",
    "OUT_OF_DOMAIN",
    "SYSTEM_PROMPT",
    "EncodedMCQ",
    "MCQExample",
    "build_messages",
    "collate",
    "encode_examples",
    "encode_mcq",
    "format_user_prompt",
    "load_mcq_examples",
    "make_labels",
    "make_splits",
    "option_letters",
    "option_token_ids",
]

#: Table 1's system prompt and answer hint: the scorer's (:mod:`calibkit.scoring.prompts`), so a
#: fine-tuned model is evaluated on the prompt it was trained on.
SYSTEM_PROMPT = MCQ_SYSTEM
ANSWER_HINT = MCQ_HINT
IN_DOMAIN: tuple[str, ...] = ("mmlu", "medmcqa", "openbookqa")
OUT_OF_DOMAIN: tuple[str, ...] = ("arc_challenge",)
#: Split read from each dataset by default (the ones shipped in ``shared/data`` with answers).
DEFAULT_SPLITS: dict[str, str] = {
    "mmlu": "test",
    "medmcqa": "validation",
    "openbookqa": "test",
    "arc_challenge": "test",
    "arc_easy": "test",
}
LabelMode = Literal["completion", "prompt_and_answer"]
IGNORE_INDEX = -100


@dataclass(frozen=True)
class MCQExample:
    """One multiple-choice question: ``answer`` indexes ``choices``."""

    question: str
    choices: tuple[str, ...]
    answer: int
    source: str = ""
    subject: str = ""
    id: str = ""

    def __post_init__(self) -> None:
        if len(self.choices) < 2:
            raise ValueError(f"question {self.id!r} has {len(self.choices)} choices; need >= 2")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(
                f"question {self.id!r}: answer {self.answer} outside 0..{len(self.choices) - 1}"
            )


def format_user_prompt(ex: MCQExample) -> str:
    """The user message of Table 1 (question stripped, lettered options, answer hint), rendered by
    :func:`calibkit.scoring.prompts.mcq_user_message`, the scorer's renderer."""
    return mcq_user_message(ex.question.strip(), ex.choices, ANSWER_HINT)


def build_messages(
    ex: MCQExample, *, system_prompt: str | None = SYSTEM_PROMPT, with_answer: bool = False
) -> list[dict[str, str]]:
    """Chat messages for ``ex``; ``system_prompt=None`` leaves the system turn out.

    The messages of :class:`calibkit.scoring.prompts.MultipleChoiceTemplate` (zero-shot, chat)
    for the stripped question, plus the answer letter as the assistant turn when ``with_answer``.
    """
    template = MultipleChoiceTemplate(system_prompt=system_prompt, hint=ANSWER_HINT, chat=True)
    rendered = template.render(ex.question.strip(), ex.choices, chat=True)
    if isinstance(rendered, str):  # pragma: no cover - chat=True always gives messages
        raise TypeError("MultipleChoiceTemplate.render(chat=True) returned a string")
    msgs: list[dict[str, str]] = [dict(m) for m in rendered]
    if with_answer:
        msgs.append({"role": "assistant", "content": option_letters(len(ex.choices))[ex.answer]})
    return msgs


# ---------------------------------------------------------------------------------- loading
def load_mcq_examples(
    name: str, *, split: str | None = None, data_dir: str | os.PathLike[str] | None = None
) -> list[MCQExample]:
    """Questions of one dataset (:func:`calibkit.datasets.load_mcq`) as :class:`MCQExample`;
    ``split`` defaults to :data:`DEFAULT_SPLITS`. ``name`` may also be the path of a user's own
    ``.jsonl`` file (``question``, ``choices``, ``answer``; :func:`calibkit.datasets.load_mcq_file`),
    whose every question is used. ``"<dataset>:<subject>"`` (e.g. ``"mmlu:anatomy"``) keeps one
    subject's questions (ids as in the whole dataset)."""
    from calibkit.datasets import load_mcq, load_mcq_file

    if name.lower().endswith((".jsonl", ".ndjson")):
        return [
            MCQExample(
                question=it.question,
                choices=tuple(it.choices),
                answer=it.answer,
                source=Path(name).stem,
                subject=it.subject,
                id=it.id,
            )
            for it in load_mcq_file(name)
        ]
    dataset, sep, subject = name.partition(":")
    if sep and not subject:
        raise ValueError(f"dataset {name!r}: empty subject after ':' (use e.g. 'mmlu:anatomy')")
    split = split or DEFAULT_SPLITS.get(dataset)
    if split is None:
        raise ValueError(f"no default split for dataset {dataset!r}; pass split=")
    # ids index the whole file, so a subject's questions keep the ids they have in the dataset
    out = [
        MCQExample(
            question=it.question,
            choices=tuple(it.choices),
            answer=it.answer,
            source=dataset,
            subject=it.subject,
            id=it.id or f"{dataset}/{split}/{i}",
        )
        for i, it in enumerate(load_mcq(dataset, split=split, data_dir=data_dir))
    ]
    if sep:
        out = [e for e in out if e.subject == subject]
        if not out:
            raise ValueError(
                f"dataset {dataset!r} ({split}) has no questions of subject {subject!r}"
            )
    return out


def _interleave(groups: Sequence[Sequence[MCQExample]]) -> list[MCQExample]:
    out: list[MCQExample] = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


def make_splits(
    train_sources: Sequence[str] = IN_DOMAIN,
    ood_sources: Sequence[str] = OUT_OF_DOMAIN,
    *,
    n_train: int = 3000,
    n_val: int = 500,
    n_test: int = 2000,
    n_ood: int = 2000,
    n_choices: int | None = 4,
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    exclude_ids: Iterable[str] = (),
) -> dict[str, list[MCQExample]]:
    """Scheme 1 / Scheme 2 splits: ``{"train", "val", "test", "ood"}``.

    The in-domain sources are shuffled (``seed``), de-duplicated on (question, choices) and drawn
    round-robin so each contributes equally until it runs out; the pooled draw is shuffled and cut
    into train / val (for temperature scaling) / test. ``ood`` is a shuffled sample of the
    out-of-domain sources. ``n_choices`` keeps only questions with that many options (``None``
    keeps all; mixed ``K`` cannot share one ``(n, K)`` score matrix). Questions whose id is in
    ``exclude_ids`` (e.g. those a subject scan used to choose the sources) are never drawn.
    """
    for nm, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("n_ood", n_ood)):
        if v < 0:
            raise ValueError(f"{nm} must be >= 0; got {v}")
    if not train_sources:
        raise ValueError("train_sources is empty")
    rng = random.Random(seed)
    excluded = set(exclude_ids)

    def prepared(names: Iterable[str]) -> list[list[MCQExample]]:
        groups = []
        for nm in names:
            exs = [e for e in load_mcq_examples(nm, data_dir=data_dir) if e.id not in excluded]
            if n_choices is not None:
                exs = [e for e in exs if len(e.choices) == n_choices]
            rng.shuffle(exs)
            groups.append(exs)
        return groups

    seen: set[tuple[str, tuple[str, ...]]] = set()
    pool: list[MCQExample] = []
    for ex in _interleave(prepared(train_sources)):
        key = (ex.question.strip(), ex.choices)
        if key not in seen:
            seen.add(key)
            pool.append(ex)
    need = n_train + n_val + n_test
    if len(pool) < need:
        raise ValueError(f"only {len(pool)} in-domain questions available; asked for {need}")
    pool = pool[:need]
    rng.shuffle(pool)
    ood: list[MCQExample] = []
    if ood_sources and n_ood:
        ood_all = _interleave(prepared(ood_sources))
        if len(ood_all) < n_ood:
            warnings.warn(
                f"only {len(ood_all)} out-of-domain questions available; using all",
                stacklevel=2,
            )
        ood = ood_all[:n_ood]
    return {
        "train": pool[:n_train],
        "val": pool[n_train : n_train + n_val],
        "test": pool[n_train + n_val :],
        "ood": ood,
    }


# ---------------------------------------------------------------------------------- encoding
@dataclass(frozen=True)
class EncodedMCQ:
    """A tokenised question + answer.

    Attributes
    ----------
    input_ids : tuple of int
        Prompt (chat template with generation prompt) followed by the completion.
    answer_pos : int
        Index in ``input_ids`` of the answer letter (= length of the prompt). The option logits
        are read at ``answer_pos - 1``.
    user_start : int
        Index of the first token of the user message's content.
    answer : int
        Correct option index.
    n_choices : int
    id : str
    """

    input_ids: tuple[int, ...]
    answer_pos: int
    user_start: int
    answer: int
    n_choices: int
    id: str = ""


def _token_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def option_token_ids(tokenizer: Any, n_choices: int) -> list[int]:
    """Token id of each option letter as the first token of the assistant reply.

    Raises ``ValueError`` if a letter is not a single token.
    """
    ids = []
    for L in option_letters(n_choices):
        t = _token_ids(tokenizer, L)
        if len(t) != 1:
            raise ValueError(f"option letter {L!r} is {len(t)} tokens for this tokenizer; need 1")
        ids.append(t[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"option letters map to duplicate token ids {ids}")
    return ids


def _render(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat template; an instruction-tuned model is needed")
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    return str(text)


def _end_of_turn_ids(tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    eos = getattr(tokenizer, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, list):
        ids.update(int(e) for e in eos)
    for tok in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        unk = getattr(tokenizer, "unk_token_id", None)
        if isinstance(tid, int) and tid >= 0 and tid != unk:
            ids.add(tid)
    return ids


def encode_mcq(
    tokenizer: Any, ex: MCQExample, *, system_prompt: str | None = SYSTEM_PROMPT
) -> EncodedMCQ:
    """Tokenise ``ex`` with the chat template (prompt + answer letter + end of turn)."""
    prompt_text = _render(
        tokenizer, build_messages(ex, system_prompt=system_prompt), generation_prompt=True
    )
    full_text = _render(
        tokenizer,
        build_messages(ex, system_prompt=system_prompt, with_answer=True),
        generation_prompt=False,
    )
    if not full_text.startswith(prompt_text):
        raise ValueError(
            "the chat template does not render the prompt as a prefix of prompt+answer"
        )
    # where the user content starts: common prefix with an empty user message
    empty = MCQExample(question="\x00", choices=ex.choices, answer=ex.answer)
    empty_text = _render(
        tokenizer, build_messages(empty, system_prompt=system_prompt), generation_prompt=True
    )
    cut = 0
    while cut < min(len(empty_text), len(prompt_text)) and empty_text[cut] == prompt_text[cut]:
        cut += 1
    prompt_ids = _token_ids(tokenizer, prompt_text)
    full_ids = _token_ids(tokenizer, full_text)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("tokenising prompt+answer does not extend the tokenised prompt")
    head_ids = _token_ids(tokenizer, prompt_text[:cut])
    user_start = len(head_ids)
    while user_start > 0 and prompt_ids[:user_start] != head_ids[:user_start]:
        user_start -= 1
    completion = full_ids[len(prompt_ids) :]
    letters = option_token_ids(tokenizer, len(ex.choices))
    if not completion or completion[0] != letters[ex.answer]:
        raise ValueError(
            f"question {ex.id!r}: the reply does not start with the single answer-letter token"
        )
    eot = _end_of_turn_ids(tokenizer)
    end = next((i for i, t in enumerate(completion) if t in eot), len(completion) - 1)
    completion = completion[: end + 1]
    return EncodedMCQ(
        input_ids=tuple(prompt_ids + completion),
        answer_pos=len(prompt_ids),
        user_start=user_start,
        answer=ex.answer,
        n_choices=len(ex.choices),
        id=ex.id,
    )


def encode_examples(
    tokenizer: Any,
    examples: Sequence[MCQExample],
    *,
    system_prompt: str | None = SYSTEM_PROMPT,
    max_length: int | None = 512,
) -> list[EncodedMCQ]:
    """Encode many; questions longer than ``max_length`` tokens are dropped (with a warning)."""
    out = [encode_mcq(tokenizer, ex, system_prompt=system_prompt) for ex in examples]
    if max_length is not None:
        kept = [e for e in out if len(e.input_ids) <= max_length]
        if len(kept) < len(out):
            warnings.warn(
                f"dropped {len(out) - len(kept)} of {len(out)} questions longer than "
                f"max_length={max_length} tokens",
                stacklevel=2,
            )
        out = kept
    if out and len({e.n_choices for e in out}) > 1:
        raise ValueError("questions with different numbers of options cannot share a batch")
    return out


def make_labels(enc: EncodedMCQ, mode: LabelMode) -> list[int]:
    """Labels aligned with ``enc.input_ids``: ``-100`` where there is no loss (see module doc)."""
    if mode == "completion":
        start = enc.answer_pos
    elif mode == "prompt_and_answer":
        start = enc.user_start
    else:
        raise ValueError(f"label mode must be 'completion' or 'prompt_and_answer'; got {mode!r}")
    return [IGNORE_INDEX] * start + list(enc.input_ids[start:])


def collate(
    batch: Sequence[EncodedMCQ], *, pad_id: int, mode: LabelMode
) -> dict[str, torch.Tensor]:
    """Left-padded tensors (every row ends at the last column): ``input_ids``,
    ``attention_mask``, ``labels`` (B, L); ``answer_pos`` (B,) (the answer letter's column in the
    padded batch), ``answers`` (B,) and ``completion_len`` (B,) (tokens from the answer letter to
    the end). Pass ``position_ids`` from the attention mask (see ``causal_forward``)."""
    import torch

    if not batch:
        raise ValueError("empty batch")
    length = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    att = torch.zeros((len(batch), length), dtype=torch.long)
    lab = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
    pos = []
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        off = length - n
        ids[i, off:] = torch.tensor(e.input_ids)
        att[i, off:] = 1
        lab[i, off:] = torch.tensor(make_labels(e, mode))
        pos.append(off + e.answer_pos)
    return {
        "input_ids": ids,
        "attention_mask": att,
        "labels": lab,
        "answer_pos": torch.tensor(pos, dtype=torch.long),
        "answers": torch.tensor([e.answer for e in batch], dtype=torch.long),
        "completion_len": torch.tensor([len(e.input_ids) - e.answer_pos for e in batch]),
    }
