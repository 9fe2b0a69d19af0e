"""``calibkit experiment confidence-methods``: issue #14's study of confidence estimators.

For every task, model and estimator variant (``logits``, ``ptrue``, ``verbalized`` (one-stage),
``verbalized-2s``, ``verbalized-topk``, ``consistency`` (n=5, T=0.7, seed 0)), the confidence of
the model's answer is read as P(correct) and judged on held-out items, raw and after a calibrator
fitted on a calibration half, over many random splits (see :mod:`.analysis`).

Stages (like ``calibkit experiment cascade``):

* ``score`` (:mod:`.score`): runs each (task, model, variant) once on the first ``n`` items of a
  seeded order of the task's test split and writes ``<fixtures>/<task>__<model>__<variant>.parquet``
  (the scored items, their per-item fields, cost and failures). Every model call goes through the
  SQLite ``--cache``: a rerun, or a run with a larger ``n``, costs only the new items.
* ``analyze`` (:mod:`.analysis`): reads only those files and writes ``table.md`` and
  ``results.json`` to ``--out``.

Regenerate the committed fixtures and docs/confidence.md's table::

    calibkit experiment confidence-methods --stage score --models smollm2,gemma3-270m \\
        --estimators logits,ptrue,verbalized-2s,consistency --n 200 \\
        --cache /work/runs/cache/confidence_methods.sqlite
    calibkit experiment confidence-methods --stage score --models smollm2,gemma3-270m \\
        --estimators verbalized,verbalized-topk --n 50 --cache ...
    calibkit experiment confidence-methods --stage analyze

A model spec ``<spec>@<shots>`` (e.g. ``gemma3-270m@4``) is a few-shot labeler: the prompt of
every estimator carries the cascade study's in-context examples and template
(:func:`.score.few_shot_template`, SST-2, CR and SUBJ only), and its fixtures are labelled
``<spec>-<shots>shot`` (``sst2__gemma3-270m-4shot__logits.parquet``). Zero-shot specs, their
prompts and cache keys are unchanged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from calibkit.experiments.confidence_methods.compare import compare_estimators
from calibkit.experiments.confidence_methods.score import (
    TASKS,
    VARIANTS,
    NothingScored,
    load_task,
    score_one,
)

__all__ = [
    "TASKS",
    "VARIANTS",
    "add_arguments",
    "compare_estimators",
    "load_task",
    "run",
    "score_one",
]

DEFAULT_FIXTURES = "tests/fixtures/confidence"
DEFAULT_OUT = "results/confidence_methods"


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", choices=["score", "analyze", "all"], default="all")
    parser.add_argument("--tasks", default="sst2,cr,subj,trec,arc_easy", help=f"of {sorted(TASKS)}")
    parser.add_argument(
        "--models",
        default="smollm2",
        help="comma-separated model specs; <spec>@<shots> adds the cascade study's in-context "
        "examples (e.g. gemma3-270m@4, labelled gemma3-270m-4shot)",
    )
    parser.add_argument(
        "--estimators",
        default="logits,ptrue,verbalized-2s,consistency",
        help=f"estimator variants, of {list(VARIANTS)}",
    )
    parser.add_argument("--n", type=int, default=200, help="items per task (score stage)")
    parser.add_argument("--seed", type=int, default=0, help="item order and splits")
    parser.add_argument("--cache", help="SQLite cache of every model call")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for scoring")
    parser.add_argument("--fixtures", default=DEFAULT_FIXTURES, help="folder of the Scores files")
    parser.add_argument("--splits", type=int, default=20, help="random calibration/held-out splits")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (AUROC CI)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder of table.md and results.json")
    parser.add_argument(
        "--server-fixtures",
        default=None,
        help="analyze: a folder of the same study run through a server (default: "
        "<fixtures>/llama_server when it exists), compared item by item with the local run of "
        "--server-reference",
    )
    parser.add_argument("--server-reference", default="smollm2", help="local model to compare to")
    parser.add_argument("--progress", action="store_true")


def _score_stage(args: argparse.Namespace) -> None:
    from calibkit.experiments.confidence_methods.score import (
        fixture_path,
        model_label,
        parse_model,
        with_shots,
    )
    from calibkit.scoring.backends import make_backend

    variants = _csv(args.estimators)
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"--estimators: unknown variant {v!r}; choose from {list(VARIANTS)}")
    tasks = _csv(args.tasks)
    loaded = {t: load_task(t, args.n, args.seed) for t in tasks}
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    models = [parse_model(m) for m in _csv(args.models)]
    # every prompt is built (and checked) before any model is loaded
    prompted = {(t, k): with_shots(loaded[t], k, args.seed) for t in tasks for _, k in models}
    folder = Path(args.fixtures)
    folder.mkdir(parents=True, exist_ok=True)
    for spec, shots in models:
        backend = make_backend(spec, batch_size=args.batch_size)
        name = spec.rsplit("::", 1)[-1] if spec.startswith("openai:") else spec
        name = model_label(name, shots)
        for t in tasks:
            for v in variants:
                s = score_one(
                    backend,
                    prompted[t, shots],
                    v,
                    model=name,
                    cache=args.cache,
                    batch_size=args.batch_size,
                    progress=args.progress,
                )
                path = s.save(fixture_path(folder, t, name, v))
                st = s.study if isinstance(s, NothingScored) else s.meta["study"]
                n_ok = 0 if isinstance(s, NothingScored) else len(s)
                stale = fixture_path(folder, t, name, v)
                for old in (stale, stale.with_suffix(".json")):
                    if old != path and old.exists():
                        old.unlink()  # a result of an earlier run of the same cell
                print(
                    f"{t} {name} {v}: {n_ok}/{st['n_items']} scored, "
                    f"{st['seconds']:.0f}s -> {path}",
                    flush=True,
                )


def _nan_to_none(x: Any) -> Any:
    """NaN (an undefined metric) -> JSON null, recursively."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_nan_to_none(v) for v in x]
    return x


def run(args: argparse.Namespace) -> int:
    if args.stage in ("score", "all"):
        _score_stage(args)
    if args.stage in ("analyze", "all"):
        from calibkit.ensemble._io import atomic_write_text
        from calibkit.experiments.confidence_methods.analysis import (
            analyze_folder,
            compare_folders,
            server_table_md,
            table_md,
        )

        rows = analyze_folder(
            Path(args.fixtures), n_splits=args.splits, n_boot=args.n_boot, seed=args.seed
        )
        server = Path(args.server_fixtures or Path(args.fixtures) / "llama_server")
        pairs = []
        if server.is_dir():
            pairs = compare_folders(server, Path(args.fixtures), reference=args.server_reference)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        result = {"rows": rows, "server_vs_local": pairs}
        atomic_write_text(
            out / "results.json", json.dumps(_nan_to_none(result), indent=1, allow_nan=False)
        )
        atomic_write_text(out / "table.md", table_md(rows) + server_table_md(pairs))
        print(f"wrote {out / 'table.md'} and {out / 'results.json'} ({len(rows)} rows)")
    return 0
