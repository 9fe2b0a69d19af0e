"""Time the cascade's bin-edge search: 400 Optuna TPE trials x 10 repeated 80/20 splits on 10k
items and 3 models (paper 001, appendix 7.1), on synthetic scores.

    python benchmarks/cascade.py                  # 10k items, 3 models, 400 trials, 5 and 10 bins
    python benchmarks/cascade.py --n 2000 --trials 50 --storage memory journal

Prints one row per configuration: wall time of the whole search, time per trial, and the time of
one objective evaluation alone (Algorithms 1 + 2 on 10 splits, no Optuna), so the Optuna
overhead is visible.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic(n: int, accs: tuple[float, ...] = (0.7, 0.78, 0.86), seed: int = 0):
    """(n, K) binary P(y=1): model k right w.p. about accs[k], confidence informative."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = np.empty((n, len(accs)))
    for k, a in enumerate(accs):
        conf = 0.5 + 0.5 * rng.beta(2.0, 1.2, n)
        right = rng.random(n) < np.clip(conf * a / 0.8, 0, 1)
        p1 = np.where(y == 1, conf, 1 - conf)
        X[:, k] = np.where(right, p1, 1 - p1)
    return X, y


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=10_000, help="items")
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--bins", type=int, nargs="+", default=[5, 10])
    ap.add_argument(
        "--storage",
        nargs="+",
        choices=["memory", "journal", "sqlite"],
        default=["memory", "journal", "sqlite"],
        help="Optuna storages to time",
    )
    args = ap.parse_args(argv)

    from calibkit.ensemble import answers_confidences, quantile_edges
    from calibkit.ensemble.search import CascadeCV, search_edges

    X, y = synthetic(args.n)
    costs = [1.0, 3.0, 9.0]
    storages = args.storage
    rows = []
    t0 = time.perf_counter()
    cv = CascadeCV(X, y, costs=costs, n_splits=args.splits)
    t_pre = time.perf_counter() - t0
    for nb in args.bins:
        _, conf = answers_confidences(X)
        edges = quantile_edges(conf, nb)
        reps = 20
        t0 = time.perf_counter()
        for _ in range(reps):
            cv.evaluate(edges)
        t_eval = (time.perf_counter() - t0) / reps
        for st in storages:
            with tempfile.TemporaryDirectory() as d:
                url = {
                    "memory": None,
                    "journal": f"journal:{Path(d) / 'bench.log'}",
                    "sqlite": f"sqlite:///{Path(d) / 'bench.db'}",
                }[st]
                t0 = time.perf_counter()
                res = search_edges(
                    X,
                    y,
                    n_bins=nb,
                    n_trials=args.trials,
                    n_splits=args.splits,
                    costs=costs,
                    storage=url,
                    seed=0,
                )
                wall = time.perf_counter() - t0
            rows.append((nb, st, wall, wall / args.trials, t_eval, res.cv.f1, res.cv.relative_cost))

    import optuna

    print(
        f"cascade edge search: n={args.n} items, K=3 models, {args.trials} TPE trials x "
        f"{args.splits} splits (80/20); optuna {optuna.__version__}; "
        f"precompute {t_pre * 1e3:.0f} ms"
    )
    print(
        f"{'bins':>4} | {'storage':>7} | {'total s':>8} | {'ms/trial':>8} | "
        f"{'objective ms':>12} | {'best CV F1':>10} | {'rel. cost':>9}"
    )
    print("-" * 80)
    for nb, st, wall, per, ev, f1, rc in rows:
        print(
            f"{nb:>4} | {st:>7} | {wall:>8.1f} | {per * 1e3:>8.1f} | {ev * 1e3:>12.1f} | "
            f"{f1:>10.4f} | {rc:>8.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
