"""OpenAICompatibleBackend against a local stub server speaking the OpenAI protocol (loopback only).

The stub is ``http.server`` in a thread on a random port; each test scripts its responses. Waits
are kept short (timeouts of a fraction of a second, tiny backoff) so the file runs in seconds.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

pytest.importorskip("requests")

from calibkit.scoring.backends.base import Backend, Generation, ItemFailure
from calibkit.scoring.backends.openai_http import (
    BackendError,
    OpenAICompatibleBackend,
    TokenBucket,
    _retry_after,
)
from calibkit.scoring.cache import ScoreCache, cache_key, map_cached

# --------------------------------------------------------------------------------------------
# stub server

Behaviour = Callable[["_Handler", dict[str, Any]], None]


class _Handler(BaseHTTPRequestHandler):
    server: _StubServer

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        body = json.loads(raw)
        stub = self.server.stub
        with stub.lock:
            stub.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
            stub.in_flight += 1
            stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
            behaviour = stub.script.popleft() if stub.script else stub.default
        try:
            behaviour(self, body)
        except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout test)
            pass
        finally:
            with stub.lock:
                stub.in_flight -= 1

    def send_json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.send_raw(json.dumps(obj).encode(), status, headers)

    def send_raw(
        self, data: bytes, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True
    stub: Stub


class Stub:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.script: deque[Behaviour] = deque()
        self.default: Behaviour = fake_model
        self.in_flight = 0
        self.max_in_flight = 0
        self.server = _StubServer(("127.0.0.1", 0), _Handler)
        self.server.stub = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.close()


def backend(stub: Stub, **kw: Any) -> OpenAICompatibleBackend:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("max_retries", 2)
    kw.setdefault("backoff", 0.001)
    kw.setdefault("seed", 0)
    kw.setdefault("api_key", "")
    return OpenAICompatibleBackend(stub.url, "stub-model", **kw)


# A deterministic fake model: the answer and its log-probabilities are functions of the prompt, so
# the expected Generation is computed here independently of the backend's parser.
def _prompt_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        return body["messages"][-1]["content"]
    return body["prompt"]


def expected_positions(prompt: str, n: int) -> list[tuple[str, float, dict[str, float]]]:
    """(chosen token, its logprob, top alternatives) at each of n positions."""
    out = []
    base = -len(prompt) / 100.0
    for j in range(n):
        chosen = f" {prompt}{j}"
        tops = {chosen: base - j, " No": base - j - 1.5, "yes": base - j - 2.5}
        out.append((chosen, base - j, tops))
    return out


def fake_model(h: _Handler, body: dict[str, Any]) -> None:
    prompt = _prompt_text(body)
    if prompt.startswith("sleep:"):  # scramble completion order in the concurrency test
        time.sleep(float(prompt.split(":")[1]))
    pos = expected_positions(prompt, body["max_tokens"])
    text = "".join(c for c, _, _ in pos)
    if "messages" in body:
        k = body["top_logprobs"]
        content = [
            {
                "token": c,
                "logprob": lp,
                "bytes": list(c.encode()),
                "top_logprobs": [{"token": t, "logprob": v} for t, v in list(tops.items())[:k]],
            }
            for c, lp, tops in pos
        ]
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": {"content": content},
            "finish_reason": "length",
        }
        h.send_json({"id": "chatcmpl-1", "object": "chat.completion", "choices": [choice]})
    else:
        k = body["logprobs"]
        lp = {
            "tokens": [c for c, _, _ in pos],
            "token_logprobs": [v for _, v, _ in pos],
            "top_logprobs": [dict(list(tops.items())[:k]) for _, _, tops in pos],
            "text_offset": list(range(len(pos))),
        }
        choice = {"index": 0, "text": text, "logprobs": lp, "finish_reason": "length"}
        h.send_json({"id": "cmpl-1", "object": "text_completion", "choices": [choice]})


def expected_generation(prompt: str, n: int, k: int) -> Generation:
    pos = expected_positions(prompt, n)
    lps = []
    for c, lp, tops in pos:
        d = dict(list(tops.items())[:k])
        d[c] = lp
        lps.append(d)
    return Generation(
        text="".join(c for c, _, _ in pos), tokens=[c for c, _, _ in pos], logprobs=lps
    )


def failed(result: Any) -> str:
    """The reason of an ItemFailure (asserting it is one)."""
    assert isinstance(result, ItemFailure), result
    return result.reason


def reply(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Behaviour:
    return lambda h, body: h.send_json(obj, status, headers)


def raw(data: bytes, status: int = 200) -> Behaviour:
    return lambda h, body: h.send_raw(data, status)


def sleep_then_ok(seconds: float) -> Behaviour:
    def f(h: _Handler, body: dict[str, Any]) -> None:
        time.sleep(seconds)
        fake_model(h, body)

    return f


# --------------------------------------------------------------------------------------------
# parsing


def test_protocol_and_name(stub: Stub) -> None:
    b = backend(stub)
    assert isinstance(b, Backend)
    assert b.name == f"openai:{stub.url}:stub-model"
    assert OpenAICompatibleBackend(stub.url + "/", "m").name == f"openai:{stub.url}:m"


def test_chat_generate_request_and_parsing(stub: Stub) -> None:
    b = backend(stub)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q1"}]
    (g,) = b.generate([msgs], max_new_tokens=3, top_logprobs=2)
    assert g == expected_generation("Q1", 3, 2)
    req = stub.requests[0]
    assert req["path"] == "/v1/chat/completions"
    body = req["body"]
    assert body["model"] == "stub-model"
    assert body["messages"] == msgs
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert body["max_tokens"] == 3 and body["temperature"] == 0
    assert "Authorization" not in req["headers"]


def test_plain_string_prompt_goes_to_completions_and_top_k_is_capped(stub: Stub) -> None:
    # Issue 10 item 22: a plain prompt must not get the server's chat template.
    b = backend(stub, top_logprobs=1)
    (g,) = b.generate(["hello"], max_new_tokens=1, top_logprobs=20)
    req = stub.requests[0]
    assert req["path"] == "/v1/completions"
    assert req["body"]["prompt"] == "hello" and "messages" not in req["body"]
    assert req["body"]["logprobs"] == 1
    assert g == expected_generation("hello", 1, 1)


def test_completions_legacy_shape(stub: Stub) -> None:
    b = backend(stub, use_chat=False)
    gens = b.generate(["abc", "de"], max_new_tokens=2, top_logprobs=3)
    assert gens == [expected_generation("abc", 2, 3), expected_generation("de", 2, 3)]
    req = stub.requests[0]
    assert req["path"] == "/v1/completions"
    assert isinstance(req["body"]["logprobs"], int) and req["body"]["logprobs"] == 3
    assert "messages" not in req["body"]
    with pytest.raises(ValueError, match="use_chat=False"):
        b.generate([[{"role": "user", "content": "x"}]])


def test_completions_null_entries_and_llamacpp_shape(stub: Stub) -> None:
    legacy = {
        "choices": [
            {
                "text": " A.",
                "logprobs": {
                    "tokens": [" A", "."],
                    "token_logprobs": [None, -0.5],
                    "top_logprobs": [None, None],
                },
            }
        ]
    }
    chat_like = {
        "choices": [
            {
                "text": " B",
                "logprobs": {
                    "content": [
                        {
                            "token": " B",
                            "logprob": -0.1,
                            "top_logprobs": [{"token": " C", "logprob": -2.0}],
                        }
                    ]
                },
            }
        ]
    }
    stub.script.extend([reply(legacy), reply(chat_like)])
    b = backend(stub, use_chat=False, max_concurrency=1)
    g1, g2 = b.generate(["x", "y"], max_new_tokens=1)
    assert g1 == Generation(text=" A.", tokens=[" A", "."], logprobs=[{}, {".": -0.5}])
    assert g2 == Generation(text=" B", tokens=[" B"], logprobs=[{" B": -0.1, " C": -2.0}])


def test_duplicate_token_strings_keep_the_max(stub: Stub) -> None:
    content = [
        {
            "token": "\ufffd",
            "logprob": -3.0,
            "top_logprobs": [
                {"token": "\ufffd", "logprob": -1.0},
                {"token": "\ufffd", "logprob": -3.0},
                {"token": "x", "logprob": -2.0},
            ],
        }
    ]
    stub.script.append(
        reply({"choices": [{"message": {"content": "?"}, "logprobs": {"content": content}}]})
    )
    (g,) = backend(stub).generate([[{"role": "user", "content": "p"}]], max_new_tokens=1)
    assert g.logprobs == [{"\ufffd": -1.0, "x": -2.0}]


def test_next_token_logprobs_reports_every_top_k_token(stub: Stub) -> None:
    # The whole top-k comes back (not only the candidates), so a scorer can bound a missing one.
    b = backend(stub)
    out = b.next_token_logprobs(["ab", "abcd"], [" No", "yes", " Maybe"])
    for prompt, d in zip(["ab", "abcd"], out, strict=True):
        base = -len(prompt) / 100.0
        want = {f" {prompt}0": base, " No": base - 1.5, "yes": base - 2.5}
        assert d == pytest.approx(want)  # " Maybe" missing
    assert all(r["body"]["max_tokens"] == 1 for r in stub.requests)
    assert all(r["body"]["logprobs"] == 20 for r in stub.requests)
    (everything,) = b.next_token_logprobs(["ab"], [])
    assert set(everything) == {" ab0", " No", "yes"}


def test_empty_answer_is_an_item_failure(stub: Stub) -> None:
    stub.script.append(
        reply({"choices": [{"message": {"content": ""}, "logprobs": {"content": []}}]})
    )
    (r,) = backend(stub).next_token_logprobs([[{"role": "user", "content": "p"}]], [" Yes"])
    assert "empty completion" in failed(r)


def test_order_preserved_and_concurrency_bounded(stub: Stub) -> None:
    prompts = [f"sleep:{0.05 * ((7 * i) % 4)}" for i in range(12)]
    b = backend(stub, max_concurrency=3)
    gens = b.generate(prompts, max_new_tokens=1, top_logprobs=1)
    assert gens == [expected_generation(p, 1, 1) for p in prompts]
    assert 2 <= stub.max_in_flight <= 3
    assert b.generate([]) == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="base_url"):
        OpenAICompatibleBackend("localhost:8000", "m")
    with pytest.raises(ValueError, match="model"):
        OpenAICompatibleBackend("http://x/v1", "")
    with pytest.raises(ValueError, match="timeout"):
        OpenAICompatibleBackend("http://x/v1", "m", timeout=0)
    with pytest.raises(ValueError, match="max_concurrency"):
        OpenAICompatibleBackend("http://x/v1", "m", max_concurrency=0)
    b = OpenAICompatibleBackend("http://x/v1", "m")
    with pytest.raises(ValueError, match="max_new_tokens"):
        b.generate(["x"], max_new_tokens=0)
    with pytest.raises(ValueError, match="role"):
        b.generate([[{"role": "robot", "content": "x"}]])
    with pytest.raises(ValueError, match="candidates"):
        b.next_token_logprobs(["x"], "Yes")


def test_api_key_header_from_env_and_hidden(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    b = OpenAICompatibleBackend(stub.url, "stub-model")
    b.generate(["x"], max_new_tokens=1)
    assert stub.requests[0]["headers"]["Authorization"] == "Bearer sk-secret"
    assert "sk-secret" not in repr(b) and "sk-secret" not in b.name


def test_pickle_round_trip(stub: Stub) -> None:
    b = pickle.loads(pickle.dumps(backend(stub, requests_per_second=100.0)))
    assert b.generate(["x"], max_new_tokens=1, top_logprobs=3) == [expected_generation("x", 1, 3)]


# --------------------------------------------------------------------------------------------
# failures, retries, rate limiting


def test_timeout_is_retried_then_item_failure(stub: Stub) -> None:
    stub.default = sleep_then_ok(1.0)
    b = backend(stub, timeout=0.2, max_retries=2)
    t0 = time.monotonic()
    (r,) = b.generate(["x"], max_new_tokens=1)
    assert "timeout" in failed(r) and "3 attempts" in failed(r)
    assert time.monotonic() - t0 < 5.0
    assert len(stub.requests) == 3 == b.n_requests


def test_timeout_then_success(stub: Stub) -> None:
    stub.script.append(sleep_then_ok(1.0))
    b = backend(stub, timeout=0.2)
    assert b.generate(["x"], max_new_tokens=1) == [expected_generation("x", 1, 20)]
    assert len(stub.requests) == 2


def test_429_honours_retry_after(stub: Stub) -> None:
    err = {"error": {"message": "rate limited", "type": "rate_limit"}}
    stub.script.append(reply(err, 429, {"Retry-After": "0.3"}))
    b = backend(stub)
    t0 = time.monotonic()
    assert b.generate(["x"], max_new_tokens=1) == [expected_generation("x", 1, 20)]
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 5.0  # backoff alone would be ~1 ms
    assert len(stub.requests) == 2


def test_persistent_5xx_gives_up_with_status(stub: Stub) -> None:
    stub.default = reply({"error": {"message": "overloaded"}}, 503)
    (r,) = backend(stub, max_retries=3).generate(["x"])
    assert "HTTP 503: overloaded" in failed(r)
    assert len(stub.requests) == 4


def test_client_error_is_not_retried(stub: Stub) -> None:
    stub.default = reply({"error": {"message": "top_logprobs must be <= 5"}}, 400)
    (r,) = backend(stub).generate(["x"])
    assert "HTTP 400: top_logprobs must be <= 5" in failed(r)
    assert len(stub.requests) == 1


def test_unauthorized_hints_at_key(stub: Stub) -> None:
    stub.default = reply({"error": {"message": "bad key"}}, 401)
    with pytest.raises(BackendError, match="api_key") as ei:
        backend(stub).generate(["x"])  # a rejected key concerns every item: raised at once
    assert ei.value.status == 401 and len(stub.requests) == 1


def test_malformed_json_retried_then_error(stub: Stub) -> None:
    stub.default = raw(b'{"choices": [ not json')
    (r,) = backend(stub, max_retries=2).generate(["x"])
    assert "not JSON" in failed(r)
    assert len(stub.requests) == 3


def test_malformed_json_once_then_success(stub: Stub) -> None:
    stub.script.append(raw(b"<html>502 Bad Gateway</html>"))
    assert backend(stub).generate(["x"], max_new_tokens=1) == [expected_generation("x", 1, 20)]


def test_missing_logprobs_field(stub: Stub) -> None:
    stub.default = reply(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Yes"}}]}
    )
    (r,) = backend(stub).generate([[{"role": "user", "content": "x"}]])
    assert "choices[0].logprobs is missing" in failed(r)
    assert len(stub.requests) == 1  # a shape error is not retried


def _chat(content: Any) -> dict[str, Any]:
    return {"choices": [{"message": {"content": "A"}, "logprobs": {"content": content}}]}


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ([1, 2], "body is list"),
        ({"object": "chat.completion"}, "choices is missing"),
        ({"choices": []}, "choices is empty"),
        ({"choices": "nope"}, "choices is str"),
        ({"choices": [{"logprobs": {"content": []}}]}, r"choices\[0\]\.message is missing"),
        (_chat("A"), "content is str"),
        (_chat([{"logprob": -1.0}]), r"content\[0\]\.token is missing"),
        (_chat([{"token": "A", "logprob": "-1"}]), r"content\[0\]\.logprob is str"),
        (
            _chat([{"token": "A", "logprob": -1.0, "top_logprobs": [{"token": "B"}]}]),
            r"content\[0\]\.top_logprobs\[0\]\.logprob is missing",
        ),
        ({"error": {"message": "model not loaded"}}, "model not loaded"),
    ],
)
def test_wrong_shapes_name_the_field(stub: Stub, payload: Any, match: str) -> None:
    stub.default = reply(payload)
    (r,) = backend(stub).generate([[{"role": "user", "content": "x"}]], max_new_tokens=1)
    assert re.search(match, failed(r))


def test_completions_wrong_shapes(stub: Stub) -> None:
    lp = {"tokens": ["a", "b"], "token_logprobs": [-1.0], "top_logprobs": [None, None]}
    stub.default = reply({"choices": [{"text": "ab", "logprobs": lp}]})
    (r,) = backend(stub, use_chat=False).generate(["x"])
    assert "differ in length" in failed(r)


def test_connection_refused_is_retried_then_error() -> None:
    s = Stub()
    url = s.url
    s.close()  # nothing listens on the port any more
    b = OpenAICompatibleBackend(url, "m", max_retries=1, backoff=0.001, timeout=1.0)
    with pytest.raises(BackendError, match=r"cannot reach .*connection failed"):
        b.generate(["x"])  # an unreachable server concerns every item: raised
    assert b.n_requests == 2


def test_rate_limit_spaces_requests(stub: Stub) -> None:
    b = backend(stub, requests_per_second=20.0, max_concurrency=4)
    t0 = time.monotonic()
    b.generate([f"p{i}" for i in range(6)], max_new_tokens=1)
    elapsed = time.monotonic() - t0
    # The bucket starts with one token, then releases one every 50 ms: >= 250 ms for 6 requests.
    assert 0.2 <= elapsed < 5.0
    assert len(stub.requests) == 6


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=100.0, capacity=2)
    t0 = time.monotonic()
    for _ in range(7):  # 2 from the full bucket, then 5 at 10 ms each
        bucket.acquire()
    assert 0.04 <= time.monotonic() - t0 < 2.0
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="capacity"):
        TokenBucket(1.0, capacity=0.5)


def test_retry_after_parsing_and_backoff_bounds() -> None:
    assert _retry_after("2") == 2.0
    assert _retry_after(" 0.5 ") == 0.5
    assert _retry_after("-3") == 0.0
    assert _retry_after("soon") is None
    assert _retry_after(None) is None
    assert _retry_after("nan") is None
    in_ten = _retry_after(formatdate(time.time() + 10, usegmt=True))
    assert in_ten is not None and 8.0 <= in_ten <= 11.0
    b = OpenAICompatibleBackend("http://x/v1", "m", backoff=0.1, max_backoff=1.0, seed=3)
    for attempt in range(8):
        base = min(1.0, 0.1 * 2**attempt)
        d = b._delay(attempt, None)
        assert 0.5 * base <= d <= base
    assert b._delay(0, 0.7) >= 0.7
    assert b._delay(0, 1e6) == 1.0  # capped at max_backoff
    # same seed, same jitter
    b2 = OpenAICompatibleBackend("http://x/v1", "m", backoff=0.1, max_backoff=1.0, seed=3)
    b3 = OpenAICompatibleBackend("http://x/v1", "m", backoff=0.1, max_backoff=1.0, seed=3)
    assert [b2._delay(i, None) for i in range(5)] == [b3._delay(i, None) for i in range(5)]


def test_with_score_cache_second_run_sends_nothing(stub: Stub) -> None:
    b = backend(stub)
    prompts = [f"q{i}" for i in range(5)]
    keys = [cache_key(b.name, "first-token", p) for p in prompts]
    cache = ScoreCache()

    def fn(batch: list[str]) -> list[dict[str, float]]:
        return b.next_token_logprobs(batch, [" No", "yes"])

    first = map_cached(fn, prompts, keys, cache, batch_size=2, progress=False)
    n = len(stub.requests)
    assert n == 5
    again = map_cached(fn, prompts, keys, cache, batch_size=2, progress=False)
    assert again == first and len(stub.requests) == n
    assert all(
        math.isclose(d["yes"], -len(p) / 100 - 2.5) for p, d in zip(prompts, first, strict=True)
    )


def test_from_spec() -> None:
    b = OpenAICompatibleBackend.from_spec(
        "openai:http://localhost:8000/v1::Qwen/Qwen2.5-7B", timeout=3
    )
    assert (b.base_url, b.model, b.timeout) == ("http://localhost:8000/v1", "Qwen/Qwen2.5-7B", 3.0)
    b6 = OpenAICompatibleBackend.from_spec("openai:http://[::1]:8080/v1::llama3:8b")
    assert (b6.base_url, b6.model) == ("http://[::1]:8080/v1", "llama3:8b")
    assert (
        b6.has_chat_template
        and not OpenAICompatibleBackend("http://x/v1", "m", use_chat=False).has_chat_template
    )
    with pytest.raises(ValueError, match="::<model>"):
        OpenAICompatibleBackend.from_spec("openai:http://localhost:8000/v1")
    with pytest.raises(ValueError, match="not an HTTP model spec"):
        OpenAICompatibleBackend.from_spec("smollm2")


def _sentiment_server(h: _Handler, body: dict[str, Any]) -> None:
    """A 'model' that answers 'positive' when the input mentions 'good', else 'negative'."""
    text = json.dumps(body.get("messages", body.get("prompt")))
    good = "good" in text
    top = {"positive": -0.2, " positive": -1.9, "negative": -2.5, "Negative": -3.0, "The": -4.0}
    if not good:
        top = {"negative": -0.1, "Positive": -2.2, " positive": -2.4, "Sure": -3.5}
    first = max(top, key=top.__getitem__)
    positions = [(first, top), ("<end>", {"<end>": -0.01, "!": -5.0})][: body["max_tokens"]]
    content = [
        {
            "token": t,
            "logprob": d[t],
            "top_logprobs": [{"token": a, "logprob": v} for a, v in d.items()],
        }
        for t, d in positions
    ]
    answer = "".join(t for t, _ in positions).replace("<end>", "")
    h.send_json({"choices": [{"message": {"content": answer}, "logprobs": {"content": content}}]})


def test_classification_scorer_over_http(stub: Stub) -> None:
    classify = pytest.importorskip("calibkit.scoring.classify")
    stub.default = _sentiment_server
    texts = ["a good film", "a dull film", "good acting"]
    # Step 1 of paper 001 by hand: max log-prob over each class's surface variants.
    expected = [[-2.5, -0.2], [-0.1, -2.2], [-2.5, -0.2]]
    cache = ScoreCache()
    results = {}
    for mode in ("generate", "next_token"):
        scorer = classify.ClassificationScorer(
            backend(stub), ["negative", "positive"], mode=mode, cache=cache, progress=False
        )
        s = scorer.score(texts, labels=["positive", "negative", "positive"])
        np.testing.assert_allclose(s.logits, expected)
        results[mode] = s
    answers = results["generate"].per_item["answer_text"]
    assert list(answers) == ["positive", "negative", "positive"]
    n = len(stub.requests)
    assert n == 6  # 3 texts x 2 modes
    again = classify.ClassificationScorer(
        backend(stub), ["negative", "positive"], mode="generate", cache=cache, progress=False
    ).score(texts)
    np.testing.assert_allclose(again.logits, expected)
    assert len(stub.requests) == n  # served from the cache
