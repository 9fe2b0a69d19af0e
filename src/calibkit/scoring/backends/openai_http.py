"""Backend for any OpenAI-compatible HTTP server that returns top log-probabilities.

Works with vLLM (``vllm serve MODEL --max-logprobs 20``), the llama.cpp server
(``llama-server -m model.gguf``), OpenAI, and other servers speaking the same API:

- chat completions (``use_chat=True``): ``POST {base_url}/chat/completions`` with
  ``logprobs: true, top_logprobs: k, max_tokens, temperature: 0``; the answer's per-token
  log-probabilities are read from ``choices[0].logprobs.content``;
- legacy completions (``use_chat=False``): ``POST {base_url}/completions`` with ``logprobs: k``;
  read from ``choices[0].logprobs.{tokens, token_logprobs, top_logprobs}`` (the chat-style
  ``logprobs.content`` list that llama.cpp returns there is accepted too).

An HTTP server only reports the top-k alternatives at each position (k <= 20 on OpenAI and by
default on vLLM), so a candidate outside the top-k is *missing* from the returned dicts; the
scorers treat it as ``-inf``. Transient failures (connection errors, timeouts, HTTP 408/409/425/
429/5xx, a body that is not JSON) are retried with exponential backoff and jitter, honouring
``Retry-After``; a response of the wrong shape raises :class:`BackendError` at once, naming the
field that was wrong. Requests run concurrently in a thread pool, throttled by a token bucket.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import Any

from calibkit.scoring.backends.base import ChatMessage, Generation, Prompt

__all__ = ["BackendError", "OpenAICompatibleBackend", "TokenBucket", "is_openai_spec"]

_NUM = (int, float)
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_ROLES = frozenset({"system", "user", "assistant", "developer"})


class BackendError(RuntimeError):
    """A model server failed or answered something calibkit cannot use.

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
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


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
        if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
        if not (isinstance(capacity, int | float) and math.isfinite(capacity) and capacity >= 1):
            raise ValueError(f"capacity must be a finite number >= 1, got {capacity!r}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds waited."""
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
            time.sleep(need)
            waited += need


class OpenAICompatibleBackend:
    """Score prompts with a model behind an OpenAI-compatible HTTP API.

    Parameters
    ----------
    base_url : str
        API root including the version prefix, e.g. ``"http://localhost:8000/v1"``.
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
        ``True``: chat completions endpoint; a plain-string prompt is sent as one user message
        (so the server applies its chat template). ``False``: legacy completions endpoint; the
        string is sent as-is and chat-message prompts are refused.
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
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string")
        if not (isinstance(timeout, int | float) and timeout > 0 and math.isfinite(timeout)):
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
        self.base_url = base_url.rstrip("/")
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
                f"HTTP model spec {spec!r} lacks '::<model>'; expected 'openai:<base_url>::<model>'"
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
        self._local = threading.local()

    # Picklable (e.g. shipped to Ray workers): drop sessions, locks and the bucket.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for k in ("_bucket", "_rng", "_rng_lock", "_count_lock", "_local"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    @property
    def name(self) -> str:
        """``"openai:{base_url}:{model}"``, used in cache keys."""
        return f"openai:{self.base_url}:{self.model}"

    @property
    def has_chat_template(self) -> bool:
        """Whether prompts go to the chat endpoint (so scorers render chat messages)."""
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
    ) -> list[Generation]:
        """Greedy-decode each prompt (``temperature: 0``).

        Parameters
        ----------
        prompts : sequence of str or list of chat messages
        max_new_tokens : int
            ``max_tokens`` of the request, >= 1.
        candidates : sequence of str
            Token strings of interest; reported at a position only if the server listed them
            among its top alternatives there (an HTTP API cannot be asked for arbitrary tokens).
        top_logprobs : int
            Alternatives per position, capped to the backend's ``top_logprobs``.

        Returns
        -------
        list of Generation
            One per prompt, in order; ``logprobs[j]`` maps the token strings the server reported
            at output position j (the chosen one and the top alternatives) to log-probabilities.
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
    ) -> list[dict[str, float]]:
        """Log-probabilities of ``candidates`` as the first answer token (``max_tokens: 1``).

        Returns one dict per prompt holding the candidates the server listed among its
        ``top_logprobs`` alternatives (absent ones are missing); with no candidates, every token
        the server reported.
        """
        cands = _check_candidates(candidates)
        payloads = [self._payload(p, 1, self.top_logprobs, i) for i, p in enumerate(prompts)]
        out: list[dict[str, float]] = []
        for g in self._run_all(payloads):
            first = g.logprobs[0] if g.logprobs else {}
            out.append({c: first[c] for c in cands if c in first} if cands else dict(first))
        return out

    # -- requests --------------------------------------------------------------------------
    def _payload(self, prompt: Prompt, max_tokens: int, k: int, i: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": 0,
            "n": 1,
            "stream": False,
        }
        if self.use_chat:
            body["messages"] = _as_messages(prompt, i)
            body["logprobs"] = True
            body["top_logprobs"] = k
        else:
            if not isinstance(prompt, str):
                raise ValueError(
                    f"prompts[{i}] is a list of chat messages, but use_chat=False sends raw text "
                    "to the completions endpoint; pass a string or use use_chat=True"
                )
            body["prompt"] = prompt
            body["logprobs"] = k
        body.update(self.extra_body)
        return body

    def _run_all(self, payloads: list[dict[str, Any]]) -> list[Generation]:
        if not payloads:
            return []
        if self.max_concurrency == 1 or len(payloads) == 1:
            return [self._request(p) for p in payloads]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(payloads))) as ex:
            futures = [ex.submit(self._request, p) for p in payloads]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def _session(self) -> Any:
        sess = getattr(self._local, "session", None)
        if sess is None:
            try:
                import requests
            except ImportError as e:  # pragma: no cover - requests ships with calibkit[llm]
                raise ImportError(
                    "the HTTP backend needs requests: pip install 'calibkit[llm]'"
                ) from e
            sess = requests.Session()
            self._local.session = sess
        return sess

    def _request(self, body: dict[str, Any]) -> Generation:
        import requests

        url = f"{self.base_url}/{'chat/completions' if self.use_chat else 'completions'}"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body)
        last: _Retryable | None = None
        for attempt in range(self.max_retries + 1):
            if attempt > 0:
                time.sleep(self._delay(attempt - 1, last.retry_after if last else None))
            if self._bucket is not None:
                self._bucket.acquire()
            with self._count_lock:
                self.n_requests += 1
            try:
                resp = self._session().post(
                    url, data=data, headers=headers, timeout=(self.timeout, self.timeout)
                )
            except requests.Timeout as e:
                last = _Retryable(f"no answer within timeout={self.timeout}s ({e})")
                continue
            except requests.ConnectionError as e:
                last = _Retryable(f"connection failed ({e})")
                continue
            except requests.RequestException as e:
                raise BackendError(f"request to {url} failed: {e}") from e
            try:
                return self._handle(resp, url)
            except _Retryable as e:
                last = e
        assert last is not None
        raise BackendError(
            f"{url}: gave up after {self.max_retries + 1} attempts; last error: {last}",
            status=last.status,
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base = min(self.max_backoff, self.backoff * (2.0**attempt))
        with self._rng_lock:
            jitter = self._rng.uniform(0.5, 1.0)
        delay = base * jitter
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay

    def _handle(self, resp: Any, url: str) -> Generation:
        status = int(resp.status_code)
        if status in _RETRY_STATUS:
            raise _Retryable(
                f"HTTP {status}: {_error_text(resp)}",
                status=status,
                retry_after=_retry_after(resp.headers.get("Retry-After")),
            )
        if status >= 400:
            hint = " (check api_key / $OPENAI_API_KEY)" if status in (401, 403) else ""
            raise BackendError(f"{url}: HTTP {status}: {_error_text(resp)}{hint}", status=status)
        try:
            payload = resp.json()
        except ValueError:
            # A truncated or garbled body (proxy, overloaded server) may not repeat.
            raise _Retryable(
                f"response body is not JSON: {resp.text[:200]!r}", status=status
            ) from None
        try:
            return _parse_chat(payload) if self.use_chat else _parse_completion(payload)
        except _Malformed as e:
            raise BackendError(f"{url}: malformed response: {e}", status=status) from None


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


def _parse_content(content: list[Any], where: str) -> tuple[list[str], list[dict[str, float]]]:
    """Chat-style ``[{token, logprob, top_logprobs: [{token, logprob}, ...]}, ...]``."""
    tokens: list[str] = []
    lps: list[dict[str, float]] = []
    for j, entry in enumerate(content):
        w = f"{where}[{j}]"
        tok = _get(entry, "token", w, str)
        lp = float(_get(entry, "logprob", w, _NUM))
        pos: dict[str, float] = {}
        tops = entry.get("top_logprobs") or []
        if not isinstance(tops, list):
            raise _Malformed(f"{w}.top_logprobs is {type(tops).__name__}, expected list")
        for t, alt in enumerate(tops):
            wt = f"{w}.top_logprobs[{t}]"
            _put_max(pos, _get(alt, "token", wt, str), float(_get(alt, "logprob", wt, _NUM)))
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
    if logprobs is None:
        raise _no_logprobs("choices[0].logprobs")
    if not isinstance(logprobs, dict):
        raise _Malformed(f"choices[0].logprobs is {type(logprobs).__name__}, expected object")
    content = logprobs.get("content")
    if content is None:
        if text == "":
            return Generation(text="", tokens=[], logprobs=[])
        raise _no_logprobs("choices[0].logprobs.content")
    if not isinstance(content, list):
        raise _Malformed(f"choices[0].logprobs.content is {type(content).__name__}, expected list")
    tokens, lps = _parse_content(content, "choices[0].logprobs.content")
    return Generation(text=text, tokens=tokens, logprobs=lps)


def _parse_completion(payload: Any) -> Generation:
    choice = _first_choice(payload)
    text = _get(choice, "text", "choices[0]", str)
    logprobs = choice.get("logprobs")
    if logprobs is None:
        raise _no_logprobs("choices[0].logprobs")
    if not isinstance(logprobs, dict):
        raise _Malformed(f"choices[0].logprobs is {type(logprobs).__name__}, expected object")
    if isinstance(logprobs.get("content"), list):  # llama.cpp answers in the chat shape
        ctoks, clps = _parse_content(logprobs["content"], "choices[0].logprobs.content")
        return Generation(text=text, tokens=ctoks, logprobs=clps)
    w = "choices[0].logprobs"
    if "tokens" not in logprobs:
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
                if not isinstance(v, int | float) or isinstance(v, bool):
                    raise _Malformed(f"{w}.top_logprobs[{j}][{t!r}] is not a number")
                _put_max(pos, str(t), float(v))
        lp = tlps[j]
        if lp is not None:
            if not isinstance(lp, int | float) or isinstance(lp, bool):
                raise _Malformed(f"{w}.token_logprobs[{j}] is {type(lp).__name__}, expected number")
            _put_max(pos, tok, float(lp))
        tokens.append(tok)
        lps.append(pos)
    return Generation(text=text, tokens=tokens, logprobs=lps)


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


def _error_text(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return str(resp.text)[:300]
    if isinstance(body, dict) and "error" in body:
        err = body["error"]
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])[:300]
        return str(err)[:300]
    return json.dumps(body)[:300]
