"""Calibrators with the scikit-learn contract: ``fit(X, y) -> self``, ``predict_proba(X) -> (n, K)``.

Scaling calibrators take logits (``input_kind = "logits"``): :class:`TemperatureScaling`,
:class:`VectorScaling`, :class:`MatrixScaling`, :class:`PlattScaling`. Probability calibrators
take probabilities (``input_kind = "probs"``): :class:`IsotonicCalibrator`,
:class:`HistogramBinning`, :class:`BetaCalibration`, :class:`DirichletCalibration`.

Every calibrator also has ``calibrate(scores: Scores) -> Scores``, ``save(path)`` (JSON) and
is restored by :func:`load`; :func:`make_calibrator` builds one by short name.
:func:`select` (registered as ``"auto"``) chooses among them, ``"none"`` included, by
cross-validation. Diagnostics of scores and fits: :mod:`calibkit.calibrators.diagnostics`.
"""

from calibkit.calibrators.base import Calibrator, from_dict, load
from calibkit.calibrators.beta import BetaCalibration
from calibkit.calibrators.dirichlet import DirichletCalibration
from calibkit.calibrators.histogram import HistogramBinning
from calibkit.calibrators.identity import IdentityCalibrator
from calibkit.calibrators.isotonic import IsotonicCalibrator
from calibkit.calibrators.matrix import MatrixScaling
from calibkit.calibrators.platt import PlattScaling
from calibkit.calibrators.registry import (
    CALIBRATORS,
    available_calibrators,
    make_calibrator,
    register_calibrator,
    unregister_calibrator,
)
from calibkit.calibrators.select import AutoCalibrator, select
from calibkit.calibrators.temperature import TemperatureScaling
from calibkit.calibrators.vector import VectorScaling

__all__ = [
    "CALIBRATORS",
    "AutoCalibrator",
    "BetaCalibration",
    "Calibrator",
    "DirichletCalibration",
    "HistogramBinning",
    "IdentityCalibrator",
    "IsotonicCalibrator",
    "MatrixScaling",
    "PlattScaling",
    "TemperatureScaling",
    "VectorScaling",
    "available_calibrators",
    "from_dict",
    "load",
    "make_calibrator",
    "register_calibrator",
    "select",
    "unregister_calibrator",
]
