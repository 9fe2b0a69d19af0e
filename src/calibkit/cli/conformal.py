"""``calibkit conformal FILE --alpha 0.1``: split conformal prediction sets with guaranteed coverage.

Each item gets the set of labels that contains its true label with probability >= 1 - alpha
(over exchangeable calibration and test items). Methods: lac (threshold on the true-class
probability; smallest sets), aps (adaptive: cumulative mass), raps (APS with a penalty on long
tails); --mondrian gives 1 - alpha coverage within every true class; --randomized uses the
randomized APS/RAPS score (exact coverage, sets may be empty), seeded by --seed.

Calibration: --calib FILE calibrates on another labelled table and predicts sets for all of
FILE (labels optional); otherwise a seeded random --calib-frac of FILE (labelled) calibrates and
the rest is predicted and evaluated. Works on any scored table, including the MCQ letter scores
of 'calibkit score --task mcq' (classes A, B, C, ...).

Examples::

    calibkit conformal scores.csv --alpha 0.1 --method aps -o sets.csv --plot sizes.png
    calibkit conformal test.parquet --calib dev.parquet --alpha 0.05 --mondrian
    calibkit conformal arc.parquet --alpha 0.1 --calib-frac 0.5 --json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from calibkit.cli.evaluate import _json_value, add_score_arguments, load_scores, plain_description

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "conformal",
        help="conformal prediction sets with guaranteed coverage (LAC / APS / RAPS)",
        description=plain_description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="scored table: .csv .tsv .jsonl .json .parquet")
    p.add_argument("--alpha", type=float, default=0.1, help="miscoverage; coverage >= 1-alpha")
    p.add_argument("--method", choices=("lac", "aps", "raps"), default="lac")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--calib-frac", type=float, help="share of FILE used for calibration (default 0.5)"
    )
    g.add_argument("--calib", metavar="FILE", help="labelled calibration table")
    p.add_argument("--mondrian", action="store_true", help="class-conditional coverage")
    p.add_argument("--randomized", action="store_true", help="randomized APS/RAPS scores")
    p.add_argument("--k-reg", type=int, default=1, help="RAPS: ranks free of penalty (1)")
    p.add_argument("--lam", type=float, default=0.01, help="RAPS: penalty per extra rank (0.01)")
    p.add_argument("--seed", type=int, default=0, help="split and randomization seed (0)")
    p.add_argument("-o", "--output", help="write the sets: id, set (labels joined by |), size")
    p.add_argument("--plot", metavar="PATH", help="set-size histogram (.png/.svg/.pdf)")
    add_score_arguments(p)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calibkit.decisions import SplitConformal, evaluate_sets

    if not 0.0 < args.alpha < 1.0:
        raise ValueError(f"--alpha must be in (0, 1); got {args.alpha}")
    if args.lam < 0:
        raise ValueError(f"--lam must be >= 0; got {args.lam}")
    if args.k_reg < 0:
        raise ValueError(f"--k-reg must be >= 0; got {args.k_reg}")
    cal, target, split = _calibration_split(args)
    cp = SplitConformal(
        args.alpha,
        args.method,
        randomized=args.randomized,
        mondrian=args.mondrian,
        k_reg=args.k_reg,
        lam=args.lam,
        seed=args.seed,
    ).fit(cal)
    sets = cp.predict_sets(target)
    size = sets.sum(axis=1)
    report = None
    if target.labels is not None:
        report = evaluate_sets(sets, target.labels)
    q = cp.quantile_
    summary: dict[str, Any] = {
        "file": str(args.file),
        "calibration": str(args.calib) if args.calib else split,
        "method": args.method,
        "alpha": args.alpha,
        "mondrian": args.mondrian,
        "randomized": args.randomized,
        "n_calibration": cp.n_calibration_,
        "n": len(target),
        "quantile": q.tolist() if np.ndim(q) else float(q),
        "mean_size": float(size.mean()),
        "size_counts": {
            str(i): int(c) for i, c in enumerate(np.bincount(size, minlength=target.n_classes + 1))
        },
    }
    if report is not None:
        summary["report"] = report.to_dict(target.classes)
    if cp.infinite_quantile:
        summary["warning"] = (
            "too few calibration items for this alpha (need n >= 1/alpha - 1 per quantile): "
            "some sets are the full label set"
        )
    if args.output:
        summary["output"] = _write_sets(target, sets, size, args.output)
    if args.plot:
        from calibkit.plots import save_figure
        from calibkit.plots.decisions import set_size_histogram

        fig = set_size_histogram(sets, target.labels, alpha=args.alpha)
        save_figure(fig, args.plot, close=True)
        summary["plot"] = str(args.plot)
    if args.json:
        print(json.dumps(json.loads(json.dumps(summary, default=_json_value)), indent=2))
        return 0
    _print(summary, target.classes)
    return 0


def _calibration_split(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any] | None]:
    """``(calibration Scores, target Scores, split)``: ``--calib`` or a seeded split of FILE."""
    if args.calib:
        cal = load_scores(args, args.calib, require_labels=True)
        target = load_scores(args, args.file, require_labels=False)
        if set(cal.classes) != set(target.classes):
            raise ValueError(
                f"--calib classes {list(cal.classes)} differ from {args.file}'s {list(target.classes)}"
            )
        if cal.classes != target.classes:
            from calibkit.cli.apply import align_classes

            target = align_classes(target, list(cal.classes), cal.n_classes)
        split = None
    else:
        frac = 0.5 if args.calib_frac is None else args.calib_frac
        if not 0.0 < frac < 1.0:
            raise ValueError(f"--calib-frac must be in (0, 1); got {frac}")
        full = load_scores(args, args.file, require_labels=True)
        n = len(full)
        n_cal = round(frac * n)
        if n_cal < 1 or n_cal >= n:
            raise ValueError(f"--calib-frac {frac} leaves no calibration or no test rows of {n}")
        perm = np.random.default_rng(args.seed).permutation(n)
        cal, target = full.subset(np.sort(perm[:n_cal])), full.subset(np.sort(perm[n_cal:]))
        split = {"calibration": n_cal, "test": n - n_cal, "seed": args.seed}
    return cal, target, split


def _write_sets(target: Any, sets: Any, size: Any, output: str) -> str:
    """Write one row per item (id, set, size, and label/covered when labelled); returns the path."""
    import pandas as pd

    from calibkit.io import write_table

    names = np.asarray(target.classes, dtype=object)
    cols: dict[str, Any] = {
        "id": target.ids,
        "set": ["|".join(names[row]) for row in sets],
        "size": size,
    }
    if target.labels is not None:
        cols["label"] = names[target.labels]
        cols["covered"] = sets[np.arange(len(target)), target.labels]
    return str(write_table(pd.DataFrame(cols), output))


def _print(s: dict[str, Any], classes: tuple[str, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    cal = s["calibration"]
    where = (
        cal if isinstance(cal, str) else f"{cal['calibration']} random rows (seed {cal['seed']})"
    )
    kind = (
        s["method"]
        + (" (Mondrian)" if s["mondrian"] else "")
        + (" randomized" if s["randomized"] else "")
    )
    con.print(
        f"[bold]{s['file']}[/]: {kind} sets at alpha={s['alpha']:g}, calibrated on {where} "
        f"({s['n_calibration']} items); {s['n']} items predicted"
    )
    if "warning" in s:
        con.print(f"[yellow]warning:[/] {s['warning']}")
    r = s.get("report")
    if r is not None:
        con.print(
            f"coverage {r['coverage']:.4f} (target >= {1 - s['alpha']:.4f}); mean set size "
            f"{r['mean_size']:.3f}; empty {r['empty']:.1%}; singletons {r['singleton']:.1%}"
        )
        t = Table(header_style="bold")
        t.add_column("class")
        t.add_column("coverage", justify="right")
        for c in classes[:30]:
            v = r["class_coverage"][c]
            t.add_row(c, "-" if v is None else f"{v:.4f}")
        con.print(t)
    else:
        con.print(f"mean set size {s['mean_size']:.3f} (no labels: coverage not measured)")
    sizes = ", ".join(f"{k}: {v}" for k, v in s["size_counts"].items() if v)
    con.print(f"set sizes: {sizes}")
    if "output" in s:
        con.print(f"sets: [cyan]{s['output']}[/]")
    if "plot" in s:
        con.print(f"set-size histogram: [cyan]{s['plot']}[/]")
