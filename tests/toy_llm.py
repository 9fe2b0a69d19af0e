"""A deterministic toy LLM for experiment tests, as an in-process Backend and as a local server
speaking the OpenAI chat-completions protocol (loopback only, random port).

Classification: the log-probability of each answer word is a function of the text being
classified (the last line of the last user message) and of the word, with a small keyword signal
(``how many``/``when`` -> number, ``who`` -> person, ``where`` -> location, a positive word ->
yes) so that tasks are learnable but not trivial. Generation: three short utterances derived from
the prompt. Nothing here knows which experiment calls it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from calibkit.scoring.backends.base import Generation

_KEYWORDS = {
    "number": ("how many", "how much", "when ", "what year", "how long", "how far"),
    "person": ("who ",),
    "location": ("where ", "what country", "what city"),
    "yes": ("good", "great", "love", "best", "how many", "how much", "when "),
}
#: answer words the server reports (its "top_logprobs" vocabulary)
VOCAB = (
    "yes", "no", "number", "person", "location", "description", "entity", "abbreviation",
    "other", "positive", "negative", "objective", "subjective",
)  # fmt: skip


def _unit(*parts: str) -> float:
    h = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _item_text(prompt: Any) -> str:
    text = prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)
    return text.strip().splitlines()[-1] if text.strip() else ""


def word_logprob(text: str, word: str) -> float:
    """Toy log-probability of answering ``word`` for an item ``text``."""
    w = word.strip().lower()
    t = text.lower()
    bonus = 2.0 if any(k in t for k in _KEYWORDS.get(w, ())) else 0.0
    return -3.0 * _unit(t, w) + bonus - 2.5  # <= -0.5: a log-probability


def utterances(prompt: Any, n: int = 3) -> str:
    """Three numbered utterances derived from the prompt."""
    seed = _item_text(prompt)
    words = ["delivery", "card", "movie", "question", "plot", "account", "service", "price"]
    out = []
    for i in range(n):
        pick = [words[int(_unit(seed, str(i), str(j)) * len(words))] for j in range(4)]
        out.append(f"{i + 1}. the {pick[0]} and the {pick[1]} of {pick[2]} {pick[3]} {i}")
    return "\n".join(out)


class ToyLLM:
    """The toy as an in-process :class:`~calibkit.scoring.backends.base.Backend`."""

    def __init__(self, tag: str = "toy") -> None:
        self.tag = tag
        self.calls = 0

    @property
    def name(self) -> str:
        return f"toy:{self.tag}"

    @property
    def has_chat_template(self) -> bool:
        return True

    def generate(
        self,
        prompts: Sequence[Any],
        *,
        max_new_tokens: int = 8,
        candidates: Sequence[str] = (),
        top_logprobs: int = 20,
    ) -> list[Generation]:
        self.calls += len(prompts)
        return [Generation(text=utterances(p)) for p in prompts]

    def next_token_logprobs(
        self, prompts: Sequence[Any], candidates: Sequence[str]
    ) -> list[dict[str, float]]:
        self.calls += len(prompts)
        return [{c: word_logprob(_item_text(p), c) for c in candidates} for p in prompts]


# ------------------------------------------------------------------ OpenAI-protocol server
class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        with self.server.lock:
            self.server.requests.append(
                {"path": self.path, "auth": self.headers.get("Authorization")}
            )
        messages = body.get("messages") or [{"role": "user", "content": body.get("prompt", "")}]
        if int(body.get("max_tokens", 1)) == 1:
            text = _item_text(messages)
            lps = sorted(((word_logprob(text, w), w) for w in VOCAB), reverse=True)
            k = int(body.get("top_logprobs", 20))
            top = [{"token": w, "logprob": lp} for lp, w in lps[:k]]
            content = [{"token": top[0]["token"], "logprob": top[0]["logprob"],
                        "top_logprobs": top}]  # fmt: skip
            answer = top[0]["token"]
        else:
            answer = utterances(messages)
            pieces = [w + " " for w in answer.split(" ")]
            content = [{"token": p, "logprob": -0.1, "top_logprobs": [{"token": p,
                        "logprob": -0.1}]} for p in pieces]  # fmt: skip
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": answer},
            "logprobs": {"content": content},
            "finish_reason": "stop",
        }
        data = json.dumps({"id": "toy", "object": "chat.completion", "choices": [choice]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    lock: threading.Lock
    requests: list[dict[str, Any]]


@contextmanager
def toy_server() -> Iterator[_Server]:
    """A running toy server; its base URL is ``server.url``."""
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.lock = threading.Lock()
    srv.requests = []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"  # type: ignore[attr-defined]
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    th.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
