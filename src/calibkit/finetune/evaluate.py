"""Evaluation of (fine-tuned) chat models on multiple-choice QA and preference pairs.

* :func:`option_scores`: the option distribution of paper eq. (1) for each question, read from
  the logits of the option-letter tokens after the chat-formatted prompt (the same prompt and
  position the trainer regularises), returned as :class:`calibkit.Scores` holding the letters'
  full-vocabulary **log-probabilities** (softmax over them = eq. (1)).
* :func:`calibration_report`: conf-ECE (eq. 19), cw-ECE (eq. 20), accuracy, with ten
  equal-width bins as in the paper, from :mod:`calibkit.metrics`.
* :func:`reliability_figures`: overall (confidence) and per-option reliability diagrams.
* :func:`win_rate`: Appendix C.1: the share of preference pairs where the model gives the chosen
  response a higher sequence probability ``prod_t p(y_t | x, y_<t)`` (eq. 21) than the rejected
  one, the response rendered as the assistant turn of the chat template.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit.finetune._forward import causal_forward
from calibkit.finetune.data import (
    SYSTEM_PROMPT,
    EncodedMCQ,
    MCQExample,
    encode_examples,
    option_letters,
    option_token_ids,
)
from calibkit.scores import Scores
from calibkit.scoring.option_probs import option_distribution

__all__ = [
    "REPORT_METRICS",
    "PreferencePair",
    "WinRate",
    "calibration_report",
    "load_preference_pairs",
    "option_logprobs",
    "option_scores",
    "paired_differences",
    "reliability_figures",
    "sequence_logprobs",
    "win_rate",
]

#: paper 002's metrics, by their names in the metric registry (:mod:`calibkit.metrics.registry`)
REPORT_METRICS: tuple[str, ...] = ("conf_ece", "cw_ece", "accuracy")


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def option_logprobs(
    model: Any,
    encoded: Sequence[EncodedMCQ],
    option_ids: Sequence[int],
    *,
    batch_size: int = 8,
    pad_id: int = 0,
    progress: bool = False,
    desc: str = "scoring",
) -> NDArray[np.float64]:
    """(n, K) full-vocabulary log-probabilities of the option letters as the next token after
    each question's prompt (``input_ids[:answer_pos]``). One no-grad forward per batch of
    length-sorted, left-padded prompts; only the last position is projected on the vocabulary."""
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    n = len(encoded)
    out = np.zeros((n, len(option_ids)), dtype=np.float64)
    if n == 0:
        return out
    order = sorted(range(n), key=lambda i: encoded[i].answer_pos)
    device = _device_of(model)
    ids_t = torch.tensor(list(option_ids), dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=desc, unit="q", leave=False)
    try:
        with torch.inference_mode():
            for s in range(0, n, batch_size):
                idx = order[s : s + batch_size]
                length = max(encoded[i].answer_pos for i in idx)
                x = torch.full((len(idx), length), pad_id, dtype=torch.long)
                att = torch.zeros((len(idx), length), dtype=torch.long)
                for r, i in enumerate(idx):
                    m = encoded[i].answer_pos
                    x[r, length - m :] = torch.tensor(encoded[i].input_ids[:m])
                    att[r, length - m :] = 1
                logits = causal_forward(model, x.to(device), att.to(device), keep=1)
                lp = torch.log_softmax(logits[:, -1].float(), dim=-1)[:, ids_t]
                out[idx] = lp.double().cpu().numpy()
                if bar is not None:
                    bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return out


def option_scores(
    model: Any,
    tokenizer: Any,
    examples: Sequence[MCQExample],
    *,
    system_prompt: str | None = SYSTEM_PROMPT,
    max_length: int | None = 512,
    batch_size: int = 8,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> Scores:
    """Score multiple-choice questions: :class:`Scores` with letter log-probabilities, labels,
    classes ``("A", "B", ...)`` and the question ids. All questions need the same ``K``."""
    if not examples:
        raise ValueError("no questions to score")
    enc = encode_examples(tokenizer, examples, system_prompt=system_prompt, max_length=max_length)
    if not enc:
        raise ValueError("every question is longer than max_length")
    k = enc[0].n_choices
    ids = option_token_ids(tokenizer, k)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    lp = option_logprobs(model, enc, ids, batch_size=batch_size, pad_id=pad, progress=progress)
    return Scores(
        logits=lp,
        labels=np.array([e.answer for e in enc], dtype=np.int64),
        classes=option_letters(k),
        ids=np.array([e.id for e in enc], dtype=object),
        meta={"task": "mcq", "system_prompt": system_prompt, **(meta or {})},
    )


def calibration_report(
    scores: Scores, *, n_bins: int = 10, n_boot: int = 0, seed: int = 0
) -> dict[str, float]:
    """``conf_ece``, ``cw_ece``, ``accuracy``, ``mean_confidence``, ``n`` of labelled scores
    (probabilities: eq. (1), :func:`calibkit.scoring.option_probs.option_distribution`). With ``n_boot > 0`` also
    ``<metric>_low`` / ``<metric>_high``: 95 % percentile-bootstrap intervals, the same
    resamples for every metric (:func:`calibkit.metrics.bootstrap_metrics`). The metrics are
    :data:`REPORT_METRICS`, computed by the metric registry."""
    from calibkit.metrics import bootstrap_metrics, compute_metrics

    p = option_distribution(scores.logits)  # eq. (1)
    y = scores.require_labels()
    kw: dict[str, Any] = {"names": REPORT_METRICS, "n_bins": n_bins}
    out = compute_metrics(p, y, **kw)
    out["mean_confidence"] = float(np.mean(np.max(p, axis=1)))
    out["n"] = float(len(y))
    if n_boot > 0:
        cis = bootstrap_metrics(p, y, n_boot=n_boot, seed=seed, **kw)
        for key, (low, high) in cis.items():
            out[f"{key}_low"], out[f"{key}_high"] = low, high
    return out


def paired_differences(
    base: Scores, other: Scores, *, n_bins: int = 10, n_boot: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """``other - base`` of each of :data:`REPORT_METRICS` on the same questions, with a 95 %
    paired percentile-bootstrap interval (the same resampled questions for both models):
    ``{metric: (difference, low, high)}``. The two must score the same question ids in the
    same order with the same labels (option **log-probabilities**, eq. (1) applied here)."""
    from calibkit.metrics import compute_metrics

    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    ya, yb = base.require_labels(), other.require_labels()
    if base.ids is None or other.ids is None or list(base.ids) != list(other.ids):
        raise ValueError("paired_differences: the two score sets hold different question ids")
    if not np.array_equal(ya, yb):
        raise ValueError("paired_differences: the two score sets disagree on the labels")
    pa, pb = option_distribution(base.logits), option_distribution(other.logits)
    kw: dict[str, Any] = {"names": REPORT_METRICS, "n_bins": n_bins}

    def diff(idx: NDArray[np.int64]) -> dict[str, float]:
        ma = compute_metrics(pa[idx], ya[idx], **kw)
        mb = compute_metrics(pb[idx], yb[idx], **kw)
        return {k: mb[k] - ma[k] for k in REPORT_METRICS}

    n = len(ya)
    point = diff(np.arange(n))
    rng = np.random.default_rng(seed)
    draws = [diff(rng.integers(0, n, size=n)) for _ in range(n_boot)]
    out = {}
    for k in REPORT_METRICS:
        v = np.array([d[k] for d in draws], dtype=np.float64)
        v = v[np.isfinite(v)]
        lo, hi = np.percentile(v, [2.5, 97.5]) if len(v) else (np.nan, np.nan)
        out[k] = (float(point[k]), float(lo), float(hi))
    return out


def reliability_figures(
    scores: Scores, out_dir: str | os.PathLike[str], *, prefix: str, n_bins: int = 10
) -> list[Path]:
    """Write ``<prefix>_reliability.png`` (top-label confidence) and
    ``<prefix>_reliability_per_option.png`` (one panel per option) under ``out_dir``."""
    from calibkit.plots import classwise_reliability_diagram, reliability_diagram, save_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p, y = scores.probs, scores.require_labels()
    paths = []
    fig = reliability_diagram(p, y, n_bins=n_bins, title=f"{prefix}: confidence")
    paths.append(Path(save_figure(fig, out / f"{prefix}_reliability.png")))
    fig = classwise_reliability_diagram(
        p,
        y,
        n_bins=n_bins,
        classes=[f"option {c}" for c in scores.classes],
        title=f"{prefix}: per option",
    )
    paths.append(Path(save_figure(fig, out / f"{prefix}_reliability_per_option.png")))
    import matplotlib.pyplot as plt

    plt.close("all")
    return paths


# ---------------------------------------------------------------------------------- win rate
@dataclass(frozen=True)
class PreferencePair:
    """A prompt (a string or chat messages without the final answer) and two responses."""

    prompt: str | tuple[tuple[str, str], ...]
    chosen: str
    rejected: str
    id: str = ""


def _hh_turns(prompt: str) -> tuple[tuple[str, str], ...]:
    """Split an HH-RLHF dialogue ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` into (role, text)
    turns; the trailing empty ``Assistant:`` is dropped."""
    import re

    parts = re.split(r"\n\n(Human|Assistant): ?", "\n\n" + prompt.lstrip("\n"))
    turns: list[tuple[str, str]] = []
    for role, text in zip(parts[1::2], parts[2::2], strict=False):
        turns.append(("user" if role == "Human" else "assistant", text.strip()))
    if turns and turns[-1][0] == "assistant" and not turns[-1][1]:
        turns.pop()
    return tuple(turns)


def load_preference_pairs(
    name: str,
    *,
    n: int | None = None,
    seed: int = 0,
    max_chars: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> list[PreferencePair]:
    """A seeded subsample of ``ultrafeedback_binarized`` or ``hh_rlhf`` pairs (HH dialogues are
    split into chat turns); ``max_chars`` keeps pairs whose prompt + longer response is at most
    that many characters (drawn before sampling, so CPU runs can afford the pairs)."""
    from calibkit.datasets import load_pairs

    if name not in ("ultrafeedback_binarized", "hh_rlhf"):
        raise ValueError(
            f"unknown preference dataset {name!r}; use ultrafeedback_binarized or hh_rlhf"
        )
    rows: list[dict[str, Any]] = load_pairs(name, data_dir=data_dir).to_dict("records")
    idx = list(range(len(rows)))
    if max_chars is not None:
        idx = [
            i
            for i in idx
            if len(str(rows[i]["prompt"]))
            + max(len(str(rows[i]["chosen"])), len(str(rows[i]["rejected"])))
            <= max_chars
        ]
    random.Random(seed).shuffle(idx)
    if n is not None:
        idx = idx[:n]
    out = []
    for i in idx:
        r = rows[i]
        prompt: str | tuple[tuple[str, str], ...] = str(r["prompt"])
        if name == "hh_rlhf":
            prompt = _hh_turns(str(r["prompt"]))
        out.append(PreferencePair(prompt, str(r["chosen"]), str(r["rejected"]), id=f"{name}:{i}"))
    return out


def _messages(prompt: str | tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": r, "content": c} for r, c in prompt]


def sequence_logprobs(
    model: Any,
    tokenizer: Any,
    prompt: str | tuple[tuple[str, str], ...],
    responses: Sequence[str],
    *,
    max_length: int = 1024,
) -> NDArray[np.float64]:
    """``log prod_t p(y_t | x, y_<t)`` of each response as the assistant turn after ``prompt``
    (chat template; the response tokens up to and including the end-of-turn token), eq. (21).

    A prompt + response longer than ``max_length`` tokens gets NaN (never truncated: a cut would
    compare sums over different numbers of tokens)."""
    import torch

    msgs = _messages(prompt)
    prompt_text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    p_ids = list(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    device = _device_of(model)
    out = np.zeros(len(responses), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for j, resp in enumerate(responses):
                full = tokenizer.apply_chat_template(
                    [*msgs, {"role": "assistant", "content": resp}], tokenize=False
                )
                f_ids = list(tokenizer(full, add_special_tokens=False)["input_ids"])
                if f_ids[: len(p_ids)] != p_ids:
                    raise ValueError("chat template does not extend the prompt with the response")
                from calibkit.finetune.data import _end_of_turn_ids

                eot = _end_of_turn_ids(tokenizer)
                tail = f_ids[len(p_ids) :]
                end = next((i for i, t in enumerate(tail) if t in eot), len(tail) - 1)
                ids = p_ids + tail[: end + 1]
                if len(ids) > max_length:
                    out[j] = np.nan
                    continue
                x = torch.tensor([ids], device=device)
                n_resp = len(ids) - len(p_ids)
                logits = causal_forward(model, x, torch.ones_like(x), keep=n_resp + 1)
                logp = torch.log_softmax(logits[0, :-1].float(), -1)
                tgt = x[0, len(ids) - n_resp :]
                out[j] = float(logp.gather(-1, tgt[:, None]).sum())
    finally:
        model.train(was_training)
    return out


@dataclass(frozen=True)
class WinRate:
    """Win rate over ``n`` scored pairs (ties count as losses, as in the paper); ``margins`` are
    ``log P(chosen) - log P(rejected)`` per scored pair; ``skipped`` pairs exceeded
    ``max_length``."""

    win_rate: float
    n: int
    ties: int
    margins: NDArray[np.float64]
    skipped: int = 0

    def to_dict(self) -> dict[str, float]:
        return {
            "win_rate": self.win_rate,
            "n": self.n,
            "ties": self.ties,
            "skipped": self.skipped,
            "mean_margin": float(np.mean(self.margins)) if self.n else float("nan"),
        }


def win_rate(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    *,
    max_length: int = 1024,
    progress: bool = False,
) -> WinRate:
    """Appendix C.1 win rate: fraction of pairs with ``P(chosen | x) > P(rejected | x)``."""
    if not pairs:
        raise ValueError("no preference pairs")
    it: Any = pairs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(pairs, desc="win rate", unit="pair", leave=False)
    raw = np.array(
        [
            float(
                np.subtract(
                    *sequence_logprobs(
                        model, tokenizer, p.prompt, [p.chosen, p.rejected], max_length=max_length
                    )
                )
            )
            for p in it
        ]
    )
    margins = raw[~np.isnan(raw)]
    if margins.size == 0:
        raise ValueError(f"every pair is longer than max_length={max_length} tokens")
    return WinRate(
        win_rate=float(np.mean(margins > 0)),
        n=int(margins.size),
        ties=int(np.sum(margins == 0)),
        margins=margins,
        skipped=int(raw.size - margins.size),
    )
