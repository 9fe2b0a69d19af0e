"""A suite of real labeling tasks for the label-efficiency study (paper 001, section 4.1).

The paper calibrates an LLM labeler on 12 binary yes/no product-classification tasks ("does this
product belong to class X?"). calibkit builds the same kind of suite from the real datasets in
``../shared/data`` (:mod:`calibkit.datasets`): each task is one yes/no question over one dataset,

* sentiment / style: ``sst2_positive``, ``cr_positive``, ``subj_opinion``, ``complaint``;
* TREC question type, one vs rest: ``trec_number``, ``trec_location``, ``trec_person``,
  ``trec_description``;
* Banking77 intents (a group of related intents vs all other intents): ``bank_card_arrival``,
  ``bank_lost_card``, ``bank_exchange_rate``, ``bank_top_up``, ``bank_refund``,
  ``bank_cash_withdrawal``, ``bank_pin``, ``bank_identity``;

plus one multi-class task, ``trec_type`` (the 6 coarse TREC classes), which exercises transfer
across different numbers of classes. Every binary task has classes ``("no", "yes")`` in that
column order, as in the paper, so out-of-task vector-scaling parameters mean the same thing in
every task.

Each task is a fixed, seeded subsample (``n_per_task`` items, short texts only, half of them
"yes" for the yes/no tasks) so that scoring with a small LLM on a CPU stays affordable.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["TASKS", "Task", "TaskSpec", "build_suite", "build_task", "task_names"]


@dataclass(frozen=True)
class TaskSpec:
    """How to build one task from a classification dataset.

    Attributes
    ----------
    name : str
    dataset : str
        :func:`calibkit.datasets.load_classification` name.
    question : str
        The yes/no (or multi-class) question put to the LLM.
    positive : tuple of str
        Dataset labels that make the answer "yes" (yes/no tasks).
    negatives : tuple of str
        Dataset labels allowed as "no" items (empty: every other label).
    class_labels : tuple of str
        Multi-class tasks: the dataset label of each class, in class order (then ``classes``
        are the answer words).
    classes : tuple of str
        Answer words, in column order.
    text_kind : str
        What the text is ("Review", "Question" ...), used in the prompt.
    label_column : str
    positive_fraction : float
        Share of "yes" items in the subsample of a yes/no task.
    """

    name: str
    dataset: str
    question: str
    positive: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    class_labels: tuple[str, ...] = ()
    classes: tuple[str, ...] = ("no", "yes")
    text_kind: str = "Text"
    label_column: str = "label"
    positive_fraction: float = 0.5


@dataclass(frozen=True, eq=False)
class Task:
    """One labeled task: ``texts`` with gold class indices ``labels`` into ``classes``."""

    name: str
    question: str
    classes: tuple[str, ...]
    texts: tuple[str, ...]
    labels: NDArray[np.int64]
    ids: tuple[str, ...]
    dataset: str
    text_kind: str = "Text"
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """Question plus answer words: what the task embedding of SIM-OOT reads besides texts."""
        return f"{self.question} Answer: {' / '.join(self.classes)}."

    def __len__(self) -> int:
        return len(self.texts)


_BANK = "banking77"
TASKS: dict[str, TaskSpec] = {
    s.name: s
    for s in [
        TaskSpec(
            "sst2_positive",
            "sst2",
            "Is the sentiment of this movie review positive?",
            ("positive",),
            text_kind="Review",
        ),
        TaskSpec(
            "cr_positive",
            "cr",
            "Is this product review positive?",
            ("positive",),
            text_kind="Review",
        ),
        TaskSpec(
            "subj_opinion",
            "subj",
            "Does this sentence express an opinion rather than describe the plot of a film?",
            ("subjective",),
            text_kind="Sentence",
        ),
        TaskSpec(
            "complaint",
            "twitter_complaints",
            "Is this tweet a complaint?",
            ("complaint",),
            text_kind="Tweet",
        ),
        TaskSpec(
            "trec_number",
            "trec",
            "Does this question ask for a number, such as a date, a count or an amount?",
            ("NUM",),
            text_kind="Question",
        ),
        TaskSpec(
            "trec_location",
            "trec",
            "Does this question ask about a place?",
            ("LOC",),
            text_kind="Question",
        ),
        TaskSpec(
            "trec_person",
            "trec",
            "Does this question ask about a person or a group of people?",
            ("HUM",),
            text_kind="Question",
        ),
        TaskSpec(
            "trec_description",
            "trec",
            "Does this question ask for a definition, a description or a reason?",
            ("DESC",),
            text_kind="Question",
        ),
        TaskSpec(
            "bank_card_arrival",
            _BANK,
            "Is the customer asking about a new card that has not arrived yet?",
            ("card_arrival", "card_delivery_estimate"),
            text_kind="Message",
        ),
        TaskSpec(
            "bank_lost_card",
            _BANK,
            "Is the customer reporting a lost or stolen card?",
            ("lost_or_stolen_card", "compromised_card"),
            text_kind="Message",
        ),
        TaskSpec(
            "bank_exchange_rate",
            _BANK,
            "Is the customer asking about an exchange rate or a currency exchange?",
            (
                "exchange_rate",
                "card_payment_wrong_exchange_rate",
                "exchange_charge",
                "wrong_exchange_rate_for_cash_withdrawal",
                "exchange_via_app",
            ),
            text_kind="Message",
        ),
        TaskSpec(
            "bank_top_up",
            _BANK,
            "Is the customer asking about topping up their account?",
            (
                "top_up_failed",
                "pending_top_up",
                "top_up_reverted",
                "topping_up_by_card",
                "top_up_limits",
                "automatic_top_up",
                "verify_top_up",
            ),
            text_kind="Message",
        ),
        TaskSpec(
            "bank_refund",
            _BANK,
            "Is the customer asking about a refund?",
            ("request_refund", "Refund_not_showing_up"),
            text_kind="Message",
        ),
        TaskSpec(
            "bank_cash_withdrawal",
            _BANK,
            "Is the customer asking about withdrawing cash from an ATM?",
            (
                "cash_withdrawal_charge",
                "declined_cash_withdrawal",
                "pending_cash_withdrawal",
                "cash_withdrawal_not_recognised",
                "wrong_amount_of_cash_received",
            ),
            text_kind="Message",
        ),
        TaskSpec(
            "bank_pin",
            _BANK,
            "Is the customer asking about the PIN of their card?",
            ("pin_blocked", "change_pin"),
            text_kind="Message",
        ),
        TaskSpec(
            "bank_identity",
            _BANK,
            "Is the customer asking about verifying their identity?",
            ("verify_my_identity", "why_verify_identity", "unable_to_verify_identity"),
            text_kind="Message",
        ),
        TaskSpec(
            "trec_type",
            "trec",
            "What kind of answer does this question ask for?",
            class_labels=("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"),
            classes=("abbreviation", "entity", "description", "person", "location", "number"),
            text_kind="Question",
        ),
    ]
}


def task_names() -> list[str]:
    """Names of the built-in tasks, in suite order."""
    return list(TASKS)


def _task_seed(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def build_task(
    spec: TaskSpec | str,
    *,
    n_per_task: int = 240,
    seed: int = 0,
    max_chars: int = 200,
    data_dir: str | os.PathLike[str] | None = None,
    frames: dict[str, Any] | None = None,
) -> Task:
    """Build one task: a seeded subsample of ``n_per_task`` short texts.

    Parameters
    ----------
    spec : TaskSpec or the name of a built-in task
    n_per_task : int
        Items in the subsample (fewer if the dataset has fewer eligible rows).
    seed : int
        Subsample seed (combined with the task name, so tasks sharing a dataset differ).
    max_chars : int
        Texts longer than this are left out (keeps prompts short).
    data_dir : path, optional
        Where the real datasets live (default: :func:`calibkit.datasets.default_data_dir`).
    frames : dict, optional
        Loaded datasets by name, shared between calls (filled as datasets are read).
    """
    from calibkit.datasets import load_classification

    if isinstance(spec, str):
        if spec not in TASKS:
            raise ValueError(f"unknown task {spec!r}; built-in tasks: {task_names()}")
        spec = TASKS[spec]
    if n_per_task < 2:
        raise ValueError(f"n_per_task must be >= 2; got {n_per_task}")
    frames = {} if frames is None else frames
    if spec.dataset not in frames:
        frames[spec.dataset] = load_classification(spec.dataset, data_dir=data_dir)
    df = frames[spec.dataset]
    if spec.label_column not in df.columns:
        raise ValueError(f"dataset {spec.dataset!r} has no column {spec.label_column!r}")
    text = df["text"].astype(str).str.strip()
    keep = (text.str.len() > 0) & (text.str.len() <= max_chars)
    lab = df[spec.label_column].astype(str)
    rows = np.flatnonzero(keep.to_numpy())
    rng = _task_seed(spec.name, seed)
    if spec.class_labels:
        lookup = {c: i for i, c in enumerate(spec.class_labels)}
        rows = rows[lab.iloc[rows].isin(lookup).to_numpy()]
        take = rng.choice(rows, size=min(n_per_task, rows.size), replace=False)
        y = lab.iloc[take].map(lookup).to_numpy(dtype=np.int64)
    else:
        if not spec.positive:
            raise ValueError(f"task {spec.name!r} needs positive labels or class_labels")
        is_pos = lab.iloc[rows].isin(spec.positive).to_numpy()
        pos = rows[is_pos]
        neg = rows[~is_pos]
        if spec.negatives:
            neg = neg[lab.iloc[neg].isin(spec.negatives).to_numpy()]
        if pos.size == 0 or neg.size == 0:
            raise ValueError(
                f"task {spec.name!r}: no positive or no negative rows in {spec.dataset}"
            )
        n_pos = min(pos.size, round(n_per_task * spec.positive_fraction))
        n_neg = min(neg.size, n_per_task - n_pos)
        take = np.concatenate(
            [rng.choice(pos, size=n_pos, replace=False), rng.choice(neg, size=n_neg, replace=False)]
        )
        y = np.r_[np.ones(n_pos, dtype=np.int64), np.zeros(n_neg, dtype=np.int64)]
        order = rng.permutation(take.size)
        take, y = take[order], y[order]
    return Task(
        name=spec.name,
        question=spec.question,
        classes=tuple(spec.classes),
        texts=tuple(text.iloc[take].tolist()),
        labels=np.asarray(y, dtype=np.int64),
        ids=tuple(f"{spec.dataset}:{int(i)}" for i in take),
        dataset=spec.dataset,
        text_kind=spec.text_kind,
        meta={"n_per_task": n_per_task, "seed": seed, "max_chars": max_chars},
    )


def build_suite(
    names: Sequence[str] | None = None,
    *,
    n_per_task: int = 240,
    seed: int = 0,
    max_chars: int = 200,
    data_dir: str | os.PathLike[str] | Path | None = None,
) -> list[Task]:
    """Build the named tasks (all built-in tasks by default), in the order given."""
    names = task_names() if names is None else list(names)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; built-in tasks: {task_names()}")
    frames: dict[str, Any] = {}
    return [
        build_task(
            n,
            n_per_task=n_per_task,
            seed=seed,
            max_chars=max_chars,
            data_dir=data_dir,
            frames=frames,
        )
        for n in names
    ]
