"""Stored inputs of the label-efficiency study: per-task model scores and task embeddings.

Model scores live per task as Parquet :class:`~calibkit.Scores` under
``scores_dir/<model>/<task>.parquet`` (scored through the SQLite-cached scoring layer, with any
backend a model spec names, when missing); the task embeddings for SIM-OOT in
``scores_dir/task_embeddings.npz``. Every write is atomic.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit._atomic import atomic_write
from calibkit.experiments.label_efficiency.config import StudyConfig
from calibkit.scores import Scores

__all__ = [
    "check_provenance",
    "few_shot_examples",
    "prompt_template",
    "resolve_tasks",
    "score_tasks",
    "scores_path",
    "task_embedding_matrix",
    "task_fingerprint",
]

#: per-item lists the scorer returns beside the logits; not stored with the task scores
_PER_ITEM_META = ("answer_text", "answer_index", "max_position")


def resolve_tasks(cfg: StudyConfig) -> list[str]:
    """The configured tasks: built-in names and/or task-file paths, in order."""
    from calibkit.experiments.tasks import task_names

    if cfg.tasks == "all":
        return task_names()
    if isinstance(cfg.tasks, str):
        return [t.strip() for t in cfg.tasks.split(",") if t.strip()]
    return [str(t) for t in cfg.tasks]


def task_specs(entries: Sequence[str]) -> list[Any]:
    """TaskSpecs of built-in names / task files (names must be unique)."""
    from calibkit.experiments.tasks import TASKS
    from calibkit.tasks import resolve_task

    specs = [resolve_task(e, TASKS) for e in entries]
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"two tasks are named {dup[0]!r}; task names must be unique")
    return specs


def scores_path(scores_dir: Path, model: str, task: str) -> Path:
    """``scores_dir/<model spec, made a folder name>/<task>.parquet``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    return scores_dir / safe / f"{task}.parquet"


def prompt_template(task: Any, examples: Sequence[tuple[str, str]] = ()) -> Any:
    """The prompt of a task: its question (and the answer words) in the shared system prompt,
    which the backend encodes once and reuses; only ``"<kind>: <text>"`` is per item.

    ``examples`` ((text, class name) pairs, see :func:`few_shot_examples`) become earlier
    user/assistant turns (``few_shot_style="dialogue"``, as the cascade study's few-shot
    labelers); none gives the zero-shot prompt, unchanged (same cache keys as before)."""
    from calibkit.scoring import PromptTemplate

    if len(task.classes) == 2:
        answer = f"Answer {task.classes[0]} or {task.classes[1]}."
    else:
        answer = f"Answer with one of: {', '.join(task.classes)}."
    extra: dict[str, Any] = {}
    if examples:
        extra = {"examples": tuple(examples), "few_shot_style": "dialogue"}
    return PromptTemplate(
        instruction=f"{task.question} {answer} Possible answers:",
        input_template=f"{task.text_kind}: {{text}}",
        answer_instruction="",
        **extra,
    )


def few_shot_examples(
    spec: Any,
    task: Any,
    shots: int,
    *,
    seed: int = 0,
    data_dir: str | None = None,
    frame: Any = None,
) -> list[tuple[str, str]]:
    """``shots`` in-context examples ``(text, class name)`` of a task, drawn (seeded) from its
    dataset *outside* the task's items, by the cascade study's demo draw
    (:func:`calibkit.experiments.cascade._demos`: 2 short texts per class, in a random order);
    the first ``shots`` of them are shown.

    Parameters
    ----------
    spec : TaskSpec of the task (its data source)
    task : the built :class:`calibkit.experiments.tasks.Task` (its ``ids`` are left out)
    shots : 0 .. 2 x number of classes
    seed : the draw's seed (combined with the task name and ``shots``)
    frame : the task's rows (:func:`calibkit.tasks.load_task_frame`), if already loaded
    """
    import zlib

    from calibkit.experiments.cascade import _demos
    from calibkit.experiments.label_efficiency.config import MAX_SHOTS_PER_CLASS
    from calibkit.tasks import load_task_frame

    limit = MAX_SHOTS_PER_CLASS * len(task.classes)
    if not 0 <= int(shots) <= limit:
        raise ValueError(
            f"task {task.name!r}: shots must lie in 0..{limit} (2 examples per class); got {shots}"
        )
    if shots == 0:
        return []
    df = load_task_frame(spec, data_dir=data_dir) if frame is None else frame
    used = {str(i) for i in task.ids}
    source = getattr(getattr(spec, "data", None), "source_name", task.dataset)
    row_ids = df["row"].map(lambda r: f"{source}:{int(r)}")
    text = df["text"].astype(str).str.strip()
    max_chars = int(task.meta.get("max_chars") or 10**9)
    keep = (~row_ids.isin(used)) & (text.str.len() > 0) & (text.str.len() <= max_chars)
    pool = df.assign(text=text)[keep.to_numpy()]
    rng = np.random.default_rng([int(seed), zlib.crc32(task.name.encode()), int(shots)])
    return list(_demos(spec, pool, rng))[: int(shots)]


def task_fingerprint(spec: Any) -> str:
    """Hash of a task's definition (every field; a data file by its content, not its location),
    so that scores and embeddings of an edited task file are not reused."""
    d = spec.to_dict()
    data = d.get("data") or {}
    if data.get("path"):
        h = hashlib.sha256()
        with open(data["path"], "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        data = {**data, "path": h.hexdigest()}
    d["data"] = data
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _provenance(task: Any, model: str, fingerprint: str | None) -> dict[str, Any]:
    return {
        "task": task.name,
        "model": model,
        "shots": 0,
        "question": task.question,
        "n_per_task": task.meta.get("n_per_task"),
        "task_seed": task.meta.get("seed"),
        "max_chars": task.meta.get("max_chars"),
        "task_fingerprint": fingerprint,
    }


def check_provenance(
    scores: Mapping[str, Scores],
    cfg: StudyConfig,
    model: str,
    fingerprints: Mapping[str, str] | None = None,
    labeler: Mapping[str, Any] | None = None,
) -> None:
    """Stored scores must come from the same task subsample as the config describes, from the
    same task definition (:func:`task_fingerprint`, where the stored scores record one) and, for
    a ``labeler`` ``{"model", "shots"}``, from the same model spec and number of in-context
    examples (where the stored scores record them)."""
    want = {"n_per_task": cfg.n_per_task, "task_seed": cfg.task_seed, "max_chars": cfg.max_chars}
    for name, sc in scores.items():
        if labeler is not None:
            got_m, got_k = sc.meta.get("model"), sc.meta.get("shots")
            if got_m is not None and str(got_m) != str(labeler["model"]):
                raise ValueError(
                    f"stored scores of {model}/{name} come from model {got_m!r}, but the labeler "
                    f"is {labeler['model']!r}; use another scores_dir or delete them to rescore"
                )
            if got_k is not None and int(got_k) != int(labeler["shots"]):
                raise ValueError(
                    f"stored scores of {model}/{name} were scored with {got_k} in-context "
                    f"examples, but the labeler has shots={labeler['shots']}; delete them to "
                    "rescore"
                )
        got: dict[str, Any] = {k: sc.meta[k] for k in want if sc.meta.get(k) is not None}
        diff = {k: (v, want[k]) for k, v in got.items() if int(v) != int(want[k])}
        if diff:
            raise ValueError(
                f"stored scores of {model}/{name} were built with "
                + ", ".join(f"{k}={a} (config: {b})" for k, (a, b) in diff.items())
                + "; use another scores_dir or delete them to rescore"
            )
        stored = sc.meta.get("task_fingerprint")
        want_fp = (fingerprints or {}).get(name)
        if stored is not None and want_fp is not None and stored != want_fp:
            raise ValueError(
                f"stored scores of {model}/{name} were made for another version of the task "
                "(its definition or data file changed); delete them to rescore"
            )


def _strip_per_item(sc: Scores) -> Scores:
    """Drop the scorer's per-item answer lists (kept neither in meta nor in per_item)."""
    meta = {k: v for k, v in sc.meta.items() if k not in _PER_ITEM_META}
    per_item = getattr(sc, "per_item", None)
    if isinstance(per_item, Mapping):
        kept = {k: v for k, v in per_item.items() if k not in _PER_ITEM_META}
        return replace(sc, meta=meta, per_item=kept)
    return replace(sc, meta=meta)


def score_tasks(
    tasks: Sequence[Any],
    model: str,
    scores_dir: Path,
    *,
    cache_dir: str | None = None,
    batch_size: int = 16,
    progress: bool = True,
    fingerprints: Mapping[str, str] | None = None,
    labeler: str | None = None,
    examples: Mapping[str, Sequence[tuple[str, str]]] | Callable[[Any], Any] | None = None,
) -> dict[str, Scores]:
    """Score every task with the model spec ``model`` (one forward pass per item, SQLite-cached)
    and store each as ``scores_dir/<labeler or model>/<task>.parquet``; tasks already stored are
    read back, not rescored. ``fingerprints`` (task -> :func:`task_fingerprint`) are stored with
    them. ``examples``: per task (a mapping, or a function of the task called only for tasks
    that are scored) the in-context examples of a few-shot labeler (:func:`few_shot_examples`);
    they are stored in the meta (``shots``, ``examples``)."""
    out: dict[str, Scores] = {}
    todo = []
    folder = labeler or model
    for t in tasks:
        p = scores_path(scores_dir, folder, t.name)
        if p.is_file():
            out[t.name] = Scores.load(p)
        else:
            todo.append(t)
    if not todo:
        return out
    from calibkit.scoring import ClassificationScorer, ScoreCache, default_cache_dir
    from calibkit.scoring.backends import make_backend
    from calibkit.scoring.backends.registry import parse_model_spec

    local = {"cache_dir": cache_dir} if cache_dir and parse_model_spec(model).is_local else {}
    backend = make_backend(model, batch_size=batch_size, **local)
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    with ScoreCache(root / "scores.sqlite") as cache:
        for t in todo:
            if examples is None:
                demos: list[tuple[str, str]] = []
            elif callable(examples):
                demos = list(examples(t))
            else:
                demos = list(examples.get(t.name, ()))
            scorer = ClassificationScorer(
                backend,
                t.classes,
                prompt_template(t, demos),
                mode="next_token",
                cache=cache,
                batch_size=batch_size,
                progress=progress,
            )
            sc = _strip_per_item(scorer.score(list(t.texts), labels=t.labels, ids=list(t.ids)))
            meta = dict(sc.meta)
            meta["backend"] = meta.pop("model", backend.name)
            fp = (fingerprints or {}).get(t.name)
            prov = _provenance(t, model, fp)
            prov.update(shots=len(demos), examples=[list(d) for d in demos], labeler=folder)
            sc = replace(sc, meta={**meta, **prov})
            sc.save(scores_path(scores_dir, folder, t.name))
            out[t.name] = sc
    return out


def _embedding_settings(cfg: StudyConfig) -> str:
    sim = cfg.sim_oot
    return json.dumps(
        {
            "model": sim.get("embedding_model") or "all-MiniLM-L6-v2",
            "w": sim.get("description_weight", 0.5),
            "max_texts": sim.get("max_texts", 64),
            "n_per_task": cfg.n_per_task,
            "task_seed": cfg.task_seed,
        },
        sort_keys=True,
    )


def _save_embeddings(
    path: Path,
    cached: Mapping[str, NDArray[np.float64]],
    settings: str,
    fps: Mapping[str, str],
) -> None:
    keys = sorted(cached)
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            names=np.array(keys),
            emb=np.stack([cached[k] for k in keys]),
            settings=settings,
            fingerprints=np.array([fps.get(k, "") for k in keys]),
        )


def _load_embeddings(
    path: Path, settings: str
) -> tuple[dict[str, NDArray[np.float64]], dict[str, str]]:
    if not path.is_file():
        return {}, {}
    with np.load(path, allow_pickle=False) as z:
        if str(z["settings"]) != settings:
            return {}, {}
        names = [str(n) for n in z["names"]]
        fps = [str(f) for f in z["fingerprints"]] if "fingerprints" in z else [""] * len(names)
        cached = dict(zip(names, z["emb"], strict=True))
    return cached, {n: f for n, f in zip(names, fps, strict=True) if f}


def task_embedding_matrix(
    tasks: Sequence[Any] | Callable[[], Sequence[Any]],
    scores_dir: Path,
    cfg: StudyConfig,
    *,
    need: Sequence[str] | None = None,
    fingerprints: Mapping[str, str] | None = None,
) -> tuple[list[str], NDArray[np.float64]]:
    """Task embeddings ``(T, d)`` for SIM-OOT, cached in ``scores_dir/task_embeddings.npz``.

    ``tasks`` (or a function returning them, called only when some embedding is not cached with
    the same settings) supplies the texts and descriptions to embed. A cached embedding whose
    stored task fingerprint differs from ``fingerprints[task]`` is recomputed.
    """
    from calibkit.selection.embedding import SentenceEmbedder, task_embedding

    sim = cfg.sim_oot
    settings = _embedding_settings(cfg)
    path = scores_dir / "task_embeddings.npz"
    cached, fps = _load_embeddings(path, settings)
    for n, fp in (fingerprints or {}).items():
        if n in fps and fps[n] != fp:
            cached.pop(n, None)
    fps.update(fingerprints or {})
    if need is None:
        tasks = tasks() if callable(tasks) else tasks
        names = [t.name for t in tasks]
    else:
        names = list(need)
    missing = [n for n in names if n not in cached]
    if missing:
        by_name = {t.name: t for t in (tasks() if callable(tasks) else tasks)}
        absent = [n for n in missing if n not in by_name]
        if absent:
            raise ValueError(
                f"no texts to embed tasks {absent}; give data_dir so they can be built"
            )
        embedder = SentenceEmbedder(sim.get("embedding_model"))
        for n in missing:
            t = by_name[n]
            cached[n] = task_embedding(
                t.texts,
                t.description,
                embedder=embedder,
                max_texts=int(sim.get("max_texts", 64)),
                description_weight=float(sim.get("description_weight", 0.5)),
            )
        _save_embeddings(path, cached, settings, fps)
    return names, np.stack([cached[n] for n in names])
