"""Paper 002 Tables 2 and 4: CFT / RCFT vs the aligned model, temperature scaling and label
smoothing, in-domain (MMLU + MedMCQA + OpenBookQA test split) and out-of-domain (ARC-Challenge),
plus the win rate of Appendix C.1 and an RCFT lambda sweep.

``calibkit experiment finetune --out DIR`` runs every method of ``--methods`` from the same base
model (each fine-tuned method gets a fresh LoRA on a copy), writes ``DIR/results/<name>.json``
per method, ``DIR/table.md`` and ``DIR/results.json``. Re-running the same command resumes:
finished methods are read back, an interrupted training continues from its last checkpoint.

``--scan`` instead scores a seeded sample of every subset (MMLU per subject, the other datasets
whole) with the training prompt and writes ``DIR/subjects.md`` / ``DIR/subjects.json``:
accuracy with its exact 95 % interval beside chance, conf-ECE, and which subsets are above chance
(:mod:`calibkit.finetune.subjects`). ``--subjects-from DIR/subjects.json`` then trains and tests on
the kept subsets (minus any named in ``--eval``), never on a scanned question.

``--targets both`` runs every ECE-regularised method (lambda > 0) twice: with the default
rank-preserving targets (``preserve_top=True``) and with the paper's formula as is
(``preserve_top=False``, rows ``<name>_paper_targets``). CFT at lambda = 0 has no ECE term, so
the choice does not apply to it.

``--smoke`` shrinks everything to a CI-sized run (at most 32 questions per split, 4 steps).

``--model`` is a local model spec (``smollm2``, ``gemma3-270m``, ``hf:<id or folder>``,
``gguf:<file>``): fine-tuning needs the weights, so a model served over HTTP is refused.
``--train`` / ``--eval`` take built-in multiple-choice datasets or the user's own ``.jsonl`` files
(``question``, ``choices``, ``answer`` = 0-based index).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

__all__ = [
    "PAPER_TABLE2",
    "add_arguments",
    "difference_table",
    "format_table",
    "method_configs",
    "run",
]

#: Paper 002 Table 2 (DPO / RLHF rows and CFT rows), for the comparison in the report:
#: model -> method -> (conf-ECE in, conf-ECE out, cw-ECE in, cw-ECE out, acc in, acc out)
PAPER_TABLE2: dict[str, dict[str, tuple[float, ...]]] = {
    "Llama3.1-8B-Tulu": {
        "DPO": (0.1953, 0.1212, 0.0953, 0.0650, 0.6228, 0.7810),
        "CFT": (0.0239, 0.0688, 0.0582, 0.0375, 0.6410, 0.8000),
        "RCFT": (0.0897, 0.0810, 0.0771, 0.0526, 0.8341, 0.7991),
    },
    "Vicuna-7B": {
        "RLHF": (0.1422, 0.0852, 0.0979, 0.0560, 0.4344, 0.5233),
        "CFT": (0.0379, 0.0331, 0.0583, 0.0491, 0.4481, 0.6172),
        "RCFT": (0.0474, 0.0672, 0.0459, 0.0530, 0.6015, 0.6035),
    },
}

_METHODS = ("dpo", "ts", "label_smoothing", "cft", "rcft")
_LABELS = {
    "dpo": "aligned model (as is)",
    "ts": "temperature scaling",
    "label_smoothing": "label smoothing",
    "cft": "CFT",
    "rcft": "RCFT",
    "rcft_paper_targets": "RCFT, paper targets (preserve_top=False)",
}
_SCAN_SOURCES = "mmlu,medmcqa,openbookqa,arc_easy,arc_challenge"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from calibkit.finetune.pipeline import (
        add_data_arguments,
        add_eval_arguments,
        add_train_arguments,
    )

    parser.add_argument("--out", default="calibkit-out/experiment-finetune")
    parser.add_argument(
        "--methods", default=",".join(_METHODS), help="subset of " + ",".join(_METHODS)
    )
    parser.add_argument(
        "--lambdas",
        default="",
        help="RCFT lambda sweep (Table 4), e.g. '0,0.4,1,1.8,ece-only' ('' = no sweep)",
    )
    parser.add_argument("--rcft-lambda", type=float, default=1.0, help="lambda of the RCFT row")
    parser.add_argument(
        "--targets",
        choices=("default", "paper", "both"),
        default="default",
        help="ECE-term targets of lambda > 0 methods: preserve_top=True (default), the paper's "
        "as is (paper) or both",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="CI-sized run: <= 32 questions per split, 4 steps"
    )
    g = parser.add_argument_group("subject scan")
    g.add_argument(
        "--scan",
        action="store_true",
        help="only score per-subject accuracy (DIR/subjects.md, DIR/subjects.json)",
    )
    g.add_argument("--scan-sources", default=_SCAN_SOURCES)
    g.add_argument(
        "--scan-by-subject", default="mmlu", help="datasets scanned per subject ('' for none)"
    )
    g.add_argument("--scan-per-subject", type=int, default=16)
    g.add_argument("--scan-per-dataset", type=int, default=96)
    g.add_argument(
        "--subjects-from",
        default=None,
        help="a --scan's subjects.json: train/test on its kept subsets, excluding its questions",
    )
    add_data_arguments(parser, n_train=3000, n_val=500, n_test=2000, n_ood=2000)
    add_train_arguments(parser)
    add_eval_arguments(parser)


def _apply_smoke(args: argparse.Namespace) -> None:
    args.n_train, args.n_val = min(args.n_train, 32), min(args.n_val, 32)
    args.n_test, args.n_ood = min(args.n_test, 32), min(args.n_ood, 32)
    args.max_steps = 4 if args.max_steps is None else args.max_steps
    args.epochs = 1
    args.batch_size = 4
    args.win_rate_pairs = min(args.win_rate_pairs, 4)
    args.win_rate_max_chars = args.win_rate_max_chars or 600
    args.em_max_examples = args.em_max_examples or 16
    args.bootstrap = min(args.bootstrap, 100)


def _lambda_runs(text: str) -> list[tuple[str, dict[str, Any]]]:
    runs = []
    for tok in (t.strip() for t in text.split(",") if t.strip()):
        if tok.lower() in ("ece-only", "ece_only", "inf"):
            runs.append(("rcft_lambda_ece_only", {"lam": 1.0, "lm_weight": 0.0}))
            continue
        try:
            lam = float(tok)
        except ValueError:
            raise ValueError(f"--lambdas: {tok!r} is neither a number nor 'ece-only'") from None
        if not math.isfinite(lam) or lam < 0:
            raise ValueError(f"--lambdas: lambda must be finite and >= 0; got {tok}")
        runs.append((f"rcft_lambda_{lam:g}", {"lam": lam}))
    return runs


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table in the layout of the paper's Table 2 (plus win rates); bootstrap 95 %
    intervals in brackets where computed."""
    wr_sets = sorted({k for r in results.values() for k in r.get("win_rate", {})})
    head = ["method", "conf-ECE in", "conf-ECE out", "cw-ECE in", "cw-ECE out", "acc in", "acc out"]
    head += [f"win rate {k}" for k in wr_sets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, res in results.items():
        m = res["metrics"]
        cells = [_LABELS.get(name, name)]
        for key in ("conf_ece", "cw_ece", "accuracy"):
            for split in ("test", "ood"):
                if name == "ts" and key == "accuracy":
                    cells.append("-")
                elif split not in m:
                    cells.append("n/a")
                else:
                    d = m[split]
                    ci = (
                        f" [{d[key + '_low']:.3f}, {d[key + '_high']:.3f}]"
                        if key + "_low" in d
                        else ""
                    )
                    cells.append(f"{d[key]:.4f}{ci}")
        for k in wr_sets:
            w = res.get("win_rate", {}).get(k)
            cells.append(f"{w['win_rate']:.3f} (n={w['n']})" if w else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def difference_table(
    out: Path, names: list[str], *, base: str = "dpo", n_bins: int = 10, n_boot: int = 1000
) -> tuple[str, dict[str, Any]]:
    """Markdown table (and dict) of each method minus ``base`` on the same test / OOD questions,
    with paired-bootstrap 95 % intervals (:func:`calibkit.finetune.evaluate.paired_differences`),
    read from ``out/scores``. Methods without both score files are skipped."""
    from calibkit.finetune.evaluate import REPORT_METRICS, paired_differences
    from calibkit.scores import Scores

    head = ["method"] + [f"d {m} {s}" for m in REPORT_METRICS for s in ("in", "out")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    res: dict[str, Any] = {}
    for name in names:
        if name == base:
            continue
        cells, row = [_LABELS.get(name, name)], {}
        for split in ("test", "ood"):
            pa, pb = (
                out / "scores" / f"{base}_{split}.parquet",
                out / "scores" / f"{name}_{split}.parquet",
            )
            if pa.exists() and pb.exists():
                row[split] = paired_differences(
                    Scores.load(pa), Scores.load(pb), n_bins=n_bins, n_boot=n_boot
                )
        if not row:
            continue
        res[name] = row
        for m in REPORT_METRICS:
            for split in ("test", "ood"):
                d = row.get(split, {}).get(m)
                cells.append(f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]" if d else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", res


def _scan(args: argparse.Namespace) -> int:
    """Per-subject accuracy of the base model (``--scan``)."""
    from calibkit._atomic import atomic_write_text
    from calibkit.finetune.data import SYSTEM_PROMPT
    from calibkit.finetune.pipeline import (
        _names,
        atomic_write_json,
        load_model_from_args,
        read_json,
        score_split,
        settings_from_args,
    )
    from calibkit.finetune.subjects import sample_subsets, subject_table, subset_accuracy
    from calibkit.scoring.option_probs import option_distribution

    out = Path(args.out)
    args.win_rate_pairs = 0
    settings = settings_from_args(args)
    sources = _names(args.scan_sources)
    samples = sample_subsets(
        sources,
        by_subject=_names(args.scan_by_subject),
        per_subject=args.scan_per_subject,
        per_dataset=args.scan_per_dataset,
        seed=args.seed,
        data_dir=args.data_dir,
    )
    # the scores are cached per source: refuse an --out scanned with other questions or model
    scanned = {
        "model": args.model or "smollm2",
        "max_length": args.max_length,
        "ids": {k: [e.id for e in v] for k, v in samples.items()},
    }
    guard = out / "scan_questions.json"
    if guard.exists() and read_json(guard) != scanned:
        raise ValueError(
            f"{guard}: this folder was scanned with other questions, model or --max-length "
            "(changed --scan-* / --seed / --model?); use another --out"
        )
    atomic_write_json(guard, scanned)
    model, tok = load_model_from_args(args)
    rows, pooled = [], {}
    for src in sources:
        names = [k for k in samples if k == src or k.startswith(src + ":")]
        exs = [e for k in names for e in samples[k]]
        sc = score_split(model, tok, "dpo", f"scan_{src}", exs, out, settings, SYSTEM_PROMPT)
        p, y = option_distribution(sc.logits), sc.require_labels()
        row_of = {str(i): j for j, i in enumerate(sc.ids)}
        for k in names:
            idx = [row_of[e.id] for e in samples[k] if e.id in row_of]
            if idx:  # every question of a subset may exceed --max-length
                rows.append(subset_accuracy(k, p[idx], y[idx], n_bins=args.n_bins))
        if len(names) > 1:
            pooled[src] = subset_accuracy(f"{src} (all scanned)", p, y, n_bins=args.n_bins)
    kept = [r.subset for r in rows if r.kept]
    table = subject_table(rows, pooled=pooled)
    atomic_write_text(out / "subjects.md", table)
    atomic_write_json(
        out / "subjects.json",
        {
            "model": args.model or "smollm2",
            "rows": [r.to_dict() for r in rows],
            "pooled": {k: v.to_dict() for k, v in pooled.items()},
            "kept": kept,
            "dropped": [r.subset for r in rows if not r.kept],
            "scanned_ids": sorted({e.id for v in samples.values() for e in v}),
        },
    )
    print(table)
    print(f"kept ({len(kept)} of {len(rows)}): {','.join(kept) or 'none'}")
    return 0


def _subjects_sources(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Train sources (the scan's kept subsets not in ``--eval``) and the ids to exclude."""
    import warnings

    from calibkit.finetune.pipeline import _names, read_json

    path = Path(args.subjects_from)
    if not path.is_file():
        raise ValueError(f"--subjects-from: no file {path}")
    scan = read_json(path)
    for key in ("kept", "scanned_ids", "model"):
        if key not in scan:
            raise ValueError(f"--subjects-from {path}: no field {key!r} (not a --scan result?)")
    if scan["model"] != (args.model or "smollm2"):
        warnings.warn(
            f"{path} scanned model {scan['model']!r}; this run fine-tunes "
            f"{args.model or 'smollm2'!r}",
            stacklevel=2,
        )
    ood = set(_names(args.eval))
    train = [k for k in scan["kept"] if k not in ood and k.split(":")[0] not in ood]
    if not train:
        raise ValueError(f"--subjects-from {path}: no kept subset left for training")
    return train, [str(i) for i in scan["scanned_ids"]]


def method_configs(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """The ``--methods`` asked for and a :class:`TrainConfig` per fine-tuned row (``--lambdas``
    sweep and ``--targets`` variants included), by row name."""
    from calibkit.finetune.pipeline import config_from_args

    if args.no_preserve_top:
        raise ValueError("in an experiment choose the targets with --targets paper|both")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = sorted(set(methods) - set(_METHODS))
    if bad:
        raise ValueError(f"--methods: unknown {bad}; choose from {', '.join(_METHODS)}")
    sweep = _lambda_runs(args.lambdas)
    configs: dict[str, Any] = {}
    for m in methods:
        if m in ("label_smoothing", "cft"):
            configs[m] = config_from_args(args, m, lam=0.0 if args.lam is None else args.lam)
        elif m == "rcft":
            configs[m] = config_from_args(args, "rcft", lam=args.rcft_lambda)
    for name, kw in sweep:
        configs[name] = config_from_args(args, "rcft", **kw)
    if args.targets != "default":
        with_targets = {}
        for name, cfg in configs.items():
            if cfg.effective_lam == 0:  # no ECE term: the targets do not apply
                with_targets[name] = cfg
                continue
            if args.targets == "both":
                with_targets[name] = cfg
            with_targets[f"{name}_paper_targets"] = dataclasses.replace(cfg, preserve_top=False)
        configs = with_targets

    return methods, configs


def run(args: argparse.Namespace) -> int:
    from calibkit._atomic import atomic_write_text
    from calibkit.finetune.data import SYSTEM_PROMPT
    from calibkit.finetune.pipeline import (
        atomic_write_json,
        check_splits,
        evaluate_model,
        load_model_from_args,
        score_split,
        settings_from_args,
        splits_from_args,
        temperature_scaling_result,
        train_and_evaluate,
    )
    from calibkit.scoring.backends.registry import local_model_name

    local_model_name(args.model)  # fine-tuning needs local weights: refuse an HTTP spec up front
    if args.smoke:
        _apply_smoke(args)
    if args.scan:
        return _scan(args)
    methods, configs = method_configs(args)

    out = Path(args.out)
    t0 = time.time()
    if args.subjects_from:
        train_sources, exclude = _subjects_sources(args)
        splits = splits_from_args(args, train=train_sources, exclude_ids=exclude)
    else:
        splits = splits_from_args(args)
    check_splits(out, splits)
    settings = settings_from_args(args)
    model, tok = load_model_from_args(args)
    evals = {"test": splits["test"], "ood": splits["ood"]}
    results: dict[str, dict[str, Any]] = {}
    if "dpo" in methods or "ts" in methods:
        base = evaluate_model(model, tok, evals, out, "dpo", settings)
        if "dpo" in methods:
            results["dpo"] = base
    if "ts" in methods:
        if not splits["val"]:
            raise ValueError("temperature scaling needs validation questions: --n-val > 0")
        score_split(model, tok, "dpo", "val", splits["val"], out, settings, SYSTEM_PROMPT)
        results["ts"] = temperature_scaling_result(out, "dpo", settings)
    done: dict[str, str] = {}
    for name, cfg in configs.items():
        fp = cfg.fingerprint()
        if fp in done:  # e.g. the sweep's lambda = 1 is the RCFT row
            results[name] = {**results[done[fp]], "same_as": done[fp]}
            continue
        results[name] = train_and_evaluate(
            model, tok, cfg, splits["train"], evals, out, name, settings
        )
        done[fp] = name
    table = format_table(results)
    diffs: dict[str, Any] = {}
    if "dpo" in results and args.bootstrap > 0:
        dtab, diffs = difference_table(
            out, list(results), n_bins=args.n_bins, n_boot=args.bootstrap
        )
        table += "\nDifference from the aligned model on the same questions (paired bootstrap):\n\n"
        table += dtab
    atomic_write_text(out / "table.md", table)
    atomic_write_json(
        out / "results.json",
        {"results": results, "differences": diffs, "elapsed_s": time.time() - t0},
    )
    print(table)
    return 0
