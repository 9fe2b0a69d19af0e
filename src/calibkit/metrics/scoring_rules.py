r"""Proper scoring rules and accuracy: Brier score, negative log-likelihood, accuracy.

Inputs are probabilities unless ``from_logits=True``: ``(n,)`` = ``P(y = 1)`` (binary logits
with ``from_logits``) or ``(n, K)`` rows on the simplex (class logits). All return a float.
NLL from logits is exact; from probabilities it clips at :data:`PROB_FLOOR` (see :func:`nll`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calibkit._math import PROB_FLOOR
from calibkit._validation import check_labels
from calibkit.metrics._inputs import (
    as_scores,
    binary_outcomes,
    label_prob_blocks,
    score_ndim,
    top_label_outcomes,
)

__all__ = ["PROB_FLOOR", "accuracy", "brier_score", "nll"]


def brier_score(probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False) -> float:
    r"""Brier score (mean squared error of the probabilities).

    * ``(n,)`` input: :math:`\frac1n\sum_i (p_i - y_i)^2` (scikit-learn's ``brier_score_loss``);
    * ``(n, K)`` input: Brier's original multiclass score
      :math:`\frac1n\sum_i\sum_k (p_{ik} - 1[y_i = k])^2`, in [0, 2] (scikit-learn's
      ``brier_score_loss`` with ``scale_by_half=False``). For ``(n, 2)`` this is twice the 1-D value.
    """
    if score_ndim(probs) == 1:
        p, y1 = binary_outcomes(probs, labels, from_logits=from_logits)
        d = np.asarray(p, dtype=np.float64) - y1
        return float(np.mean(d * d))
    n, blocks = label_prob_blocks(probs, labels, from_logits=from_logits)
    total = 0.0
    for py, _, sq in blocks:
        total += float(np.sum(sq - 2.0 * py + 1.0))
    return total / n


def nll(
    probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False, eps: float = PROB_FLOOR
) -> float:
    r"""Negative log-likelihood (log loss, natural log): :math:`-\frac1n\sum_i \log p_{i,y_i}`.

    ``(n,)`` input: :math:`-\frac1n\sum_i [y_i\log p_i + (1 - y_i)\log(1 - p_i)]`.

    * Logits (``from_logits=True``): exact, from the log-softmax (log-sigmoid for ``(n,)``) of
      the logits, with no cap: a true class 25 nats below the winner costs 25 nats.
    * Probabilities: the probability of the true class is clipped below at
      :data:`PROB_FLOOR` ``= 1e-12``, so a zero costs ``-log(1e-12) = 27.63`` nats instead of
      infinity. This is the floor calibkit uses wherever a probability becomes a log
      (:func:`calibkit.probs_to_logits`, ``Scores.from_probs``, reading ``prob_*`` columns), so
      ``nll(p, y)`` equals ``nll(probs_to_logits(p), y, from_logits=True)`` and the CLI's NLL of
      the same scores. scikit-learn's ``log_loss`` clips at machine epsilon instead; the two
      agree whenever every true-class probability is at least ``1e-12``. ``eps`` changes the
      floor (e.g. ``eps=np.finfo(float).eps`` for scikit-learn's rule); it has no effect on
      logits.
    """
    if not (0.0 < eps < 1.0):
        raise ValueError(f"eps must be in (0, 1); got {eps}")
    name = "logits" if from_logits else "probs"
    floor = float(np.log(eps))
    if score_ndim(probs) == 1:
        a = as_scores(probs, from_logits=from_logits, name=name)
        y = check_labels(labels, a.shape[0], 2)
        if from_logits:
            if np.isnan(a).any():
                raise ValueError(f"{name} contains NaN values ({int(np.isnan(a).sum())} entries)")
            z = a.astype(np.float64)
            # log sigmoid(z) = -logaddexp(0, -z); log(1 - sigmoid(z)) = -logaddexp(0, z)
            return float(np.mean(np.logaddexp(0.0, np.where(y == 1, -z, z))))
        p, _ = binary_outcomes(a, y, from_logits=False)
        py = np.where(y == 1, p, 1.0 - np.asarray(p, dtype=np.float64))
        return float(-np.mean(np.log(np.maximum(py, eps))))
    n, blocks = label_prob_blocks(probs, labels, from_logits=from_logits)
    total = 0.0
    for _, lpy_b, _ in blocks:
        total -= float(np.sum(lpy_b if from_logits else np.maximum(lpy_b, floor)))
    return total / n


def accuracy(probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False) -> float:
    """Fraction of correct top-label predictions.

    ``(n, K)``: ``argmax_k p_ik == y_i`` (ties: lowest index). ``(n,)``: predicts 1 iff
    ``p_i > 0.5`` (logit ``> 0``).
    """
    _, correct = top_label_outcomes(probs, labels, from_logits=from_logits)
    return float(np.mean(correct))
