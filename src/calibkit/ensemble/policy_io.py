"""Persistence and rendering of a trained :class:`~calibkit.ensemble.policy.CascadePolicy`.

The trained policy is a plain lookup table: :func:`policy_table` lists the reachable bin keys,
:func:`policy_to_dict` / :func:`policy_from_dict` convert to and from JSON-ready data (format
``calibkit-cascade-policy``, version 1), :func:`save_policy` / :func:`load_policy` write and read
human-readable JSON (one line per bin key; the write is atomic), :func:`describe_policy` renders
the table as text. The estimator's ``table``, ``to_dict``, ``from_dict``, ``save``, ``load`` and
``describe`` methods call these.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from calibkit._atomic import atomic_write_text
from calibkit.ensemble.binning import (
    bin_label,
    check_cut_points,
    decode_key,
    format_key,
    parse_key,
)
from calibkit.ensemble.costs import ModelCost, parse_costs
from calibkit.ensemble.policy import FORMAT, GO_DEEPER, UNSEEN, PolicyTables, _cell_counts
from calibkit.ensemble.strategies import Strategy, get_strategy

if TYPE_CHECKING:
    from calibkit.ensemble.policy import CascadePolicy

__all__ = [
    "FORMAT",
    "describe_policy",
    "load_policy",
    "policy_from_dict",
    "policy_table",
    "policy_to_dict",
    "save_policy",
]


def policy_table(policy: CascadePolicy) -> dict[str, dict[str, Any]]:
    """The policy as ``{"b1/b2": {"decision", "n", "reward"[, "fallback"]}}``.

    Lists the keys seen in training that Algorithm 2 can reach (keys below an exit are never
    consulted and are left out).
    """
    policy._check_fitted()
    t = policy.tables_
    out: dict[str, dict[str, Any]] = {}
    reach = t.count[0] > 0
    for k in range(1, policy.n_models_ + 1):
        if k > 1:
            parent = np.arange(t.count[k - 1].size) // t.n_bins[k - 1]
            reach = reach[parent] & (t.decision[k - 2][parent] == GO_DEEPER)
            reach &= t.count[k - 1] > 0
        for g in np.flatnonzero(reach):
            d = int(t.decision[k - 1][g])
            row: dict[str, Any] = {
                "decision": "go_deeper" if d == GO_DEEPER else policy.library_[k - 1][d].name,
                "n": int(t.count[k - 1][g]),
                "reward": round(float(t.reward[k - 1][g]), 10),
            }
            if d == GO_DEEPER:
                row["fallback"] = policy.library_[k][int(t.fallback[k][g])].name
            out[format_key(decode_key(int(g), t.n_bins, k))] = row
    return out


def _costs_json(costs: Any) -> Any:
    if costs is None:
        return None
    if isinstance(costs, Sequence) and any(isinstance(c, ModelCost) for c in costs):
        return [c.to_dict() if isinstance(c, ModelCost) else float(c) for c in costs]
    return np.asarray(costs, dtype=np.float64).tolist()


def _costs_from_json(costs: Any) -> Any:
    if isinstance(costs, list) and any(isinstance(c, dict) for c in costs):
        return parse_costs(costs)
    return costs


def policy_to_dict(policy: CascadePolicy) -> dict[str, Any]:
    """A JSON-ready dict: parameters, bins, libraries and the lookup table."""
    policy._check_fitted()
    names = list(policy.model_names) if policy.model_names is not None else None
    return {
        "format": FORMAT,
        "version": 1,
        "models": names,
        "n_classes": policy.n_classes_,
        "edges": [e.tolist() for e in policy.edges_],
        "bins": [[bin_label(e, b) for b in range(e.size + 1)] for e in policy.edges_],
        "strategy_spec": None if policy.strategies is None else list(policy.strategies),
        "strategies": [[s.name for s in lib] for lib in policy.library_],
        "costs": _costs_json(policy.costs),
        "cost_penalty": float(policy.cost_penalty),
        "training_reward": policy.training_reward_,
        "root_fallback": policy.library_[0][int(policy.tables_.fallback[0][0])].name,
        "table": policy_table(policy),
    }


def _tables_from_rows(
    d: dict[str, Any], n_bins: tuple[int, ...], library: list[list[Strategy]]
) -> PolicyTables:
    """Dense :class:`PolicyTables` from the saved table rows (validating every key)."""
    K = len(n_bins)
    sizes = _cell_counts(n_bins)
    index = [{s.name: i for i, s in enumerate(lib)} for lib in library]
    decision = [np.full(int(g), UNSEEN, dtype=np.int64) for g in sizes]
    fallback = [np.full(1, -1, dtype=np.int64)] + [
        np.full(int(g), -1, dtype=np.int64) for g in sizes[:-1]
    ]
    count = [np.zeros(int(g), dtype=np.int64) for g in sizes]
    reward: list[NDArray[np.float64]] = [np.zeros(int(g)) for g in sizes]

    def lookup(k: int, name: str) -> int:
        try:
            return index[k - 1][name]
        except KeyError:
            raise ValueError(f"strategy {name!r} is not in the depth-{k} library") from None

    fallback[0][0] = lookup(1, d["root_fallback"])
    for key_text, row in d["table"].items():
        key = parse_key(key_text)
        k = len(key)
        if not 1 <= k <= K or any(b >= n_bins[j] for j, b in enumerate(key)):
            raise ValueError(f"bin key {key_text!r} does not fit bins {n_bins}")
        g = 0
        for j, b in enumerate(key):
            g = g * n_bins[j] + b
        dec = row["decision"]
        if dec == "go_deeper":
            if k == K:
                raise ValueError(f"key {key_text!r} at the last depth cannot go deeper")
            decision[k - 1][g] = GO_DEEPER
            fallback[k][g] = lookup(k + 1, row["fallback"])
        else:
            decision[k - 1][g] = lookup(k, dec)
        count[k - 1][g] = int(row.get("n", 0))
        reward[k - 1][g] = float(row.get("reward", 0.0))
    return PolicyTables(n_bins, tuple(decision), tuple(fallback), tuple(count), tuple(reward))


def policy_from_dict(cls: type[CascadePolicy], d: dict[str, Any]) -> CascadePolicy:
    """Rebuild a fitted ``cls`` policy from :func:`policy_to_dict` output."""
    if d.get("format") != FORMAT:
        raise ValueError(f"not a calibkit cascade policy (format={d.get('format')!r})")
    if int(d.get("version", 0)) != 1:
        raise ValueError(f"unsupported cascade policy version {d.get('version')!r}")
    edges = check_cut_points(d["edges"])
    K = len(edges)
    n_bins = tuple(e.size + 1 for e in edges)
    library = [[get_strategy(name) for name in lib] for lib in d["strategies"]]
    if len(library) != K:
        raise ValueError(f"policy has {len(library)} strategy libraries for {K} models")
    tables = _tables_from_rows(d, n_bins, library)
    pol = cls(
        edges=[e.tolist() for e in edges],
        strategies=d.get("strategy_spec"),
        costs=_costs_from_json(d.get("costs")),
        cost_penalty=float(d.get("cost_penalty", 0.0)),
        model_names=d.get("models"),
    )
    pol.tables_ = tables
    pol.edges_ = edges
    pol.n_bins_ = n_bins
    pol.library_ = library
    pol.n_models_ = K
    pol.n_classes_ = int(d["n_classes"])
    pol.classes_ = np.arange(pol.n_classes_)
    pol.training_reward_ = float(d.get("training_reward", tables.total_reward))
    return pol


def _dumps_policy(d: dict[str, Any]) -> str:
    """JSON with one line per bin key and per model, so a person can read the table."""
    parts = []
    for k, v in d.items():
        if k == "table" and isinstance(v, dict):
            rows = ",\n".join(f"    {json.dumps(key)}: {json.dumps(row)}" for key, row in v.items())
            parts.append(f'  "table": {{\n{rows}\n  }}' if rows else '  "table": {}')
        elif isinstance(v, list) and v and all(isinstance(x, (list, dict)) for x in v):
            rows = ",\n".join(f"    {json.dumps(x)}" for x in v)
            parts.append(f"  {json.dumps(k)}: [\n{rows}\n  ]")
        else:
            parts.append(f"  {json.dumps(k)}: {json.dumps(v)}")
    return "{\n" + ",\n".join(parts) + "\n}"


def save_policy(policy: CascadePolicy, path: str | os.PathLike[str]) -> Path:
    """Write the policy as indented JSON, atomically."""
    return atomic_write_text(path, _dumps_policy(policy_to_dict(policy)) + "\n")


def load_policy(cls: type[CascadePolicy], path: str | os.PathLike[str]) -> CascadePolicy:
    """Read a policy written by :func:`save_policy`."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"policy file {p} not found")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p} is not valid JSON: {exc}") from None
    return policy_from_dict(cls, d)


def describe_policy(policy: CascadePolicy) -> str:
    """A readable multi-line rendering of the lookup table."""
    policy._check_fitted()
    names = (
        list(policy.model_names)
        if policy.model_names
        else [f"model_{k}" for k in range(policy.n_models_)]
    )
    lines = []
    for k, e in enumerate(policy.edges_):
        lines.append(
            f"{names[k]} bins: " + " ".join(f"{b}={bin_label(e, b)}" for b in range(e.size + 1))
        )
    for key, row in policy_table(policy).items():
        depth = key.count("/")
        extra = f" (unseen child -> {row['fallback']})" if "fallback" in row else ""
        lines.append(
            f"{'  ' * depth}{key}: {row['decision']}{extra}  n={row['n']} reward={row['reward']:g}"
        )
    return "\n".join(lines)
