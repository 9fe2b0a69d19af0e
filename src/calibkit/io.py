"""Read user tables (CSV / TSV / JSONL / JSON / Parquet) and turn their columns into :class:`Scores`.

A *scored table* has one row per item, a label column (optional for ``apply``) and score columns
in one of these layouts (detected automatically, or named explicitly):

* ``logit_<class>`` columns: ``(n, K)`` class logits or log-probabilities;
* ``prob_<class>`` or ``p_<class>`` columns: ``(n, K)`` probabilities, rows summing to 1;
* one ``prob`` / ``p`` / ``score`` column: ``P(y = 1)`` of a binary task;
* one ``logit`` column: the binary logit ``log p / (1 - p)``.

Probabilities are converted to logits explicitly with :func:`calibkit.probs_to_logits` (a
probability of 0 becomes ``log(1e-12)``), so ``Scores.probs`` gives back the input probabilities.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from calibkit._atomic import atomic_write
from calibkit._math import probs_to_logits
from calibkit._validation import SIMPLEX_ATOL
from calibkit.scores import Scores

__all__ = [
    "TABLE_SUFFIXES",
    "ScoreColumns",
    "atomic_write",
    "detect_score_columns",
    "read_table",
    "scores_from_table",
    "write_table",
]

#: suffix -> reader name; ``.gz``/``.bz2``/``.xz``/``.zst``/``.zip`` may follow any text format
TABLE_SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSION = {".gz", ".bz2", ".xz", ".zst", ".zip"}

ScoreKind = Literal["logits", "probs", "binary_prob", "binary_logit"]

_PROB_PREFIXES = ("prob_", "p_")
_LOGIT_PREFIXES = ("logit_",)
_BINARY_PROB_NAMES = ("prob", "p", "score")
_BINARY_LOGIT_NAMES = ("logit",)


# ---------------------------------------------------------------------- reading / writing
def _table_format(path: Path) -> tuple[str, str | None]:
    suffixes = [s.lower() for s in path.suffixes]
    compression = None
    if suffixes and suffixes[-1] in _COMPRESSION:
        compression = suffixes.pop()
    fmt = TABLE_SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        known = ", ".join(sorted(TABLE_SUFFIXES))
        raise ValueError(
            f"cannot tell the format of {path.name!r} from its suffix; use one of {known} "
            "(text formats may end in .gz/.bz2/.xz/.zst/.zip)"
        )
    if fmt == "parquet" and compression is not None:
        raise ValueError(
            f"{path.name!r}: Parquet files are compressed internally; drop {compression}"
        )
    return fmt, compression


def read_table(path: str | os.PathLike[str], *, text_columns: Sequence[str] = ()) -> Any:
    """Read a table into a pandas ``DataFrame``, the format chosen by the file suffix.

    ``.csv``, ``.tsv``/``.txt`` (tab-separated), ``.jsonl``/``.ndjson`` (one JSON object per
    line), ``.json`` (a list of records, or JSON lines), ``.parquet``/``.pq`` (needs pyarrow).
    Text formats may be compressed (``.csv.gz`` ...). JSON values keep their JSON types (no
    date or dtype guessing).

    Parameters
    ----------
    path : path-like
    text_columns : sequence of str
        CSV/TSV columns to read as text (e.g. ids such as ``"007"``, which would become ``7``);
        names not in the file are ignored.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Unknown suffix, unparsable content, or an empty table.
    """
    import pandas as pd

    p = Path(path)
    fmt, _ = _table_format(p)
    if not p.is_file():
        raise FileNotFoundError(f"table file {p} not found")
    try:
        as_text = {c: str for c in text_columns}
        if fmt == "csv":
            df = pd.read_csv(p, dtype=as_text)
        elif fmt == "tsv":
            df = pd.read_csv(p, sep="\t", dtype=as_text)
        elif fmt == "jsonl":
            df = pd.read_json(p, lines=True, precise_float=True, dtype=False)
        elif fmt == "json":
            df = _read_json(p)
        else:
            try:
                import pyarrow  # noqa: F401
            except ImportError as exc:  # pragma: no cover - pyarrow is installed in dev
                raise ImportError(
                    "reading Parquet needs pyarrow: pip install 'calibkit[parquet]'"
                ) from exc
            df = pd.read_parquet(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"cannot parse {p} as {fmt.upper()}: {exc}") from exc
    except ValueError as exc:  # pandas' JSON errors are ValueErrors without the file name
        raise ValueError(f"cannot parse {p} as {fmt.upper()}: {exc}") from exc
    if len(df) == 0:
        raise ValueError(f"{p} has no rows")
    df.columns = [str(c) for c in df.columns]
    return df


def _read_json(p: Path) -> Any:
    import pandas as pd

    try:
        return pd.read_json(p, orient="records", precise_float=True, dtype=False)
    except ValueError:
        return pd.read_json(p, lines=True, precise_float=True, dtype=False)


def write_table(df: Any, path: str | os.PathLike[str]) -> Path:
    """Write a ``DataFrame`` atomically (temp file + ``os.replace``), the format by suffix.

    Same formats as :func:`read_table`; ``.json`` is written as a list of records. JSON floats
    keep 15 significant digits.
    """
    p = Path(path)
    fmt, compression = _table_format(p)
    comp = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zip": "zip"}.get(
        compression or "", None
    )
    with atomic_write(p) as tmp:
        if fmt == "csv":
            df.to_csv(tmp, index=False, compression=comp)
        elif fmt == "tsv":
            df.to_csv(tmp, index=False, sep="\t", compression=comp)
        elif fmt == "jsonl":
            df.to_json(tmp, orient="records", lines=True, compression=comp, double_precision=15)
        elif fmt == "json":
            df.to_json(tmp, orient="records", compression=comp, double_precision=15)
        else:
            df.to_parquet(tmp, index=False)
    return p


# ---------------------------------------------------------------------- column detection
@dataclass(frozen=True)
class ScoreColumns:
    """Where the scores of a table are.

    Attributes
    ----------
    kind : {"logits", "probs", "binary_prob", "binary_logit"}
        ``logits``/``probs``: one column per class; ``binary_prob``: one ``P(y=1)`` column;
        ``binary_logit``: one ``log p/(1-p)`` column.
    columns : tuple of str
        The score columns, in class order.
    classes : tuple of str
        Class names in column order (``K`` names; 2 for the binary kinds).
    """

    kind: ScoreKind
    columns: tuple[str, ...]
    classes: tuple[str, ...]


def _strip_prefix(col: str, prefixes: Sequence[str]) -> str:
    for pre in prefixes:
        if col.startswith(pre) and len(col) > len(pre):
            return col[len(pre) :]
    return col


def _prefixed(columns: Sequence[str], prefixes: Sequence[str]) -> list[str]:
    for pre in prefixes:
        found = [c for c in columns if c.startswith(pre) and len(c) > len(pre)]
        if found:
            return found
    return []


def _split_cols(cols: str | Sequence[str] | None) -> list[str] | None:
    if cols is None:
        return None
    if isinstance(cols, str):
        parts = [c.strip() for c in cols.split(",") if c.strip()]
    else:
        parts = [str(c) for c in cols]
    if not parts:
        raise ValueError("an empty list of score columns was given")
    return parts


def detect_score_columns(
    columns: Sequence[str],
    *,
    prob_cols: str | Sequence[str] | None = None,
    logit_cols: str | Sequence[str] | None = None,
    prob_col: str | None = None,
    logit_col: str | None = None,
    classes: Sequence[str] | None = None,
) -> ScoreColumns:
    """Find the score columns among ``columns`` (see the module docstring for the layouts).

    Explicit arguments win; at most one of them may be given. Lists may be a comma-separated
    string. Class names come from ``classes`` if given, else from the column names with the
    ``prob_``/``p_``/``logit_`` prefix stripped (``("0", "1")`` for the binary kinds).

    Raises
    ------
    ValueError
        Named columns missing, no score columns found, or an ambiguous layout.
    """
    cols = [str(c) for c in columns]
    given = {
        "prob_cols": prob_cols,
        "logit_cols": logit_cols,
        "prob_col": prob_col,
        "logit_col": logit_col,
    }
    named = [k for k, v in given.items() if v is not None]
    if len(named) > 1:
        raise ValueError(f"give at most one of {', '.join(named)}")

    def _need(wanted: Sequence[str]) -> None:
        missing = [c for c in wanted if c not in cols]
        if missing:
            raise ValueError(f"column(s) {missing} not in the table; its columns are {cols}")

    kind: ScoreKind
    pcols = _split_cols(prob_cols)
    lcols = _split_cols(logit_cols)
    if pcols is not None or lcols is not None:
        multi = pcols if pcols is not None else lcols
        assert multi is not None
        _need(multi)
        if len(multi) == 1:
            kind = "binary_prob" if pcols is not None else "binary_logit"
        else:
            kind = "probs" if pcols is not None else "logits"
        score_cols = multi
        prefixes: tuple[str, ...] = _PROB_PREFIXES if pcols is not None else _LOGIT_PREFIXES
    elif prob_col is not None or logit_col is not None:
        single = prob_col if prob_col is not None else logit_col
        assert single is not None
        _need([single])
        kind = "binary_prob" if prob_col is not None else "binary_logit"
        score_cols = [single]
        prefixes = ()
    else:
        found: list[tuple[ScoreKind, list[str]]] = []
        logit_found = _prefixed(cols, _LOGIT_PREFIXES)
        prob_found = _prefixed(cols, _PROB_PREFIXES)
        if len(logit_found) >= 2:
            found.append(("logits", logit_found))
        if len(prob_found) >= 2:
            found.append(("probs", prob_found))
        if not found:
            for name in _BINARY_PROB_NAMES:
                if name in cols:
                    found.append(("binary_prob", [name]))
                    break
            for name in _BINARY_LOGIT_NAMES:
                if name in cols:
                    found.append(("binary_logit", [name]))
        if not found:
            raise ValueError(
                "no score columns found: expected logit_<class> or prob_<class>/p_<class> "
                "columns (two or more), or one prob/p/score (binary P(y=1)) or logit column; "
                f"the table has {cols}. Name them with prob_cols=/logit_cols=/prob_col= "
                "(--prob-cols/--logit-cols/--prob-col on the command line)"
            )
        if len(found) > 1:
            desc = "; ".join(f"{k}: {v}" for k, v in found)
            raise ValueError(
                f"ambiguous score columns ({desc}); choose with prob_cols= or logit_cols= "
                "(--prob-cols/--logit-cols)"
            )
        kind, score_cols = found[0]
        prefixes = _LOGIT_PREFIXES if kind in ("logits", "binary_logit") else _PROB_PREFIXES
    if len(set(score_cols)) != len(score_cols):
        raise ValueError(f"score columns repeat a name: {score_cols}")
    binary = kind in ("binary_prob", "binary_logit")
    if classes is not None:
        names = tuple(str(c) for c in classes)
        k = 2 if binary else len(score_cols)
        if len(names) != k:
            raise ValueError(
                f"classes has {len(names)} names but the scores have {k} classes "
                f"(columns {score_cols})"
            )
    elif binary:
        names = ("0", "1")
    else:
        names = tuple(_strip_prefix(c, prefixes) for c in score_cols)
    if len(set(names)) != len(names):
        raise ValueError(f"class names repeat: {names}; pass classes= to name them")
    return ScoreColumns(kind=kind, columns=tuple(score_cols), classes=names)


# ---------------------------------------------------------------------- table -> Scores
def _column_values(df: Any, cols: Sequence[str]) -> NDArray[np.float64]:
    import pandas as pd

    out = np.empty((len(df), len(cols)), dtype=np.float64)
    for j, c in enumerate(cols):
        s = df[c]
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            num = pd.to_numeric(s, errors="coerce")
            bad = num.isna() & s.notna()
            if bad.any():
                i = int(np.argmax(bad.to_numpy()))
                raise ValueError(f"column {c!r} is not numeric (row {i} holds {s.iloc[i]!r})")
            s = num
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        nan = np.isnan(v)
        if nan.any():
            rows = np.flatnonzero(nan)
            raise ValueError(
                f"column {c!r} has {rows.size} missing/NaN value(s) (first at row {int(rows[0])})"
            )
        if np.isinf(v).any():
            rows = np.flatnonzero(np.isinf(v))
            raise ValueError(
                f"column {c!r} has {rows.size} infinite value(s) (first at row {int(rows[0])})"
            )
        out[:, j] = v
    return out


def _check_prob_values(p: NDArray[np.float64], cols: Sequence[str]) -> None:
    lo, hi = p.min(axis=0), p.max(axis=0)
    for j, c in enumerate(cols):
        if lo[j] < 0.0 or hi[j] > 1.0:
            raise ValueError(
                f"probability column {c!r} leaves [0, 1] (min={lo[j]:.4g}, max={hi[j]:.4g}); "
                "if these are logits name them with logit_cols= (--logit-cols)"
            )
    if p.shape[1] >= 2:
        s = p.sum(axis=1)
        bad = np.abs(s - 1.0) > SIMPLEX_ATOL
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"probability columns {list(cols)} must sum to 1 in every row; {int(bad.sum())} "
                f"row(s) do not (row {i} sums to {s[i]:.6g})"
            )


def _labels_to_index(values: Any, classes: tuple[str, ...], label_col: str) -> NDArray[np.int64]:
    """Map a label column to indices into ``classes``: by name first, else integer index."""
    import pandas as pd

    s = pd.Series(values)
    missing = s.isna().to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)
        raise ValueError(
            f"label column {label_col!r} has {rows.size} missing value(s) (first at row "
            f"{int(rows[0])}); drop unlabeled rows or pass label_col=None"
        )
    if pd.api.types.is_bool_dtype(s):
        s = s.astype(np.int64)
    if pd.api.types.is_float_dtype(s):
        v = s.to_numpy(dtype=np.float64)
        if not np.all(v == np.round(v)):
            raise ValueError(f"label column {label_col!r} has non-integer numbers")
        s = pd.Series(v.astype(np.int64))
    as_str = s.astype(str).str.strip()
    lookup = {c: i for i, c in enumerate(classes)}
    if bool(as_str.isin(lookup.keys()).all()):
        return as_str.map(lookup).to_numpy(dtype=np.int64)
    if pd.api.types.is_integer_dtype(s) or bool(as_str.str.fullmatch(r"-?\d+").all()):
        idx = as_str.astype(np.int64).to_numpy()
        bad = (idx < 0) | (idx >= len(classes))
        if bad.any():
            raise ValueError(
                f"label column {label_col!r} has value {int(idx[np.argmax(bad)])}, which is "
                f"neither a class name nor an index into the {len(classes)} classes {classes}"
            )
        return idx.astype(np.int64)
    unknown = sorted(set(as_str) - set(lookup))
    raise ValueError(
        f"label column {label_col!r} holds {unknown[:5]}{' ...' if len(unknown) > 5 else ''}, "
        f"not among the classes {classes}; pass classes= (--classes) to name the columns' classes"
    )


def _binary_classes(
    df: Any, label_col: str | None, classes: Sequence[str] | None
) -> tuple[str, ...] | None:
    """Class names of a single-column binary table when labels are strings (None: keep 0/1)."""
    import pandas as pd

    if classes is not None or label_col is None or label_col not in df.columns:
        return None
    s = df[label_col].dropna()
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return None
    vals = set(s.astype(str).str.strip())
    if vals <= {"0", "1"}:
        return None
    if {v.lower() for v in vals} <= {"false", "true"} and len(vals) <= 2:
        neg = next((v for v in vals if v.lower() == "false"), "false")
        pos = next((v for v in vals if v.lower() == "true"), "true")
        return (neg, pos)
    raise ValueError(
        f"a single probability/logit column scores P(y=1), but the labels are {sorted(vals)[:5]}; "
        "say which class is positive with classes=(negative, positive) (--classes NEG,POS)"
    )


def scores_from_table(
    df: Any,
    *,
    label_col: str | None = "label",
    prob_cols: str | Sequence[str] | None = None,
    logit_cols: str | Sequence[str] | None = None,
    prob_col: str | None = None,
    logit_col: str | None = None,
    classes: Sequence[str] | None = None,
    id_col: str | None = "id",
    require_labels: bool = False,
) -> Scores:
    """Build :class:`~calibkit.Scores` from a scored table.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per item (e.g. from :func:`read_table`).
    label_col : str or None
        Gold labels: class names (matched to ``classes``) or integer indices ``0..K-1``. Labels
        are matched by name first, so integer labels with ``prob_1 .. prob_K`` columns are read
        as names. A missing column gives unlabeled Scores (unless ``require_labels``); ``None``
        ignores labels.
    prob_cols, logit_cols : list of str or comma-separated str, optional
        ``(n, K)`` probability (rows sum to 1) or logit columns in class order; one column means
        a binary ``P(y=1)`` / binary logit.
    prob_col, logit_col : str, optional
        One binary ``P(y=1)`` / binary-logit column.
    classes : sequence of str, optional
        Class names in column order (``(negative, positive)`` for one binary column). Default:
        the column names without their ``prob_``/``p_``/``logit_`` prefix, or ``("0", "1")``.
    id_col : str or None
        Item ids, kept in ``Scores.ids`` when the column exists.
    require_labels : bool
        Raise if there is no label column.

    Returns
    -------
    Scores
        ``(n, K)`` logits (``K = 2`` for binary columns; binary ``p`` becomes
        ``[log(1-p), log(p)]``, a binary logit ``z`` becomes ``[0, z]``), labels, classes, ids and
        ``meta = {"score_columns": [...], "score_kind": kind}``.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame; got {type(df).__name__}")
    if len(df) == 0:
        raise ValueError("the table has no rows")
    spec = detect_score_columns(
        list(df.columns),
        prob_cols=prob_cols,
        logit_cols=logit_cols,
        prob_col=prob_col,
        logit_col=logit_col,
        classes=classes,
    )
    values = _column_values(df, spec.columns)
    class_names = spec.classes
    if spec.kind == "probs":
        _check_prob_values(values, spec.columns)
        logits = probs_to_logits(values)
    elif spec.kind == "binary_prob":
        _check_prob_values(values, spec.columns)
        p1 = values[:, 0]
        logits = probs_to_logits(np.stack([1.0 - p1, p1], axis=1))
    elif spec.kind == "binary_logit":
        z = values[:, 0]
        logits = np.stack([np.zeros_like(z), z], axis=1)
    else:
        logits = values
    if spec.kind in ("binary_prob", "binary_logit"):
        named = _binary_classes(df, label_col, classes)
        if named is not None:
            class_names = named
    labels = None
    if label_col is not None and label_col in df.columns:
        labels = _labels_to_index(df[label_col].to_numpy(), class_names, label_col)
    elif require_labels:
        raise ValueError(
            f"label column {label_col!r} not in the table (columns: {list(df.columns)}); "
            "name it with label_col= (--label-col)"
        )
    ids: Any = np.zeros(0, dtype=np.int64)
    if id_col is not None and id_col in df.columns:
        ids = df[id_col].to_numpy()
        if pd.isna(ids).any():
            raise ValueError(f"id column {id_col!r} has missing values")
    return Scores(
        logits=logits,
        labels=labels,
        classes=class_names,
        ids=ids,
        meta={"score_columns": list(spec.columns), "score_kind": spec.kind},
    )
