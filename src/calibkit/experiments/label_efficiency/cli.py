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
    pooled_wilcoxon,
    render_labeler_summary,
    render_report,
    summarize,
)
from calibkit.experiments.label_efficiency.screen import render_screen, screen_labeler
from calibkit.experiments.label_efficiency.store import (
    check_provenance,
    few_shot_examples,
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
    parser.add_argument(
        "--labelers",
        help="comma-separated names of the config's labelers to run (default: all of them)",
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


def _write_model_outputs(
    mdir: Path,
    model: str,
    res: Any,
    scores: dict[str, Scores],
    screen: Any = None,
    alpha: float = 0.05,
) -> Any:
    """raw.csv, summary.csv, report.md, ace_vs_shots.png, results.json (and screen.csv) of one
    labeler."""
    summary = summarize(res.raw)
    comp = paper_comparison(res.raw, summary)
    scr_md = None if screen is None else render_screen(screen, alpha=alpha)
    report = render_report(summary, comp, model=model, result=res, screen=scr_md)
    if screen is not None:
        atomic_write_text(mdir / "screen.csv", screen.to_csv(index=False))
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
    return model_res, report, summary


def _selected_labelers(cfg: StudyConfig, names: str | None) -> dict[str, dict[str, Any]]:
    labelers = cfg.labeler_specs()
    if not names:
        return labelers
    want = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in want if n not in labelers]
    if unknown:
        raise ValueError(f"--labelers: unknown {unknown}; the config has {sorted(labelers)}")
    return {n: labelers[n] for n in want}


def run(args: argparse.Namespace) -> int:
    """Entry point of ``calibkit experiment label-efficiency``."""
    from calibkit.experiments.tasks import build_suite

    cfg = _config_from_args(args)
    quiet = bool(getattr(args, "quiet", False))
    labelers = _selected_labelers(cfg, getattr(args, "labelers", None))
    specs = task_specs(resolve_tasks(cfg))
    if len(specs) < 2:
        raise ValueError("the study needs at least two tasks")
    names = [s.name for s in specs]
    spec_by_name = {s.name: s for s in specs}
    fps = {s.name: task_fingerprint(s) for s in specs}
    scores_dir, out_dir = Path(cfg.scores_dir), Path(cfg.output_dir)
    stored = {
        lab: all(scores_path(scores_dir, lab, n).is_file() for n in names) for lab in labelers
    }
    if getattr(args, "no_score", False) and not all(stored.values()):
        missing = [
            f"{lab}/{n}" for lab in labelers for n in names
            if not scores_path(scores_dir, lab, n).is_file()
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

    def demos_of(shots: int) -> Any:
        return lambda t: few_shot_examples(
            spec_by_name[t.name], t, shots, seed=cfg.task_seed, data_dir=cfg.data_dir
        )

    emb_names, emb = task_embedding_matrix(get_tasks, scores_dir, cfg, need=names, fingerprints=fps)
    mode = str(cfg.screen.get("mode", "report"))
    alpha = float(cfg.screen.get("alpha", 0.05))
    results: dict[str, Any] = {"config": asdict(cfg), "models": {}, "screen": []}
    screens: list[Any] = []
    overview: dict[str, dict[str, Any]] = {}
    for lab, spec in labelers.items():
        if stored[lab]:
            scores = {n: Scores.load(scores_path(scores_dir, lab, n)) for n in names}
        else:
            shots = int(spec["shots"])
            scores = score_tasks(
                get_tasks(),
                spec["model"],
                scores_dir,
                cache_dir=cfg.cache_dir,
                batch_size=cfg.batch_size,
                progress=not quiet,
                fingerprints=fps,
                labeler=lab,
                examples=demos_of(shots) if shots else None,
            )
        check_provenance(scores, cfg, lab, fps, labeler=spec)
        if getattr(args, "score_only", False):
            continue
        ordered = {n: scores[n] for n in emb_names}
        screen = None
        if mode != "off":
            screen = screen_labeler(
                ordered, alpha=alpha, n_boot=int(cfg.screen.get("n_boot", 1000)),
                seed=cfg.split_seed,
            ).assign(labeler=lab)  # fmt: skip
            screens.append(screen)
        kept = list(ordered)
        if mode == "drop" and screen is not None:
            kept = [n for n, k in zip(screen.task, screen.kept, strict=True) if k]
        kept_s = f"{len(kept)}/{len(ordered)}"
        if len(kept) < 2:
            note = f"{len(kept)} task(s) pass the signal screen; out-of-task calibration needs 2"
            overview[lab] = {"kept": kept_s, "note": note}
            results["models"][lab] = {"not_run": note}
            if not quiet:
                print(f"{lab}: not run: {note}")
            continue
        rows = [emb_names.index(n) for n in kept]
        sub = {n: ordered[n] for n in kept}
        res = run_study(sub, emb[rows], cfg, progress=not quiet)
        mdir = scores_path(out_dir, lab, "x").parent
        model_res, report, summary = _write_model_outputs(mdir, lab, res, sub, screen, alpha)
        model_res["labeler"] = spec
        model_res["kept"] = kept
        results["models"][lab] = model_res
        overview[lab] = {"kept": kept_s, "summary_frame": summary,
                         "comparison": model_res["comparison"], "raw": res.raw}  # fmt: skip
        if not quiet:
            from rich.console import Console
            from rich.markdown import Markdown

            Console().print(Markdown(report))
            Console().print(f"[green]wrote[/] {mdir}")
    if not getattr(args, "score_only", False):
        if screens:
            import pandas as pd

            allscr = pd.concat(screens, ignore_index=True)
            md = render_screen(allscr, alpha=alpha)
            atomic_write_text(out_dir / "screen.csv", allscr.to_csv(index=False))
            atomic_write_text(out_dir / "screen.md", md)
            if cfg.screen.get("table"):
                atomic_write_text(Path(cfg.screen["table"]), md)
            results["screen"] = allscr.to_dict(orient="records")
            if not quiet:
                print(md)
        pooled = pooled_wilcoxon({k: v["raw"] for k, v in overview.items() if "raw" in v})
        results["pooled_wilcoxon"] = pooled
        atomic_write_text(out_dir / "labelers.md", render_labeler_summary(overview, pooled=pooled))
        atomic_write_text(out_dir / "results.json", json.dumps(results, indent=1, default=str))
    return 0
