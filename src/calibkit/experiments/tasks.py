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

Every task is a :class:`calibkit.tasks.TaskSpec` with a ``question`` and a data source; a user's
task file (:func:`calibkit.tasks.load_task`) joins the suite the same way.
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

from calibkit.tasks import DataSource, TaskSpec, resolve_task

__all__ = ["TASKS", "Task", "TaskSpec", "build_suite", "build_task", "task_names"]


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


def _yes_no(
    name: str, dataset: str, question: str, positive: tuple[str, ...], *, text_kind: str
) -> TaskSpec:
    """A yes/no task: ``positive`` dataset labels are "yes", every other label is "no"."""
    return TaskSpec(
        name,
        ("no", "yes"),
        question=question,
        text_kind=text_kind,
        data=DataSource(dataset=dataset, positive=positive),
    )


_BANK = "banking77"
TASKS: dict[str, TaskSpec] = {
    s.name: s
    for s in [
        _yes_no(
            "sst2_positive",
            "sst2",
            "Is the sentiment of this movie review positive?",
            ("positive",),
            text_kind="Review",
        ),
        _yes_no(
            "cr_positive",
            "cr",
            "Is this product review positive?",
            ("positive",),
            text_kind="Review",
        ),
        _yes_no(
            "subj_opinion",
            "subj",
            "Does this sentence express an opinion rather than describe the plot of a film?",
            ("subjective",),
            text_kind="Sentence",
        ),
        _yes_no(
            "complaint",
            "twitter_complaints",
            "Is this tweet a complaint?",
            ("complaint",),
            text_kind="Tweet",
        ),
        _yes_no(
            "trec_number",
            "trec",
            "Does this question ask for a number, such as a date, a count or an amount?",
            ("NUM",),
            text_kind="Question",
        ),
        _yes_no(
            "trec_location",
            "trec",
            "Does this question ask about a place?",
            ("LOC",),
            text_kind="Question",
        ),
        _yes_no(
            "trec_person",
            "trec",
            "Does this question ask about a person or a group of people?",
            ("HUM",),
            text_kind="Question",
        ),
        _yes_no(
            "trec_description",
            "trec",
            "Does this question ask for a definition, a description or a reason?",
            ("DESC",),
            text_kind="Question",
        ),
        _yes_no(
            "bank_card_arrival",
            _BANK,
            "Is the customer asking about a new card that has not arrived yet?",
            ("card_arrival", "card_delivery_estimate"),
            text_kind="Message",
        ),
        _yes_no(
            "bank_lost_card",
            _BANK,
            "Is the customer reporting a lost or stolen card?",
            ("lost_or_stolen_card", "compromised_card"),
            text_kind="Message",
        ),
        _yes_no(
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
        _yes_no(
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
        _yes_no(
            "bank_refund",
            _BANK,
            "Is the customer asking about a refund?",
            ("request_refund", "Refund_not_showing_up"),
            text_kind="Message",
        ),
        _yes_no(
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
        _yes_no(
            "bank_pin",
            _BANK,
            "Is the customer asking about the PIN of their card?",
            ("pin_blocked", "change_pin"),
            text_kind="Message",
        ),
        _yes_no(
            "bank_identity",
            _BANK,
            "Is the customer asking about verifying their identity?",
            ("verify_my_identity", "why_verify_identity", "unable_to_verify_identity"),
            text_kind="Message",
        ),
        TaskSpec(
            "trec_type",
            ("abbreviation", "entity", "description", "person", "location", "number"),
            question="What kind of answer does this question ask for?",
            text_kind="Question",
            data=DataSource(
                dataset="trec", class_labels=("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM")
            ),
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
    spec : TaskSpec, the name of a built-in task or the path of a task file
    n_per_task : int
        Items in the subsample (fewer if the dataset has fewer eligible rows).
    seed : int
        Subsample seed (combined with the task name, so tasks sharing a dataset differ).
    max_chars : int
        Texts longer than this are left out (keeps prompts short).
    data_dir : path, optional
        Where the built-in datasets live (default: :func:`calibkit.datasets.default_data_dir`).
    frames : dict, optional
        Loaded task rows by (task, data source), shared between calls.
    """
    from calibkit.tasks import load_task_frame

    spec = resolve_task(spec, TASKS)
    if spec.question is None:
        raise ValueError(f"task {spec.name!r}: the label-efficiency study needs field 'question'")
    if spec.data is None:
        raise ValueError(f"task {spec.name!r} has no data source (field 'data')")
    if n_per_task < 2:
        raise ValueError(f"n_per_task must be >= 2; got {n_per_task}")
    frames = {} if frames is None else frames
    key = repr((spec.name, spec.data, spec.classes))
    if key not in frames:
        frames[key] = load_task_frame(spec, data_dir=data_dir)
    df = frames[key]
    text = df["text"].astype(str).str.strip()
    keep = ((text.str.len() > 0) & (text.str.len() <= max_chars)).to_numpy()
    y_all = df["label"].to_numpy(dtype=np.int64)
    pos_all = df["row"].to_numpy(dtype=np.int64)  # row in the whole dataset: stable ids
    rng = _task_seed(spec.name, seed)
    if not spec.data.positive:
        take = rng.choice(
            np.flatnonzero(keep), size=min(n_per_task, int(keep.sum())), replace=False
        )
        y = y_all[take]
    else:
        pos, neg = np.flatnonzero(keep & (y_all == 1)), np.flatnonzero(keep & (y_all == 0))
        if pos.size == 0 or neg.size == 0:
            raise ValueError(
                f"task {spec.name!r}: no positive or no negative rows in {spec.data.source_name}"
            )
        n_pos = min(pos.size, round(n_per_task * spec.data.positive_fraction))
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
        ids=tuple(f"{spec.data.source_name}:{int(i)}" for i in pos_all[take]),
        dataset=spec.data.source_name,
        text_kind=spec.text_kind,
        meta={"n_per_task": n_per_task, "seed": seed, "max_chars": max_chars},
    )


def build_suite(
    names: Sequence[str | TaskSpec] | None = None,
    *,
    n_per_task: int = 240,
    seed: int = 0,
    max_chars: int = 200,
    data_dir: str | os.PathLike[str] | Path | None = None,
) -> list[Task]:
    """Build the named tasks (built-in names, task files or TaskSpecs; all built-in tasks by
    default), in the order given."""
    specs = [resolve_task(n, TASKS) for n in (task_names() if names is None else names)]
    seen: set[str] = set()
    for sp in specs:
        if sp.name in seen:
            raise ValueError(f"two tasks are named {sp.name!r}; task names must be unique")
        seen.add(sp.name)
    frames: dict[str, Any] = {}
    return [
        build_task(
            sp,
            n_per_task=n_per_task,
            seed=seed,
            max_chars=max_chars,
            data_dir=data_dir,
            frames=frames,
        )
        for sp in specs
    ]
