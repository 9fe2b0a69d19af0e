"""``IdentityCalibrator``: no calibration, the baseline every calibrator is compared with."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._math import softmax
from calibkit.calibrators.base import Calibrator

__all__ = ["IdentityCalibrator"]


class IdentityCalibrator(Calibrator):
    """The identity map: ``predict_proba`` is the softmax of the logits it is given (sigmoid of a
    1-D binary logit). Registered as ``"none"``; :func:`~calibkit.calibrators.select` always
    includes it, so a selected calibrator is never worse than none in cross-validation.

    Input: logits ``(n, K)`` or ``(n,)`` binary logits. No parameters, no fitted state beyond the
    class count.
    """

    input_kind = "logits"

    def _fit(
        self, X: NDArray[np.float64], y: NDArray[np.int64], w: NDArray[np.float64] | None
    ) -> None:
        return None

    def predict_logits(self, X: ArrayLike) -> NDArray[np.float64]:
        """The logits, unchanged (validated): ``(n, K)`` or ``(n,)``."""
        return np.array(self._check_predict_input(X), dtype=np.float64)

    def _predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        z = np.stack([np.zeros_like(X), X], axis=1) if X.ndim == 1 else X
        return softmax(z, axis=1)
