"""``calibkit fit FILE --method M -o cal.json``: fit a calibrator on a labelled scored table.

Prints the metrics before and after calibration on the fitting data (and on ``--eval FILE`` when
given: fit on a dev split, check on a test split), then saves the calibrator as JSON for
``calibkit apply``; ``calibkit.calibrators.load(path)`` reads it back in Python.

Scaling methods (temperature, vector, matrix, platt) read logits, the others probabilities
(probability columns are converted with ``calibkit.probs_to_logits`` / back with softmax). On a
2-class file the one-vs-rest methods (platt, isotonic, histogram, beta) fit one map on the
second class, like scikit-learn's ``CalibratedClassifierCV``.

Examples::

    calibkit fit examples/sst2_dev_scores.csv --method temperature -o cal.json
    calibkit fit dev.parquet --method matrix --param reg_lambda=0.01 -o cal.json --eval test.parquet
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from calibkit.cli.evaluate import (
    _json_value,
    add_score_arguments,
    compute_metrics,
    load_scores,
    metrics_table,
    plain_description,
)
from calibkit.io import atomic_write
from calibkit.scores import Scores

__all__ = ["METHODS", "add_parser", "fit_on_scores", "run", "save_with_classes"]

METHODS = ("temperature", "vector", "matrix", "platt", "isotonic", "histogram", "beta", "dirichlet")

#: key under which the CLI records the class names in the calibrator JSON
CLI_KEY = "calibkit_cli"


def _param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param expects KEY=VALUE; got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key.isidentifier():
        raise argparse.ArgumentTypeError(f"--param key {key!r} is not a valid name")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def fit_on_scores(method: str, scores: Scores, params: dict[str, Any] | None = None) -> Any:
    """``make_calibrator(method, **params).fit_scores(scores)``: fit on labelled Scores.

    The calibrator reads ``scores.logits`` or ``scores.probs`` by its ``input_kind``; its
    ``calibrate(other_scores)`` then applies it to Scores of the same classes.
    """
    from calibkit.calibrators import make_calibrator

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    cal = make_calibrator(method, **(params or {}))
    return cal.fit_scores(scores)


def save_with_classes(cal: Any, path: str | Path, scores: Scores) -> Path:
    """Save ``cal`` like ``cal.save(path)`` plus the class names under :data:`CLI_KEY`, atomically.

    The extra key is ignored by ``calibkit.calibrators.load``; ``calibkit apply`` uses it to match
    (and reorder) the score columns of the file it calibrates.
    """
    d = cal.to_dict()
    d[CLI_KEY] = {
        "classes": list(scores.classes),
        "score_kind": scores.meta.get("score_kind"),
        "score_columns": scores.meta.get("score_columns"),
    }
    p = Path(path)
    with atomic_write(p) as tmp:
        tmp.write_text(json.dumps(d, indent=1, allow_nan=True))
    return p


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fit",
        help="fit a calibrator on a scored file and save it as JSON",
        description=plain_description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="labelled scored table: .csv .tsv .jsonl .json .parquet")
    p.add_argument("--method", "-m", choices=METHODS, default="temperature", help="calibrator")
    p.add_argument("-o", "--output", required=True, help="calibrator JSON to write")
    p.add_argument(
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="KEY=VALUE",
        help="calibrator hyper-parameter (JSON value), repeatable, e.g. --param n_bins=10",
    )
    p.add_argument("--eval", dest="eval_file", metavar="FILE", help="also report on this file")
    add_score_arguments(p)
    p.add_argument("--bins", type=int, default=15, help="bins of the reported ECEs (default 15)")
    p.add_argument("--plot", metavar="PATH", help="before/after reliability diagrams (.png/.svg)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    p.set_defaults(func=run)


def _before_after(
    scores: Scores, cal: Any, n_bins: int
) -> tuple[Scores, dict[str, float], dict[str, float]]:
    after_scores = cal.calibrate(scores)
    y = scores.require_labels()
    before, _ = compute_metrics(scores.probs, y, n_bins=n_bins)
    after, _ = compute_metrics(after_scores.probs, y, n_bins=n_bins)
    return after_scores, before, after


def run(args: argparse.Namespace) -> int:
    if args.bins < 1:
        raise ValueError(f"--bins must be >= 1; got {args.bins}")
    scores = load_scores(args, args.file, require_labels=True)
    params = dict(args.param)
    cal = fit_on_scores(args.method, scores, params)
    out = save_with_classes(cal, args.output, scores)
    shown, shown_cal, before, after = (scores, *_before_after(scores, cal, args.bins))
    report: dict[str, Any] = {
        "file": str(args.file),
        "method": args.method,
        "params": params,
        "output": str(out),
        "n": len(scores),
        "classes": list(scores.classes),
        "fit": {"before": before, "after": after},
    }
    eval_scores = None
    if args.eval_file:
        eval_scores = load_scores(args, args.eval_file, require_labels=True)
        if eval_scores.classes != scores.classes:
            raise ValueError(
                f"--eval file classes {eval_scores.classes} differ from {scores.classes}"
            )
        eval_cal, eb, ea = _before_after(eval_scores, cal, args.bins)
        shown, shown_cal = eval_scores, eval_cal
        report["eval"] = {
            "file": str(args.eval_file),
            "n": len(eval_scores),
            "before": eb,
            "after": ea,
        }
    if args.plot:
        from calibkit.plots import compare_reliability, save_figure

        where = Path(args.eval_file if eval_scores is not None else args.file).name
        fig = compare_reliability(
            {"uncalibrated": shown, args.method: shown_cal},
            n_bins=args.bins,
            title=where,
        )
        save_figure(fig, args.plot, close=True)
        report["plot"] = str(args.plot)
    if args.json:
        clean = json.loads(json.dumps(report, default=_json_value))
        print(json.dumps(clean, indent=2))
        return 0

    from rich.console import Console

    con = Console()
    con.print(
        f"fitted [bold]{args.method}[/] on [bold]{args.file}[/] ({len(scores)} items, "
        f"{scores.n_classes} classes) -> [cyan]{out}[/]"
    )
    skip = {"n_classes_", "binary_input_"}
    fitted = {
        k: v
        for k, v in vars(cal).items()
        if k.endswith("_") and k not in skip and np.ndim(v) == 0 and not isinstance(v, str)
    }
    if fitted:
        con.print("  " + ", ".join(f"{k} = {_short(v)}" for k, v in sorted(fitted.items())))
    con.print(f"\n[bold]On the fitting data[/] ({args.file})")
    con.print(metrics_table([("Before", before), ("After", after)]))
    if "eval" in report:
        e = report["eval"]
        con.print(f"\n[bold]On held-out data[/] ({args.eval_file})")
        con.print(metrics_table([("Before", e["before"]), ("After", e["after"])]))
    if args.plot:
        con.print(f"before/after diagram: [cyan]{args.plot}[/]")
    return 0


def _short(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.4g}"
    return str(v)
