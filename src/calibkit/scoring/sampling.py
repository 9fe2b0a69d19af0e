"""Sampling settings, per-sample seeds and a cached, resumable sampler over any backend.

A backend that can sample implements ``sample(prompts, params, max_new_tokens)``, returning for
every prompt a list of ``params.n`` results (:class:`~calibkit.scoring.backends.base.Generation`
or :class:`~calibkit.scoring.backends.base.ItemFailure`).

Seed convention (every backend follows it, so a sample is the same however it was asked for):
sample ``j`` of a call with seed ``s`` is drawn with seed ``s + j``. Calling with ``n=1`` and seed
``s + j`` therefore gives sample ``j`` again, which is what :func:`sample_cached` does, so that
every (prompt, sample index) is one cache entry and a killed run resumes exactly; raising ``n``
later reuses the samples already drawn.

- the transformers backend draws each (prompt, sample) from its own ``torch.Generator`` seeded
  from :func:`row_seed` (the seed and the prompt's token ids), so results do not depend on how
  prompts are batched;
- the OpenAI-compatible backend sends one request per sample with ``seed: s + j`` (llama.cpp's
  server ignores ``n`` and honours ``seed``; see ``tests/fixtures/llama_server``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from calibkit.scoring.backends.base import Generation, ItemFailure, PartialResults, Prompt
from calibkit.scoring.cache import ScoreCache, cache_key, map_cached

__all__ = [
    "SamplingBackend",
    "SamplingParams",
    "decode_generation",
    "encode_generation",
    "prompt_fingerprint",
    "row_seed",
    "sample_cached",
    "sample_keys",
    "sample_token",
]

_KEY_VERSION = "sample-v1"


@dataclass(frozen=True)
class SamplingParams:
    """How to sample.

    Attributes
    ----------
    temperature : float
        >= 0; ``0`` is greedy decoding (every sample is the argmax path).
    top_p : float
        Nucleus mass in (0, 1]; ``1`` keeps the whole distribution.
    seed : int
        >= 0. Sample ``j`` uses seed ``seed + j`` (see the module docstring).
    n : int
        Samples per prompt, >= 1.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    n: int = 1

    def __post_init__(self) -> None:
        t, p = self.temperature, self.top_p
        if isinstance(t, bool) or not isinstance(t, int | float) or not t >= 0 or t == float("inf"):
            raise ValueError(f"temperature must be a finite number >= 0, got {t!r}")
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 1:
            raise ValueError(f"top_p must be a number in (0, 1], got {p!r}")
        for name in ("seed", "n"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{name} must be an int, got {v!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        object.__setattr__(self, "temperature", float(t))
        object.__setattr__(self, "top_p", float(p))

    def for_sample(self, j: int) -> SamplingParams:
        """The settings that draw sample ``j`` alone (``n=1``, seed ``seed + j``)."""
        return replace(self, n=1, seed=self.seed + j)

    def fingerprint(self, j: int) -> str:
        """Cache-key part of sample ``j``: temperature, top_p and its own seed (not ``n``)."""
        return json.dumps(
            {"T": self.temperature, "top_p": self.top_p, "seed": self.seed + j}, sort_keys=True
        )


@runtime_checkable
class SamplingBackend(Protocol):
    """A backend that can sample (on top of :class:`~calibkit.scoring.backends.base.Backend`)."""

    @property
    def name(self) -> str: ...

    def sample(
        self, prompts: Sequence[Prompt], params: SamplingParams, max_new_tokens: int = 64
    ) -> Sequence[Sequence[Generation | ItemFailure]]: ...


def row_seed(seed: int, token_ids: Sequence[int]) -> int:
    """A 63-bit generator seed from a sample's seed and its prompt's token ids."""
    h = hashlib.sha256(f"{int(seed)}|".encode())
    h.update(",".join(str(int(t)) for t in token_ids).encode())
    return int.from_bytes(h.digest()[:8], "little") >> 1


def sample_token(logprobs: Any, params: SamplingParams, generator: Any) -> int:
    """Draw one token id from a (V,) torch tensor of log-probabilities.

    Temperature ``0`` returns the argmax. Otherwise the log-probabilities are divided by the
    temperature, renormalised, cut to the smallest set of most likely tokens whose mass reaches
    ``top_p``, and sampled with ``generator`` (a CPU ``torch.Generator``).
    """
    import torch

    if params.temperature == 0:
        return int(torch.argmax(logprobs))
    probs = torch.softmax(logprobs.double() / params.temperature, dim=-1)
    if params.top_p < 1:
        sp, si = torch.sort(probs, descending=True)
        keep = (torch.cumsum(sp, dim=-1) - sp) < params.top_p  # mass before the token < top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def prompt_fingerprint(prompt: Prompt) -> str:
    """A stable text form of a prompt (string or chat messages) for cache keys."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def encode_generation(g: Generation) -> dict[str, Any]:
    """A sample as a JSON object (a text-only reply keeps its ``n_output_tokens``)."""
    out: dict[str, Any] = {
        "text": g.text,
        "tokens": list(g.tokens),
        "logprobs": [dict(d) for d in g.logprobs],
    }
    n = getattr(g, "n_output_tokens", None)
    if n is not None:
        out["n_output_tokens"] = n
    return out


def decode_generation(v: Any) -> Generation:
    """Inverse of :func:`encode_generation`; ``ValueError`` naming the field that is wrong."""
    if not isinstance(v, dict):
        raise ValueError(f"a cached sample is {type(v).__name__}, expected an object")
    text, tokens, lps = v.get("text"), v.get("tokens"), v.get("logprobs")
    if not isinstance(text, str):
        raise ValueError(f"a cached sample's 'text' is {type(text).__name__}, expected str")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise ValueError("a cached sample's 'tokens' is not a list of strings")
    if not isinstance(lps, list) or not all(isinstance(d, dict) for d in lps):
        raise ValueError("a cached sample's 'logprobs' is not a list of objects")
    for d in lps:
        for t, x in d.items():
            if not isinstance(x, int | float) or not x <= 0:
                raise ValueError(f"a cached sample's logprob of {t!r} is {x!r}, not a number <= 0")
    if "n_output_tokens" in v:
        from calibkit.scoring.backends.openai_schema import TextGeneration

        n = v["n_output_tokens"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"a cached sample's 'n_output_tokens' is {n!r}, not an int >= 0")
        return TextGeneration(
            text=text, tokens=tokens, logprobs=[dict(d) for d in lps], n_output_tokens=n
        )
    return Generation(text=text, tokens=tokens, logprobs=[dict(d) for d in lps])


def sample_keys(
    backend_name: str, prompts: Sequence[Prompt], params: SamplingParams, max_new_tokens: int
) -> tuple[list[tuple[int, int]], list[str]]:
    """``(items, keys)`` of :func:`sample_cached`: ``(prompt index, sample index)`` pairs in
    sample-major order (a batch holds many prompts with the same sample index: one backend call)
    and the cache key of each."""
    items = [(i, j) for j in range(params.n) for i in range(len(prompts))]
    fps = [prompt_fingerprint(p) for p in prompts]
    keys = [
        cache_key(_KEY_VERSION, backend_name, str(max_new_tokens), params.fingerprint(j), fps[i])
        for i, j in items
    ]
    return items, keys


def sample_cached(
    backend: SamplingBackend,
    prompts: Sequence[Prompt],
    params: SamplingParams,
    *,
    max_new_tokens: int = 64,
    cache: ScoreCache | None = None,
    batch_size: int = 16,
    progress: bool = False,
    stats: dict[str, int] | None = None,
) -> list[list[Generation | ItemFailure]]:
    """``params.n`` samples of every prompt, each (prompt, sample index) cached on its own.

    The key of sample ``j`` holds the backend name, the prompt, ``max_new_tokens``, the
    temperature, top_p and the seed ``params.seed + j`` (not ``n``). Failures are never cached;
    Ctrl-C keeps the samples finished before it (see :func:`~calibkit.scoring.cache.map_cached`).

    Returns
    -------
    list of n_prompts lists of ``params.n`` Generation or ItemFailure
    """
    if not isinstance(params, SamplingParams):
        raise ValueError(f"params must be SamplingParams, got {type(params).__name__}")
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    prompts = list(prompts)
    items, keys = sample_keys(backend.name, prompts, params, max_new_tokens)

    def run(batch: list[tuple[int, int]]) -> list[Generation | ItemFailure]:
        out: dict[int, Generation | ItemFailure] = {}
        by_j: dict[int, list[int]] = {}
        for pos, (_, j) in enumerate(batch):
            by_j.setdefault(j, []).append(pos)
        for j, positions in by_j.items():
            try:
                res = backend.sample(
                    [prompts[batch[p][0]] for p in positions], params.for_sample(j), max_new_tokens
                )
            except PartialResults as e:
                done = {
                    positions[k]: r[0]
                    for k, r in e.results.items()
                    if isinstance(k, int) and 0 <= k < len(positions) and len(r) == 1
                }
                raise PartialResults({**out, **done}) from None
            if len(res) != len(positions):
                raise ValueError(
                    f"backend {backend.name} returned {len(res)} results for {len(positions)} "
                    "prompts"
                )
            for p, r in zip(positions, res, strict=True):
                if len(r) != 1:
                    raise ValueError(
                        f"backend {backend.name} returned {len(r)} samples, expected 1 (n=1)"
                    )
                g = r[0]
                if not isinstance(g, Generation | ItemFailure):
                    g = ItemFailure(f"backend returned {type(g).__name__}, expected a Generation")
                out[p] = g
        return [out[p] for p in range(len(batch))]

    flat = map_cached(
        run,
        items,
        keys,
        cache,
        batch_size=batch_size,
        desc="sampling",
        progress=progress,
        encode=encode_generation,
        decode=decode_generation,
        stats=stats,
    )
    result: list[list[Generation | ItemFailure]] = [[] for _ in prompts]
    for (i, _), r in zip(items, flat, strict=True):  # j ascending within each prompt
        result[i].append(r)
    return result
