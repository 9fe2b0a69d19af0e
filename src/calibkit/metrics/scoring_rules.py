r"""Proper scoring rules and accuracy: Brier score, negative log-likelihood, accuracy.

Inputs are probabilities unless ``from_logits=True``: ``(n,)`` = ``P(y = 1)`` (binary logits
with ``from_logits``) or ``(n, K)`` rows on the simplex (class logits). All return a float.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calibkit._validation import check_labels
from calibkit.metrics._inputs import (
    as_scores,
    binary_outcomes,
    label_prob_blocks,
    top_label_outcomes,
)

__all__ = ["accuracy", "brier_score", "nll"]

_EPS = float(np.finfo(np.float64).eps)


def brier_score(probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False) -> float:
    r"""Brier score (mean squared error of the probabilities).

    * ``(n,)`` input: :math:`\frac1n\sum_i (p_i - y_i)^2` (scikit-learn's ``brier_score_loss``);
    * ``(n, K)`` input: Brier's original multiclass score
      :math:`\frac1n\sum_i\sum_k (p_{ik} - 1[y_i = k])^2`, in [0, 2] (scikit-learn's
      ``brier_score_loss`` with ``scale_by_half=False``). For ``(n, 2)`` this is twice the 1-D value.
    """
    a = as_scores(probs, from_logits=from_logits, name="logits" if from_logits else "probs")
    if a.ndim == 1:
        p, y1 = binary_outcomes(a, labels, from_logits=from_logits)
        d = np.asarray(p, dtype=np.float64) - y1
        return float(np.mean(d * d))
    n, blocks = label_prob_blocks(a, labels, from_logits=from_logits)
    total = 0.0
    for py, _, sq in blocks:
        total += float(np.sum(sq - 2.0 * py + 1.0))
    return total / n


def nll(
    probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False, eps: float = _EPS
) -> float:
    r"""Negative log-likelihood (log loss, natural log): :math:`-\frac1n\sum_i \log p_{i,y_i}`.

    ``(n,)`` input: :math:`-\frac1n\sum_i [y_i\log p_i + (1 - y_i)\log(1 - p_i)]`. Probabilities
    of the true class are clipped below at ``eps`` (default: float64 machine epsilon, as
    scikit-learn's ``log_loss``), so a zero probability costs ``-log(eps)`` (36.04) rather than
    infinity. With ``from_logits`` the log-softmax / log-sigmoid is computed exactly.
    """
    if not (0.0 < eps < 1.0):
        raise ValueError(f"eps must be in (0, 1); got {eps}")
    floor = np.log(eps)
    name = "logits" if from_logits else "probs"
    a = as_scores(probs, from_logits=from_logits, name=name)
    if a.ndim == 1:
        y = check_labels(labels, a.shape[0], 2)
        if from_logits:
            if np.isnan(a).any():
                raise ValueError(f"{name} contains NaN values ({int(np.isnan(a).sum())} entries)")
            z = a.astype(np.float64)
            # log sigmoid(z) = -logaddexp(0, -z); log(1 - sigmoid(z)) = -logaddexp(0, z)
            lpy = -np.logaddexp(0.0, np.where(y == 1, -z, z))
        else:
            p, _ = binary_outcomes(a, y, from_logits=False)
            py = np.where(y == 1, p, 1.0 - np.asarray(p, dtype=np.float64))
            with np.errstate(divide="ignore"):
                lpy = np.log(py)
        return float(-np.mean(np.maximum(lpy, floor)))
    n, blocks = label_prob_blocks(a, labels, from_logits=from_logits)
    total = 0.0
    for _, lpy_b, _ in blocks:
        total -= float(np.sum(np.maximum(lpy_b, floor)))
    return total / n


def accuracy(probs: ArrayLike, labels: ArrayLike, *, from_logits: bool = False) -> float:
    """Fraction of correct top-label predictions.

    ``(n, K)``: ``argmax_k p_ik == y_i`` (ties: lowest index). ``(n,)``: predicts 1 iff
    ``p_i > 0.5`` (logit ``> 0``).
    """
    _, correct = top_label_outcomes(probs, labels, from_logits=from_logits)
    return float(np.mean(correct))
