r"""Choose an acceptance threshold on confidence with a finite-sample error guarantee.

An item is **accepted** (auto-labeled with the model's top class) when its confidence, the
top-label softmax probability ``max_k p_k`` (so logits are turned into probabilities first), is at
least the threshold ``lambda``; the rest go to review.

Learn-then-Test (Angelopoulos, Bates, Candès, Jordan and Lei 2021), ``rule="ltt"``
    For each ``lambda`` of a fixed, descending grid, test ``H_lambda: R(lambda) > epsilon`` where
    ``R(lambda) = P(wrong | confidence >= lambda)`` is the error rate among accepted items. Given
    the number ``n_lambda`` of accepted calibration items, their errors are i.i.d.
    ``Bernoulli(R(lambda))``, so the binomial tail ``P(Bin(n_lambda, epsilon) <= k_lambda)`` (or
    the Hoeffding-Bentkus p-value) is a valid p-value. Fixed-sequence testing walks the grid from
    the most conservative ``lambda`` down and stops at the first p-value above ``delta``; the
    certified threshold is the last ``lambda`` rejected before that. Then, with probability at
    least ``1 - delta`` over the calibration sample, every rejected ``lambda`` (so the chosen one)
    has ``R(lambda) <= epsilon``.

    Grid points with fewer accepted items than :func:`default_min_accepted` (at least
    :func:`~calibkit.decisions.risk.min_certifiable_n`, below which even zero errors could not
    reach ``delta``) are skipped rather than allowed to end the sequence: the skip depends only
    on how many items are accepted, never on their labels. The
    guarantee is then exact when the error rate of the items in a confidence band does not
    increase with the band's confidence (at the grid's resolution); the validity simulations of
    ``tests/test_decisions_validity.py`` check it on real model outputs.

Conformal risk control (Angelopoulos, Bates, Fisch, Lei and Schuster 2022), ``rule="crc"``
    Controls the *expected* share of **all** items that are accepted and wrong,
    ``E[1{wrong, confidence >= lambda}] <= epsilon`` (a loss that decreases in ``lambda``, as CRC
    needs): ``lambda_hat`` is the lowest grid value with ``(k_lambda + 1) / (n + 1) <= epsilon``
    for it and every higher grid value. No ``delta``: the guarantee is in expectation over the
    calibration and test draws.

Class-conditional (``by_class=True``)
    One threshold per predicted class, each certified on the calibration items predicted as that
    class (``epsilon`` may differ per class); ``delta`` is split over the classes (Bonferroni) so
    that all classes hold at once with probability ``1 - delta``. A class that cannot be certified
    is never auto-labeled.

The core (:func:`accepted_counts`, :func:`fixed_sequence`, :func:`ltt_select`, :func:`crc_select`)
works on count arrays with any leading batch shape, so thousands of calibration splits are
checked in one vectorised call.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.decisions.risk import (
    PVALUE_METHODS,
    calibration_size_needed,
    check_unit_interval,
    clopper_pearson_interval,
    clopper_pearson_upper,
    labels_needed,
    min_certifiable_n,
    pvalue,
)
from calibkit.scores import Scores

if TYPE_CHECKING:
    from calibkit.decisions.policy import AutoLabelPolicy

__all__ = [
    "RULES",
    "CertificationError",
    "RiskCurve",
    "accepted_counts",
    "batch_select",
    "certify_threshold",
    "crc_select",
    "default_min_accepted",
    "fixed_sequence",
    "grid_cells",
    "ltt_select",
    "risk_curve",
    "threshold_grid",
    "top_label_outcomes_of",
]

Rule = Literal["ltt", "crc"]
#: threshold-selection rules of :func:`certify_threshold`
RULES: tuple[str, ...] = ("ltt", "crc")


class CertificationError(ValueError):
    """No threshold can be certified; ``needed`` estimates the labelled items that would do it."""

    def __init__(self, message: str, needed: float | None = None) -> None:
        super().__init__(message)
        self.needed = needed


# --------------------------------------------------------------------------- grid and counts
def threshold_grid(n_classes: int, size: int = 1000) -> NDArray[np.float64]:
    """The default descending threshold grid: fixed before seeing any labels.

    ``[1.0, 1 - 1e-7, ..., 1/K, 0.0]`` with ``1 - lambda`` log-spaced from ``1e-7`` to
    ``1 - 1/K`` (fine near 1, where confident models put most items); ``0.0`` accepts everything.

    Parameters
    ----------
    n_classes : int >= 2
    size : int >= 3, the number of grid points.

    Returns
    -------
    (size,) float64, strictly decreasing.
    """
    if isinstance(n_classes, bool) or int(n_classes) != n_classes or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2; got {n_classes!r}")
    if isinstance(size, bool) or int(size) != size or size < 3:
        raise ValueError(f"grid size must be an int >= 3; got {size!r}")
    mid = 1.0 - np.geomspace(1e-7, 1.0 - 1.0 / n_classes, int(size) - 2)
    return np.concatenate([[1.0], mid, [0.0]])


def _check_grid(grid: ArrayLike) -> NDArray[np.float64]:
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or g.size < 1:
        raise ValueError(f"grid must be a non-empty 1-D array; got shape {g.shape}")
    if not np.all(np.isfinite(g)) or g.min() < 0.0 or g.max() > 1.0:
        raise ValueError("grid values must be finite confidences in [0, 1]")
    if g.size > 1 and not np.all(np.diff(g) < 0):
        raise ValueError("grid must be strictly decreasing (most conservative threshold first)")
    return g


def grid_cells(confidence: ArrayLike, grid: ArrayLike) -> NDArray[np.int64]:
    """For each item the first grid index whose threshold accepts it (``J`` = never).

    An item with confidence ``c`` is accepted at grid index ``j`` iff ``c >= grid[j]``; with a
    decreasing grid that is every ``j >= cell``.

    Parameters
    ----------
    confidence : (n,) top-label probabilities in [0, 1].
    grid : (J,) strictly decreasing thresholds.

    Returns
    -------
    (n,) int64 in ``[0, J]``.
    """
    g = _check_grid(grid)
    c = np.asarray(confidence, dtype=np.float64)
    asc = g[::-1]
    r = np.searchsorted(asc, c, side="right")  # grid values <= c
    return (g.size - r).astype(np.int64)


def accepted_counts(
    cells: ArrayLike,
    wrong: ArrayLike,
    n_grid: int,
    *,
    mask: ArrayLike | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Accepted items and errors among them at every grid point, for one or many subsets.

    Parameters
    ----------
    cells : (n,) int from :func:`grid_cells`.
    wrong : (n,) bool, the top-label prediction is wrong.
    n_grid : J.
    mask : (n,) or (S, n) bool or non-negative int, optional
        Which items are in the calibration set (``S`` subsets at once, e.g. random splits), or
        how many times each item is (bootstrap resamples).

    Returns
    -------
    n_acc, n_err : (J,) or (S, J) int64, non-decreasing along the grid.
    """
    cl = np.asarray(cells, dtype=np.int64)
    w = np.asarray(wrong, dtype=bool)
    if cl.ndim != 1 or w.shape != cl.shape:
        raise ValueError(
            f"cells and wrong must be (n,) arrays of equal length; got {cl.shape}, {w.shape}"
        )
    J = int(n_grid)
    if mask is None:
        acc = np.bincount(cl, minlength=J + 1)[:J]
        err = np.bincount(cl[w], minlength=J + 1)[:J]
        return np.cumsum(acc).astype(np.int64), np.cumsum(err).astype(np.int64)
    m = np.asarray(mask)
    if m.dtype.kind not in "biu" or (m.dtype.kind == "i" and m.size and m.min() < 0):
        raise ValueError("mask must hold booleans or non-negative integer counts")
    squeeze = m.ndim == 1
    m2 = m[None, :] if squeeze else m
    if m2.ndim != 2 or m2.shape[1] != cl.size:
        raise ValueError(f"mask must be (n,) or (S, n) with n = {cl.size}; got {m.shape}")
    S = m2.shape[0]
    rows, cols = np.nonzero(m2)
    weight = None if m2.dtype == bool else m2[rows, cols].astype(np.float64)
    flat = rows * (J + 1) + cl[cols]
    size = S * (J + 1)
    acc = np.bincount(flat, weights=weight, minlength=size).reshape(S, J + 1)[:, :J]
    werr = w[cols]
    err = np.bincount(
        flat[werr], weights=None if weight is None else weight[werr], minlength=size
    ).reshape(S, J + 1)[:, :J]
    n_acc = np.rint(np.cumsum(acc, axis=1)).astype(np.int64)
    n_err = np.rint(np.cumsum(err, axis=1)).astype(np.int64)
    if squeeze:
        return n_acc[0], n_err[0]
    return n_acc, n_err


# --------------------------------------------------------------------------- selection rules
def fixed_sequence(
    pvalues: ArrayLike, delta: float | ArrayLike, *, tested: ArrayLike | None = None
) -> NDArray[np.int64]:
    """Fixed-sequence testing along the last axis: the last index rejected before the first failure.

    Parameters
    ----------
    pvalues : (..., J) p-values in the testing order.
    delta : float or (...,) array of levels (e.g. per class).
    tested : (..., J) bool, optional; ``False`` entries are skipped (neither reject nor stop).

    Returns
    -------
    (...,) int64 index of the certified hypothesis, ``-1`` where none is rejected.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    d = np.asarray(delta, dtype=np.float64)[..., None]
    t = np.ones(p.shape, dtype=bool) if tested is None else np.asarray(tested, dtype=bool)
    J = p.shape[-1]
    fail = t & (p > d)
    first_fail = np.where(fail.any(axis=-1), np.argmax(fail, axis=-1), J)
    ok = t & (p <= d) & (np.arange(J) < first_fail[..., None])
    last = J - 1 - np.argmax(ok[..., ::-1], axis=-1)
    return np.where(ok.any(axis=-1), last, -1).astype(np.int64)


def ltt_select(
    n_acc: ArrayLike,
    n_err: ArrayLike,
    epsilon: float | ArrayLike,
    delta: float | ArrayLike,
    *,
    method: str = "binomial",
    min_accepted: int | ArrayLike | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Learn-then-Test on precomputed risk curves (any leading batch shape).

    Parameters
    ----------
    n_acc, n_err : (..., J) accepted items and errors at each grid point (descending thresholds).
    epsilon : float, or (...,) per curve (e.g. per class).
    delta : float, or (...,) per curve.
    method : "binomial" (exact, Clopper-Pearson) or "hoeffding_bentkus".
    min_accepted : int or (...,) per curve; grid points accepting fewer items are skipped.
        Default :func:`default_min_accepted` of the curve's item count (``n_acc.max()``).

    Returns
    -------
    index : (...,) int64 certified grid index (-1: none).
    pvalues : (..., J) float64.
    """
    acc = np.asarray(n_acc, dtype=np.int64)
    err = np.asarray(n_err, dtype=np.int64)
    eps = np.broadcast_to(np.asarray(epsilon, dtype=np.float64), acc.shape[:-1])
    dl = np.broadcast_to(np.asarray(delta, dtype=np.float64), acc.shape[:-1])
    n_items = acc.max(axis=-1) if acc.shape[-1] else np.zeros(acc.shape[:-1], dtype=np.int64)
    pv = np.empty(acc.shape, dtype=np.float64)
    gate = np.empty(acc.shape[:-1], dtype=np.int64)
    for e_val in np.unique(eps):
        for d_val in np.unique(dl[eps == e_val]):
            sel = (eps == e_val) & (dl == d_val)
            pv[sel] = pvalue(err[sel], acc[sel], float(e_val), method)
            if min_accepted is None:
                gate[sel] = default_min_accepted(float(e_val), float(d_val), n_items[sel])
    if min_accepted is not None:
        gate[...] = np.broadcast_to(np.asarray(min_accepted, dtype=np.int64), gate.shape)
        if np.any(gate < 1):
            raise ValueError("min_accepted must be >= 1")
    tested = acc >= gate[..., None]
    return fixed_sequence(pv, dl, tested=tested), pv


def default_min_accepted(epsilon: float, delta: float, n_items: ArrayLike) -> NDArray[np.int64]:
    """Fewest accepted items a grid point needs to be tested (fewer: skipped).

    ``max(m0, min(m_half, n // 4))`` with ``m0`` = :func:`~calibkit.decisions.risk.min_certifiable_n`
    (below it even zero errors cannot certify) and ``m_half`` =
    :func:`~calibkit.decisions.risk.labels_needed` at the rate ``epsilon / 2`` (where an error
    rate of half the target certifies). Starting the sequence where ``m0`` items are accepted
    would stop it at the first error among the few most confident items; starting at ``m_half``
    avoids that, capped at a quarter of the items so that small calibration sets can still
    certify.
    The gate depends on counts only, never on labels. On the CIFAR records it halves the
    refusals and raises the certified coverage (e.g. 0.047 -> 0.098 for LeNet-5 at
    ``epsilon = 0.1``, 0.38 -> 0.50 for the CIFAR-100 WideResNet at ``epsilon = 0.05``; see
    ``docs/decisions.md``).
    """
    m0 = min_certifiable_n(epsilon, delta)
    m_half = float(labels_needed(epsilon / 2.0, epsilon, delta))
    n = np.asarray(n_items, dtype=np.int64)
    return np.maximum(m0, np.minimum(int(m_half), n // 4)).astype(np.int64)


def batch_select(
    n_acc: ArrayLike,
    n_err: ArrayLike,
    m_batch: ArrayLike,
    epsilon: float,
    delta: float,
    *,
    min_accepted: int | ArrayLike | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Learn-then-Test for the error realised on one batch (any leading batch shape).

    Like :func:`ltt_select`, with the exchangeability p-value
    :func:`~calibkit.decisions.risk.batch_pvalue`: with probability ``1 - delta`` over the
    calibration sample *and* the batch, the share of wrong labels among the batch items accepted
    at the chosen threshold is at most ``epsilon``.

    Parameters
    ----------
    n_acc, n_err : (..., J) calibration accepted items and errors per grid point.
    m_batch : (..., J) batch items accepted per grid point (labels not needed).
    epsilon, delta : floats in (0, 1).
    min_accepted : as in :func:`ltt_select` (on calibration counts).

    Returns
    -------
    index : (...,) certified grid index (-1: none); pvalues : (..., J), computed up to each
        curve's first failure (later entries, which cannot change the outcome, are 1).
    """
    from calibkit.decisions.risk import batch_pvalue

    eps = check_unit_interval(epsilon, "epsilon")
    d = check_unit_interval(delta, "delta")
    acc = np.asarray(n_acc, dtype=np.int64)
    err = np.asarray(n_err, dtype=np.int64)
    m = np.asarray(m_batch, dtype=np.int64)
    if m.shape != acc.shape:
        raise ValueError(f"m_batch has shape {m.shape}; expected {acc.shape}")
    if min_accepted is None:
        n_items = acc.max(axis=-1) if acc.shape[-1] else np.zeros(acc.shape[:-1], dtype=np.int64)
        gate = default_min_accepted(eps, d, n_items)
    else:
        gate = np.broadcast_to(np.asarray(min_accepted, dtype=np.int64), acc.shape[:-1])
    tested = acc >= np.asarray(gate)[..., None]
    pv = np.ones(acc.shape, dtype=np.float64)
    # p-values past a curve's first failure cannot change the outcome: compute them block by
    # block along the grid, only for curves still alive (those entries stay 1)
    flat_t = tested.reshape(-1, acc.shape[-1])
    flat_p = pv.reshape(-1, acc.shape[-1])
    fa, fe, fm = (x.reshape(-1, acc.shape[-1]) for x in (acc, err, m))
    alive = np.ones(flat_t.shape[0], dtype=bool)
    J = acc.shape[-1]
    for start in range(0, J, 64):
        cols = slice(start, min(J, start + 64))
        rows = np.flatnonzero(alive)
        if rows.size == 0:
            break
        t = flat_t[rows, cols]
        if np.any(t):
            blk = np.ones(t.shape)
            blk[t] = batch_pvalue(fe[rows, cols][t], fa[rows, cols][t], fm[rows, cols][t], eps)
            flat_p[rows, cols] = blk
            alive[rows[np.any(t & (blk > d), axis=1)]] = False
    return fixed_sequence(pv, d, tested=tested), pv


def crc_select(n_err: ArrayLike, n_total: ArrayLike, epsilon: float) -> NDArray[np.int64]:
    """Conformal risk control of ``E[1{wrong, accepted}]`` along descending grids.

    Parameters
    ----------
    n_err : (..., J) accepted-and-wrong counts (non-decreasing along the grid).
    n_total : int or (...,) calibration items per curve.
    epsilon : float in (0, 1).

    Returns
    -------
    (...,) int64: the lowest grid index with ``(k + 1) / (n + 1) <= epsilon`` there and at every
    earlier index; ``-1`` where even the first grid point fails.
    """
    eps = check_unit_interval(epsilon, "epsilon")
    k = np.asarray(n_err, dtype=np.float64)
    n = np.asarray(n_total, dtype=np.float64)[..., None]
    ok = (k + 1.0) / (n + 1.0) <= eps
    # the prefix of ok (k is non-decreasing, so ok is a prefix anyway)
    prefix = np.cumprod(ok, axis=-1).astype(bool)
    return (prefix.sum(axis=-1) - 1).astype(np.int64)


# --------------------------------------------------------------------------- inputs
def top_label_outcomes_of(
    scores: Scores | ArrayLike,
    labels: ArrayLike | None = None,
    *,
    from_logits: bool = False,
    need_labels: bool = True,
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64] | None, int]:
    """``(confidence, prediction, labels or None, K)`` of Scores or a probability/logit array.

    ``scores`` may be :class:`~calibkit.Scores` (labels taken from it unless given), ``(n, K)``
    probabilities (or logits with ``from_logits=True``) or 1-D ``P(y = 1)`` of a binary task
    (read as ``[1 - p, p]``; with ``from_logits`` a binary logit). Confidence is the top-label
    probability; ties go to the lowest class index.
    """
    from calibkit._validation import check_labels, check_scores_input

    if isinstance(scores, Scores):
        probs = scores.probs
        y = scores.labels if labels is None else np.asarray(labels)
        if y is None and need_labels:
            raise ValueError(
                "scores: these Scores are unlabeled (labels is None); certifying a threshold "
                "needs labelled calibration items"
            )
    else:
        if labels is None:
            if need_labels:
                raise ValueError("labels: certifying a threshold needs the calibration labels")
            from calibkit._math import to_probs
            from calibkit._validation import check_logits, check_probs

            probs = to_probs(check_logits(scores)) if from_logits else check_probs(scores)
            y = None
        else:
            probs, y = check_scores_input(scores, labels, from_logits=from_logits)
    if probs.ndim == 1:
        probs = np.stack([1.0 - probs, probs], axis=1)
    k = probs.shape[1]
    pred = np.argmax(probs, axis=1).astype(np.int64)
    conf = probs[np.arange(probs.shape[0]), pred]
    yy = None if y is None else check_labels(y, probs.shape[0], k, name="labels")
    return conf, pred, yy, k


# --------------------------------------------------------------------------- result
@dataclass(frozen=True)
class RiskCurve:
    """Calibration statistics along the threshold grid (one curve; per class: one per class).

    Attributes
    ----------
    grid : (J,) thresholds, decreasing.
    n_acc, n_err : (J,) accepted items and errors among them.
    n_total : calibration items (of that class, per class).
    pvalues : (J,) LTT p-values (NaN for ``rule="crc"``).
    delta : level of :attr:`upper`.
    upper : (J,) one-sided ``1 - delta`` Clopper-Pearson upper bound on the accepted error rate
        (computed on first use).
    """

    grid: NDArray[np.float64]
    n_acc: NDArray[np.int64]
    n_err: NDArray[np.int64]
    n_total: int
    pvalues: NDArray[np.float64]
    delta: float

    @cached_property
    def upper(self) -> NDArray[np.float64]:
        """(J,) one-sided ``1 - delta`` Clopper-Pearson bound on the accepted error rate."""
        return clopper_pearson_upper(self.n_err, self.n_acc, self.delta)

    @property
    def coverage(self) -> NDArray[np.float64]:
        """(J,) share of items accepted."""
        return self.n_acc / max(self.n_total, 1)

    @property
    def error(self) -> NDArray[np.float64]:
        """(J,) error rate among accepted items (NaN where none is accepted)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_acc > 0, self.n_err / np.maximum(self.n_acc, 1), np.nan)

    @property
    def joint_error(self) -> NDArray[np.float64]:
        """(J,) share of all items that are accepted and wrong."""
        return self.n_err / max(self.n_total, 1)


def risk_curve(
    confidence: ArrayLike,
    wrong: ArrayLike,
    grid: ArrayLike,
    *,
    epsilon: float = 0.05,
    delta: float = 0.1,
    method: str = "binomial",
) -> RiskCurve:
    """The :class:`RiskCurve` of one calibration set (p-values for ``epsilon``, bounds at ``delta``)."""
    g = _check_grid(grid)
    w = np.asarray(wrong, dtype=bool)
    n_acc, n_err = accepted_counts(grid_cells(confidence, g), w, g.size)
    pv = (
        pvalue(n_err, n_acc, epsilon, method)
        if method in PVALUE_METHODS
        else np.full(g.size, np.nan)
    )
    return RiskCurve(
        grid=g,
        n_acc=n_acc,
        n_err=n_err,
        n_total=int(w.size),
        pvalues=pv,
        delta=float(delta),
    )


def _epsilons(
    max_error: float | Sequence[float] | Mapping[str, float], classes: Sequence[str]
) -> NDArray[np.float64]:
    K = len(classes)
    if isinstance(max_error, Mapping):
        unknown = sorted(set(map(str, max_error)) - set(classes))
        if unknown:
            raise ValueError(f"max_error: classes {unknown} are not among {list(classes)}")
        missing = [c for c in classes if c not in max_error]
        if missing:
            raise ValueError(f"max_error: no value for classes {missing}")
        vals = [max_error[c] for c in classes]
    elif np.ndim(max_error) == 0:
        vals = [float(max_error)] * K  # type: ignore[arg-type]
    else:
        vals = list(max_error)  # type: ignore[arg-type]
        if len(vals) != K:
            raise ValueError(f"max_error has {len(vals)} values for {K} classes")
    return np.array([check_unit_interval(v, "max_error") for v in vals])


def certify_threshold(
    scores: Scores | ArrayLike,
    labels: ArrayLike | None = None,
    *,
    max_error: float | Sequence[float] | Mapping[str, float],
    delta: float = 0.05,
    rule: str = "ltt",
    method: str = "binomial",
    by_class: bool = False,
    grid: ArrayLike | None = None,
    from_logits: bool = False,
    ci_level: float = 0.95,
    classes: Sequence[str] | None = None,
    min_accepted: int | None = None,
) -> AutoLabelPolicy:
    """Certify an auto-labeling threshold on labelled calibration scores.

    Parameters
    ----------
    scores : Scores, (n, K) probabilities (logits with ``from_logits``) or (n,) ``P(y = 1)``
        Calibration scores; confidence is the top-label probability.
    labels : (n,) int, optional; taken from ``scores`` when it is a labelled Scores.
    max_error : float in (0, 1) (``epsilon``); with ``by_class`` also a (K,) sequence or a
        ``{class: epsilon}`` mapping.
    delta : float in (0, 1)
        Allowed probability that the calibration sample misleads (LTT only).
    rule : "ltt" (error rate among accepted items, with probability ``1 - delta``) or "crc"
        (expected share of all items accepted and wrong).
    method : "binomial" (exact, Clopper-Pearson) or "hoeffding_bentkus" (LTT p-values).
    by_class : one threshold per predicted class (LTT only), ``delta / K`` each.
    grid : (J,) strictly decreasing thresholds; default :func:`threshold_grid` (1000 points).
    ci_level : level of the reported coverage interval.
    classes : class names (default: from Scores, else ``"0".."K-1"``).
    min_accepted : grid points accepting fewer calibration items are skipped (LTT); default
        :func:`default_min_accepted`.

    Returns
    -------
    :class:`calibkit.decisions.AutoLabelPolicy` (``.report`` holds the calibration figures,
    ``.curves`` the risk curves).

    Raises
    ------
    CertificationError (a ValueError)
        Nothing can be certified; the message says how many labelled items would be needed.
    """
    from calibkit.decisions.policy import AutoLabelPolicy, ClassReport

    d = check_unit_interval(delta, "delta")
    check_unit_interval(ci_level, "ci_level")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    if method not in PVALUE_METHODS:
        raise ValueError(f"method must be one of {', '.join(PVALUE_METHODS)}; got {method!r}")
    conf, pred, y, K = top_label_outcomes_of(scores, labels, from_logits=from_logits)
    assert y is not None
    names = tuple(scores.classes) if isinstance(scores, Scores) else tuple(classes or ())
    if not names:
        names = tuple(str(i) for i in range(K))
    if len(names) != K:
        raise ValueError(f"classes has {len(names)} names for {K} score columns")
    g = threshold_grid(K) if grid is None else _check_grid(grid)
    wrong = pred != y
    n = int(conf.size)
    if rule == "crc":
        if by_class:
            raise ValueError("by_class is available with rule='ltt' only")
        if isinstance(max_error, Mapping) or np.ndim(max_error) != 0:
            raise ValueError("max_error must be one number with rule='crc'")
    if by_class:
        eps = _epsilons(max_error, names)
    elif isinstance(max_error, Mapping) or np.ndim(max_error) != 0:
        raise ValueError(
            f"max_error must be one number in (0, 1) unless by_class=True; got {max_error!r}"
        )
    else:
        eps = np.array([check_unit_interval(max_error, "max_error")])  # type: ignore[arg-type]

    cells = grid_cells(conf, g)
    if by_class:
        masks = pred[None, :] == np.arange(K)[:, None]
        n_acc, n_err = accepted_counts(cells, wrong, g.size, mask=masks)
        totals = masks.sum(axis=1)
        d_each = d / K
    else:
        a, e = accepted_counts(cells, wrong, g.size)
        n_acc, n_err = a[None, :], e[None, :]
        totals = np.array([n])
        d_each = d
    if rule == "ltt":
        idx, pv = ltt_select(n_acc, n_err, eps, d_each, method=method, min_accepted=min_accepted)
    else:
        idx = crc_select(n_err, totals, float(eps[0]))
        pv = np.full(n_acc.shape, np.nan)
    curves = [
        RiskCurve(
            grid=g,
            n_acc=n_acc[i],
            n_err=n_err[i],
            n_total=int(totals[i]),
            pvalues=pv[i],
            delta=float(d_each),
        )
        for i in range(n_acc.shape[0])
    ]
    if np.all(idx < 0):
        raise CertificationError(
            *_refusal(curves, eps, d_each, rule, n, names if by_class else None)
        )
    reports = []
    thresholds = []
    for i, (j, c) in enumerate(zip(idx.tolist(), curves, strict=True)):
        e_i = float(eps[i])
        if j < 0:
            needed = _needed_for_curve(c, e_i, d_each, n)
            thresholds.append(math.inf)
            reports.append(
                ClassReport(
                    threshold=math.inf,
                    n=c.n_total,
                    n_accepted=0,
                    n_errors=0,
                    coverage=0.0,
                    coverage_ci=(0.0, 0.0),
                    error=None,
                    error_upper=None,
                    pvalue=None,
                    n_needed=needed[0],
                    n_needed_hoeffding=calibration_size_needed(needed[2], needed[3], e_i, d_each)[1]
                    if needed[0] is not None
                    else None,
                )
            )
            continue
        na, ne = int(c.n_acc[j]), int(c.n_err[j])
        lo, hi = clopper_pearson_interval(na, c.n_total, ci_level) if c.n_total else (0.0, 0.0)
        exact, hoeff = (
            calibration_size_needed(ne / na, na / n, e_i, d_each) if rule == "ltt" else (None, None)
        )
        thresholds.append(float(g[j]))
        reports.append(
            ClassReport(
                threshold=float(g[j]),
                n=c.n_total,
                n_accepted=na,
                n_errors=ne,
                coverage=na / max(c.n_total, 1),
                coverage_ci=(float(lo), float(hi)),
                error=ne / na if na else None,
                error_upper=float(clopper_pearson_upper(ne, na, d_each)),
                pvalue=None if rule == "crc" else float(c.pvalues[j]),
                n_needed=exact,
                n_needed_hoeffding=hoeff,
            )
        )
    if by_class and any(math.isinf(t) for t in thresholds):
        bad = [names[i] for i, t in enumerate(thresholds) if math.isinf(t)]
        warnings.warn(
            f"no threshold certified for predicted classes {bad}: they are never auto-labeled",
            stacklevel=2,
        )
    overall_acc = int(sum(r.n_accepted for r in reports))
    overall_err = int(sum(r.n_errors for r in reports))
    lo, hi = clopper_pearson_interval(overall_acc, n, ci_level)
    return AutoLabelPolicy(
        classes=names,
        thresholds=tuple(thresholds),
        max_error=tuple(float(x) for x in eps),
        delta=d,
        rule=rule,  # type: ignore[arg-type]
        method=method,  # type: ignore[arg-type]
        by_class=bool(by_class),
        n_calibration=n,
        n_accepted=overall_acc,
        n_errors=overall_err,
        coverage=overall_acc / n,
        coverage_ci=(float(lo), float(hi)),
        ci_level=float(ci_level),
        per_class=tuple(reports) if by_class else (),
        report=reports[0] if not by_class else None,
        curve=(g, curves[0].n_acc, curves[0].n_err) if (rule == "ltt" and not by_class) else None,
        min_accepted=min_accepted,
        grid_size=int(g.size),
        curves=tuple(curves),
    )


def _needed_for_curve(
    c: RiskCurve, eps: float, delta: float, n_total_all: int
) -> tuple[float | None, int, float, float]:
    """(labelled items needed, grid index, its error rate, its coverage) at the most promising
    threshold: the one that minimises ``labels_needed(rate) / coverage``.

    Thresholds with at least 20 accepted items are preferred (a rate from a handful of items is
    noise); when none of them has a rate below ``eps``, any non-empty threshold is used. ``None``
    when every non-empty threshold errs at a rate ``>= eps`` (the index is then the lowest rate).
    """
    nonempty = c.n_acc > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(nonempty, c.n_err / np.maximum(c.n_acc, 1), 1.0)
    cov = c.n_acc / max(n_total_all, 1)
    supported = c.n_acc >= min(20, max(int(c.n_acc.max()), 1))
    # with enough data the sequence starts where eps / 2 would certify (default_min_accepted)
    m_half = float(labels_needed(eps / 2.0, eps, delta))
    for pool in (supported & nonempty, nonempty):
        if not np.any(pool & (rate < eps)):
            continue
        cand = pool & (rate < eps)
        uniq, inv = np.unique(rate[cand], return_inverse=True)
        need = np.full(rate.shape, np.inf)
        need[cand] = np.maximum(labels_needed(uniq, eps, delta), m_half)[inv]
        with np.errstate(divide="ignore", invalid="ignore"):
            total = np.where(pool & (cov > 0), need / np.maximum(cov, 1e-300), np.inf)
        j = int(np.argmin(total))
        if np.isfinite(total[j]):
            return float(math.ceil(total[j])), j, float(rate[j]), float(cov[j])
    j = int(np.argmin(np.where(nonempty, rate, np.inf))) if nonempty.any() else 0
    return None, j, float(rate[j]), float(cov[j])


def _refusal(
    curves: list[RiskCurve],
    eps: NDArray[np.float64],
    delta: float,
    rule: str,
    n: int,
    names: Sequence[str] | None,
) -> tuple[str, float | None]:
    if rule == "crc":
        need = math.ceil(1.0 / float(eps[0]) - 1.0)
        msg = (
            f"no threshold satisfies conformal risk control at max_error={float(eps[0]):g} with "
            f"{n} calibration items: (errors + 1) / (n + 1) exceeds it even at the highest "
            f"threshold; at least {need} items are needed (more if the most confident items err)"
        )
        return msg, float(need)
    best: tuple[float, str] | None = None
    parts = []
    for i, c in enumerate(curves):
        e_i = float(eps[i])
        needed, j, r, q = _needed_for_curve(c, e_i, delta, n)
        who = "" if names is None else f" for class {names[i]!r}"
        if needed is None:
            parts.append(
                f"at every threshold{who} the calibration error rate among accepted items is "
                f">= {e_i:g} (lowest: {int(c.n_err[j])}/{int(c.n_acc[j])} at confidence >= "
                f"{c.grid[j]:.6g})"
            )
            continue
        parts.append(
            f"best threshold{who} {c.grid[j]:.6g} accepts {int(c.n_acc[j])} items with "
            f"{int(c.n_err[j])} errors (rate {r:.4g}, coverage {q:.3g})"
        )
        if best is None or needed < best[0]:
            best = (needed, who)
    head = (
        f"no threshold certifies error <= {', '.join(f'{e:g}' for e in np.unique(eps))} among "
        f"accepted items with probability {1 - delta:.4g} from {n} calibration items: "
        + "; ".join(parts)
    )
    if best is None:
        return (
            head + ". No amount of data certifies this; raise --max-error or improve the model",
            None,
        )
    return (
        head + f". About {int(best[0])} labelled calibration items (at these error rates and "
        f"coverages) would be needed{best[1]}",
        best[0],
    )
