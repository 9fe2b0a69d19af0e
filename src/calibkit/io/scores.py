"""Scores construction: the score and label columns of a table become :class:`~calibkit.Scores`.

Every value is checked where it enters (numeric, finite, probabilities in [0, 1] whose rows sum
to 1, labels among the classes), and every error names the file, the column and the row.
Probabilities are converted to logits explicitly with :func:`calibkit.probs_to_logits` (a
probability of 0 becomes ``log(1e-12)``), so ``Scores.probs`` gives back the input probabilities;
:func:`table_probabilities` returns the file's own numbers for metrics.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit._math import probs_to_logits
from calibkit._validation import SIMPLEX_ATOL
from calibkit.io.schema import _binary_classes, detect_score_columns
from calibkit.io.tables import _SOURCE_ATTR, read_scores_meta, read_table, row_ref
from calibkit.scores import Scores

__all__ = ["read_scores", "read_scores_table", "scores_from_table", "table_probabilities"]


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
                raise ValueError(
                    f"column {c!r} is not numeric: {row_ref(df, i)} holds {s.iloc[i]!r} "
                    f"({int(bad.sum())} such value(s))"
                )
            s = num
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        nan = np.isnan(v)
        if nan.any():
            rows = np.flatnonzero(nan)
            raise ValueError(
                f"column {c!r} has {rows.size} missing/NaN value(s), first at "
                f"{row_ref(df, int(rows[0]))}"
            )
        if np.isinf(v).any():
            rows = np.flatnonzero(np.isinf(v))
            raise ValueError(
                f"column {c!r} has {rows.size} infinite value(s), first at "
                f"{row_ref(df, int(rows[0]))}"
            )
        out[:, j] = v
    return out


def _check_prob_values(df: Any, p: NDArray[np.float64], cols: Sequence[str]) -> None:
    for j, c in enumerate(cols):
        bad = (p[:, j] < 0.0) | (p[:, j] > 1.0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"probability column {c!r} leaves [0, 1] at {int(bad.sum())} row(s), first at "
                f"{row_ref(df, i)} ({p[i, j]:.6g}); if these are logits name them with "
                "logit_cols= (--logit-cols)"
            )
    if p.shape[1] >= 2:
        s = p.sum(axis=1)
        bad = np.abs(s - 1.0) > SIMPLEX_ATOL
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"probability columns {list(cols)} must sum to 1 in every row; {int(bad.sum())} "
                f"row(s) do not, first {row_ref(df, i)}, which sums to {s[i]:.6g}"
            )


def _labels_to_index(
    values: Any, classes: tuple[str, ...], label_col: str, df: Any = None
) -> NDArray[np.int64]:
    """Map a label column to indices into ``classes``: by name first, else integer index."""
    import pandas as pd

    def where(i: int) -> str:
        return row_ref(df, i) if df is not None else f"row {i} (0-based)"

    s = pd.Series(values)
    missing = s.isna().to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)
        raise ValueError(
            f"label column {label_col!r} has {rows.size} missing value(s), first at "
            f"{where(int(rows[0]))}; drop unlabeled rows or pass label_col=None"
        )
    if pd.api.types.is_bool_dtype(s):
        s = s.astype(np.int64)
    if pd.api.types.is_float_dtype(s):
        v = s.to_numpy(dtype=np.float64)
        frac = v != np.round(v)
        if frac.any():
            i = int(np.argmax(frac))
            raise ValueError(
                f"label column {label_col!r} has non-integer numbers ({where(i)} holds {v[i]!r})"
            )
        s = pd.Series(v.astype(np.int64))
    as_str = s.astype(str).str.strip()
    lookup = {c: i for i, c in enumerate(classes)}
    if bool(as_str.isin(lookup.keys()).all()):
        return as_str.map(lookup).to_numpy(dtype=np.int64)
    if pd.api.types.is_integer_dtype(s) or bool(as_str.str.fullmatch(r"-?\d+").all()):
        idx = as_str.astype(np.int64).to_numpy()
        bad = (idx < 0) | (idx >= len(classes))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"label column {label_col!r} has value {int(idx[i])}, which is neither a class "
                f"name nor an index into the {len(classes)} classes {classes}, at {where(i)}"
            )
        return idx.astype(np.int64)
    unknown = sorted(set(as_str) - set(lookup))
    first = int(np.argmax(~as_str.isin(lookup.keys()).to_numpy()))
    raise ValueError(
        f"label column {label_col!r} holds {unknown[:5]}{' ...' if len(unknown) > 5 else ''}"
        f", not among the classes {classes} (first at {where(first)}); pass classes= (--classes) "
        "to name the columns' classes"
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
    src = df.attrs.get(_SOURCE_ATTR) or {}
    try:
        return _scores_from_table(
            df,
            label_col=label_col,
            prob_cols=prob_cols,
            logit_cols=logit_cols,
            prob_col=prob_col,
            logit_col=logit_col,
            classes=classes,
            id_col=id_col,
            require_labels=require_labels,
        )
    except ValueError as exc:
        if src.get("path") and not str(exc).startswith(src["path"]):
            raise ValueError(f"{src['path']}: {exc}") from None
        raise


def _scores_from_table(
    df: Any,
    *,
    label_col: str | None,
    prob_cols: str | Sequence[str] | None,
    logit_cols: str | Sequence[str] | None,
    prob_col: str | None,
    logit_col: str | None,
    classes: Sequence[str] | None,
    id_col: str | None,
    require_labels: bool,
) -> Scores:
    import pandas as pd

    if len(df) == 0:
        raise ValueError("the table has no rows")
    names = [str(c) for c in df.columns]
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise ValueError(f"the table repeats column name(s) {dup}; rename or drop the copies")
    spec = detect_score_columns(
        names,
        prob_cols=prob_cols,
        logit_cols=logit_cols,
        prob_col=prob_col,
        logit_col=logit_col,
        classes=classes,
    )
    values = _column_values(df, spec.columns)
    class_names = spec.classes
    if spec.kind == "probs":
        _check_prob_values(df, values, spec.columns)
        logits = probs_to_logits(values)
    elif spec.kind == "binary_prob":
        _check_prob_values(df, values, spec.columns)
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
        labels = _labels_to_index(df[label_col].to_numpy(), class_names, label_col, df)
    elif require_labels:
        raise ValueError(
            f"label column {label_col!r} not in the table (columns: {list(df.columns)}); "
            "name it with label_col= (--label-col)"
        )
    ids: Any = np.zeros(0, dtype=np.int64)
    if id_col is not None and id_col in df.columns:
        ids = df[id_col].to_numpy()
        missing = pd.isna(ids)
        if missing.any():
            i = int(np.argmax(missing))
            raise ValueError(
                f"id column {id_col!r} has {int(missing.sum())} missing value(s), first at "
                f"{row_ref(df, i)}"
            )
    return Scores(
        logits=logits,
        labels=labels,
        classes=class_names,
        ids=ids,
        meta={"score_columns": list(spec.columns), "score_kind": spec.kind},
    )


def table_probabilities(df: Any, scores: Scores) -> NDArray[np.float64] | None:
    """The ``(n, K)`` probabilities exactly as a table holds them, or None for logit columns.

    ``scores`` is the :func:`scores_from_table` result for ``df`` (its ``meta`` names the
    columns). ``Scores`` keeps clipped log-probabilities (a probability of 0 becomes
    ``log(1e-12)``); metrics of a probability file should see the file's own numbers, as
    ``calibkit.metrics`` would if called on them.
    """
    kind = scores.meta.get("score_kind")
    cols = scores.meta.get("score_columns") or []
    if kind not in ("probs", "binary_prob"):
        return None
    v = _column_values(df, cols)
    if kind == "binary_prob":
        v = np.stack([1.0 - v[:, 0], v[:, 0]], axis=1)
    return v


def read_scores_table(
    path: str | os.PathLike[str],
    *,
    label_col: str | None = "label",
    prob_cols: str | Sequence[str] | None = None,
    logit_cols: str | Sequence[str] | None = None,
    prob_col: str | None = None,
    logit_col: str | None = None,
    classes: Sequence[str] | None = None,
    id_col: str | None = "id",
    require_labels: bool = False,
) -> tuple[Scores, Any]:
    """:func:`read_scores` that also returns the table it read: ``(scores, DataFrame)``."""
    from dataclasses import replace

    p = Path(path)
    df = read_table(p, text_columns=[id_col] if id_col else ())
    header = read_scores_meta(p)
    explicit = any(v is not None for v in (prob_cols, logit_cols, prob_col, logit_col))
    hclasses = header.get("classes")
    if not explicit and classes is None and hclasses:
        wanted = [f"logit_{c}" for c in hclasses]
        if all(c in df.columns for c in wanted):
            logit_cols = wanted
            classes = [str(c) for c in hclasses]
    scores = scores_from_table(
        df,
        label_col=label_col,
        prob_cols=prob_cols,
        logit_cols=logit_cols,
        prob_col=prob_col,
        logit_col=logit_col,
        classes=classes,
        id_col=id_col,
        require_labels=require_labels,
    )
    meta = {**dict(header.get("meta") or {}), **scores.meta}
    return replace(scores, meta=meta), df


def read_scores(
    path: str | os.PathLike[str],
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
    """Read any scored table (a :meth:`Scores.save` file or a plain table) into ``Scores``.

    Columns are found as in :func:`scores_from_table` (labels may be names or 0-based indices);
    a Scores file's recorded class order and ``meta`` (model, provenance ...) are kept, merged
    with ``score_columns`` / ``score_kind``. Every error names the file, the column and the row.
    """
    return read_scores_table(
        path,
        label_col=label_col,
        prob_cols=prob_cols,
        logit_cols=logit_cols,
        prob_col=prob_col,
        logit_col=logit_col,
        classes=classes,
        id_col=id_col,
        require_labels=require_labels,
    )[0]
