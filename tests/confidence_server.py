"""A deterministic OpenAI-compatible stub for the confidence estimators (issue #14), over HTTP.

``ConfidenceServer(logprobs=False)`` behaves like a provider that never returns
log-probabilities (``choices[0].logprobs`` is ``null`` whatever the request asks, as OpenAI's
newer models and many providers do); ``logprobs=True`` returns them when asked (chat:
``logprobs``/``top_logprobs``; completions: ``logprobs``). Loopback only, ephemeral port, daemon
thread, bounded lifetime; a context manager.

The model it plays classifies ``negative`` / ``positive`` (the truth: ``positive`` iff the text
contains ``good``). For an item text ``t`` (the last ``Text: ...`` line of the request) its answer
is right with a probability :func:`belief` ``p(t)`` drawn from the text's hash, and it answers
wrong exactly when :func:`answer` says so. It recognises calibkit's prompts by their wording:

- the answer prompt: greedy (``temperature`` 0) -> :func:`answer`; sampled (``temperature`` > 0)
  -> sample ``seed`` draws the right class with probability ``p(t)`` (:func:`sampled`);
- verbalized one-stage ("Confidence: <number>%" format) -> ``Answer: <a>\\nConfidence: <c>%``;
  two-stage ("How confident are you") -> ``Confidence: <c>%``; top-k ("best guesses") -> two
  lines ``<class>: <c>%``, where ``c = round(100 * p(t))`` for the answer (:func:`stated`);
- P(True) ("Is the proposed answer true?") -> ``A`` / ``B`` with log-probabilities
  ``log p``, ``log(1 - p)`` at the first position (only when log-probabilities are returned).

A text containing ``@unparseable`` gets verbalized replies without a number ("I am not sure.")
and sampled answers naming no class ("Maybe."). Every reply reports ``usage.completion_tokens``
(the number of space-separated words of the reply).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["CLASSES", "ConfidenceServer", "answer", "belief", "sampled", "stated", "truth"]

CLASSES = ("negative", "positive")


def _unit(*parts: object) -> float:
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def truth(text: str) -> str:
    return "positive" if "good" in text else "negative"


def belief(text: str) -> float:
    """P(the model's answer is right) for ``text``, in [0.5, 0.95]."""
    return 0.5 + 0.45 * _unit("belief", text)


def answer(text: str) -> str:
    """The greedy answer: right iff a draw from the text's hash is below :func:`belief`."""
    right = _unit("answer", text) < belief(text)
    t = truth(text)
    return t if right else CLASSES[1 - CLASSES.index(t)]


def stated(text: str) -> int:
    """The verbalized confidence (percent) the model states for its answer to ``text``."""
    return round(100 * belief(text))


def sampled(text: str, seed: int) -> str:
    """The sampled answer of seed ``seed``: the right class with probability ``belief``."""
    if "@unparseable" in text:
        return "Maybe."
    t = truth(text)
    right = _unit("sample", text, seed) < belief(text)
    return t if right else CLASSES[1 - CLASSES.index(t)]


def _item_text(body: dict[str, Any]) -> tuple[str, str]:
    """(item text, last user turn) of a request."""
    if "messages" in body:
        msgs = body["messages"]
        full = "\n".join(str(m.get("content", "")) for m in msgs)
        users = [str(m.get("content", "")) for m in msgs if m.get("role") == "user"]
        last = users[-1] if users else ""
    else:
        full = str(body.get("prompt", ""))
        last = full
    found = re.findall(r"Text: (.*)", full)
    return (found[-1] if found else full), last


def reply_text(body: dict[str, Any]) -> tuple[str, dict[str, float] | None]:
    """The reply's text and, for a one-token answer, its first-position log-probabilities."""
    text, last = _item_text(body)
    bad = "@unparseable" in text
    a = answer(text)
    other = CLASSES[1 - CLASSES.index(a)]
    c = stated(text)
    if "Is the proposed answer true?" in last:
        p = belief(text)  # the proposed answer is the greedy one: right with probability p
        return "A", {"A": math.log(p), "B": math.log(1 - p)}
    if "How confident are you" in last:
        return ("I am not sure." if bad else f"Confidence: {c}%"), None
    if "best guesses" in last:
        return ("I am not sure." if bad else f"{a}: {c}%\n{other}: {100 - c}%"), None
    if "Confidence: <number>%" in last:
        return (f"Answer: {a}\nI am not sure." if bad else f"Answer: {a}\nConfidence: {c}%"), None
    if float(body.get("temperature", 0) or 0) > 0:
        return sampled(text, int(body.get("seed", 0))), None
    p = belief(text)
    return a, {a: math.log(p), other: math.log(1 - p), "The": -6.0}


def _wants_logprobs(body: dict[str, Any]) -> tuple[bool, int]:
    if "messages" in body:
        k = body.get("top_logprobs")
        return bool(body.get("logprobs")) or k is not None, int(k or 0)
    k = body.get("logprobs")
    return k is not None, int(k or 0)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        srv = self.server.owner
        with srv.lock:
            srv.requests.append({"path": self.path, "body": body})
        if srv.delay:
            time.sleep(srv.delay)
        text, first = reply_text(body)
        words = text.split()
        want, k = _wants_logprobs(body)
        logprobs: Any = None
        if srv.logprobs and want:
            tops = first if first is not None else {words[0] if words else "": -0.1}
            chosen = max(tops, key=tops.__getitem__)
            content = [
                {
                    "token": chosen,
                    "logprob": tops[chosen],
                    "top_logprobs": [{"token": t, "logprob": v} for t, v in list(tops.items())[:k]],
                }
            ]
            content += [{"token": " " + w, "logprob": -0.1, "top_logprobs": []} for w in words[1:]]
            max_tokens = int(body.get("max_tokens", 16))
            content = content[:max_tokens]
            if max_tokens == 1:
                text = chosen
            logprobs = {"content": content}
        usage = {"prompt_tokens": 10, "completion_tokens": len(text.split())}
        if "messages" in body:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
        else:
            choice = {"index": 0, "text": text}
        choice["logprobs"] = logprobs
        choice["finish_reason"] = "stop"
        data = json.dumps({"id": "conf", "choices": [choice], "usage": usage}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ConfidenceServer


class ConfidenceServer:
    """The stub; ``url`` is its API root, ``spec`` a calibkit model spec for it.

    Parameters
    ----------
    logprobs : bool
        Whether it returns log-probabilities when asked (``False``: never).
    delay : float
        Seconds each request waits (to make a run slow enough to interrupt).
    lifetime : float
        It closes itself after this many seconds.
    """

    def __init__(self, *, logprobs: bool = False, delay: float = 0.0, lifetime: float = 300.0):
        self.logprobs = logprobs
        self.delay = delay
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self.spec = f"openai:{self.url}::stub"
        self._closed = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ConfidenceServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":  # manual use / the CLI tests: python tests/confidence_server.py
    import sys

    lp = "--logprobs" in sys.argv
    delay = float(sys.argv[sys.argv.index("--delay") + 1]) if "--delay" in sys.argv else 0.0
    with ConfidenceServer(logprobs=lp, delay=delay, lifetime=600) as s:
        print(s.url, flush=True)
        threading.Event().wait(600)
