"""Train-then-evaluate steps shared by ``calibkit finetune`` and ``calibkit experiment finetune``.

Every step writes its result under ``out_dir`` atomically and is skipped when the result is
already there, so an interrupted run picks up where it stopped (training itself resumes from its
latest checkpoint).

Layout::

    out_dir/splits.json                    question ids of train / val / test / ood
    out_dir/scores/<name>_<split>.parquet  option scores (calibkit Scores)
    out_dir/results/<name>.json            metrics, win rates, training summary of one method
    out_dir/runs/<name>/checkpoints/...    trainer checkpoints; runs/<name>/adapter: final LoRA
    out_dir/figures/<name>_<split>_*.png   reliability diagrams (overall and per option)
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibkit.finetune.data import MCQExample
from calibkit.finetune.evaluate import (
    PreferencePair,
    calibration_report,
    option_scores,
    reliability_figures,
    win_rate,
)
from calibkit.finetune.trainer import CalibrationTrainer, TrainConfig
from calibkit.scores import Scores

__all__ = [
    "EvalSettings",
    "atomic_write_json",
    "check_splits",
    "evaluate_model",
    "read_json",
    "score_split",
    "temperature_scaling_result",
    "train_and_evaluate",
]


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically."""
    from calibkit._atomic import atomic_write_text

    return atomic_write_text(path, json.dumps(obj, indent=2, default=float))


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())


def check_splits(
    out_dir: str | os.PathLike[str], splits: Mapping[str, Sequence[MCQExample]]
) -> None:
    """Record the split ids in ``out_dir/splits.json``, or refuse if a previous run used others."""
    ids = {k: [e.id for e in v] for k, v in splits.items()}
    path = Path(out_dir) / "splits.json"
    if path.exists():
        old = read_json(path)
        if old != ids:
            raise ValueError(
                f"{path} holds different questions than this run (changed --n-* or --seed?); "
                "use another --out"
            )
        return
    atomic_write_json(path, ids)


@dataclass
class EvalSettings:
    """How to evaluate: ``n_bins`` (paper: 10), scoring batch size / max length, preference
    pairs per dataset for the win rate (empty: no win rate), reliability plots on or off."""

    n_bins: int = 10
    batch_size: int = 8
    max_length: int = 512
    pairs: Mapping[str, Sequence[PreferencePair]] = field(default_factory=dict)
    win_max_length: int = 512
    n_boot: int = 0
    plots: bool = True
    progress: bool = True


def score_split(
    model: Any,
    tok: Any,
    name: str,
    split: str,
    exs: Sequence[MCQExample],
    out: Path,
    s: EvalSettings,
    system_prompt: str | None,
) -> Scores:
    """Option scores of one split, cached in ``out/scores/<name>_<split>.parquet``."""
    path = out / "scores" / f"{name}_{split}.parquet"
    if path.exists():
        return Scores.load(path)
    sc = option_scores(
        model,
        tok,
        exs,
        system_prompt=system_prompt,
        max_length=s.max_length,
        batch_size=s.batch_size,
        progress=s.progress,
        meta={"method": name, "split": split},
    )
    sc.save(path)
    return sc


def _metrics_for(
    name: str, by_split: Mapping[str, Scores], out: Path, s: EvalSettings
) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for split, sc in by_split.items():
        res[split] = calibration_report(sc, n_bins=s.n_bins, n_boot=s.n_boot)
        if s.plots:
            try:
                figs = reliability_figures(
                    sc, out / "figures", prefix=f"{name}_{split}", n_bins=s.n_bins
                )
                res[split]["figures"] = [str(p.relative_to(out)) for p in figs]
            except ImportError:  # calibkit.plots / matplotlib not available
                pass
    return res


def evaluate_model(
    model: Any,
    tokenizer: Any,
    eval_splits: Mapping[str, Sequence[MCQExample]],
    out_dir: str | os.PathLike[str],
    name: str,
    settings: EvalSettings,
    *,
    system_prompt: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score ``eval_splits`` (e.g. ``{"test": ..., "ood": ...}``), compute conf-ECE / cw-ECE /
    accuracy, draw reliability diagrams and the win rates; cached in ``results/<name>.json``."""
    from calibkit.finetune.data import SYSTEM_PROMPT

    out = Path(out_dir)
    rpath = out / "results" / f"{name}.json"
    if rpath.exists():
        return dict(read_json(rpath))
    sp = SYSTEM_PROMPT if system_prompt is None else system_prompt
    by_split = {
        k: score_split(model, tokenizer, name, k, v, out, settings, sp)
        for k, v in eval_splits.items()
        if v
    }
    res: dict[str, Any] = {"method": name, "metrics": _metrics_for(name, by_split, out, settings)}
    wr = {}
    for ds, pairs in settings.pairs.items():
        if pairs:
            wr[ds] = win_rate(
                model,
                tokenizer,
                pairs,
                max_length=settings.win_max_length,
                progress=settings.progress,
            ).to_dict()
    if wr:
        res["win_rate"] = wr
    res.update(extra or {})
    atomic_write_json(rpath, res)
    return res


def temperature_scaling_result(
    out_dir: str | os.PathLike[str], base_name: str, settings: EvalSettings, *, name: str = "ts"
) -> dict[str, Any]:
    """Temperature scaling of the base model's option scores: ``T`` fitted (NLL, Guo et al.) on
    the ``val`` split's scores, applied to every other split; accuracy is unchanged by design."""
    from calibkit.calibrators import TemperatureScaling

    out = Path(out_dir)
    rpath = out / "results" / f"{name}.json"
    if rpath.exists():
        return dict(read_json(rpath))
    val_path = out / "scores" / f"{base_name}_val.parquet"
    if not val_path.exists():
        raise ValueError(
            f"no validation scores at {val_path}; evaluate the base model on 'val' first"
        )
    ts = TemperatureScaling().fit_scores(Scores.load(val_path))
    by_split = {}
    for split in ("test", "ood"):
        p = out / "scores" / f"{base_name}_{split}.parquet"
        if p.exists():
            cal = ts.calibrate(Scores.load(p))
            cal.save(out / "scores" / f"{name}_{split}.parquet")
            by_split[split] = cal
    res = {
        "method": name,
        "temperature": float(ts.temperature_),
        "metrics": _metrics_for(name, by_split, out, settings),
    }
    atomic_write_json(rpath, res)
    return res


def train_and_evaluate(
    base_model: Any,
    tokenizer: Any,
    config: TrainConfig,
    train: Sequence[MCQExample],
    eval_splits: Mapping[str, Sequence[MCQExample]],
    out_dir: str | os.PathLike[str],
    name: str,
    settings: EvalSettings,
    *,
    resume: bool = True,
    copy_model: bool = True,
) -> dict[str, Any]:
    """Fine-tune a fresh LoRA on a copy of ``base_model`` (checkpoints in ``runs/<name>``,
    resumed when ``resume``), save the adapter, evaluate; cached in ``results/<name>.json``."""
    out = Path(out_dir)
    rpath = out / "results" / f"{name}.json"
    if rpath.exists():
        return dict(read_json(rpath))
    model = copy.deepcopy(base_model) if copy_model else base_model
    run = out / "runs" / name
    trainer = CalibrationTrainer(model, tokenizer, config, out_dir=run)
    result = trainer.train(train, resume=resume, progress=settings.progress)
    trainer.save_adapter(run / "adapter")
    last = result.history[-1] if result.history else {}
    summary = {
        "config": config.to_dict(),
        "steps": result.global_step,
        "epochs": result.epochs_done,
        "final_loss": last.get("loss"),
        "em_estimates": len(result.em_history),
        "em_ece_first": result.em_history[0]["ece"] if result.em_history else None,
        "em_ece_last": result.em_history[-1]["ece"] if result.em_history else None,
    }
    atomic_write_json(
        run / "history.json", {"history": result.history, "em_history": result.em_history}
    )
    res = evaluate_model(
        trainer.model,
        tokenizer,
        eval_splits,
        out,
        name,
        settings,
        system_prompt=config.system_prompt,
        extra={"training": summary},
    )
    del trainer, model
    return res


# ---------------------------------------------------------------------------------- CLI glue
def add_data_arguments(p: Any, *, n_train: int, n_val: int, n_test: int, n_ood: int) -> None:
    """``--train/--eval`` sources, split sizes, ``--data-dir``, ``--seed``."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--train",
        default="mmlu,medmcqa,openbookqa",
        help="in-domain datasets (train + test): built-in names, one subject of one "
        "('mmlu:anatomy') and/or your own .jsonl files (question, choices, answer)",
    )
    g.add_argument(
        "--eval",
        default="arc_challenge",
        help="out-of-domain datasets ('' for none): built-in names and/or .jsonl files",
    )
    g.add_argument("--n-train", type=int, default=n_train)
    g.add_argument(
        "--n-val", type=int, default=n_val, help="in-domain questions for temperature scaling"
    )
    g.add_argument("--n-test", type=int, default=n_test)
    g.add_argument("--n-ood", type=int, default=n_ood)
    g.add_argument(
        "--data-dir",
        default=None,
        help="datasets folder (default: ../shared/data or $CALIBKIT_DATA)",
    )
    g.add_argument("--seed", type=int, default=0)


def add_train_arguments(p: Any) -> None:
    """Hyper-parameters of :class:`TrainConfig` (defaults: the paper's where it gives them)."""
    g = p.add_argument_group("training")
    g.add_argument(
        "--model",
        default=None,
        help="local model spec: a folder, hub id, hf:<id>, gguf:<file> or 'gemma3-270m' "
        "(default: SmolLM2-135M-Instruct)",
    )
    g.add_argument(
        "--quantize",
        choices=("auto", "4bit", "none"),
        default="auto",
        help="QLoRA needs bitsandbytes + CUDA",
    )
    g.add_argument(
        "--lambda",
        dest="lam",
        type=float,
        default=None,
        help="ECE regulariser weight (default: 0 CFT, 1 RCFT)",
    )
    g.add_argument(
        "--lm-weight", type=float, default=1.0, help="token-loss weight (0 = 'ECE only')"
    )
    g.add_argument("--smoothing", type=float, default=0.1, help="label-smoothing epsilon")
    g.add_argument("--epochs", type=int, default=5)
    g.add_argument("--max-steps", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=2)
    g.add_argument("--grad-accum", type=int, default=1)
    g.add_argument("--lr", type=float, default=1e-4)
    g.add_argument("--warmup-steps", type=int, default=0)
    g.add_argument("--lora-r", type=int, default=16)
    g.add_argument("--lora-alpha", type=int, default=32)
    g.add_argument("--lora-dropout", type=float, default=0.05)
    g.add_argument("--n-bins", type=int, default=10)
    g.add_argument(
        "--em-every",
        type=int,
        default=None,
        help="extra E-step every N steps (always at each epoch start)",
    )
    g.add_argument("--em-source", choices=("pass", "running"), default="pass")
    g.add_argument(
        "--em-max-examples",
        type=int,
        default=None,
        help="E-step pass on a fixed subset of this size",
    )
    g.add_argument(
        "--em-prior", type=float, default=0.0, help="Beta-prior pseudo-count of the bin accuracies"
    )
    g.add_argument("--em-assignment", choices=("estep", "current"), default="estep")
    g.add_argument("--divergence", choices=("mse", "kl"), default="mse")
    g.add_argument(
        "--no-preserve-top",
        action="store_true",
        help="ECE-term targets by the paper's formula as is (a low-accuracy bin's target may put "
        "another option on top); default: mixed so the top option stays on top",
    )
    g.add_argument(
        "--max-length", type=int, default=512, help="drop questions longer than this (tokens)"
    )
    g.add_argument("--checkpoint-every", type=int, default=50)
    g.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (1 is best on a busy CPU)"
    )


def add_eval_arguments(p: Any) -> None:
    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-batch-size", type=int, default=8)
    g.add_argument(
        "--win-rate-pairs", type=int, default=100, help="pairs per dataset (0 = no win rate)"
    )
    g.add_argument("--win-rate-data", default="ultrafeedback_binarized,hh_rlhf")
    g.add_argument("--win-rate-max-length", type=int, default=512)
    g.add_argument(
        "--win-rate-max-chars", type=int, default=None, help="only pairs this short (characters)"
    )
    g.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (0 = none)"
    )
    g.add_argument("--no-plots", action="store_true")
    g.add_argument("--no-progress", action="store_true")


def load_model_from_args(args: Any) -> tuple[Any, Any]:
    """Apply ``--threads``, load ``--model`` (``--quantize``) and move it to ``--device``."""
    from calibkit.finetune.trainer import load_model_and_tokenizer

    apply_threads(args)
    model, tok = load_model_and_tokenizer(args.model, quantize=args.quantize)
    device = getattr(args, "device", "auto")
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not getattr(model, "is_loaded_in_4bit", False):  # 4-bit weights are placed at load time
        model.to(device)
    return model, tok


def apply_threads(args: Any) -> None:
    """``torch.set_num_threads(args.threads)`` when ``--threads`` is given."""
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1; got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)


def config_from_args(args: Any, method: str, **override: Any) -> TrainConfig:
    kw: dict[str, Any] = {
        "method": method,
        "lam": args.lam,
        "lm_weight": args.lm_weight,
        "smoothing": args.smoothing,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "lr": args.lr,
        "warmup_steps": args.warmup_steps,
        "lora_r": args.lora_r,
        "lora_alpha": args.lora_alpha,
        "lora_dropout": args.lora_dropout,
        "n_bins": args.n_bins,
        "em_every": args.em_every,
        "em_source": args.em_source,
        "em_max_examples": args.em_max_examples,
        "em_prior": args.em_prior,
        "em_assignment": args.em_assignment,
        "divergence": args.divergence,
        "preserve_top": not getattr(args, "no_preserve_top", False),
        "max_length": args.max_length,
        "eval_batch_size": args.eval_batch_size,
        "checkpoint_every": args.checkpoint_every,
        "seed": args.seed,
    }
    kw.update(override)
    return TrainConfig(**kw)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def splits_from_args(
    args: Any, *, train: Sequence[str] | None = None, exclude_ids: Sequence[str] = ()
) -> dict[str, list[MCQExample]]:
    """Splits of ``--train`` (or ``train``) / ``--eval``, never drawing ``exclude_ids``."""
    from calibkit.finetune.data import make_splits

    return make_splits(
        _names(args.train) if train is None else train,
        _names(args.eval),
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        n_ood=args.n_ood,
        seed=args.seed,
        data_dir=args.data_dir,
        exclude_ids=exclude_ids,
    )


def settings_from_args(args: Any) -> EvalSettings:
    from calibkit.finetune.evaluate import load_preference_pairs

    pairs: dict[str, list[PreferencePair]] = {}
    if args.win_rate_pairs > 0:
        for ds in _names(args.win_rate_data):
            pairs[ds] = load_preference_pairs(
                ds,
                n=args.win_rate_pairs,
                seed=args.seed,
                max_chars=args.win_rate_max_chars,
                data_dir=args.data_dir,
            )
    return EvalSettings(
        n_bins=args.n_bins,
        batch_size=args.eval_batch_size,
        max_length=args.max_length,
        pairs=pairs,
        win_max_length=args.win_rate_max_length,
        n_boot=args.bootstrap,
        plots=not args.no_plots,
        progress=not args.no_progress,
    )
