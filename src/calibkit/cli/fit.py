"""``calibkit fit FILE --method M -o cal.json``: fit a calibrator on a labelled scored table.

Prints the metrics before and after calibration on the fitting data (and on ``--eval FILE`` when
given: fit on a dev split, check on a test split), then saves the calibrator as JSON for
``calibkit apply``; ``calibkit.calibrators.load(path)`` reads it back in Python.

The diagnostics of ``calibkit diagnose`` on the fit (scores or a fit that turn the ranking
around, a temperature at its search bound, too few rows for the parameters or for the ECE
precision, absent classes; with ``--eval`` also a label prior that differs between the two
files) are printed as ``warning:`` lines on stderr and listed under ``"warnings"`` (in full under
``"diagnostics"``) in --json.

The methods are the registered calibrators (``calibkit.calibrators.CALIBRATORS``; aliases
such as ``sigmoid`` or ``ts`` are accepted). Scaling methods (temperature, vector, matrix, platt)
read logits, the others probabilities (probability columns are converted with
``calibkit.probs_to_logits`` / back with softmax). On a 2-class file the one-vs-rest methods
(platt, isotonic, histogram, beta) fit one map on the second class, like scikit-learn's
``CalibratedClassifierCV``. ``-m auto`` chooses among them (and ``none``) by cross-validation
(``calibkit.calibrators.select``), prints every candidate's score (mean and standard deviation
over the folds) and saves the winner with those scores.

Examples::

    calibkit fit examples/sst2_dev_scores.csv --method temperature -o cal.json
    calibkit fit dev.parquet --method matrix --param reg_lambda=0.01 -o cal.json --eval test.parquet
    calibkit fit dev.csv -m auto --param 'candidates=["temperature","isotonic"]' -o cal.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from calibkit._atomic import atomic_write
from calibkit._json import json_ready
from calibkit.cli._args import (
    MAX_BINS,
    add_metrics_argument,
    add_score_arguments,
    check_bins,
    check_figure_path,
    check_not_same_file,
    check_output_file,
    esc,
    load_scored,
    metric_names_arg,
    plain_description,
)
from calibkit.cli._tables import metrics_table, selection_table
from calibkit.evaluation import before_after, calibrated_view
from calibkit.scores import Scores

__all__ = [
    "add_parser",
    "calibrated_view",
    "fit_on_scores",
    "method_name",
    "run",
    "save_with_classes",
]

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


def method_name(text: str) -> str:
    """``--method`` value -> registry name (aliases resolved); an unknown one is an argparse
    error listing the registered calibrators."""
    from calibkit.calibrators.registry import canonical_name

    try:
        return canonical_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def fit_on_scores(method: str, scores: Scores, params: dict[str, Any] | None = None) -> Any:
    """``make_calibrator(method, **params).fit_scores(scores)``: fit on labelled Scores.

    ``method`` is a registered calibrator name or alias (``ValueError`` otherwise). The
    calibrator reads ``scores.logits`` or ``scores.probs`` by its ``input_kind``; its
    ``calibrate(other_scores)`` then applies it to Scores of the same classes.
    """
    from calibkit.calibrators import make_calibrator

    return make_calibrator(method, **(params or {})).fit_scores(scores)


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
    from calibkit.calibrators import available_calibrators

    p.add_argument(
        "--method",
        "-m",
        type=method_name,
        choices=available_calibrators(),
        metavar="METHOD",
        default="temperature",
        help=f"a registered calibrator: {', '.join(available_calibrators())} (default "
        "temperature; auto: chosen by cross-validation)",
    )
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
    from calibkit.formats.lm_eval import add_format_argument

    add_format_argument(p)  # --format lm-eval: lm_eval --log_samples files
    p.add_argument(
        "--bins",
        type=int,
        default=15,
        help=f"bins of the reported ECEs, 1..{MAX_BINS} (default 15)",
    )
    add_metrics_argument(p)
    p.add_argument("--plot", metavar="PATH", help="before/after reliability diagrams (.png/.svg)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    p.set_defaults(func=run)


def _checked_inputs(
    args: argparse.Namespace,
) -> tuple[Scores, Any, Scores | None, Any]:
    """Everything that can fail cheaply, checked before fitting and before writing anything;
    ``(scores, file probabilities, eval scores, eval file probabilities)``."""
    inputs = [("input file", args.file)] + (
        [("--eval file", args.eval_file)] if args.eval_file else []
    )
    check_not_same_file(args.output, inputs)
    if args.plot:
        check_figure_path(args.plot, "--plot")
        check_not_same_file(args.plot, inputs, option="--plot")
        check_not_same_file(args.plot, [("calibrator output", args.output)], option="--plot")
    scores, file_probs = load_scored(args, args.file, require_labels=True)
    eval_scores = None
    eval_probs = None
    if args.eval_file:
        eval_scores, eval_probs = load_scored(args, args.eval_file, require_labels=True)
        if eval_scores.classes != scores.classes:
            raise ValueError(
                f"--eval file {args.eval_file} has classes {list(eval_scores.classes)} but "
                f"{args.file} has {list(scores.classes)}"
            )
    check_output_file(args.output, "calibrator output")
    if args.plot:
        check_output_file(args.plot, "--plot")
    return scores, file_probs, eval_scores, eval_probs


def run(args: argparse.Namespace) -> int:
    from calibkit.calibrators.registry import canonical_name

    check_bins(args.bins)
    method = canonical_name(args.method)
    names = metric_names_arg(args.metrics)
    scores, file_probs, eval_scores, eval_probs = _checked_inputs(args)
    params = dict(args.param)
    cal = fit_on_scores(method, scores, params)
    kw: dict[str, Any] = {"names": names, "n_bins": args.bins}
    shown, (shown_cal, before, after) = scores, before_after(cal, scores, file_probs, **kw)
    from calibkit.calibrators.diagnostics import diagnose
    from calibkit.cli.evaluate import diagnostic_warnings

    warnings: list[str] = []
    findings = diagnose(scores, cal, scores)
    diagnostic_warnings(findings, warnings)
    diagnostics: dict[str, Any] = {"fit": [f.to_dict() for f in findings]}
    if eval_scores is not None:
        eval_findings = diagnose(eval_scores, cal, scores)
        # what the fit already said is not repeated for the --eval data
        seen = {(f.code, f.message) for f in findings}
        eval_findings = [f for f in eval_findings if (f.code, f.message) not in seen]
        diagnostic_warnings(eval_findings, warnings, prefix="--eval data: ")
        diagnostics["eval"] = [f.to_dict() for f in eval_findings]
    report: dict[str, Any] = {
        "file": str(args.file),
        "method": method,
        "params": params,
        "output": str(args.output),
        "n": len(scores),
        "classes": list(scores.classes),
        "fit": {"before": before, "after": after},
    }
    selection = _selection(cal)
    if selection is not None:
        report["selection"] = selection
    if eval_scores is not None:
        eval_cal, eb, ea = before_after(cal, eval_scores, eval_probs, **kw)
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
        label = method if selection is None else f"auto ({selection['selected']})"
        fig = compare_reliability(
            {"uncalibrated": shown, label: shown_cal},
            n_bins=args.bins,
            title=where,
        )
        save_figure(fig, args.plot, close=True)
        report["plot"] = str(args.plot)
    report["warnings"] = warnings
    report["diagnostics"] = diagnostics
    out = save_with_classes(cal, args.output, scores)
    if args.json:
        print(json.dumps(json_ready(report), indent=2))
    else:
        _print_report(args, cal, report, out, names)
    return 0


def _print_report(
    args: argparse.Namespace, cal: Any, report: dict[str, Any], out: Path, names: list[str]
) -> None:
    from rich.console import Console

    con = Console()
    before, after = report["fit"]["before"], report["fit"]["after"]
    selection = report.get("selection")
    con.print(
        f"fitted [bold]{report['method']}[/] on [bold]{esc(args.file)}[/] ({report['n']} "
        f"items, {len(report['classes'])} classes) -> [cyan]{esc(out)}[/]"
    )
    if selection is not None:
        con.print(selection_table(cal))
        con.print(f"selected: [bold]{esc(selection['selected'])}[/], refitted on all rows")
    fitted = _fitted_scalars(getattr(cal, "calibrator_", cal))
    if fitted:
        con.print("  " + ", ".join(f"{k} = {_short(v)}" for k, v in sorted(fitted.items())))
    con.print(f"\n[bold]On the fitting data[/] ({esc(args.file)})")
    con.print(metrics_table([("Before", before), ("After", after)], names=names))
    if "eval" in report:
        e = report["eval"]
        con.print(f"\n[bold]On held-out data[/] ({esc(args.eval_file)})")
        con.print(metrics_table([("Before", e["before"]), ("After", e["after"])], names=names))
    if args.plot:
        con.print(f"before/after diagram: [cyan]{esc(args.plot)}[/]")


def _selection(cal: Any) -> dict[str, Any] | None:
    """What ``-m auto`` chose and why (``None`` for another calibrator): scoring, folds, the
    winner and every candidate's cross-validated mean and standard deviation, best first."""
    if not hasattr(cal, "cv_results_") or not hasattr(cal, "summary_rows"):
        return None
    return {
        "scoring": cal.scoring,
        "cv": cal.cv,
        "selected": cal.selected_,
        "candidates": cal.summary_rows(),
    }


def _fitted_scalars(cal: Any) -> dict[str, Any]:
    """The fitted numbers worth one line (``temperature_ = 1.31``): scalar attributes only."""
    skip = {"n_classes_", "binary_input_"}
    return {
        k: v
        for k, v in vars(cal).items()
        if k.endswith("_")
        and not k.startswith("_")
        and k not in skip
        and isinstance(v, int | float | np.number)
        and not isinstance(v, bool)
    }


def _short(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.4g}"
    return str(v)
