"""``calibkit finetune cft|rcft|label-smoothing``: calibration-aware LoRA fine-tuning (paper 002).

Builds the in-domain (MMLU + MedMCQA + OpenBookQA) train / test splits and the out-of-domain
(ARC-Challenge) split, fine-tunes a LoRA adapter on the chat model, and reports conf-ECE, cw-ECE
and accuracy in- and out-of-domain (plus the win rate on preference pairs) for the fine-tuned
model and, with ``--baseline``, for the model as it was. Checkpoints go to ``OUT/runs/<method>``;
``--resume`` continues an interrupted run from its latest checkpoint and skips finished steps.

Examples::

    calibkit finetune cft --n-train 3000 --n-test 2000 --n-ood 2000 --out runs/cft --baseline
    calibkit finetune rcft --lambda 1.0 --max-steps 200 --out runs/rcft --resume
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]

_METHODS = {"cft": "cft", "rcft": "rcft", "label-smoothing": "label_smoothing"}


def add_parser(subparsers: Any) -> None:
    from calibkit.finetune.pipeline import (
        add_data_arguments,
        add_eval_arguments,
        add_train_arguments,
    )

    p = subparsers.add_parser(
        "finetune",
        help="calibration-aware fine-tuning (CFT / RCFT)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", choices=sorted(_METHODS), help="cft, rcft or label-smoothing")
    p.add_argument("--out", default="calibkit-out/finetune", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--baseline", action="store_true", help="also evaluate the model before fine-tuning"
    )
    add_data_arguments(p, n_train=3000, n_val=0, n_test=2000, n_ood=2000)
    add_train_arguments(p)
    add_eval_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calibkit._atomic import check_writable_dir
    from calibkit.finetune.pipeline import (
        check_splits,
        config_from_args,
        evaluate_model,
        load_model_from_args,
        settings_from_args,
        splits_from_args,
        train_and_evaluate,
    )

    method = _METHODS[args.method]
    out = Path(args.out)
    check_writable_dir(out, what="--out folder")  # before any data or model is loaded
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise ValueError(
            f"{out} is not empty; pass --resume to continue that run or choose another --out"
        )
    config = config_from_args(args, method)  # validates the hyper-parameters before any loading
    splits = splits_from_args(args)
    check_splits(out, splits)
    settings = settings_from_args(args)
    model, tok = load_model_from_args(args)
    evals = {"test": splits["test"], "ood": splits["ood"]}
    results = {}
    if args.baseline:
        results["base"] = evaluate_model(model, tok, evals, out, "base", settings)
    results[method] = train_and_evaluate(
        model,
        tok,
        config,
        splits["train"],
        evals,
        out,
        method,
        settings,
        resume=args.resume,
        copy_model=args.baseline,
    )
    _print_table(results, out)
    return 0


def _print_table(results: dict[str, dict[str, Any]], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from calibkit.cli._args import esc

    t = Table(title=f"calibration-aware fine-tuning ({esc(out)})")
    t.add_column("model")
    for col in ("conf-ECE", "cw-ECE", "accuracy"):
        for dom in ("in", "out"):
            t.add_column(f"{col} {dom}", justify="right")
    t.add_column("win rate", justify="right")
    for name, res in results.items():
        m = res["metrics"]
        row = [esc(name)]
        for key in ("conf_ece", "cw_ece", "accuracy"):
            for split in ("test", "ood"):
                row.append(f"{m[split][key]:.4f}" if split in m else "-")
        wr = res.get("win_rate", {})
        row.append(esc(", ".join(f"{k}: {v['win_rate']:.3f}" for k, v in wr.items()) or "-"))
        t.add_row(*row)
    Console().print(t)
