"""``calibkit score --confidence ...``: the options and the scorer they build.

``calibkit.cli.score`` calls :func:`add_confidence_arguments` on its parser,
:func:`check_confidence_args` before any work, and, for a classification task,
:func:`confidence_scorer`, which returns ``None`` for the default ``--confidence logits`` (the
existing scorer runs unchanged) or an object with ``score(texts, labels=..., ids=...,
on_error=...)`` and ``last_run`` like :class:`~calibkit.scoring.classify.ClassificationScorer`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from numpy.typing import ArrayLike

from calibkit.scores import Scores
from calibkit.scoring.confidence.select import CONFIDENCE_CHOICES, score_confidence

__all__ = ["add_confidence_arguments", "check_confidence_args", "confidence_scorer"]


def add_confidence_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``confidence estimators (issue #14)`` option group."""
    g = p.add_argument_group(
        "confidence estimator",
        "logits: answer-token log-probabilities (default); ptrue: ask whether the proposed "
        "answer is true, read P(True) (one token's log-probabilities); verbalized: the model "
        "states a 0-100%% confidence (text only); consistency: vote share over --samples "
        "samples (text only); auto: logits when the server returns log-probabilities, else the "
        "cheapest text-only estimator meeting --auto-target on the labelled rows",
    )
    g.add_argument("--confidence", choices=CONFIDENCE_CHOICES, default="logits")
    g.add_argument("--samples", type=int, default=5, help="consistency: samples per item (5)")
    g.add_argument(
        "--temperature", type=float, default=0.7, help="consistency: sampling temperature (0.7)"
    )
    g.add_argument(
        "--verbalized-style",
        choices=("one-stage", "two-stage", "top-k"),
        default="one-stage",
        help="verbalized: prompting style (one-stage)",
    )
    g.add_argument(
        "--auto-metric",
        choices=("ece", "auroc"),
        default="auroc",
        help="auto: calibrated ECE <= target, or AUROC >= target (auroc)",
    )
    g.add_argument("--auto-target", type=float, default=0.6, help="auto: the target (0.6)")


def check_confidence_args(args: argparse.Namespace) -> None:
    """``ValueError`` naming the option for a bad combination (before any work)."""
    method = getattr(args, "confidence", "logits")
    if method == "logits":
        return
    if getattr(args, "task", "classify") != "classify":
        raise ValueError(f"--confidence {method} supports --task classify only")
    if args.samples < 2:
        raise ValueError(f"--samples must be >= 2, got {args.samples}")
    if not args.temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    if args.auto_metric == "ece" and not 0 <= args.auto_target <= 1:
        raise ValueError(f"--auto-target for ECE must be in [0, 1], got {args.auto_target}")
    if args.auto_metric == "auroc" and not 0 <= args.auto_target <= 1:
        raise ValueError(f"--auto-target for AUROC must be in [0, 1], got {args.auto_target}")


class _ConfidenceScorer:
    def __init__(self, method: str, backend: Any, classes: Sequence[str], **kw: Any) -> None:
        self.method, self.backend, self.classes, self.kw = method, backend, list(classes), kw
        self.last_run: dict[str, int] = {}

    def score(
        self,
        texts: Sequence[str],
        labels: ArrayLike | Sequence[str] | None = None,
        ids: ArrayLike | None = None,
        *,
        on_error: Any = "fail",
    ) -> Scores:
        run: dict[str, int] = {}
        self.last_run = run
        return score_confidence(
            self.method,
            self.backend,
            self.classes,
            texts,
            labels,
            ids,
            on_error=on_error,
            last_run=run,
            **self.kw,
        )


def confidence_scorer(
    args: argparse.Namespace,
    backend: Any,
    classes: Sequence[str],
    template: Any,
    *,
    cache: Any,
    batch_size: int,
) -> _ConfidenceScorer | None:
    """``None`` for ``--confidence logits``; else the scorer of the chosen estimator."""
    method = getattr(args, "confidence", "logits")
    if method == "logits":
        return None
    options = {
        "consistency": {"n": args.samples, "temperature": args.temperature, "seed": args.seed},
        "verbalized": {"style": args.verbalized_style},
        "logits": {"mode": args.mode, "max_new_tokens": args.max_new_tokens},
        "ptrue": {"max_new_tokens": args.max_new_tokens},
    }
    return _ConfidenceScorer(
        method,
        backend,
        classes,
        template=template,
        cache=cache,
        batch_size=batch_size,
        options=options,
        auto_metric=args.auto_metric,
        auto_target=args.auto_target,
    )
