"""``calibkit score --confidence ...``: the options and the scorer they build.

``calibkit.cli.score`` calls :func:`add_confidence_arguments` on its parser,
:func:`check_confidence_args` before any work, and, for a classification task,
:func:`confidence_scorer`, which returns ``None`` for the default ``--confidence logits`` (the
existing scorer runs unchanged) or an object with ``score(texts, labels=..., ids=...,
on_error=...)`` and ``last_run`` like :class:`~calibkit.scoring.classify.ClassificationScorer`.

The Scores it returns carry, besides the estimator's own metadata, ``meta["n_unparseable"]`` and
``meta["n_unparseable_of"]`` (what was counted, see :data:`UNPARSEABLE`), so every estimator's
output says how many model replies could not be read, and :func:`summary_lines` gives the lines
``calibkit score`` prints about it (the estimator ``auto`` chose and why, the cost).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from numpy.typing import ArrayLike

from calibkit.scores import Scores
from calibkit.scoring.confidence.select import CONFIDENCE_CHOICES, score_confidence

__all__ = [
    "UNPARSEABLE",
    "add_confidence_arguments",
    "check_confidence_args",
    "confidence_scorer",
    "summary_lines",
]

#: estimator -> (meta key holding its count of unreadable replies, what it counts)
UNPARSEABLE = {
    "verbalized": ("n_unparseable", "replies whose confidence could not be read (item failures)"),
    "consistency": ("n_unparsed_samples", "samples naming no class (left out of the vote)"),
    "ptrue": ("n_unparsed_answer", "proposed answers naming no class (counted as wrong)"),
    "logits": ("n_unparsed", "generated answers naming no class"),
}


def _with_unparseable(s: Scores) -> Scores:
    """``s`` with ``meta["n_unparseable"]`` and ``meta["n_unparseable_of"]`` (see UNPARSEABLE)."""
    from dataclasses import replace

    key, what = UNPARSEABLE.get(str(s.meta.get("estimator")), ("n_unparseable", "replies"))
    n = int(s.meta.get(key) or 0)
    if s.meta.get("estimator") == "consistency":  # items none of whose samples named a class
        n_items = sum(
            str(f.get("reason", "")).startswith("none of the") for f in s.meta.get("failures", [])
        )
        what = f"{what}; {n_items} items had no sample naming a class (item failures)"
    return replace(s, meta={**s.meta, "n_unparseable": n, "n_unparseable_of": what})


def summary_lines(meta: dict[str, Any]) -> list[str]:
    """What ``calibkit score`` says about a confidence estimator's run: the choice of ``auto``
    (one line) and the estimator, its cost and its unparseable count (one line)."""
    lines = []
    auto = meta.get("confidence_auto")
    if isinstance(auto, dict):
        reason = str(auto.get("reason"))
        warn = "warning: " if "no estimator met" in reason else ""
        lines.append(f"{warn}confidence auto: chose {auto.get('chosen')}: {reason}")
    est = meta.get("estimator")
    if est is None:
        return lines
    cost = meta.get("cost") or {}
    per = cost.get("per_item") or {}
    line = (
        f"confidence estimator {est}: {cost.get('model_calls', 0)} model calls, "
        f"{cost.get('output_tokens', 0)} output tokens "
        f"({per.get('model_calls', 0):.2f} calls, {per.get('output_tokens', 0):.1f} tokens per "
        "item)"
    )
    if "n_unparseable" in meta:
        line += f"; {meta['n_unparseable']} unparseable ({meta.get('n_unparseable_of')})"
    lines.append(line)
    return lines


def add_confidence_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``confidence estimators (issue #14)`` option group."""
    g = p.add_argument_group(
        "confidence estimator",
        "logits: answer-token log-probabilities (default); ptrue: ask whether the proposed "
        "answer is true, read P(True) (one token's log-probabilities); verbalized: the model "
        "states a 0-100% confidence (text only); consistency: vote share over --samples "
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
        import warnings

        run: dict[str, int] = {}
        self.last_run = run
        with warnings.catch_warnings():  # auto's "no estimator met": said in summary_lines
            warnings.filterwarnings("ignore", message=".*no estimator met", category=UserWarning)
            s = score_confidence(
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
        return _with_unparseable(s)


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
