"""The protocol every LLM backend implements (local transformers, OpenAI-compatible HTTP, ...).

A *prompt* is either a plain string (sent as-is, no chat template) or a list of chat messages
``[{"role": "system"|"user"|"assistant", "content": str}, ...]`` that the backend renders with the
model's chat template (transformers) or sends to a chat endpoint (HTTP), with the generation
prompt appended.

Token strings are the decoded text of single tokens (``" Yes"``, ``"yes"``, ``"A"``...). A backend
reports log-probabilities, i.e. log-softmax over the full vocabulary at that position. Where a
backend only sees the top-k alternatives (HTTP), a candidate outside the top-k is reported as
missing (absent from the dict); the scorers treat it as ``-inf``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Backend", "ChatMessage", "Generation", "Prompt"]

ChatMessage = dict[str, str]
Prompt = str | list[ChatMessage]


@dataclass
class Generation:
    """One generated answer.

    Attributes
    ----------
    text : str
        The decoded answer (special tokens stripped).
    tokens : list of str
        The generated token strings, one per output position.
    logprobs : list of dict[str, float]
        Per output position, log-probabilities of token strings at that position: at least the
        chosen token and every requested candidate the backend could see.
    """

    text: str
    tokens: list[str] = field(default_factory=list)
    logprobs: list[dict[str, float]] = field(default_factory=list)


@runtime_checkable
class Backend(Protocol):
    """What a scorer needs from a model."""

    @property
    def name(self) -> str:
        """Stable identifier of model + settings, used in cache keys."""
        ...

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        max_new_tokens: int = 8,
        candidates: Sequence[str] = (),
        top_logprobs: int = 20,
    ) -> list[Generation]:
        """Greedy-decode each prompt; report logprobs of the chosen token, of ``candidates``
        (token strings) and of up to ``top_logprobs`` alternatives at every output position."""
        ...

    def next_token_logprobs(
        self, prompts: Sequence[Prompt], candidates: Sequence[str]
    ) -> list[dict[str, float]]:
        """One forward pass: log-probabilities of the candidate token strings as the first answer
        token of each prompt (no generation). Missing candidates are absent from the dict."""
        ...
