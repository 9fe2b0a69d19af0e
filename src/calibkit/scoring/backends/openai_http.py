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

import json
import math
import os
import queue
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from calibkit.scoring.backends.base import (
    ChatMessage,
    Generation,
    ItemFailure,
    PartialResults,
    Prompt,
)

__all__ = [
    "BackendError",
    "OpenAICompatibleBackend",
    "TokenBucket",
    "is_openai_spec",
    "redact_url",
]

_NUM = (int, float)
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_FATAL_STATUS = frozenset({401, 403, 404})
_ROLES = frozenset({"system", "user", "assistant", "developer"})
#: log-probabilities in (0, _POS_TOL] are float rounding of a certain token and read as 0
_POS_TOL = 1e-4
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+|%20)[^\s\"',;}]+")
_KEY_FIELD = re.compile(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}&]+")
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
_SK = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")


class BackendError(RuntimeError):
    """A model server failed in a way that concerns every prompt (bad key, unreachable server).

    Attributes
    ----------
    status : int or None
        HTTP status of the last response, if there was one.
    """

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class _Retryable(Exception):
    """Internal: a failure worth another attempt."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        connection: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.connection = connection


class _Cancelled(Exception):
    """Internal: the call this request belongs to was interrupted or failed."""


class TokenBucket:
    """Thread-safe token-bucket rate limiter.

    Parameters
    ----------
    rate : float
        Tokens added per second (the sustained request rate), > 0.
    capacity : float
        Bucket size (the largest burst), >= 1. The bucket starts full.
    """

    def __init__(self, rate: float, capacity: float = 1.0):
        if isinstance(rate, bool) or not (
            isinstance(rate, int | float) and math.isfinite(rate) and rate > 0
        ):
            raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
        if not (isinstance(capacity, int | float) and math.isfinite(capacity) and capacity >= 1):
            raise ValueError(f"capacity must be a finite number >= 1, got {capacity!r}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event | None = None) -> float:
        """Take one token, sleeping until one is available; returns the seconds waited.

        With ``stop``, the wait ends early (raising an internal cancellation) once it is set.
        """
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return waited
                need = (1.0 - self._tokens) / self.rate
            if stop is None:
                time.sleep(need)
            elif stop.wait(need):
                raise _Cancelled()
            waited += need


def redact_url(url: str) -> str:
    """``url`` without a ``user:password@`` part (safe for names, metadata and messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//[^/@]*@", "//", url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    if "@" not in parts.netloc:
        return []
    userinfo = parts.netloc.rsplit("@", 1)[0]
    out = [userinfo]
    if ":" in userinfo:
        pw = userinfo.split(":", 1)[1]
        if pw:
            out.append(pw)
    return [s for s in out if s]


class OpenAICompatibleBackend:
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

    def _init_runtime(self) -> None:
        self._bucket = (
            None
            if self.requests_per_second is None
            else TokenBucket(self.requests_per_second, capacity=1.0)
        )
        self._rng = random.Random(self.seed)
        self._rng_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._sessions: list[Any] = []  # idle requests.Session objects (connection reuse)
        self._sessions_lock = threading.Lock()

    # Picklable (e.g. shipped to Ray workers): drop sessions, locks and the bucket.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for k in ("_bucket", "_rng", "_rng_lock", "_count_lock", "_sessions", "_sessions_lock"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

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

    def redact(self, text: str) -> str:
        """``text`` with the API key, URL credentials and any ``Bearer ...`` token masked."""
        text = text.replace(self._url, self.base_url)
        text = _USERINFO.sub(r"\1", text)
        secrets = [s for s in [self.api_key or "", *_url_secrets(self._url)] if len(s) >= 4]
        for sec in sorted(secrets, key=len, reverse=True):
            text = text.replace(sec, "***")
        text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
        text = _KEY_FIELD.sub(lambda m: f"{m.group(1)}***", text)
        return _SK.sub("sk-***", text)

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
            Alternatives per position, capped to the backend's ``top_logprobs``.

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
        _check_candidates(candidates)
        k = min(top_logprobs, self.top_logprobs)
        payloads = [self._payload(p, max_new_tokens, k, i) for i, p in enumerate(prompts)]
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
        _check_candidates(candidates)
        payloads = [self._payload(p, 1, self.top_logprobs, i) for i, p in enumerate(prompts)]
        try:
            gens = self._run_all(payloads)
        except PartialResults as e:
            raise PartialResults({i: _first(g) for i, g in e.results.items()}) from None
        return [_first(g) for g in gens]

    def sample(
        self, prompts: Sequence[Prompt], params: Any, max_new_tokens: int = 64
    ) -> list[list[Generation | ItemFailure]]:
        """``params.n`` sampled answers per prompt (:class:`~calibkit.scoring.sampling.
        SamplingParams`).

        One request per sample, with ``n: 1``, ``temperature``, ``top_p`` and ``seed: seed + j``
        for sample ``j``: servers differ on ``n`` (llama.cpp's ignores it and returns one
        choice), and one request per sample keeps each sample reproducible and cacheable on its
        own. Requests carry ``top_logprobs: 1`` (a reply needs log-probabilities to parse, as for
        :meth:`generate`). Failures are :class:`ItemFailure` values in place, as for
        :meth:`generate`.
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
                body = self._payload(p, max_new_tokens, min(1, self.top_logprobs), i)
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

    # -- requests --------------------------------------------------------------------------
    def _payload(self, prompt: Prompt, max_tokens: int, k: int, i: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": 0,
            "n": 1,
            "stream": False,
        }
        if isinstance(prompt, str):
            body["prompt"] = prompt
            body["logprobs"] = k
        else:
            if not self.use_chat:
                raise ValueError(
                    f"prompts[{i}] is a list of chat messages, but use_chat=False (a base model "
                    "without a chat template); pass a string or use use_chat=True"
                )
            body["messages"] = _as_messages(prompt, i)
            body["logprobs"] = True
            body["top_logprobs"] = k
        body.update(self.extra_body)
        return body

    def _run_all(self, payloads: list[dict[str, Any]]) -> list[Generation | ItemFailure]:
        """Send every payload on up to ``max_concurrency`` daemon threads; results in order.

        The calling thread only waits on a queue (with a timeout), so Ctrl-C interrupts it at
        once; the workers then stop before their next attempt and are never joined.
        """
        n = len(payloads)
        if n == 0:
            return []
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(n):
            todo.put(i)
        done: queue.SimpleQueue[tuple[int, Generation | ItemFailure | BaseException]] = (
            queue.SimpleQueue()
        )
        stop = threading.Event()

        def work() -> None:
            while not stop.is_set():
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                result: Generation | ItemFailure | BaseException
                try:
                    result = self._request(payloads[i], i, stop)
                except BaseException as e:  # handed to the caller's thread
                    result = e
                done.put((i, result))

        for _ in range(min(self.max_concurrency, n)):
            threading.Thread(target=work, daemon=True, name="calibkit-http").start()
        results: list[Generation | ItemFailure | None] = [None] * n
        try:
            for _ in range(n):
                while True:
                    try:
                        i, r = done.get(timeout=0.2)
                        break
                    except queue.Empty:
                        continue
                if isinstance(r, BaseException):
                    raise r
                results[i] = r
        except KeyboardInterrupt:
            stop.set()
            # hand over what finished, so the caller can keep it
            raise PartialResults({i: r for i, r in enumerate(results) if r is not None}) from None
        finally:
            stop.set()
        return [r if r is not None else ItemFailure("no result", i) for i, r in enumerate(results)]

    def _take_session(self) -> Any:
        with self._sessions_lock:
            if self._sessions:
                return self._sessions.pop()
        try:
            import requests
        except ImportError as e:  # pragma: no cover - requests ships with calibkit[llm]
            raise ImportError("the HTTP backend needs requests: pip install 'calibkit[llm]'") from e
        return requests.Session()

    def _give_session(self, sess: Any) -> None:
        with self._sessions_lock:
            self._sessions.append(sess)

    def _endpoint(self, body: Mapping[str, Any]) -> tuple[str, str]:
        """(URL requested, URL shown in messages) for a payload: the same, no credentials."""
        path = "chat/completions" if "messages" in body else "completions"
        return f"{self.base_url}/{path}", f"{self.base_url}/{path}"

    def _auth_header(self) -> str | None:
        """``Bearer <api_key>``; else HTTP basic auth from a ``user:password@`` base URL."""
        if self.api_key:
            return f"Bearer {self.api_key}"
        parts = urlsplit(self._url)
        if parts.username is None:
            return None
        import base64
        from urllib.parse import unquote

        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def _request(
        self, body: dict[str, Any], index: int, stop: threading.Event
    ) -> Generation | ItemFailure:
        import requests

        url, shown = self._endpoint(body)
        chat = "messages" in body
        headers = {"Content-Type": "application/json"}
        auth = self._auth_header()
        if auth:
            headers["Authorization"] = auth
        data = json.dumps(body)
        last: _Retryable | None = None
        attempts = 0
        try:
            for attempt in range(self.max_retries + 1):
                if attempt > 0 and stop.wait(
                    self._delay(attempt - 1, last.retry_after if last else None)
                ):
                    raise _Cancelled()
                if stop.is_set():
                    raise _Cancelled()
                if self._bucket is not None:
                    self._bucket.acquire(stop)
                with self._count_lock:
                    self.n_requests += 1
                attempts += 1
                sess = self._take_session()
                try:
                    resp = sess.post(
                        url, data=data, headers=headers, timeout=(self.timeout, self.timeout)
                    )
                    try:
                        return self._handle(resp, shown, chat, index)
                    finally:
                        resp.close()
                except requests.Timeout:
                    last = _Retryable(f"no answer within timeout={self.timeout:g}s")
                except (
                    requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError,
                ) as e:  # a reply cut off or garbled on the way: worth another try
                    last = _Retryable(f"the reply was cut off or garbled ({e})")
                except requests.ConnectionError as e:
                    last = _Retryable(f"connection failed ({e})", connection=True)
                except requests.RequestException as e:
                    raise BackendError(self.redact(f"request to {shown} failed: {e}")) from None
                except _Retryable as e:
                    last = e
                finally:
                    self._give_session(sess)
        except _Cancelled:
            return ItemFailure("cancelled (the run was interrupted)", index)
        assert last is not None
        if last.connection:
            raise BackendError(
                self.redact(
                    f"cannot reach {shown} after {_attempts(attempts)}: {last} "
                    "(is the server running? check the base URL)"
                )
            )
        return ItemFailure(
            self.redact(f"{shown}: gave up after {_attempts(attempts)}; last error: {last}"), index
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base = min(self.max_backoff, self.backoff * (2.0**attempt))
        with self._rng_lock:
            jitter = self._rng.uniform(0.5, 1.0)
        delay = base * jitter
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay

    def _handle(self, resp: Any, shown: str, chat: bool, index: int) -> Generation | ItemFailure:
        status = int(resp.status_code)
        if status in _RETRY_STATUS:
            raise _Retryable(
                f"HTTP {status}: {_error_text(resp, self.redact)}",
                status=status,
                retry_after=_retry_after(resp.headers.get("Retry-After")),
            )
        if status in _FATAL_STATUS:
            hint = (
                " (check api_key / $OPENAI_API_KEY)"
                if status in (401, 403)
                else f" (check the base URL and the model name {self.model!r})"
            )
            raise BackendError(
                self.redact(f"{shown}: HTTP {status}: {_error_text(resp, self.redact)}{hint}"),
                status=status,
            )
        if status >= 400:
            return ItemFailure(
                self.redact(f"HTTP {status}: {_error_text(resp, self.redact)}"), index
            )
        try:
            payload = resp.json()
        except ValueError:
            # A truncated or garbled body (proxy, overloaded server) may not repeat.
            raise _Retryable(
                f"response body is not JSON: {self.redact(resp.text)[:200]!r}", status=status
            ) from None
        try:
            gen = _parse_chat(payload) if chat else _parse_completion(payload)
        except _Malformed as e:
            return ItemFailure(self.redact(f"malformed reply: {e}"), index)
        return gen


# -- parsing ---------------------------------------------------------------------------------
class _Malformed(Exception):
    pass


def _get(obj: Any, key: str | int, where: str, kind: type | tuple[type, ...]) -> Any:
    """``obj[key]`` checked for presence and type, else _Malformed naming the path."""
    path = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else key
    if isinstance(key, int):
        if not isinstance(obj, list) or key >= len(obj):
            raise _Malformed(f"{path} is missing")
        val = obj[key]
    else:
        if not isinstance(obj, dict) or key not in obj:
            raise _Malformed(f"{path} is missing")
        val = obj[key]
    if val is None and kind is not type(None):
        raise _Malformed(f"{path} is null")
    if not isinstance(val, kind) or isinstance(val, bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(t.__name__ for t in kind)
        raise _Malformed(f"{path} is {type(val).__name__}, expected {names}")
    return val


def _logprob(val: Any, path: str, *, alternative: bool) -> float | None:
    """A checked log-probability: finite and <= 0 (tiny positive rounding read as 0).

    ``None`` for a ``-inf`` alternative (probability 0: dropped, as if not reported).
    """
    if isinstance(val, bool) or not isinstance(val, int | float):
        raise _Malformed(f"{path} is {type(val).__name__}, expected number")
    v = float(val)
    if math.isnan(v):
        raise _Malformed(f"{path} is NaN, not a log-probability")
    if v == math.inf:
        raise _Malformed(f"{path} is inf, not a log-probability")
    if v == -math.inf:
        if alternative:
            return None
        raise _Malformed(f"{path} is -inf for the generated token")
    if v > _POS_TOL:
        raise _Malformed(f"{path} is {v!r} > 0, not a log-probability")
    return min(v, 0.0)


def _first_choice(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise _Malformed(f"body is {type(payload).__name__}, expected a JSON object")
    if "error" in payload and "choices" not in payload:
        raise _Malformed(f"server error: {payload['error']}")
    choices = _get(payload, "choices", "", list)
    if not choices:
        raise _Malformed("choices is empty")
    choice: dict[str, Any] = _get(choices, 0, "choices", dict)
    return choice


def _no_logprobs(where: str) -> _Malformed:
    return _Malformed(
        f"{where} is missing: the server returned no log-probabilities (does it support "
        "logprobs? vLLM: raise --max-logprobs; llama.cpp: use a recent llama-server)"
    )


def _empty(where: str, text: str) -> _Malformed:
    if text == "":
        return _Malformed(
            f"empty completion ({where} is empty and the text is ''): the model's first token "
            "was end-of-sequence, so there is no answer position to score"
        )
    return _Malformed(
        f"{where} is empty although the answer is {text[:40]!r}: no usable log-probabilities"
    )


def _parse_content(content: list[Any], where: str) -> tuple[list[str], list[dict[str, float]]]:
    """Chat-style ``[{token, logprob, top_logprobs: [{token, logprob}, ...]}, ...]``."""
    tokens: list[str] = []
    lps: list[dict[str, float]] = []
    for j, entry in enumerate(content):
        w = f"{where}[{j}]"
        tok = _get(entry, "token", w, str)
        lp = _logprob(_get(entry, "logprob", w, _NUM), f"{w}.logprob", alternative=False)
        pos: dict[str, float] = {}
        tops = entry.get("top_logprobs") or []
        if not isinstance(tops, list):
            raise _Malformed(f"{w}.top_logprobs is {type(tops).__name__}, expected list")
        for t, alt in enumerate(tops):
            wt = f"{w}.top_logprobs[{t}]"
            v = _logprob(_get(alt, "logprob", wt, _NUM), f"{wt}.logprob", alternative=True)
            name = _get(alt, "token", wt, str)
            if v is not None:
                _put_max(pos, name, v)
        assert lp is not None
        _put_max(pos, tok, lp)
        tokens.append(tok)
        lps.append(pos)
    return tokens, lps


def _put_max(d: dict[str, float], tok: str, lp: float) -> None:
    # Distinct token ids can decode to the same string; keep the largest (max aggregation).
    if tok not in d or lp > d[tok]:
        d[tok] = lp


def _parse_chat(payload: Any) -> Generation:
    choice = _first_choice(payload)
    message = _get(choice, "message", "choices[0]", dict)
    text = message.get("content")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise _Malformed(f"choices[0].message.content is {type(text).__name__}, expected str")
    logprobs = choice.get("logprobs")
    w = "choices[0].logprobs.content"
    if logprobs is None:
        if text == "":
            raise _empty("choices[0].logprobs", text)
        raise _no_logprobs("choices[0].logprobs")
    if not isinstance(logprobs, dict):
        raise _Malformed(f"choices[0].logprobs is {type(logprobs).__name__}, expected object")
    content = logprobs.get("content")
    if content is None or content == []:
        if content == [] or text == "":
            raise _empty(w, text)
        raise _Malformed(
            f"{w} is null: the server returned no log-probabilities for the answer "
            f"{text[:40]!r} (does it support logprobs?)"
        )
    if not isinstance(content, list):
        raise _Malformed(f"{w} is {type(content).__name__}, expected list")
    tokens, lps = _parse_content(content, w)
    return Generation(text=text, tokens=tokens, logprobs=lps)


def _parse_completion(payload: Any) -> Generation:
    choice = _first_choice(payload)
    text = _get(choice, "text", "choices[0]", str)
    logprobs = choice.get("logprobs")
    if logprobs is None:
        if text == "":
            raise _empty("choices[0].logprobs", text)
        raise _no_logprobs("choices[0].logprobs")
    if not isinstance(logprobs, dict):
        raise _Malformed(f"choices[0].logprobs is {type(logprobs).__name__}, expected object")
    if isinstance(logprobs.get("content"), list):  # llama.cpp answers in the chat shape
        if not logprobs["content"]:
            raise _empty("choices[0].logprobs.content", text)
        ctoks, clps = _parse_content(logprobs["content"], "choices[0].logprobs.content")
        return Generation(text=text, tokens=ctoks, logprobs=clps)
    w = "choices[0].logprobs"
    if "tokens" not in logprobs or logprobs["tokens"] is None:
        if text == "":
            raise _empty(f"{w}.tokens", text)
        raise _no_logprobs(f"{w}.tokens")
    toks = _get(logprobs, "tokens", w, list)
    tlps = _get(logprobs, "token_logprobs", w, list)
    tops = logprobs.get("top_logprobs")
    if tops is None:
        tops = [None] * len(toks)
    if not isinstance(tops, list):
        raise _Malformed(f"{w}.top_logprobs is {type(tops).__name__}, expected list")
    if not (len(toks) == len(tlps) == len(tops)):
        raise _Malformed(
            f"{w}: tokens, token_logprobs and top_logprobs differ in length "
            f"({len(toks)}, {len(tlps)}, {len(tops)})"
        )
    if not toks:
        raise _empty(f"{w}.tokens", text)
    tokens: list[str] = []
    lps: list[dict[str, float]] = []
    for j in range(len(toks)):
        tok = _get(toks, j, f"{w}.tokens", str)
        pos: dict[str, float] = {}
        top = tops[j]
        if top is not None:
            if not isinstance(top, dict):
                raise _Malformed(f"{w}.top_logprobs[{j}] is {type(top).__name__}, expected object")
            for t, v in top.items():
                lv = _logprob(v, f"{w}.top_logprobs[{j}][{t!r}]", alternative=True)
                if lv is not None:
                    _put_max(pos, str(t), lv)
        lp = tlps[j]
        if lp is not None:
            lv = _logprob(lp, f"{w}.token_logprobs[{j}]", alternative=False)
            assert lv is not None
            _put_max(pos, tok, lv)
        tokens.append(tok)
        lps.append(pos)
    if not any(lps):
        raise _Malformed(f"{w}: no position reports a log-probability (all null)")
    return Generation(text=text, tokens=tokens, logprobs=lps)


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _first(g: Generation | ItemFailure) -> dict[str, float] | ItemFailure:
    """The first answer position of a generation (every reported token)."""
    return g if isinstance(g, ItemFailure) else dict(g.logprobs[0])


def is_openai_spec(spec: object) -> bool:
    """Whether a model spec names an HTTP server (``"openai:<base_url>::<model>"``)."""
    return isinstance(spec, str) and spec.startswith("openai:")


# -- helpers ---------------------------------------------------------------------------------
def _as_messages(prompt: Prompt, i: int) -> list[ChatMessage]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt:
        raise ValueError(f"prompts[{i}] must be a string or a non-empty list of chat messages")
    for j, m in enumerate(prompt):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise ValueError(f"prompts[{i}][{j}] must be a dict with a string 'content'")
        if m.get("role") not in _ROLES:
            raise ValueError(
                f"prompts[{i}][{j}] has role {m.get('role')!r}; expected one of {sorted(_ROLES)}"
            )
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def _check_candidates(candidates: Sequence[str]) -> list[str]:
    if isinstance(candidates, str):
        raise ValueError("candidates must be a sequence of token strings, got a single string")
    out = list(candidates)
    for j, c in enumerate(out):
        if not isinstance(c, str):
            raise ValueError(f"candidates[{j}] is {type(c).__name__}, expected str")
    return out


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        secs = when.timestamp() - time.time()
    if not math.isfinite(secs):
        return None
    return max(0.0, secs)


def _error_text(resp: Any, redact: Any = None) -> str:
    """The server's error message (redacted before it is shortened, so no secret is cut)."""
    clean = redact if redact is not None else (lambda t: t)
    try:
        body = resp.json()
    except ValueError:
        return str(clean(str(resp.text)))[:300]
    if isinstance(body, dict) and "error" in body:
        err = body["error"]
        if isinstance(err, dict) and "message" in err:
            return str(clean(str(err["message"])))[:300]
        return str(clean(str(err)))[:300]
    return str(clean(json.dumps(body)))[:300]
