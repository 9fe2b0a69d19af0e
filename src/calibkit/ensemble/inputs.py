"""Assemble the answers and confidences of K models into the arrays the ensemble code works on.

An *ensemble probability array* ``X`` holds every model's class probabilities for the same items:

* ``(n, K, C)``: row ``X[i, k]`` is model ``k``'s probability vector over ``C`` classes;
* ``(n, K)``: binary task, ``X[i, k] = P_k(y = 1)``.

Models are ordered from the cheapest to the costliest (the cascade's order). A model's *answer* is
its argmax class and its *confidence* the probability of that answer (paper 001, section 2.1,
step 4: ``s = z_a``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._validation import SIMPLEX_ATOL, check_labels
from calibkit.scores import Scores

__all__ = ["StackedScores", "answers_confidences", "check_ensemble_probs", "stack_scores"]


def check_ensemble_probs(X: ArrayLike, name: str = "X") -> NDArray[np.float64]:
    """Validate an ensemble probability array and return it as ``(n, K, C)`` float64.

    ``(n, K)`` input (binary ``P(y=1)`` per model) is expanded to ``(n, K, 2)``.
    """
    p = np.asarray(X, dtype=np.float64)
    if p.ndim == 2:
        if p.shape[0] == 0 or p.shape[1] == 0:
            raise ValueError(f"{name} is empty (shape {p.shape})")
        if not np.all(np.isfinite(p)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if p.min() < 0.0 or p.max() > 1.0:
            raise ValueError(
                f"{name} of shape (n, K) must hold P(y=1) in [0, 1] "
                f"(got min={p.min():.4g}, max={p.max():.4g})"
            )
        p = np.stack([1.0 - p, p], axis=2)
    elif p.ndim == 3:
        n, k, c = p.shape
        if n == 0 or k == 0:
            raise ValueError(f"{name} is empty (shape {p.shape})")
        if c < 2:
            raise ValueError(f"{name} has {c} class column(s); (n, K, C) needs C >= 2")
        if not np.all(np.isfinite(p)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if p.min() < 0.0 or p.max() > 1.0:
            raise ValueError(
                f"{name} must hold probabilities in [0, 1] (got min={p.min():.4g}, "
                f"max={p.max():.4g}); convert logits with calibkit.to_probs first"
            )
        s = p.sum(axis=2)
        bad = np.abs(s - 1.0) > SIMPLEX_ATOL
        if np.any(bad):
            i, j = np.argwhere(bad)[0]
            raise ValueError(
                f"{name}[{i}, {j}] sums to {s[i, j]:.6g}; each model's row must sum to 1"
            )
    else:
        raise ValueError(
            f"{name} must be (n, K, C) class probabilities or (n, K) binary P(y=1); "
            f"got shape {p.shape}"
        )
    return p


def answers_confidences(X: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Each model's answer and confidence.

    Parameters
    ----------
    X : (n, K, C) or (n, K) array of probabilities (see module docstring).

    Returns
    -------
    answers : (n, K) int64, argmax class of each model (ties: lowest class index).
    confidences : (n, K) float64, probability of that answer, in ``[1/C, 1]``.
    """
    p = check_ensemble_probs(X)
    answers = np.argmax(p, axis=2).astype(np.int64)
    conf = np.take_along_axis(p, answers[:, :, None], axis=2)[:, :, 0]
    return answers, conf


@dataclass(frozen=True)
class StackedScores:
    """K models' Scores aligned on the same items.

    Attributes
    ----------
    probs : (n, K, C) float64 class probabilities, models in the given order.
    labels : (n,) int64 or None.
    ids : (n,) item ids (the first model's order).
    classes : tuple of C class names.
    names : tuple of K model names.
    """

    probs: NDArray[np.float64]
    labels: NDArray[np.int64] | None
    ids: NDArray[Any]
    classes: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def n_models(self) -> int:
        return int(self.probs.shape[1])


def _model_name(s: Scores, k: int) -> str:
    for key in ("name", "model_name", "model"):
        v = s.meta.get(key)
        if v:
            return str(v)
    return f"model_{k}"


def stack_scores(
    models: Sequence[Scores],
    names: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
) -> StackedScores:
    """Align K :class:`~calibkit.scores.Scores` (one per model) by item id.

    Every model must score every id of the first model (extra ids are ignored) over the same
    classes; labels, where present, must agree. Raises ``ValueError`` otherwise, naming the
    model by its ``sources`` entry (e.g. its file) when given.
    """
    if len(models) == 0:
        raise ValueError("stack_scores needs at least one Scores")
    if sources is not None and len(sources) != len(models):
        raise ValueError(f"got {len(sources)} sources for {len(models)} models")

    def who(k: int) -> str:
        return f"model {k}" + (f" ({sources[k]})" if sources is not None else "")

    first = models[0]
    classes = first.classes
    ids0 = [str(i) for i in first.ids.tolist()]
    if len(set(ids0)) != len(first):
        dup = sorted({i for i in ids0 if ids0.count(i) > 1})[:3] if len(ids0) < 10_000 else []
        raise ValueError(
            f"{who(0)} has duplicate ids{f' (e.g. {dup})' if dup else ''}; ids must be unique"
        )
    key0 = [str(i) for i in first.ids.tolist()]
    probs = np.empty((len(first), len(models), len(classes)), dtype=np.float64)
    labels: NDArray[np.int64] | None = None
    for k, s in enumerate(models):
        if s.classes != classes:
            raise ValueError(
                f"{who(k)} has classes {s.classes} but {who(0)} has {classes}; "
                "all models must score the same classes in the same order"
            )
        pos = {str(i): j for j, i in enumerate(s.ids.tolist())}
        if len(pos) != len(s):
            raise ValueError(f"{who(k)} has duplicate ids; ids must be unique")
        missing = [i for i in key0 if i not in pos]
        if missing:
            raise ValueError(
                f"{who(k)} lacks {len(missing)} of the {len(key0)} ids of {who(0)} "
                f"(e.g. {missing[:3]}); score the same items with every model"
            )
        idx = np.fromiter((pos[i] for i in key0), dtype=np.int64, count=len(key0))
        probs[:, k, :] = s.probs[idx]
        if s.labels is not None:
            lab = s.labels[idx]
            if labels is None:
                labels = lab
            elif not np.array_equal(labels, lab):
                bad = int(np.sum(labels != lab))
                raise ValueError(f"{who(k)}: labels disagree with earlier models on {bad} items")
    if names is None:
        names = [_model_name(s, k) for k, s in enumerate(models)]
    if len(names) != len(models):
        raise ValueError(f"got {len(names)} names for {len(models)} models")
    return StackedScores(
        probs=probs,
        labels=None if labels is None else check_labels(labels, len(key0), len(classes)),
        ids=np.asarray(first.ids),
        classes=tuple(classes),
        names=tuple(str(x) for x in names),
    )
