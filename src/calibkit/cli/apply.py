"""``calibkit apply cal.json FILE -o out.csv``: calibrate the scores of a table with a saved calibrator.

The output has every column of FILE except the score columns it read (``--keep-scores`` keeps
them renamed ``uncal_<column>``), plus the calibrated probabilities ``prob_<class>``; the format
follows the output suffix (.csv .tsv .jsonl .json .parquet). The label column is optional; when
present the ECE before and after is printed.

Examples::

    calibkit apply cal.json examples/sst2_scores.csv -o sst2_calibrated.csv
    calibkit evaluate sst2_calibrated.csv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit.cli.evaluate import add_score_arguments, plain_description
from calibkit.cli.fit import CLI_KEY
from calibkit.scores import Scores

__all__ = ["add_parser", "load_calibrator", "run"]


def load_calibrator(path: str | Path) -> tuple[Any, list[str] | None]:
    """Read a calibrator JSON: ``(calibrator, class names recorded by calibkit fit or None)``."""
    from calibkit.calibrators.base import from_dict

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"calibrator file {p} not found")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p} is not valid JSON: {exc}") from exc
    if not isinstance(d, dict):
        raise ValueError(f"{p} is not a calibkit calibrator file")
    extra = d.get(CLI_KEY) or {}
    classes = extra.get("classes")
    return from_dict(d), None if classes is None else [str(c) for c in classes]


def align_classes(scores: Scores, classes: list[str] | None, n_classes: int) -> Scores:
    """Reorder ``scores`` columns to the calibrator's class order (names must match as a set)."""
    if scores.n_classes != n_classes:
        raise ValueError(
            f"the calibrator was fitted on {n_classes} classes but the file has "
            f"{scores.n_classes} ({', '.join(scores.classes)})"
        )
    if classes is None or list(scores.classes) == classes:
        return scores
    if sorted(scores.classes) != sorted(classes):
        raise ValueError(
            f"the file's classes {list(scores.classes)} differ from the calibrator's {classes}; "
            "name them with --classes"
        )
    order = [scores.classes.index(c) for c in classes]
    return Scores(
        logits=scores.logits[:, order],
        labels=None if scores.labels is None else np.argsort(order)[scores.labels],
        classes=tuple(classes),
        ids=scores.ids,
        meta=scores.meta,
    )


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "apply",
        help="apply a saved calibrator to a scored file",
        description=plain_description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("calibrator", help="calibrator JSON written by calibkit fit")
    p.add_argument("file", help="scored table: .csv .tsv .jsonl .json .parquet")
    p.add_argument("-o", "--output", required=True, help="output table (format by suffix)")
    add_score_arguments(p)
    p.add_argument(
        "--keep-scores", action="store_true", help="keep the input score columns as uncal_<col>"
    )
    p.add_argument("--bins", type=int, default=15, help="bins of the reported ECE (default 15)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calibkit.io import read_table, scores_from_table, write_table

    cal, cal_classes = load_calibrator(args.calibrator)
    df = read_table(args.file, text_columns=[args.id_col] if args.id_col else ())
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    if classes is None and cal_classes is not None and _is_binary_column(args, df):
        classes = cal_classes
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
    scores = align_classes(scores, cal_classes, int(cal.n_classes_))
    calibrated = cal.calibrate(scores)
    probs: NDArray[np.float64] = calibrated.probs
    used = list(scores.meta.get("score_columns", []))
    out = df.copy()
    if args.keep_scores:
        out = out.rename(columns={c: f"uncal_{c}" for c in used})
    else:
        out = out.drop(columns=used)
    new_cols = [f"prob_{c}" for c in calibrated.classes]
    clash = [c for c in new_cols if c in out.columns]
    if clash:
        raise ValueError(f"output columns {clash} already exist in {args.file}; rename them first")
    for j, c in enumerate(new_cols):
        out[c] = probs[:, j]
    path = write_table(out, args.output)

    summary: dict[str, Any] = {
        "calibrator": str(args.calibrator),
        "method": type(cal).__name__,
        "file": str(args.file),
        "output": str(path),
        "n": len(scores),
        "classes": list(calibrated.classes),
        "columns": new_cols,
    }
    if scores.labels is not None:
        from calibkit.metrics import ece

        y = scores.labels
        summary["ece_before"] = float(ece(scores.probs, y, n_bins=args.bins))
        summary["ece_after"] = float(ece(probs, y, n_bins=args.bins))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from rich.console import Console

    con = Console()
    con.print(
        f"applied [bold]{summary['method']}[/] to [bold]{args.file}[/] ({len(scores)} rows) -> "
        f"[cyan]{path}[/] (columns {', '.join(new_cols)})"
    )
    if "ece_before" in summary:
        con.print(
            f"ECE ({args.bins} bins): {summary['ece_before']:.4f} -> {summary['ece_after']:.4f}"
        )
    return 0


def _is_binary_column(args: argparse.Namespace, df: Any) -> bool:
    """Whether the file's scores are one binary column (then the class names come from the JSON)."""
    from calibkit.io import detect_score_columns

    spec = detect_score_columns(
        list(df.columns),
        prob_cols=args.prob_cols,
        logit_cols=args.logit_cols,
        prob_col=args.prob_col,
        logit_col=args.logit_col,
    )
    return spec.kind in ("binary_prob", "binary_logit")
