"""``Scores``: the one container every calibkit pipeline reads and writes.

A scored file from one command feeds the next (``score`` -> ``fit`` -> ``cascade train`` ...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._math import log_softmax, probs_to_logits, softmax
from calibkit._validation import check_labels, check_logits, check_probs

__all__ = ["Scores"]


def _frozen(a: NDArray[Any]) -> NDArray[Any]:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


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
        Free-form provenance: model, prompt hash, cost per item, task name ...
    """

    logits: NDArray[np.float64]
    labels: NDArray[np.int64] | None = None
    classes: tuple[str, ...] = ()
    ids: NDArray[Any] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    meta: Mapping[str, Any] = field(default_factory=dict)

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
        object.__setattr__(self, "meta", dict(self.meta))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_probs(
        cls,
        probs: ArrayLike,
        labels: ArrayLike | None = None,
        classes: Sequence[str] = (),
        ids: ArrayLike | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Scores:
        """Build from probabilities: ``(n, K)`` rows, or ``(n,)`` = ``P(class 1)`` of a binary task.

        Stored as clipped log-probabilities (probability 0 becomes ``log(1e-12)``).
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
        """Rows selected by an integer index or boolean mask."""
        idx = np.asarray(index)
        return replace(
            self,
            logits=self.logits[idx],
            labels=None if self.labels is None else self.labels[idx],
            ids=self.ids[idx],
        )

    @staticmethod
    def concat(parts: Sequence[Scores]) -> Scores:
        """Row-wise concatenation of Scores over the same classes (meta of the first part)."""
        if not parts:
            raise ValueError("concat needs at least one Scores")
        classes = parts[0].classes
        for p in parts[1:]:
            if p.classes != classes:
                raise ValueError(
                    f"cannot concat Scores over different classes: {classes} vs {p.classes}"
                )
        has_labels = [p.labels is not None for p in parts]
        if any(has_labels) and not all(has_labels):
            raise ValueError("cannot concat labeled and unlabeled Scores")
        return Scores(
            logits=np.concatenate([p.logits for p in parts]),
            labels=np.concatenate([p.require_labels() for p in parts]) if all(has_labels) else None,
            classes=classes,
            ids=np.concatenate([p.ids for p in parts]),
            meta=dict(parts[0].meta),
        )

    # ------------------------------------------------------------------ I/O
    def to_frame(self) -> Any:
        """A pandas DataFrame: ``id``, ``label`` (name), ``logit_<class>`` columns."""
        import pandas as pd

        cols: dict[str, Any] = {"id": self.ids}
        if self.labels is not None:
            cols["label"] = np.asarray(self.classes, dtype=object)[self.labels]
        for j, c in enumerate(self.classes):
            cols[f"logit_{c}"] = self.logits[:, j]
        return pd.DataFrame(cols)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically to ``.parquet`` (meta in the schema metadata), ``.csv`` or ``.jsonl``.

        CSV/JSONL get a ``<path>.meta.json`` sidecar holding ``classes`` and ``meta``.
        """
        from calibkit._atomic import atomic_write

        path = Path(path)
        df = self.to_frame()
        header = {"classes": list(self.classes), "meta": self.meta, "calibkit_scores": 1}
        suffix = path.suffix.lower()
        if suffix not in (".parquet", ".csv", ".jsonl", ".json"):
            raise ValueError(f"unknown file type {suffix!r}: use .parquet, .csv or .jsonl")
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
            else:
                df.to_json(tmp, orient="records", lines=True, double_precision=15)
        if path.suffix.lower() != ".parquet":
            side = path.with_name(path.name + ".meta.json")
            side.write_text(json.dumps(header, default=str, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Scores:
        """Read a file written by :meth:`save`."""
        import pandas as pd

        path = Path(path)
        header: dict[str, Any] = {}
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(b"calibkit")
            if raw:
                header = json.loads(raw)
            df = table.to_pandas()
        elif suffix == ".csv":
            df = pd.read_csv(path)
        elif suffix in (".jsonl", ".json"):
            df = pd.read_json(path, lines=True)
        else:
            raise ValueError(f"unknown file type {suffix!r}: use .parquet, .csv or .jsonl")
        side = path.with_name(path.name + ".meta.json")
        if not header and side.exists():
            header = json.loads(side.read_text())
        logit_cols = [c for c in df.columns if str(c).startswith("logit_")]
        if not logit_cols:
            raise ValueError(f"{path} has no logit_<class> columns; is it a calibkit Scores file?")
        classes = tuple(header.get("classes") or [c[len("logit_") :] for c in logit_cols])
        logits = df[[f"logit_{c}" for c in classes]].to_numpy(dtype=np.float64)
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
        return cls(
            logits=logits,
            labels=labels,
            classes=classes,
            ids=np.zeros(0, dtype=np.int64) if ids is None else ids,
            meta=header.get("meta", {}),
        )

    def __repr__(self) -> str:
        lab = "labeled" if self.labels is not None else "unlabeled"
        return (
            f"Scores(n={len(self)}, classes={self.classes!r}, {lab}, meta_keys={sorted(self.meta)})"
        )
