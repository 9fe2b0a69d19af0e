"""``calibkit report FILE -o report.html``: one self-contained HTML calibration report.

The page holds the metrics with percentile-bootstrap intervals before and after calibration
(with ``--calibrator``), reliability diagrams, risk-coverage curves, a per-class table, the
findings of ``calibkit diagnose`` and the metric conventions used (bins, top-label view, Brier
normalisation). CSS and figures are inline, so it opens in any browser without a network.

FILE holds the uncalibrated scores (as for ``calibkit evaluate``); ``--calibrator`` is a JSON
written by ``calibkit fit`` and ``--fit-data`` the labelled file it was fitted on.

Examples::

    calibkit report examples/sst2_scores.csv -o sst2.html
    calibkit report test.parquet --calibrator cal.json --fit-data dev.parquet -o report.html
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from calibkit.cli._args import check_bins, check_output_file
from calibkit.cli.evaluate import add_score_arguments, plain_description

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report",
        help="one self-contained HTML report: metrics with CIs, diagrams, diagnostics",
        description=plain_description(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="labelled scored table: .csv .tsv .jsonl .json .parquet")
    p.add_argument("-o", "--output", required=True, help="HTML file to write")
    p.add_argument("--calibrator", metavar="JSON", help="a calibrator saved by 'calibkit fit'")
    p.add_argument("--fit-data", metavar="FILE", help="the labelled file it was fitted on")
    p.add_argument("--bins", type=int, default=15, help="bins of the ECE family (default 15)")
    p.add_argument(
        "--binning",
        choices=("uniform", "quantile"),
        default="uniform",
        help="equal-width or equal-mass bins (default uniform)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        metavar="N",
        help="bootstrap resamples of the intervals (default 200; 0: none)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="interval level 1-alpha")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--title", help="page title (default 'Calibration report')")
    add_score_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calibkit.cli.diagnose import load_inputs
    from calibkit.report import write_report

    check_bins(args.bins)
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap must be >= 0; got {args.bootstrap}")
    if not (0.0 < args.alpha < 1.0):
        raise ValueError(f"--alpha must be in (0, 1); got {args.alpha}")
    out = Path(args.output)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"-o {out}: the report is HTML; use a .html file name")
    check_output_file(out, what="report")
    scores, cal, fit_scores = load_inputs(args)
    scores.require_labels()
    path = write_report(
        out,
        scores,
        cal,
        fit_scores,
        title=args.title,
        source=Path(args.file).name,
        n_bins=args.bins,
        binning=args.binning,
        bootstrap=args.bootstrap,
        alpha=args.alpha,
        seed=args.seed,
    )
    print(f"report: {path}")
    return 0
