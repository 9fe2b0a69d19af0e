"""``calibkit apply cal.json FILE -o out.csv``: calibrate the scores of a table with a saved calibrator.

The output has every column of FILE except the score columns it read (``--keep-scores`` keeps
them renamed ``uncal_<column>``), plus the calibrated probabilities ``prob_<class>`` and a
``calibrated_by`` column holding the calibrator's fingerprint; the format follows the output
suffix (.csv .tsv .jsonl .json .parquet). The label column is optional; when present the ECE
before and after is printed.

Calibrating twice distorts the probabilities, so a FILE that already carries a
``calibrated_by`` column (or a Scores file whose metadata records a calibrator) is refused, and
so is ``-o`` naming FILE itself; ``--force`` allows both (the fingerprints are then chained,
``first>second``). Everything is checked before anything is written.

Examples::

    calibkit apply cal.json examples/sst2_scores.csv -o sst2_calibrated.csv
    calibkit evaluate sst2_calibrated.csv
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit.cli._args import (
    MAX_BINS,
    add_score_arguments,
    check_bins,
    check_not_same_file,
    check_output_table,
    esc,
    parse_classes,
    plain_description,
)
from calibkit.cli.fit import CLI_KEY
from calibkit.scores import Scores

__all__ = [
    "PROVENANCE_COLUMN",
    "add_parser",
    "align_classes",
    "calibrator_fingerprint",
    "load_calibrator",
    "previous_calibration",
    "run",
]

#: output column naming the calibrator(s) applied, in order, joined by ``>``
PROVENANCE_COLUMN = "calibrated_by"


def load_calibrator(path: str | Path) -> tuple[Any, list[str] | None]:
    """Read a calibrator JSON: ``(calibrator, class names recorded by calibkit fit or None)``.

    Every problem (not JSON, missing or malformed fields, an unfitted calibrator) is a
    ``ValueError`` naming the file.
    """
    from calibkit.calibrators.base import from_dict

    p = Path(path)
    if p.is_dir():
        raise ValueError(f"calibrator {p} is a folder, not a calibrator JSON file")
    if not p.is_file():
        raise FileNotFoundError(f"calibrator file {p} not found")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"calibrator file {p} is not valid JSON: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError(f"calibrator file {p} is not a calibkit calibrator (not a JSON object)")
    extra = d.get(CLI_KEY) or {}
    if not isinstance(extra, dict):
        raise ValueError(f"calibrator file {p}: field {CLI_KEY!r} must be a JSON object")
    classes = extra.get("classes")
    if classes is not None and (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str | int) and not isinstance(c, bool) for c in classes)
    ):
        raise ValueError(f"calibrator file {p}: field '{CLI_KEY}.classes' must list class names")
    try:
        cal = from_dict(d)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"calibrator file {p}: {detail}") from None
    n = getattr(cal, "n_classes_", None)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or int(n) < 2:
        raise ValueError(
            f"calibrator file {p}: field 'fitted.n_classes_' is missing or not an integer >= 2 "
            f"(got {n!r}); is the calibrator fitted?"
        )
    if classes is not None and len(classes) != int(n):
        raise ValueError(
            f"calibrator file {p}: '{CLI_KEY}.classes' names {len(classes)} classes but the "
            f"calibrator has {int(n)}"
        )
    return cal, None if classes is None else [str(c) for c in classes]


def calibrator_fingerprint(cal: Any) -> str:
    """``<class name>:<fingerprint>``: a short id of a calibrator's class, parameters and fitted
    state (``BaseCalibrator.fingerprint()`` where available), not of the file's bytes."""
    name = type(cal).__name__
    fp = getattr(cal, "fingerprint", None)
    if callable(fp):
        text = str(fp())
        return text if text.startswith(name) else f"{name}:{text}"
    d = cal.to_dict()
    core = {k: d.get(k) for k in ("class", "params", "fitted")}
    digest = hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()
    return f"{name}:{digest[:16]}"


def previous_calibration(df: Any, meta: dict[str, Any]) -> str | None:
    """How a table was calibrated before (a ``calibrated_by`` column, or Scores metadata), or None."""
    if PROVENANCE_COLUMN in df.columns:
        vals = sorted({str(v) for v in df[PROVENANCE_COLUMN].dropna().unique()})
        return ", ".join(vals) if vals else "unknown calibrator"
    for key in ("calibrated_by", "calibrator"):
        v = meta.get(key)
        if v:
            return v if isinstance(v, str) else json.dumps(v, default=str)
    return None


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
    p.add_argument(
        "--force",
        action="store_true",
        help="calibrate a file that was already calibrated, or write -o over FILE",
    )
    p.add_argument(
        "--bins", type=int, default=15, help=f"bins of the reported ECE, 1..{MAX_BINS} (default 15)"
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    p.set_defaults(func=run)


def _calibrate(
    cal: Any, scores: Scores, cal_path: str, file: str
) -> tuple[Scores, NDArray[np.float64]]:
    """Calibrated Scores and their ``(n, K)`` probabilities; a broken calibrator names its file."""
    from calibkit.evaluation import calibrated_view

    try:
        calibrated, raw = calibrated_view(cal, scores)
    except (ValueError, FloatingPointError, ZeroDivisionError) as exc:
        raise ValueError(
            f"calibrator {cal_path} cannot calibrate {file}: {exc} (is the calibrator file "
            "damaged? refit it with calibkit fit)"
        ) from None
    probs = calibrated.probs if raw is None else raw
    bad = ~np.isfinite(probs).all(axis=1) | (np.abs(probs.sum(axis=1) - 1.0) > 1e-6)
    bad |= (probs < 0).any(axis=1) | (probs > 1).any(axis=1)
    if bad.any():
        raise ValueError(
            f"calibrator {cal_path} gives invalid probabilities on {int(bad.sum())} of "
            f"{len(probs)} rows of {file} (is the calibrator file damaged? refit it with "
            "calibkit fit)"
        )
    return calibrated, probs


def _read_input(
    args: argparse.Namespace, cal_classes: list[str] | None
) -> tuple[Any, Scores, str | None]:
    """``(table, its Scores, how it was calibrated before)``; refuses a calibrated file unless
    ``--force``."""
    from calibkit.io import read_scores_meta, read_table, scores_from_table

    df = read_table(args.file, text_columns=[args.id_col] if args.id_col else ())
    file_meta = read_scores_meta(args.file).get("meta") or {}
    before = previous_calibration(df, file_meta)
    if before is not None and not args.force:
        raise ValueError(
            f"{args.file} is already calibrated (by {before}); calibrating twice distorts the "
            "probabilities. Apply the calibrator to the uncalibrated scores, or pass --force"
        )
    classes = parse_classes(args.classes)
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
    return df, scores, before


def _output_frame(
    args: argparse.Namespace, df: Any, scores: Scores, calibrated: Scores, probs: Any, fp: str
) -> tuple[Any, list[str]]:
    """The input table with the score columns replaced by ``prob_<class>`` and the provenance
    column (the fingerprint ``fp``, chained after an earlier one); ``(table, new columns)``."""
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
    chain_col: Any = fp
    if PROVENANCE_COLUMN in out.columns:
        chain_col = out.pop(PROVENANCE_COLUMN).astype(str) + ">" + fp
    out[PROVENANCE_COLUMN] = chain_col
    return out, new_cols


def run(args: argparse.Namespace) -> int:
    from calibkit.io import write_table

    # checks before any work: bins, output path (not the input, not the calibrator, writable)
    check_bins(args.bins)
    check_not_same_file(args.output, [("calibrator file", args.calibrator)])
    check_not_same_file(args.output, [("input file", args.file)], force=args.force)
    check_output_table(args.output)
    cal, cal_classes = load_calibrator(args.calibrator)
    df, scores, before = _read_input(args, cal_classes)
    scores = align_classes(scores, cal_classes, int(cal.n_classes_))
    calibrated, probs = _calibrate(cal, scores, args.calibrator, args.file)
    fingerprint = calibrator_fingerprint(cal)
    out, new_cols = _output_frame(args, df, scores, calibrated, probs, fingerprint)
    path = write_table(out, args.output)

    summary: dict[str, Any] = {
        "calibrator": str(args.calibrator),
        "method": type(cal).__name__,
        "fingerprint": fingerprint,
        "file": str(args.file),
        "output": str(path),
        "n": len(scores),
        "classes": list(calibrated.classes),
        "columns": new_cols,
        "already_calibrated_by": before,
    }
    if scores.labels is not None:
        from calibkit.metrics import compute_metrics

        y, kw = scores.labels, {"names": ["ece"], "n_bins": args.bins}
        summary["ece_before"] = compute_metrics(scores.probs, y, **kw)["ece"]
        summary["ece_after"] = compute_metrics(probs, y, **kw)["ece"]
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from rich.console import Console

    con = Console()
    con.print(
        f"applied [bold]{esc(summary['method'])}[/] ({esc(fingerprint)}) to "
        f"[bold]{esc(args.file)}[/] ({len(scores)} rows) -> [cyan]{esc(path)}[/] "
        f"(columns {esc(', '.join(new_cols))})"
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
