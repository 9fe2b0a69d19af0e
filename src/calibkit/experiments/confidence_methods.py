"""``calibkit experiment confidence-methods``: issue #14's study (skeleton).

For every task and model: ``n`` seeded items of the task's test split, each estimator of
:data:`calibkit.scoring.confidence.ESTIMATORS` run on them, the items split at random into a
calibration half and a held-out half; on the held-out half, for the confidence of the model's
answer as P(correct) (see :func:`calibkit.scoring.confidence.correctness`): AUROC, ECE (10
equal-width bins) and Brier score, raw and after a Platt calibration fitted on the calibration
half, each with a percentile bootstrap CI over the held-out items; the cost per item in model
calls and generated tokens; the items that failed (unparseable replies, no vote ...). A row whose
AUROC CI does not lie above 0.5 says ``no_better_than_chance`` (and ``worse_than_chance`` when it
lies below).

:func:`compare_estimators` is the pure part (a backend and labelled texts in, rows out); ``run``
adds the command line. Not yet done: the README/docs table of a full run on the two bundled
models and four tasks.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_arguments", "compare_estimators", "run"]


def _brier(conf: np.ndarray, correct: np.ndarray) -> float:
    return float(np.mean((conf - correct.astype(np.float64)) ** 2))


def _ci(fn: Any, conf: np.ndarray, correct: np.ndarray, n_boot: int, seed: int) -> list[float]:
    from calibkit.metrics import bootstrap_ci

    c = bootstrap_ci(lambda p, y: fn(p, y), conf, correct, n_boot=n_boot, seed=seed)
    return [float(c.estimate), float(c.low), float(c.high)]


def compare_estimators(
    backend: Any,
    classes: Sequence[str],
    texts: Sequence[str],
    labels: Sequence[str] | np.ndarray,
    *,
    estimators: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    n_boot: int = 200,
    task: str = "task",
    **common: Any,
) -> list[dict[str, Any]]:
    """One row per estimator (see the module docstring); ``common`` goes to every estimator
    (template, cache, batch_size ...). An estimator whose every item failed gets a row with
    ``error``."""
    from calibkit.calibrators import PlattScaling
    from calibkit.metrics import binary_auroc
    from calibkit.scores import Scores
    from calibkit.scoring.classify import ItemsFailed
    from calibkit.scoring.confidence import ESTIMATORS, correctness
    from calibkit.scoring.confidence.select import pcorrect_ece

    names = list(estimators or ESTIMATORS)
    options = options or {}
    n = len(texts)
    half = np.random.default_rng(seed).permutation(n) < n // 2  # True: calibration half
    rows: list[dict[str, Any]] = []
    for name in names:
        row: dict[str, Any] = {"task": task, "model": backend.name, "estimator": name}
        try:
            s = ESTIMATORS[name](backend, classes, **common, **options.get(name, {})).score(
                texts, labels, on_error="skip"
            )
        except ItemsFailed as e:
            rows.append({**row, "error": str(e), "n_failed": len(e.failures)})
            continue
        conf, correct = correctness(s)
        pos = np.asarray(s.ids if s.ids.dtype.kind in "iu" else np.arange(len(s)), dtype=np.int64)
        cal, test = half[pos], ~half[pos]
        row.update(
            n_scored=len(s),
            n_failed=len(s.meta.get("failures", [])),
            calls_per_item=s.meta["cost"]["per_item"]["model_calls"],
            output_tokens_per_item=s.meta["cost"]["per_item"]["output_tokens"],
            n_test=int(test.sum()),
            accuracy=float(correct[test].mean()) if test.any() else float("nan"),
        )
        if not test.any() or not cal.any() or correct[cal].all() or not correct[cal].any():
            rows.append({**row, "error": "too few items or one outcome only in a split"})
            continue
        eps = 1e-6
        fit = Scores.from_probs(np.clip(conf[cal], eps, 1 - eps), labels=correct[cal])
        held = Scores.from_probs(np.clip(conf[test], eps, 1 - eps))
        calibrated = PlattScaling().fit_scores(fit).calibrate(held).probs[:, 1]
        ct, yt = conf[test], correct[test]
        for tag, p in (("raw", ct), ("calibrated", calibrated)):
            row[f"ece_{tag}"] = _ci(pcorrect_ece, p, yt, n_boot, seed)
            row[f"brier_{tag}"] = _ci(_brier, p, yt, n_boot, seed)
        if yt.all() or not yt.any():
            row["auroc"] = [float("nan")] * 3
        else:
            row["auroc"] = _ci(binary_auroc, ct, yt, n_boot, seed)
        lo, hi = row["auroc"][1], row["auroc"][2]
        # the CI does not lie above 0.5 (it holds 0.5, or it lies below: worse than chance)
        row["no_better_than_chance"] = bool(not lo > 0.5)
        row["worse_than_chance"] = bool(hi < 0.5)
        rows.append(row)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", default="sst2,cr,subj,trec", help="classification datasets")
    parser.add_argument("--models", default="smollm2", help="comma-separated model specs")
    parser.add_argument("--estimators", default="logits,ptrue,verbalized,consistency")
    parser.add_argument("--n", type=int, default=200, help="items per task")
    parser.add_argument("--samples", type=int, default=5, help="consistency: samples per item")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples")
    parser.add_argument("--cache", help="SQLite cache of every model call")
    parser.add_argument("-o", "--output", required=True, help="results .json")


def run(args: argparse.Namespace) -> int:
    from calibkit.datasets import load_classification
    from calibkit.scoring.backends import make_backend

    if args.n < 4:
        raise ValueError(f"--n must be >= 4, got {args.n}")
    out = Path(args.output)
    if out.suffix != ".json":
        raise ValueError(f"--output {out} must end in .json")
    estimators = [e.strip() for e in args.estimators.split(",") if e.strip()]
    rows: list[dict[str, Any]] = []
    for spec in [m.strip() for m in args.models.split(",") if m.strip()]:
        backend = make_backend(spec)
        for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
            df = load_classification(task)
            if "split" in df.columns and (df["split"] == "test").any():
                df = df[df["split"] == "test"]
            df = df.sample(min(args.n, len(df)), random_state=args.seed)
            classes = sorted(df["label"].unique())
            rows += compare_estimators(
                backend,
                classes,
                df["text"].tolist(),
                df["label"].tolist(),
                estimators=estimators,
                options={"consistency": {"n": args.samples, "seed": args.seed}},
                seed=args.seed,
                n_boot=args.n_boot,
                task=task,
                cache=args.cache,
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1, allow_nan=True))
    print(f"wrote {out} ({len(rows)} rows)")
    return 0
