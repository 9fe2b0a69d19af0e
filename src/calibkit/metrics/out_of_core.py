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
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.metrics.calibration_error import binned_outcomes
from calibkit.metrics.reliability import ReliabilityTable
from calibkit.metrics.scoring_rules import nll
from calibkit.metrics.streaming import CalibrationErrorAccumulator, ScoringRuleAccumulator

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
#: default rows per record batch
BATCH_ROWS = 1 << 16
#: default number of AUROC histogram bins
AUROC_BINS = 1 << 20
_MAX_DISTINCT_LABELS = 10_000


# ---------------------------------------------------------------------- AUROC by histogram
class AurocHistogram:
    """AUROC of a score for a binary outcome from two fine histograms (memory ``O(B)``).

    Parameters
    ----------
    n_bins : int
        Equal-width bins ``B`` of [0, 1]; scores must lie in [0, 1].

    See the module docstring for the error bound (:meth:`bound`).
    """

    def __init__(self, n_bins: int = AUROC_BINS):
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"n_bins must be an int >= 1; got {n_bins!r}")
        self.n_bins = n_bins
        self.pos = np.zeros(n_bins, dtype=np.int64)
        self.neg = np.zeros(n_bins, dtype=np.int64)

    def update(self, scores: ArrayLike, outcomes: ArrayLike) -> AurocHistogram:
        """Add ``scores`` (b,) in [0, 1] with boolean ``outcomes`` (b,)."""
        s = np.asarray(scores, dtype=np.float64)
        o = np.asarray(outcomes, dtype=bool)
        if s.shape != o.shape or s.ndim != 1:
            raise ValueError(
                f"scores and outcomes must be 1-D of equal length; got {s.shape}, {o.shape}"
            )
        if s.size and not (np.min(s) >= 0.0 and np.max(s) <= 1.0):
            raise ValueError("AUROC scores must lie in [0, 1] (NaN is not allowed)")
        idx = np.minimum((s * self.n_bins).astype(np.intp), self.n_bins - 1)
        # add.at, not bincount(minlength=B): no B-sized temporaries per batch, and faster
        np.add.at(self.pos, idx[o], 1)
        np.add.at(self.neg, idx[~o], 1)
        return self

    def merge(self, other: AurocHistogram) -> AurocHistogram:
        """Add another histogram's counts (same ``n_bins``)."""
        if not isinstance(other, AurocHistogram) or other.n_bins != self.n_bins:
            raise ValueError("can only merge an AurocHistogram with the same n_bins")
        self.pos += other.pos
        self.neg += other.neg
        return self

    def _totals(self) -> tuple[float, float]:
        n1, n0 = int(self.pos.sum()), int(self.neg.sum())
        if n1 == 0 or n0 == 0:
            raise ValueError("AUROC needs both outcomes (some correct and some wrong predictions)")
        if n1 * n0 >= 2**62:
            raise ValueError("AUROC histogram: more than ~4e9 rows would overflow the exact counts")
        return float(n1), float(n0)

    def auroc(self) -> float:
        """Estimated AUROC: ``P(s_1 > s_0) + P(same bin) / 2``."""
        n1, n0 = self._totals()
        below = np.cumsum(self.neg)
        below -= self.neg  # wrong ones in strictly lower bins
        # integer dot products: exact while n1 * n0 < 2**63 (about 6e9 rows)
        wins2 = 2 * int(self.pos @ below) + int(self.pos @ self.neg)
        return wins2 / (2.0 * n1 * n0)

    def bound(self) -> float:
        """Largest possible ``|estimate - exact AUROC|`` (half the within-bin pair fraction)."""
        n1, n0 = self._totals()
        return 0.5 * int(self.pos @ self.neg) / (n1 * n0)

    def __getstate__(self) -> dict[str, Any]:  # sparse: a batch fills few of the 2**20 bins
        nz_p, nz_n = np.flatnonzero(self.pos), np.flatnonzero(self.neg)
        return {
            "n_bins": self.n_bins,
            "pos": (nz_p, self.pos[nz_p]),
            "neg": (nz_n, self.neg[nz_n]),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.n_bins = int(state["n_bins"])
        self.pos = np.zeros(self.n_bins, dtype=np.int64)
        self.neg = np.zeros(self.n_bins, dtype=np.int64)
        self.pos[state["pos"][0]] = state["pos"][1]
        self.neg[state["neg"][0]] = state["neg"][1]


# ---------------------------------------------------------------------- all metrics at once
class StreamingEvaluator:
    """The ``calibkit evaluate`` metrics over batches of probabilities (memory ``O(bins)``).

    Parameters
    ----------
    n_bins : int
        Equal-width bins of the ECE family (and conf-ECE / cw-ECE, as ``calibkit evaluate``).
    auroc_bins : int
        Bins of the AUROC histogram.

    ``update(probs, labels)`` takes ``(b, K)`` probabilities (top-label view) or ``(b,)``
    ``P(y = 1)`` with 0/1 labels (binary view); the first batch fixes the view.
    """

    def __init__(self, n_bins: int = 15, *, auroc_bins: int = AUROC_BINS):
        self.n_bins = n_bins
        self.cal = CalibrationErrorAccumulator(n_bins, classwise=True)
        self.top = CalibrationErrorAccumulator(n_bins)  # conf-ECE of a 1-D input (binary view)
        self.rules = ScoringRuleAccumulator()
        self.auc = AurocHistogram(auroc_bins)
        self.ndim: int | None = None
        self.nll_from_logits: bool | None = None
        self._nll_logits = 0.0

    def update(
        self, probs: ArrayLike, labels: ArrayLike, logits: ArrayLike | None = None
    ) -> StreamingEvaluator:
        """Add a batch: ``probs`` (b,) or (b, K) probabilities, ``labels`` (b,) int.

        ``logits`` (same shape; a binary logit for 1-D ``probs``): when given, the NLL is
        computed from them exactly (``calibkit.metrics.nll(..., from_logits=True)``), as
        ``calibkit evaluate`` does for logit columns. Give them for every batch or for none.
        """
        p = np.asarray(probs, dtype=np.float64)
        if self.ndim is not None and p.ndim != self.ndim:
            raise ValueError(f"batch is {p.ndim}-D but earlier batches were {self.ndim}-D")
        with_logits = logits is not None
        if self.nll_from_logits is not None and with_logits != self.nll_from_logits:
            raise ValueError("give logits with every batch or with none")
        if p.shape[0] == 0:
            return self
        self.cal.update(p, labels)
        if p.ndim == 1:
            self.top.update(np.stack([1.0 - p, p], axis=1), labels)
        self.rules.update(p, labels)
        if logits is not None:
            self._nll_logits += nll(logits, labels, from_logits=True) * p.shape[0]
        s, o = binned_outcomes(p, labels)
        self.auc.update(s, o)
        self.ndim = p.ndim
        self.nll_from_logits = with_logits
        return self

    def merge(self, other: StreamingEvaluator) -> StreamingEvaluator:
        """Add another evaluator's sums (same bins)."""
        if not isinstance(other, StreamingEvaluator):
            raise ValueError(f"can only merge a StreamingEvaluator; got {type(other).__name__}")
        if other.ndim is None:
            return self
        if self.ndim is not None and other.ndim != self.ndim:
            raise ValueError("cannot merge a 1-D (binary view) and a 2-D (top-label) evaluator")
        if self.nll_from_logits is not None and other.nll_from_logits != self.nll_from_logits:
            raise ValueError("cannot merge evaluators with and without logits")
        self._nll_logits += other._nll_logits
        self.nll_from_logits = other.nll_from_logits
        self.cal.merge(other.cal)
        self.top.merge(other.top)
        self.rules.merge(other.rules)
        self.auc.merge(other.auc)
        self.ndim = other.ndim
        return self

    @property
    def n(self) -> int:
        return self.rules.n

    def compute(self) -> dict[str, float]:
        """accuracy, ece, mce, rms_ce, debiased_ece, conf_ece, cw_ece, brier, nll, auroc and
        auroc_bound (the AUROC's largest possible error)."""
        out = dict(self.cal.compute())
        out["conf_ece"] = self.top.ece() if self.ndim == 1 else out["ece"]
        out.update(self.rules.compute())
        if self.nll_from_logits:
            out["nll"] = self._nll_logits / self.n
        try:
            out["auroc"], out["auroc_bound"] = self.auc.auroc(), self.auc.bound()
        except ValueError:  # all predictions right (or all wrong): AUROC undefined
            out["auroc"] = out["auroc_bound"] = float("nan")
        return out

    def reliability_table(self) -> ReliabilityTable:
        return self.cal.reliability_table()


# ---------------------------------------------------------------------- reading Parquet
def parquet_files(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The Parquet files of ``path``: a file, a directory (searched recursively for
    ``*.parquet`` / ``*.pq``, sorted), or a list of files."""
    if isinstance(path, str | os.PathLike):
        p = Path(path)
        if p.is_dir():
            files = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in (".parquet", ".pq")
            )
            if not files:
                raise ValueError(f"directory {p} holds no .parquet / .pq files")
            return files
        paths = [p]
    else:
        paths = [Path(x) for x in path]
        if not paths:
            raise ValueError("an empty list of Parquet files was given")
    for f in paths:
        if not f.is_file():
            raise FileNotFoundError(f"Parquet file {f} not found")
        if f.suffix.lower() not in (".parquet", ".pq"):
            raise ValueError(f"{f.name!r} is not a .parquet / .pq file")
    return paths


@dataclass
class ParquetSource:
    """The resolved layout of a Parquet dataset (see :func:`evaluate_parquet`).

    Attributes
    ----------
    files : list of Path
    kind : score layout (:class:`calibkit.io.ScoreColumns` ``kind``)
    score_columns : tuple of str
    classes : tuple of str
    label_col : str
    label_values : list
        Every distinct raw label value, with ``label_codes`` its class index and
        ``label_type`` the column's arrow type.
    n_rows : int
    """

    files: list[Path]
    kind: str
    score_columns: tuple[str, ...]
    classes: tuple[str, ...]
    label_col: str
    label_values: list[Any]
    label_codes: NDArray[np.int64]
    label_type: Any
    n_rows: int
    extra: dict[str, Any] = field(default_factory=dict)

    def column_kwargs(self) -> dict[str, Any]:
        """Explicit column arguments for :func:`calibkit.io.scores_from_table`."""
        cols = list(self.score_columns)
        if self.kind == "logits":
            return {"logit_cols": cols}
        if self.kind == "probs":
            return {"prob_cols": cols}
        if self.kind == "binary_prob":
            return {"prob_col": cols[0]}
        return {"logit_col": cols[0]}


def _arrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.compute
        import pyarrow.parquet
    except ImportError as exc:  # pragma: no cover - pyarrow is installed in dev
        raise ImportError(
            "streaming evaluation needs pyarrow: pip install 'calibkit[parquet]'"
        ) from exc
    return pa


def _schema_names(files: list[Path]) -> list[str]:
    pa = _arrow()
    first = pa.parquet.read_schema(files[0])
    for f in files[1:]:
        s = pa.parquet.read_schema(f)
        if s.names != first.names:
            raise ValueError(
                f"{f} has columns {s.names} but {files[0]} has {first.names}; every file of a "
                "dataset needs the same columns"
            )
    return [str(c) for c in first.names]


def _file_batches(pf: Any, batch_rows: int, columns: list[str]) -> Iterator[Any]:
    """Record batches of one file, one row group at a time: ``ParquetFile.iter_batches`` over
    the whole file keeps decoded pages alive (Arrow's peak grew with the file: 69 MB for 3M
    rows); per row group it stays at one row group's worth (11 MB)."""
    for rg in range(pf.num_row_groups):
        yield from pf.iter_batches(batch_size=batch_rows, row_groups=[rg], columns=columns)


def _label_missing(arr: Any) -> Any:
    pa = _arrow()
    miss = arr.is_null()
    if pa.types.is_floating(arr.type):
        miss = pa.compute.or_(miss, pa.compute.is_nan(arr).fill_null(True))
    return miss


def _scan_labels(files: list[Path], label_col: str) -> tuple[list[Any], Any, int]:
    """Distinct raw label values, their arrow type and the row count (label column only)."""
    pa = _arrow()
    distinct: dict[Any, None] = {}
    typ = None
    n = 0
    for f in files:
        pf = pa.parquet.ParquetFile(f)
        start = 0
        for batch in _file_batches(pf, BATCH_ROWS, [label_col]):
            arr = batch.column(0)
            typ = arr.type
            miss = _label_missing(arr)
            if pa.compute.any(miss).as_py():
                i = int(np.argmax(miss.to_numpy(zero_copy_only=False)))
                k = int(pa.compute.sum(miss).as_py())
                raise ValueError(
                    f"{f}: label column {label_col!r} has {k} missing value(s) in rows "
                    f"{start}..{start + len(arr) - 1} (first at row {start + i}); drop unlabeled rows"
                )
            for v in pa.compute.unique(arr).to_pylist():
                distinct[v] = None
            if len(distinct) > _MAX_DISTINCT_LABELS:
                raise ValueError(
                    f"label column {label_col!r} has more than {_MAX_DISTINCT_LABELS} distinct "
                    "values; is it the label column?"
                )
            start += len(arr)
            n += len(arr)
    if n == 0:
        raise ValueError(f"{files[0] if len(files) == 1 else 'the dataset'} has no rows")
    return list(distinct), typ, n


def _label_codes(values: list[Any], typ: Any, classes: tuple[str, ...], label_col: str) -> Any:
    """Class index of each distinct raw label, by :func:`calibkit.io._labels_to_index`'s rules
    applied to the whole column (names first, else integer indices)."""
    from calibkit.io import _labels_to_index

    pa = _arrow()
    s = pa.array(values, type=typ).to_pandas()
    return np.asarray(_labels_to_index(s.to_numpy(), classes, label_col), dtype=np.int64)


def resolve_source(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    label_col: str = "label",
    prob_cols: str | Sequence[str] | None = None,
    logit_cols: str | Sequence[str] | None = None,
    prob_col: str | None = None,
    logit_col: str | None = None,
    classes: Sequence[str] | None = None,
) -> ParquetSource:
    """Find the files, the score columns (:func:`calibkit.io.detect_score_columns`) and map the
    labels, reading only the schema and the label column."""
    import pandas as pd

    from calibkit.io import _binary_classes, detect_score_columns, read_scores_meta

    files = parquet_files(path)
    names = _schema_names(files)
    # a Scores.save file names its classes in the Parquet metadata (as calibkit.io.read_scores)
    header = read_scores_meta(files[0])
    explicit = any(v is not None for v in (prob_cols, logit_cols, prob_col, logit_col))
    hclasses = header.get("classes")
    if not explicit and classes is None and hclasses:
        wanted = [f"logit_{c}" for c in hclasses]
        if all(c in names for c in wanted):
            logit_cols, classes = wanted, [str(c) for c in hclasses]
    spec = detect_score_columns(
        names,
        prob_cols=prob_cols,
        logit_cols=logit_cols,
        prob_col=prob_col,
        logit_col=logit_col,
        classes=classes,
    )
    if label_col not in names:
        raise ValueError(
            f"label column {label_col!r} not in the table (columns: {names}); name it with "
            "label_col= (--label-col)"
        )
    values, typ, n = _scan_labels(files, label_col)
    class_names = spec.classes
    if spec.kind in ("binary_prob", "binary_logit"):
        pa = _arrow()
        distinct = pd.DataFrame({label_col: pa.array(values, type=typ).to_pandas()})
        named = _binary_classes(distinct, label_col, classes)
        if named is not None:
            class_names = named
    codes = _label_codes(values, typ, class_names, label_col)
    return ParquetSource(
        files=files,
        kind=spec.kind,
        score_columns=spec.columns,
        classes=class_names,
        label_col=label_col,
        label_values=values,
        label_codes=codes,
        label_type=typ,
        n_rows=n,
    )


def batch_inputs(
    batch: Any, src: ParquetSource, positive: int | None = None
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64] | None]:
    """One record batch (pyarrow) -> ``(probs, labels, logits)`` as ``calibkit evaluate`` builds
    them for a whole table.

    Scores go through :func:`calibkit.io.scores_from_table` (the same checks) and
    :func:`calibkit.io.table_probabilities` / :func:`calibkit.cli.evaluate.evaluation_inputs`
    (a probability file's own numbers; logits, for an exact NLL, of a logit file); labels
    through the whole-column mapping in ``src``. Error messages name rows of the batch (from 0);
    the caller adds the file and the batch's first row.
    """
    from dataclasses import replace

    from calibkit.evaluation import evaluation_inputs
    from calibkit.io import scores_from_table, table_probabilities

    pa = _arrow()
    df = pa.table({c: batch.column(c) for c in src.score_columns}).to_pandas()
    scores = scores_from_table(
        df, label_col=None, classes=src.classes, id_col=None, **src.column_kwargs()
    )
    pos = pa.compute.index_in(
        batch.column(src.label_col), value_set=pa.array(src.label_values, type=src.label_type)
    )
    if pos.null_count:  # a value the label scan did not see (the file changed meanwhile?)
        raise ValueError(
            f"label column {src.label_col!r} holds a value that the label scan did not see"
        )
    y = src.label_codes[pos.to_numpy()]
    scores = replace(scores, labels=y)
    return evaluation_inputs(scores, table_probabilities(df, scores), positive)


def _iter_batches(src: ParquetSource, batch_rows: int) -> Iterator[tuple[Path, int, Any]]:
    pa = _arrow()
    cols = [*src.score_columns, src.label_col]
    for f in src.files:
        pf = pa.parquet.ParquetFile(f)
        start = 0
        for batch in _file_batches(pf, batch_rows, cols):
            yield f, start, batch
            start += batch.num_rows


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
