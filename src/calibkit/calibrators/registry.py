"""Calibrators by short name: ``make_calibrator("temperature")``.

:data:`CALIBRATORS` is the one list of calibrators: ``calibkit fit --method`` offers its names,
``auto`` (:class:`~calibkit.calibrators.AutoCalibrator`) chooses among them, and a calibrator
written outside calibkit joins with one call::

    from calibkit.calibrators import Calibrator, register_calibrator

    class MyCalibrator(Calibrator):  # _fit(X, y, w) and _predict_proba(X), see base.py
        ...

    register_calibrator("mine", MyCalibrator)  # make_calibrator("mine"), calibkit fit -m mine
"""

from __future__ import annotations

from typing import Any

from calibkit.calibrators.base import Calibrator
from calibkit.calibrators.beta import BetaCalibration
from calibkit.calibrators.dirichlet import DirichletCalibration
from calibkit.calibrators.histogram import HistogramBinning
from calibkit.calibrators.identity import IdentityCalibrator
from calibkit.calibrators.isotonic import IsotonicCalibrator
from calibkit.calibrators.matrix import MatrixScaling
from calibkit.calibrators.platt import PlattScaling
from calibkit.calibrators.select import AutoCalibrator
from calibkit.calibrators.temperature import TemperatureScaling
from calibkit.calibrators.vector import VectorScaling

__all__ = [
    "CALIBRATORS",
    "available_calibrators",
    "canonical_name",
    "make_calibrator",
    "register_calibrator",
    "unregister_calibrator",
]

#: short name -> class
CALIBRATORS: dict[str, type[Calibrator]] = {
    "temperature": TemperatureScaling,
    "vector": VectorScaling,
    "matrix": MatrixScaling,
    "platt": PlattScaling,
    "isotonic": IsotonicCalibrator,
    "histogram": HistogramBinning,
    "beta": BetaCalibration,
    "dirichlet": DirichletCalibration,
    "none": IdentityCalibrator,
    "auto": AutoCalibrator,
}

_ALIASES = {
    "sigmoid": "platt",
    "ts": "temperature",
    "histogram_binning": "histogram",
    "identity": "none",
    "select": "auto",
}


def canonical_name(name: str) -> str:
    """The registry key of ``name`` (case, spaces and aliases resolved); ``ValueError`` if none."""
    key = _ALIASES.get(name.lower().strip(), name.lower().strip())
    if key not in CALIBRATORS:
        raise ValueError(f"unknown calibrator {name!r}; choose from {available_calibrators()}")
    return key


def available_calibrators() -> list[str]:
    """Short names accepted by :func:`make_calibrator`."""
    return list(CALIBRATORS)


def make_calibrator(name: str, **kwargs: Any) -> Calibrator:
    """A new, unfitted calibrator by short name (``temperature``, ``vector``, ``matrix``,
    ``platt``, ``isotonic``, ``histogram``, ``beta``, ``dirichlet``, ``none`` (identity),
    ``auto`` (cross-validated choice, :class:`~calibkit.calibrators.AutoCalibrator`));
    ``kwargs`` go to its constructor."""
    key = canonical_name(name)
    cls = CALIBRATORS[key]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for calibrator {key!r}: {exc}") from exc


def register_calibrator(
    name: str, cls: type[Calibrator], *, aliases: tuple[str, ...] = (), replace: bool = False
) -> type[Calibrator]:
    """Register ``cls`` under the short ``name`` (and ``aliases``) and return it.

    ``cls`` must subclass :class:`~calibkit.calibrators.Calibrator` (which already makes its
    saved JSON loadable by :func:`~calibkit.calibrators.load`). ``name`` is lower case without
    spaces or commas. A taken name or alias is an error unless ``replace=True`` (which replaces
    a registered name, never another calibrator's alias).
    """
    if not isinstance(cls, type) or not issubclass(cls, Calibrator):
        raise ValueError(f"calibrator {name!r}: {cls!r} is not a Calibrator subclass")
    keys = [name, *aliases]
    for key in keys:
        if not isinstance(key, str) or not key or key != key.strip().lower():
            raise ValueError(f"calibrator name {key!r} must be a non-empty lower-case string")
        if any(c.isspace() or c == "," for c in key):
            raise ValueError(f"calibrator name {key!r} may not contain spaces or commas")
    if len(set(keys)) != len(keys):
        raise ValueError(f"calibrator {name!r}: aliases repeat a name: {list(aliases)}")
    if name in CALIBRATORS and not replace:
        raise ValueError(f"calibrator name {name!r} is taken; pick another or pass replace=True")
    for key in keys:
        owner = _ALIASES.get(key) or (key if key in CALIBRATORS and key != name else None)
        if owner is not None and owner != name:
            raise ValueError(f"calibrator name {key!r} is taken (by {owner!r}); pick another")
    CALIBRATORS[name] = cls
    for a in aliases:
        _ALIASES[a] = name
    return cls


def unregister_calibrator(name: str) -> type[Calibrator]:
    """Remove the calibrator registered as ``name`` (or an alias of it) and its aliases; return
    its class."""
    key = canonical_name(name)
    cls = CALIBRATORS.pop(key)
    for a in [a for a, k in _ALIASES.items() if k == key]:
        del _ALIASES[a]
    return cls
