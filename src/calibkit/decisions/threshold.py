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

The core (:func:`accepted_counts`, :func:`fixed_sequence`, :func:`ltt_select`, :func:`crc_select`,
in :mod:`calibkit.decisions.selection` and re-exported here) works on count arrays with any
leading batch shape, so thousands of calibration splits are checked in one vectorised call. The
risk curve is in :mod:`calibkit.decisions.curve`, the refusal message (labelled items needed) in
:mod:`calibkit.decisions.refusal`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.decisions.curve import RiskCurve, risk_curve
from calibkit.decisions.refusal import CertificationError, _needed_for_curve, _refusal
from calibkit.decisions.risk import (
    PVALUE_METHODS,
    calibration_size_needed,
    check_unit_interval,
    clopper_pearson_interval,
    clopper_pearson_upper,
)
from calibkit.decisions.selection import (
    _check_grid,
    accepted_counts,
    batch_select,
    crc_select,
    default_min_accepted,
    fixed_sequence,
    grid_cells,
    ltt_select,
    threshold_grid,
)
from calibkit.scores import Scores

if TYPE_CHECKING:
    from calibkit.decisions.policy import AutoLabelPolicy, ClassReport

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
    from calibkit.decisions.policy import AutoLabelPolicy

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
    n = int(conf.size)
    eps = _check_max_error(max_error, rule, by_class, names)
    d_each = d / K if by_class else d
    curves, idx = _select(
        conf, pred, pred != y, g, eps, d_each, rule, method, by_class, min_accepted
    )
    if np.all(idx < 0):
        raise CertificationError(
            *_refusal(curves, eps, d_each, rule, n, names if by_class else None)
        )
    reports = [
        _class_report(c, j, float(eps[i]), d_each, rule, n, ci_level)
        for i, (j, c) in enumerate(zip(idx.tolist(), curves, strict=True))
    ]
    thresholds = [r.threshold for r in reports]
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


def _check_max_error(
    max_error: float | Sequence[float] | Mapping[str, float],
    rule: str,
    by_class: bool,
    names: Sequence[str],
) -> NDArray[np.float64]:
    """(1,) or, with ``by_class``, (K,) validated ``epsilon`` values."""
    if rule == "crc":
        if by_class:
            raise ValueError("by_class is available with rule='ltt' only")
        if isinstance(max_error, Mapping) or np.ndim(max_error) != 0:
            raise ValueError("max_error must be one number with rule='crc'")
    if by_class:
        return _epsilons(max_error, names)
    if isinstance(max_error, Mapping) or np.ndim(max_error) != 0:
        raise ValueError(
            f"max_error must be one number in (0, 1) unless by_class=True; got {max_error!r}"
        )
    return np.array([check_unit_interval(max_error, "max_error")])  # type: ignore[arg-type]


def _select(
    conf: NDArray[np.float64],
    pred: NDArray[np.int64],
    wrong: NDArray[np.bool_],
    g: NDArray[np.float64],
    eps: NDArray[np.float64],
    d_each: float,
    rule: str,
    method: str,
    by_class: bool,
    min_accepted: int | None,
) -> tuple[list[RiskCurve], NDArray[np.int64]]:
    """One :class:`RiskCurve` per curve (per class with ``by_class``) and its selected index."""
    cells = grid_cells(conf, g)
    if by_class:
        K = eps.size
        masks = pred[None, :] == np.arange(K)[:, None]
        n_acc, n_err = accepted_counts(cells, wrong, g.size, mask=masks)
        totals = masks.sum(axis=1)
    else:
        a, e = accepted_counts(cells, wrong, g.size)
        n_acc, n_err = a[None, :], e[None, :]
        totals = np.array([int(conf.size)])
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
    return curves, idx


def _class_report(
    c: RiskCurve, j: int, e_i: float, d_each: float, rule: str, n: int, ci_level: float
) -> ClassReport:
    """The calibration figures of one curve at its selected grid index ``j`` (-1: none)."""
    from calibkit.decisions.policy import ClassReport

    if j < 0:
        needed = _needed_for_curve(c, e_i, d_each, n)
        return ClassReport(
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
    na, ne = int(c.n_acc[j]), int(c.n_err[j])
    lo, hi = clopper_pearson_interval(na, c.n_total, ci_level) if c.n_total else (0.0, 0.0)
    exact, hoeff = (
        calibration_size_needed(ne / na, na / n, e_i, d_each) if rule == "ltt" else (None, None)
    )
    return ClassReport(
        threshold=float(c.grid[j]),
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
