"""Schema detection: which columns of a scored table hold the scores, and what they mean.

Layouts (detected automatically, or named explicitly):

* ``logit_<class>`` columns: ``(n, K)`` class logits or log-probabilities;
* ``prob_<class>`` or ``p_<class>`` columns: ``(n, K)`` probabilities, rows summing to 1;
* one ``prob`` / ``p`` / ``score`` column: ``P(y = 1)`` of a binary task;
* one ``logit`` column: the binary logit ``log p / (1 - p)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ScoreColumns", "ScoreKind", "detect_score_columns"]

ScoreKind = Literal["logits", "probs", "binary_prob", "binary_logit"]

_PROB_PREFIXES = ("prob_", "p_")
_LOGIT_PREFIXES = ("logit_",)
_BINARY_PROB_NAMES = ("prob", "p", "score")
_BINARY_LOGIT_NAMES = ("logit",)


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


def _detect_layout(cols: list[str]) -> tuple[ScoreKind, list[str]]:
    """The one score layout among ``cols`` (module docstring); ``ValueError`` if none or two."""
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
    return found[0]


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
        kind, score_cols = _detect_layout(cols)
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
