"""JSON-ready values: numpy scalars become Python numbers, non-finite floats become ``null``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["json_ready", "json_value"]


def json_value(v: Any) -> Any:
    """One value for JSON: a numpy scalar as its Python value, ``nan`` / ``inf`` as ``None``."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def json_ready(obj: Any) -> Any:
    """``obj`` with every nested value made JSON-ready (:func:`json_value`; arrays and tuples
    become lists), so ``json.dumps`` never writes the non-standard ``NaN``."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_ready(v) for v in obj.tolist()]
    return json_value(obj)
