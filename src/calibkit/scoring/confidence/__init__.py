"""Confidence for any LLM: estimators that turn what a model gives into calibratable Scores.

======================  ==============================  ==================  ================
name                    needs                           Scores              calls per item
======================  ==============================  ==================  ================
``logits``              log-probabilities               per-class (K)       1
``ptrue``               one token's log-probabilities   right/wrong         2
``verbalized``          text only                       right/wrong         1 (two-stage: 2)
``consistency``         text only, sampling             per-class (K)       n
======================  ==============================  ==================  ================

Each estimator is built as ``ESTIMATORS[name](backend, classes, template=None, *, cache=...,
batch_size=..., **options)`` and scored with ``.score(texts, labels=None, ids=None,
on_error="fail")``. ``meta["cost"]`` counts model calls, generated tokens and prompt characters
(see :mod:`calibkit.scoring.confidence.base` for the two representations). Classification tasks
only: answers are matched exactly to the task's classes.
"""

from __future__ import annotations

from calibkit.scoring.confidence.base import EstimatorBase
from calibkit.scoring.confidence.consistency import ConsistencyConfidence
from calibkit.scoring.confidence.logits import LogitsConfidence
from calibkit.scoring.confidence.mcq import MCQClassification, mcq_as_classification
from calibkit.scoring.confidence.ptrue import PTrueConfidence
from calibkit.scoring.confidence.select import (
    CONFIDENCE_CHOICES,
    Choice,
    choose_estimator,
    correctness,
    evaluate,
    score_confidence,
)
from calibkit.scoring.confidence.verbalized import (
    VerbalizedConfidence,
    parse_confidence,
    parse_top_k,
)

__all__ = [
    "CONFIDENCE_CHOICES",
    "ESTIMATORS",
    "Choice",
    "ConsistencyConfidence",
    "EstimatorBase",
    "LogitsConfidence",
    "MCQClassification",
    "PTrueConfidence",
    "VerbalizedConfidence",
    "choose_estimator",
    "correctness",
    "evaluate",
    "make_estimator",
    "mcq_as_classification",
    "parse_confidence",
    "parse_top_k",
    "score_confidence",
]

#: name -> estimator class
ESTIMATORS: dict[str, type[EstimatorBase]] = {
    "logits": LogitsConfidence,
    "ptrue": PTrueConfidence,
    "verbalized": VerbalizedConfidence,
    "consistency": ConsistencyConfidence,
}


def make_estimator(
    name: str, backend: object, classes: list[str], **kwargs: object
) -> EstimatorBase:
    """``ESTIMATORS[name](backend, classes, **kwargs)``; ``ValueError`` naming the choices."""
    if name not in ESTIMATORS:
        raise ValueError(
            f"unknown confidence estimator {name!r}; choose one of {sorted(ESTIMATORS)}"
        )
    return ESTIMATORS[name](backend, classes, **kwargs)  # type: ignore[arg-type]
