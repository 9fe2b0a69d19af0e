"""Per-subject accuracy of a chat model on multiple-choice QA: where is it above chance?

Paper 002 fine-tunes aligned models that answer well above chance; a model at chance has no
signal for calibration-aware fine-tuning to keep. :func:`scan_subjects` scores a seeded sample of
each subset (a dataset, or a dataset's subject such as ``mmlu:anatomy``) with the training prompt
(:func:`calibkit.finetune.evaluate.option_scores`), and :func:`subject_table` reports per subset
the accuracy with its exact (Clopper-Pearson) 95 % interval beside chance ``1/K``, the mean
top-option confidence and conf-ECE. A subset is *kept* when the interval's lower end is above
chance. The scanned questions are recorded so that a later train / test split can exclude them
(``make_splits(exclude_ids=...)``): the kept subsets' test accuracy is then measured on questions
that played no part in choosing them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit.finetune.data import MCQExample, load_mcq_examples

__all__ = ["SubsetAccuracy", "sample_subsets", "subject_table", "subset_accuracy"]


@dataclass(frozen=True)
class SubsetAccuracy:
    """Accuracy of one subset: ``n`` questions with ``k`` options, ``correct`` right answers,
    ``acc_low``/``acc_high`` the exact 95 % interval, ``chance = 1/k``, ``mean_conf`` the mean
    top-option probability, ``conf_ece`` (10 equal-width bins), ``kept`` = ``acc_low > chance``."""

    subset: str
    n: int
    k: int
    correct: int
    accuracy: float
    acc_low: float
    acc_high: float
    chance: float
    mean_conf: float
    conf_ece: float
    kept: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_subsets(
    sources: Sequence[str],
    *,
    by_subject: Sequence[str] = ("mmlu",),
    per_subject: int = 16,
    per_dataset: int = 96,
    n_choices: int = 4,
    seed: int = 0,
    data_dir: Any = None,
) -> dict[str, list[MCQExample]]:
    """A seeded sample of each subset: ``"<dataset>:<subject>"`` for the datasets in
    ``by_subject`` (``per_subject`` questions each), the whole dataset otherwise
    (``per_dataset``). Only questions with ``n_choices`` options; a subset with fewer gives all
    it has."""
    if per_subject < 1 or per_dataset < 1:
        raise ValueError(
            f"per_subject and per_dataset must be >= 1; got {per_subject}, {per_dataset}"
        )
    out: dict[str, list[MCQExample]] = {}
    for src in sources:
        exs = [e for e in load_mcq_examples(src, data_dir=data_dir) if len(e.choices) == n_choices]
        if not exs:
            raise ValueError(f"dataset {src!r} has no {n_choices}-option questions")
        if src in by_subject:
            groups: dict[str, list[MCQExample]] = {}
            for e in exs:
                if not e.subject:
                    continue  # e.g. MedMCQA rows whose subject is unknown
                groups.setdefault(f"{src}:{e.subject}", []).append(e)
            n = per_subject
        else:
            groups, n = {src: exs}, per_dataset
        for name in sorted(groups):
            g = list(groups[name])
            random.Random(f"{seed}/{name}").shuffle(g)
            out[name] = g[:n]
    return out


def subset_accuracy(
    name: str, probs: NDArray[np.float64], labels: NDArray[np.int64], *, n_bins: int = 10
) -> SubsetAccuracy:
    """:class:`SubsetAccuracy` of one subset from its (n, K) option **probabilities** and (n,)
    correct option indices."""
    from calibkit.decisions import clopper_pearson_interval
    from calibkit.metrics import conf_ece

    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or len(p) != len(y) or len(y) == 0:
        raise ValueError(f"subset {name!r}: need (n, K) probabilities and n labels, n >= 1")
    n, k = p.shape
    correct = int(np.sum(np.argmax(p, axis=1) == y))
    lo, hi = clopper_pearson_interval(correct, n)
    chance = 1.0 / k
    return SubsetAccuracy(
        subset=name,
        n=n,
        k=k,
        correct=correct,
        accuracy=correct / n,
        acc_low=float(lo),
        acc_high=float(hi),
        chance=chance,
        mean_conf=float(np.mean(np.max(p, axis=1))),
        conf_ece=float(conf_ece(p, y, n_bins=n_bins)),
        kept=bool(float(lo) > chance),
    )


def subject_table(
    rows: Sequence[SubsetAccuracy], *, pooled: Mapping[str, SubsetAccuracy] | None = None
) -> str:
    """Markdown table of :class:`SubsetAccuracy` rows, best accuracy first; ``pooled`` rows
    (e.g. all of MMLU's scanned questions) are listed first."""
    head = "| subset | n | accuracy [95 % CI] | chance | mean conf | conf-ECE | kept |"
    lines = [head, "|---|---|---|---|---|---|---|"]

    def fmt(r: SubsetAccuracy, bold: bool = False) -> str:
        name = f"**{r.subset}**" if bold else r.subset
        return (
            f"| {name} | {r.n} | {r.accuracy:.3f} [{r.acc_low:.3f}, {r.acc_high:.3f}] | "
            f"{r.chance:.2f} | {r.mean_conf:.3f} | {r.conf_ece:.3f} | "
            f"{'yes' if r.kept else 'no'} |"
        )

    for r in (pooled or {}).values():
        lines.append(fmt(r, bold=True))
    for r in sorted(rows, key=lambda r: (-r.accuracy, r.subset)):
        lines.append(fmt(r))
    return "\n".join(lines) + "\n"
