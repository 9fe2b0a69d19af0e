"""A fault-injecting OpenAI-compatible server for tests (loopback only, bounded lifetime).

``FaultServer()`` listens on ``127.0.0.1`` on an ephemeral port in a daemon thread; use it as a
context manager (or call :meth:`FaultServer.close`). It speaks ``/v1/chat/completions`` and
``/v1/completions`` and answers like a tiny sentiment model over the classes ``negative`` /
``positive``, unless the input text carries a fault tag ``@<fault>``, so every item of a test set
chooses its own failure regardless of request order or concurrency:

========================  ========================================================================
``@null_logprobs``         200, an answer, ``logprobs.content`` null
``@empty_logprobs``        200, an answer, ``logprobs.content`` ``[]``
``@no_logprobs``           200, an answer, no ``logprobs`` field
``@empty``                 200, empty completion (first token was end-of-sequence)
``@nan`` / ``@inf``        a log-probability that is NaN / Infinity (non-standard JSON literals)
``@positive``              a log-probability of +0.7
``@e500``                  HTTP 500, always
``@flaky``                 HTTP 500 for the first two requests of that text, then a good reply
``@e400``                  HTTP 400 (not retried)
``@stall``                 never answers (until the server closes)
``@garbage``               a body that is not JSON
``@cut``                   a reply cut off mid-body (Content-Length larger than what is sent)
``@shape``                 JSON without ``choices``
``@echo_auth``             HTTP 400 whose message repeats the Authorization header
``@e401``                  HTTP 401 whose message repeats the Authorization header
``@missing_class``         the top-k has no ``negative`` token
``@sci``                   answers ``Sci/Tech`` as three tokens ``Sci``, ``/``, ``Tech``
========================  ========================================================================

Good replies are deterministic functions of the text (:func:`good_top`), so a test can compute
the expected class log-probabilities independently of calibkit's parser.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FaultServer", "good_top", "text_of"]

_END = "<|end|>"


def text_of(body: dict[str, Any]) -> str:
    """The input text inside a request (``Text: ...`` line of calibkit's prompt, or the raw)."""
    if "messages" in body:
        raw = "\n".join(str(m.get("content", "")) for m in body["messages"])
    else:
        raw = str(body.get("prompt", ""))
    found = re.findall(r"Text: (.*)", raw)  # the last one: few-shot examples come first
    return found[-1] if found else raw


def good_top(text: str) -> dict[str, float]:
    """Top-5 log-probabilities at the first answer position for a good reply to ``text``."""
    h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    a = -0.05 - (h % 97) / 40.0  # positive
    b = -0.05 - ((h // 97) % 89) / 40.0  # negative
    if "good" in text:
        a, b = max(a, b), min(a, b)
    top = {"positive": a, "negative": b, "The": -6.0 - (h % 5) / 10, "Sure": -7.5}
    if "@missing_class" in text:
        top = {"positive": -0.2, "The": -3.0, "Sure": -4.5}
    if "@sci" in text:
        top = {"Sci": -0.3, " Sports": -1.5, "Business": -2.0, "World": -3.0, "The": -4.0}
    return top


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: close() ends them all

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n))
        srv = self.server.owner
        text = text_of(body)
        with srv.lock:
            srv.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
            srv.seen[text] = srv.seen.get(text, 0) + 1
            count = srv.seen[text]
        if srv.delay:
            time.sleep(srv.delay)
        try:
            self._answer(body, text, count)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- replies ---------------------------------------------------------------------------
    def _send(self, data: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(json.dumps(obj).encode(), status)  # allow_nan: NaN/Infinity literals

    def _answer(self, body: dict[str, Any], text: str, count: int) -> None:
        srv = self.server.owner
        if "@stall" in text:
            srv.stop.wait(srv.lifetime)
            return
        if "@e500" in text or ("@flaky" in text and count <= 2):
            self._json({"error": {"message": "internal error (injected)"}}, 500)
            return
        if "@e400" in text:
            self._json({"error": {"message": "prompt rejected (injected)"}}, 400)
            return
        if "@echo_auth" in text:
            auth = self.headers.get("Authorization", "")
            self._json({"error": {"message": f"bad request; you sent Authorization: {auth}"}}, 400)
            return
        if "@e401" in text:
            auth = self.headers.get("Authorization", "")
            self._json({"error": {"message": f"invalid credentials: {auth}"}}, 401)
            return
        if "@cut" in text:
            data = json.dumps({"choices": [{"message": {"content": "positive"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data) + 50))
            self.end_headers()
            self.wfile.write(data[:20])
            self.wfile.flush()
            return
        if "@garbage" in text:
            self._send(b"<html>502 Bad Gateway</html>")
            return
        if "@shape" in text:
            self._json({"object": "chat.completion", "id": "x"})
            return
        chat = "messages" in body
        top = good_top(text)
        first = max(top, key=top.__getitem__)
        positions: list[tuple[str, dict[str, float]]] = [(first, top)]
        if "@sci" in text:
            positions += [("/", {"/": -0.01, "-": -5.0}), ("Tech", {"Tech": -0.02, "tech": -4.9})]
        positions.append((_END, {_END: -0.01, "!": -5.0}))
        positions = positions[: int(body.get("max_tokens", 1))]
        answer = "".join(t for t, _ in positions).replace(_END, "")
        if "@nan" in text:
            positions[0][1][first] = math.nan
        if "@inf" in text:
            positions[0][1]["Sure"] = math.inf
        if "@positive" in text:
            positions[0][1][first] = 0.7
        if "@empty" in text and "@empty_logprobs" not in text:
            answer, positions = "", []
        k = int(body.get("top_logprobs", 0) if chat else body.get("logprobs", 0))
        content = [
            {
                "token": t,
                "logprob": d[t],
                "top_logprobs": [{"token": a, "logprob": v} for a, v in list(d.items())[:k]],
            }
            for t, d in positions
        ]
        logprobs: Any = {"content": content}
        if "@null_logprobs" in text:
            logprobs = {"content": None}
        if "@empty_logprobs" in text:
            logprobs = {"content": []}
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
            }
        else:
            choice = {"index": 0, "text": answer}
            if logprobs.get("content") is content:  # a real answer: the legacy shape
                logprobs = {
                    "tokens": [t for t, _ in positions],
                    "token_logprobs": [d[t] for t, d in positions],
                    "top_logprobs": [dict(list(d.items())[:k]) for _, d in positions],
                }
        if "@no_logprobs" not in text:
            choice["logprobs"] = logprobs
        choice["finish_reason"] = "stop"
        self._json({"id": "cmpl-fault", "choices": [choice]})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FaultServer


class FaultServer:
    """The stub server; ``url`` is its API root (``http://127.0.0.1:<port>/v1``).

    Parameters
    ----------
    delay : float
        Seconds every request waits before its reply (to make a run slow enough to interrupt).
    lifetime : float
        The server closes itself after this many seconds, whatever the test does.
    """

    def __init__(self, *, delay: float = 0.0, lifetime: float = 120.0):
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.seen: dict[str, int] = {}
        self.delay = delay
        self.lifetime = lifetime
        self.stop = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()

    def close(self) -> None:
        """Stop serving (idempotent); stalled handlers return at once."""
        if self.stop.is_set():
            return
        self.stop.set()
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":  # manual use: python tests/fault_server.py [seconds]
    with FaultServer(lifetime=float(sys.argv[1]) if len(sys.argv) > 1 else 600.0) as s:
        print(s.url, flush=True)
        s.stop.wait()
