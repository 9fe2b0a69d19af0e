r"""Binned calibration errors: ECE, MCE, RMS (L2), debiased L2, ACE, conf-ECE and classwise ECE.

Notation. ``n`` scored items are split into bins ``B_1..B_M`` (see :mod:`calibkit.metrics.binning`
for the edge convention). For a bin ``B_m`` with ``n_m = |B_m|`` items,

.. math::

    \mathrm{conf}(B_m) = \frac{1}{n_m}\sum_{i\in B_m} s_i, \qquad
    \mathrm{acc}(B_m) = \frac{1}{n_m}\sum_{i\in B_m} o_i,

where ``s_i`` is the score and ``o_i`` the outcome:

* ``(n, K)`` input (top-label view): ``s_i = max_k p_ik`` and ``o_i = 1[argmax_k p_ik = y_i]``;
* ``(n,)`` input (binary view): ``s_i = P(y_i = 1)`` and ``o_i = y_i`` (netcal's and
  torchmetrics' convention for binary input). Pass ``(n, 2)`` to get the top-label view.

Empty bins take no part in any sum, maximum or mean. Inputs are probabilities unless
``from_logits=True`` (softmax for ``(n, K)``, sigmoid for ``(n,)``). All functions return a
Python float.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.metrics._inputs import (
    binary_outcomes,
    full_probs_blocks,
    score_ndim,
    top_label_outcomes,
)
from calibkit.metrics.binning import (
    MAX_CLASSWISE_CELLS,
    Binning,
    BinStats,
    assign_bins,
    bin_edges,
    bin_statistics,
    check_n_bins,
    uniform_edges,
)

__all__ = [
    "ace",
    "binned_outcomes",
    "binned_statistics",
    "calibration_error",
    "classwise_bin_statistics",
    "classwise_ece",
    "conf_ece",
    "debiased_ece",
    "ece",
    "mce",
    "rms_ce",
    "stats_metric",
]

Norm = Literal["l1", "l2", "max"]


# ---------------------------------------------------------------------- statistics -> metric
def _l1(st: BinStats) -> NDArray[np.float64]:
    return np.abs(st.sum_outcome - st.sum_confidence).sum(axis=-1) / st.n


def _l2(st: BinStats) -> NDArray[np.float64]:
    # sum_m (n_m / n) (acc_m - conf_m)^2 = sum_m (S_out - S_conf)^2 / (n_m n)
    d = st.sum_outcome - st.sum_confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(st.count > 0, d * d / np.maximum(st.count, 1), 0.0)
    return np.sqrt(t.sum(axis=-1) / st.n)


def _max(st: BinStats) -> NDArray[np.float64]:
    gap = np.abs(st.accuracy - st.mean_confidence)
    return np.max(np.where(st.count > 0, gap, 0.0), axis=-1)


def _debiased_sq(st: BinStats) -> NDArray[np.float64]:
    acc, conf = st.accuracy, st.mean_confidence
    ok = st.count >= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        term = (conf - acc) ** 2 - acc * (1.0 - acc) / (st.count - 1)
    return np.where(ok, term * st.count, 0.0).sum(axis=-1) / st.n


def _ace(st: BinStats) -> NDArray[np.float64]:
    gap = np.abs(st.mean_confidence - st.accuracy)
    full = st.count > 0
    return np.where(full, gap, 0.0).sum(axis=-1) / full.sum(axis=-1)


def stats_metric(st: BinStats, norm: str) -> float:
    """A metric of per-bin sums: ``"l1"`` (ECE), ``"l2"`` (RMS), ``"max"`` (MCE),
    ``"debiased_l2"``, ``"debiased_l2_squared"``, ``"ace"`` (unweighted mean gap)."""
    if norm == "l1":
        return float(_l1(st))
    if norm == "l2":
        return float(_l2(st))
    if norm == "max":
        return float(_max(st))
    if norm == "debiased_l2_squared":
        return float(_debiased_sq(st))
    if norm == "debiased_l2":
        return float(np.sqrt(max(float(_debiased_sq(st)), 0.0)))
    if norm == "ace":
        return float(_ace(st))
    raise ValueError(f"norm must be one of 'l1', 'l2', 'max'; got {norm!r}")


# ---------------------------------------------------------------------- scores -> statistics
def binned_outcomes(
    probs: ArrayLike,
    labels: ArrayLike,
    *,
    from_logits: bool = False,
    top_label: bool = False,
) -> tuple[NDArray[np.floating], NDArray[np.bool_]]:
    """``(score, outcome)`` pairs that every binned metric bins (see the module docstring).

    ``top_label=True`` forces the top-label view of a 1-D binary input.
    """
    if score_ndim(probs) == 1 and not top_label:
        return binary_outcomes(probs, labels, from_logits=from_logits)
    return top_label_outcomes(probs, labels, from_logits=from_logits)


def binned_statistics(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    binning: Binning | str = "uniform",
    from_logits: bool = False,
    top_label: bool = False,
) -> BinStats:
    """Per-bin sums of :func:`binned_outcomes` on ``n_bins`` uniform or quantile bins."""
    if binning not in ("uniform", "quantile"):
        raise ValueError(f"binning must be 'uniform' or 'quantile'; got {binning!r}")
    check_n_bins(n_bins)  # before any heavy work
    if binning == "uniform":
        edges = uniform_edges(n_bins)
    conf, out = binned_outcomes(probs, labels, from_logits=from_logits, top_label=top_label)
    if binning == "quantile":
        edges = bin_edges(conf, n_bins, "quantile")
    return bin_statistics(conf, out, edges)


# ---------------------------------------------------------------------- public metrics
def calibration_error(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    norm: Norm | str = "l1",
    from_logits: bool = False,
    binning: Binning | str = "uniform",
) -> float:
    r"""Binned calibration error with a chosen norm (torchmetrics' ``calibration_error``).

    ``"l1"``: :func:`ece`; ``"l2"``: :func:`rms_ce`; ``"max"``: :func:`mce`.

    Parameters
    ----------
    probs : (n,) P(y=1) or (n, K) probabilities; logits with ``from_logits=True``
    labels : (n,) int class indices (0/1 for 1-D input)
    n_bins : number of bins M
    norm : "l1", "l2" or "max"
    binning : "uniform" (equal width) or "quantile" (equal mass)
    """
    if norm not in ("l1", "l2", "max"):
        raise ValueError(f"norm must be one of 'l1', 'l2', 'max'; got {norm!r}")
    return stats_metric(
        binned_statistics(probs, labels, n_bins, binning=binning, from_logits=from_logits), norm
    )


def ece(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    from_logits: bool = False,
    binning: Binning | str = "uniform",
) -> float:
    r"""Expected calibration error (Guo et al. 2017), L1 over bins weighted by mass:

    .. math:: \mathrm{ECE} = \sum_{m=1}^{M} \frac{n_m}{n}\,|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)|

    With ``binning="uniform"`` (default) the bins are ``M`` equal-width intervals of [0, 1];
    with ``binning="quantile"`` they hold equal mass ("equal-mass ECE").
    Equals netcal ``ECE(bins=M)`` and torchmetrics ``calibration_error(norm="l1")``.

    Parameters
    ----------
    probs : (n,) P(y=1) or (n, K) probabilities; logits with ``from_logits=True``
    labels : (n,) int class indices (0/1 for 1-D input)
    n_bins : M
    binning : "uniform" or "quantile"
    """
    return stats_metric(
        binned_statistics(probs, labels, n_bins, binning=binning, from_logits=from_logits), "l1"
    )


def mce(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    from_logits: bool = False,
    binning: Binning | str = "uniform",
) -> float:
    r"""Maximum calibration error, the largest gap over non-empty bins:

    .. math:: \mathrm{MCE} = \max_{m:\,n_m>0} |\mathrm{acc}(B_m) - \mathrm{conf}(B_m)|

    Arguments as :func:`ece`. Equals netcal ``MCE`` and torchmetrics ``norm="max"``.
    """
    return stats_metric(
        binned_statistics(probs, labels, n_bins, binning=binning, from_logits=from_logits), "max"
    )


def rms_ce(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    from_logits: bool = False,
    binning: Binning | str = "uniform",
) -> float:
    r"""Root-mean-square (L2) calibration error (plug-in, biased):

    .. math:: \mathrm{RMSCE} = \Big(\sum_m \frac{n_m}{n}(\mathrm{acc}(B_m) -
              \mathrm{conf}(B_m))^2\Big)^{1/2}

    Arguments as :func:`ece`. Equals torchmetrics ``calibration_error(norm="l2")``.
    """
    return stats_metric(
        binned_statistics(probs, labels, n_bins, binning=binning, from_logits=from_logits), "l2"
    )


def debiased_ece(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    from_logits: bool = False,
    binning: Binning | str = "uniform",
    squared: bool = False,
) -> float:
    r"""Debiased estimator of the L2 calibration error (Kumar, Liang & Ma 2019,
    "Verified Uncertainty Calibration", the ``debias=True`` estimator).

    The plug-in squared error over-estimates because each ``acc(B_m)`` is noisy; subtracting the
    unbiased estimate of its variance gives

    .. math:: \widehat{\mathrm{CE}^2} = \sum_{m:\,n_m\ge 2} \frac{n_m}{n}\Big[
              (\mathrm{conf}(B_m) - \mathrm{acc}(B_m))^2 -
              \frac{\mathrm{acc}(B_m)(1 - \mathrm{acc}(B_m))}{n_m - 1}\Big]

    Bins with fewer than 2 items contribute 0 (as in Kumar et al.'s reference code).
    ``squared=True`` returns this estimate as is (it can be negative when the model is close to
    calibrated); otherwise ``sqrt(max(estimate, 0))``, an estimate of :func:`rms_ce`'s target.
    Arguments otherwise as :func:`ece`; Kumar et al. use ``binning="quantile"``.
    """
    norm = "debiased_l2_squared" if squared else "debiased_l2"
    return stats_metric(
        binned_statistics(probs, labels, n_bins, binning=binning, from_logits=from_logits), norm
    )


def ace(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    from_logits: bool = False,
    binning: Binning | str = "quantile",
) -> float:
    r"""Adaptive calibration error, paper 001 ("Label with Confidence") equation 2:

    .. math:: \mathrm{ACE}(s, y) = \frac{1}{|B|}\sum_{b\in B}\Big|\bar s_b -
              \frac{\#[y_b = \mathrm{hit}]}{\#[b]}\Big|

    an *unweighted* mean over the non-empty bins ``B`` of the gap between the mean score and the
    hit rate. Following the paper's reference [7] (Nixon et al. 2019) the bins are adaptive:
    ``M`` equal-mass bins with edges at the ``m/M`` quantiles of the scores
    (:func:`~calibkit.metrics.binning.quantile_edges`; ties stay in one bin). For ``(n, K)``
    input ``s`` is the top-label confidence and a hit a correct prediction (the paper's setting);
    1-D input follows the binary view. ``binning="uniform"`` gives netcal's default ``ACE``.
    With ``"quantile"`` this equals netcal ``ACE(bins=M, equal_intervals=False)``.
    """
    return stats_metric(
        binned_statistics(probs, labels, n_bins, binning=binning, from_logits=from_logits), "ace"
    )


def conf_ece(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 10,
    *,
    from_logits: bool = False,
) -> float:
    r"""Confidence-ECE of paper 002 ("Restoring Calibration for Aligned LLMs", appendix C.1,
    eq. 19; the equation is missing from the extracted text, this is the definition around it):

    .. math:: \mathrm{conf\text{-}ECE} = \sum_{m=1}^{M}\frac{|B_m|}{n}\,
              |\mathrm{acc}(B_m) - \mathrm{conf}(B_m)|

    with ``B_m`` the ``m``-th of ``M`` (paper: 10) equal-width bins of the *max* confidence
    ``max_k p_ik``, ``conf(B_m)`` the mean winning-class probability and ``acc(B_m)`` the fraction
    whose winning class is the label. Always the top-label view: a 1-D ``P(y=1)`` is read as the
    two classes ``[1 - p, p]``.
    """
    return stats_metric(
        binned_statistics(probs, labels, n_bins, from_logits=from_logits, top_label=True), "l1"
    )


def classwise_bin_statistics(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 10,
    *,
    from_logits: bool = False,
) -> BinStats:
    """Per-class equal-width bin sums for :func:`classwise_ece`.

    Returns
    -------
    BinStats with ``(K, M)`` arrays: row ``k`` bins ``p_ik`` against the outcome ``y_i == k``.
    """
    edges = uniform_edges(n_bins)
    m = edges.size - 1
    _, k, y, blocks = full_probs_blocks(probs, labels, from_logits=from_logits)
    if k * m > MAX_CLASSWISE_CELLS:
        raise ValueError(
            f"classwise binning of {k} classes x {m:,} bins needs {k * m:,} cells, above the "
            f"maximum of {MAX_CLASSWISE_CELLS:,}; use fewer bins"
        )
    count = np.zeros(k * m, dtype=np.int64)
    s_conf = np.zeros(k * m, dtype=np.float64)
    s_out = np.zeros(k * m, dtype=np.float64)
    offset = (np.arange(k, dtype=np.intp) * m)[None, :]
    for start, blk in blocks:
        idx = assign_bins(blk.ravel(), edges).reshape(blk.shape) + offset
        flat = idx.ravel()
        count += np.bincount(flat, minlength=k * m)
        s_conf += np.bincount(flat, weights=blk.ravel(), minlength=k * m)
        yb = y[start : start + blk.shape[0]]
        hit = idx[np.arange(blk.shape[0]), yb]
        s_out += np.bincount(hit, minlength=k * m)
    return BinStats(edges, count.reshape(k, m), s_conf.reshape(k, m), s_out.reshape(k, m))


def classwise_ece(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 10,
    *,
    from_logits: bool = False,
    binning: Binning | str = "uniform",
) -> float:
    r"""Classwise ECE of paper 002 (appendix C.1, eq. 20; Kull et al. 2019's cw-ECE). The
    equation is missing from the extracted text; from its definitions (``B_{m,k}`` the ``m``-th
    bin of class ``k``'s predicted probability, ``|B_{m,k}|`` its size, ``conf`` the mean predicted
    probability of class ``k`` in it and ``acc`` the proportion of class ``k`` in it) we use

    .. math:: \mathrm{cw\text{-}ECE} = \frac{1}{K}\sum_{k=1}^{K}\sum_{m=1}^{M}
              \frac{|B_{m,k}|}{n}\,|\mathrm{acc}(B_{m,k}) - \mathrm{conf}(B_{m,k})|

    i.e. the mean over all ``K`` classes of the one-vs-rest ECE of ``(p_ik, 1[y_i = k])``.
    Classes absent from ``labels`` still count in the mean (paper: 4 options, always averaged
    over 4). A 1-D ``P(y=1)`` is read as ``[1 - p, p]``. ``binning="quantile"`` uses equal-mass
    bins per class (slower: one pass per class).
    """
    if binning == "uniform":
        st = classwise_bin_statistics(probs, labels, n_bins, from_logits=from_logits)
        return float(np.mean(_l1(st)))
    if binning != "quantile":
        raise ValueError(f"binning must be 'uniform' or 'quantile'; got {binning!r}")
    check_n_bins(n_bins)
    _, k, y, blocks = full_probs_blocks(probs, labels, from_logits=from_logits)
    p = np.concatenate([b for _, b in blocks], axis=0)
    errs = [
        stats_metric(bin_statistics(p[:, j], y == j, bin_edges(p[:, j], n_bins, "quantile")), "l1")
        for j in range(k)
    ]
    return float(np.mean(errs))
