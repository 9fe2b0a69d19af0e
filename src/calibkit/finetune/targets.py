"""Rank-preserving calibration targets (paper 002, Section 5.2 eq. 6 and Appendix A.4).

Given a model's option probabilities ``p`` for one question and the estimated accuracy ``acc``
of the confidence bin its top option falls in, the M-step of the EM regularizer pulls ``p``
towards a target vector ``q`` on the simplex:

* the top option (``argmax p``; ties: lowest index) gets ``q_top = acc``;
* each non-top option ``j`` gets ``q_j = alpha * tanh(gamma * p_j) + beta``, so the non-top
  options keep their order (``tanh`` is increasing) and share the remaining mass ``1 - acc``.

The paper's PDF lost the equations; this is the choice made here, following the reference code
for ``K = 4`` and generalised to ``K`` options:

* ``gamma = c / (p_(2) * (1 - acc))`` with ``p_(2)`` the largest non-top probability and
  ``c = log(K - 1)`` (the paper's ``log 3``), so the largest non-top option maps to
  ``tanh(c / (1 - acc)) >= tanh(c)``: close to saturation, more so as ``acc -> 1``.
  Written as ``tanh(c * r_j / (1 - acc))`` with ``r_j = p_j / p_(2)``; when ``p_(2) = 0`` every
  ``r_j = 1`` (no information to order them: they share the mass equally).
* ``alpha = beta = (1 - acc) / (T + K - 1)``, ``T = sum_j tanh(gamma * p_j)`` (the paper's
  simplified solution (a) with ``K - 1`` in place of the hard-coded 3), so the non-top targets sum
  to ``1 - acc``.
* ``acc = 1``: ``alpha = beta = 0``: the target is one-hot on the top option.

**Low-accuracy bins.** With ``alpha = beta`` the largest non-top target is at most
``2 (1 - acc) / K``; it can exceed ``acc`` (the top option would lose its rank) only when
``acc < 2 / (K + 2)``. With ``preserve_top=True`` (default):

* if ``1/K <= acc`` and the largest non-top target exceeds ``acc``, the non-top targets are mixed
  with the uniform split ``(1 - acc) / (K - 1)`` just enough that the largest equals ``acc``.
  The result is still of the form ``alpha' * tanh(gamma p_j) + beta'`` (the paper's general
  solution (b)), sums to ``1 - acc`` and keeps the non-top order;
* if ``acc < 1/K`` no target with ``q_top = acc`` keeps the top option on top (the largest of
  ``K`` probabilities is at least ``1/K``), so ``acc`` is raised to ``1/K``: the target is the
  uniform distribution, the calibrated answer to "this bin is right less often than chance".

With ``preserve_top=False`` the paper's formula is applied as is for every ``acc``: the non-top
targets always sum to ``1 - acc`` and keep their order, but may exceed ``q_top``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._validation import check_probs

__all__ = ["default_gamma_scale", "rank_preserving_targets"]

_TINY = 1e-12


def default_gamma_scale(n_options: int) -> float:
    """``c = log(K - 1)``: the paper's ``log 3`` for four options (0 for ``K = 2``)."""
    if n_options < 2:
        raise ValueError(f"n_options must be >= 2; got {n_options}")
    return math.log(n_options - 1)


def rank_preserving_targets(
    probs: ArrayLike,
    accuracy: ArrayLike,
    *,
    gamma_scale: float | None = None,
    preserve_top: bool = True,
) -> NDArray[np.float64]:
    """Target option distributions for the M-step of the EM ECE regularizer.

    Parameters
    ----------
    probs : (n, K) array
        Option **probabilities** (rows on the simplex), ``K >= 2``.
    accuracy : float or (n,) array
        Estimated accuracy in ``[0, 1]`` of the confidence bin of each row's top option.
    gamma_scale : float, optional
        ``c`` in ``gamma = c / (p_(2) (1 - acc))``; default ``log(K - 1)``. Must be ``>= 0``.
    preserve_top : bool
        Keep the top option the (weakly) largest target; see the module docstring.

    Returns
    -------
    (n, K) float64
        Targets: ``q[i, argmax p_i] = acc_i`` (or ``1/K`` when raised, see above), rows sum to 1,
        non-top entries ordered like ``p``.
    """
    p = check_probs(probs, name="probs")
    if p.ndim != 2:
        raise ValueError(f"probs must be (n, K) option probabilities; got shape {p.shape}")
    n, k = p.shape
    acc = np.asarray(accuracy, dtype=np.float64)
    if acc.ndim == 0:
        acc = np.full(n, float(acc))
    if acc.shape != (n,):
        raise ValueError(f"accuracy must be a scalar or have shape ({n},); got {acc.shape}")
    if not np.all(np.isfinite(acc)) or acc.min() < 0.0 or acc.max() > 1.0:
        raise ValueError("accuracy must be finite and lie in [0, 1]")
    c = default_gamma_scale(k) if gamma_scale is None else float(gamma_scale)
    if not math.isfinite(c) or c < 0:
        raise ValueError(f"gamma_scale must be finite and >= 0; got {gamma_scale}")

    a = np.maximum(acc, 1.0 / k) if preserve_top else acc.copy()
    rows = np.arange(n)
    top = np.argmax(p, axis=1)
    # non-top probabilities, in original column order: (n, K-1)
    mask = np.ones((n, k), dtype=bool)
    mask[rows, top] = False
    rest = p[mask].reshape(n, k - 1)
    second = rest.max(axis=1, keepdims=True)
    ratio = np.where(second > _TINY, rest / np.maximum(second, _TINY), 1.0)
    one_minus = 1.0 - a
    sure = one_minus <= _TINY
    scale = np.where(sure, 0.0, c / np.maximum(one_minus, _TINY))[:, None]
    t = np.tanh(scale * ratio)
    alpha = one_minus[:, None] / (t.sum(axis=1, keepdims=True) + (k - 1))
    q_rest = alpha * (t + 1.0)  # alpha = beta
    q_rest[sure] = 0.0
    if preserve_top:
        uniform = (one_minus / (k - 1))[:, None]
        qmax = q_rest.max(axis=1, keepdims=True)
        over = qmax > a[:, None]
        denom = np.where(over, qmax - uniform, 1.0)
        w = np.where(over, (qmax - a[:, None]) / np.maximum(denom, _TINY), 0.0)
        w = np.clip(w, 0.0, 1.0)
        q_rest = (1.0 - w) * q_rest + w * uniform
    out = np.empty((n, k), dtype=np.float64)
    out[mask] = q_rest.ravel()
    out[rows, top] = a
    return out
