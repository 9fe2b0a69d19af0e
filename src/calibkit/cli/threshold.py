"""``calibkit threshold``: auto-label at a certified error rate, and apply the certified policy.

Three forms:

    calibkit threshold FILE --max-error E [--delta D] [-o policy.json]
        certify a confidence threshold on the labelled scored table FILE: with probability
        >= 1 - D over this calibration sample, the error rate among auto-labeled items is <= E
        (Learn-then-Test, fixed-sequence testing; --rule crc bounds the expected share of all
        items auto-labeled wrongly instead). Confidence is the top-label probability. Prints the
        threshold, the coverage with its interval, the calibration error and the labelled items
        needed; refuses (exit 2) when nothing can be certified and says how many would be needed.
    calibkit threshold apply POLICY FILE -o labeled.csv
        label the rows of FILE whose confidence reaches the threshold (decision "auto") and mark
        the rest "review"; POLICY may also be a certified cascade (then give one file per model).
    calibkit threshold cascade CASCADE_POLICY FILE [FILE ...] --max-error E [-o certified.json]
        certify each stage of a cascade trained by 'calibkit cascade train' on labelled Scores
        files (one per model, cheapest first, items NOT used to train it) and compare its cost
        and F1 with the trained policy.

Examples::

    calibkit threshold dev_scores.csv --max-error 0.02 --delta 0.05 -o policy.json --plot risk.png
    calibkit threshold apply policy.json new_scores.csv -o labeled.csv --review-out review.csv
    calibkit threshold cascade policy.json zs.parquet fs.parquet --max-error 0.05 -o cert.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from calibkit.cli.evaluate import _json_value, add_score_arguments, load_scores, plain_description

__all__ = ["add_parser", "run"]

_USAGE = (
    "calibkit threshold FILE --max-error E [--delta D] [-o policy.json] [options]\n"
    "       calibkit threshold apply POLICY FILE [FILE ...] -o labeled.csv [options]\n"
    "       calibkit threshold cascade CASCADE_POLICY FILE [FILE ...] --max-error E [options]"
)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "threshold",
        help="certify an auto-labeling threshold (error <= E with probability 1-D) and apply it",
        description=plain_description(__doc__),
        usage=_USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="ARG",
        help="FILE | apply POLICY FILE [FILE ...] | cascade CASCADE_POLICY FILE [FILE ...]",
    )
    p.add_argument(
        "--max-error", type=float, help="epsilon: allowed error rate among auto-labeled items"
    )
    p.add_argument(
        "--class-max-error",
        action="append",
        default=[],
        metavar="CLASS=E",
        help="with --by-class: a different epsilon for one predicted class (repeatable)",
    )
    p.add_argument(
        "--delta", type=float, default=0.05, help="failure probability of the guarantee (0.05)"
    )
    p.add_argument(
        "--rule",
        choices=("ltt", "crc"),
        default="ltt",
        help="ltt: error among accepted <= E w.p. 1-D; crc: E[accepted and wrong] <= E",
    )
    p.add_argument(
        "--method",
        choices=("binomial", "hoeffding-bentkus"),
        default="binomial",
        help="LTT p-value: exact binomial (Clopper-Pearson) or Hoeffding-Bentkus",
    )
    p.add_argument(
        "--by-class", action="store_true", help="one threshold per predicted class (delta / K each)"
    )
    p.add_argument("--grid-size", type=int, default=1000, help="thresholds tested (1000)")
    p.add_argument("--ci-level", type=float, default=0.95, help="level of the coverage interval")
    p.add_argument("-o", "--output", help="policy JSON (certify, cascade) or labeled table (apply)")
    p.add_argument("--eval", dest="eval_files", nargs="+", metavar="FILE", help="held-out check")
    p.add_argument("--plot", metavar="PATH", help="risk-coverage curve with the certified point")
    p.add_argument("--review-out", metavar="PATH", help="apply: also write the rows needing review")
    p.add_argument(
        "--guarantee",
        choices=("auto", "batch", "population"),
        default="auto",
        help="apply: 'batch' certifies the error realised on this file's own auto-labeled items "
        "(exchangeable with the calibration items); 'population' uses the saved threshold, which "
        "bounds the error rate in the population; 'auto' (default) is batch wherever the policy "
        "supports it (global LTT policies), else population",
    )
    p.add_argument(
        "--batch",
        dest="guarantee",
        action="store_const",
        const="batch",
        help="apply: same as --guarantee batch",
    )
    p.add_argument("--stages", help="cascade: 1-based stages to certify, e.g. 1,2 (all but last)")
    p.add_argument(
        "--mode",
        choices=("restrict", "replace"),
        default="restrict",
        help="cascade: certify the policy's exits (restrict) or let a stage exit any item (replace)",
    )
    p.add_argument("--costs", help="cascade: per-call costs '1,3,10' (default: the policy's)")
    p.add_argument("--average", choices=["binary", "macro", "micro"], default="binary")
    p.add_argument("--pos-label", type=int, default=1)
    add_score_arguments(p)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    p.set_defaults(func=run)


def _method(args: argparse.Namespace) -> str:
    return "hoeffding_bentkus" if args.method == "hoeffding-bentkus" else "binomial"


def _need_max_error(args: argparse.Namespace) -> float:
    if args.max_error is None:
        raise ValueError("--max-error is required (the error rate to certify, e.g. 0.02)")
    if not 0.0 < args.max_error < 1.0:
        raise ValueError(f"--max-error must be in (0, 1); got {args.max_error}")
    return float(args.max_error)


def _check_common(args: argparse.Namespace) -> None:
    if not 0.0 < args.delta < 1.0:
        raise ValueError(f"--delta must be in (0, 1); got {args.delta}")
    if not 0.0 < args.ci_level < 1.0:
        raise ValueError(f"--ci-level must be in (0, 1); got {args.ci_level}")
    if args.grid_size < 3:
        raise ValueError(f"--grid-size must be >= 3; got {args.grid_size}")


def run(args: argparse.Namespace) -> int:
    _check_common(args)
    first = args.inputs[0]
    if first == "apply" and (args.max_error is not None or args.by_class):
        raise ValueError("--max-error / --by-class belong to certification, not to 'apply'")
    if args.guarantee != "auto" and first != "apply":
        raise ValueError(
            "--guarantee/--batch apply a saved policy: calibkit threshold apply POLICY FILE"
        )
    if first == "apply":
        if len(args.inputs) < 3:
            raise ValueError("usage: calibkit threshold apply POLICY FILE [FILE ...] -o OUT")
        return _run_apply(args, args.inputs[1], args.inputs[2:])
    if first == "cascade":
        if len(args.inputs) < 3:
            raise ValueError("usage: calibkit threshold cascade CASCADE_POLICY FILE [FILE ...]")
        from calibkit.cli.threshold_cascade import _run_cascade

        return _run_cascade(args, args.inputs[1], args.inputs[2:])
    if len(args.inputs) != 1:
        raise ValueError(
            f"give one calibration FILE (got {len(args.inputs)}: {' '.join(args.inputs)}); "
            "to apply a policy use 'calibkit threshold apply POLICY FILE'"
        )
    return _run_certify(args, first)


# ---------------------------------------------------------------------- certify
def _class_eps(args: argparse.Namespace, classes: tuple[str, ...], eps: float) -> Any:
    if not args.class_max_error:
        return eps
    if not args.by_class:
        raise ValueError("--class-max-error needs --by-class")
    out = {c: eps for c in classes}
    for item in args.class_max_error:
        if "=" not in item:
            raise ValueError(f"--class-max-error expects CLASS=E; got {item!r}")
        c, v = item.rsplit("=", 1)
        if c not in out:
            raise ValueError(
                f"--class-max-error: {c!r} is not a class; classes are {list(classes)}"
            )
        try:
            out[c] = float(v)
        except ValueError:
            raise ValueError(f"--class-max-error {item!r}: {v!r} is not a number") from None
    return out


def _run_certify(args: argparse.Namespace, path: str) -> int:
    import warnings

    from calibkit.decisions import certify_threshold, threshold_grid

    eps = _need_max_error(args)
    scores = load_scores(args, path, require_labels=True)
    with warnings.catch_warnings():
        # classes that stay uncertified are shown as "never" in the table
        warnings.simplefilter("ignore", UserWarning)
        policy = certify_threshold(
            scores,
            max_error=_class_eps(args, scores.classes, eps),
            delta=args.delta,
            rule=args.rule,
            method=_method(args),
            by_class=args.by_class,
            grid=threshold_grid(scores.n_classes, args.grid_size),
            ci_level=args.ci_level,
        )
    out_path = policy.save(args.output) if args.output else None
    summary: dict[str, Any] = {"file": str(path), "policy": policy.to_dict()}
    if out_path is not None:
        summary["output"] = str(out_path)
    held: list[dict[str, Any]] = []
    test_conf = test_wrong = None
    for ef in args.eval_files or []:
        es = load_scores(args, ef, require_labels=True)
        dec = policy.apply(es)
        y = es.require_labels()
        acc = dec.accepted
        wrong = dec.prediction != y
        held.append(
            {
                "file": str(ef),
                "n": len(es),
                "coverage": dec.coverage,
                "n_accepted": int(acc.sum()),
                "n_errors": int(wrong[acc].sum()),
                "error": float(wrong[acc].mean()) if acc.any() else None,
            }
        )
        test_conf, test_wrong = dec.confidence, wrong
    if held:
        summary["eval"] = held
    if args.plot:
        from calibkit.plots import save_figure
        from calibkit.plots.decisions import risk_coverage_plot

        if policy.by_class:
            raise ValueError("--plot draws the global policy; drop --by-class to plot")
        fig = risk_coverage_plot(
            policy, test_confidence=test_conf, test_wrong=test_wrong, title=Path(path).name
        )
        save_figure(fig, args.plot, close=True)
        summary["plot"] = str(args.plot)
    if args.json:
        print(json.dumps(json.loads(json.dumps(summary, default=_json_value)), indent=2))
        return 0
    _print_policy(policy, path, out_path, held, args.plot)
    return 0


def _fmt_n(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{int(x):,}"


def _print_policy(
    policy: Any, path: str, out: Path | None, held: list[dict[str, Any]], plot: str | None
) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(
        f"[bold]{path}[/]: {policy.n_calibration} labelled calibration items, "
        f"{policy.n_classes} classes; confidence = top-label probability"
    )
    con.print(f"guarantee: {policy.guarantee()}")
    if not policy.by_class:
        r = policy.report
        lines = [
            f"threshold     {r.threshold:.6g}  (auto-label when confidence >= threshold)",
            f"coverage      {r.coverage:.2%} auto-labeled ({r.n_accepted}/{r.n}), "
            f"{policy.ci_level:.0%} CI [{r.coverage_ci[0]:.2%}, {r.coverage_ci[1]:.2%}]",
            f"calibration   {r.n_errors} errors among them: error rate {r.error:.4f}"
            if r.error is not None
            else "calibration   nothing accepted",
        ]
        if r.error_upper is not None:
            lines.append(
                f"error bound   {r.error_upper:.4f} ({1 - policy.delta:.0%} Clopper-Pearson)"
            )
        if policy.rule == "ltt":
            lines.append(
                f"items needed  {_fmt_n(r.n_needed)} labelled items certify this target at this "
                f"error rate and coverage (paper 000's Hoeffding n: {_fmt_n(r.n_needed_hoeffding)})"
            )
        for line in lines:
            con.print("  " + line)
    else:
        t = Table(header_style="bold")
        for col in ("class", "threshold", "accepted", "coverage", "errors", "bound", "needed"):
            t.add_column(col, justify="left" if col == "class" else "right")
        for name, r in zip(policy.classes, policy.per_class, strict=True):
            t.add_row(
                name,
                "never" if math.isinf(r.threshold) else f"{r.threshold:.6g}",
                f"{r.n_accepted}/{r.n}",
                f"{r.coverage:.1%}",
                str(r.n_errors),
                "-" if r.error_upper is None else f"{r.error_upper:.4f}",
                _fmt_n(r.n_needed),
            )
        con.print(t)
        con.print(
            f"overall: {policy.n_accepted}/{policy.n_calibration} auto-labeled "
            f"({policy.coverage:.1%}), {policy.n_errors} errors; 'needed': labelled items that "
            "would certify a class at its observed error rate and coverage"
        )
    for h in held:
        err = "-" if h["error"] is None else f"{h['error']:.4f}"
        con.print(
            f"held-out {h['file']}: {h['n_accepted']}/{h['n']} auto-labeled "
            f"({h['coverage']:.1%}), error among them {err}"
        )
    if out is not None:
        con.print(f"policy: [cyan]{out}[/]")
    if plot:
        con.print(f"risk-coverage curve: [cyan]{plot}[/]")


# ---------------------------------------------------------------------- apply
def _run_apply(args: argparse.Namespace, policy_path: str, files: list[str]) -> int:
    p = Path(policy_path)
    if not p.is_file():
        raise FileNotFoundError(f"policy file {p} not found")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p} is not valid JSON: {exc}") from None
    if not args.output:
        raise ValueError("apply needs -o/--output: the labeled table to write")
    if isinstance(d, dict) and d.get("format") == "calibkit-certified-cascade":
        from calibkit.cli.threshold_cascade import _apply_cascade

        return _apply_cascade(args, p, d, files)
    from calibkit.decisions import AutoLabelPolicy
    from calibkit.io import write_table

    policy = AutoLabelPolicy.from_dict(d, source=str(p))
    if len(files) != 1:
        raise ValueError(f"apply takes one FILE for an auto-labeling policy; got {len(files)}")
    path = files[0]
    df, scores = _read_apply_scores(args, policy, path)
    supports_batch = policy.curve is not None and policy.rule == "ltt" and not policy.by_class
    if args.guarantee == "batch" and not supports_batch:
        raise ValueError(
            f"{p}: the batch guarantee needs a global Learn-then-Test policy with its risk curve "
            "(certified without --by-class and with the LTT rule); use --guarantee population"
        )
    args.batch = args.guarantee == "batch" or (args.guarantee == "auto" and supports_batch)
    dec = policy.apply(scores, batch=args.batch)
    out = df.copy()
    new = {"prediction", "confidence", "decision"}
    clash = sorted(new & set(out.columns))
    if clash:
        raise ValueError(f"{path} already has columns {clash}; rename them first")
    out["prediction"] = np.asarray(policy.classes, dtype=object)[dec.prediction]
    out["confidence"] = dec.confidence
    out["decision"] = np.where(dec.accepted, "auto", "review")
    written = write_table(out, args.output)
    review_path = None
    if args.review_out:
        review_path = write_table(out[~dec.accepted], args.review_out)
    summary: dict[str, Any] = {
        "policy": str(p),
        "file": str(path),
        "output": str(written),
        "n": len(scores),
        "n_auto": int(dec.accepted.sum()),
        "n_review": int((~dec.accepted).sum()),
        "coverage": dec.coverage,
        "guarantee": policy.guarantee(batch=args.batch),
        "threshold": None
        if not dec.threshold.size or math.isinf(dec.threshold[0])
        else float(dec.threshold[0]),
    }
    if review_path is not None:
        summary["review_output"] = str(review_path)
    aligned = policy.align(scores)
    if aligned.labels is not None:
        wrong = dec.prediction != aligned.labels
        summary["n_errors_auto"] = int(wrong[dec.accepted].sum())
        summary["error_auto"] = float(wrong[dec.accepted].mean()) if dec.accepted.any() else None
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    _print_apply(summary, policy, dec.coverage, args.batch, written, review_path)
    return 0


def _read_apply_scores(args: argparse.Namespace, policy: Any, path: str) -> tuple[Any, Any]:
    """``(table, Scores)`` of the file to label; binary score columns take the policy's classes."""
    from calibkit.io import read_table, scores_from_table

    df = read_table(path, text_columns=[args.id_col] if args.id_col else ())
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    if classes is None:
        from calibkit.io import detect_score_columns

        spec = detect_score_columns(
            list(df.columns),
            prob_cols=args.prob_cols,
            logit_cols=args.logit_cols,
            prob_col=args.prob_col,
            logit_col=args.logit_col,
        )
        if spec.kind in ("binary_prob", "binary_logit"):
            classes = list(policy.classes)
    scores = scores_from_table(
        df,
        label_col=args.label_col,
        prob_cols=args.prob_cols,
        logit_cols=args.logit_cols,
        prob_col=args.prob_col,
        logit_col=args.logit_col,
        classes=classes,
        id_col=args.id_col,
    )
    return df, scores


def _print_apply(
    summary: dict[str, Any],
    policy: Any,
    coverage: float,
    batch: bool,
    written: Any,
    review_path: Any,
) -> None:
    """Print what ``apply`` wrote (the ``--json`` summary as sentences)."""
    from rich.console import Console

    con = Console()
    con.print(
        f"auto-labeled {summary['n_auto']}/{summary['n']} rows ({coverage:.1%}); "
        f"{summary['n_review']} need review -> [cyan]{written}[/]"
        + (f" (review list: [cyan]{review_path}[/])" if review_path else "")
    )
    con.print(f"guarantee: {summary['guarantee']}")
    if batch:
        thr = summary["threshold"]
        con.print(
            "batch threshold: "
            + (
                "none certified for this batch: everything goes to review"
                if thr is None
                else f"{thr:.6g}"
            )
            + f" (saved threshold {policy.thresholds[0]:.6g})"
        )
    if "error_auto" in summary and summary["error_auto"] is not None:
        con.print(
            f"labels present: {summary['n_errors_auto']} errors among the auto-labeled rows "
            f"({summary['error_auto']:.4f})"
        )
