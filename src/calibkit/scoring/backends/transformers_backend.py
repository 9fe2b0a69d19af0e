"""Local Hugging Face ``transformers`` backend: batched, left-padded, with shared-prefix reuse.

Decoder-only models
-------------------
Prompts are tokenised, sorted by length and run in batches of ``batch_size``. Every batch is one
prefill forward pass plus, for :meth:`TransformersBackend.generate`, one forward pass per new
token through a KV cache (greedy decoding written out here, so that every step's full-vocabulary
log-probabilities are at hand).

**Shared prefix reuse.** Scoring prompts share a long head (system prompt, task description,
few-shot examples). The backend keeps the KV cache of such a head ("anchor") and runs only the
rest of each prompt:

1. the batch's longest common token prefix ``C`` is found (what can be shared: for a batch, ``C``
   itself; for a lone prompt, the part of ``C`` it shares with the previous call's prompt);
2. if no stored anchor covers all but fewer than ``min_prefix_tokens`` of that shareable part, it
   is encoded once and stored as a new anchor (least recently used anchors beyond
   ``max_prefixes`` are dropped); otherwise the best anchor's cache is cropped to the length
   ``m`` it shares with ``C`` and broadcast over the batch;
3. the suffixes (tokens ``m:``) are left-padded; the attention mask is ``[1]*m + suffix mask`` and
   the position ids continue from ``m`` skipping the padding, so the result equals running each
   prompt on its own (checked to ~1e-5 in the tests).

Because anchors are matched on token ids, reuse is exact and needs no hint from the caller, and it
also speeds up a loop over single prompts. Sliding-window models reuse a prefix only while the
whole sequence fits in the window.

Encoder-decoder models run the encoder once per batch and decode greedily; no prefix reuse.

The KV cache is a ``transformers.DynamicCache`` object passed as ``cache=`` (the current API;
``past_key_values=`` on transformers versions before its rename), so no deprecation warning is
emitted. Log-probabilities are ``log_softmax`` over the full vocabulary, in float32. Candidate token
strings are matched to *every* vocabulary id whose single-token decoding equals the string; when
several ids match, the largest log-probability is reported.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from calibkit.scoring.backends.base import Generation, Prompt

__all__ = ["TransformersBackend"]

_EXTRA_EOS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>", "<eos>", "</s>")


def _cache_keyword(model: Any) -> str:
    """``"cache"`` when ``model.forward`` takes the current Cache-object argument of that name
    (transformers 5.x), else the older ``"past_key_values"``."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins / C extensions
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class TransformersBackend:
    """A local ``transformers`` model behind the :class:`~calibkit.scoring.backends.base.Backend`
    protocol.

    Parameters
    ----------
    model : transformers PreTrainedModel
        A causal LM or an encoder-decoder LM, in eval mode.
    tokenizer : transformers tokenizer
        Its tokenizer; a chat template is needed for chat-message prompts.
    name : str, optional
        Stable identifier for cache keys; defaults to the name :func:`load_causal_lm` gave the
        model, else the basename of ``config._name_or_path``.
    batch_size : int
        Prompts per forward pass.
    prefix_reuse : bool
        Reuse the KV cache of shared prompt prefixes (decoder-only models).
    min_prefix_tokens : int
        Shortest shared prefix worth reusing.
    max_prefixes : int
        How many prefix caches to keep (least recently used are dropped).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str | None = None,
        batch_size: int = 8,
        prefix_reuse: bool = True,
        min_prefix_tokens: int = 16,
        max_prefixes: int = 4,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if min_prefix_tokens < 1:
            raise ValueError(f"min_prefix_tokens must be >= 1, got {min_prefix_tokens}")
        if max_prefixes < 1:
            raise ValueError(f"max_prefixes must be >= 1, got {max_prefixes}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.prefix_reuse = prefix_reuse
        self.min_prefix_tokens = min_prefix_tokens
        self.max_prefixes = max_prefixes
        cfg = model.config
        self.is_encoder_decoder = bool(getattr(cfg, "is_encoder_decoder", False))
        base = name or getattr(model, "calibkit_name", None)
        if base is None:
            base = os.path.basename(str(getattr(cfg, "_name_or_path", "") or type(model).__name__))
        self._name = f"hf:{base}:{str(next(model.parameters()).dtype).removeprefix('torch.')}"
        self._vocab: list[str] | None = None
        self._by_string: dict[str, list[int]] | None = None
        self._anchors: OrderedDict[tuple[int, ...], list[tuple[Any, Any]]] = OrderedDict()
        self._last_common: list[int] = []
        self._eos: set[int] = self._eos_ids()
        self._cache_kw = _cache_keyword(model)
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad token; set tokenizer.pad_token first")
        self.stats: dict[str, int] = {"forward_tokens": 0, "reused_tokens": 0, "prompts": 0}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str] | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        dtype: str = "float32",
        **kwargs: Any,
    ) -> TransformersBackend:
        """Load a model with :func:`calibkit.scoring.models.load_causal_lm` and wrap it."""
        from calibkit.scoring.models import load_causal_lm

        lm, tok = load_causal_lm(model, cache_dir=cache_dir, dtype=dtype)
        return cls(lm, tok, **kwargs)

    @property
    def name(self) -> str:
        """``hf:<model>:<dtype>``, stable across machines."""
        return self._name

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for src in (
            self.tokenizer.eos_token_id,
            getattr(self.model.generation_config, "eos_token_id", None),
        ):
            if isinstance(src, int):
                ids.add(src)
            elif isinstance(src, list | tuple):
                ids.update(int(i) for i in src)
        vocab = self.tokenizer.get_vocab()
        for t in _EXTRA_EOS:
            if t in vocab:
                ids.add(int(vocab[t]))
        return ids

    # ------------------------------------------------------------------ tokens
    def _vocab_strings(self) -> list[str]:
        if self._vocab is None:
            n = len(self.tokenizer)
            self._vocab = list(
                self.tokenizer.batch_decode(
                    [[i] for i in range(n)], clean_up_tokenization_spaces=False
                )
            )
            by: dict[str, list[int]] = {}
            for i, s in enumerate(self._vocab):
                by.setdefault(s, []).append(i)
            self._by_string = by
        return self._vocab

    def token_ids(self, token: str) -> list[int]:
        """Every vocabulary id whose single-token decoding is ``token`` (empty if none)."""
        self._vocab_strings()
        assert self._by_string is not None
        return [i for i in self._by_string.get(token, []) if i < self._n_logits()]

    def _n_logits(self) -> int:
        out = self.model.get_output_embeddings()
        return int(out.weight.shape[0]) if out is not None else len(self.tokenizer)

    def tokenize(self, text: str) -> list[str]:
        """Token strings of ``text`` as the model would read it mid-sequence (no special tokens)."""
        vocab = self._vocab_strings()
        return [vocab[i] for i in self.tokenizer.encode(text, add_special_tokens=False)]

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt: chat messages through the chat template (with the generation
        prompt), plain strings with the tokenizer's special tokens."""
        if isinstance(prompt, str):
            return list(self.tokenizer.encode(prompt, add_special_tokens=True))
        if not isinstance(prompt, list) or not all(isinstance(m, dict) for m in prompt):
            raise ValueError(
                f"a prompt must be a string or a list of chat messages, got {type(prompt).__name__}"
            )
        if not self.has_chat_template:
            raise ValueError(
                f"model {self.name} has no chat template; render prompts as plain text (chat=False)"
            )
        text = self.tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True
        )
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    # ------------------------------------------------------------------ public protocol
    def next_token_logprobs(
        self, prompts: Sequence[Prompt], candidates: Sequence[str]
    ) -> list[dict[str, float]]:
        """Log-probabilities of the ``candidates`` as the first answer token (one forward pass).

        Returns one dict per prompt; a candidate that is no single vocabulary token is absent.
        """
        cand = self._candidate_ids(candidates)
        ids = [self.encode(p) for p in prompts]
        out: list[dict[str, float]] = [{} for _ in ids]
        for idx, state in self._batches(ids):
            lp = state["logprobs"].numpy()
            for r, i in enumerate(idx):
                out[i] = {c: float(lp[r, cid].max()) for c, cid in cand.items()}
        return out

    def next_token_logprob_matrix(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """(n, V) float32 next-token log-probabilities of every prompt (one forward pass each).

        Holds ``n * V`` floats: for a few prompts (tests, inspection), not for large runs."""
        ids = [self.encode(p) for p in prompts]
        out = np.empty((len(ids), self._n_logits()), dtype=np.float32)
        for idx, state in self._batches(ids):
            out[idx] = state["logprobs"].numpy()
        return out

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        max_new_tokens: int = 8,
        candidates: Sequence[str] = (),
        top_logprobs: int = 20,
    ) -> list[Generation]:
        """Greedy decoding; per output position (the end-of-sequence position included) the
        log-probabilities of the chosen token, of every candidate and of the ``top_logprobs``
        most likely tokens."""
        import torch

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if top_logprobs < 0:
            raise ValueError(f"top_logprobs must be >= 0, got {top_logprobs}")
        cand = self._candidate_ids(candidates)
        vocab = self._vocab_strings()
        ids = [self.encode(p) for p in prompts]
        results: list[Generation | None] = [None] * len(ids)
        for idx, state in self._batches(ids):
            b = len(idx)
            chosen: list[list[int]] = [[] for _ in range(b)]
            steps: list[list[dict[str, float]]] = [[] for _ in range(b)]
            done = np.zeros(b, dtype=bool)
            for step in range(max_new_tokens):
                logp = state["logprobs"]  # (b, V) float32
                nxt = torch.argmax(logp, dim=-1)
                top = (
                    torch.topk(logp, k=min(top_logprobs, logp.shape[-1])) if top_logprobs else None
                )
                lp_np = logp.numpy()
                for r in range(b):
                    if done[r]:
                        continue
                    t = int(nxt[r])
                    d: dict[str, float] = {}
                    if top is not None:
                        for v, i in zip(
                            top.values[r].tolist(), top.indices[r].tolist(), strict=True
                        ):
                            s = vocab[i]
                            d[s] = max(d.get(s, -np.inf), float(v))
                    for c, cid in cand.items():
                        d[c] = float(lp_np[r, cid].max())
                    s = vocab[t]
                    d[s] = max(d.get(s, -np.inf), float(lp_np[r, t]))
                    chosen[r].append(t)
                    steps[r].append(d)
                    if t in self._eos:
                        done[r] = True
                if done.all() or step == max_new_tokens - 1:
                    break
                state = self._step(state, nxt)
            for r, i in enumerate(idx):
                toks = [vocab[t] for t in chosen[r]]
                text_ids = [t for t in chosen[r] if t not in self._eos]
                text = self.tokenizer.decode(text_ids, skip_special_tokens=True)
                results[i] = Generation(text=text, tokens=toks, logprobs=steps[r])
        return [g for g in results if g is not None]

    def sample(
        self, prompts: Sequence[Prompt], params: Any, max_new_tokens: int = 64
    ) -> list[list[Generation]]:
        """``params.n`` sampled answers per prompt (:class:`~calibkit.scoring.sampling.
        SamplingParams`), batched.

        Sample ``j`` of a prompt is drawn with its own ``torch.Generator`` seeded from
        ``params.seed + j`` and the prompt's token ids, so it does not depend on the batch it ran
        in. ``logprobs[t]`` holds the full-distribution (untempered) log-probability of the token
        drawn at position ``t``. Returns ``n_prompts`` lists of ``n`` Generations.
        """
        import torch

        from calibkit.scoring.sampling import SamplingParams, row_seed, sample_token

        if not isinstance(params, SamplingParams):
            raise ValueError(f"params must be SamplingParams, got {type(params).__name__}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        vocab = self._vocab_strings()
        ids = [self.encode(p) for p in prompts]
        rows = [(i, j) for i in range(len(ids)) for j in range(params.n)]
        out: list[list[Generation]] = [[] for _ in ids]
        slots: dict[tuple[int, int], Generation] = {}
        for idx, state in self._batches([ids[i] for i, _ in rows]):
            b = len(idx)
            gens = [
                torch.Generator().manual_seed(row_seed(params.seed + rows[r][1], ids[rows[r][0]]))
                for r in idx
            ]
            chosen: list[list[int]] = [[] for _ in range(b)]
            steps: list[list[dict[str, float]]] = [[] for _ in range(b)]
            done = np.zeros(b, dtype=bool)
            for step in range(max_new_tokens):
                logp = state["logprobs"]
                nxt = torch.argmax(logp, dim=-1)
                for r in range(b):
                    if done[r]:
                        continue
                    t = sample_token(logp[r], params, gens[r])
                    nxt[r] = t
                    chosen[r].append(t)
                    steps[r].append({vocab[t]: float(logp[r, t])})
                    if t in self._eos:
                        done[r] = True
                if done.all() or step == max_new_tokens - 1:
                    break
                state = self._step(state, nxt)
            for r, k in enumerate(idx):
                text_ids = [t for t in chosen[r] if t not in self._eos]
                text = self.tokenizer.decode(text_ids, skip_special_tokens=True)
                slots[rows[k]] = Generation(
                    text=text, tokens=[vocab[t] for t in chosen[r]], logprobs=steps[r]
                )
        for i, j in rows:
            out[i].append(slots[(i, j)])
        return out

    # ------------------------------------------------------------------ internals
    def _candidate_ids(self, candidates: Sequence[str]) -> dict[str, np.ndarray]:
        if isinstance(candidates, str):
            raise ValueError("candidates must be a sequence of token strings, not one string")
        out: dict[str, np.ndarray] = {}
        for c in candidates:
            ids = self.token_ids(str(c))
            if ids:
                out[str(c)] = np.asarray(ids, dtype=np.int64)
        return out

    def _batches(self, ids: list[list[int]]) -> Any:
        """Yield ``(indices, state)`` per batch, batches formed from length-sorted prompts."""
        for i, seq in enumerate(ids):
            if len(seq) == 0:
                raise ValueError(f"prompt {i} encodes to zero tokens")
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            batch = [ids[i] for i in idx]
            state = (
                self._prefill_seq2seq(batch) if self.is_encoder_decoder else self._prefill(batch)
            )
            yield idx, state

    def _cache_arg(self, cache: Any) -> dict[str, Any]:
        """The KV-cache keyword argument of ``model.forward`` (``cache`` on transformers >= 5.x,
        where ``past_key_values`` is deprecated; ``past_key_values`` before)."""
        return {self._cache_kw: cache}

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _window(self) -> int | None:
        cfg = self.model.config.get_text_config(decoder=True)
        types = getattr(cfg, "layer_types", None) or []
        w = getattr(cfg, "sliding_window", None)
        if w and (any("sliding" in str(t) for t in types) or not types):
            return int(w)
        return None

    def _anchor(self, batch: list[list[int]], max_new: int = 64) -> tuple[int, Any]:
        """Pick or build a prefix cache for the batch; returns ``(m, per-layer (k, v))``."""
        if not self.prefix_reuse:
            return 0, None
        limit = min(len(s) for s in batch) - 1  # leave >= 1 token to run per prompt
        common = batch[0][:limit]
        for s in batch[1:]:
            common = common[: _lcp(common, s)]
        window = self._window()
        if window is not None and max(len(s) for s in batch) + max_new >= window:
            return 0, None
        best, best_m = None, 0
        for key in self._anchors:
            m = _lcp(key, common)
            if m > best_m:
                best, best_m = key, m
        # What a new anchor could cover: a batch's common prefix (mostly the template); for a
        # lone prompt, only what it shares with the previous call (its own text is not shared).
        last, self._last_common = self._last_common, common
        shareable = len(common) if len(batch) > 1 else _lcp(common, last)
        if shareable - best_m < self.min_prefix_tokens:  # no much better anchor to build
            if best is not None and best_m >= self.min_prefix_tokens:
                self._anchors.move_to_end(best)
                return best_m, self._anchors[best]
            return 0, None
        common = common[:shareable]
        import torch

        cache = self._new_cache()
        x = torch.tensor([common], dtype=torch.long, device=self.device)
        self.model(
            input_ids=x,
            attention_mask=torch.ones_like(x),
            position_ids=torch.arange(len(common), device=self.device)[None],
            **self._cache_arg(cache),
            use_cache=True,
            logits_to_keep=1,
        )
        self.stats["forward_tokens"] += len(common)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        key = tuple(common)
        self._anchors[key] = kv
        while len(self._anchors) > self.max_prefixes:
            self._anchors.popitem(last=False)
        return len(common), kv

    def _prefill(self, batch: list[list[int]]) -> dict[str, Any]:
        import torch

        with torch.inference_mode():
            m, kv = self._anchor(batch)
            b = len(batch)
            cache = self._new_cache()
            if kv is not None:
                for layer, (k, v) in zip(cache.layers, kv, strict=True):
                    layer.update(
                        k[:, :, :m].expand(b, -1, -1, -1), v[:, :, :m].expand(b, -1, -1, -1)
                    )
            suffix = [s[m:] for s in batch]
            width = max(len(s) for s in suffix)
            pad = int(self.tokenizer.pad_token_id)
            x = torch.full((b, width), pad, dtype=torch.long)
            smask = torch.zeros((b, width), dtype=torch.long)
            for r, s in enumerate(suffix):
                x[r, width - len(s) :] = torch.tensor(s, dtype=torch.long)
                smask[r, width - len(s) :] = 1
            mask = torch.cat([torch.ones((b, m), dtype=torch.long), smask], dim=1)
            pos = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, m:]
            dev = self.device
            out = self.model(
                input_ids=x.to(dev),
                attention_mask=mask.to(dev),
                position_ids=pos.to(dev),
                **self._cache_arg(cache),
                use_cache=True,
                logits_to_keep=1,
            )
            self.stats["forward_tokens"] += int(smask.sum())
            self.stats["reused_tokens"] += m * b
            self.stats["prompts"] += b
            logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1).cpu()
        return {"logprobs": logp, "cache": cache, "mask": mask, "pos": pos[:, -1].clone()}

    def _step(self, state: dict[str, Any], nxt: Any) -> dict[str, Any]:
        import torch

        with torch.inference_mode():
            b = nxt.shape[0]
            dev = self.device
            if self.is_encoder_decoder:
                out = self.model(
                    encoder_outputs=state["encoder"],
                    attention_mask=state["mask"].to(dev),
                    decoder_input_ids=nxt[:, None].to(dev),
                    **self._cache_arg(state["cache"]),
                    use_cache=True,
                )
                logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1).cpu()
                return {**state, "logprobs": logp}
            mask = torch.cat([state["mask"], torch.ones((b, 1), dtype=torch.long)], dim=1)
            pos = state["pos"] + 1
            out = self.model(
                input_ids=nxt[:, None].to(dev),
                attention_mask=mask.to(dev),
                position_ids=pos[:, None].to(dev),
                **self._cache_arg(state["cache"]),
                use_cache=True,
                logits_to_keep=1,
            )
            self.stats["forward_tokens"] += b
            logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1).cpu()
        return {"logprobs": logp, "cache": state["cache"], "mask": mask, "pos": pos}

    def _prefill_seq2seq(self, batch: list[list[int]]) -> dict[str, Any]:
        import torch
        from transformers import DynamicCache, EncoderDecoderCache

        with torch.inference_mode():
            b = len(batch)
            width = max(len(s) for s in batch)
            pad = int(self.tokenizer.pad_token_id)
            x = torch.full((b, width), pad, dtype=torch.long)
            mask = torch.zeros((b, width), dtype=torch.long)
            for r, s in enumerate(batch):
                x[r, : len(s)] = torch.tensor(s, dtype=torch.long)
                mask[r, : len(s)] = 1
            dev = self.device
            enc = self.model.get_encoder()(input_ids=x.to(dev), attention_mask=mask.to(dev))
            start = self.model.config.decoder_start_token_id
            if start is None:
                start = pad
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            out = self.model(
                encoder_outputs=enc,
                attention_mask=mask.to(dev),
                decoder_input_ids=torch.full((b, 1), int(start), dtype=torch.long, device=dev),
                **self._cache_arg(cache),
                use_cache=True,
            )
            self.stats["forward_tokens"] += int(mask.sum()) + b
            self.stats["prompts"] += b
            logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1).cpu()
        return {"logprobs": logp, "cache": cache, "mask": mask, "encoder": enc}

    def clear_prefix_cache(self) -> None:
        """Drop the stored prefix caches."""
        self._anchors.clear()
        self._last_common = []

    def __repr__(self) -> str:
        return f"TransformersBackend({self.name!r}, batch_size={self.batch_size})"
