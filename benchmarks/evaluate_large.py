"""Evaluation larger than memory: calibkit streaming vs DuckDB SQL vs pandas in memory, side by side.

    python benchmarks/evaluate_large.py                       # 100M rows, K = 2 and K = 10
    python benchmarks/evaluate_large.py --rows 10000000       # 10M rows
    python benchmarks/evaluate_large.py --rows 1000000 --ray  # also calibkit on Ray Data

What is measured
* Data: ``--rows`` rows of ``K`` float32 logit columns ``logit_0 .. logit_{K-1}`` (Gaussian,
  scale 3) and an int64 ``label`` drawn from ``softmax(z / 2)`` (over-confident logits), written in ``--files`` Parquet files (row groups
  of 1M rows) to a temporary folder (``--tmp``), deleted afterwards unless ``--keep``.
* Metrics, top-label view, 15 equal-width bins: accuracy, ECE, MCE, RMS-CE, Brier, NLL (from the
  logits, exact log-softmax), AUROC of the confidence for correctness; cw-ECE where the engine
  has it.
* Engines, each in its own fresh process (so its peak RSS is its own):
  ``calibkit``: :func:`calibkit.metrics.out_of_core.evaluate_parquet` on the folder (record
  batches of 65,536 rows; AUROC by a 2**20-bin histogram, with its error bound);
  ``calibkit-ray``: the same with ``ray=True`` (``--ray``; Ray's worker processes are not in the
  RSS figure);
  ``duckdb``: one SQL query over ``read_parquet('<folder>/*.parquet')`` (softmax, bins, sums
  and an exact rank-based AUROC in SQL; DuckDB's default threads and memory limit);
  ``pandas``: ``pd.read_parquet`` of the whole folder, then the ``calibkit.metrics`` functions on
  the in-memory arrays and scikit-learn's exact ``roc_auc_score``; skipped with a note when its
  estimated footprint (rows x (K + 1) x 8 bytes x 4) exceeds the available memory.
* time: wall clock of the evaluation in that process (imports excluded); peak RSS: the process's
  ``ru_maxrss``, and the RSS after imports (before reading), so the data's share is visible.
* agreement: for each metric the largest difference between engines; the exact metrics must
  agree to 1e-9, the calibkit AUROC within its stated bound of the exact ones.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

N_BINS = 15
EXACT = ("accuracy", "ece", "mce", "rms_ce", "brier", "nll", "cw_ece")
ORDER = ("accuracy", "ece", "mce", "rms_ce", "cw_ece", "brier", "nll", "auroc")


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ---------------------------------------------------------------------- data
def write_data(folder: Path, rows: int, k: int, files: int, seed: int = 0) -> int:
    """``rows`` rows of K float32 logits and labels (about 70% accuracy) in ``files`` files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    chunk = 1 << 20
    per_file = -(-rows // files)
    names = [f"logit_{j}" for j in range(k)]
    written = 0
    for f in range(files):
        n_f = min(per_file, rows - written)
        if n_f <= 0:
            break
        with pq.ParquetWriter(folder / f"part-{f:04d}.parquet", _schema(pa, names)) as w:
            for s in range(0, n_f, chunk):
                b = min(chunk, n_f - s)
                z = rng.standard_normal((b, k), dtype=np.float32) * np.float32(3.0)
                # labels drawn from softmax(z / 2): the logits are over-confident (T = 2)
                q = np.exp((z - z.max(axis=1, keepdims=True)) / np.float32(2.0))
                np.cumsum(q, axis=1, out=q)
                u = rng.random(b, dtype=np.float32) * q[:, -1]
                y = (q < u[:, None]).sum(axis=1).clip(0, k - 1)
                cols = {c: z[:, j] for j, c in enumerate(names)} | {"label": y.astype(np.int64)}
                w.write_table(pa.table(cols), row_group_size=chunk)
        written += n_f
    return written


def _schema(pa: Any, names: list[str]) -> Any:
    return pa.schema([(c, pa.float32()) for c in names] + [("label", pa.int64())])


# ---------------------------------------------------------------------- engines
def run_calibkit(folder: Path, k: int, ray: bool) -> dict[str, Any]:
    import calibkit.cli.evaluate  # imports outside the timed call
    import calibkit.io  # noqa: F401
    from calibkit.metrics.out_of_core import evaluate_parquet
    from calibkit.metrics.parquet_source import _arrow

    _arrow()
    kw: dict[str, Any] = {}
    if ray:
        import ray as ray_mod

        ray_mod.init(
            num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
            configure_logging=False,
        )  # fmt: skip
        ray_mod.data.DataContext.get_current().enable_progress_bars = False
    base = _current_rss_mb()
    t = time.perf_counter()
    res = evaluate_parquet(folder, n_bins=N_BINS, ray=ray, **kw)
    dt = time.perf_counter() - t
    m = {key: res.metrics[key] for key in ORDER}
    return {"n": res.n, "time_s": dt, "rss_base_mb": base, "metrics": m,
            "auroc_bound": res.metrics["auroc_bound"]}  # fmt: skip


def _sql(k: int, glob: str) -> str:
    z = [f"CAST(logit_{j} AS DOUBLE)" for j in range(k)]
    zmax = f"greatest({', '.join(z)})"
    # first index of the max (numpy's argmax tie rule)
    pred = "CASE " + " ".join(f"WHEN {z[j]} = zmax THEN {j}" for j in range(k)) + " END"
    zy = "CASE label " + " ".join(f"WHEN {j} THEN {z[j]}" for j in range(k)) + " END"
    sum_exp = " + ".join(f"exp({z[j]} - zmax)" for j in range(k))
    sum_p2 = " + ".join(f"exp(2 * ({z[j]} - zmax))" for j in range(k))
    return f"""
    WITH base AS (
        SELECT *, {zmax} AS zmax FROM read_parquet('{glob}')
    ), s AS (
        SELECT label, {pred} AS pred, {zy} - zmax AS dy, {sum_exp} AS se, {sum_p2} AS sp2
        FROM base
    ), r AS (
        SELECT 1.0 / se AS conf, CAST(pred = label AS INTEGER) AS correct,
               (sp2 / (se * se)) - 2 * exp(dy) / se + 1 AS brier, ln(se) - dy AS nll
        FROM s
    ), b AS (
        SELECT least(CAST(floor(conf * {N_BINS}) AS INTEGER), {N_BINS - 1}) AS bin,
               count(*) AS cnt, sum(conf) AS sc, sum(correct) AS so
        FROM r GROUP BY bin
    ), tot AS (
        SELECT count(*) AS n, avg(correct) AS accuracy, avg(brier) AS brier, avg(nll) AS nll,
               sum(correct) AS n1
        FROM r
    ), ranked AS (
        SELECT correct, rank() OVER (ORDER BY conf) AS rlo,
               count(*) OVER (PARTITION BY conf) AS c
        FROM r
    ), auc AS (
        SELECT sum(CASE WHEN correct = 1 THEN rlo + (c - 1) / 2.0 ELSE 0 END) AS rs FROM ranked
    )
    SELECT tot.n, tot.accuracy, tot.brier, tot.nll,
           (SELECT sum(abs(so - sc)) FROM b) / tot.n AS ece,
           (SELECT max(abs(so / cnt - sc / cnt)) FROM b) AS mce,
           sqrt((SELECT sum((so - sc) * (so - sc) / cnt) FROM b) / tot.n) AS rms_ce,
           (auc.rs - tot.n1 * (tot.n1 + 1) / 2.0) / (tot.n1 * (tot.n - tot.n1)) AS auroc
    FROM tot, auc
    """


def run_duckdb(folder: Path, k: int) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    base = _current_rss_mb()
    t = time.perf_counter()
    row = con.execute(_sql(k, str(folder / "*.parquet"))).fetchone()
    dt = time.perf_counter() - t
    assert row is not None
    n, acc, brier, nll, ece, mce, rms, auroc = row
    m = {"accuracy": acc, "ece": ece, "mce": mce, "rms_ce": rms, "cw_ece": None,
         "brier": brier, "nll": nll, "auroc": auroc}  # fmt: skip
    return {"n": int(n), "time_s": dt, "rss_base_mb": base, "metrics": m,
            "version": duckdb.__version__}  # fmt: skip


def run_pandas(folder: Path, k: int) -> dict[str, Any]:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from calibkit import metrics as cm
    from calibkit._math import softmax

    base = _current_rss_mb()
    t = time.perf_counter()
    df = pd.read_parquet(folder)
    z = df[[f"logit_{j}" for j in range(k)]].to_numpy(dtype=np.float64)
    y = df["label"].to_numpy()
    del df
    p = softmax(z, axis=1)
    s, o = cm.binned_outcomes(p, y)
    m = {
        "accuracy": cm.accuracy(p, y),
        "ece": cm.ece(p, y, N_BINS),
        "mce": cm.mce(p, y, N_BINS),
        "rms_ce": cm.rms_ce(p, y, N_BINS),
        "cw_ece": cm.classwise_ece(p, y, N_BINS),
        "brier": cm.brier_score(p, y),
        "nll": cm.nll(z, y, from_logits=True),
        "auroc": float(roc_auc_score(o, s)),
    }
    dt = time.perf_counter() - t
    return {"n": len(y), "time_s": dt, "rss_base_mb": base, "metrics": m}


def _worker(args: argparse.Namespace) -> None:
    folder, k = Path(args.data), args.k
    if args.engine in ("calibkit", "calibkit-ray"):
        out = run_calibkit(folder, k, ray=args.engine == "calibkit-ray")
    elif args.engine == "duckdb":
        out = run_duckdb(folder, k)
    else:
        out = run_pandas(folder, k)
    out["peak_rss_mb"] = _rss_mb()
    print("RESULT " + json.dumps(out))


# ---------------------------------------------------------------------- driver
def _available_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    return float("inf")


def _run_engine(engine: str, folder: Path, k: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", engine, "--data", str(folder), "--k", str(k)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit code {proc.returncode}"}


def _fmt(v: Any, digits: int = 10) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000_000, help="rows per dataset (100M)")
    ap.add_argument("--classes", default="2,10", help="comma-separated K values (2,10)")
    ap.add_argument("--files", type=int, default=8, help="Parquet files per dataset (8)")
    ap.add_argument("--tmp", help="folder for the generated data (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    ap.add_argument("--ray", action="store_true", help="also run calibkit with ray=True")
    ap.add_argument("--skip", default="", help="engines to skip, comma-separated")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.engine = args.worker
        _worker(args)
        return
    if args.rows < 1 or args.files < 1:
        raise SystemExit("--rows and --files must be >= 1")
    ks = [int(x) for x in args.classes.split(",") if x.strip()]
    engines = ["calibkit", *(["calibkit-ray"] if args.ray else []), "duckdb", "pandas"]
    engines = [e for e in engines if e not in set(args.skip.split(","))]
    root = Path(args.tmp) if args.tmp else Path(tempfile.mkdtemp(prefix="calibkit_bench_"))
    print(
        f"# evaluate_large: {args.rows:,} rows, K in {ks}, {args.files} files; {os.cpu_count()} "
        f"CPUs, {_available_mb() / 1024:.1f} GiB available; data in {root}"
    )
    results: list[dict[str, Any]] = []
    try:
        for k in ks:
            folder = root / f"k{k}"
            t = time.perf_counter()
            n = write_data(folder, args.rows, k, args.files)
            size = sum(f.stat().st_size for f in folder.glob("*.parquet")) / 2**20
            print(f"\n## K = {k}: wrote {n:,} rows, {size:,.0f} MiB Parquet in "
                  f"{time.perf_counter() - t:.1f} s")  # fmt: skip
            runs: dict[str, dict[str, Any]] = {}
            for e in engines:
                if e == "pandas":
                    need = n * (k + 1) * 8 * 4 / 2**20
                    if need > 0.8 * _available_mb():
                        runs[e] = {"skipped": f"needs ~{need / 1024:.0f} GiB, "
                                   f"{_available_mb() / 1024:.0f} GiB available"}  # fmt: skip
                        continue
                runs[e] = _run_engine(e, folder, k)
            _report(k, n, runs)
            results.append({"k": k, "rows": n, "parquet_mib": size, "runs": runs})
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not args.keep and not args.tmp:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _report(k: int, n: int, runs: dict[str, dict[str, Any]]) -> None:
    print(f"{'engine':<14}{'time s':>9}{'peak RSS MiB':>14}{'RSS before MiB':>16}")
    for e, r in runs.items():
        if "skipped" in r or "error" in r:
            print(
                f"{e:<14}  {'skipped: ' + r['skipped'] if 'skipped' in r else 'error: ' + r['error']}"
            )
            continue
        print(f"{e:<14}{r['time_s']:>9.1f}{r['peak_rss_mb']:>14.0f}{r['rss_base_mb']:>16.0f}")
    ok = {e: r for e, r in runs.items() if "metrics" in r}
    print(f"\n{'metric':<10}" + "".join(f"{e:>16}" for e in ok) + f"{'max |diff|':>12}")
    worst_exact = 0.0
    for key in ORDER:
        vals = [r["metrics"][key] for r in ok.values()]
        got = [v for v in vals if v is not None]
        diff = max(got) - min(got) if len(got) > 1 else 0.0
        if key in EXACT:
            worst_exact = max(worst_exact, diff)
        print(f"{key:<10}" + "".join(f"{_fmt(v):>16}" for v in vals) + f"{diff:>12.1e}")
    for e, r in ok.items():
        if r.get("n") != n:
            print(f"!! {e} counted {r.get('n')} rows, expected {n}")
    bound = next((r["auroc_bound"] for e, r in ok.items() if e == "calibkit"), None)
    exact_auc = [r["metrics"]["auroc"] for e, r in ok.items() if not e.startswith("calibkit")]
    verdict = "OK" if worst_exact <= 1e-9 else "MISMATCH"
    print(f"exact metrics agree to {worst_exact:.1e} ({verdict}, tolerance 1e-9)")
    if bound is not None and exact_auc:
        err = max(abs(ok["calibkit"]["metrics"]["auroc"] - a) for a in exact_auc)
        print(f"calibkit AUROC (histogram) is {err:.1e} from the exact ones; stated bound {bound:.1e}"
              f" ({'within' if err <= bound + 1e-12 else 'OUTSIDE'})")  # fmt: skip


if __name__ == "__main__":
    main()
