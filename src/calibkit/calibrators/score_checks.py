"""Checks of the scores and labels alone (see :mod:`calibkit.calibrators.diagnostics`)."""

from __future__ import annotations

import math

import numpy as np

from calibkit.calibrators.findings import PRIOR_SHIFT_P, PRIOR_SHIFT_TV, Finding, _f
from calibkit.scores import Scores


def _one_sided(est: float, se: float, alpha: float) -> float:
    """Upper one-sided ``1 - alpha`` bound ``est + z_{1-alpha} se`` (``nan`` if ``se`` is)."""
    from scipy.stats import norm

    return est + float(norm.ppf(1.0 - alpha)) * se


def _check_inverted_ranking(scores: Scores, alpha: float) -> list[Finding]:
    from calibkit.metrics.ranking import auroc_ci

    if scores.labels is None:
        return []
    ci = auroc_ci(scores.probs, scores.labels, alpha=alpha)
    upper = _one_sided(ci.estimate, ci.se, alpha)
    if not math.isfinite(upper) or upper >= 0.5:
        return []
    level = round(100 * (1 - alpha))
    return [
        Finding(
            "inverted_ranking",
            "warning",
            f"Confidence ranks wrong answers above right ones: the AUROC of confidence for "
            f"correctness is {_f(ci.estimate)} (one-sided {level}% upper bound {_f(upper)}), "
            "below the 0.5 of a random score.",
            "Fix the source (prompt, answer-token mapping, label order) rather than calibrate; "
            "a calibrator can only hide this by flipping the scores.",
            {"auroc": ci.estimate, "se": ci.se, "upper_bound": upper, "alpha": alpha},
        )
    ]


def _class_aurocs(scores: Scores) -> list[tuple[str, float, float]]:
    """``(class, AUROC, DeLong se)`` of each class score for its one-vs-rest target; for two
    classes one entry, the margin ``z_1 - z_0`` for class 1 (classes with < 2 members skipped)."""
    from calibkit.metrics.ranking import binary_auroc_ci

    y = scores.require_labels()
    z = np.asarray(scores.logits, dtype=np.float64)
    if scores.n_classes == 2:
        pairs = [(scores.classes[1], z[:, 1] - z[:, 0], y == 1)]
    else:
        lp = scores.log_probs
        pairs = [(c, lp[:, k], y == k) for k, c in enumerate(scores.classes)]
    out = []
    for c, s, t in pairs:
        ci = binary_auroc_ci(s, t)
        if math.isfinite(ci.se):
            out.append((c, ci.estimate, ci.se))
    return out


def _check_discrimination(scores: Scores, alpha: float) -> list[Finding]:
    from scipy.stats import norm

    if scores.labels is None:
        return []
    rows = _class_aurocs(scores)
    if not rows:
        return []
    level = round(100 * (1 - alpha))
    inverted = [(c, a, se) for c, a, se in rows if _one_sided(a, se, alpha) < 0.5]
    what = "P(y = {c}) for y = {c}" if scores.n_classes == 2 else "P(y = {c}) one-vs-rest"
    if inverted:
        shown = "; ".join(
            f"{what.format(c=c)}: AUROC {_f(a)} (upper bound {_f(_one_sided(a, se, alpha))})"
            for c, a, se in inverted[:5]
        )
        return [
            Finding(
                "inverted_scores",
                "warning",
                f"The scores rank the classes the wrong way round: {shown}, below 0.5 at the "
                f"one-sided {level}% level. Any accuracy a calibrator gains here comes from "
                "flipping the scores.",
                "Check the label-to-answer mapping, the prompt and the class order before "
                "calibrating; then re-score.",
                {
                    "classes": [c for c, _, _ in inverted],
                    "auroc": [a for _, a, _ in inverted],
                    "se": [se for _, _, se in inverted],
                    "alpha": alpha,
                },
            )
        ]
    z = float(norm.ppf(1.0 - alpha / 2.0))
    if all(a - z * se <= 0.5 for _, a, se in rows):
        best = max(rows, key=lambda r: r[1])
        return [
            Finding(
                "no_signal",
                "warning",
                f"The scores do not separate the classes better than chance: every class's "
                f"AUROC interval contains 0.5 (best: {what.format(c=best[0])} AUROC "
                f"{_f(best[1])} +- {_f(z * best[2])}). Calibration can then only move the "
                "probabilities towards the label frequencies.",
                "Improve the scores (prompt, few-shot examples, a larger model) before "
                "calibrating; treat any calibration gain as a prior correction.",
                {
                    "classes": [c for c, _, _ in rows],
                    "auroc": [a for _, a, _ in rows],
                    "se": [se for _, _, se in rows],
                    "alpha": alpha,
                },
            )
        ]
    return []


def _check_ece_rows(n: int, epsilon: float, delta: float, which: str) -> list[Finding]:
    from calibkit.metrics.pac import pac_sample_size

    need = pac_sample_size(epsilon, delta)
    if n >= need:
        return []
    achieved = math.sqrt(math.log(4.0 / delta) / (2.0 * n))
    return [
        Finding(
            "few_rows_for_ece",
            "warning" if which == "calibration" else "info",
            f"The {which} data have {n:,} rows; paper 000's PAC bound needs {need:,} to know "
            f"the ECE within +-{epsilon:g} with probability {1 - delta:g} (with {n:,} rows: "
            f"+-{achieved:.3f}).",
            f"Read ECE differences smaller than {achieved:.3f} as noise, or collect at least "
            f"{need:,} labelled rows.",
            {
                "rows": n,
                "rows_needed": need,
                "epsilon": epsilon,
                "delta": delta,
                "epsilon_achieved": achieved,
                "data": which,
            },
        )
    ]


def _check_absent(fit_scores: Scores) -> list[Finding]:
    y = fit_scores.require_labels()
    counts = np.bincount(y, minlength=fit_scores.n_classes)
    absent = [fit_scores.classes[i] for i in np.flatnonzero(counts == 0)]
    if not absent:
        return []
    shown = ", ".join(absent[:10]) + (" ..." if len(absent) > 10 else "")
    return [
        Finding(
            "class_absent",
            "warning",
            f"{len(absent)} class(es) never occur among the {len(y):,} calibration labels "
            f"({shown}): calibrators learn nothing about them and push their probability "
            "towards zero.",
            "Add calibration examples of those classes (calibkit.selection can pick them), or "
            "use temperature scaling, which treats all classes alike.",
            {"absent": absent, "rows": len(y)},
        )
    ]


def _check_prior_shift(fit_scores: Scores, scores: Scores) -> list[Finding]:
    from scipy.stats import chi2_contingency

    k = scores.n_classes
    a = np.bincount(fit_scores.require_labels(), minlength=k).astype(np.float64)
    b = np.bincount(scores.require_labels(), minlength=k).astype(np.float64)
    keep = (a + b) > 0
    if keep.sum() < 2:
        return []
    table = np.stack([a[keep], b[keep]])
    stat, p_value, dof, _ = chi2_contingency(table, correction=False)
    tv = 0.5 * float(np.sum(np.abs(a / a.sum() - b / b.sum())))
    if not (p_value < PRIOR_SHIFT_P and tv > PRIOR_SHIFT_TV):
        return []
    j = int(np.argmax(np.abs(a / a.sum() - b / b.sum())))
    return [
        Finding(
            "prior_shift",
            "warning",
            f"The label frequencies differ between calibration and evaluation data: total "
            f"variation {tv:.3f} (> {PRIOR_SHIFT_TV}), chi-square p = {p_value:.2g} "
            f"(< {PRIOR_SHIFT_P}); e.g. {scores.classes[j]!r} is {a[j] / a.sum():.1%} of one "
            f"and {b[j] / b.sum():.1%} of the other, so a calibrator's class bias is fitted "
            "to the wrong prior.",
            "Calibrate on data drawn like the data you apply it to, or re-weight the "
            "calibration rows to the target prior (sample_weight).",
            {
                "total_variation": tv,
                "chi2": float(stat),
                "dof": int(dof),
                "p_value": float(p_value),
                "fit_prior": (a / a.sum()).tolist(),
                "eval_prior": (b / b.sum()).tolist(),
            },
        )
    ]
