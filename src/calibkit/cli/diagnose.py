"""``calibkit diagnose FILE``: what the metrics do not tell you about a scored file (and a fit).

Prints the findings of ``calibkit.calibrators.diagnostics.diagnose``: scores that rank wrong
answers above right ones (AUROC of confidence for correctness below 0.5), a calibrator whose
gain comes from flipping the scores or whose temperature ended on its search bound, too few
calibration rows for the calibrator's parameters or for the ECE precision asked (paper 000's PAC
bound), classes absent from the calibration labels, a label prior that differs between the
calibration and evaluated data, and isotonic / histogram ties that change the ranking. Each
finding says what it means and what to do.

FILE holds the uncalibrated scores (as for ``calibkit evaluate``); ``--calibrator`` is a JSON
written by ``calibkit fit`` and ``--fit-data`` the labelled file it was fitted on.

Exit status: 0 (also with findings), 1 with ``--strict`` when there is any warning, 2 on error.

Examples::

    calibkit diagnose examples/sst2_scores.csv
    calibkit diagnose test.parquet --calibrator cal.json --fit-data dev.parquet --strict
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from calibkit.cli.evaluate import add_score_arguments, load_scores, plain_description

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "diagnose",
        help="warnings about scores and a calibrator: inverted scores, bound-hitting fits, ...",
        description=plain_description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="labelled scored table: .csv .tsv .jsonl .json .parquet")
    p.add_argument("--calibrator", metavar="JSON", help="a calibrator saved by 'calibkit fit'")
    p.add_argument("--fit-data", metavar="FILE", help="the labelled file it was fitted on")
    p.add_argument(
        "--ece-epsilon",
        type=float,
        default=0.05,
        help="ECE precision asked, +-epsilon (default 0.05)",
    )
    p.add_argument(
        "--ece-delta",
        type=float,
        default=0.1,
        help="... with probability 1 - delta (default 0.1)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when there is any warning")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    add_score_arguments(p)
    p.set_defaults(func=run)


def load_inputs(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(scores, calibrator or None, fit_scores or None)`` from the command's arguments, with the
    file columns put in the calibrator's class order."""
    scores = load_scores(args, args.file, require_labels=False)
    cal = fit_scores = None
    if args.calibrator:
        from calibkit.cli.apply import align_classes, load_calibrator

        cal, cal_classes = load_calibrator(args.calibrator)
        scores = align_classes(scores, cal_classes, int(cal.n_classes_))
    if args.fit_data:
        fit_scores = load_scores(args, args.fit_data, require_labels=True)
        if sorted(fit_scores.classes) != sorted(scores.classes):
            raise ValueError(
                f"--fit-data {args.fit_data}: classes {list(fit_scores.classes)} differ from "
                f"{args.file}'s {list(scores.classes)}"
            )
        if fit_scores.classes != scores.classes:
            from calibkit.cli.apply import align_classes

            fit_scores = align_classes(fit_scores, list(scores.classes), scores.n_classes)
    return scores, cal, fit_scores


def run(args: argparse.Namespace) -> int:
    from calibkit.calibrators.diagnostics import diagnose

    if not (0.0 < args.ece_epsilon < 1.0):
        raise ValueError(f"--ece-epsilon must be in (0, 1); got {args.ece_epsilon}")
    if not (0.0 < args.ece_delta < 1.0):
        raise ValueError(f"--ece-delta must be in (0, 1); got {args.ece_delta}")
    scores, cal, fit_scores = load_inputs(args)
    findings = diagnose(
        scores, cal, fit_scores, ece_epsilon=args.ece_epsilon, ece_delta=args.ece_delta
    )
    n_warn = sum(f.severity == "warning" for f in findings)
    if args.json:
        print(json.dumps([f.to_dict() for f in findings], indent=2, default=float))
    else:
        head = f"{args.file}: {len(scores)} items, {scores.n_classes} classes"
        if cal is not None:
            head += f"; calibrator {type(cal).__name__} ({args.calibrator})"
        print(head)
        if not findings:
            print("no findings")
        for f in findings:
            print(f"{f.severity}: [{f.code}] {f.message}")
            print(f"  what to do: {f.advice}")
    return 1 if args.strict and n_warn else 0
