"""Fine-tuning objectives of paper 002 (Section 5 and Table 2 baselines).

All losses read one forward pass of the causal LM: ``logits`` (B, L, V) over ``input_ids`` and
``labels`` (B, L) aligned with ``input_ids`` (``-100`` = no loss; the one-token shift is done here).

* **CFT** (``L_SFT1``): next-token cross-entropy on the completion only (answer letter + end of
  turn), plus ``lambda * L_ECE`` (``lambda = 0`` by default, as the paper reports).
* **RCFT** (``L_SFT2 + lambda * L_ECE``): cross-entropy on the question, options and answer
  (labels mode ``"prompt_and_answer"``) plus the EM ECE regularizer of
  :mod:`calibkit.finetune.em` on the option-letter distribution. ``lm_weight = 0`` gives the
  "ECE only" column of Table 4.
* **Label smoothing** baseline: completion-only cross-entropy where the answer letter's one-hot
  target is replaced by ``1 - eps`` on the correct letter and ``eps / (K - 1)`` on each other
  option letter (the paper's definition: smoothing over the *options*, not the vocabulary).

Token losses are means over the labelled tokens of the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from calibkit.finetune.em import EMRegularizer

__all__ = [
    "METHODS",
    "Objective",
    "label_smoothing_lm_loss",
    "lm_loss",
    "option_logits_at_answer",
]

Method = Literal["cft", "rcft", "label_smoothing"]
METHODS: tuple[str, ...] = ("cft", "rcft", "label_smoothing")
IGNORE_INDEX = -100


def option_logits_at_answer(
    logits: torch.Tensor, answer_pos: torch.Tensor, option_ids: Sequence[int] | torch.Tensor
) -> torch.Tensor:
    """(B, K) **logits** of the option letters at the position that predicts the answer.

    ``logits`` (B, L, V) from a forward over prompt+answer (or over the prompt alone, with
    ``answer_pos`` = prompt length); ``answer_pos`` (B,) index of the answer letter.
    """
    import torch

    if logits.ndim != 3:
        raise ValueError(f"logits must be (B, L, V); got {tuple(logits.shape)}")
    pos = answer_pos.to(logits.device).long() - 1
    if bool((pos < 0).any()) or bool((pos >= logits.shape[1]).any()):
        raise ValueError("answer_pos must lie in 1..L")
    rows = torch.arange(logits.shape[0], device=logits.device)
    ids = torch.as_tensor(option_ids, dtype=torch.long, device=logits.device)
    return logits[rows, pos][:, ids]


def _shifted_token_ce(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(logits.device)
    ce = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(shift_labels.shape)
    return ce, shift_labels != IGNORE_INDEX


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled tokens; ``logits`` (B, L, V), ``labels`` (B, L)."""
    ce, mask = _shifted_token_ce(logits, labels)
    n = mask.sum()
    if int(n) == 0:
        raise ValueError("no labelled tokens in the batch")
    return ce[mask].sum() / n


def label_smoothing_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    answer_pos: torch.Tensor,
    answers: torch.Tensor,
    option_ids: Sequence[int] | torch.Tensor,
    epsilon: float,
) -> torch.Tensor:
    """Token cross-entropy with the answer letter's target smoothed over the option letters.

    At the answer position the target puts ``1 - epsilon`` on the correct letter and
    ``epsilon / (K - 1)`` on every other option letter (full-vocabulary log-softmax); the other
    labelled tokens keep their one-hot target. Mean over labelled tokens.
    """
    import torch

    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label smoothing epsilon must lie in [0, 1); got {epsilon}")
    ce, mask = _shifted_token_ce(logits, labels)
    rows = torch.arange(logits.shape[0], device=logits.device)
    pos = answer_pos.to(logits.device).long() - 1
    ids = torch.as_tensor(option_ids, dtype=torch.long, device=logits.device)
    k = ids.numel()
    logp = torch.log_softmax(logits[rows, pos].float(), dim=-1)[:, ids]  # (B, K)
    q = torch.full_like(logp, epsilon / (k - 1))
    q[rows, answers.to(logits.device).long()] = 1.0 - epsilon
    smoothed = -(q * logp).sum(dim=-1)
    answer_mask = torch.zeros_like(mask)
    answer_mask[rows, pos] = True
    if not bool(mask[rows, pos].all()):
        raise ValueError("label smoothing needs the answer letter among the labelled tokens")
    n = mask.sum()
    other = ce[mask & ~answer_mask].sum()
    return (other + smoothed.sum()) / n


@dataclass(frozen=True)
class Objective:
    """Training objective of one method.

    Parameters
    ----------
    method : {"cft", "rcft", "label_smoothing"}
    lam : float
        Weight ``lambda >= 0`` of the EM ECE regularizer.
    lm_weight : float
        Weight of the token loss (1; 0 = "ECE only").
    smoothing : float
        Label-smoothing ``epsilon`` (method ``"label_smoothing"`` only).
    """

    method: Method = "cft"
    lam: float = 0.0
    lm_weight: float = 1.0
    smoothing: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {self.method!r}")
        if not self.lam >= 0:
            raise ValueError(f"lambda must be >= 0; got {self.lam}")
        if not self.lm_weight >= 0:
            raise ValueError(f"lm_weight must be >= 0; got {self.lm_weight}")
        if self.lam == 0 and self.lm_weight == 0:
            raise ValueError("lambda and lm_weight are both 0: nothing to optimise")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must lie in [0, 1); got {self.smoothing}")

    @property
    def label_mode(self) -> Literal["completion", "prompt_and_answer"]:
        """Which tokens carry the token loss: RCFT trains on prompt + answer."""
        return "prompt_and_answer" if self.method == "rcft" else "completion"

    @property
    def uses_em(self) -> bool:
        return self.lam > 0

    def __call__(
        self,
        logits: torch.Tensor,
        batch: Mapping[str, torch.Tensor],
        option_ids: Sequence[int] | torch.Tensor,
        em: EMRegularizer | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its parts (``lm``, ``ece`` as floats) from one forward pass."""
        parts: dict[str, float] = {}
        total = logits.new_zeros((), dtype=logits.dtype).float()
        if self.lm_weight > 0:
            if self.method == "label_smoothing":
                tok = label_smoothing_lm_loss(
                    logits,
                    batch["labels"],
                    batch["answer_pos"],
                    batch["answers"],
                    option_ids,
                    self.smoothing,
                )
            else:
                tok = lm_loss(logits, batch["labels"])
            parts["lm"] = float(tok.detach())
            total = total + self.lm_weight * tok
        if self.lam > 0:
            if em is None:
                raise ValueError("lambda > 0 needs an EMRegularizer with an E-step estimate")
            opt = option_logits_at_answer(logits, batch["answer_pos"], option_ids)
            index = batch.get("index")
            reg = em.loss(opt, ids=None if index is None else index.cpu().numpy())
            parts["ece"] = float(reg.detach())
            total = total + self.lam * reg
        return total, parts
