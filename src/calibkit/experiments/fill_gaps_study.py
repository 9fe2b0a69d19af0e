"""Paper 000's Table 4 where data can fix the miscalibration, with a generator comparison.

Three stages, each a function and a sub-command of
``python -m calibkit.experiments.fill_gaps_study``:

``baseline``
    A small-train TF-IDF + logistic regression classifier per task: test ACC beside the
    majority baseline, uncalibrated ECE with a percentile bootstrap CI, temperature scaling and
    the **Real-N control** (the classifier retrained on train + validation + ``N`` more *real*
    labelled examples from the rows ``--train-size`` left out) for ``N`` at 10 %, 50 % and
    200 % of the training set. Where Real-N does not lower ECE, synthetic data cannot be
    expected to either.
``generate``
    The Table 4 target items (gap search on the validation split, ``M`` bins, at most
    ``--max-targets`` items per seed) sent to every generator; raw answers and the relabeler's
    class of every surviving utterance are written to ``generations.jsonl`` (one row per
    request, enough to rebuild everything without a model; cached in SQLite).
``table``
    From that JSONL only (no model): the generator comparison (share of answers that parse,
    of utterances that are not near-copies, of those the relabeler keeps) and Table 4 per task
    (Uncalibrated / Temperature / Real N / Synthesis / Synthesis+ / Real+S2) with 95 % t
    intervals over seeds, plus the paired ECE change of Synthesis+ against Real N.

``--classifier minilm`` swaps TF-IDF for frozen all-MiniLM-L6-v2 embeddings + logistic
regression (each text embedded once per process; ``--max-test`` subsamples the test split).
``all`` runs the three. The JSONL committed under ``tests/fixtures/fill_gaps/`` regenerates the
tables with ``python -m calibkit.experiments.fill_gaps_study table --generations
tests/fixtures/fill_gaps/generations.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "StudyConfig",
    "baseline_rows",
    "generate_rows",
    "generator_table",
    "main",
    "mean_ci",
    "table4_rows",
]

TASKS = ("subj", "cr", "twitter_complaints")
GENERATORS = ("gemma3-270m", "smollm2")


@dataclass(frozen=True)
class StudyConfig:
    """The study's knobs (defaults are what the committed results used)."""

    tasks: tuple[str, ...] = TASKS
    train_size: int = 200
    C: float = 10.0
    seeds: int = 5
    gen_seeds: int = 5
    bins: int = 15
    max_targets: int = 8
    max_new_tokens: int = 64
    generators: tuple[str, ...] = GENERATORS
    relabeler: str = "gemma3-270m"
    eval_bins: int = 15
    data_dir: str | None = None
    classifier: str = "tfidf"  # or "minilm": frozen all-MiniLM-L6-v2 embeddings + LR
    max_test: int | None = None  # subsample the test split (MiniLM embedding is the CPU cost)


def mean_ci(values: Sequence[float], alpha: float = 0.05) -> tuple[float, float]:
    """Mean and half-width of the ``1 - alpha`` Student-t interval over seeds (0 for one value)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"mean_ci needs finite values, got {v.tolist()}")
    if v.size == 1:
        return float(v[0]), 0.0
    half = stats.t.ppf(1 - alpha / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean()), float(half)


def _fmt(values: Sequence[float]) -> str:
    m, h = mean_ci(values)
    return f"{m:.3f} ± {h:.3f}"


_EMBEDDINGS: dict[str, NDArray[np.float64]] = {}  # text -> MiniLM vector, for this process
_EMBEDDER: dict[str, Any] = {}


def _embed(texts: Sequence[str]) -> NDArray[np.float64]:
    """MiniLM vectors of ``texts``, each text embedded once per process."""
    missing = list(dict.fromkeys(t for t in texts if t not in _EMBEDDINGS))
    if missing:
        if "m" not in _EMBEDDER:
            from calibkit.selection.embedding import SentenceEmbedder

            _EMBEDDER["m"] = SentenceEmbedder(None, batch_size=64)
        vecs = np.asarray(_EMBEDDER["m"].encode(missing), dtype=np.float64)
        if vecs.shape[0] != len(missing) or not np.all(np.isfinite(vecs)):
            raise ValueError(f"the embedder returned {vecs.shape} for {len(missing)} texts")
        _EMBEDDINGS.update(zip(missing, vecs, strict=True))
    return np.stack([_EMBEDDINGS[t] for t in texts])


def _clf(cfg: StudyConfig) -> Any:
    from calibkit.synthetic import TfidfLogisticClassifier
    from calibkit.synthetic.classifiers import TextClassifier, _lr_logits

    if cfg.classifier == "tfidf":
        return TfidfLogisticClassifier(C=cfg.C)
    if cfg.classifier != "minilm":
        raise ValueError(f"classifier must be 'tfidf' or 'minilm', got {cfg.classifier!r}")

    class MiniLMLogistic(TextClassifier):
        """Frozen MiniLM embeddings (cached per text) + L2 logistic regression."""

        def __init__(self, C: float = 1.0) -> None:
            self.C = C

        def _fit(self, texts: list[str], y: NDArray[np.int64]) -> None:
            from sklearn.linear_model import LogisticRegression

            self.lr_ = LogisticRegression(C=self.C, max_iter=1000).fit(_embed(texts), y)

        def _logits(self, texts: list[str]) -> NDArray[np.float64]:
            return _lr_logits(self.lr_, _embed(texts), self.n_classes_)

    return MiniLMLogistic(C=cfg.C)


def _splits(cfg: StudyConfig, task: str, seed: int) -> dict[str, Any]:
    from calibkit.experiments.fill_gaps import load_splits

    s = load_splits(task, seed, data_dir=cfg.data_dir, train_size=cfg.train_size)
    if cfg.max_test is not None and len(s["test"][0]) > cfg.max_test:
        idx = np.sort(np.random.default_rng(seed).choice(len(s["test"][0]), cfg.max_test, False))
        s["test"] = ([s["test"][0][i] for i in idx], s["test"][1][idx])
    return s


def _metrics(probs: NDArray[np.float64], y: NDArray[np.int64], n_bins: int) -> dict[str, float]:
    from calibkit.metrics import accuracy, ece

    return {"acc": accuracy(probs, y), "ece": ece(probs, y, n_bins=n_bins)}


def _with_real(
    cfg: StudyConfig, s: dict[str, Any], n_extra: int, task: str, seed: int
) -> tuple[list[str], NDArray[np.int64]]:
    """train + val + the first ``n_extra`` pool rows (an error if the pool is too small)."""
    (xtr, ytr), (xva, yva), (xp, yp) = s["train"], s["val"], s["pool"]
    if n_extra > len(xp):
        raise ValueError(
            f"task {task!r} seed {seed}: Real-N needs {n_extra} extra real rows but only "
            f"{len(xp)} are left out of --train-size {cfg.train_size}"
        )
    return xtr + xva + xp[:n_extra], np.concatenate([ytr, yva, yp[:n_extra]])


# ---------------------------------------------------------------------------- 1. baseline
def baseline_rows(cfg: StudyConfig) -> list[dict[str, Any]]:
    """Per task and seed: ACC, majority ACC, ECE (with its bootstrap CI), temperature scaling
    and Real-N at 10 / 50 / 200 % more real data."""
    from calibkit._math import to_probs
    from calibkit.calibrators import TemperatureScaling
    from calibkit.metrics import ece
    from calibkit.metrics.bootstrap import bootstrap_ci

    rows = []
    for task in cfg.tasks:
        for seed in range(cfg.seeds):
            s = _splits(cfg, task, seed)
            (xtr, ytr), (xva, yva), (xte, yte) = s["train"], s["val"], s["test"]
            clf = _clf(cfg).fit(xtr, ytr)
            zva, zte = clf.predict_logits(xva), clf.predict_logits(xte)
            p = to_probs(zte)
            ci = bootstrap_ci(ece, p, yte, n_boot=200, seed=seed, n_bins=cfg.eval_bins)
            ts = TemperatureScaling().fit(zva, yva).predict_proba(zte)
            row: dict[str, Any] = {
                "task": task,
                "seed": seed,
                "n_train": len(xtr),
                "n_val": len(xva),
                "n_test": len(xte),
                "majority_acc": float(max(yte.mean(), 1 - yte.mean())),
                "train_pos_rate": float(ytr.mean()),
                "test_pos_rate": float(yte.mean()),
                **_metrics(p, yte, cfg.eval_bins),
                "ece_low": ci.low,
                "ece_high": ci.high,
                "ts_ece": _metrics(ts, yte, cfg.eval_bins)["ece"],
            }
            for frac in (0.0, 0.1, 0.5, 2.0):
                n = round(frac * len(xtr))
                x, y = _with_real(cfg, s, n, task, seed)
                m = _metrics(_clf(cfg).fit(x, y).predict_proba(xte), yte, cfg.eval_bins)
                row[f"real{int(frac * 100)}_ece"], row[f"real{int(frac * 100)}_acc"] = (
                    m["ece"],
                    m["acc"],
                )
            rows.append(row)
    return rows


def baseline_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: one line per task, mean ± 95 % t interval over seeds."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    out = [
        "| task | n train / val / test | positives train / test | majority ACC | ACC | ECE | "
        "seed 0: ECE [bootstrap CI] | "
        "Temperature ECE | Real N (train + val) ECE | + 10 % real | + 50 % real | + 200 % real |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, g in df.groupby("task", sort=False):
        r0 = g.iloc[0]
        out.append(
            f"| {task} | {r0.n_train} / {r0.n_val} / {r0.n_test} "
            f"| {g.train_pos_rate.mean():.2f} / {g.test_pos_rate.mean():.2f} "
            f"| {g.majority_acc.mean():.3f} "
            f"| {_fmt(g.acc)} | {_fmt(g.ece)} | {r0.ece:.3f} [{r0.ece_low:.3f}, {r0.ece_high:.3f}] "
            f"| {_fmt(g.ts_ece)} | {_fmt(g.real0_ece)} | {_fmt(g.real10_ece)} "
            f"| {_fmt(g.real50_ece)} | {_fmt(g.real200_ece)} |"
        )
    return "\n".join(out)


# ---------------------------------------------------------------------------- 2. generate
def _requests(cfg: StudyConfig, task: str, seed: int) -> tuple[dict[str, Any], list[Any]]:
    from calibkit._math import to_probs
    from calibkit.synthetic import find_gaps, requests_from_gaps

    s = _splits(cfg, task, seed)
    (xtr, ytr), (xva, yva) = s["train"], s["val"]
    pva = to_probs(_clf(cfg).fit(xtr, ytr).predict_logits(xva))
    report = find_gaps(pva, yva, cfg.bins)
    return s, requests_from_gaps(report, xva, yva, max_total=cfg.max_targets, seed=seed)


def generate_rows(
    cfg: StudyConfig, *, cache: str, batch_size: int = 8, progress: bool = True
) -> list[dict[str, Any]]:
    """One row per (generator, task, seed, request): the raw answer and the relabeler's class
    of each utterance that survives parsing and the near-copy filter."""
    from calibkit.scoring.backends import make_backend
    from calibkit.synthetic import SyntheticGenerator, get_task, relabel

    relabeler = make_backend(cfg.relabeler, batch_size=batch_size)
    backends = {g: relabeler if g == cfg.relabeler else None for g in cfg.generators}
    rows: list[dict[str, Any]] = []
    for gen_name in cfg.generators:
        backend = backends[gen_name] or make_backend(gen_name, batch_size=batch_size)
        for task in cfg.tasks:
            for seed in range(cfg.gen_seeds):
                s, reqs = _requests(cfg, task, seed)
                spec = get_task(task).with_examples_from(*s["train"], seed=seed)
                gen = SyntheticGenerator(
                    backend,
                    spec,
                    max_new_tokens=cfg.max_new_tokens,
                    cache=cache,
                    batch_size=batch_size,
                    progress=progress,
                )
                answers = gen.raw(reqs)
                texts = gen.generate(reqs)  # cached: no second generation
                _, pred = relabel(relabeler, spec, texts, cache=cache, progress=progress)
                cls = {(t.source, t.text): int(p) for t, p in zip(texts, pred, strict=True)}
                for r, a in zip(reqs, answers, strict=True):
                    rows.append(
                        {
                            "generator": gen_name,
                            "relabeler": cfg.relabeler,
                            "task": task,
                            "seed": seed,
                            "bins": cfg.bins,
                            "train_size": cfg.train_size,
                            "C": cfg.C,
                            "classifier": cfg.classifier,
                            "max_test": cfg.max_test,
                            "max_new_tokens": cfg.max_new_tokens,
                            "source": r.source,
                            "label": r.label,
                            "scenario": r.scenario,
                            "confidence": r.confidence,
                            "gap": r.gap,
                            "text": r.text,
                            "chat": gen.chat,
                            "answer": None if not isinstance(a, str) else a,
                            "relabels": {t: c for (src, t), c in cls.items() if src == r.source},
                        }
                    )
                print(f"{gen_name} {task} seed {seed}: {len(reqs)} requests", file=sys.stderr)
    return rows


def read_generations(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``generations.jsonl``, each checked for the fields the tables use."""
    need = {"generator", "task", "seed", "source", "label", "scenario", "text", "answer"}
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {i} is not JSON: {e}") from e
            missing = need - set(r)
            if missing:
                raise ValueError(f"{path}: line {i} lacks field(s) {sorted(missing)}")
            if r["label"] not in (0, 1):
                raise ValueError(f"{path}: line {i}: label must be 0 or 1, got {r['label']!r}")
            rel = r.get("relabels") or {}
            if not isinstance(rel, dict) or any(v not in (-1, 0, 1) for v in rel.values()):
                raise ValueError(f"{path}: line {i}: relabels must map text -> -1, 0 or 1")
            out.append(r)
    if not out:
        raise ValueError(f"{path}: no generation rows")
    return out


def _usable(rows: Sequence[dict[str, Any]]) -> list[tuple[int, list[str]]]:
    """(utterances parsed, usable utterances) of every row, aligned with ``rows``: the
    generator's own filter (:func:`calibkit.synthetic.generate.usable_utterances`) applied per
    (generator, task, seed) batch in row order, so the tables rebuild without a model."""
    from calibkit.synthetic.generate import parse_utterances, usable_utterances
    from calibkit.synthetic.prompts import get_task

    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r["generator"], r["task"], r["seed"]), []).append(i)
    out: list[tuple[int, list[str]]] = [(0, [])] * len(rows)
    for (_, task, _), idx in groups.items():
        spec = get_task(task)
        examples = [t for c in spec.classes for t in spec.examples.get(c, ())]
        answers = [rows[i]["answer"] for i in idx]
        kept, _ = usable_utterances(answers, [rows[i]["text"] for i in idx], examples)
        for i, a, k in zip(idx, answers, kept, strict=True):
            out[i] = (0 if a is None else len(parse_utterances(a, 3)), k)
    return out


def generator_table(rows: Sequence[dict[str, Any]]) -> tuple[str, dict[str, float]]:
    """Markdown comparison per generator and task, and each generator's overall usable texts
    per request (parsed, not a near-copy, kept by the relabeler)."""
    import pandas as pd

    recs = []
    for r, (n_parsed, left) in zip(rows, _usable(rows), strict=True):
        rel = r.get("relabels") or {}
        kept = [u for u in left if rel.get(u, -1) == r["label"]]
        recs.append(
            {
                "generator": r["generator"],
                "task": r["task"],
                "answered": r["answer"] is not None,
                "parses": n_parsed > 0,
                "parsed": n_parsed,
                "not_copy": len(left),
                "kept": len(kept),
            }
        )
    df = pd.DataFrame(recs)
    out = [
        "| generator | task | requests | answers that parse | utterances parsed | "
        "not copies / loops / about the task | kept by relabel | usable per request |",
        "|---|---|---|---|---|---|---|---|",
    ]
    usable: dict[str, float] = {}
    for (g, t), d in df.groupby(["generator", "task"], sort=False):
        p, nc, k = d.parsed.sum(), d.not_copy.sum(), d.kept.sum()
        out.append(
            f"| {g} | {t} | {len(d)} | {d.parses.mean():.0%} | {p} | "
            f"{nc} ({nc / max(p, 1):.0%}) | {k} ({k / max(nc, 1):.0%}) | {k / len(d):.2f} |"
        )
    for g, d in df.groupby("generator", sort=False):
        usable[str(g)] = float(d.kept.sum() / len(d))
        p, nc, k = d.parsed.sum(), d.not_copy.sum(), d.kept.sum()
        out.append(
            f"| **{g}** | all | {len(d)} | {d.parses.mean():.0%} | {p} | "
            f"{nc} ({nc / max(p, 1):.0%}) | {k} ({k / max(nc, 1):.0%}) | {k / len(d):.2f} |"
        )
    return "\n".join(out), usable


# ---------------------------------------------------------------------------- 3. Table 4
def table4_rows(
    cfg: StudyConfig, rows: Sequence[dict[str, Any]], generator: str
) -> list[dict[str, Any]]:
    """Per task and generation seed: Uncalibrated, Temperature, Real N (train + val),
    Synthesis, Synthesis+ and Real+S2 (train + val + S2 more real rows), from cached
    generations of ``generator`` only."""
    from sklearn.base import clone

    from calibkit.calibrators import TemperatureScaling
    from calibkit.synthetic import augment
    from calibkit.synthetic.generate import SyntheticText
    from calibkit.synthetic.prompts import revised_confidence, to_percent

    out: list[dict[str, Any]] = []
    for task in dict.fromkeys(r["task"] for r in rows if r["generator"] == generator):
        seeds = sorted(
            {r["seed"] for r in rows if r["generator"] == generator and r["task"] == task}
        )
        for seed in seeds:
            mine = [
                r
                for r in rows
                if r["generator"] == generator and r["task"] == task and r["seed"] == seed
            ]
            if not mine:
                raise ValueError(f"no cached generations of {generator} for {task} seed {seed}")
            s = _splits(cfg, task, seed)
            (xtr, ytr), (xva, yva), (xte, yte) = s["train"], s["val"], s["test"]
            for r in mine:  # the cache must describe this split
                if not 0 <= r["source"] < len(xva) or xva[r["source"]] != r["text"]:
                    raise ValueError(
                        f"cached generation of {task} seed {seed} source {r['source']} does not "
                        "match the validation split: regenerate with the same configuration"
                    )
            base = _clf(cfg)
            clf = clone(base).fit(xtr, ytr)
            zva, zte = clf.predict_logits(xva), clf.predict_logits(xte)
            common = {"task": task, "seed": seed, "generator": generator}

            def add(
                method: str, probs: Any, n: int, s2: int = 0, c: Any = common, y: Any = yte
            ) -> None:
                m = _metrics(probs, y, cfg.eval_bins)
                out.append({**c, "method": method, "n_train": n, "s2": s2, **m})

            add("Uncalibrated", clf.predict_proba(xte), len(xtr))
            ts = TemperatureScaling().fit(zva, yva)
            add("Temperature", ts.predict_proba(zte), len(xtr))
            xall, yall = xtr + xva, np.concatenate([ytr, yva])
            add("Real N", clone(base).fit(xall, yall).predict_proba(xte), len(xall))
            kept = []
            for r, (_, left) in zip(mine, _usable(mine), strict=True):
                pct = revised_confidence(
                    to_percent(r["confidence"]), to_percent(abs(r["gap"])), r["scenario"]
                )
                rel = r.get("relabels") or {}
                kept += [
                    SyntheticText(u, r["label"], r["source"], r["scenario"], pct, r["label"])
                    for u in left
                    if rel.get(u, -1) == r["label"]
                ]
            target_index = len(xtr) + np.asarray([r["source"] for r in mine], dtype=np.int64)
            s2 = 0
            for meth, mode in (("Synthesis", "synthesis"), ("Synthesis+", "synthesis+")):
                tset = augment(xall, yall, target_index, kept, mode=mode, seed=seed)  # type: ignore[arg-type]
                s2 = tset.n_added
                model = clone(base).fit(tset.texts, tset.labels)
                add(meth, model.predict_proba(xte), len(tset), s2)
            x, y = _with_real(cfg, s, s2, task, seed)
            add("Real+S2", clone(base).fit(x, y).predict_proba(xte), len(x), s2)
    return out


def table4_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown per task: method, ACC and ECE (mean ± 95 % t interval over seeds), S2 / n, and
    the paired ECE change against Real N (the same training rows without synthetic data)."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    out = []
    for task, g in df.groupby("task", sort=False):
        out += [
            f"| {task} | ACC | ECE | ECE - Real N (paired) | S2 / n_train |",
            "|---|---|---|---|---|",
        ]
        ref = g[g.method == "Real N"].set_index("seed").ece
        for meth, d in g.groupby("method", sort=False):
            diff = d.set_index("seed").ece - ref
            out.append(
                f"| {meth} | {_fmt(d.acc)} | {_fmt(d.ece)} | "
                f"{'-' if meth == 'Real N' else _fmt(diff.to_numpy())} | "
                f"{d.s2.mean():.1f} / {d.n_train.mean():.0f} |"
            )
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------- CLI
def _write(path: Path, text: str) -> None:
    from calibkit._atomic import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m calibkit.experiments.fill_gaps_study {baseline,generate,table,all}``."""
    p = argparse.ArgumentParser(prog="python -m calibkit.experiments.fill_gaps_study")
    p.add_argument("stage", choices=("baseline", "generate", "table", "all"))
    p.add_argument("--output-dir", default="results/fill_gaps")
    p.add_argument("--generations", default=None, help="generations JSONL (table: input)")
    p.add_argument("--cache", default="runs/cache/fill_gaps_study.sqlite")
    p.add_argument("--generator", default=None, help="Table 4 generator (default: most usable)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    d = StudyConfig()
    p.add_argument("--tasks", nargs="+", default=list(d.tasks), choices=TASKS)
    p.add_argument("--generators", nargs="+", default=list(d.generators))
    p.add_argument("--relabeler", default=d.relabeler)
    p.add_argument("--seeds", type=int, default=d.seeds, help="seeds of the baseline stage")
    p.add_argument("--gen-seeds", type=int, default=d.gen_seeds, help="seeds of generate/table")
    p.add_argument("--max-targets", type=int, default=d.max_targets, help="requests per seed")
    p.add_argument("--train-size", type=int, default=d.train_size)
    p.add_argument("--C", type=float, default=d.C)
    p.add_argument("--classifier", default=d.classifier, choices=("tfidf", "minilm"))
    p.add_argument("--max-test", type=int, default=None, help="subsample the test split")
    a = p.parse_args(argv)
    for name in ("seeds", "gen_seeds", "max_targets", "train_size"):
        if getattr(a, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.C <= 0:
        raise ValueError(f"--C must be > 0, got {a.C}")
    cfg = StudyConfig(
        tasks=tuple(a.tasks),
        train_size=a.train_size,
        C=a.C,
        seeds=a.seeds,
        gen_seeds=a.gen_seeds,
        max_targets=a.max_targets,
        generators=tuple(a.generators),
        relabeler=a.relabeler,
        data_dir=a.data_dir,
        classifier=a.classifier,
        max_test=a.max_test,
    )
    out = Path(a.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen_path = Path(a.generations or out / "generations.jsonl")
    if a.stage in ("baseline", "all"):
        table = baseline_table(baseline_rows(cfg))
        name = "baseline.md" if cfg.classifier == "tfidf" else f"baseline_{cfg.classifier}.md"
        _write(out / name, table + "\n")
        print(table)
    if a.stage in ("generate", "all"):
        import torch

        torch.set_num_threads(a.threads)
        Path(a.cache).parent.mkdir(parents=True, exist_ok=True)
        rows = generate_rows(cfg, cache=a.cache, batch_size=a.batch_size)
        _write(gen_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    if a.stage in ("table", "all"):
        rows = read_generations(gen_path)
        for key in ("train_size", "C"):  # the configuration the generations were made with
            vals = {r.get(key) for r in rows}
            if len(vals) != 1 or None in vals:
                raise ValueError(
                    f"{gen_path}: rows disagree on or lack {key!r}: {sorted(map(str, vals))}"
                )
            v: Any = vals.pop()
            cfg = (
                replace(cfg, train_size=int(v)) if key == "train_size" else replace(cfg, C=float(v))
            )
        clfs = {r.get("classifier", "tfidf") for r in rows}  # rows before the option: tfidf
        tests = {r.get("max_test") for r in rows}
        if len(clfs) != 1 or len(tests) != 1:
            raise ValueError(f"{gen_path}: rows mix classifiers {clfs} or test sizes {tests}")
        cfg = replace(cfg, classifier=str(clfs.pop()), max_test=tests.pop())
        gtable, usable = generator_table(rows)
        best = a.generator or max(usable, key=lambda g: usable[g])  # ties: the first listed
        t4 = table4_markdown(table4_rows(cfg, rows, best))
        text = f"{gtable}\n\nTable 4 with generator {best}:\n\n{t4}"
        name = "table4.md" if cfg.classifier == "tfidf" else f"table4_{cfg.classifier}.md"
        _write(out / name, text + "\n")
        print(text)
    return 0


def _cli() -> int:  # pragma: no cover - the module's entry point
    """:func:`main` with the CLI conventions: ``error: ...`` (exit 2), ``interrupted`` (130)."""
    try:
        return main()
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: cached generations are kept; rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_cli())
