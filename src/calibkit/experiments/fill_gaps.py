"""``calibkit experiment fill-gaps``: paper 000 ("Fill In The Gaps"), Table 4.

For each seed: split the dataset as in section 4.2, train the downstream classifier on the
training split, and evaluate on the real test split

* **Uncalibrated** (the paper's Baseline), **Isotonic**, **Platt**, **Temperature** (calibrators
  fitted on the validation split, :mod:`calibkit.calibrators`) and **MC dropout** (10 passes,
  encoder classifier only);
* **Real N**: the classifier retrained on training + validation without synthetic data (a control
  the paper does not report: Synthesis+ also trains on the validation points);
* for every bin count ``M``: gaps on the validation split (:func:`~calibkit.synthetic.find_gaps`),
  LLM generation + relabel for the target items (:mod:`calibkit.synthetic.generate`, cached),
  **Synthesis** and **Synthesis+** (:func:`~calibkit.synthetic.augment`), retrain, test;
  **Real+S2**: training + validation + ``S2`` more *real* rows (from those ``--train-size`` left
  out), the control that tells whether ``S2`` extra examples could lower ECE at all.

The relabeler is the generator (the paper) or ``--relabel-model``; a generator without a chat
template (a base model) gets a completion-style prompt
(:func:`calibkit.synthetic.prompts.generation_completion`).

Splits: ``twitter_complaints`` 80:10:10 train/val/test (random, per seed); ``subj`` 80:20
train/test then 20 % of train as validation; ``cr`` and ``banking77`` (two intents, age_limit vs
atm_support) keep their official test split and take 20 % of train as validation. A user's task
(``--task my_task.yaml``, a binary :class:`calibkit.tasks.TaskSpec`, with ``--data my.csv`` or
the file its ``data.path`` names) splits like ``cr`` when its data has a ``test`` split and like
``subj`` otherwise; a class without hand-written examples gets 3 training texts (seeded).
The generator is any model spec (``--model smollm2``, ``hf:<id>``,
``openai:<base_url>::<model>?api_key_env=NAME`` ...).
``--train-size`` subsamples the non-test pool before the validation split (to keep CPU runs
short and the synthetic share near the paper's 7-18 % of the training set).

Outputs (atomic) in ``--output-dir``: ``raw.csv`` (one row per seed x method x M),
``summary.csv`` and ``report.md`` (Table 4 layout: ACC and ECE, mean (std) over seeds),
``synthetic_<seed>_M<M>.jsonl`` (the kept texts). Generations live in a SQLite cache
(``--cache``), so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit._atomic import atomic_write
from calibkit.tasks import TaskSpec

__all__ = [
    "add_arguments",
    "format_table",
    "load_splits",
    "resolve_task",
    "run",
    "run_seed",
    "summarize",
]

DATASETS = ("subj", "cr", "twitter_complaints", "banking77")
B77_INTENTS = ("age_limit", "atm_support")
METHODS = (
    "Uncalibrated",
    "Isotonic",
    "Platt",
    "Temperature",
    "MC dropout",
    "Real N",
    "Synthesis",
    "Synthesis+",
    "Real+S2",
)


# ---------------------------------------------------------------------------- data
#: test fraction and validation fraction (of the rest) of datasets without a test split
_FRACTIONS = {"twitter_complaints": (0.1, 0.1 / 0.9)}
_DEFAULT_FRACTIONS = (0.2, 0.2)


def resolve_task(
    dataset: str | None = None,
    *,
    task: str | TaskSpec | None = None,
    data: str | None = None,
) -> TaskSpec:
    """The task of a run: a built-in dataset's appendix C task, or a task file / TaskSpec,
    with ``data`` (a CSV / JSONL / Parquet path) replacing its data source's file."""
    from calibkit.synthetic.prompts import get_task
    from calibkit.tasks import DataSource, load_task

    if task is None:
        if dataset is None:
            raise ValueError("give --dataset (built-in) or --task (a task file)")
        if dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
        spec = get_task(dataset)
    else:
        spec = task if isinstance(task, TaskSpec) else load_task(task)
    if data is not None:
        base = spec.data or DataSource(path=data)
        spec = replace(spec, data=replace(base, dataset=None, path=str(data)))
    if spec.data is None:
        raise ValueError(f"task {spec.name!r} names no data: give --data or data.path")
    if not spec.is_binary:
        raise ValueError(
            f"fill-gaps needs a binary task (the paper's generation prompt is binary); task "
            f"{spec.name!r} has {len(spec.classes)} classes {list(spec.classes)}: make it yes/no "
            "with data.positive"
        )
    return spec


def load_splits(
    dataset: str | TaskSpec,
    seed: int,
    *,
    data_dir: str | None = None,
    train_size: int | None = None,
) -> dict[str, tuple[list[str], NDArray[np.int64]]]:
    """``{"train", "val", "test", "pool"} -> (texts, labels)`` for one seed (see the module
    docstring); ``dataset``: a built-in dataset name or a binary TaskSpec with a data source.
    ``pool`` holds the non-test rows that ``train_size`` left out (empty without it), in the
    seed's order: the extra real examples of the Real-N control."""
    from calibkit.tasks import load_task_frame

    spec = resolve_task(dataset) if isinstance(dataset, str) else resolve_task(task=dataset)
    assert spec.data is not None
    df = load_task_frame(spec, data_dir=data_dir)
    rng = np.random.default_rng(seed)
    texts = df["text"].astype(str).to_numpy()
    y = df["label"].to_numpy(dtype=np.int64)
    split = df["split"].astype(str).to_numpy()
    test_frac, val_frac = _FRACTIONS.get(spec.name, _DEFAULT_FRACTIONS)
    if not np.any(split == "test"):
        perm = rng.permutation(len(df))
        n_test = round(len(df) * test_frac)
        test_idx, rest = perm[:n_test], perm[n_test:]
    else:
        test_idx = np.flatnonzero(split == "test")
        rest = rng.permutation(np.flatnonzero(split != "test"))
    pool_idx = rest[:0]
    if train_size is not None and train_size < rest.size:
        rest, pool_idx = rest[:train_size], rest[train_size:]
    n_val = round(val_frac * rest.size)
    val_idx, train_idx = rest[:n_val], rest[n_val:]
    out = {
        k: ([str(t) for t in texts[idx]], y[idx])
        for k, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx))
    }
    for k, (_, yy) in out.items():
        if np.unique(yy).size < 2:
            raise ValueError(
                f"task {spec.name!r}: the {k} split (seed {seed}) has {yy.size} items of one "
                "class only; use more data or a larger --train-size"
            )
    out["pool"] = ([str(t) for t in texts[pool_idx]], y[pool_idx])
    return out


# ---------------------------------------------------------------------------- one seed
def _metrics(
    probs: NDArray[np.float64], labels: NDArray[np.int64], n_bins: int
) -> dict[str, float]:
    from calibkit.metrics import accuracy, ece

    return {"acc": accuracy(probs, labels), "ece": ece(probs, labels, n_bins=n_bins)}


def _baselines(
    base: Any,
    splits: dict[str, tuple[list[str], NDArray[np.int64]]],
    common: dict[str, Any],
    args: argparse.Namespace,
) -> tuple[list[dict[str, Any]], NDArray[np.float64], Any]:
    """Uncalibrated, Isotonic, Platt, Temperature, MC dropout and Real N rows; the validation
    probabilities (for the gap search) and the Real N model."""
    from sklearn.base import clone

    from calibkit._math import to_probs
    from calibkit.calibrators import IsotonicCalibrator, PlattScaling, TemperatureScaling

    (xtr, ytr), (xva, yva), (xte, yte) = splits["train"], splits["val"], splits["test"]
    eb = args.eval_bins
    clf = clone(base).fit(xtr, ytr)
    zva, zte = clf.predict_logits(xva), clf.predict_logits(xte)
    pva, pte = to_probs(zva), to_probs(zte)

    def row(method: str, probs: Any, **kw: Any) -> dict[str, Any]:
        return {**common, "method": method, "bins": 0, **kw, **_metrics(probs, yte, eb)}

    rows = [row("Uncalibrated", pte)]
    binary = pva.shape[1] == 2
    iso = IsotonicCalibrator().fit(pva[:, 1] if binary else pva, yva)
    rows.append(row("Isotonic", iso.predict_proba(pte[:, 1] if binary else pte)))
    dva, dte = (zva[:, 1] - zva[:, 0], zte[:, 1] - zte[:, 0]) if binary else (zva, zte)
    rows.append(row("Platt", PlattScaling().fit(dva, yva).predict_proba(dte)))
    rows.append(row("Temperature", TemperatureScaling().fit(zva, yva).predict_proba(zte)))
    if args.classifier == "encoder":
        rows.append(row("MC dropout", clf.predict_proba(xte, mc_dropout=10)))
    xall, yall = xtr + xva, np.concatenate([ytr, yva])
    real = clone(base).fit(xall, yall)
    rows.append(row("Real N", real.predict_proba(xte), n_train=len(xall)))
    return rows, pva, real


def _generator(args: argparse.Namespace, box: dict[str, Any]) -> Any:
    """The generator backend of ``--model`` (any registered spec), built once per run."""
    if "backend" not in box:
        from calibkit.scoring.backends import make_backend

        print(f"loading generator {args.generator} ...", file=sys.stderr, flush=True)
        box["backend"] = make_backend(args.generator, batch_size=args.batch_size)
    return box["backend"]


def _relabeler(args: argparse.Namespace, box: dict[str, Any]) -> Any:
    """The stage-2 backend of ``--relabel-model`` (``None``: the generator relabels)."""
    spec = getattr(args, "relabel_model", None)
    if spec is None or spec == args.generator:
        return None
    if "relabeler" not in box:
        from calibkit.scoring.backends import make_backend

        print(f"loading relabeler {spec} ...", file=sys.stderr, flush=True)
        box["relabeler"] = make_backend(spec, batch_size=args.batch_size)
    return box["relabeler"]


def run_seed(
    args: argparse.Namespace, seed: int, backend_box: dict[str, Any], out_dir: Path
) -> list[dict[str, Any]]:
    """All rows of one seed (baselines, Real N, Synthesis/Synthesis+ per bin count)."""
    from sklearn.base import clone

    from calibkit.synthetic import (
        augment,
        find_gaps,
        generate_synthetic,
        make_classifier,
        requests_from_gaps,
    )

    spec = _run_task(args)
    splits = load_splits(spec, seed, data_dir=args.data_dir, train_size=args.train_size)
    (xtr, ytr), (xva, yva), (xte, yte) = splits["train"], splits["val"], splits["test"]
    kw: dict[str, Any] = {}
    if args.classifier == "encoder":
        kw = {"model": args.encoder_model, "seed": seed, "progress": args.progress}
    elif getattr(args, "C", None) is not None:
        if args.C <= 0:
            raise ValueError(f"--C must be > 0, got {args.C}")
        kw = {"C": args.C}
    base = make_classifier(args.classifier, **kw)
    common = {"dataset": spec.name, "seed": seed, "n_train": len(xtr)}
    rows, pva, real = _baselines(base, splits, common, args)
    task = spec.with_examples_from(xtr, ytr, seed=seed)  # classes without examples get 3
    xall, yall = xtr + xva, np.concatenate([ytr, yva])
    real_metrics = _metrics(real.predict_proba(xte), yte, args.eval_bins)
    for m in args.bins:
        report = find_gaps(pva, yva, m, threshold=args.threshold)
        cap = args.max_targets if args.max_targets > 0 else None
        reqs = requests_from_gaps(report, xva, yva, max_total=cap, seed=seed)
        info = {
            "s1": len(reqs),
            "targets_all": report.n_target,
            "target_bins": ",".join(f"{t.bin}:{t.scenario}" for t in report.targets),
        }
        if not reqs:
            for meth in ("Synthesis", "Synthesis+"):
                rows.append({**common, "method": meth, "bins": m, **info, "s2": 0,
                             "n_train": len(xall), **real_metrics})  # fmt: skip
            continue
        t0 = time.time()
        kept, stats = generate_synthetic(
            _generator(args, backend_box),
            task,
            reqs,
            n_utterances=args.n_utterances,
            max_new_tokens=args.max_new_tokens,
            relabel_mode=args.relabel_mode,
            cache=args.cache,
            progress=args.progress,
            batch_size=args.batch_size,
            relabel_backend=_relabeler(args, backend_box),
        )
        info.update(
            {f"gen_{k}": v for k, v in stats.items()}, gen_seconds=round(time.time() - t0, 1)
        )
        with atomic_write(out_dir / f"synthetic_{seed}_M{m}.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(s.__dict__) + "\n" for s in kept), encoding="utf-8")
        target_index = len(xtr) + np.asarray([r.source for r in reqs], dtype=np.int64)
        for meth, mode in (("Synthesis", "synthesis"), ("Synthesis+", "synthesis+")):
            ts_ = augment(xall, yall, target_index, kept, mode=mode, seed=seed)  # type: ignore[arg-type]
            model = clone(base).fit(ts_.texts, ts_.labels)
            rows.append({**common, "method": meth, "bins": m, **info, "s2": ts_.n_added,
                         "n_train": len(ts_), **_metrics(model.predict_proba(xte), yte,
                                                         args.eval_bins)})  # fmt: skip
        s2 = rows[-1]["s2"]
        xp, yp = splits["pool"]
        if s2 > len(xp):  # the control needs S2 real rows nobody trained on
            print(
                f"note: no Real+S2 row for seed {seed}, {m} bins: {s2} extra real rows needed, "
                f"{len(xp)} left out (use --train-size)",
                file=sys.stderr,
            )
            continue
        model = clone(base).fit(xall + xp[:s2], np.concatenate([yall, yp[:s2]]))
        rows.append({**common, "method": "Real+S2", "bins": m, **info, "s2": s2,
                     "n_train": len(xall) + s2, **_metrics(model.predict_proba(xte), yte,
                                                           args.eval_bins)})  # fmt: skip
    return rows


def _run_task(args: argparse.Namespace) -> TaskSpec:
    return resolve_task(
        getattr(args, "dataset", None),
        task=getattr(args, "task", None),
        data=getattr(args, "data", None),
    )


# ---------------------------------------------------------------------------- summary
def summarize(rows: Sequence[dict[str, Any]]) -> Any:
    """Mean and std over seeds of ACC and ECE per (method, bins) -> DataFrame."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    g = df.groupby(["method", "bins"], sort=False)
    out = g.agg(
        acc_mean=("acc", "mean"),
        acc_std=("acc", "std"),
        ece_mean=("ece", "mean"),
        ece_std=("ece", "std"),
        n_seeds=("seed", "nunique"),
        n_train=("n_train", "mean"),
    ).reset_index()
    if "s2" in df.columns:
        out = out.merge(
            g.agg(s1=("s1", "mean"), s2=("s2", "mean")).reset_index(),
            on=["method", "bins"],
            how="left",
        )
    return out.fillna({"acc_std": 0.0, "ece_std": 0.0})


def format_table(summary: Any, dataset: str) -> str:
    """Markdown in Table 4's layout: baselines, then Synthesis / Synthesis+ per bin count."""
    lines = [f"| {dataset} | ACC | ECE | S2 / n_train |", "|---|---|---|---|"]

    def row(r: Any, name: str) -> str:
        extra = (
            f"{r.s2:.0f} / {r.n_train:.0f}"
            if "s2" in summary.columns and r.s2 == r.s2
            else f"- / {r.n_train:.0f}"
        )
        return (
            f"| {name} | {r.acc_mean:.3f} ({r.acc_std:.3f}) | {r.ece_mean:.3f} ({r.ece_std:.3f})"
            f" | {extra} |"
        )

    for r in summary.itertuples():
        if r.bins == 0:
            lines.append(row(r, r.method))
    for m in sorted({int(b) for b in summary["bins"] if b}):
        lines.append(f"| **{m} bins** | | | |")
        for r in summary.itertuples():
            if r.bins == m:
                lines.append(row(r, r.method))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``calibkit experiment fill-gaps``."""
    parser.add_argument(
        "--dataset", choices=DATASETS, help="a built-in dataset with its appendix C task"
    )
    parser.add_argument(
        "--task",
        default=None,
        help="your own binary task file (YAML/JSON: classes, descriptions, examples, data "
        "columns; see docs/fill_gaps.md), instead of --dataset",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="your own labeled CSV / TSV / JSONL / Parquet file (with --task, or --dataset's task)",
    )
    parser.add_argument(
        "--bins", type=int, nargs="+", default=[10, 15, 20], help="bin counts M of the gap search"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument(
        "--model",
        "--generator",
        dest="generator",
        default="smollm2",
        help="generator model spec: smollm2, gemma3-270m, hf:<id or folder>, gguf:<file>, "
        "openai:<base_url>::<model>[?api_key_env=NAME]",
    )
    parser.add_argument("--classifier", default="tfidf", choices=("tfidf", "embedding", "encoder"))
    parser.add_argument(
        "--C",
        type=float,
        default=None,
        help="inverse L2 strength of the tfidf / embedding classifier (default 1.0; the "
        "paper-000 study uses 10: less shrinkage, less global under-confidence)",
    )
    parser.add_argument(
        "--relabel-model",
        default=None,
        help="model spec of the stage-2 relabeler (default: the generator, as in the paper)",
    )
    parser.add_argument(
        "--encoder-model",
        default="bert-base-uncased",
        help="local folder or cached hub id of the encoder (--classifier encoder)",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.03, help="minimum |D_m| of a target bin"
    )
    parser.add_argument(
        "--max-targets",
        type=int,
        default=40,
        help="cap on target items sent to the LLM per seed and M (0: all)",
    )
    parser.add_argument("--train-size", type=int, default=None, help="subsample the train split")
    parser.add_argument("--eval-bins", type=int, default=15, help="bins of the test ECE")
    parser.add_argument("--n-utterances", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per generator call")
    parser.add_argument("--relabel-mode", default="next_token", choices=("next_token", "generate"))
    parser.add_argument(
        "--cache",
        default=None,
        help="SQLite cache of generations (default: <output-dir>/generations.sqlite)",
    )
    parser.add_argument("--output-dir", default=None, help="default runs/fill_gaps/<task>")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 is fastest on a shared machine)",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def run(args: argparse.Namespace) -> int:
    """Run every seed, write the outputs, print the Table 4 layout. Returns 0."""
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    for m in args.bins:
        if m < 2:
            raise ValueError(f"--bins must be >= 2, got {m}")
    spec = _run_task(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out_dir = Path(args.output_dir or f"runs/fill_gaps/{spec.name}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.cache is None:
        args.cache = str(out_dir / "generations.sqlite")
    rows: list[dict[str, Any]] = []
    box: dict[str, Any] = {}
    for seed in range(args.seeds):
        rows.extend(run_seed(args, seed, box, out_dir))
        import pandas as pd

        with atomic_write(out_dir / "raw.csv") as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    summary = summarize(rows)
    table = format_table(summary, spec.name)
    with atomic_write(out_dir / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    with atomic_write(out_dir / "report.md") as tmp:
        tmp.write_text(
            f"# fill-gaps: {spec.name}, classifier {args.classifier}, generator "
            f"{args.generator}, {args.seeds} seeds\n\n{table}\n",
            encoding="utf-8",
        )
    print(table)
    return 0
