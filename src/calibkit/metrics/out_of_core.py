r"""Evaluation larger than memory: stream a Parquet file (or a directory of them) through the
streaming accumulators, in memory that does not grow with the number of rows.

:func:`evaluate_parquet` reads record batches with ``pyarrow.parquet.ParquetFile.iter_batches``
(one file at a time, only the label and score columns), turns each batch into probabilities exactly as ``calibkit evaluate`` does for
an in-memory table (:func:`calibkit.io.scores_from_table`: the same column detection and checks;
a probability file's own numbers, or the softmax of logit columns with the NLL from the logits),
and adds it to per-bin sums
(:class:`~calibkit.metrics.streaming.CalibrationErrorAccumulator`,
:class:`~calibkit.metrics.streaming.ScoringRuleAccumulator`) and to a fine histogram for the
AUROC (:class:`AurocHistogram`). Memory is ``O(batch + bins + histogram)``, independent of ``n``
(a Parquet row group is decompressed whole, so a file written with huge row groups needs one
row group's worth).

Exact (equal to the in-memory metrics up to float summation order, ~1e-12): accuracy, the
equal-width ECE family (ECE, MCE, RMS-CE, debiased ECE, conf-ECE, cw-ECE), Brier score, NLL and
the reliability table. Not available: ACE and ``--binning quantile`` (equal-mass bins need every
score first), bootstrap intervals (they resample rows).

AUROC of the confidence for correctness (top-label view; with ``positive`` the AUROC of
``P(y = positive)`` for ``y == positive``) comes from two histograms of ``B`` equal-width bins
(``B = 2**20`` by default), one for correct and one for wrong predictions. Pairs in different
bins are ordered exactly; a pair in the same bin counts 1/2 (as an exact tie does), so

.. math::

    |\widehat{\mathrm{AUROC}} - \mathrm{AUROC}| \le
    \frac{1}{2 N_1 N_0}\sum_{b=1}^{B} n_{1b}\, n_{0b}

with ``n_{1b}, n_{0b}`` the correct / wrong counts in bin ``b`` and ``N_1, N_0`` their totals.
The bound is computed from the histograms and reported with the value (``auroc_bound``).

With ``ray=True`` Ray Data reads the files, each block becomes one set of per-bin sums in a Ray
task, and the driver merges them: the same numbers (up to summation order).

Modules: the reading side (file discovery, label scan, score columns per batch) is
:mod:`calibkit.metrics.parquet_source`, the mergeable accumulators (:class:`AurocHistogram`,
:class:`StreamingEvaluator`) :mod:`calibkit.metrics.stream_accumulators`; both re-exported here.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calibkit.metrics.parquet_source import (
    BATCH_ROWS,
    ParquetSource,
    _iter_batches,
    batch_inputs,
    parquet_files,
    resolve_source,
)
from calibkit.metrics.reliability import ReliabilityTable
from calibkit.metrics.stream_accumulators import AUROC_BINS, AurocHistogram, StreamingEvaluator
from calibkit.metrics.streaming import CalibrationErrorAccumulator

__all__ = [
    "AurocHistogram",
    "ParquetSource",
    "StreamingEvaluation",
    "StreamingEvaluator",
    "add_stream_arguments",
    "batch_inputs",
    "evaluate_parquet",
    "parquet_files",
    "resolve_source",
    "run_stream",
]

#: the registered metrics (:mod:`calibkit.metrics.registry` names) a stream computes
STREAMABLE = (
    "accuracy",
    "ece",
    "mce",
    "rms_ce",
    "conf_ece",
    "cw_ece",
    "brier",
    "nll",
    "auroc",
    "debiased_ece",
)


# ---------------------------------------------------------------------- the result
@dataclass
class StreamingEvaluation:
    """What :func:`evaluate_parquet` measured.

    Attributes
    ----------
    n : int
        Rows evaluated.
    classes : tuple of str
    view : "top-label" or "P(y=<class>)"
    n_bins : int
    metrics : dict
        accuracy, ece, mce, rms_ce, debiased_ece, conf_ece, cw_ece, brier, nll, auroc,
        auroc_bound.
    reliability : ReliabilityTable
    files : list of Path
    engine : "pyarrow" or "ray"
    """

    n: int
    classes: tuple[str, ...]
    view: str
    n_bins: int
    metrics: dict[str, float]
    reliability: ReliabilityTable
    files: list[Path]
    engine: str


def _positive_index(classes: tuple[str, ...], positive: str | None) -> int | None:
    if positive is None:
        return None
    if len(classes) != 2:
        raise ValueError(f"--positive needs a 2-class file; this one has {len(classes)} classes")
    if positive not in classes:
        raise ValueError(f"--positive {positive!r} is not a class; classes are {classes}")
    return classes.index(positive)


def evaluate_parquet(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    label_col: str = "label",
    prob_cols: str | Sequence[str] | None = None,
    logit_cols: str | Sequence[str] | None = None,
    prob_col: str | None = None,
    logit_col: str | None = None,
    classes: Sequence[str] | None = None,
    n_bins: int = 15,
    positive: str | None = None,
    batch_rows: int = BATCH_ROWS,
    auroc_bins: int = AUROC_BINS,
    ray: bool = False,
    ray_init_kwargs: dict[str, Any] | None = None,
) -> StreamingEvaluation:
    """Calibration metrics of a Parquet file or directory in memory independent of its size.

    Parameters
    ----------
    path : path or list of paths
        A ``.parquet`` file, a directory of them (recursive), or a list of files; every file
        has the same columns (a scored table: see :mod:`calibkit.io`).
    label_col, prob_cols, logit_cols, prob_col, logit_col, classes
        As :func:`calibkit.io.scores_from_table`; labels are required.
    n_bins : int
        Equal-width bins of the ECE family.
    positive : str, optional
        2-class data: evaluate ``P(y = positive)`` against ``y == positive``.
    batch_rows : int
        Rows per record batch (the memory knob).
    auroc_bins : int
        Bins of the AUROC histogram (see the module docstring for the error bound).
    ray : bool
        Compute per-block sums with Ray Data and merge them (needs ``calibkit[scale]``).
    ray_init_kwargs : dict, optional
        For ``ray.init`` when Ray is not running yet.

    Returns
    -------
    StreamingEvaluation
    """
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"batch_rows must be an int >= 1; got {batch_rows!r}")
    CalibrationErrorAccumulator(n_bins)  # checks n_bins before any reading
    if isinstance(auroc_bins, bool) or not isinstance(auroc_bins, int) or auroc_bins < 1:
        raise ValueError(f"auroc_bins must be an int >= 1; got {auroc_bins!r}")
    src = resolve_source(
        path,
        label_col=label_col,
        prob_cols=prob_cols,
        logit_cols=logit_cols,
        prob_col=prob_col,
        logit_col=logit_col,
        classes=classes,
    )
    pos = _positive_index(src.classes, positive)
    if ray:
        ev = _evaluate_ray(src, pos, n_bins, auroc_bins, batch_rows, ray_init_kwargs)
    else:
        ev = StreamingEvaluator(n_bins, auroc_bins=auroc_bins)
        for f, start, batch in _iter_batches(src, batch_rows):
            try:
                p, y, z = batch_inputs(batch, src, pos)
            except ValueError as exc:
                raise ValueError(
                    f"{f}, rows {start}..{start + batch.num_rows - 1} (row numbers below count "
                    f"from {start}): {exc}"
                ) from exc
            ev.update(p, y, z)
    if ev.n != src.n_rows:
        raise ValueError(f"read {ev.n} rows but the label scan counted {src.n_rows}")
    view = "top-label" if pos is None else f"P(y={src.classes[pos]})"
    return StreamingEvaluation(
        n=ev.n,
        classes=src.classes,
        view=view,
        n_bins=n_bins,
        metrics=ev.compute(),
        reliability=ev.reliability_table(),
        files=src.files,
        engine="ray" if ray else "pyarrow",
    )


class _BlockStats:
    """Ray Data ``map_batches`` function: one pickled :class:`StreamingEvaluator` per block."""

    def __init__(self, src: ParquetSource, pos: int | None, n_bins: int, auroc_bins: int):
        self.src, self.pos, self.n_bins, self.auroc_bins = src, pos, n_bins, auroc_bins

    def __call__(self, batch: Any) -> dict[str, Any]:
        ev = StreamingEvaluator(self.n_bins, auroc_bins=self.auroc_bins)
        for rb in batch.to_batches(max_chunksize=BATCH_ROWS):
            p, y, z = batch_inputs(rb, self.src, self.pos)
            ev.update(p, y, z)
        return {"state": np.array([pickle.dumps(ev)], dtype=object)}


def _evaluate_ray(
    src: ParquetSource,
    pos: int | None,
    n_bins: int,
    auroc_bins: int,
    batch_rows: int,
    ray_init_kwargs: dict[str, Any] | None,
) -> StreamingEvaluator:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError(
            "--ray needs Ray Data: pip install 'calibkit[scale]'  (ray[data])"
        ) from exc
    if not ray.is_initialized():
        ray.init(**dict(ray_init_kwargs or {}))
    cols = [*src.score_columns, src.label_col]
    ds = ray.data.read_parquet([str(f) for f in src.files], columns=cols)
    out = ds.map_batches(
        _BlockStats(src, pos, n_bins, auroc_bins),
        batch_format="pyarrow",
        batch_size=batch_rows,
        zero_copy_batch=True,
    )
    total = StreamingEvaluator(n_bins, auroc_bins=auroc_bins)
    for row in out.iter_rows():
        total.merge(pickle.loads(row["state"]))
    return total


# ---------------------------------------------------------------------- the CLI hook
def add_stream_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--stream`` / ``--ray`` (and ``--format``, for lm-eval sample files) to ``calibkit
    evaluate`` and route streaming runs (and a directory argument) here; everything else goes to
    the parser's existing ``func``."""
    g = p.add_argument_group("larger than memory (Parquet)")
    g.add_argument(
        "--stream",
        action="store_true",
        help="stream a .parquet file or a directory of them in constant memory "
        "(default for a directory); exact ECE family, Brier, NLL, accuracy; AUROC by histogram",
    )
    g.add_argument(
        "--ray", action="store_true", help="with --stream: per-block sums on Ray Data, merged"
    )
    g.add_argument(
        "--batch-rows", type=int, default=BATCH_ROWS, help=f"rows per batch (default {BATCH_ROWS})"
    )
    from calibkit.formats.lm_eval import add_format_argument

    add_format_argument(p)
    inner = p.get_default("func")

    def dispatch(args: argparse.Namespace) -> int:
        if args.stream or args.ray or Path(args.file).is_dir():
            if args.format != "table":
                raise ValueError(f"--stream reads Parquet tables, not --format {args.format}")
            return run_stream(args)
        if inner is None:  # pragma: no cover - the evaluate parser always sets func
            raise ValueError("no evaluate command to run")
        return int(inner(args))

    p.set_defaults(func=dispatch)


def run_stream(args: argparse.Namespace) -> int:
    """``calibkit evaluate --stream``: the metrics table and the reliability table."""
    import json

    from calibkit._json import json_value
    from calibkit.cli._args import check_bins, esc, metric_names_arg, parse_classes
    from calibkit.cli._tables import bins_table, metrics_table

    check_bins(args.bins)
    if args.binning != "uniform":
        raise ValueError(
            "--stream supports --binning uniform only (equal-mass bins need all scores)"
        )
    if args.bootstrap:
        raise ValueError("--stream cannot bootstrap (resampling needs all rows in memory)")
    wanted = metric_names_arg(getattr(args, "metrics", None))
    if getattr(args, "metrics", None):
        missing = [k for k in wanted if k not in STREAMABLE]
        if missing:
            raise ValueError(
                f"--stream cannot compute {missing} (they need all scores in memory); it "
                f"computes {list(STREAMABLE)}"
            )
    skipped = [k for k in wanted if k not in STREAMABLE]
    shown = [k for k in wanted if k in STREAMABLE]
    if getattr(args, "plot", None) or args.classwise_plot:
        raise ValueError(
            "--stream draws no diagram (its reliability table is printed); drop --plot / "
            "--classwise-plot"
        )
    res = evaluate_parquet(
        args.file,
        label_col=args.label_col,
        prob_cols=args.prob_cols,
        logit_cols=args.logit_cols,
        prob_col=args.prob_col,
        logit_col=args.logit_col,
        classes=parse_classes(args.classes),
        n_bins=args.bins,
        positive=args.positive,
        batch_rows=args.batch_rows,
        ray=args.ray,
    )
    rows = [{k: json_value(v) for k, v in r.items()} for r in res.reliability.rows()]
    m = {k: v for k, v in res.metrics.items() if k in shown or k == "auroc_bound"}
    if args.json:
        out = {
            "file": str(args.file),
            "n": res.n,
            "classes": list(res.classes),
            "view": res.view,
            "n_bins": res.n_bins,
            "binning": "uniform",
            "engine": res.engine,
            "files": [str(f) for f in res.files],
            "metrics": {k: json_value(v) for k, v in m.items()},
            "not_computed": skipped,
            "reliability_table": rows,
        }
        print(json.dumps(out, indent=2))
        return 0
    from rich.console import Console

    con = Console()
    con.print(
        f"[bold]{esc(args.file)}[/]: {res.n} items in {len(res.files)} file(s), "
        f"{len(res.classes)} classes; streamed ({res.engine})"
    )
    con.print(f"view: {esc(res.view)}, {res.n_bins} uniform bins")
    if skipped:
        con.print(f"not computed (they need all scores in memory): {esc(', '.join(skipped))}")
    con.print(metrics_table([("Value", m)], names=shown))
    if "auroc" in m and math.isfinite(m["auroc"]):
        con.print(
            f"AUROC ({'confidence for correctness' if res.view == 'top-label' else esc(res.view)})"
            f": {m['auroc']:.6f} "
            f"(histogram of {AUROC_BINS} bins, |error| <= {m['auroc_bound']:.2g})"
        )
    con.print("\n[bold]Reliability table[/] (non-empty bins; gap = confidence - accuracy)")
    con.print(bins_table(rows, binary=res.view != "top-label"))
    return 0
