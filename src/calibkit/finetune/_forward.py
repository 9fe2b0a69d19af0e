"""One causal-LM forward over a left-padded batch, keeping only the last positions' logits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["causal_forward", "position_ids_from_mask"]


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions ``0, 1, ...`` counted over real tokens only (so left padding changes nothing)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def causal_forward(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, keep: int = 0
) -> torch.Tensor:
    """(B, n, V) logits of the last ``n = keep`` positions (all positions when ``keep = 0``).

    Left-padded input is supported through explicit ``position_ids``. Skipping the vocabulary
    projection of positions nobody reads saves a large share of a small model's compute.
    """
    pos = position_ids_from_mask(attention_mask)
    kw: dict[str, Any] = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": pos,
        "use_cache": False,
    }
    if keep > 0:
        try:
            return model(**kw, logits_to_keep=keep).logits
        except TypeError:  # a model class without logits_to_keep
            pass
    logits = model(**kw).logits
    return logits[:, -keep:] if keep > 0 else logits
