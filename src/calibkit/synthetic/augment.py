"""Step 3 of paper 000 (section 4.4): retrain with the synthetic texts.

With ``N`` original points (training + validation) of which ``S1`` lie in target bins of the
validation split, and ``S2 <= S1`` relabeled synthetic texts:

* **Synthesis**: replace ``S2`` of the ``S1`` target points by the ``S2`` synthetic texts; the
  training set keeps its size ``N`` (``S2 = S1`` in the paper; when the relabel filter leaves fewer
  texts than target points only ``S2`` target points are replaced, chosen with ``seed``);
* **Synthesis+**: add the ``S2`` synthetic texts to the ``N`` points (size ``N + S2``).

When more than ``S1`` synthetic texts survive, ``S1`` of them are kept, spread over the source
items round-robin (every source's first utterance before any second one), in a seeded order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._validation import check_labels
from calibkit.synthetic.classifiers import TextClassifier
from calibkit.synthetic.generate import SyntheticText

__all__ = ["Mode", "TrainingSet", "augment", "evaluate_classifier", "select_synthetic"]

Mode = Literal["synthesis", "synthesis+"]


@dataclass(frozen=True)
class TrainingSet:
    """A retraining set.

    Attributes
    ----------
    texts : list of str
    labels : (n,) int64
    is_synthetic : (n,) bool
    n_removed : int
        Target points removed (Synthesis) or 0 (Synthesis+).
    n_added : int
        Synthetic texts added (``S2``).
    """

    texts: list[str]
    labels: NDArray[np.int64]
    is_synthetic: NDArray[np.bool_]
    n_removed: int
    n_added: int

    def __len__(self) -> int:
        return len(self.texts)


def select_synthetic(
    synthetic: Sequence[SyntheticText], limit: int, *, seed: int = 0
) -> list[SyntheticText]:
    """At most ``limit`` texts, round-robin over source items in a seeded order."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    items = list(synthetic)
    if len(items) <= limit:
        return items
    rng = np.random.default_rng(seed)
    by_source: dict[int, list[SyntheticText]] = {}
    for s in items:
        by_source.setdefault(s.source, []).append(s)
    sources = list(by_source)
    order = [sources[i] for i in rng.permutation(len(sources))]
    out: list[SyntheticText] = []
    rank = 0
    while len(out) < limit:
        for src in order:
            if rank < len(by_source[src]):
                out.append(by_source[src][rank])
                if len(out) == limit:
                    break
        rank += 1
    return out


def augment(
    texts: Sequence[str],
    labels: ArrayLike,
    target_index: ArrayLike,
    synthetic: Sequence[SyntheticText],
    *,
    mode: Mode = "synthesis",
    seed: int = 0,
) -> TrainingSet:
    """Build the Synthesis / Synthesis+ training set.

    Parameters
    ----------
    texts : sequence of N str
        Original training + validation texts.
    labels : (N,) int
    target_index : (S1,) int
        Positions in ``texts`` of the target-bin points (the paper's ``S1``).
    synthetic : sequence of SyntheticText
        Relabeled synthetic texts; at most ``S1`` are used (:func:`select_synthetic`).
    mode : "synthesis" or "synthesis+"
    seed : int
        Which texts are kept / which target points are replaced when counts differ.
    """
    if mode not in ("synthesis", "synthesis+"):
        raise ValueError(f"mode must be 'synthesis' or 'synthesis+', got {mode!r}")
    x = list(texts)
    y = check_labels(labels, len(x))
    idx = np.asarray(target_index, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= len(x)):
        raise ValueError(f"target_index must be in [0, {len(x)}); got {idx.min()}..{idx.max()}")
    if np.unique(idx).size != idx.size:
        raise ValueError("target_index has duplicate positions")
    rng = np.random.default_rng(seed)
    syn = select_synthetic(synthetic, int(idx.size), seed=seed)
    n_classes = int(y.max()) + 1 if y.size else 0
    for s in syn:
        if not 0 <= s.label < max(n_classes, 2):
            raise ValueError(f"synthetic label {s.label} is not a class of the training labels")
    keep = np.ones(len(x), dtype=bool)
    n_removed = 0
    if mode == "synthesis" and syn:
        drop = rng.choice(idx, size=len(syn), replace=False)
        keep[drop] = False
        n_removed = len(syn)
    new_texts = [t for t, k in zip(x, keep, strict=True) if k] + [s.text for s in syn]
    new_labels = np.concatenate([y[keep], np.asarray([s.label for s in syn], dtype=np.int64)])
    flag = np.concatenate([np.zeros(int(keep.sum()), bool), np.ones(len(syn), bool)])
    return TrainingSet(new_texts, new_labels, flag, n_removed, len(syn))


def evaluate_classifier(
    classifier: TextClassifier,
    texts: Sequence[str],
    labels: ArrayLike,
    *,
    n_bins: int = 15,
    **predict_kwargs: Any,
) -> dict[str, float]:
    """Accuracy and top-label ECE (``n_bins`` equal-width bins) of a fitted classifier on a
    labeled set, e.g. the real test split."""
    from calibkit.metrics import accuracy, ece

    p = classifier.predict_proba(texts, **predict_kwargs)
    return {"acc": accuracy(p, labels), "ece": ece(p, labels, n_bins=n_bins)}
