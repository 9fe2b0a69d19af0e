"""Spread scoring over many GPUs or machines with Ray Data (see ``docs/scale.md``).

calibkit does not ship a scheduler of its own. Two routes scale with existing engines:

1. **Ray Data** (:func:`score_with_ray`): the rows become a ``ray.data.Dataset``;
   ``map_batches`` runs :class:`ScoringWorker`, a callable class, on a fixed pool of actors
   (one per GPU with ``num_gpus_per_worker=1``). Each actor calls ``make_scorer()`` once, so the
   model is loaded once per actor, not per batch. Results come back as one :class:`Scores` in
   input order.
2. **A vLLM server behind the HTTP backend**: ``vllm serve MODEL --max-logprobs 20`` (with
   ``--tensor-parallel-size`` / ``--data-parallel-size`` for many GPUs), then score with
   :class:`~calibkit.scoring.backends.openai_http.OpenAICompatibleBackend`; its thread pool keeps
   the server's continuous batching busy. Both routes combine: Ray actors whose scorers talk to
   several vLLM replicas.

``make_scorer`` is any picklable zero-argument callable (a module-level function or a
``functools.partial``) returning an object with ``score(...) -> Scores``: for
``task="classify"`` it is called as ``score(texts, labels=labels, ids=ids)`` (the signature of
``calibkit.scoring.ClassificationScorer.score``); for ``task="mcq"`` as ``score(items)`` with
:class:`calibkit.datasets.MCQItem` items built from the columns ``question``, ``choices``,
``answer``, ``subject``, ``id`` (the multiple-choice JSONL format). Give each actor its own
:class:`~calibkit.scoring.cache.ScoreCache` inside ``make_scorer`` (SQLite on a local disk; WAL
does not work over network file systems) so a restarted job skips finished items.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any, Literal

import numpy as np

from calibkit.scores import Scores

__all__ = ["ScoringWorker", "rows_to_scores", "score_with_ray"]

Task = Literal["classify", "mcq"]
_ROW = "_calibkit_row"
_RAY_EXTRA = "pip install 'calibkit[scale]'  (ray[data])"


class ScoringWorker:
    """Callable class for ``ray.data.Dataset.map_batches``: one scorer per actor.

    Parameters
    ----------
    make_scorer : callable
        Zero-argument factory called once in the actor (load the model here).
    task : {"classify", "mcq"}
        How a batch becomes the scorer's input (see the module docstring).
    text_column, label_column, id_column : str or None
        Columns of a classification batch; ``label_column=None`` or a missing column scores
        unlabeled text. A missing ``id_column`` uses the row position.

    Notes
    -----
    ``__call__`` maps a batch ``dict[str, np.ndarray]`` of n rows to a dict of n rows with
    columns ``id``, ``logits`` ((n, K) float64 class logits), ``label`` (int64, -1 when
    unlabeled), ``classes`` and ``meta`` (JSON strings), and the row index column when present.
    It is a plain class, usable without Ray.
    """

    def __init__(
        self,
        make_scorer: Callable[[], Any],
        *,
        task: Task = "classify",
        text_column: str = "text",
        label_column: str | None = "label",
        id_column: str = "id",
    ):
        if not callable(make_scorer):
            raise ValueError("make_scorer must be a zero-argument callable returning a scorer")
        if task not in ("classify", "mcq"):
            raise ValueError(f"task must be 'classify' or 'mcq', got {task!r}")
        self.task = task
        self.text_column = text_column
        self.label_column = label_column
        self.id_column = id_column
        self.scorer = make_scorer()
        if not callable(getattr(self.scorer, "score", None)):
            raise ValueError(
                f"make_scorer() returned {type(self.scorer).__name__}, which has no score() method"
            )

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        cols = {k: _as_list(v) for k, v in batch.items()}
        n = len(next(iter(cols.values()))) if cols else 0
        ids = cols.get(self.id_column)
        if self.task == "classify":
            if self.text_column not in cols:
                raise ValueError(
                    f"batch has no text column {self.text_column!r}; columns: {sorted(cols)}"
                )
            texts = [str(t) for t in cols[self.text_column]]
            labels = None
            if self.label_column is not None and self.label_column in cols:
                labels = cols[self.label_column]
            scores = self.scorer.score(texts, labels=labels, ids=ids)
        else:
            scores = self.scorer.score(_mcq_items(cols, n, self.id_column))
        if not isinstance(scores, Scores):
            raise ValueError(f"scorer.score returned {type(scores).__name__}, expected Scores")
        if len(scores) != n:
            raise ValueError(f"scorer returned {len(scores)} scores for a batch of {n} rows")
        out: dict[str, np.ndarray] = {
            "id": np.asarray(scores.ids),
            "logits": np.asarray(scores.logits, dtype=np.float64),
            "label": (
                np.full(n, -1, dtype=np.int64)
                if scores.labels is None
                else np.asarray(scores.labels, dtype=np.int64)
            ),
            "classes": np.array([json.dumps(list(scores.classes))] * n, dtype=object),
            "meta": np.array([json.dumps(dict(scores.meta), default=str)] * n, dtype=object),
        }
        if _ROW in cols:
            out[_ROW] = np.asarray(cols[_ROW], dtype=np.int64)
        return out


def _as_list(v: Any) -> list[Any]:
    if isinstance(v, np.ndarray):
        return v.tolist() if v.dtype != object else list(v)
    return list(v)


def _mcq_items(cols: Mapping[str, list[Any]], n: int, id_column: str) -> list[Any]:
    from calibkit.datasets import MCQItem

    for c in ("question", "choices", "answer"):
        if c not in cols:
            raise ValueError(f"mcq batch has no {c!r} column; columns: {sorted(cols)}")
    items = []
    for i in range(n):
        kw: dict[str, Any] = {
            "question": str(cols["question"][i]),
            "choices": [str(c) for c in _as_list(cols["choices"][i])],
            "answer": int(cols["answer"][i]),
        }
        if "subject" in cols:
            kw["subject"] = str(cols["subject"][i])
        kw["id"] = str(cols[id_column][i]) if id_column in cols else str(i)
        items.append(MCQItem(**kw))
    return items


def rows_to_scores(batches: Sequence[Mapping[str, Any]], **meta: Any) -> Scores:
    """Merge :class:`ScoringWorker` outputs into one :class:`Scores` (row order restored).

    Parameters
    ----------
    batches : sequence of dict
        Worker outputs (numpy batches), in any order.
    **meta
        Added to the merged ``Scores.meta``.
    """
    batches = [b for b in batches if len(b.get("id", ())) > 0]
    if not batches:
        raise ValueError("no scored rows to merge")
    classes_set = {c for b in batches for c in _as_list(b["classes"])}
    if len(classes_set) != 1:
        raise ValueError(f"workers disagree on the classes: {sorted(classes_set)}")
    k = len(json.loads(next(iter(classes_set))))
    logits = np.concatenate(
        [np.asarray(b["logits"], dtype=np.float64).reshape(-1, k) for b in batches]
    )
    labels = np.concatenate([np.asarray(b["label"], dtype=np.int64) for b in batches])
    ids = np.concatenate([np.asarray(_as_list(b["id"]), dtype=object) for b in batches])
    if all(_ROW in b for b in batches):
        order = np.argsort(np.concatenate([np.asarray(b[_ROW]) for b in batches]), kind="stable")
        logits, labels, ids = logits[order], labels[order], ids[order]
    if (labels < 0).any() and not (labels < 0).all():
        raise ValueError("some rows are labeled and some are not")
    ids_arr = _tidy_ids(ids)
    merged_meta = dict(json.loads(_as_list(batches[0]["meta"])[0]))
    merged_meta.update(meta)
    return Scores(
        logits=logits,
        labels=None if (labels < 0).all() else labels,
        classes=tuple(json.loads(next(iter(classes_set)))),
        ids=ids_arr,
        meta=merged_meta,
    )


def _tidy_ids(ids: np.ndarray) -> np.ndarray:
    vals = list(ids)
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in vals):
        return np.asarray(vals, dtype=np.int64)
    return np.asarray([str(v) for v in vals], dtype=object)


def score_with_ray(
    data: Any,
    make_scorer: Callable[[], Any],
    *,
    task: Task = "classify",
    num_workers: int = 1,
    num_gpus_per_worker: float = 0.0,
    num_cpus_per_worker: float = 1.0,
    batch_size: int = 64,
    text_column: str = "text",
    label_column: str | None = "label",
    id_column: str = "id",
    ray_init_kwargs: Mapping[str, Any] | None = None,
) -> Scores:
    """Score ``data`` on a pool of Ray actors and return the merged :class:`Scores`.

    Parameters
    ----------
    data : pandas.DataFrame, sequence of dict, or ray.data.Dataset
        Rows to score (see :class:`ScoringWorker` for the columns).
    make_scorer : callable
        Picklable zero-argument factory run once per actor.
    task : {"classify", "mcq"}
    num_workers : int
        Actors (fixed pool). With ``num_gpus_per_worker=1``, one per GPU of the cluster.
    num_gpus_per_worker, num_cpus_per_worker : float
        Resources Ray reserves for each actor.
    batch_size : int
        Rows per ``map_batches`` call (and per scorer call).
    ray_init_kwargs : mapping or None
        Passed to ``ray.init`` if Ray is not initialised yet (e.g. ``{"address": "auto"}`` to
        join a cluster); a Ray runtime started here is left running for later calls.

    Returns
    -------
    Scores
        One row per input row, in input order for a DataFrame or a sequence of dicts (a
        ``ray.data.Dataset`` keeps Ray's output order; join on ``ids``).
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be an int >= 1, got {num_workers!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if num_gpus_per_worker < 0 or num_cpus_per_worker < 0:
        raise ValueError("num_gpus_per_worker and num_cpus_per_worker must be >= 0")
    if task not in ("classify", "mcq"):
        raise ValueError(f"task must be 'classify' or 'mcq', got {task!r}")
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise ImportError(f"score_with_ray needs Ray Data: {_RAY_EXTRA}") from e

    if not ray.is_initialized():
        ray.init(**dict(ray_init_kwargs or {}))
    ds = _to_dataset(data, ray, n_blocks_hint=4 * num_workers, batch_size=batch_size)
    out = ds.map_batches(
        ScoringWorker,
        fn_constructor_kwargs={
            "make_scorer": make_scorer,
            "task": task,
            "text_column": text_column,
            "label_column": label_column,
            "id_column": id_column,
        },
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_gpus=num_gpus_per_worker or None,
        num_cpus=num_cpus_per_worker,
        batch_size=batch_size,
        batch_format="numpy",
    )
    batches = list(out.iter_batches(batch_format="numpy", batch_size=None))
    return rows_to_scores(batches, distributed="ray", num_workers=num_workers)


def _to_dataset(data: Any, ray: Any, *, n_blocks_hint: int, batch_size: int) -> Any:
    if isinstance(data, ray.data.Dataset):
        return data
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        df = data.reset_index(drop=True)
    elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
        if not all(isinstance(r, Mapping) for r in data):
            raise ValueError("data must be a DataFrame, a sequence of dicts or a ray Dataset")
        df = pd.DataFrame([dict(r) for r in data])
    else:
        raise ValueError(
            f"data must be a DataFrame, a sequence of dicts or a ray Dataset, got {type(data).__name__}"
        )
    if len(df) == 0:
        raise ValueError("data has no rows")
    if _ROW in df.columns:
        raise ValueError(f"column name {_ROW!r} is reserved")
    df = df.assign(**{_ROW: np.arange(len(df), dtype=np.int64)})
    # Several blocks, so every actor of the pool gets work (one block feeds one actor at a time).
    n_blocks = max(1, min(-(-len(df) // batch_size), n_blocks_hint))
    bounds = np.linspace(0, len(df), n_blocks + 1).astype(int)
    return ray.data.from_pandas([df.iloc[a:b] for a, b in pairwise(bounds)])
