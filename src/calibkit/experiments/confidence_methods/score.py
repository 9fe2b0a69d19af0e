"""Scoring stage of the confidence-methods study: each (task, model, estimator variant) once, to a
Scores file.

Items: a seeded permutation of the task's test split (all rows where the dataset has no split);
a run with ``n`` items takes its first ``n``, so a run with fewer items is a subset of one with
more (same items for every estimator and model). Zero-shot default templates; MCQ tasks go
through :func:`calibkit.scoring.confidence.mcq.mcq_as_classification`.

A fixture ``<task>__<model>__<variant>.parquet`` holds the scored items only (``ids`` = positions
in the task's item pool, ``labels`` as the estimator gives them, ``per_item["gold"]`` = the gold
class index) and in ``meta``: ``study`` = ``{task, model, variant, estimator, options, n_items,
item_ids, failed_ids, seconds, ...}`` besides the estimator's own meta (cost, failures ...).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CASCADE_N_PER_TASK",
    "TASKS",
    "VARIANTS",
    "NothingScored",
    "StudyTask",
    "few_shot_template",
    "load_task",
    "parse_model",
    "score_one",
    "with_shots",
]

#: items per task of the cascade study's draw (``calibkit experiment cascade --n-per-task``'s
#: default): its demo draw depends on it, so the few-shot labelers here show the very examples
#: the cascade's ``gemma3-fs``/``smollm2-fs`` labelers show
CASCADE_N_PER_TASK = 300

#: variant name -> (estimator name, options)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "logits": ("logits", {}),
    "ptrue": ("ptrue", {}),
    "verbalized": ("verbalized", {"style": "one-stage"}),
    "verbalized-2s": ("verbalized", {"style": "two-stage"}),
    "verbalized-topk": ("verbalized", {"style": "top-k"}),
    "consistency": ("consistency", {"n": 5, "temperature": 0.7, "seed": 0}),
}

#: task name -> (kind, dataset, label column); classification tasks read ``split == "test"``
#: when the dataset has a test split. trec's classes are its readable coarse names.
TASKS: dict[str, tuple[str, str, str]] = {
    "sst2": ("classification", "sst2", "label"),
    "cr": ("classification", "cr", "label"),
    "subj": ("classification", "subj", "label"),
    "trec": ("classification", "trec", "label_name"),
    "arc_easy": ("mcq", "arc_easy", ""),
}


@dataclass(frozen=True)
class StudyTask:
    """The first ``n`` items of a task's seeded item order.

    ``texts``/``labels`` (n,), ``classes`` (K,), ``template`` (None: the default zero-shot one),
    ``ids`` (n,) int positions in the task's pool (the same item has the same id for any ``n``).
    """

    name: str
    texts: list[str]
    labels: list[str]
    classes: tuple[str, ...]
    template: Any
    ids: np.ndarray


def load_task(name: str, n: int, seed: int = 0) -> StudyTask:
    """The first ``n`` items of task ``name`` in the order of a permutation seeded by ``seed``."""
    if name not in TASKS:
        raise ValueError(f"unknown study task {name!r}; choose from {sorted(TASKS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 4:
        raise ValueError(f"n must be an int >= 4, got {n!r}")
    kind, dataset, col = TASKS[name]
    if kind == "mcq":
        from calibkit.datasets import load_mcq
        from calibkit.scoring.confidence.mcq import mcq_as_classification

        pool_items = [it for it in load_mcq(dataset, split="test") if len(it.choices) == 4]
        m = mcq_as_classification(pool_items)
        texts, labels, classes, template = m.texts, m.labels, m.classes, m.template
    else:
        from calibkit.datasets import load_classification

        df = load_classification(dataset)
        if "split" in df.columns and (df["split"] == "test").any():
            df = df[df["split"] == "test"]
        texts = [str(t) for t in df["text"]]
        labels = [str(v) for v in df[col]]
        classes = tuple(sorted(set(labels)))
        template = None
    order = np.random.default_rng(seed).permutation(len(texts))[: min(n, len(texts))]
    return StudyTask(
        name,
        [texts[i] for i in order],
        [labels[i] for i in order],
        classes,
        template,
        order.astype(np.int64),
    )


@dataclass(frozen=True)
class NothingScored:
    """A run in which no item got a confidence: ``study`` is the fixture's ``meta["study"]``
    plus ``failures``; :meth:`save` writes it as ``<fixture>.json`` (read by the analysis as a
    row with coverage 0)."""

    study: dict[str, Any]

    def save(self, path: Path) -> Path:
        import json

        from calibkit._atomic import atomic_write_text

        out = Path(path).with_suffix(".json")
        atomic_write_text(out, json.dumps({"nothing_scored": self.study}, indent=1))
        return out


def parse_model(spec: str) -> tuple[str, int]:
    """``"<model spec>@<shots>"`` -> (model spec, shots); a spec without ``@`` is zero-shot.

    ``shots`` in-context examples (0 .. 2 x classes) are drawn as the cascade study draws them
    (:func:`few_shot_template`)."""
    base, sep, tail = spec.rpartition("@")
    if not sep:
        return spec, 0
    if not base or not tail.isdigit():
        raise ValueError(f"--models: {spec!r}: expected <model spec>@<number of shots>")
    return base, int(tail)


def model_label(name: str, shots: int) -> str:
    """The model's label in fixture names and tables: ``name``, or ``name-<shots>shot``."""
    return name if shots == 0 else f"{name}-{shots}shot"


def few_shot_template(task: str, shots: int, seed: int = 0) -> Any:
    """The cascade study's ``shots``-shot prompt of ``task`` (sst2, cr, subj).

    The examples are those of :func:`calibkit.experiments.cascade.sample_items` (``n_per_task``
    :data:`CASCADE_N_PER_TASK`, ``seed``), the template that of
    :func:`calibkit.experiments.cascade.make_scorer` (its instruction, class descriptions and
    the examples as earlier dialogue turns): the same prompts as the cascade's few-shot labelers.
    """
    from calibkit.experiments import cascade

    if task not in cascade.TASKS:
        raise ValueError(
            f"task {task!r}: few-shot prompts exist only for the cascade study's tasks "
            f"{sorted(cascade.TASKS)}"
        )
    _, _, _, demos = cascade.sample_items(task, CASCADE_N_PER_TASK, seed, None)
    scorer = cascade.make_scorer(task, int(shots), None, demos, None)  # builds no model
    return scorer.template


def with_shots(task: StudyTask, shots: int, seed: int = 0) -> StudyTask:
    """``task`` with the cascade's ``shots``-shot template (``shots == 0``: ``task`` unchanged).

    Raises ValueError when an in-context example is also one of the task's items."""
    if shots == 0:
        return task
    if shots < 0:
        raise ValueError(f"task {task.name!r}: shots must be >= 0, got {shots}")
    tpl = few_shot_template(task.name, shots, seed)
    if tuple(tpl.check_classes(task.classes)) != task.classes:
        raise ValueError(f"task {task.name!r}: cascade classes differ from {task.classes}")
    shown = {t.strip() for t, _ in tpl.examples}
    dup = [int(i) for t, i in zip(task.texts, task.ids, strict=True) if t.strip() in shown]
    if dup:
        raise ValueError(f"task {task.name!r}: items {dup} are also in-context examples")
    return StudyTask(task.name, task.texts, task.labels, task.classes, tpl, task.ids)


def fixture_path(folder: Path, task: str, model: str, variant: str) -> Path:
    safe = model.replace("/", "_").replace(":", "_")
    return folder / f"{task}__{safe}__{variant}.parquet"


def score_one(
    backend: Any,
    task: StudyTask,
    variant: str,
    *,
    model: str,
    cache: str | None,
    options: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> Any:
    """Score ``task`` with one estimator variant (``on_error="skip"``: failed items are left out
    and listed); returns the Scores with ``per_item["gold"]`` and ``meta["study"]``, or
    :class:`NothingScored` when every item failed."""
    from calibkit.scores import Scores
    from calibkit.scoring._runner import ItemsFailed
    from calibkit.scoring.confidence import ESTIMATORS

    if variant not in VARIANTS:
        raise ValueError(f"unknown estimator variant {variant!r}; choose from {sorted(VARIANTS)}")
    est_name, opts = VARIANTS[variant]
    opts = {**opts, **(options or {})}
    est = ESTIMATORS[est_name](
        backend,
        list(task.classes),
        task.template,
        cache=cache,
        batch_size=batch_size,
        progress=progress,
        **opts,
    )
    t0 = time.perf_counter()
    try:
        s = est.score(task.texts, task.labels, ids=task.ids, on_error="skip")
    except ItemsFailed as e:
        if len(e.failures) != len(task.texts):
            raise
        # not one item scored: no Scores, but the run is a result (coverage 0), so say so
        return NothingScored(
            {
                "task": task.name,
                "model": model,
                "variant": variant,
                "estimator": est_name,
                "options": opts,
                "n_items": len(task.texts),
                "item_ids": [int(v) for v in task.ids],
                "failed_ids": [int(task.ids[int(f["row"])]) for f in e.failures],
                "failures": [dict(f) for f in e.failures],
                "seconds": time.perf_counter() - t0,
            }
        )
    seconds = time.perf_counter() - t0
    index = {c: i for i, c in enumerate(task.classes)}
    pos = {int(v): i for i, v in enumerate(task.ids)}
    gold = np.asarray([index[task.labels[pos[int(i)]]] for i in s.ids], dtype=np.int64)
    failed = [int(task.ids[int(f["row"])]) for f in s.meta.get("failures", [])]
    study = {
        "task": task.name,
        "model": model,
        "variant": variant,
        "estimator": est_name,
        "options": opts,
        "task_classes": list(task.classes),
        "n_items": len(task.texts),
        "item_ids": [int(v) for v in task.ids],
        "failed_ids": failed,
        "seconds": seconds,
        "last_run": dict(est.last_run),
    }
    if task.template is not None and task.template.examples:
        study["shots"] = len(task.template.examples)
        study["examples"] = [list(e) for e in task.template.examples]
    return Scores(
        s.logits,
        s.labels,
        s.classes,
        s.ids,
        {**s.meta, "study": study},
        {**s.per_item, "gold": gold},
    )
