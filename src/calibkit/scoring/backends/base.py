"""The protocol every LLM backend implements (local transformers, OpenAI-compatible HTTP, ...).

A *prompt* is either a plain string (sent as-is, no chat template) or a list of chat messages
``[{"role": "system"|"user"|"assistant", "content": str}, ...]`` that the backend renders with the
model's chat template (transformers) or sends to a chat endpoint (HTTP), with the generation
prompt appended.

Token strings are the decoded text of single tokens (``" Yes"``, ``"yes"``, ``"A"``...). A backend
reports log-probabilities, i.e. log-softmax over the full vocabulary at that position: finite
numbers <= 0 (a backend validates what it receives; NaN, positive or infinite values never reach a
scorer). Where a backend only sees the top-k alternatives (HTTP), a candidate outside the top-k is
reported as missing (absent from the dict), and the backend reports every other token of the top-k
too, so a scorer can bound a missing candidate from above by the smallest reported value.

A prompt that failed (an HTTP error or timeout after the retries, a malformed reply, a reply
without usable log-probabilities, an empty completion with nothing to score) is returned as an
:class:`ItemFailure` in its place, never as a made-up score and never as an exception that loses
the rest of the batch. Scorers never turn a failure into a score and never cache it. Errors that
concern every prompt alike (bad arguments, a rejected API key, an unreachable server) are raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Backend", "ChatMessage", "Generation", "ItemFailure", "PartialResults", "Prompt"]

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


@dataclass(frozen=True)
class ItemFailure:
    """Why one prompt produced no result (returned in place of its result).

    Attributes
    ----------
    reason : str
        One line naming what went wrong (``"HTTP 500 after 3 attempts: ..."``,
        ``"empty completion ..."``, ``"choices[0].logprobs.content[0].logprob is NaN"``).
    index : int or None
        Position of the prompt in the call that failed, when known.
    """

    reason: str
    index: int | None = None

    def __str__(self) -> str:
        return self.reason


class PartialResults(KeyboardInterrupt):
    """Ctrl-C during a call: the results that were finished before it, so they can be kept.

    A backend (or a scorer's batch function) may raise this instead of a bare
    ``KeyboardInterrupt``; it *is* a ``KeyboardInterrupt``, so code that does not know it still
    stops. :func:`~calibkit.scoring.cache.map_cached` commits the successes among ``results``
    before it lets the interrupt through.

    Attributes
    ----------
    results : dict of int -> result
        Position in the call's input -> its finished result (or :class:`ItemFailure`).
    """

    def __init__(self, results: dict[int, Any]):
        super().__init__("")
        self.results = results


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
    ) -> Sequence[Generation | ItemFailure]:
        """Greedy-decode each prompt; report logprobs of the chosen token, of ``candidates``
        (token strings) and of up to ``top_logprobs`` alternatives at every output position.
        One result per prompt, in order; an :class:`ItemFailure` for a prompt that failed."""
        ...

    def next_token_logprobs(
        self, prompts: Sequence[Prompt], candidates: Sequence[str]
    ) -> Sequence[dict[str, float] | ItemFailure]:
        """One forward pass: log-probabilities of the candidate token strings as the first answer
        token of each prompt (no generation). Missing candidates are absent from the dict; a
        top-k-only backend also includes the other tokens it saw at that position. An
        :class:`ItemFailure` for a prompt that failed (e.g. no usable log-probabilities)."""
        ...
