"""The one-split comparison of the skeleton study (kept for callers that score in memory).

:func:`compare_estimators` runs each estimator on a backend and texts, splits the items once
into a calibration and a held-out half and reports AUROC, ECE and Brier (raw and Platt) with
bootstrap CIs. The committed study (:mod:`calibkit.experiments.confidence_methods`) scores to
files first and analyzes over many splits instead (:mod:`.analysis`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["compare_estimators"]


def _brier(conf: np.ndarray, correct: np.ndarray) -> float:
    return float(np.mean((conf - correct.astype(np.float64)) ** 2))


def _ci(fn: Any, conf: np.ndarray, correct: np.ndarray, n_boot: int, seed: int) -> list[float]:
    from calibkit.metrics import bootstrap_ci

    c = bootstrap_ci(lambda p, y: fn(p, y), conf, correct, n_boot=n_boot, seed=seed)
    return [float(c.estimate), float(c.low), float(c.high)]


def compare_estimators(
    backend: Any,
    classes: Sequence[str],
    texts: Sequence[str],
    labels: Sequence[str] | np.ndarray,
    *,
    estimators: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    n_boot: int = 200,
    task: str = "task",
    **common: Any,
) -> list[dict[str, Any]]:
    """One row per estimator (see the module docstring); ``common`` goes to every estimator
    (template, cache, batch_size ...). An estimator whose every item failed gets a row with
    ``error``."""
    from calibkit.calibrators import PlattScaling
    from calibkit.metrics import binary_auroc
    from calibkit.scores import Scores
    from calibkit.scoring.classify import ItemsFailed
    from calibkit.scoring.confidence import ESTIMATORS, correctness
    from calibkit.scoring.confidence.select import pcorrect_ece

    names = list(estimators or ESTIMATORS)
    options = options or {}
    n = len(texts)
    half = np.random.default_rng(seed).permutation(n) < n // 2  # True: calibration half
    rows: list[dict[str, Any]] = []
    for name in names:
        row: dict[str, Any] = {"task": task, "model": backend.name, "estimator": name}
        try:
            s = ESTIMATORS[name](backend, classes, **common, **options.get(name, {})).score(
                texts, labels, on_error="skip"
            )
        except ItemsFailed as e:
            rows.append({**row, "error": str(e), "n_failed": len(e.failures)})
            continue
        conf, correct = correctness(s)
        pos = np.asarray(s.ids if s.ids.dtype.kind in "iu" else np.arange(len(s)), dtype=np.int64)
        cal, test = half[pos], ~half[pos]
        row.update(
            n_scored=len(s),
            n_failed=len(s.meta.get("failures", [])),
            calls_per_item=s.meta["cost"]["per_item"]["model_calls"],
            output_tokens_per_item=s.meta["cost"]["per_item"]["output_tokens"],
            n_test=int(test.sum()),
            accuracy=float(correct[test].mean()) if test.any() else float("nan"),
        )
        if not test.any() or not cal.any() or correct[cal].all() or not correct[cal].any():
            rows.append({**row, "error": "too few items or one outcome only in a split"})
            continue
        eps = 1e-6
        fit = Scores.from_probs(np.clip(conf[cal], eps, 1 - eps), labels=correct[cal])
        held = Scores.from_probs(np.clip(conf[test], eps, 1 - eps))
        calibrated = PlattScaling().fit_scores(fit).calibrate(held).probs[:, 1]
        ct, yt = conf[test], correct[test]
        for tag, p in (("raw", ct), ("calibrated", calibrated)):
            row[f"ece_{tag}"] = _ci(pcorrect_ece, p, yt, n_boot, seed)
            row[f"brier_{tag}"] = _ci(_brier, p, yt, n_boot, seed)
        if yt.all() or not yt.any():
            row["auroc"] = [float("nan")] * 3
        else:
            row["auroc"] = _ci(binary_auroc, ct, yt, n_boot, seed)
        lo, hi = row["auroc"][1], row["auroc"][2]
        # the CI does not lie above 0.5 (it holds 0.5, or it lies below: worse than chance)
        row["no_better_than_chance"] = bool(not lo > 0.5)
        row["worse_than_chance"] = bool(hi < 0.5)
        rows.append(row)
    return rows
