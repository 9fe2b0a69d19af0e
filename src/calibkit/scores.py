"""``Scores``: the one container every calibkit pipeline reads and writes.

A scored file from one command feeds the next (``score`` -> ``fit`` -> ``cascade train`` ...).

Per-item fields (the generated answer, the parsed answer index, the source row, the text ...)
live in ``Scores.per_item``, one length-``n`` array per name, and travel with the rows through
``subset``, ``concat``, ``save`` and ``load``. ``Scores.meta`` holds run-level provenance only;
its per-run counters (:data:`ADDITIVE_META`) add up and its event lists (:data:`LIST_META`)
join when Scores are concatenated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._math import log_softmax, probs_to_logits, softmax
from calibkit._validation import check_labels, check_logits, check_probs

__all__ = [
    "ADDITIVE_META",
    "LIST_META",
    "PER_ITEM_META_KEYS",
    "ROW_COUNTERS",
    "Scores",
    "field_spec",
    "merge_meta",
    "per_item_from_values",
]

#: run-level counters in ``meta`` that count events over the rows: summed by
#: :meth:`Scores.concat` and by the distributed merge
ADDITIVE_META = frozenset({"n_unparsed", "n_failed", "n_filled_missing", "filled_per_class"})
#: run-level lists in ``meta`` with one entry per event (e.g. ``failures``): concatenated
LIST_META = frozenset({"failures"})
#: counters of events on the rows themselves, with the per-item field they are counted from:
#: :meth:`Scores.subset` recounts them from that field, or drops them when it is absent
ROW_COUNTERS: dict[str, tuple[str, Callable[[NDArray[Any]], NDArray[np.bool_]]]] = {
    "n_unparsed": ("answer_index", lambda a: np.asarray(a) < 0),
    "n_filled_missing": ("filled_missing", lambda a: np.asarray(a).astype(bool)),
}
#: per-item lists that older calibkit versions kept in ``meta``; a ``meta`` entry under one of
#: these names is moved to ``per_item`` (so that it is sliced with the rows)
PER_ITEM_META_KEYS = ("answer_text", "answer_index", "max_position", "n_options")

_RESERVED_COLUMNS = ("id", "label")


def _frozen(a: NDArray[Any]) -> NDArray[Any]:
    if a.dtype != object:
        a = np.ascontiguousarray(a)
    elif not a.flags.writeable or not a.flags.c_contiguous:
        a = a.copy()
    a.setflags(write=False)
    return a


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _list_to_array(vals: list[Any]) -> NDArray[Any]:
    """A 1-D array of ``vals``: int64, float64 or bool when every value is one, else object."""
    if vals and all(_is_int(v) for v in vals):
        return np.asarray(vals, dtype=np.int64)
    if vals and all(isinstance(v, bool | np.bool_) for v in vals):
        return np.asarray(vals, dtype=bool)
    if vals and all(isinstance(v, float | np.floating) or _is_int(v) for v in vals):
        return np.asarray(vals, dtype=np.float64)
    out = np.empty(len(vals), dtype=object)
    for i, v in enumerate(vals):
        out[i] = v
    return out


def _per_item_array(name: Any, values: Any, n: int) -> NDArray[Any]:
    """Validate one per-item field: a str name (not ``id``/``label``/``logit_*``), ``n`` values."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"Scores.per_item names must be non-empty strings; got {name!r}")
    if name in _RESERVED_COLUMNS or name.startswith("logit_"):
        raise ValueError(
            f"Scores.per_item name {name!r} is reserved (it would clash with the id, label or "
            "logit_<class> columns of a saved file)"
        )
    if isinstance(values, np.ndarray):
        # a private copy (frozen below), so the caller's array stays writeable; read-only
        # arrays (another Scores' fields) are shared
        a = values.copy() if values.flags.writeable else values
        if a.dtype.kind in "US":
            a = a.astype(object)
    elif isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise ValueError(
            f"Scores.per_item[{name!r}] must be a sequence of {n} values; got "
            f"{type(values).__name__}"
        )
    else:
        a = _list_to_array(list(values))
    if a.ndim == 0 or a.shape[0] != n:
        got = 0 if a.ndim == 0 else a.shape[0]
        raise ValueError(
            f"Scores.per_item[{name!r}] has {got} entries but the Scores have {n} rows"
        )
    return _frozen(a)


def merge_meta(metas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Run-level ``meta`` of row-wise concatenated parts.

    The first part's entries, except that :data:`ADDITIVE_META` counters are summed over the
    parts (a part without one counts 0) and :data:`LIST_META` lists are concatenated (an entry
    repeated verbatim in several parts, as when parts were cut from one run, is kept once).
    """
    if not metas:
        return {}
    out = dict(metas[0])
    for key in ADDITIVE_META:
        vals = [m[key] for m in metas if m.get(key) is not None]
        if not vals:
            continue
        if all(_is_int(v) for v in vals):
            out[key] = int(sum(int(v) for v in vals))
        elif all(isinstance(v, Mapping) and all(_is_int(c) for c in v.values()) for v in vals):
            total: dict[str, int] = {}
            for v in vals:  # per-class counters: summed class by class
                for c, x in v.items():
                    total[c] = total.get(c, 0) + int(x)
            out[key] = total
        else:
            raise ValueError(
                f"meta[{key!r}] must be an int count (or a mapping of counts) in every part; "
                f"got {vals}"
            )
    for key in LIST_META:
        parts = [m[key] for m in metas if m.get(key) is not None]
        if parts:
            if not all(isinstance(v, list | tuple) for v in parts):
                raise ValueError(f"meta[{key!r}] must be a list in every part")
            seen: set[str] = set()
            joined = []
            for x in (x for v in parts for x in v):
                tag = json.dumps(x, sort_keys=True, default=str)
                if tag not in seen:  # parts cut from one run share its events: keep each once
                    seen.add(tag)
                    joined.append(x)
            out[key] = joined
    return out


@dataclass(frozen=True, eq=False)
class Scores:
    """Class scores of ``n`` items over ``K`` classes, with optional labels.

    Attributes
    ----------
    logits : (n, K) float64
        Class logits or log-probabilities, never post-softmax confidences.
    labels : (n,) int64 or None
        Gold class indices into ``classes``; ``None`` when unlabeled.
    classes : tuple of K str
        Class names in column order.
    ids : (n,) array
        Stable item ids (for caches, joins and resumes); ``0..n-1`` by default.
    meta : mapping
        Run-level provenance: model, prompt hash, task name, counters ... (never per-item lists:
        the names in :data:`PER_ITEM_META_KEYS` are moved to ``per_item``).
    per_item : mapping of str -> (n, ...) array
        Per-item fields aligned with the rows (generated answer text, parsed answer index, source
        row, text ...): int64 / float64 / bool arrays, or object arrays for text and lists.
        Sliced by :meth:`subset`, joined by :meth:`concat`, written by :meth:`save` as columns.
        Names must not be ``id``, ``label`` or start with ``logit_``.
    """

    logits: NDArray[np.float64]
    labels: NDArray[np.int64] | None = None
    classes: tuple[str, ...] = ()
    ids: NDArray[Any] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    meta: Mapping[str, Any] = field(default_factory=dict)
    per_item: Mapping[str, NDArray[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        z = check_logits(self.logits, name="Scores.logits")
        if z.ndim != 2:
            raise ValueError(
                f"Scores.logits must be (n, K); got shape {z.shape}. "
                "For binary scores use Scores.from_probs or stack [-z/2, z/2]"
            )
        n, k = z.shape
        object.__setattr__(self, "logits", _frozen(z))
        classes = (
            tuple(str(c) for c in self.classes) if self.classes else tuple(str(i) for i in range(k))
        )
        if len(classes) != k:
            raise ValueError(f"Scores.classes has {len(classes)} names but logits have {k} columns")
        if len(set(classes)) != k:
            raise ValueError(f"Scores.classes has duplicate names: {classes}")
        object.__setattr__(self, "classes", classes)
        if self.labels is not None:
            object.__setattr__(
                self, "labels", _frozen(check_labels(self.labels, n, k, name="Scores.labels"))
            )
        ids = np.asarray(self.ids)
        if ids.size == 0 and n > 0:
            ids = np.arange(n, dtype=np.int64)
        if ids.shape != (n,):
            raise ValueError(f"Scores.ids must have shape ({n},); got {ids.shape}")
        object.__setattr__(self, "ids", _frozen(ids))
        if not isinstance(self.meta, Mapping):
            raise ValueError(f"Scores.meta must be a mapping; got {type(self.meta).__name__}")
        if not isinstance(self.per_item, Mapping):
            raise ValueError(
                f"Scores.per_item must be a mapping of name -> array; got "
                f"{type(self.per_item).__name__}"
            )
        meta = dict(self.meta)
        raw = dict(self.per_item)
        for key in PER_ITEM_META_KEYS:  # older writers kept these per-item lists in meta
            if key in meta and isinstance(meta[key], list | tuple | np.ndarray):
                if key in raw:
                    raise ValueError(f"{key!r} is given both in Scores.meta and Scores.per_item")
                raw[key] = meta.pop(key)
        per_item = {name: _per_item_array(name, v, n) for name, v in raw.items()}
        object.__setattr__(self, "meta", meta)
        object.__setattr__(self, "per_item", per_item)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_probs(
        cls,
        probs: ArrayLike,
        labels: ArrayLike | None = None,
        classes: Sequence[str] = (),
        ids: ArrayLike | None = None,
        meta: Mapping[str, Any] | None = None,
        per_item: Mapping[str, Any] | None = None,
    ) -> Scores:
        """Build from probabilities: ``(n, K)`` rows, or ``(n,)`` = ``P(class 1)`` of a binary task.

        Stored as clipped log-probabilities (probability 0 becomes ``log(1e-12)``). Rows must sum
        to 1 within the tolerance of their dtype (float16/bfloat16 are accepted).
        """
        p = check_probs(probs)
        if p.ndim == 1:
            p = np.stack([1.0 - p, p], axis=1)
        return cls(
            logits=probs_to_logits(p),
            labels=None if labels is None else np.asarray(labels),
            classes=tuple(classes),
            ids=np.zeros(0, dtype=np.int64) if ids is None else np.asarray(ids),
            meta=meta or {},
            per_item=per_item or {},
        )

    # ------------------------------------------------------------------ derived views
    def __len__(self) -> int:
        return int(self.logits.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.logits.shape[1])

    @property
    def probs(self) -> NDArray[np.float64]:
        """(n, K) softmax probabilities."""
        return softmax(self.logits, axis=1)

    @property
    def log_probs(self) -> NDArray[np.float64]:
        """(n, K) log-softmax."""
        return log_softmax(self.logits, axis=1)

    @property
    def prediction(self) -> NDArray[np.int64]:
        """(n,) argmax class index."""
        return np.argmax(self.logits, axis=1).astype(np.int64)

    @property
    def confidence(self) -> NDArray[np.float64]:
        """(n,) top-label probability."""
        return np.max(self.probs, axis=1)

    @property
    def correct(self) -> NDArray[np.bool_]:
        """(n,) whether the prediction equals the label; needs labels."""
        return self.prediction == self.require_labels()

    def require_labels(self) -> NDArray[np.int64]:
        if self.labels is None:
            raise ValueError("these Scores are unlabeled; this operation needs labels")
        return self.labels

    # ------------------------------------------------------------------ transforms
    def with_logits(self, logits: ArrayLike, **meta: Any) -> Scores:
        """Same items with new ``(n, K)`` logits (e.g. after calibration); ``meta`` is merged."""
        return replace(
            self, logits=np.asarray(logits, dtype=np.float64), meta={**self.meta, **meta}
        )

    def subset(self, index: ArrayLike) -> Scores:
        """Rows selected by an integer index or boolean mask (``per_item`` fields too).

        Counters of row events in ``meta`` (:data:`ROW_COUNTERS`, e.g. ``n_unparsed``) are
        recounted over the selected rows from their per-item field, or dropped without it; so is
        ``filled_per_class``. Run-level entries (``failures``, ``n_failed``: items that are not
        rows) are kept.
        """
        idx = np.asarray(index)
        if idx.dtype == bool and idx.shape != (len(self),):
            raise ValueError(
                f"boolean index has shape {idx.shape}; the Scores have {len(self)} rows"
            )
        per_item = {k: v[idx] for k, v in self.per_item.items()}
        meta = dict(self.meta)
        for key, (source, event) in ROW_COUNTERS.items():
            if key in meta:
                if source in per_item:
                    meta[key] = int(np.sum(event(per_item[source])))
                else:
                    del meta[key]
        for key in ADDITIVE_META - set(ROW_COUNTERS) - {"n_failed"}:
            meta.pop(key, None)  # row counts that cannot be recounted for the selected rows
        return replace(
            self,
            logits=self.logits[idx],
            labels=None if self.labels is None else self.labels[idx],
            ids=self.ids[idx],
            meta=meta,
            per_item=per_item,
        )

    @staticmethod
    def concat(parts: Sequence[Scores]) -> Scores:
        """Row-wise concatenation of Scores over the same classes and ``per_item`` names.

        ``meta`` is the first part's, with :data:`ADDITIVE_META` counters summed and
        :data:`LIST_META` lists joined (:func:`merge_meta`).
        """
        if not parts:
            raise ValueError("concat needs at least one Scores")
        classes = parts[0].classes
        names = set(parts[0].per_item)
        for i, p in enumerate(parts[1:], start=1):
            if p.classes != classes:
                raise ValueError(
                    f"cannot concat Scores over different classes: {classes} vs {p.classes}"
                )
            if set(p.per_item) != names:
                raise ValueError(
                    f"cannot concat Scores with different per-item fields: part 0 has "
                    f"{sorted(names)}, part {i} has {sorted(p.per_item)}"
                )
        has_labels = [p.labels is not None for p in parts]
        if any(has_labels) and not all(has_labels):
            raise ValueError("cannot concat labeled and unlabeled Scores")
        return Scores(
            logits=np.concatenate([p.logits for p in parts]),
            labels=np.concatenate([p.require_labels() for p in parts]) if all(has_labels) else None,
            classes=classes,
            ids=np.concatenate([p.ids for p in parts]),
            meta=merge_meta([p.meta for p in parts]),
            per_item={k: _concat_field([p.per_item[k] for p in parts]) for k in parts[0].per_item},
        )

    # ------------------------------------------------------------------ I/O
    def to_frame(self) -> Any:
        """A pandas DataFrame: ``id``, ``label`` (name), ``logit_<class>`` columns, then one column
        per ``per_item`` field (2-D fields as one list per row)."""
        import pandas as pd

        cols: dict[str, Any] = {"id": self.ids}
        if self.labels is not None:
            cols["label"] = np.asarray(self.classes, dtype=object)[self.labels]
        for j, c in enumerate(self.classes):
            cols[f"logit_{c}"] = self.logits[:, j]
        for name, v in self.per_item.items():
            cols[name] = list(v.tolist()) if v.ndim > 1 else v
        return pd.DataFrame(cols)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically to ``.parquet`` (meta in the schema metadata), ``.csv`` or ``.jsonl``.

        CSV/JSONL get a ``<path>.meta.json`` sidecar holding ``classes``, ``meta`` and the type of
        each ``per_item`` column. Per-item fields become columns: numbers and text as such
        (as text in CSV), lists and 2-D fields as JSON text; :meth:`load` restores them.
        """
        from calibkit._atomic import atomic_write

        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".parquet", ".csv", ".jsonl", ".json"):
            raise ValueError(f"unknown file type {suffix!r}: use .parquet, .csv or .jsonl")
        df = self._storage_frame(fmt=suffix.lstrip(".").replace("jsonl", "json"))
        header = {
            "classes": list(self.classes),
            "meta": self.meta,
            "calibkit_scores": 1,
            "ids": _id_kind(self.ids),
            "per_item": {k: field_spec(v) for k, v in self.per_item.items()},
        }
        with atomic_write(path) as tmp:
            if suffix == ".parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pandas(df, preserve_index=False)
                md = dict(table.schema.metadata or {})
                md[b"calibkit"] = json.dumps(header, default=str).encode()
                pq.write_table(table.replace_schema_metadata(md), tmp)
            elif suffix == ".csv":
                df.to_csv(tmp, index=False, float_format="%.17g")
            else:  # json.dumps writes floats exactly (pandas keeps 15 digits)
                with open(tmp, "w", encoding="utf-8") as f:
                    for rec in df.to_dict(orient="records"):
                        f.write(json.dumps(rec, default=_json_default, allow_nan=False) + "\n")
        if path.suffix.lower() != ".parquet":
            side = path.with_name(path.name + ".meta.json")
            with atomic_write(side) as tmp:
                tmp.write_text(json.dumps(header, default=str, indent=2))
        return path

    def _storage_frame(self, *, fmt: str) -> Any:
        """:meth:`to_frame` with per-item fields encoded for a ``csv``/``json``/``parquet`` file."""
        import pandas as pd

        df = self.to_frame().iloc[:, : 1 + (self.labels is not None) + self.n_classes]
        cols = {name: _encode_field(v, fmt) for name, v in self.per_item.items()}
        return pd.concat([df, pd.DataFrame(cols, index=df.index)], axis=1) if cols else df

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Scores:
        """Read a file written by :meth:`save` (per-item fields and their types included)."""
        import pandas as pd

        path = Path(path)
        header: dict[str, Any] = {}
        suffix = path.suffix.lower()
        side = path.with_name(path.name + ".meta.json")
        if suffix != ".parquet" and side.exists():
            try:
                header = json.loads(side.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{side} is not valid JSON: {exc}") from exc
            if not isinstance(header, dict):
                raise ValueError(f"{side}: expected a JSON object")
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(b"calibkit")
            if raw:
                header = json.loads(raw)
            df = table.to_pandas()
        elif suffix == ".csv":
            specs = header.get("per_item") or {}
            as_text = {k: str for k in specs}
            as_text["label"] = str
            if header.get("ids") == "str":
                as_text["id"] = str
            df = pd.read_csv(path, dtype=as_text, keep_default_na=False, na_values=[""])
            for k in as_text:  # an empty text field is "", not NaN
                if k in df.columns:
                    df[k] = df[k].fillna("")
        elif suffix in (".jsonl", ".json"):
            df = pd.read_json(path, lines=True, dtype=False, precise_float=True)
        else:
            raise ValueError(f"unknown file type {suffix!r}: use .parquet, .csv or .jsonl")
        logit_cols = [c for c in df.columns if str(c).startswith("logit_")]
        if not logit_cols:
            raise ValueError(f"{path} has no logit_<class> columns; is it a calibkit Scores file?")
        classes = tuple(header.get("classes") or [c[len("logit_") :] for c in logit_cols])
        missing = [f"logit_{c}" for c in classes if f"logit_{c}" not in df.columns]
        if missing:
            raise ValueError(f"{path}: columns {missing} named by its header are missing")
        try:
            logits = df[[f"logit_{c}" for c in classes]].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: the logit_<class> columns are not all numeric") from exc
        labels = None
        if "label" in df.columns:
            lookup = {c: i for i, c in enumerate(classes)}
            names = df["label"].astype(str)
            unknown = sorted(set(names) - set(lookup))
            if unknown:
                raise ValueError(
                    f"{path}: labels {unknown[:5]} are not among the classes {classes}"
                )
            labels = names.map(lookup).to_numpy(dtype=np.int64)
        ids = df["id"].to_numpy() if "id" in df.columns else None
        if ids is not None and ids.dtype != object and header.get("ids") == "str":
            ids = ids.astype(str).astype(object)
        per_item: dict[str, Any] = {}
        for name, spec in (header.get("per_item") or {}).items():
            if name not in df.columns:
                raise ValueError(f"{path}: per-item column {name!r} named by its header is missing")
            per_item[name] = _decode_field(df[name].tolist(), spec, f"{path}: column {name!r}")
        return cls(
            logits=logits,
            labels=labels,
            classes=classes,
            ids=np.zeros(0, dtype=np.int64) if ids is None else ids,
            meta=header.get("meta", {}),
            per_item=per_item,
        )

    def __repr__(self) -> str:
        lab = "labeled" if self.labels is not None else "unlabeled"
        return (
            f"Scores(n={len(self)}, classes={self.classes!r}, {lab}, meta_keys={sorted(self.meta)}"
            f", per_item={sorted(self.per_item)})"
        )


# ---------------------------------------------------------------------- per-item helpers
def _concat_field(parts: list[NDArray[Any]]) -> NDArray[Any]:
    if any(p.dtype == object for p in parts) and not all(p.dtype == object for p in parts):
        parts = [p.astype(object) for p in parts]
    return np.concatenate(parts)


def _id_kind(ids: NDArray[Any]) -> str:
    if ids.dtype.kind in "iu":
        return "int"
    if ids.dtype.kind == "f":
        return "float"
    if ids.dtype == object and all(isinstance(v, str) for v in ids):
        return "str"
    return "other"


def field_spec(v: NDArray[Any]) -> dict[str, Any]:
    """How a per-item array is stored: ``{"kind": int|float|bool|str|json|array, ...}``."""
    if v.ndim > 1:
        if v.dtype.kind not in "biuf":
            return {"kind": "json"}
        return {"kind": "array", "dtype": v.dtype.name, "shape": list(v.shape[1:])}
    if v.dtype.kind in "iu":
        return {"kind": "int"}
    if v.dtype.kind == "f":
        return {"kind": "float"}
    if v.dtype.kind == "b":
        return {"kind": "bool"}
    if v.dtype == object and all(isinstance(x, str) for x in v):
        return {"kind": "str"}
    return {"kind": "json"}


def _json_default(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def _encode_field(v: NDArray[Any], fmt: str) -> list[Any]:
    """Column values of a per-item field: CSV gets text, JSON lines gets non-finite floats as
    text (JSON has no NaN/inf), Parquet native values; lists and 2-D fields are JSON text."""
    kind = field_spec(v)["kind"]
    if kind in ("json", "array"):
        return [json.dumps(x, default=_json_default, allow_nan=True) for x in v.tolist()]
    if kind == "str":
        return list(v)
    vals = v.tolist()
    if fmt == "csv":
        return [repr(float(x)) if kind == "float" else str(x) for x in vals]
    if fmt == "json" and kind == "float":
        return [x if np.isfinite(x) else repr(x) for x in vals]
    return list(vals)


def _decode_field(vals: list[Any], spec: Any, where: str) -> NDArray[Any]:
    """A per-item array from a file column (lists and 2-D fields are JSON text there)."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind in ("json", "array"):
        try:
            vals = [json.loads(x) if isinstance(x, str) else x for x in vals]
        except ValueError as exc:
            raise ValueError(f"{where} does not hold JSON values: {exc}") from exc
    return per_item_from_values(vals, spec, where)


def per_item_from_values(vals: list[Any], spec: Any, where: str = "per-item field") -> NDArray[Any]:
    """A per-item array of kind ``spec["kind"]`` (see ``Scores.save``) from Python values."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    try:
        if kind == "int":
            return np.asarray([int(x) for x in vals], dtype=np.int64)
        if kind == "float":
            return np.asarray(
                [np.nan if x is None or x == "" else float(x) for x in vals], dtype=np.float64
            )
        if kind == "bool":
            return np.asarray(
                [x if isinstance(x, bool | np.bool_) else {"True": True, "False": False}[x]
                 for x in vals], dtype=bool,
            )  # fmt: skip
        if kind == "str":
            out = np.empty(len(vals), dtype=object)
            out[:] = ["" if x is None else str(x) for x in vals]
            return out
        if kind == "array":
            arr = np.asarray(vals, dtype=spec["dtype"])
            return arr.reshape(len(vals), *spec["shape"])
        if kind == "json":
            return _list_to_array(vals)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where} does not hold {kind} values: {exc}") from exc
    raise ValueError(f"{where}: unknown per-item kind {kind!r} in the file header")
