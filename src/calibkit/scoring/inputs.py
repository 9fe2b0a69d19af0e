"""Reading the items to score: a table file, a built-in dataset or a bundled sample.

The input side of ``calibkit score`` as a library: :func:`load_classification_input` (texts,
labels, ids) and :func:`load_mcq_input` (questions). Every value is checked where it enters: a
missing or non-text value is an error naming the source, the row and the column (never the
string ``"nan"``). With ``with_ref=True`` each also returns a function ``row -> "data row 8
(file line 9)"`` for messages about later failures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RowRef", "load_classification_input", "load_mcq_input"]

RowRef = Callable[[int], str]


def _plain_ref(what: str) -> RowRef:
    return lambda row: f"{what} row {row} (0-based)"


def _file_ref(df: Any) -> RowRef:
    from calibkit.io import row_ref

    return lambda row: row_ref(df, row)


def _missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(isinstance(v, float) and math.isnan(v))
    except TypeError:  # pragma: no cover - exotic scalars
        return False


def _text_values(
    values: Sequence[Any], col: str, where: str, ref: RowRef, rows: Sequence[int]
) -> list[str]:
    """The values of a text column as strings, or a ValueError naming row and column."""
    out: list[str] = []
    for v, r in zip(values, rows, strict=True):
        if isinstance(v, str):
            out.append(v)
            continue
        what = "empty" if _missing(v) else f"{type(v).__name__} ({v!r}), not text"
        raise ValueError(f"{where}: column {col!r} is {what} in {ref(r)}")
    return out


def load_classification_input(
    data: str,
    *,
    split: str | None,
    text_col: str,
    label_col: str,
    id_col: str,
    with_ref: bool = False,
) -> Any:
    """A DataFrame with ``row`` (0-based data row of the source), ``text`` and, when present,
    ``label`` and ``id`` columns; with ``with_ref``, also a function ``row -> "data row 8 (file
    line 9)"`` for messages.

    Missing or non-text values in the text, label or id column are an error naming the row and
    the column (never the string ``"nan"``).
    """
    import pandas as pd

    from calibkit import datasets

    path = Path(data)
    ref: RowRef
    if data.startswith("sample:"):
        df = datasets.load_bundled_sample(data.split(":", 1)[1])
        if isinstance(df, list):
            raise ValueError(f"{data} is a multiple-choice sample; use --task mcq")
        df = df.reset_index(drop=True)
        where, ref = data, _plain_ref(data)
    elif path.is_file():
        from calibkit.io import read_table

        df = read_table(path, text_columns=[text_col, label_col, id_col])
        where, ref = str(path), _file_ref(df)
        if split is not None:
            if "split" not in df.columns:
                raise ValueError(f"--split given but {path} has no 'split' column")
            df = df[df["split"].astype(str) == split]
            if len(df) == 0:
                raise ValueError(f"{path}: no row has split {split!r}")
    elif data.lower() in datasets.CLASSIFICATION:
        df = datasets.load_classification(data, split=split).reset_index(drop=True)
        where = f"{data}" + (f" ({split})" if split else "")
        ref = _plain_ref(where)
    else:
        raise ValueError(
            f"--data {data!r} is neither a file nor a classification dataset "
            f"({', '.join(sorted(datasets.CLASSIFICATION))}) nor sample:subj"
        )
    if text_col not in df.columns:
        raise ValueError(f"text column {text_col!r} not in the data (columns: {list(df.columns)})")
    rows = [int(r) for r in df.index]
    out = pd.DataFrame({"row": np.asarray(rows, dtype=np.int64)})
    out["text"] = _text_values(df[text_col].tolist(), text_col, where, ref, rows)
    for col, name in ((label_col, "label"), (id_col, "id")):
        if col in df.columns:
            vals = df[col].tolist()
            for v, r in zip(vals, rows, strict=True):
                if _missing(v):
                    raise ValueError(f"{where}: column {col!r} is empty in {ref(r)}")
            out[name] = [str(v) for v in vals]
    return (out, ref) if with_ref else out


def _as_index(v: Any) -> int | None:
    """An option index from an int, an integral float (CSV/Parquet) or a digit string."""
    if isinstance(v, bool | np.bool_) or v is None:
        return None
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return int(v) if math.isfinite(v) and float(v).is_integer() else None
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    return None


def _mcq_choices(v: Any) -> tuple[str, ...] | None:
    if isinstance(v, str | bytes) or v is None:
        return None
    try:
        vals = list(v)
    except TypeError:
        return None
    if not all(isinstance(c, str) for c in vals):
        return None
    return tuple(vals)


def load_mcq_input(data: str, *, split: str | None, with_ref: bool = False) -> Any:
    """A list of :class:`calibkit.datasets.MCQItem` (item ``i`` is data row ``i`` of the source);
    with ``with_ref``, also a function ``row -> "data row 8 (file line 9)"``.

    A file's rows are checked: ``question`` text, ``choices`` a list of >= 2 strings, ``answer``
    an index into them; an error names the row and the column.
    """
    from calibkit import datasets

    path = Path(data)
    ref: RowRef
    if data.startswith("sample:"):
        items = datasets.load_bundled_sample(data.split(":", 1)[1])
        if not isinstance(items, list):
            raise ValueError(f"{data} is not a multiple-choice sample; use sample:arc_challenge")
        ref = _plain_ref(data)
    elif path.is_file():
        from calibkit.io import read_table

        df = read_table(path, text_columns=["id"])
        missing = {"question", "choices", "answer"} - set(df.columns)
        if missing:
            raise ValueError(f"{path}: multiple-choice data needs columns {sorted(missing)}")
        ref = _file_ref(df)
        items = []
        for i, r in enumerate(df.to_dict("records")):
            q = r["question"]
            if not isinstance(q, str):
                what = "empty" if _missing(q) else f"{type(q).__name__} ({q!r}), not text"
                raise ValueError(f"{path}: column 'question' is {what} in {ref(i)}")
            choices = _mcq_choices(r["choices"])
            if choices is None or len(choices) < 2:
                raise ValueError(
                    f"{path}: column 'choices' in {ref(i)} must be a list of at least 2 option "
                    f"strings; got {r['choices']!r}"
                )
            a = _as_index(r["answer"])
            if a is None or not 0 <= a < len(choices):
                raise ValueError(
                    f"{path}: column 'answer' in {ref(i)} must be a 0-based index into the "
                    f"{len(choices)} choices; got {r['answer']!r}"
                )
            iid = r.get("id")
            items.append(
                datasets.MCQItem(
                    question=q,
                    choices=choices,
                    answer=a,
                    subject="" if _missing(r.get("subject")) else str(r.get("subject") or ""),
                    id=str(i) if _missing(iid) or iid == "" else str(iid),
                )
            )
    elif data.lower() in datasets.MCQ:
        items = datasets.load_mcq(data, split=split)
        ref = _plain_ref(f"{data}" + (f" ({split})" if split else ""))
    else:
        raise ValueError(
            f"--data {data!r} is neither a file nor a multiple-choice dataset "
            f"({', '.join(sorted(datasets.MCQ))}) nor sample:arc_challenge"
        )
    return (items, ref) if with_ref else items
