"""Paper 001, Table 3 on real models and data: weighted vote vs the cost-aware cascade.

Six built-in labelers score binary tasks from ``../shared/data`` (SST-2, CR, SUBJ) in
one-forward-pass (``next_token``) mode:

* ``smollm2-zs`` / ``smollm2-fs`` / ``smollm2-fs8``: SmolLM2-135M-Instruct, zero-shot, 4 and 8
  in-context examples;
* ``gemma3-zs`` / ``gemma3-fs`` / ``gemma3-fs8``: Gemma 3 270M (base), likewise.

The examples are short texts from the task's demo split, 2 then 4 per class (the 4-shot prompts
are the first 4 of the 8). Any model spec can join or replace them (``--model NAME=SPEC``, e.g.
an OpenAI-compatible server ``big=openai:http://host:8000/v1::Qwen/Qwen2.5-7B-Instruct``), and
any binary task file (``--tasks my_task.yaml``, see :mod:`calibkit.tasks`) can join or replace
the built-in tasks.

Cost of an item (``--cost``) is by default its forward FLOPs as executed: ``2 x (params -
embedding params) x prompt tokens + 2 x hidden x vocab`` (logits at one position), counting every
prompt token as an API bills it; ``flops2n`` (``2 x params x tokens``) and the wall-clock seconds
measured here are stored too (a model without local weights has no FLOPs count: ``--cost auto``
then falls back to seconds, with a warning). Models enter the cascade cheapest first. The
analysis first reports every labeler's AUROC (DeLong 95 % CI) per task; ``--select signal``
keeps only the labelers whose interval lies above 0.5 on every task. Each repeat splits the
merged items (stratified by task and label) into a calibration part (vector scaling by default,
or temperature scaling, per model and task), a dev part (edge search: Optuna TPE, mean F1 over
10 80/20 splits, bins per model tried in ``--bins`` and picked on dev; Algorithm 1 on all of
dev) and a test part (every row of the table, beside always-positive and majority-class
baselines). Results are mean, std and 2.5-97.5 % range over ``--repeats`` splits, with paired
Wilcoxon / sign tests of the cascade against the weighted vote and of calibrated against
uncalibrated policies.

Stages:

* ``score``: runs the models (every item goes through the SQLite score cache, so a rerun costs
  nothing) and writes one Scores file per task and model to ``--fixtures``.
* ``analyze`` (:mod:`calibkit.experiments.cascade_analysis`): reads those files and writes
  ``cascade_table.md``, ``cascade_rows.json`` and ``cascade_frontier.png`` to ``--out``.

Regenerate the committed fixtures and the tables in ``docs/cascade.md``::

    calibkit experiment cascade --stage score --fixtures tests/fixtures/ensemble
    calibkit experiment cascade --stage analyze --models gemma3-zs,gemma3-fs,gemma3-fs8 \\
        --select signal --repeats 20 --bins 2 3 5 --trials 150 --out results/cascade
    calibkit experiment cascade --stage analyze --select signal --repeats 20 --bins 2 3 5 \\
        --trials 150 --out results/cascade_signal
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from calibkit.ensemble._io import atomic_savefig, atomic_write_text
from calibkit.experiments.cascade_analysis import (
    Merged,
    analyze,
    available_costs,
    load_fixtures,
    summary_table,
)
from calibkit.scores import Scores
from calibkit.tasks import DataSource, TaskSpec, load_task_frame, resolve_task

__all__ = [
    "MODELS",
    "TASKS",
    "Merged",
    "add_arguments",
    "analyze",
    "load_fixtures",
    "make_scorer",
    "parse_models",
    "run",
    "sample_items",
    "score",
    "summary_table",
]

TASKS: dict[str, TaskSpec] = {
    "sst2": TaskSpec(
        "sst2",
        ("negative", "positive"),
        instruction="Classify the sentiment of a movie review sentence as one of: {classes}.",
        data=DataSource(dataset="sst2", eval_split="test", demo_split="train"),
    ),
    "cr": TaskSpec(
        "cr",
        ("negative", "positive"),
        instruction="Classify the sentiment of a product review sentence as one of: {classes}.",
        data=DataSource(dataset="cr", eval_split="test", demo_split="train"),
    ),
    "subj": TaskSpec(
        "subj",
        ("objective", "subjective"),
        {
            "objective": "a factual statement such as a plot description",
            "subjective": "an opinion or a judgement",
        },
        instruction="Classify a movie-related sentence as one of: {classes}.",
        data=DataSource(dataset="subj"),  # no official split: sample from everything
    ),
}

#: built-in labelers: name -> model spec and in-context examples
MODELS: dict[str, dict[str, Any]] = {
    "smollm2-zs": {"model": "smollm2", "shots": 0},
    "gemma3-zs": {"model": "gemma3-270m", "shots": 0},
    "smollm2-fs": {"model": "smollm2", "shots": 4},
    "gemma3-fs": {"model": "gemma3-270m", "shots": 4},
    "gemma3-fs8": {"model": "gemma3-270m", "shots": 8},
    "smollm2-fs8": {"model": "smollm2", "shots": 8},
}

PAPER_TABLE3 = """| policy (paper 001, Table 3) | F1 | prec. | recall | cost |
|---|---|---|---|---|
| Llama2-7B alone | F | P | R | X |
| Weighted maj. vote (uncal.) | 1.023F | 1.002P | 1.034R | 7X |
| Weighted maj. vote (cal.) | 1.046F | 1.012P | 1.066R | 7X |
| Cascading (uncal.) | 1.016F | 0.998P | 1.025R | 1.9X |
| Cascading (cal.) | 1.058F | 1.035P | 1.068R | 3.2X |"""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", choices=["score", "analyze", "all"], default="all")
    parser.add_argument(
        "--tasks",
        default="sst2,cr,subj",
        help="comma-separated built-in tasks and/or binary task files (.yaml/.yml/.json)",
    )
    parser.add_argument(
        "--models",
        default=None,
        help=f"comma-separated built-in labelers ({', '.join(MODELS)}); default: all of them "
        "unless --model is given",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]SPEC",
        help="a labeler from any model spec (repeatable), e.g. "
        "big=openai:http://host:8000/v1::my-model?api_key_env=MY_KEY",
    )
    parser.add_argument("--shots", type=int, default=0, help="in-context examples of --model")
    parser.add_argument("--n-per-task", type=int, default=300, help="items per task (balanced)")
    parser.add_argument(
        "--fixtures",
        default="tests/fixtures/ensemble",
        help="folder of the Scores files (written by score, read by analyze)",
    )
    parser.add_argument("--out", default="results/cascade", help="analysis output folder")
    parser.add_argument("--data-dir", help="datasets folder (default ../shared/data)")
    parser.add_argument(
        "--cache", help="SQLite score cache (default <calibkit cache>/scores.sqlite)"
    )
    parser.add_argument("--time-items", type=int, default=48, help="items timed without cache")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for scoring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="random cal/dev/test splits")
    parser.add_argument("--cal-frac", type=float, default=0.2)
    parser.add_argument("--test-frac", type=float, default=0.3)
    parser.add_argument("--calibrator", choices=["temperature", "vector"], default="vector")
    parser.add_argument(
        "--bins",
        type=int,
        nargs="+",
        default=[2, 3, 5, 10],
        help="bins per model tried (paper: 5 and 10); the best on dev is reported",
    )
    parser.add_argument(
        "--select",
        choices=["all", "signal"],
        default="all",
        help="labelers in the cascade: all given (a warning names those without signal), or "
        "only those whose AUROC 95%% CI lies above 0.5 on every task",
    )
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument(
        "--cost",
        choices=["auto", "flops", "flops2n", "seconds"],
        default="auto",
        help="forward FLOPs as executed, 2 x params x prompt tokens, or measured seconds; auto: "
        "flops when every model has local weights, else seconds",
    )


def _spec_name(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec).strip("_")[:80] or "model"


def parse_models(
    keys: str | None, extra: list[str] | tuple[str, ...] = (), shots: int = 0
) -> dict[str, dict[str, Any]]:
    """Labelers by name -> ``{"model": spec, "shots": n}``: built-in ``keys`` (comma-separated;
    all built-ins when None and no ``extra``) plus ``extra`` entries ``[NAME=]SPEC``."""
    if shots < 0:
        raise ValueError(f"--shots must be >= 0; got {shots}")
    if keys is None:
        keys = "" if extra else ",".join(MODELS)
    out: dict[str, dict[str, Any]] = {}
    for k in (k.strip() for k in keys.split(",") if k.strip()):
        if k not in MODELS:
            raise ValueError(f"unknown model key {k!r}; known: {sorted(MODELS)} (or use --model)")
        out[k] = dict(MODELS[k])
    for entry in extra:
        name, eq, spec = entry.partition("=")
        if not eq or not _NAME.match(name):
            name, spec = _spec_name(entry), entry
        if name in out:
            raise ValueError(f"two labelers are named {name!r}")
        out[name] = {"model": spec, "shots": shots}
    if not out:
        raise ValueError("no labelers: give --models and/or --model")
    return out


def _task_specs(text: str) -> list[TaskSpec]:
    specs = [resolve_task(t.strip(), TASKS) for t in text.split(",") if t.strip()]
    for sp in specs:
        if not sp.is_binary:
            raise ValueError(f"task {sp.name!r}: the cascade study is binary; got {sp.classes}")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique; got {names}")
    return specs


def run(args: argparse.Namespace) -> int:
    specs = _task_specs(args.tasks)
    models = parse_models(args.models, args.model, args.shots)
    tasks = [s.name for s in specs]
    if args.stage in ("score", "all"):
        score(
            specs,
            models,
            Path(args.fixtures),
            n_per_task=args.n_per_task,
            seed=args.seed,
            data_dir=args.data_dir,
            cache=args.cache,
            time_items=args.time_items,
            threads=args.threads,
        )
    if args.stage in ("analyze", "all"):
        cost = args.cost
        if cost == "auto":
            have = available_costs(Path(args.fixtures), tasks, list(models))
            cost = "flops" if "flops" in have else "seconds"
            if cost != "flops":
                print(
                    "warning: some labeler has no FLOPs count (no local weights); the cascade "
                    "cost is the measured seconds per item",
                    file=sys.stderr,
                )
        out = analyze(
            Path(args.fixtures),
            tasks,
            list(models),
            repeats=args.repeats,
            cal_frac=args.cal_frac,
            test_frac=args.test_frac,
            calibrator=args.calibrator,
            bins=args.bins,
            n_trials=args.trials,
            n_splits=args.splits,
            cost=cost,
            seed=args.seed,
            select=args.select,
        )
        outdir = Path(args.out)
        atomic_write_text(outdir / "cascade_table.md", out["markdown"] + "\n")
        atomic_write_text(outdir / "cascade_rows.json", json.dumps(out["json"], indent=2) + "\n")
        if out.get("figure") is not None:
            atomic_savefig(out["figure"], outdir / "cascade_frontier.png")
        print(out["markdown"])
    return 0


# --------------------------------------------------------------------------- scoring stage
#: in-context examples drawn per class: the first 2 per class make the 4-shot prompts, the next
#: 2 per class (drawn after them, so the 4-shot prompts stay as they were) extend them to 8-shot
DEMOS_PER_CLASS = 4


def _demos(spec: TaskSpec, demo_pool: Any, rng: np.random.Generator) -> list[tuple[str, str]]:
    """``DEMOS_PER_CLASS`` short in-context examples per class (6-18 words where the pool has
    them), ordered so that every prefix of ``2 x len(classes)`` is class-balanced: the first
    2 per class (shuffled), then the next 2 per class (shuffled)."""
    words = demo_pool["text"].str.split().str.len()
    short = demo_pool[words.between(6, 18)]
    rounds = DEMOS_PER_CLASS // 2
    picks: list[list[tuple[str, str]]] = [[] for _ in range(rounds)]
    cands = []
    for k, c in enumerate(spec.classes):
        cand = short[short["label"] == k]
        if len(cand) < DEMOS_PER_CLASS:
            cand = demo_pool[demo_pool["label"] == k]
        if len(cand) < DEMOS_PER_CLASS:
            raise ValueError(
                f"task {spec.name}: fewer than {DEMOS_PER_CLASS} texts of class {c!r} to show"
            )
        cands.append(cand)
        pick = rng.choice(len(cand), 2, replace=False)  # round 0: as before 8-shot existed
        picks[0] += [(str(cand.iloc[j]["text"]), c) for j in pick]
    demos = [picks[0][j] for j in rng.permutation(len(picks[0]))]
    shown = {t for t, _ in demos}
    for r in range(1, rounds):
        for cand, c in zip(cands, spec.classes, strict=True):
            rest = [str(t) for t in cand["text"] if str(t) not in shown]
            pick = rng.choice(len(rest), 2, replace=False)
            picks[r] += [(rest[j], c) for j in pick]
            shown.update(rest[j] for j in pick)
        demos += [picks[r][j] for j in rng.permutation(len(picks[r]))]
    return demos


def sample_items(
    task: str | TaskSpec, n: int, seed: int, data_dir: str | None
) -> tuple[list[str], list[str], list[str], list[tuple[str, str]]]:
    """Balanced eval items (texts, labels, ids) and a pool of short demos from another split."""
    spec = resolve_task(task, TASKS)
    if spec.data is None:
        raise ValueError(f"task {spec.name!r} has no data source (field 'data')")
    df = load_task_frame(spec, data_dir=data_dir).set_index("row", drop=False)
    rng = np.random.default_rng([seed, sum(map(ord, spec.name))])
    d = spec.data
    pool = df if d.eval_split is None else df[df["split"] == d.eval_split]
    demo_pool = df if d.demo_split is None else df[df["split"] == d.demo_split]
    chosen: list[int] = []
    for k, c in enumerate(spec.classes):
        idx = np.flatnonzero(pool["label"].to_numpy() == k)
        if idx.size < n // 2:
            raise ValueError(f"task {spec.name} has only {idx.size} items of class {c!r}")
        chosen += rng.choice(idx, n // 2, replace=False).tolist()
    rows = pool.iloc[sorted(chosen)]
    ids = [f"{spec.name}:{i}" for i in rows.index]
    demos = _demos(spec, demo_pool.drop(index=rows.index, errors="ignore"), rng)
    labels = [spec.classes[k] for k in rows["label"]]
    return rows["text"].astype(str).tolist(), labels, ids, demos


def forward_flops(n_params: int, vocab: int, hidden: int, tokens: list[int]) -> float:
    """Mean forward FLOPs per item of one-forward-pass scoring: ``2 x (params - embedding) x
    tokens`` for the transformer blocks plus ``2 x hidden x vocab`` for the one output position
    the backend computes logits at (``logits_to_keep=1``); attention's quadratic term (< 5% at
    these lengths) is left out."""
    body = n_params - vocab * hidden
    return float(2 * body * np.mean(tokens) + 2 * hidden * vocab)


def make_scorer(
    task: str | TaskSpec,
    model: str | int,
    backend: Any,
    demos: list[tuple[str, str]],
    cache: Any,
) -> Any:
    """The ClassificationScorer (one forward pass per item) of one task and labeler (``model``:
    a built-in labeler name, or the number of in-context examples)."""
    from calibkit.scoring import ClassificationScorer, PromptTemplate

    spec = resolve_task(task, TASKS)
    shots = model if isinstance(model, int) else int(MODELS[model]["shots"])
    if shots > len(demos):
        raise ValueError(
            f"task {spec.name}: {shots} in-context examples asked for, {len(demos)} drawn "
            f"(at most {DEMOS_PER_CLASS} per class)"
        )
    template = PromptTemplate(
        instruction=spec.instruction_template(),
        label_descriptions=dict(spec.descriptions),
        examples=tuple(demos[:shots]),
        few_shot_style="dialogue",
    )
    return ClassificationScorer(
        backend,
        spec.classes,
        template,
        mode="next_token",
        batch_size=16,
        cache=cache,
        progress=cache is not None,
    )


def _model_size(backend: Any) -> dict[str, Any]:
    """Parameter, embedding, vocabulary and hidden sizes of a local model (None over HTTP)."""
    lm = getattr(backend, "model", None)
    if lm is None or not hasattr(lm, "parameters") or not hasattr(lm, "get_input_embeddings"):
        return {"params": None, "vocab": None, "hidden": None}
    emb = lm.get_input_embeddings().weight
    n_params = int(sum(p.numel() for p in lm.parameters()))
    return {"params": n_params, "vocab": int(emb.shape[0]), "hidden": int(emb.shape[1])}


def _seconds_per_item(scorer: Any, backend: Any, texts: list[str]) -> float:
    """Wall-clock seconds per item of uncached scoring."""
    if hasattr(backend, "clear_prefix_cache"):
        backend.clear_prefix_cache()
    t0 = time.perf_counter()
    scorer.score(texts)
    return (time.perf_counter() - t0) / len(texts)


def _score_meta(
    name: str, cfg: dict[str, Any], spec: TaskSpec, s: Scores, size: dict[str, Any], **kw: Any
) -> dict[str, Any]:
    tokens = kw.pop("tokens")
    p, v, h = size["params"], size["vocab"], size["hidden"]
    local = p is not None and tokens is not None
    return {
        "name": name,
        "model": s.meta.get("model"),
        "task": spec.name,
        "shots": cfg["shots"],
        "mode": "next_token",
        "template": s.meta.get("template"),
        "params": p,
        "embedding_params": v * h if local else None,
        "vocab_size": v,
        "hidden_size": h,
        "prompt_tokens": tokens,
        "flops_per_item": forward_flops(p, v, h, tokens) if local else None,
        "flops_2n_per_item": float(2 * p * np.mean(tokens)) if local else None,
        **kw,
    }


def score(
    tasks: list[str] | list[TaskSpec],
    models: list[str] | dict[str, dict[str, Any]],
    fixtures: Path,
    *,
    n_per_task: int = 300,
    seed: int = 0,
    data_dir: str | None = None,
    cache: str | None = None,
    time_items: int = 48,
    threads: int = 1,
) -> list[Path]:
    """Score every task with every labeler; write ``<fixtures>/<task>__<name>.parquet``.

    ``models``: built-in labeler names, or name -> ``{"model": spec, "shots": n}``.
    """
    from calibkit.scoring.backends import make_backend
    from calibkit.scoring.cache import default_cache_dir

    if threads:
        import torch

        torch.set_num_threads(threads)
    labelers = models if isinstance(models, dict) else {m: MODELS[m] for m in models}
    specs = [resolve_task(t, TASKS) for t in tasks]
    cache_path = Path(cache) if cache else default_cache_dir() / "scores.sqlite"
    items = {sp.name: sample_items(sp, n_per_task, seed, data_dir) for sp in specs}
    written = []
    loaded: dict[str, Any] = {}
    for name, cfg in labelers.items():
        if cfg["model"] not in loaded:
            loaded.clear()  # one model in memory at a time
            loaded[cfg["model"]] = make_backend(cfg["model"], batch_size=8)
        backend = loaded[cfg["model"]]
        size = _model_size(backend)
        shots = int(cfg["shots"])
        for sp in specs:
            texts, labels, ids, demos = items[sp.name]
            scorer = make_scorer(sp, shots, backend, demos, cache_path)
            s = scorer.score(texts, labels, ids=np.asarray(ids))
            encode = getattr(backend, "encode", None)
            tokens = [len(encode(scorer.prompt(t))) for t in texts] if encode else None
            m = min(time_items, len(texts))
            sec = _seconds_per_item(
                make_scorer(sp, shots, backend, demos, None), backend, texts[:m]
            )
            meta = _score_meta(name, cfg, sp, s, size, tokens=tokens, seconds_per_item=sec,
                               seed=seed, n_per_task=n_per_task)  # fmt: skip
            clean = Scores(s.logits, s.labels, s.classes, s.ids, meta)
            path = clean.save(fixtures / f"{sp.name}__{name}.parquet")
            written.append(path)
            acc = float(np.mean(clean.correct))
            per = f"{np.mean(tokens):.0f} tokens/item, " if tokens else ""
            print(f"{name:>11} {sp.name:>5}: acc {acc:.3f}, {per}{sec * 1e3:.0f} ms/item -> {path}")
    return written
