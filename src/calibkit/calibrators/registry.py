"""Calibrators by short name: ``make_calibrator("temperature")``."""

from __future__ import annotations

from typing import Any

from calibkit.calibrators.base import Calibrator
from calibkit.calibrators.beta import BetaCalibration
from calibkit.calibrators.dirichlet import DirichletCalibration
from calibkit.calibrators.histogram import HistogramBinning
from calibkit.calibrators.isotonic import IsotonicCalibrator
from calibkit.calibrators.matrix import MatrixScaling
from calibkit.calibrators.platt import PlattScaling
from calibkit.calibrators.temperature import TemperatureScaling
from calibkit.calibrators.vector import VectorScaling

__all__ = ["CALIBRATORS", "available_calibrators", "make_calibrator"]

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
}

_ALIASES = {"sigmoid": "platt", "ts": "temperature", "histogram_binning": "histogram"}


def available_calibrators() -> list[str]:
    """Short names accepted by :func:`make_calibrator`."""
    return list(CALIBRATORS)


def make_calibrator(name: str, **kwargs: Any) -> Calibrator:
    """A new, unfitted calibrator by short name (``temperature``, ``vector``, ``matrix``,
    ``platt``, ``isotonic``, ``histogram``, ``beta``, ``dirichlet``); ``kwargs`` go to its
    constructor."""
    key = _ALIASES.get(name.lower().strip(), name.lower().strip())
    if key not in CALIBRATORS:
        raise ValueError(f"unknown calibrator {name!r}; choose from {available_calibrators()}")
    cls = CALIBRATORS[key]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for calibrator {key!r}: {exc}") from exc
