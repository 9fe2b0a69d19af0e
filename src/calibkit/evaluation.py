"""Evaluate :class:`~calibkit.Scores` as ``calibkit evaluate`` and ``calibkit fit`` do.

:func:`evaluate_scores` is the Python API of ``calibkit evaluate`` (the view, the registered
metrics with optional bootstrap intervals, the reliability rows); :func:`before_after` that of
the before/after tables of ``calibkit fit``. Metrics come from the registry
(:func:`calibkit.metrics.compute_metrics`), so the numbers are those of the metric functions on
the same arrays.

Which arrays: a probability file's own numbers when given (``probs``; ``Scores`` keeps clipped
log-probabilities), else the Scores' logits, whose NLL is then exact (``from_logits=True``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit._json import json_value
from calibkit.scores import Scores

__all__ = [
    "Evaluation",
    "before_after",
    "calibrated_view",
    "evaluate_scores",
    "evaluation_inputs",
    "positive_index",
    "reliability_rows",
]


def positive_index(classes: Sequence[str], positive: str | None) -> int | None:
    """Index of the class ``positive`` of a 2-class problem (``None`` -> ``None``).

    Raises ``ValueError`` for more than two classes or an unknown class name.
    """
    if positive is None:
        return None
    if len(classes) != 2:
        raise ValueError(f"--positive needs a 2-class file; this one has {len(classes)} classes")
    if positive not in classes:
        raise ValueError(f"--positive {positive!r} is not a class; classes are {tuple(classes)}")
    return list(classes).index(positive)


def evaluation_inputs(
    scores: Scores,
    probs: NDArray[np.float64] | None = None,
    positive: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64] | None]:
    """``(probs, labels, logits)`` for :func:`calibkit.metrics.compute_metrics`.

    ``probs``: the ``(n, K)`` probabilities as given (a probability file's own numbers, a
    probability calibrator's ``predict_proba``); ``None`` means the scores are genuine logits,
    then ``logits`` is returned too so NLL is computed exactly (``from_logits=True``). With
    ``positive`` (a class index of a 2-class problem): the 1-D ``P(y = positive)`` view against
    ``y == positive`` (paper 000's low/high-probability view) and the binary logit
    ``z_positive - z_other``.
    """
    y = scores.require_labels()
    logits: NDArray[np.float64] | None = None
    if probs is None:
        probs = scores.probs
        logits = np.asarray(scores.logits, dtype=np.float64)
    if positive is None:
        return probs, y, logits
    other = 1 - positive
    z = None if logits is None else logits[:, positive] - logits[:, other]
    return probs[:, positive], (y == positive).astype(np.int64), z


def reliability_rows(
    probs: NDArray[np.float64], labels: NDArray[np.int64], *, n_bins: int, binning: str
) -> list[dict[str, Any]]:
    """Per-bin rows of :func:`calibkit.metrics.reliability_table` as JSON-ready dicts."""
    from calibkit.metrics import reliability_table

    tab = reliability_table(probs, labels, n_bins=n_bins, binning=binning)
    return [{k: json_value(v) for k, v in row.items()} for row in tab.rows()]


@dataclass(frozen=True)
class Evaluation:
    """What ``calibkit evaluate`` reports about one set of labelled scores.

    Attributes
    ----------
    n : items; classes : class names
    view : ``"top-label"`` or ``"P(y=<class>)"``
    n_bins, binning : bins of the binned metrics and of the reliability rows
    metrics : metric name -> value (``nan``: undefined on this input)
    intervals : metric name -> ``(low, high)`` bootstrap interval; empty without bootstrap
    alpha : the intervals' level is ``1 - alpha``
    reliability : per-bin rows (:func:`reliability_rows`)
    probs, labels : the evaluated ``(n, K)`` or ``(n,)`` probabilities and ``(n,)`` labels
    """

    n: int
    classes: tuple[str, ...]
    view: str
    n_bins: int
    binning: str
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    alpha: float
    reliability: list[dict[str, Any]]
    probs: NDArray[np.float64] = field(repr=False)
    labels: NDArray[np.int64] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays; undefined values are ``None``)."""
        return {
            "n": self.n,
            "classes": list(self.classes),
            "view": self.view,
            "n_bins": self.n_bins,
            "binning": self.binning,
            "metrics": {k: json_value(v) for k, v in self.metrics.items()},
            "intervals": {
                k: [json_value(lo), json_value(hi)] for k, (lo, hi) in self.intervals.items()
            }
            or None,
            "alpha": self.alpha if self.intervals else None,
            "reliability_table": self.reliability,
        }


def evaluate_scores(
    scores: Scores,
    *,
    probs: NDArray[np.float64] | None = None,
    positive: str | None = None,
    names: str | Iterable[str] | None = None,
    n_bins: int = 15,
    binning: str = "uniform",
    bootstrap: int = 0,
    alpha: float = 0.05,
    seed: int = 0,
    progress: Callable[[list[str]], Iterable[str]] | None = None,
) -> Evaluation:
    """The metrics, intervals and reliability rows of labelled ``scores``.

    Parameters
    ----------
    scores : labelled Scores
    probs : (n, K) probabilities of the same rows, optional
        Read instead of ``scores.probs`` (a probability file's own numbers,
        :func:`calibkit.io.table_probabilities`); without them NLL uses the logits exactly.
    positive : class name, optional
        2-class scores: evaluate ``P(y = positive)`` against ``y == positive``.
    names : metric names or aliases (default: the registry's default metrics)
    n_bins, binning : bins of the binned metrics (ACE and conf-ECE keep their own binning)
    bootstrap : resamples of the percentile-bootstrap intervals (0: none), same ``seed`` for
        every metric
    progress : wraps the iteration over the bootstrapped metrics (e.g. a progress bar)
    """
    from calibkit.metrics import bootstrap_metrics, compute_metrics

    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ValueError(f"bootstrap must be an int >= 0; got {bootstrap!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    pos = positive_index(scores.classes, positive)
    p, y, z = evaluation_inputs(scores, probs, pos)
    kw: dict[str, Any] = {"names": names, "n_bins": n_bins, "binning": binning, "logits": z}
    values = compute_metrics(p, y, **kw)
    intervals = (
        bootstrap_metrics(p, y, n_boot=bootstrap, alpha=alpha, seed=seed, progress=progress, **kw)
        if bootstrap > 0
        else {}
    )
    return Evaluation(
        n=len(scores),
        classes=tuple(scores.classes),
        view="top-label" if pos is None else f"P(y={scores.classes[pos]})",
        n_bins=n_bins,
        binning=binning,
        metrics=values,
        intervals=intervals,
        alpha=alpha,
        reliability=reliability_rows(p, y, n_bins=n_bins, binning=binning),
        probs=p,
        labels=y,
    )


def calibrated_view(cal: Any, scores: Scores) -> tuple[Scores, NDArray[np.float64] | None]:
    """``(cal.calibrate(scores), probabilities as the calibrator returns them)``.

    The second item is ``cal.predict_proba(...)`` on the same input, whose zeros (isotonic,
    histogram) ``Scores`` would clip to ``1e-12``; ``None`` for a calibrator with
    ``predict_logits``, whose calibrated log-probabilities are exact in the returned Scores.
    """
    after = cal.calibrate(scores)
    if hasattr(cal, "predict_logits"):
        return after, None
    return after, np.asarray(cal.predict_proba(cal._scores_input(scores)), dtype=np.float64)


def before_after(
    cal: Any,
    scores: Scores,
    probs: NDArray[np.float64] | None = None,
    *,
    names: str | Iterable[str] | None = None,
    n_bins: int = 15,
    binning: str = "uniform",
) -> tuple[Scores, dict[str, float], dict[str, float]]:
    """``(calibrated scores, metrics before, metrics after)`` of a fitted calibrator on labelled
    ``scores`` (``probs``: the file's own probabilities, as in :func:`evaluate_scores`)."""
    from calibkit.metrics import compute_metrics

    after_scores, after_probs = calibrated_view(cal, scores)
    out = []
    for sc, pr in ((scores, probs), (after_scores, after_probs)):
        p, y, z = evaluation_inputs(sc, pr)
        out.append(compute_metrics(p, y, names=names, n_bins=n_bins, binning=binning, logits=z))
    return after_scores, out[0], out[1]
