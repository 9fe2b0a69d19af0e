"""Paper 001, Table 3 on real models and data: weighted vote vs the cost-aware cascade.

Three real labelers of different cost score binary tasks from ``../shared/data`` (SST-2, CR,
SUBJ) in one-forward-pass (``next_token``) mode:

* ``smollm2-zs``: SmolLM2-135M-Instruct, zero-shot;
* ``gemma3-zs``: Gemma 3 270M (base), zero-shot;
* ``smollm2-fs``: SmolLM2-135M-Instruct with 4 in-context examples (2 per class).

Cost of an item (``--cost``) is by default its forward FLOPs as executed: ``2 x (params -
embedding params) x prompt tokens + 2 x hidden x vocab`` (logits at one position), counting every
prompt token as an API bills it; ``flops2n`` (``2 x params x tokens``) and the wall-clock seconds
measured here are stored too. Models enter the cascade cheapest first. Each repeat splits the
merged items (stratified by task and label) into a calibration part (vector scaling by default,
or temperature scaling, per model and task), a dev part (edge search: Optuna TPE, mean F1 over
10 80/20 splits, bins per model tried in 2, 3, 5 and 10 and picked on dev; Algorithm 1 on all of
dev) and a test part (every row of the table). Results are mean +- std over 5 repeats.

Stages:

* ``score``: runs the models (900 items x 3 labelers: 20-50 min on 2 shared CPU cores; every item
  goes through the SQLite score cache, so a rerun costs nothing) and writes one Scores file per
  task and model to ``--fixtures``.
* ``analyze``: reads those files and writes ``cascade_table.md``, ``cascade_rows.json`` and
  ``cascade_frontier.png`` to ``--out``.

Regenerate the committed fixtures and the table in ``docs/cascade.md``::

    calibkit experiment cascade --stage score --fixtures tests/fixtures/ensemble
    calibkit experiment cascade --stage analyze --fixtures tests/fixtures/ensemble \\
        --out results/cascade            # vector scaling, bins 2 3 5 10 (the docs' main table)
    calibkit experiment cascade --stage analyze --calibrator temperature --bins 5 10 \\
        --out results/cascade_ts
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit.ensemble._io import atomic_savefig, atomic_write_text
from calibkit.scores import Scores

__all__ = [
    "MODELS",
    "TASKS",
    "add_arguments",
    "analyze",
    "load_fixtures",
    "make_scorer",
    "run",
    "sample_items",
    "score",
    "summary_table",
]


@dataclass(frozen=True)
class TaskSpec:
    classes: tuple[str, str]
    instruction: str
    descriptions: dict[str, str]
    eval_split: str | None  # None: no official split, sample from everything
    demo_split: str | None


TASKS: dict[str, TaskSpec] = {
    "sst2": TaskSpec(
        ("negative", "positive"),
        "Classify the sentiment of a movie review sentence as one of: {classes}.",
        {},
        "test",
        "train",
    ),
    "cr": TaskSpec(
        ("negative", "positive"),
        "Classify the sentiment of a product review sentence as one of: {classes}.",
        {},
        "test",
        "train",
    ),
    "subj": TaskSpec(
        ("objective", "subjective"),
        "Classify a movie-related sentence as one of: {classes}.",
        {
            "objective": "a factual statement such as a plot description",
            "subjective": "an opinion or a judgement",
        },
        None,
        None,
    ),
}

MODELS: dict[str, dict[str, Any]] = {
    "smollm2-zs": {"model": "smollm2", "shots": 0},
    "gemma3-zs": {"model": "gemma3-270m", "shots": 0},
    "smollm2-fs": {"model": "smollm2", "shots": 4},
}

PAPER_TABLE3 = """| policy (paper 001, Table 3) | F1 | prec. | recall | cost |
|---|---|---|---|---|
| Llama2-7B alone | F | P | R | X |
| Weighted maj. vote (uncal.) | 1.023F | 1.002P | 1.034R | 7X |
| Weighted maj. vote (cal.) | 1.046F | 1.012P | 1.066R | 7X |
| Cascading (uncal.) | 1.016F | 0.998P | 1.025R | 1.9X |
| Cascading (cal.) | 1.058F | 1.035P | 1.068R | 3.2X |"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", choices=["score", "analyze", "all"], default="all")
    parser.add_argument("--tasks", default="sst2,cr,subj", help="comma-separated task names")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model keys")
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
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument(
        "--cost",
        choices=["flops", "flops2n", "seconds"],
        default="flops",
        help="forward FLOPs as executed, 2 x params x prompt tokens, or measured seconds",
    )


def run(args: argparse.Namespace) -> int:
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"unknown task {t!r}; known: {sorted(TASKS)}")
    for m in models:
        if m not in MODELS:
            raise ValueError(f"unknown model key {m!r}; known: {sorted(MODELS)}")
    if args.stage in ("score", "all"):
        score(
            tasks,
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
        out = analyze(
            Path(args.fixtures),
            tasks,
            models,
            repeats=args.repeats,
            cal_frac=args.cal_frac,
            test_frac=args.test_frac,
            calibrator=args.calibrator,
            bins=args.bins,
            n_trials=args.trials,
            n_splits=args.splits,
            cost=args.cost,
            seed=args.seed,
        )
        outdir = Path(args.out)
        atomic_write_text(outdir / "cascade_table.md", out["markdown"] + "\n")
        atomic_write_text(outdir / "cascade_rows.json", json.dumps(out["json"], indent=2) + "\n")
        if out.get("figure") is not None:
            atomic_savefig(out["figure"], outdir / "cascade_frontier.png")
        print(out["markdown"])
    return 0


# --------------------------------------------------------------------------- scoring stage
def sample_items(
    task: str, n: int, seed: int, data_dir: str | None
) -> tuple[list[str], list[str], list[str], list[tuple[str, str]]]:
    """Balanced eval items (texts, labels, ids) and a pool of short demos from another split."""
    from calibkit.datasets import load_classification

    spec = TASKS[task]
    df = load_classification(task, data_dir=data_dir)
    rng = np.random.default_rng([seed, sum(map(ord, task))])
    if spec.eval_split is not None:
        pool = df[df["split"] == spec.eval_split]
        demo_pool = df[df["split"] == spec.demo_split]
    else:
        pool, demo_pool = df, df
    chosen: list[int] = []
    for c in spec.classes:
        idx = np.flatnonzero(pool["label"].astype(str).to_numpy() == c)
        if idx.size < n // 2:
            raise ValueError(f"task {task} has only {idx.size} items of class {c!r}")
        chosen += rng.choice(idx, n // 2, replace=False).tolist()
    rows = pool.iloc[sorted(chosen)]
    ids = [f"{task}:{i}" for i in rows.index]
    demo_pool = demo_pool.drop(index=rows.index, errors="ignore")
    short = demo_pool[demo_pool["text"].str.split().str.len().between(6, 18)]
    demos: list[tuple[str, str]] = []
    for c in spec.classes:
        cand = short[short["label"].astype(str) == c]
        pick = rng.choice(len(cand), 2, replace=False)
        demos += [(str(cand.iloc[j]["text"]), c) for j in pick]
    order = rng.permutation(len(demos))
    demos = [demos[j] for j in order]
    return rows["text"].astype(str).tolist(), rows["label"].astype(str).tolist(), ids, demos


def forward_flops(n_params: int, vocab: int, hidden: int, tokens: list[int]) -> float:
    """Mean forward FLOPs per item of one-forward-pass scoring: ``2 x (params - embedding) x
    tokens`` for the transformer blocks plus ``2 x hidden x vocab`` for the one output position
    the backend computes logits at (``logits_to_keep=1``); attention's quadratic term (< 5% at
    these lengths) is left out."""
    body = n_params - vocab * hidden
    return float(2 * body * np.mean(tokens) + 2 * hidden * vocab)


def make_scorer(
    task: str, model_key: str, backend: Any, demos: list[tuple[str, str]], cache: Any
) -> Any:
    """The ClassificationScorer (one forward pass per item) of one task and labeler."""
    from calibkit.scoring import ClassificationScorer, PromptTemplate

    spec = TASKS[task]
    template = PromptTemplate(
        instruction=spec.instruction,
        label_descriptions=spec.descriptions,
        examples=tuple(demos[: MODELS[model_key]["shots"]]),
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


def score(
    tasks: list[str],
    models: list[str],
    fixtures: Path,
    *,
    n_per_task: int = 300,
    seed: int = 0,
    data_dir: str | None = None,
    cache: str | None = None,
    time_items: int = 48,
    threads: int = 1,
) -> list[Path]:
    """Score every task with every model; write ``<fixtures>/<task>__<model>.parquet``."""
    import torch

    from calibkit.scoring import TransformersBackend, load_causal_lm
    from calibkit.scoring.cache import default_cache_dir

    torch.set_num_threads(threads)
    cache_path = Path(cache) if cache else default_cache_dir() / "scores.sqlite"
    items = {t: sample_items(t, n_per_task, seed, data_dir) for t in tasks}
    written = []
    loaded: dict[str, tuple[Any, Any]] = {}
    for key in models:
        cfg = MODELS[key]
        if cfg["model"] not in loaded:
            loaded.clear()  # one model in memory at a time
            loaded[cfg["model"]] = load_causal_lm(cfg["model"])
        lm, tok = loaded[cfg["model"]]
        backend = TransformersBackend(lm, tok, batch_size=8)
        n_params = int(sum(p.numel() for p in lm.parameters()))
        emb = lm.get_input_embeddings().weight
        vocab, hidden = int(emb.shape[0]), int(emb.shape[1])
        for task in tasks:
            texts, labels, ids, demos = items[task]
            scorer = make_scorer(task, key, backend, demos, cache_path)
            s = scorer.score(texts, labels, ids=np.asarray(ids))
            tokens = [len(backend.encode(scorer.prompt(t))) for t in texts]
            m = min(time_items, len(texts))
            timer = make_scorer(task, key, backend, demos, None)
            backend.clear_prefix_cache()
            t0 = time.perf_counter()
            timer.score(texts[:m])
            sec = (time.perf_counter() - t0) / m
            meta = {
                "name": key,
                "model": s.meta.get("model"),
                "task": task,
                "shots": cfg["shots"],
                "mode": "next_token",
                "template": s.meta.get("template"),
                "params": n_params,
                "embedding_params": vocab * hidden,
                "vocab_size": vocab,
                "hidden_size": hidden,
                "prompt_tokens": tokens,
                "flops_per_item": forward_flops(n_params, vocab, hidden, tokens),
                "flops_2n_per_item": float(2 * n_params * np.mean(tokens)),
                "seconds_per_item": sec,
                "seed": seed,
                "n_per_task": n_per_task,
            }
            clean = Scores(s.logits, s.labels, s.classes, s.ids, meta)
            path = clean.save(fixtures / f"{task}__{key}.parquet")
            written.append(path)
            acc = float(np.mean(clean.correct))
            print(
                f"{key:>11} {task:>5}: acc {acc:.3f}, {np.mean(tokens):.0f} tokens/item, "
                f"{sec * 1e3:.0f} ms/item -> {path}"
            )
    return written


# --------------------------------------------------------------------------- analysis stage
@dataclass
class Merged:
    logits: NDArray[np.float64]  # (n, K, 2)
    labels: NDArray[np.int64]  # (n,)
    task: NDArray[np.int64]  # (n,) index into tasks
    costs: dict[str, NDArray[np.float64]]  # "flops" / "flops2n" / "seconds" -> (K,) per item
    models: list[str]
    tasks: list[str]


def load_fixtures(
    fixtures: Path, tasks: list[str], models: list[str], order_by: str = "flops"
) -> Merged:
    """Read ``<task>__<model>.parquet`` files, align by id, merge tasks and order models by
    ``order_by`` cost (``"flops"``: forward FLOPs, ``"flops2n"``: 2 x params x tokens,
    ``"seconds"``: measured)."""
    from calibkit.ensemble import stack_scores

    logits, labels, task_idx = [], [], []
    kinds = {
        "flops": "flops_per_item",
        "flops2n": "flops_2n_per_item",
        "seconds": "seconds_per_item",
    }
    per_task = {k: np.zeros((len(tasks), len(models))) for k in kinds}
    for ti, task in enumerate(tasks):
        scores = []
        for mi, key in enumerate(models):
            path = fixtures / f"{task}__{key}.parquet"
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} not found; run: calibkit experiment cascade --stage score"
                )
            s = Scores.load(path)
            scores.append(s)
            for k, field in kinds.items():
                if field not in s.meta:
                    raise ValueError(f"{path} lacks meta[{field!r}]; rerun the score stage")
                per_task[k][ti, mi] = float(s.meta[field])
        st = stack_scores(scores, names=models)  # validates ids, classes and labels
        if st.labels is None:
            raise ValueError(f"fixtures of task {task} are unlabeled")
        key0 = [str(i) for i in st.ids]
        z = np.empty((len(key0), len(models), 2))
        for mi, s in enumerate(scores):
            pos = {str(i): j for j, i in enumerate(s.ids)}
            z[:, mi, :] = s.logits[[pos[i] for i in key0]]
        logits.append(z)  # raw class logits, as the scorer produced them
        labels.append(st.labels)
        task_idx.append(np.full(len(st.labels), ti))
    w = np.array([len(y) for y in labels], dtype=np.float64)
    costs = {k: (v * w[:, None]).sum(0) / w.sum() for k, v in per_task.items()}
    if order_by not in costs:
        raise ValueError(f"order_by must be one of {sorted(costs)}; got {order_by!r}")
    order = np.argsort(costs[order_by], kind="stable")
    z = np.concatenate(logits)[:, order, :]
    return Merged(
        logits=z,
        labels=np.concatenate(labels),
        task=np.concatenate(task_idx),
        costs={k: v[order] for k, v in costs.items()},
        models=[models[i] for i in order],
        tasks=tasks,
    )


def _split(
    strata: NDArray[np.int64], cal_frac: float, test_frac: float, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    cal, dev, test = [], [], []
    for s in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == s))
        nc, nt = round(cal_frac * idx.size), round(test_frac * idx.size)
        cal.append(idx[:nc])
        test.append(idx[nc : nc + nt])
        dev.append(idx[nc + nt :])
    return (
        np.sort(np.concatenate(cal)),
        np.sort(np.concatenate(dev)),
        np.sort(np.concatenate(test)),
    )


def _calibrate(
    m: Merged, cal: NDArray[np.int64], calibrator: str
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """Per (model, task) calibrator fitted on the cal items: (n, K, 2) probabilities and the
    fitted temperatures (plus any fit warning) by ``model/task``."""
    from calibkit.calibrators import make_calibrator

    n, K, C = m.logits.shape
    out = np.empty((n, K, C))
    temps: dict[str, Any] = {}
    for k in range(K):
        for ti, task in enumerate(m.tasks):
            rows = np.flatnonzero(m.task == ti)
            fit_rows = np.intersect1d(rows, cal)
            with warnings.catch_warnings(record=True) as caught:
                # a labeler with no signal on a task drives T to its bound: expected here,
                # and recorded in the output instead of printed
                warnings.simplefilter("always")
                cal_k = make_calibrator(calibrator).fit(m.logits[fit_rows, k], m.labels[fit_rows])
            out[rows, k] = cal_k.predict_proba(m.logits[rows, k])
            name = f"{m.models[k]}/{task}"
            if hasattr(cal_k, "temperature_"):
                temps[name] = float(cal_k.temperature_)
            if caught:
                temps[f"{name}/warning"] = str(caught[0].message)
    return out, temps


def summary_table(agg: dict[str, dict[str, Any]], names: list[str], models: list[str]) -> list[str]:
    """Markdown lines of the mean +- std table; F1 also relative to the cheapest model's best
    single-model row (calibrated where calibration changed its answers)."""
    cal_ref = f"{models[0]} alone (cal.)"
    ref = cal_ref if cal_ref in agg else f"{models[0]} alone"
    if ref not in agg:
        ref = names[0]
    lines = [
        f"| policy | F1 | prec. | recall | acc. | F1 / {ref} | cost (x {models[0]}) | "
        + " | ".join(f"reach {x}" for x in models)
        + " |",
        "|" + "---|" * (7 + len(models)),
    ]
    for name in names:
        a = agg[name]
        share = " | ".join(f"{x:.0%}" for x in a["share"])
        lines.append(
            f"| {name} | {a['f1'][0]:.3f} ± {a['f1'][1]:.3f} | {a['precision'][0]:.3f} | "
            f"{a['recall'][0]:.3f} | {a['accuracy'][0]:.3f} | {a['f1'][0] / agg[ref]['f1'][0]:.3f} "
            f"| {a['relative_cost'][0]:.2f}x ± {a['relative_cost'][1]:.2f} | {share} |"
        )
    return lines


def analyze(
    fixtures: Path,
    tasks: list[str],
    models: list[str],
    *,
    repeats: int = 5,
    cal_frac: float = 0.2,
    test_frac: float = 0.3,
    calibrator: str = "vector",
    bins: list[int] | tuple[int, ...] = (2, 3, 5, 10),
    n_trials: int = 400,
    n_splits: int = 10,
    cost: str = "flops",
    seed: int = 0,
    plot: bool = True,
) -> dict[str, Any]:
    """Table 3 over ``repeats`` random cal/dev/test splits; returns markdown, JSON and a figure."""
    from calibkit._math import softmax
    from calibkit.ensemble.report import PolicyRow, format_table, frontier_plot, table3

    m = load_fixtures(fixtures, tasks, models, order_by=cost)
    n = m.logits.shape[0]
    costs = m.costs[cost]
    uncal = softmax(m.logits, axis=2)
    per_repeat: list[list[PolicyRow]] = []
    frontier: list[PolicyRow] = []
    sweep: list[PolicyRow] = []
    temps_all = []
    strata = m.task * 2 + m.labels
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        cal, dev, test = _split(strata, cal_frac, test_frac, rng)
        calp, temps = _calibrate(m, cal, calibrator)
        temps_all.append(temps)
        res = table3(
            {"uncal": uncal[dev], "cal": calp[dev]},
            m.labels[dev],
            {"uncal": uncal[test], "cal": calp[test]},
            m.labels[test],
            costs=costs,
            model_names=m.models,
            n_bins=tuple(bins),
            n_trials=n_trials,
            n_splits=n_splits,
            seed=seed + r,
        )
        per_repeat.append(res.rows)
        if r == 0:
            frontier, sweep = res.rows, res.frontier
        print(f"repeat {r + 1}/{repeats} done", flush=True)
    names = [row.policy for row in per_repeat[0]]
    fields = ("f1", "precision", "recall", "accuracy", "relative_cost")
    agg: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        vals = {f: np.array([rows[i].__getattribute__(f) for rows in per_repeat]) for f in fields}
        shares = np.array([rows[i].share_of_items for rows in per_repeat])
        agg[name] = {f: (float(v.mean()), float(v.std())) for f, v in vals.items()}
        agg[name]["share"] = shares.mean(axis=0).tolist()
    lines = summary_table(agg, names, m.models)
    fl, f2, sec = m.costs["flops"], m.costs["flops2n"], m.costs["seconds"]
    cost_lines = [
        "| model | params | forward GFLOPs/item | 2 x params x tokens, GFLOPs | measured ms/item "
        "| relative forward FLOPs | relative 2N FLOPs | relative seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, key in enumerate(m.models):
        s = Scores.load(fixtures / f"{tasks[0]}__{key}.parquet")
        cost_lines.append(
            f"| {key} | {int(s.meta['params']) / 1e6:.0f}M | {fl[k] / 1e9:.1f} | "
            f"{f2[k] / 1e9:.1f} | {sec[k] * 1e3:.0f} | {fl[k] / fl[0]:.2f}x | "
            f"{f2[k] / f2[0]:.2f}x | {sec[k] / sec[0]:.2f}x |"
        )
    md = "\n".join(
        [
            f"Test-set metrics, mean ± std over {repeats} random cal/dev/test splits "
            f"({cal_frac:.0%}/{1 - cal_frac - test_frac:.0%}/{test_frac:.0%}) of {n} items "
            f"({', '.join(tasks)}); calibrator: {calibrator} scaling per model and task; "
            f"cost = {cost}; cascade bins per model searched in {list(bins)} with {n_trials} "
            f"TPE trials x {n_splits} splits on dev.",
            "",
            *lines,
            "",
            *cost_lines,
            "",
            "Repeat 0 in full (relative to the first row):",
            "",
            format_table(frontier + sweep, m.models),
        ]
    )
    fig = (
        frontier_plot(frontier, sweep=sweep, title="Cost-accuracy frontier (repeat 0, test set)")
        if plot
        else None
    )
    return {
        "markdown": md,
        "json": {
            "models": m.models,
            "tasks": tasks,
            "n_items": n,
            "cost_per_item": {k: v.tolist() for k, v in m.costs.items()},
            "cost_used": cost,
            "aggregate": agg,
            "repeats": [[row.to_dict() for row in rows] for rows in per_repeat],
            "cost_penalty_sweep_repeat0": [row.to_dict() for row in sweep],
            "temperatures": temps_all,
        },
        "figure": fig,
        "rows": per_repeat,
    }
