"""``calibkit experiment label-efficiency``: options and the run (score -> study -> report)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from calibkit._atomic import atomic_write_text
from calibkit.experiments.label_efficiency.config import StudyConfig, load_config
from calibkit.experiments.label_efficiency.report import (
    paper_comparison,
    plot_ace_vs_shots,
    render_report,
    summarize,
)
from calibkit.experiments.label_efficiency.store import (
    check_provenance,
    resolve_tasks,
    score_tasks,
    scores_path,
    task_embedding_matrix,
    task_fingerprint,
    task_specs,
)
from calibkit.experiments.label_efficiency.study import run_study
from calibkit.scores import Scores

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``calibkit experiment label-efficiency``."""
    parser.add_argument("--config", help="YAML/JSON config (see configs/label_efficiency.yaml)")
    parser.add_argument("--output-dir", help="where tables, plots and raw results go")
    parser.add_argument("--scores-dir", help="stored per-task Scores (Parquet) and task embeddings")
    parser.add_argument(
        "--data-dir", help="real datasets (default ../shared/data or $CALIBKIT_DATA)"
    )
    parser.add_argument(
        "--models",
        "--model",
        dest="models",
        help="comma-separated model specs: smollm2, gemma3-270m, hf:<id or folder>, "
        "gguf:<file>, openai:<base_url>::<model>[?api_key_env=NAME]",
    )
    parser.add_argument(
        "--tasks",
        help="comma-separated built-in task names and/or task files (.yaml/.yml/.json; "
        "see docs/label_efficiency.md) (default: the config's)",
    )
    parser.add_argument("--seeds", type=int, help="repeats of every in-task cell")
    parser.add_argument(
        "--score-only", action="store_true", help="only score the tasks and embed them, then stop"
    )
    parser.add_argument(
        "--no-score",
        action="store_true",
        help="never load a model: fail if stored scores or task embeddings are missing",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or table printout")


def _config_from_args(args: argparse.Namespace) -> StudyConfig:
    models = getattr(args, "models", None)
    tasks = getattr(args, "tasks", None)
    return load_config(
        getattr(args, "config", None),
        output_dir=getattr(args, "output_dir", None),
        scores_dir=getattr(args, "scores_dir", None),
        data_dir=getattr(args, "data_dir", None),
        models=[m.strip() for m in models.split(",") if m.strip()] if models else None,
        tasks=tasks.split(",") if tasks else None,
        seeds=getattr(args, "seeds", None),
    )


def _write_model_outputs(mdir: Path, model: str, res: Any, scores: dict[str, Scores]) -> Any:
    """raw.csv, summary.csv, report.md, ace_vs_shots.png and results.json of one model."""
    summary = summarize(res.raw)
    comp = paper_comparison(res.raw, summary)
    report = render_report(summary, comp, model=model, result=res)
    atomic_write_text(mdir / "raw.csv", res.raw.to_csv(index=False))
    atomic_write_text(mdir / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(mdir / "report.md", report)
    plot_ace_vs_shots(summary, mdir / "ace_vs_shots.png", title=f"{model}: ACE vs shots")
    model_res = {
        "surrogate": res.surrogate,
        "clusters": res.clusters,
        "sim_oot_sources": res.sim_sources,
        "comparison": comp,
        "summary": summary.to_dict(orient="records"),
        "accuracy": {n: float(np.mean(s.correct)) for n, s in scores.items()},
    }
    atomic_write_text(mdir / "results.json", json.dumps(model_res, indent=1, default=str))
    return model_res, report


def run(args: argparse.Namespace) -> int:
    """Entry point of ``calibkit experiment label-efficiency``."""
    from calibkit.experiments.tasks import build_suite

    cfg = _config_from_args(args)
    quiet = bool(getattr(args, "quiet", False))
    specs = task_specs(resolve_tasks(cfg))
    if len(specs) < 2:
        raise ValueError("the study needs at least two tasks")
    names = [s.name for s in specs]
    fps = {s.name: task_fingerprint(s) for s in specs}
    scores_dir, out_dir = Path(cfg.scores_dir), Path(cfg.output_dir)
    stored = {m: all(scores_path(scores_dir, m, n).is_file() for n in names) for m in cfg.models}
    if getattr(args, "no_score", False) and not all(stored.values()):
        missing = [
            f"{m}/{n}" for m in cfg.models for n in names
            if not scores_path(scores_dir, m, n).is_file()
        ]  # fmt: skip
        raise ValueError(f"--no-score: stored scores missing for {missing[:5]} in {scores_dir}")
    built: list[Any] = []

    def get_tasks() -> list[Any]:  # data reads: only when something must be scored or embedded
        if not built:
            built.extend(
                build_suite(
                    specs,
                    n_per_task=cfg.n_per_task,
                    seed=cfg.task_seed,
                    max_chars=cfg.max_chars,
                    data_dir=cfg.data_dir,
                )
            )
        return built

    emb_names, emb = task_embedding_matrix(get_tasks, scores_dir, cfg, need=names, fingerprints=fps)
    results: dict[str, Any] = {"config": asdict(cfg), "models": {}}
    for model in cfg.models:
        if stored[model]:
            scores = {n: Scores.load(scores_path(scores_dir, model, n)) for n in names}
        else:
            scores = score_tasks(
                get_tasks(),
                model,
                scores_dir,
                cache_dir=cfg.cache_dir,
                batch_size=cfg.batch_size,
                progress=not quiet,
                fingerprints=fps,
            )
        check_provenance(scores, cfg, model, fps)
        if getattr(args, "score_only", False):
            continue
        ordered = {n: scores[n] for n in emb_names}
        res = run_study(ordered, emb, cfg, progress=not quiet)
        mdir = scores_path(out_dir, model, "x").parent
        results["models"][model], report = _write_model_outputs(mdir, model, res, ordered)
        if not quiet:
            from rich.console import Console
            from rich.markdown import Markdown

            Console().print(Markdown(report))
            Console().print(f"[green]wrote[/] {mdir}")
    if not getattr(args, "score_only", False):
        atomic_write_text(out_dir / "results.json", json.dumps(results, indent=1, default=str))
    return 0
