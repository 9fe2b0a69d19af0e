"""HTTP transport of the OpenAI-compatible backend: retry, backoff, rate limit, thread pool.

Nothing here knows the OpenAI schema (:mod:`calibkit.scoring.backends.openai_schema`): the
:class:`HttpTransport` mixin posts JSON bodies on up to ``max_concurrency`` daemon threads,
throttled by a :class:`TokenBucket`, retries transient failures (timeouts, HTTP 408/409/425/
429/5xx, a body that is not JSON) with exponential backoff and jitter honouring
``Retry-After``, raises :class:`BackendError` for failures that concern every request (401/403,
404, an unreachable server), and waits interruptibly (Ctrl-C hands the finished results on as
:class:`~calibkit.scoring.backends.base.PartialResults`). Secrets (API key, ``Bearer`` tokens,
URL credentials) are redacted from every message. The class using it supplies ``_endpoint(body)``
and ``_decode(payload, body, index)``.
"""

from __future__ import annotations

import json
import math
import queue
import random
import re
import threading
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from calibkit.scoring.backends.base import Generation, ItemFailure, PartialResults

__all__ = ["BackendError", "HttpTransport", "TokenBucket", "redact_url"]

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_FATAL_STATUS = frozenset({401, 403, 404})
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


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


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


class HttpTransport:
    """Mixin: the transport of an HTTP backend (retries, backoff, rate limit, threads, sessions).

    The class using it sets ``_url`` (base URL, credentials included), ``base_url`` (without),
    ``model``, ``api_key``, ``timeout``, ``max_retries``, ``backoff``, ``max_backoff``,
    ``requests_per_second``, ``max_concurrency``, ``seed`` and ``n_requests``, calls
    :meth:`_init_runtime`, and implements ``_endpoint(body) -> (url, shown)`` and
    ``_decode(payload, body, index) -> Generation | ItemFailure``.
    """

    _url: str
    base_url: str
    model: str
    api_key: str | None
    timeout: float
    max_retries: int
    backoff: float
    max_backoff: float
    requests_per_second: float | None
    max_concurrency: int
    seed: int | None
    n_requests: int

    def _endpoint(self, body: Mapping[str, Any]) -> tuple[str, str]:  # pragma: no cover
        raise NotImplementedError

    def _decode(
        self, payload: Any, body: Mapping[str, Any], index: int
    ) -> Generation | ItemFailure:  # pragma: no cover
        raise NotImplementedError

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
        for k in (
            "_bucket",
            "_rng",
            "_rng_lock",
            "_count_lock",
            "_sessions",
            "_sessions_lock",
        ):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

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
                        url,
                        data=data,
                        headers=headers,
                        timeout=(self.timeout, self.timeout),
                    )
                    try:
                        return self._handle(resp, shown, body, index)
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
            self.redact(f"{shown}: gave up after {_attempts(attempts)}; last error: {last}"),
            index,
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base = min(self.max_backoff, self.backoff * (2.0**attempt))
        with self._rng_lock:
            jitter = self._rng.uniform(0.5, 1.0)
        delay = base * jitter
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay

    def _handle(
        self, resp: Any, shown: str, body: Mapping[str, Any], index: int
    ) -> Generation | ItemFailure:
        """Classify the HTTP status (retry / fatal / per-item failure), decode JSON, then
        hand the payload to ``_decode``."""
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
                f"response body is not JSON: {self.redact(resp.text)[:200]!r}",
                status=status,
            ) from None
        return self._decode(payload, body, index)
