"""Backend for any OpenAI-compatible HTTP server that returns top log-probabilities.

Works with vLLM (``vllm serve MODEL --max-logprobs 20``), the llama.cpp server
(``llama-server -m model.gguf``), OpenAI, and other servers speaking the same API. The endpoint
follows the prompt:

- a list of chat messages goes to ``POST {base_url}/chat/completions`` with ``logprobs: true,
  top_logprobs: k, max_tokens, temperature: 0``; the answer's per-token log-probabilities are read
  from ``choices[0].logprobs.content``;
- a plain string goes, as it is, to the legacy ``POST {base_url}/completions`` with
  ``logprobs: k`` (no chat template, no server-side system prompt); read from
  ``choices[0].logprobs.{tokens, token_logprobs, top_logprobs}`` (the chat-style
  ``logprobs.content`` list that llama.cpp returns there is accepted too).

A call that wants only the text (``generate(..., top_logprobs=0)``, and
:meth:`~OpenAICompatibleBackend.sample`) sends no ``logprobs`` / ``top_logprobs`` fields at all,
so it works on servers that return no log-probabilities (OpenAI's newer models, many
providers); its replies are :class:`~calibkit.scoring.backends.openai_schema.TextGeneration`
values (text, no per-token log-probabilities). Every call that asks for log-probabilities still
needs them in the reply.

An HTTP server only reports the top-k alternatives at each position (k <= 20 on OpenAI and by
default on vLLM), so a candidate outside the top-k is *missing* from the returned dicts; the
backend returns every reported token, so the scorers can bound a missing class from above.

Every number that crosses the wire is checked: a log-probability must be a finite number <= 0
(values up to ``1e-4`` above 0, float rounding of a certain token, are read as 0; a ``-inf``
alternative is dropped, i.e. treated as not reported). Failures of one prompt come back as an
:class:`~calibkit.scoring.backends.base.ItemFailure` in its place, never as a score: an HTTP
error or timeout after the retries, a reply of the wrong shape (naming the field), a reply without
usable log-probabilities, an empty completion. Transient failures (timeouts, HTTP 408/409/425/
429/5xx, a body that is not JSON) are retried with exponential backoff and jitter, honouring
``Retry-After``. Failures that concern every prompt alike raise :class:`BackendError` at once: a
rejected key (401/403), an unknown endpoint or model (404), a server that cannot be reached after
the retries. Requests run concurrently on daemon threads, throttled by a token bucket; waiting
for them is interruptible (Ctrl-C stops a run at once, even against a stalled server). The API
key, any ``Bearer ...`` token and the ``user:password@`` of the base URL never appear in names,
reprs, errors or failure reasons.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from calibkit.scoring.backends._http_transport import (
    BackendError,
    HttpTransport,
    TokenBucket,
    redact_url,
)
from calibkit.scoring.backends._http_transport import (
    _retry_after as _retry_after,
)  # tests
from calibkit.scoring.backends.base import (
    Generation,
    ItemFailure,
    PartialResults,
    Prompt,
)
from calibkit.scoring.backends.openai_schema import (
    Malformed,
    build_payload,
    check_candidates,
    endpoint_path,
    first_position,
    parse_reply,
)

__all__ = [
    "BackendError",
    "OpenAICompatibleBackend",
    "TokenBucket",
    "is_openai_spec",
    "redact_url",
]


class OpenAICompatibleBackend(HttpTransport):
    """Score prompts with a model behind an OpenAI-compatible HTTP API.

    Parameters
    ----------
    base_url : str
        API root including the version prefix, e.g. ``"http://localhost:8000/v1"``. A
        ``user:password@`` part is used for the requests but kept out of :attr:`name`,
        :attr:`base_url`, reprs and messages.
    model : str
        Model name sent in each request (as the server knows it).
    api_key : str or None
        Bearer token; ``None`` reads ``$OPENAI_API_KEY``; no ``Authorization`` header when
        neither is set (local servers).
    timeout : float
        Seconds to wait for the connection and for each read of the response.
    max_retries : int
        Extra attempts after a transient failure (so at most ``max_retries + 1`` requests).
    backoff : float
        Base delay in seconds: attempt ``i`` waits ``min(max_backoff, backoff * 2**i)`` scaled by
        a jitter factor in [0.5, 1], or the server's ``Retry-After`` if longer (capped at
        ``max_backoff``).
    max_backoff : float
        Longest single wait between attempts.
    requests_per_second : float or None
        Sustained request rate across all threads (token bucket, retries included); ``None``
        for no limit.
    max_concurrency : int
        Requests in flight at once.
    use_chat : bool
        Whether scorers should render chat messages for this model (:attr:`has_chat_template`).
        The endpoint follows each prompt: chat messages go to ``/chat/completions``, a plain
        string to ``/completions``. ``False`` also refuses chat-message prompts.
    top_logprobs : int
        Alternatives requested per position (the server's maximum, 20 on OpenAI and vLLM's
        default ``--max-logprobs``); a call asking for more is capped to this.
    extra_body : mapping or None
        Extra JSON fields merged into every request (e.g. vLLM's ``{"top_k": 1}``).
    seed : int or None
        Seed of the jitter's random generator.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        requests_per_second: float | None = None,
        max_concurrency: int = 4,
        use_chat: bool = True,
        top_logprobs: int = 20,
        extra_body: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            shown = redact_url(base_url) if isinstance(base_url, str) else base_url
            raise ValueError(f"base_url must start with http:// or https://, got {shown!r}")
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string")
        if isinstance(timeout, bool) or not (
            isinstance(timeout, int | float) and timeout > 0 and math.isfinite(timeout)
        ):
            raise ValueError(f"timeout must be a finite number > 0, got {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if not (isinstance(backoff, int | float) and backoff >= 0 and math.isfinite(backoff)):
            raise ValueError(f"backoff must be a finite number >= 0, got {backoff!r}")
        if not (isinstance(max_backoff, int | float) and max_backoff >= 0):
            raise ValueError(f"max_backoff must be >= 0, got {max_backoff!r}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise ValueError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
        if isinstance(top_logprobs, bool) or not isinstance(top_logprobs, int) or top_logprobs < 0:
            raise ValueError(f"top_logprobs must be an int >= 0, got {top_logprobs!r}")
        if requests_per_second is not None:
            TokenBucket(requests_per_second)  # validates (ValueError naming the rate)
        self._url = base_url.rstrip("/")  # with credentials: only to find and redact them
        self.base_url = redact_url(self._url)
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.requests_per_second = requests_per_second
        self.max_concurrency = max_concurrency
        self.use_chat = bool(use_chat)
        self.top_logprobs = top_logprobs
        self.extra_body = dict(extra_body or {})
        self.seed = seed
        self._init_runtime()
        self.n_requests = 0  # HTTP attempts made (retries included), for monitoring

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> OpenAICompatibleBackend:
        """Build from a model spec ``"openai:<base_url>::<model>"``.

        E.g. ``"openai:http://localhost:8000/v1::Qwen/Qwen2.5-7B-Instruct"`` (a vLLM server);
        ``kwargs`` go to the constructor.
        """
        if not is_openai_spec(spec):
            raise ValueError(
                f"not an HTTP model spec (expected 'openai:<base_url>::<model>'): {spec!r}"
            )
        rest = spec[len("openai:") :]
        if "::" not in rest:
            raise ValueError(
                f"HTTP model spec {'openai:' + redact_url(rest)!r} lacks '::<model>'; expected "
                "'openai:<base_url>::<model>'"
            )
        base_url, model = rest.rsplit("::", 1)
        return cls(base_url, model, **kwargs)

    @property
    def name(self) -> str:
        """``"openai:{base_url}:{model}"`` (no credentials), used in cache keys."""
        return f"openai:{self.base_url}:{self.model}"

    @property
    def has_chat_template(self) -> bool:
        """Whether scorers should render chat messages (sent to the chat endpoint)."""
        return self.use_chat

    def __repr__(self) -> str:  # never shows the API key
        return (
            f"OpenAICompatibleBackend(base_url={self.base_url!r}, model={self.model!r}, "
            f"use_chat={self.use_chat})"
        )

    # -- Backend protocol ------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        max_new_tokens: int = 8,
        candidates: Sequence[str] = (),
        top_logprobs: int = 20,
    ) -> list[Generation | ItemFailure]:
        """Greedy-decode each prompt (``temperature: 0``).

        Parameters
        ----------
        prompts : sequence of str or list of chat messages
            A string goes to ``/completions`` as it is; chat messages to ``/chat/completions``.
        max_new_tokens : int
            ``max_tokens`` of the request, >= 1.
        candidates : sequence of str
            Token strings of interest; reported at a position only if the server listed them
            among its top alternatives there (an HTTP API cannot be asked for arbitrary tokens).
        top_logprobs : int
            Alternatives per position, capped to the backend's ``top_logprobs``. ``0`` asks for
            no log-probabilities at all (a text-only request: the reply's text, ``tokens`` and
            ``logprobs`` empty; works on servers that return none).

        Returns
        -------
        list of Generation or ItemFailure
            One per prompt, in order; ``logprobs[j]`` maps the token strings the server reported
            at output position j (the chosen one and the top alternatives) to log-probabilities.
            A prompt that failed (after the retries) or whose reply has no position to score
            gives an :class:`ItemFailure` naming the reason.

        Raises
        ------
        BackendError
            The key was rejected (401/403), the endpoint or model is unknown (404) or the server
            could not be reached after the retries.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        if isinstance(top_logprobs, bool) or not isinstance(top_logprobs, int) or top_logprobs < 0:
            raise ValueError(f"top_logprobs must be an int >= 0, got {top_logprobs!r}")
        check_candidates(candidates)
        k = min(top_logprobs, self.top_logprobs)
        lp = top_logprobs > 0
        payloads = [
            self._payload(p, max_new_tokens, k, i, logprobs=lp) for i, p in enumerate(prompts)
        ]
        return self._run_all(payloads)

    def next_token_logprobs(
        self, prompts: Sequence[Prompt], candidates: Sequence[str]
    ) -> list[dict[str, float] | ItemFailure]:
        """Log-probabilities at the first answer position (``max_tokens: 1``).

        Returns one dict per prompt with every token the server reported there (the chosen one
        and its ``top_logprobs`` alternatives): the ``candidates`` it listed, and the others, so
        a scorer can bound a missing candidate from above by the smallest reported value. An
        :class:`ItemFailure` for a prompt that failed or whose reply has no log-probabilities
        (e.g. an empty completion: the first token was end-of-sequence).
        """
        check_candidates(candidates)
        payloads = [self._payload(p, 1, self.top_logprobs, i) for i, p in enumerate(prompts)]
        try:
            gens = self._run_all(payloads)
        except PartialResults as e:
            raise PartialResults({i: first_position(g) for i, g in e.results.items()}) from None
        return [first_position(g) for g in gens]

    def sample(
        self, prompts: Sequence[Prompt], params: Any, max_new_tokens: int = 64
    ) -> list[list[Generation | ItemFailure]]:
        """``params.n`` sampled answers per prompt (:class:`~calibkit.scoring.sampling.
        SamplingParams`).

        One request per sample, with ``n: 1``, ``temperature``, ``top_p`` and ``seed: seed + j``
        for sample ``j``: servers differ on ``n`` (llama.cpp's ignores it and returns one
        choice), and one request per sample keeps each sample reproducible and cacheable on its
        own. Requests ask for no log-probabilities (text only, so sampling works on servers that
        return none; the samples' ``tokens`` and ``logprobs`` are empty). Failures are
        :class:`ItemFailure` values in place, as for :meth:`generate`.
        """
        from calibkit.scoring.sampling import SamplingParams

        if not isinstance(params, SamplingParams):
            raise ValueError(f"params must be SamplingParams, got {type(params).__name__}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        n = params.n
        payloads = []
        for i, p in enumerate(prompts):
            for j in range(n):
                body = self._payload(p, max_new_tokens, 0, i, logprobs=False)
                body.update(temperature=params.temperature, top_p=params.top_p)
                body["seed"] = params.seed + j
                payloads.append(body)
        try:
            flat = self._run_all(payloads)
        except PartialResults as e:  # hand on the prompts whose samples all finished
            grouped = {
                i: [e.results[i * n + j] for j in range(n)]
                for i in range(len(prompts))
                if all(i * n + j in e.results for j in range(n))
            }
            raise PartialResults(grouped) from None
        return [list(flat[i * n : (i + 1) * n]) for i in range(len(prompts))]

    def _payload(
        self, prompt: Prompt, max_tokens: int, k: int, i: int, *, logprobs: bool = True
    ) -> dict[str, Any]:
        return build_payload(
            self.model,
            prompt,
            max_tokens,
            k,
            i,
            use_chat=self.use_chat,
            extra_body=self.extra_body,
            logprobs=logprobs,
        )

    # -- the transport's hooks -------------------------------------------------------------
    def _endpoint(self, body: Mapping[str, Any]) -> tuple[str, str]:
        """(URL requested, URL shown in messages) for a payload: the same, no credentials."""
        url = f"{self.base_url}/{endpoint_path(body)}"
        return url, url

    def _decode(
        self, payload: Any, body: Mapping[str, Any], index: int
    ) -> Generation | ItemFailure:
        """A reply's :class:`Generation`, or an ``ItemFailure`` naming the malformed field."""
        try:
            return parse_reply(payload, body)
        except Malformed as e:
            return ItemFailure(self.redact(f"malformed reply: {e}"), index)


def is_openai_spec(spec: object) -> bool:
    """Whether a model spec names an HTTP server (``"openai:<base_url>::<model>"``)."""
    return isinstance(spec, str) and spec.startswith("openai:")
