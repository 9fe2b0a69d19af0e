"""Compute registered metrics: :func:`compute_metrics` and :func:`bootstrap_metrics`.

Both read the registry of :mod:`calibkit.metrics.registry`, so the CLI, the reports and the
Python API compute every metric by the same call on the same arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from calibkit.metrics.registry import METRICS, Metric, resolve_metric_names

if TYPE_CHECKING:
    from calibkit.scores import Scores

__all__ = ["bootstrap_metrics", "compute_metrics"]


def _inputs(
    probs: ArrayLike | Scores,
    labels: ArrayLike | None,
    logits: ArrayLike | None,
) -> tuple[ArrayLike, ArrayLike | None, ArrayLike | None]:
    from calibkit.scores import Scores

    if isinstance(probs, Scores):
        scores = probs
        if labels is None:
            labels = scores.labels
        if logits is None:
            logits = np.asarray(scores.logits, dtype=np.float64)
        return scores.probs, labels, logits
    return probs, labels, logits


def _evaluators(
    keys: Sequence[str],
    probs: ArrayLike,
    labels: ArrayLike | None,
    logits: ArrayLike | None,
    n_bins: int,
    binning: str,
) -> dict[str, tuple[Callable[..., float], ArrayLike]]:
    """Metric key -> ``(fn(scores, labels) -> float, the scores it reads)``."""
    out: dict[str, tuple[Callable[..., float], ArrayLike]] = {}
    for key in keys:
        m = METRICS[key]
        if m.needs_labels and labels is None:
            raise ValueError(f"metric {key!r} needs labels; none were given")
        exact = m.prefers_logits and logits is not None
        out[key] = (
            _bound(m, n_bins=n_bins, binning=binning, from_logits=exact),
            logits if exact and logits is not None else probs,
        )
    return out


def _bound(m: Metric, **kw: Any) -> Callable[..., float]:
    def fn(p: ArrayLike, y: ArrayLike | None = None) -> float:
        return m(p, y, **kw)

    return fn


def compute_metrics(
    probs: ArrayLike | Scores,
    labels: ArrayLike | None = None,
    *,
    names: str | Iterable[str] | None = None,
    n_bins: int = 15,
    binning: str = "uniform",
    logits: ArrayLike | None = None,
) -> dict[str, float]:
    """Registered metrics of one set of scores: ``{name: value}`` in registry order.

    Each value is the registered function called on the same arrays, so the CLI, the reports
    and the Python API agree exactly.

    Parameters
    ----------
    probs : (n, K) or (n,) probabilities, or :class:`~calibkit.Scores`
        Scores give their probabilities, labels (unless ``labels`` is given) and logits.
    labels : (n,) int, optional
        Needed by every metric with ``needs_labels``.
    names : str or iterable of str, optional
        Metric names or aliases (see :func:`resolve_metric_names`); default: the default ones.
    n_bins, binning
        Bins of the binned metrics that take them (ACE and conf-ECE use ``n_bins`` with their
        own binning).
    logits : (n, K) or (n,) logits of the same scores, optional
        Metrics with ``prefers_logits`` (NLL) are computed from them exactly
        (``from_logits=True``); the others read ``probs``.

    Returns
    -------
    dict of metric name -> float (``nan`` where a metric is undefined on the input)
    """
    p, y, z = _inputs(probs, labels, logits)
    keys = resolve_metric_names(names)
    evs = _evaluators(keys, p, y, z, n_bins, binning)
    return {k: fn(x, y) for k, (fn, x) in evs.items()}


def bootstrap_metrics(
    probs: ArrayLike | Scores,
    labels: ArrayLike | None = None,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    names: str | Iterable[str] | None = None,
    n_bins: int = 15,
    binning: str = "uniform",
    logits: ArrayLike | None = None,
    progress: Callable[[list[str]], Iterable[str]] | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap ``1 - alpha`` intervals of the metrics of :func:`compute_metrics`.

    Every metric gets the same ``seed``, hence the same resamples of the ``n`` rows
    (:func:`calibkit.metrics.bootstrap_ci`); resamples on which a metric is undefined are
    dropped. Labels are required (rows are resampled with their labels).

    Parameters
    ----------
    n_boot : number of resamples (>= 1)
    progress : callable, optional
        Wraps the iteration over the metric names (e.g. a progress bar).

    Returns
    -------
    dict of metric name -> (low, high)
    """
    from calibkit.metrics.bootstrap import bootstrap_ci

    p, y, z = _inputs(probs, labels, logits)
    if y is None:
        raise ValueError("bootstrap intervals need labels")
    keys = resolve_metric_names(names)
    evs = _evaluators(keys, p, y, z, n_bins, binning)
    order: Iterable[str] = progress(list(evs)) if progress is not None else list(evs)
    out: dict[str, tuple[float, float]] = {}
    for k in order:
        fn, x = evs[k]
        ci = bootstrap_ci(fn, x, y, n_boot=n_boot, alpha=alpha, seed=seed)
        out[k] = (float(ci.low), float(ci.high))
    return out
