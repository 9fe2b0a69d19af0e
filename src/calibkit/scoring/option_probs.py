"""Equation 1 of *Restoring Calibration for Aligned LLMs* (paper 002): the option distribution.

For a multiple-choice question with ``K`` options, the model's distribution over the options is
the softmax over the option letters' scores at the position that predicts the answer letter::

    p_i = exp(z_i) / sum_j exp(z_j),    i = 1..K.

``z`` may be the letters' raw logits or their full-vocabulary log-probabilities (the softmax is
the same: they differ by a per-row constant). This module is the one implementation, used by
:class:`calibkit.scoring.mcq.MultipleChoiceScorer` (``Scores.probs`` of its result),
:mod:`calibkit.finetune.evaluate` and the fine-tuning trainer's EM observations
(:mod:`calibkit.finetune.trainer`). What ``z_i`` is read from differs by caller and is
documented there: the scorer takes the max over the letter's matching tokens (``"A"``,
``" A"``); fine-tuning reads the single letter token the chat template emits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._math import softmax

__all__ = ["option_distribution"]


def option_distribution(letter_logits: ArrayLike) -> NDArray[np.float64]:
    """Paper 002 eq. (1): softmax over the option letters.

    Parameters
    ----------
    letter_logits : (K,) or (n, K) array of float
        **Logits** (or log-probabilities) of the ``K >= 2`` option letters at the answer
        position, one row per question. Must be finite.

    Returns
    -------
    (K,) or (n, K) float64 probabilities; each row sums to 1.
    """
    z = np.asarray(letter_logits, dtype=np.float64)
    if z.ndim not in (1, 2) or z.shape[-1] < 2:
        raise ValueError(f"letter_logits must be (K,) or (n, K) with K >= 2; got shape {z.shape}")
    bad = ~np.isfinite(z)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(f"letter_logits row {row} has a non-finite value")
    return softmax(z, axis=-1)
