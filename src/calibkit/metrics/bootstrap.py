"""Percentile-bootstrap confidence intervals for any metric."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["BootstrapCI", "bootstrap_ci"]


class BootstrapCI(NamedTuple):
    """Point estimate on the full sample and the ``1 - alpha`` percentile interval."""

    estimate: float
    low: float
    high: float


def bootstrap_ci(
    metric_fn: Callable[..., float],
    probs: ArrayLike,
    labels: ArrayLike,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | np.random.Generator = 0,
    progress: bool = False,
    **kw: Any,
) -> BootstrapCI:
    """Percentile bootstrap CI of ``metric_fn(probs, labels, **kw)``.

    Draws ``n_boot`` resamples of the ``n`` rows with replacement, evaluates the metric on each
    and returns the ``alpha/2`` and ``1 - alpha/2`` quantiles of the resampled values (linear
    interpolation). Resamples on which the metric is not finite are dropped.

    Parameters
    ----------
    metric_fn : callable ``(probs, labels, **kw) -> float``, e.g. :func:`calibkit.metrics.ece`
    probs : (n,) or (n, K) scores, passed to ``metric_fn`` as given (probabilities or logits,
        whatever ``metric_fn`` expects; pass ``from_logits=True`` through ``kw``)
    labels : (n,) labels
    n_boot : number of resamples (>= 1)
    alpha : 1 - coverage, in (0, 1)
    seed : int or ``numpy.random.Generator``; the only source of randomness
    progress : show a tqdm progress bar

    Returns
    -------
    BootstrapCI(estimate, low, high)
    """
    p = np.asarray(probs)
    y = np.asarray(labels)
    if p.ndim not in (1, 2) or p.shape[0] == 0:
        raise ValueError(f"probs must be a non-empty (n,) or (n, K) array; got shape {p.shape}")
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(f"labels has shape {y.shape} but probs has {p.shape[0]} rows")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int; got {n_boot!r}")
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    estimate = float(metric_fn(p, y, **kw))
    n = p.shape[0]
    it: Any = range(int(n_boot))
    if progress:
        try:
            from tqdm.auto import tqdm
        except ImportError as e:  # pragma: no cover - tqdm ships with the llm extra
            raise ImportError("progress=True needs tqdm: pip install 'calibkit[llm]'") from e
        it = tqdm(it, desc="bootstrap", unit="resample")
    vals = np.empty(int(n_boot), dtype=np.float64)
    for b in it:
        idx = rng.integers(0, n, size=n)
        vals[b] = float(metric_fn(p[idx], y[idx], **kw))
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return BootstrapCI(estimate, float("nan"), float("nan"))
    low, high = np.quantile(vals, [alpha / 2.0, 1.0 - alpha / 2.0])
    return BootstrapCI(estimate, float(low), float(high))
