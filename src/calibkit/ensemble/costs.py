"""Inference cost accounting for ensembles: per-call or per-token prices, totals, relative cost
and the RouteLLM-style share of calls that reach each model.

Which models were called is a boolean ``called`` ``(n, K)`` matrix: a cascade that stopped after
``d_i`` models has ``called[i, :d_i] = True``; a weighted vote calls every model; a single model
``j`` only column ``j``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CostSummary",
    "ModelCost",
    "called_from_depth",
    "cost_matrix",
    "parse_costs",
    "summarize_cost",
]


@dataclass(frozen=True)
class ModelCost:
    """Price of one model: a fixed amount per call plus amounts per input and output token.

    Units are arbitrary but shared by all models (dollars, seconds, FLOPs ...).
    """

    name: str = ""
    per_call: float = 0.0
    per_input_token: float = 0.0
    per_output_token: float = 0.0

    def __post_init__(self) -> None:
        for f in ("per_call", "per_input_token", "per_output_token"):
            v = float(getattr(self, f))
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"ModelCost.{f} must be a finite number >= 0; got {v}")

    def item_costs(
        self,
        n: int,
        input_tokens: ArrayLike | None = None,
        output_tokens: ArrayLike | None = None,
    ) -> NDArray[np.float64]:
        """``(n,)`` cost of calling this model once on each of ``n`` items."""
        c = np.full(n, float(self.per_call))
        for price, toks, what in (
            (self.per_input_token, input_tokens, "input_tokens"),
            (self.per_output_token, output_tokens, "output_tokens"),
        ):
            if price:
                if toks is None:
                    raise ValueError(
                        f"model {self.name!r} is priced per token but no {what} were given"
                    )
                t = np.asarray(toks, dtype=np.float64)
                if t.shape != (n,):
                    raise ValueError(f"{what} must have shape ({n},); got {t.shape}")
                c = c + price * t
        return c

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_costs(
    spec: str
    | os.PathLike[str]
    | Sequence[float | ModelCost | Mapping[str, Any]]
    | Mapping[str, Any],
    names: Sequence[str] | None = None,
) -> list[ModelCost]:
    """Read per-model costs.

    ``spec`` may be: a comma-separated string of per-call costs (``"1,2.5,10"``); a path to a JSON
    file holding a list or a mapping; a list of numbers, dicts or :class:`ModelCost`; or a mapping
    ``{model_name: number | {"per_call": .., "per_input_token": .., "per_output_token": ..}}``
    (needs ``names`` to put them in cascade order).
    """
    obj: Any = spec
    if isinstance(spec, (str, os.PathLike)):
        text = str(spec)
        p = Path(text)
        if p.suffix.lower() == ".json" or p.is_file():
            if not p.is_file():
                raise FileNotFoundError(f"costs file {p} not found")
            obj = json.loads(p.read_text())
        else:
            try:
                obj = [float(t) for t in text.split(",") if t.strip()]
            except ValueError:
                raise ValueError(
                    f"costs {text!r} is neither a JSON file nor comma-separated numbers"
                ) from None
    if isinstance(obj, Mapping):
        if "models" in obj and isinstance(obj["models"], (list, Mapping)):
            return parse_costs(obj["models"], names)
        if names is None:
            raise ValueError("costs given as a mapping by model name need the model names")
        missing = [n for n in names if n not in obj]
        if missing:
            raise ValueError(f"costs lack the models {missing}; have {sorted(obj)}")
        obj = [_one(obj[n], n) for n in names]
    if not isinstance(obj, Sequence) or isinstance(obj, (str, bytes)):
        raise ValueError(f"cannot read costs from {type(obj).__name__}")
    out = []
    for k, item in enumerate(obj):
        name = names[k] if names is not None and k < len(names) else ""
        out.append(_one(item, name))
    if names is not None and len(out) != len(names):
        raise ValueError(f"got {len(out)} costs for {len(names)} models")
    if not out:
        raise ValueError("costs is empty")
    return out


def _one(item: Any, name: str) -> ModelCost:
    if isinstance(item, ModelCost):
        return item
    if isinstance(item, Mapping):
        unknown = set(item) - {"name", "per_call", "per_input_token", "per_output_token"}
        if unknown:
            raise ValueError(f"unknown cost fields {sorted(unknown)} for model {name!r}")
        return ModelCost(**{"name": name, **item})
    try:
        value = float(item)
    except (TypeError, ValueError):
        raise ValueError(f"bad cost {item!r} for model {name!r}") from None
    return ModelCost(name=name, per_call=value)


def cost_matrix(
    costs: Sequence[float | ModelCost] | ArrayLike,
    n: int,
    input_tokens: ArrayLike | None = None,
    output_tokens: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """``(n, K)`` cost of calling model ``k`` on item ``i``.

    ``costs`` is a ``(K,)`` per-call cost, a list of :class:`ModelCost`, or already ``(n, K)``.
    ``input_tokens`` / ``output_tokens`` are ``(n, K)`` token counts for per-token prices.
    """
    if isinstance(costs, Sequence) and any(isinstance(c, ModelCost) for c in costs):
        mc = [c if isinstance(c, ModelCost) else ModelCost(per_call=float(c)) for c in costs]
        it = None if input_tokens is None else np.asarray(input_tokens, dtype=np.float64)
        ot = None if output_tokens is None else np.asarray(output_tokens, dtype=np.float64)
        cols = [
            m.item_costs(n, None if it is None else it[:, k], None if ot is None else ot[:, k])
            for k, m in enumerate(mc)
        ]
        return np.stack(cols, axis=1)
    c = np.asarray(costs, dtype=np.float64)
    if c.ndim == 1:
        c = np.broadcast_to(c, (n, c.size)).copy()
    if c.ndim != 2 or c.shape[0] != n:
        raise ValueError(f"costs must be (K,) or ({n}, K); got shape {c.shape}")
    if not np.all(np.isfinite(c)) or c.min() < 0:
        raise ValueError("costs must be finite and >= 0")
    return c


def called_from_depth(depth: ArrayLike, n_models: int) -> NDArray[np.bool_]:
    """``(n, K)`` mask of the models a cascade called: the first ``depth[i]`` ones."""
    d = np.asarray(depth)
    if d.ndim != 1:
        raise ValueError(f"depth must be 1-D; got shape {d.shape}")
    if d.size and (d.min() < 0 or d.max() > n_models):
        raise ValueError(f"depth must lie in [0, {n_models}]")
    return np.arange(n_models)[None, :] < d[:, None]


@dataclass(frozen=True)
class CostSummary:
    """Cost of one policy over ``n`` items.

    Attributes
    ----------
    total : float, summed cost.
    per_item : float, mean cost per item.
    relative : float, ``per_item / reference`` (e.g. the cheapest model's per-item cost).
    calls : (K,) int, number of items each model was called on.
    share_of_items : (K,) float, fraction of items that reached each model (RouteLLM's
        "percentage of calls to the strong model").
    share_of_calls : (K,) float, each model's fraction of all calls.
    """

    total: float
    per_item: float
    relative: float
    calls: NDArray[np.int64]
    share_of_items: NDArray[np.float64]
    share_of_calls: NDArray[np.float64]


def summarize_cost(
    called: ArrayLike, costs: ArrayLike, reference: float | None = None
) -> CostSummary:
    """Summarise which models a policy called.

    Parameters
    ----------
    called : (n, K) bool, ``called[i, k]`` whether model ``k`` ran on item ``i``.
    costs : (K,) or (n, K) per-call costs (see :func:`cost_matrix`).
    reference : per-item cost that ``relative`` divides by; default the cheapest model's mean
        per-item cost.
    """
    m = np.asarray(called, dtype=bool)
    if m.ndim != 2 or m.shape[0] == 0:
        raise ValueError(f"called must be a non-empty (n, K) boolean array; got shape {m.shape}")
    n, k = m.shape
    c = cost_matrix(costs, n)
    if c.shape[1] != k:
        raise ValueError(f"costs cover {c.shape[1]} models but called has {k}")
    total = float(np.sum(c * m))
    if reference is None:
        reference = float(np.min(c.mean(axis=0)))
    calls = m.sum(axis=0).astype(np.int64)
    n_calls = max(int(calls.sum()), 1)
    return CostSummary(
        total=total,
        per_item=total / n,
        relative=(total / n) / reference if reference > 0 else float("nan"),
        calls=calls,
        share_of_items=calls / n,
        share_of_calls=calls / n_calls,
    )
