"""Validate a saved certified cascade (JSON) field by field; errors name the source and field."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from calibkit.decisions.risk import PVALUE_METHODS

if TYPE_CHECKING:
    from calibkit.decisions.cascade import StageCertificate

FORMAT = "calibkit-certified-cascade"
VERSION = 1
#: ``restrict``: a certified stage exits only items the policy exits there and whose support
#: reaches the threshold; ``replace``: every item reaching the stage exits when its support does
MODES: tuple[str, ...] = ("restrict", "replace")


def _bad(source: str, field: str, what: str, v: Any) -> ValueError:
    return ValueError(f"{source}: field '{field}' {what}; got {json.dumps(v, default=str)[:80]}")


def parse_cascade_dict(d: Any, source: str) -> dict[str, Any]:
    """The keyword arguments of :class:`~calibkit.decisions.CertifiedCascade` from its dict.

    Returns ``{"policy", "stages", "max_error", "delta", "method", "mode"}``.
    """
    from calibkit.ensemble import CascadePolicy

    if not isinstance(d, dict):
        raise ValueError(f"{source}: expected a JSON object")
    if d.get("format") != FORMAT:
        raise _bad(source, "format", f"must be {FORMAT!r}", d.get("format"))
    if d.get("version") != VERSION:
        raise _bad(source, "version", f"must be {VERSION}", d.get("version"))
    for key in ("max_error", "delta"):
        v = d.get(key)
        if not (isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1):
            raise _bad(source, key, "must be a number in (0, 1)", v)
    if d.get("method") not in PVALUE_METHODS:
        raise _bad(source, "method", f"must be one of {list(PVALUE_METHODS)}", d.get("method"))
    if d.get("mode") not in MODES:
        raise _bad(source, "mode", f"must be one of {list(MODES)}", d.get("mode"))
    pol_d = d.get("policy")
    if not isinstance(pol_d, dict):
        raise _bad(source, "policy", "must be a cascade policy object", pol_d)
    try:
        policy = CascadePolicy.from_dict(pol_d)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: field 'policy' is not a valid cascade policy: {exc}") from None
    st = d.get("stages")
    K = policy.n_models_
    if not isinstance(st, list) or len(st) != K:
        raise _bad(source, "stages", f"must list {K} stage certificates", st)
    stages = [_parse_stage(s, i, d["max_error"], source) for i, s in enumerate(st)]
    if not any(s.certified for s in stages):
        raise _bad(source, "stages", "certify no stage", [s.certified for s in stages])
    return {
        "policy": policy,
        "stages": stages,
        "max_error": float(d["max_error"]),
        "delta": float(d["delta"]),
        "method": d["method"],
        "mode": d["mode"],
    }


def _parse_stage(s: Any, i: int, max_error: float, source: str) -> StageCertificate:
    """Stage ``i`` (0-based) of a saved certified cascade, validated."""
    from calibkit.decisions.cascade import StageCertificate

    f = f"stages[{i}]"
    if not isinstance(s, dict):
        raise _bad(source, f, "must be an object", s)
    if s.get("stage") != i + 1:
        raise _bad(source, f"{f}.stage", f"must be {i + 1}", s.get("stage"))
    if not isinstance(s.get("certified"), bool):
        raise _bad(source, f"{f}.certified", "must be true or false", s.get("certified"))
    t = s.get("threshold")
    if t is not None and not (
        isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= 1
    ):
        raise _bad(source, f"{f}.threshold", "must be a support in [0, 1] or null (never exit)", t)
    if not s["certified"] and t != 0:
        raise _bad(source, f"{f}.threshold", "must be 0 for a stage that is not certified", t)
    ints = {}
    for key in ("n_reaching", "n_candidates", "n_accepted", "n_errors"):
        v = s.get(key)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            raise _bad(source, f"{f}.{key}", "must be a non-negative integer", v)
        ints[key] = v
    if not (ints["n_errors"] <= ints["n_accepted"] <= ints["n_reaching"]):
        raise _bad(source, f, "needs n_errors <= n_accepted <= n_reaching", ints)
    if (
        s["certified"]
        and ints["n_accepted"]
        and ints["n_errors"] / ints["n_accepted"] > max_error + 1e-12
    ):
        raise _bad(source, f"{f}.n_errors", "gives an error rate above max_error", ints["n_errors"])
    for key in ("error_upper", "pvalue"):
        v = s.get(key)
        if v is not None and not (
            isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1
        ):
            raise _bad(source, f"{f}.{key}", "must be null or a number in [0, 1]", v)
    return StageCertificate(
        stage=i + 1,
        model=str(s.get("model", f"model_{i}")),
        certified=s["certified"],
        threshold=math.inf if t is None else float(t),
        n_reaching=ints["n_reaching"],
        n_candidates=ints["n_candidates"],
        n_accepted=ints["n_accepted"],
        n_errors=ints["n_errors"],
        error_upper=s.get("error_upper"),
        pvalue=s.get("pvalue"),
    )
