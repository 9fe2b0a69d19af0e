"""Choosing an estimator by what it costs: ``--confidence auto`` and the P(correct) view.

:func:`correctness` turns any estimator's Scores into ``(confidence of the model's answer,
whether it was right)``: the right/wrong Scores give ``probs[:, 1]`` and their labels; per-class
Scores give the top-label confidence and ``prediction == label``.

:func:`evaluate` measures an estimator on labelled Scores: AUROC of the raw confidence for
correctness, and the ECE of P(correct) (10 equal-width bins) raw and after calibration, where the
calibration is cross-fitted (a :class:`~calibkit.calibrators.PlattScaling` on the logit of the
confidence, fitted on the other folds, so the calibrated ECE is a held-out number).

:func:`choose_estimator` implements ``auto``: log-probabilities when the backend returns them
(``logits``, probed on a few items); otherwise every text-only estimator is run on the labelled
calibration items and the cheapest (fewest model calls per item, then fewest generated tokens)
meeting the target wins (calibrated ECE <= target, or AUROC >= target); if none meets it, the one
best on the metric, with a warning in the report. The default target is AUROC >= 0.6: after
calibration even a constant confidence reaches a low ECE (it becomes the base rate), so ECE alone
would pick an estimator that cannot tell right answers from wrong ones.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.scores import Scores
from calibkit.scoring.classify import ItemsFailed
from calibkit.scoring.confidence.base import BINARY_CLASSES

__all__ = [
    "CONFIDENCE_CHOICES",
    "Choice",
    "choose_estimator",
    "correctness",
    "evaluate",
    "pcorrect_ece",
    "score_confidence",
]

#: values of ``calibkit score --confidence``
CONFIDENCE_CHOICES = ("logits", "ptrue", "verbalized", "consistency", "auto")
TEXT_ONLY = ("verbalized", "consistency")


def correctness(scores: Scores) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """``(confidence (n,), correct (n,))`` of labelled Scores of any estimator."""
    y = scores.require_labels()
    if scores.classes == BINARY_CLASSES:
        return scores.probs[:, 1].astype(np.float64), y == 1
    p = scores.probs
    pred = scores.prediction
    return p[np.arange(len(scores)), pred], pred == y


def pcorrect_ece(conf: ArrayLike, correct: ArrayLike, n_bins: int = 10) -> float:
    """ECE of P(correct): ``sum_m |B_m|/n |mean correct - mean conf|`` over ``n_bins`` equal-width
    bins of ``conf`` in [0, 1] (the last bin closed). ``conf`` are probabilities ``(n,)``."""
    c = np.asarray(conf, dtype=np.float64)
    r = np.asarray(correct, dtype=np.float64)
    if c.ndim != 1 or c.shape != r.shape or c.size == 0:
        raise ValueError(f"conf {c.shape} and correct {r.shape} must be the same non-empty 1-D")
    if not np.all((c >= 0) & (c <= 1)):
        raise ValueError("conf must be probabilities in [0, 1]")
    b = np.minimum((c * n_bins).astype(np.int64), n_bins - 1)
    total = 0.0
    for m in np.unique(b):
        sel = b == m
        total += sel.sum() / c.size * abs(r[sel].mean() - c[sel].mean())
    return float(total)


def evaluate(scores: Scores, *, folds: int = 2, seed: int = 0) -> dict[str, float]:
    """``n``, ``accuracy``, ``auroc`` (raw), ``ece_raw`` and ``ece_calibrated`` (cross-fitted
    Platt on P(correct), ``folds`` seeded folds) of labelled Scores."""
    from calibkit.calibrators import PlattScaling
    from calibkit.metrics import binary_auroc

    conf, correct = correctness(scores)
    n = conf.size
    out = {
        "n": float(n),
        "accuracy": float(correct.mean()),
        "auroc": binary_auroc(conf, correct),
        "ece_raw": pcorrect_ece(conf, correct),
    }
    rng = np.random.default_rng(seed)
    fold = rng.permutation(n) % folds
    cal = np.full(n, np.nan)
    for f in range(folds):
        tr, te = fold != f, fold == f
        if not te.any():
            continue
        if correct[tr].all() or not correct[tr].any():  # one outcome only: its frequency
            cal[te] = float(correct[tr].mean()) if tr.any() else 0.5
            continue
        train = Scores.from_probs(np.clip(conf[tr], 1e-6, 1 - 1e-6), labels=correct[tr])
        test = Scores.from_probs(np.clip(conf[te], 1e-6, 1 - 1e-6))
        cal[te] = PlattScaling().fit_scores(train).calibrate(test).probs[:, 1]
    out["ece_calibrated"] = pcorrect_ece(cal, correct)
    return out


@dataclass
class Choice:
    """What ``auto`` chose and why.

    Attributes
    ----------
    name : str
        The chosen estimator.
    reason : str
        One line.
    table : dict of name -> dict
        Per estimator tried: :func:`evaluate`'s numbers and ``calls_per_item``,
        ``output_tokens_per_item`` (or ``error``).
    """

    name: str
    reason: str
    table: dict[str, dict[str, Any]] = field(default_factory=dict)


def _probe_logprobs(
    backend: Any, classes: Sequence[str], texts: Sequence[str], **kw: Any
) -> tuple[bool, str]:
    """Whether ``backend`` returns log-probabilities (``logits`` on the first 3 items), and the
    first failure's reason when it does not."""
    from calibkit.scoring.confidence.logits import LogitsConfidence

    try:
        LogitsConfidence(backend, classes, mode="next_token", **kw).score(
            list(texts)[:3], on_error="skip"
        )
    except ItemsFailed as e:
        first = " ".join(str(e.failures[0]["reason"] if e.failures else e).split())
        return False, first if len(first) <= 160 else first[:157] + "..."
    return True, ""


def choose_estimator(
    backend: Any,
    classes: Sequence[str],
    texts: Sequence[str],
    labels: ArrayLike | Sequence[str],
    *,
    metric: Literal["ece", "auroc"] = "auroc",
    target: float = 0.6,
    candidates: Sequence[str] = TEXT_ONLY,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    **common: Any,
) -> Choice:
    """The estimator ``auto`` uses (rules in the module docstring).

    Parameters
    ----------
    texts, labels : the labelled calibration items
    metric, target : calibrated ECE <= target, or raw AUROC >= target
    candidates : text-only estimators tried when the backend gives no log-probabilities
    options : per-estimator constructor options (e.g. ``{"consistency": {"n": 5}}``)
    **common : passed to every estimator (template, cache, batch_size, aliases, progress)
    """
    from calibkit.scoring.confidence import ESTIMATORS

    if metric not in ("ece", "auroc"):
        raise ValueError(f"metric must be 'ece' or 'auroc', got {metric!r}")
    has_lp, why = _probe_logprobs(backend, classes, texts, **common)
    if has_lp:
        return Choice("logits", f"backend {backend.name} returns log-probabilities")
    no_lp = f"no log-probabilities from backend {backend.name} ({why})"
    options = options or {}
    table: dict[str, dict[str, Any]] = {}
    for name in candidates:
        if name not in ESTIMATORS:
            raise ValueError(f"unknown confidence estimator {name!r}")
        try:
            s = ESTIMATORS[name](backend, classes, **common, **options.get(name, {})).score(
                texts, labels, on_error="skip"
            )
        except (ItemsFailed, ValueError) as e:
            table[name] = {"error": str(e)}
            continue
        row: dict[str, Any] = evaluate(s)
        cost = s.meta["cost"]["per_item"]
        row["calls_per_item"] = cost["model_calls"]
        row["output_tokens_per_item"] = cost["output_tokens"]
        row["n_failed"] = len(s.meta.get("failures", []))
        table[name] = row
    ok = {k: v for k, v in table.items() if "error" not in v}
    if not ok:
        raise ValueError(
            "--confidence auto: the backend returns no log-probabilities and no text-only "
            f"estimator worked: {table}"
        )

    def value(r: dict[str, Any]) -> float:
        return float(r["ece_calibrated"] if metric == "ece" else r["auroc"])

    def meets(r: dict[str, Any]) -> bool:
        v = value(r)
        return bool(v <= target) if metric == "ece" else bool(v >= target)

    by_cost = sorted(ok, key=lambda k: (ok[k]["calls_per_item"], ok[k]["output_tokens_per_item"]))
    for k in by_cost:
        if meets(ok[k]):
            return Choice(
                k,
                f"{no_lp}; {k} is the cheapest text-only estimator with {metric} "
                f"{value(ok[k]):.3f} meeting {target}",
                table,
            )
    best = (min if metric == "ece" else max)(ok, key=lambda k: value(ok[k]))
    msg = (
        f"{no_lp}; no estimator met {metric} target {target} (text-only); using the best, {best} "
        f"({value(ok[best]):.3f})"
    )
    warnings.warn(msg, stacklevel=2)
    return Choice(best, msg, table)


def score_confidence(
    method: str,
    backend: Any,
    classes: Sequence[str],
    texts: Sequence[str],
    labels: ArrayLike | Sequence[str] | None = None,
    ids: ArrayLike | None = None,
    *,
    on_error: Literal["fail", "skip"] = "fail",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    auto_metric: Literal["ece", "auroc"] = "auroc",
    auto_target: float = 0.6,
    last_run: dict[str, int] | None = None,
    **common: Any,
) -> Scores:
    """What ``calibkit score --confidence METHOD`` runs for a classification task.

    ``auto`` chooses with :func:`choose_estimator` on the labelled items (all of ``texts`` with
    ``labels``; required) and records the choice in ``meta["confidence_auto"]``. ``last_run``
    receives the estimator's item counts (n_items, n_cached, n_new, n_failed).
    """
    from calibkit.scoring.confidence import make_estimator

    if method not in CONFIDENCE_CHOICES:
        raise ValueError(f"--confidence must be one of {list(CONFIDENCE_CHOICES)}, got {method!r}")
    options = options or {}
    choice = None
    if method == "auto":
        if labels is None:
            raise ValueError("--confidence auto needs labelled items (a label column)")
        choice = choose_estimator(
            backend,
            classes,
            texts,
            labels,
            metric=auto_metric,
            target=auto_target,
            options=options,
            **common,
        )
        method = choice.name
    est = make_estimator(method, backend, list(classes), **common, **options.get(method, {}))
    try:
        s = est.score(texts, labels, ids, on_error=on_error)
    finally:
        if last_run is not None:
            last_run.update(est.last_run)
    if choice is None:
        return s
    meta = {
        **s.meta,
        "confidence_auto": {"chosen": choice.name, "reason": choice.reason, "table": choice.table},
    }
    return Scores(
        logits=s.logits, labels=s.labels, classes=s.classes, ids=s.ids, meta=meta,
        per_item=s.per_item,
    )  # fmt: skip
