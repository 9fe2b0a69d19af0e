"""Read a Parquet file or directory in record batches: file discovery, the label scan and the
score columns of each batch (the reading side of :mod:`calibkit.metrics.out_of_core`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["BATCH_ROWS", "ParquetSource", "batch_inputs", "parquet_files", "resolve_source"]

#: default rows per record batch
BATCH_ROWS = 1 << 16
_MAX_DISTINCT_LABELS = 10_000


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
