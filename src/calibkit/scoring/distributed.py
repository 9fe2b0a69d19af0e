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

Merging (:func:`rows_to_scores`) keeps everything a single run would: the per-item fields of
every batch (``Scores.per_item``: answer text, parsed answer ...), the run counters of every
batch summed (``n_unparsed``, ``n_filled_missing`` ..., see :data:`calibkit.scores.ADDITIVE_META`)
and, with ``on_error="skip"``, the failed items of every batch in ``meta["failures"]`` with
their row in the input. Batches are told apart by a batch id column, so Ray's re-blocking of
the output does not matter.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any, Literal

import numpy as np

from calibkit.scores import Scores, field_spec, merge_meta, per_item_from_values

__all__ = ["ScoringWorker", "rows_to_scores", "score_with_ray"]

Task = Literal["classify", "mcq"]
OnError = Literal["fail", "skip"]
_ROW = "_calibkit_row"
_BATCH = "_calibkit_batch"
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
        unlabeled text. A missing ``id_column`` uses the row position (in the whole input when
        the batch has the row index column, else in the batch).
    on_error : {"fail", "skip"} or None
        Passed to ``scorer.score(..., on_error=...)`` when given (``None``: not passed, for
        scorers without the argument). With ``"skip"`` the rows the scorer could not score come
        back as failure rows (``failed`` true, reason in ``failure``) instead of stopping the job.

    Notes
    -----
    ``__call__`` maps a batch ``dict[str, np.ndarray]`` of n rows to a dict of n rows with
    columns ``id``, ``logits`` ((n, K) float64 class logits), ``label`` (int64, -1 when
    unlabeled), ``classes``, ``meta`` and ``per_item`` (JSON strings: the batch's meta, the
    row's per-item fields), ``per_item_spec`` (JSON), ``failed`` (bool) and ``failure`` (JSON,
    ``""`` for scored rows), a batch id column and the row index column when present.
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
        on_error: OnError | None = None,
    ):
        if on_error not in (None, "fail", "skip"):
            raise ValueError(f"on_error must be 'fail', 'skip' or None, got {on_error!r}")
        self.on_error = on_error
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
        rows = cols.get(_ROW)
        ids = cols.get(self.id_column)
        if ids is None:  # the row position, in the whole input when known
            ids = [int(r) for r in rows] if rows is not None else list(range(n))
        kw: dict[str, Any] = {} if self.on_error is None else {"on_error": self.on_error}
        failures: list[Any] = []
        try:
            if self.task == "classify":
                if self.text_column not in cols:
                    raise ValueError(
                        f"batch has no text column {self.text_column!r}; columns: {sorted(cols)}"
                    )
                texts = [str(t) for t in cols[self.text_column]]
                labels = None
                if self.label_column is not None and self.label_column in cols:
                    labels = cols[self.label_column]
                scores = self.scorer.score(texts, labels=labels, ids=ids, **kw)
            else:
                scores = self.scorer.score(_mcq_items(cols, n, ids), **kw)
        except ValueError as e:
            listed_by_error = getattr(e, "failures", None)
            if (
                self.on_error != "skip"
                or not isinstance(listed_by_error, list)
                or not listed_by_error
            ):
                raise
            failures = listed_by_error
            scores = None  # every row of the batch failed
        if scores is not None and not isinstance(scores, Scores):
            raise ValueError(f"scorer.score returned {type(scores).__name__}, expected Scores")
        if scores is not None and len(scores) == n:
            return self._rows(scores, n, rows, ok=np.ones(n, dtype=bool), failures={})
        if self.on_error != "skip":
            got = 0 if scores is None else len(scores)
            raise ValueError(f"scorer returned {got} scores for a batch of {n} rows")
        # skip mode: which rows came back, and why the others did not
        listed = failures if scores is None else scores.meta.get("failures") or []
        why = {
            int(f["row"]): str(f.get("reason", "failed"))
            for f in listed
            if isinstance(f, Mapping) and isinstance(f.get("row"), int | np.integer)
        }
        if scores is None:
            ok = np.zeros(n, dtype=bool)
        else:
            keys = [str(i) for i in ids]
            if len(set(keys)) != n:
                raise ValueError(
                    "on_error='skip' needs unique ids within a batch to tell which rows were "
                    f"scored; column {self.id_column!r} repeats values"
                )
            pos = {k: i for i, k in enumerate(keys)}
            back = [pos.get(str(i)) for i in scores.ids]
            if any(b is None for b in back):
                raise ValueError("the scorer returned ids that are not in the batch")
            ok = np.zeros(n, dtype=bool)
            ok[np.asarray(back, dtype=np.int64)] = True
            if not np.array_equal(np.flatnonzero(ok), np.asarray(back)):
                raise ValueError("the scorer returned rows out of input order")
        missing = [i for i in range(n) if not ok[i] and i not in why]
        if missing:
            raise ValueError(
                f"scorer returned {int(ok.sum())} scores for a batch of {n} rows and does not "
                f"say why row {missing[0]} is missing (no entry in meta['failures'])"
            )
        return self._rows(scores, n, rows, ok=ok, failures=why, ids=ids)

    def _rows(
        self,
        scores: Scores | None,
        n: int,
        rows: list[Any] | None,
        *,
        ok: np.ndarray,
        failures: Mapping[int, str],
        ids: list[Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """One output row per input row: the scored ones from ``scores`` (in order), the failed
        ones with a reason."""
        k = 0 if scores is None else scores.n_classes
        if scores is None and ids is None:
            raise AssertionError("ids are needed for failure rows")
        logits = np.zeros((n, max(k, 1)), dtype=np.float64)
        label = np.full(n, -1, dtype=np.int64)
        out_ids: list[Any] = list(ids) if ids is not None else [None] * n
        item_json = ["{}"] * n
        meta_json = json.dumps(
            {} if scores is None else {k2: v for k2, v in scores.meta.items() if k2 != "failures"},
            default=str,
        )
        spec_json = "{}"
        classes_json = "null"
        if scores is not None:
            idx = np.flatnonzero(ok)
            logits = np.zeros((n, k), dtype=np.float64)
            logits[idx] = scores.logits
            if scores.labels is not None:
                label[idx] = scores.labels
            for j, i in enumerate(idx):
                out_ids[i] = scores.ids[j]
            for j, i in enumerate(idx):
                item_json[i] = json.dumps(
                    {name: v[j] for name, v in scores.per_item.items()}, default=_json_default
                )
            spec_json = json.dumps({name: field_spec(v) for name, v in scores.per_item.items()})
            classes_json = json.dumps(list(scores.classes))
        failure = [""] * n
        for pos, reason in failures.items():
            if 0 <= pos < n and not ok[pos]:
                row = int(rows[pos]) if rows is not None else pos
                failure[pos] = json.dumps({"row": row, "id": str(out_ids[pos]), "reason": reason})
        out: dict[str, np.ndarray] = {
            "id": _id_column(out_ids),
            "logits": logits,
            "label": label,
            "classes": np.array([classes_json] * n, dtype=object),
            "meta": np.array([meta_json] * n, dtype=object),
            "per_item": np.array(item_json, dtype=object),
            "per_item_spec": np.array([spec_json] * n, dtype=object),
            "failed": ~ok,
            "failure": np.array(failure, dtype=object),
            _BATCH: np.array([uuid.uuid4().hex] * n, dtype=object),
        }
        if rows is not None:
            out[_ROW] = np.asarray(rows, dtype=np.int64)
        return out


def _json_default(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def _id_column(ids: list[Any]) -> np.ndarray:
    vals = [v.item() if isinstance(v, np.generic) else v for v in ids]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return np.asarray(vals, dtype=np.int64)
    return np.asarray([str(v) for v in vals], dtype=object)


def _as_list(v: Any) -> list[Any]:
    if isinstance(v, np.ndarray):
        return v.tolist() if v.dtype != object else list(v)
    return list(v)


def _mcq_items(cols: Mapping[str, list[Any]], n: int, ids: Sequence[Any]) -> list[Any]:
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
        kw["id"] = str(ids[i])
        items.append(MCQItem(**kw))
    return items


def rows_to_scores(batches: Sequence[Mapping[str, Any]], **meta: Any) -> Scores:
    """Merge :class:`ScoringWorker` outputs into one :class:`Scores` (row order restored).

    Per-item fields are joined across batches; the run counters of the batches'
    ``meta`` (:data:`calibkit.scores.ADDITIVE_META`, e.g. ``n_unparsed``) are summed, each batch
    counted once; failure rows (``on_error="skip"``) are dropped and listed in
    ``meta["failures"]`` (``row`` = row in the input, ``id``, ``reason``), sorted by row.

    Parameters
    ----------
    batches : sequence of dict
        Worker outputs (numpy batches), in any order and blocking.
    **meta
        Added to the merged ``Scores.meta``.
    """
    batches = [b for b in batches if len(b.get("id", ())) > 0]
    if not batches:
        raise ValueError("no scored rows to merge")
    col = {c: [x for b in batches for x in _as_list(b[c])] for c in ("id", "classes", "meta")}
    n = len(col["id"])
    failed = np.asarray([bool(x) for b in batches for x in _column(b, "failed", False)])
    failure = [x for b in batches for x in _column(b, "failure", "")]
    per_item_rows = [x for b in batches for x in _column(b, "per_item", "{}")]
    specs = [x for b in batches for x in _column(b, "per_item_spec", "{}")]
    batch_ids = [x for j, b in enumerate(batches) for x in _column(b, _BATCH, f"part{j}")]
    rows = (
        np.concatenate([np.asarray(b[_ROW], dtype=np.int64) for b in batches])
        if all(_ROW in b for b in batches)
        else None
    )
    order = np.argsort(rows, kind="stable") if rows is not None else np.arange(n)
    ok_idx = [int(i) for i in order if not failed[i]]
    fail_idx = [int(i) for i in order if failed[i]]
    failures = [json.loads(failure[i]) for i in fail_idx if failure[i]]
    if not ok_idx:
        first = failures[0] if failures else {"row": "?", "id": "?", "reason": "unknown"}
        raise ValueError(
            f"no scored rows to merge: all {n} items failed (first: item {first['row']}, id "
            f"{first['id']!r}: {first['reason']})"
        )
    classes_set = {col["classes"][i] for i in ok_idx}
    if len(classes_set) != 1:
        raise ValueError(f"workers disagree on the classes: {sorted(classes_set)}")
    classes_json = next(iter(classes_set))
    k = len(json.loads(classes_json))
    logits = _logits(batches, k)
    labels = np.concatenate([np.asarray(b["label"], dtype=np.int64) for b in batches])
    ids = np.asarray(col["id"], dtype=object)
    sel = np.asarray(ok_idx, dtype=np.int64)
    logits, labels, ids = logits[sel], labels[sel], ids[sel]
    if (labels < 0).any() and not (labels < 0).all():
        raise ValueError("some rows are labeled and some are not")
    # run-level meta: each batch once, in input order of its first row
    seen: dict[str, int] = {}
    for i in ok_idx:
        seen.setdefault(batch_ids[i], i)
    metas = [json.loads(col["meta"][i]) for i in sorted(seen.values())]
    merged_meta = merge_meta(metas)
    if failures or any("failures" in m for m in metas):
        merged_meta["failures"] = failures
    merged_meta.update(meta)
    return Scores(
        logits=logits,
        labels=None if (labels < 0).all() else labels,
        classes=tuple(json.loads(classes_json)),
        ids=_tidy_ids(ids),
        meta=merged_meta,
        per_item=_merge_per_item([per_item_rows[i] for i in ok_idx], [specs[i] for i in ok_idx]),
    )


def _column(b: Mapping[str, Any], name: str, default: Any) -> list[Any]:
    """Column ``name`` of a worker batch; ``default`` per row for outputs of older workers."""
    return _as_list(b[name]) if name in b else [default] * len(b["id"])


def _logits(batches: Sequence[Mapping[str, Any]], k: int) -> np.ndarray:
    """``(n, K)`` logits of all batches (a batch whose rows all failed has placeholder width)."""
    parts = []
    for b in batches:
        a = np.asarray(b["logits"], dtype=np.float64).reshape(len(b["id"]), -1)
        parts.append(a if a.shape[1] == k else np.zeros((a.shape[0], k)))
    return np.concatenate(parts)


def _merge_per_item(rows: list[str], specs: list[str]) -> dict[str, np.ndarray]:
    """Per-item arrays from per-row JSON objects; every row must have the same names."""
    decoded = [json.loads(r) for r in rows]
    spec_by_row = [json.loads(s) for s in specs]
    names = set(decoded[0])
    for d in decoded[1:]:
        if set(d) != names:
            raise ValueError(
                f"workers disagree on the per-item fields: {sorted(names)} vs {sorted(d)}"
            )
    out: dict[str, np.ndarray] = {}
    for name in sorted(names, key=list(decoded[0]).index):
        kinds = {json.dumps(sp.get(name), sort_keys=True) for sp in spec_by_row}
        spec = json.loads(next(iter(kinds))) if len(kinds) == 1 else {"kind": "json"}
        out[name] = per_item_from_values([d[name] for d in decoded], spec, f"per-item {name!r}")
    return out


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
    on_error: OnError | None = None,
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
    on_error : {"fail", "skip"} or None
        Passed to each scorer's ``score`` (see :class:`ScoringWorker`); with ``"skip"`` the
        result holds the scored rows and ``meta["failures"]`` the others (row in ``data``, id,
        reason). ``None`` (default) does not pass it.
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
    if on_error not in (None, "fail", "skip"):
        raise ValueError(f"on_error must be 'fail', 'skip' or None, got {on_error!r}")
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
            "on_error": on_error,
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
