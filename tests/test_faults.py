"""Fault injection (issue #10): every fault ends in a correct result or a clear error.

A stub OpenAI-compatible server on 127.0.0.1 (``tests/fault_server.py``; each text picks its own
fault with an ``@tag``) answers with each failure mode; the property under test is that no
failure ever yields a cached value or an output row, that the successes around a failure are
cached, and that a rerun pays only for what failed. Kill/resume and Ctrl-C run ``calibkit score``
in a subprocess. Expected numbers come from the stub's own definition of its replies
(:func:`fault_server.good_top`), not from calibkit.
"""

from __future__ import annotations

import _thread
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("requests")

from calibkit.cli.main import main
from calibkit.scores import Scores
from calibkit.scoring.backends.base import Generation, ItemFailure
from calibkit.scoring.backends.openai_http import BackendError, OpenAICompatibleBackend
from calibkit.scoring.cache import ScoreCache
from calibkit.scoring.classify import ClassificationScorer, ItemsFailed
from calibkit.scoring.matching import (
    aggregate_generation,
    aggregate_next_token_filled,
    matching_token_sets,
)
from calibkit.scoring.mcq import MultipleChoiceScorer
from calibkit.scoring.prompts import PromptTemplate
from fault_server import FaultServer, good_top

CLASSES = ["negative", "positive"]
KEY = "sk-test-SECRET-0123456789"
FAULTS = [
    "@null_logprobs",
    "@empty_logprobs",
    "@no_logprobs",
    "@empty",
    "@nan",
    "@inf",
    "@positive",
    "@e500",
    "@e400",
    "@stall",
    "@garbage",
    "@cut",
    "@shape",
    "@echo_auth",
]
GOOD = ["a good film", "a dull film", "good acting", "plain plot", "good @missing_class"]


@pytest.fixture
def server() -> Any:
    with FaultServer(lifetime=90.0) as s:
        yield s


def http(server: FaultServer, **kw: Any) -> OpenAICompatibleBackend:
    kw.setdefault("timeout", 0.5)
    kw.setdefault("max_retries", 1)
    kw.setdefault("backoff", 0.001)
    kw.setdefault("seed", 0)
    kw.setdefault("api_key", KEY)
    return OpenAICompatibleBackend(server.url, "stub", **kw)


def expected_logits(text: str) -> list[float]:
    """Class logits by hand from the stub's reply: max over each class's surface forms; a class
    absent from the top-k gets the smallest top-k log-probability."""
    top = good_top(text)
    z = []
    for c in CLASSES:
        vals = [v for t, v in top.items() if t.strip().lower() == c]
        z.append(max(vals) if vals else min(top.values()))
    return z


def cached_values(path: Path) -> list[Any]:
    with ScoreCache(path) as c:
        return list(c.get_many(list(c.keys())).values())


# ---------------------------------------------------------------------------- backend level
@pytest.mark.parametrize("plain", [False, True], ids=["chat", "completions"])
@pytest.mark.parametrize("fault", FAULTS)
def test_every_fault_is_an_item_failure_naming_it(server: FaultServer, fault: str, plain: bool):
    """Items 1, 2, 10, 23: no fault becomes a score or an exception that loses the batch."""
    b = http(server)
    prompt: Any = f"Text: x {fault}" if plain else [{"role": "user", "content": f"Text: x {fault}"}]
    ok: Any = "Text: fine" if plain else [{"role": "user", "content": "Text: fine"}]
    gens = b.generate([ok, prompt, ok], max_new_tokens=2)
    assert isinstance(gens[0], Generation) and isinstance(gens[2], Generation)
    assert isinstance(gens[1], ItemFailure), gens[1]
    reason = gens[1].reason
    words = {
        "@null_logprobs": "log-probabilities",
        "@empty_logprobs": "empty",
        "@no_logprobs": "no log-probabilities",
        "@empty": "empty completion",
        "@nan": "NaN",
        "@inf": "inf",
        "@positive": "> 0",
        "@e500": "HTTP 500",
        "@e400": "HTTP 400",
        "@stall": "timeout",
        "@garbage": "not JSON",
        "@cut": "cut off",
        "@shape": "choices is missing",
        "@echo_auth": "HTTP 400",
    }
    assert words[fault] in reason, reason
    assert KEY not in reason and "SECRET" not in reason  # item 17
    (nt,) = b.next_token_logprobs([prompt], CLASSES)
    assert isinstance(nt, ItemFailure)


def test_flaky_server_is_retried_to_success(server: FaultServer):
    b = http(server, max_retries=3)
    (g,) = b.generate([[{"role": "user", "content": "Text: y @flaky"}]], max_new_tokens=1)
    assert isinstance(g, Generation) and server.seen["y @flaky"] == 3


def test_rejected_key_and_unreachable_server_are_raised_redacted():
    """Failures that concern every item are raised at once, with no secret in the message."""
    with FaultServer() as s:
        url = s.url
        b = OpenAICompatibleBackend(
            url.replace("http://", "http://alice:pa55word@"), "m", api_key=KEY, max_retries=0
        )
        assert "pa55word" not in b.name and "pa55word" not in repr(b) and "alice" not in b.name
        b.generate(["Text: ok"], max_new_tokens=1)
        assert s.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    with pytest.raises(BackendError) as ei:
        b.generate(["Text: ok"], max_new_tokens=1)
    assert "cannot reach" in str(ei.value)
    assert "pa55word" not in str(ei.value) and KEY not in str(ei.value)


def test_redaction_of_echoed_headers():
    b = OpenAICompatibleBackend("https://u:hunter22@api.example/v1", "m", api_key="abcd-1234-xyz")
    msg = b.redact(
        "got Authorization: Bearer abcd-1234-xyz and basic dTpodW50ZXIyMg== from "
        "https://u:hunter22@api.example/v1 api_key=zzz9"
    )
    for secret in ("abcd-1234-xyz", "hunter22", "dTpodW50ZXIyMg==", "zzz9"):
        assert secret not in msg
    assert "https://api.example/v1" in msg


def test_ctrl_c_returns_at_once_against_a_stalled_server(server: FaultServer):
    """Item 11: the caller's wait is interruptible; stalled requests are not joined."""
    b = http(server, timeout=30.0, max_retries=5, max_concurrency=2)
    threading.Timer(0.5, _thread.interrupt_main).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        b.generate([f"Text: s{i} @stall" for i in range(4)], max_new_tokens=1)
    assert time.monotonic() - t0 < 3.0


def test_ctrl_c_keeps_the_items_finished_before_it(server: FaultServer, tmp_path: Path):
    """Successes are committed as they complete: Ctrl-C mid-batch loses only unfinished items."""
    path = tmp_path / "c.sqlite"
    sc = ClassificationScorer(
        http(server, timeout=30.0, max_concurrency=4),
        CLASSES,
        mode="next_token",
        cache=path,
        batch_size=16,
        progress=False,
    )
    texts = ["a good film", "a dull film", "x @stall", "y @stall"]
    threading.Timer(1.0, _thread.interrupt_main).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt, match=r"^2 of 4 items cached; rerun to resume$"):
        sc.score(texts)
    assert time.monotonic() - t0 < 3.0
    assert len(cached_values(path)) == 2
    nocache = ClassificationScorer(http(server, timeout=30.0), CLASSES, progress=False)
    threading.Timer(0.5, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt, match="not kept"):
        nocache.score(["z @stall"])


# real llama.cpp replies (tests/fixtures/llama_server, captured by capture.py there), if present
LLAMA = sorted((Path(__file__).parent / "fixtures" / "llama_server").glob("*.json"))


@pytest.mark.skipif(not LLAMA, reason="no llama.cpp reply fixtures captured")
@pytest.mark.parametrize("fixture", LLAMA, ids=[p.stem for p in LLAMA])
def test_real_llama_server_replies_parse_or_fail_cleanly(fixture: Path, tmp_path: Path):
    """Replay a real llama.cpp reply through the parser: a score with valid numbers, or an
    ItemFailure naming the problem (an EOS-first answer, a context-length error ...)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    doc = json.loads(fixture.read_text())
    raw = json.dumps(doc["response"]).encode()

    class Replay(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(int(doc["status"]))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Replay)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        b = OpenAICompatibleBackend(
            f"http://127.0.0.1:{srv.server_address[1]}/v1", "m", max_retries=0, timeout=5.0
        )
        req = doc["request"]
        prompt: Any = req.get("messages") or req.get("prompt") or [{"role": "user", "content": ""}]
        try:
            (g,) = b.generate([prompt], max_new_tokens=int(req.get("max_tokens", 1)))
        except BackendError as e:  # fatal statuses (401/403/404) only
            assert int(doc["status"]) in (401, 403, 404), e
            return
    finally:
        srv.shutdown()
        srv.server_close()
    if isinstance(g, ItemFailure):
        assert int(doc["status"]) != 200 or "empty" in g.reason or "log-prob" in g.reason, g
        return
    assert int(doc["status"]) == 200 and g.logprobs
    for pos in g.logprobs:
        assert all(math.isfinite(v) and v <= 0.0 for v in pos.values())
    if "top20" in fixture.stem:
        assert len(g.logprobs[0]) >= 10  # the whole top-k comes back


# ---------------------------------------------------------------------------- matching rules
def test_fill_is_an_upper_bound_from_all_top_k_tokens():
    """Item 20: a class outside the top-k gets the smallest of ALL top-k log-probabilities."""
    sets = matching_token_sets(CLASSES, None)
    z, filled = aggregate_next_token_filled({"positive": -0.2, "The": -3.0, "Sure": -4.5}, sets)
    assert z.tolist() == [-4.5, -0.2] and filled.tolist() == [True, False]
    # generate: the class is below each position's smallest value; its max over positions is
    # below the largest of those minima (-2.0 here), which is the fill
    gen = Generation(
        text="positive.",
        tokens=["positive", "."],
        logprobs=[{"positive": -0.1, "The": -6.0}, {".": -0.01, "!": -2.0}],
    )
    z, pos = aggregate_generation(gen, sets)
    assert z.tolist() == [-2.0, -0.1] and pos.tolist() == [-1, 0]
    with pytest.raises(ValueError, match="nothing to score"):
        aggregate_next_token_filled({}, sets)
    with pytest.raises(ValueError, match="no output positions"):
        aggregate_generation(Generation(text=""), sets)


def test_multi_token_class_names_match_their_first_token_without_a_tokenizer():
    """Item 21: 'Sci/Tech' is spelled 'Sci' '/' 'Tech' by a server; 'Sci' counts for it."""
    classes = ["World", "Sports", "Business", "Sci/Tech"]
    sets = matching_token_sets(classes, None)
    assert sets.classes_of("Sci") == (3,) and sets.classes_of(" Sci") == (3,)
    assert sets.classes_of("S") == () and sets.classes_of("Tech") == ()
    assert sets.classes_of(" Sports") == (1,)
    # a prefix shared by two classes is evidence for neither
    shared = matching_token_sets(["card_arrival", "card_linking"], None)
    assert shared.classes_of("card") == () and shared.classes_of("card_arr") == (0,)


# ---------------------------------------------------------------------------- scorer level
def _texts() -> list[str]:
    return [*GOOD[:2], *(f"t{j} {f}" for j, f in enumerate(FAULTS)), *GOOD[2:]]


@pytest.mark.parametrize("mode", ["next_token", "generate"])
@pytest.mark.parametrize("plain", [False, True], ids=["chat", "completions"])
def test_no_failure_is_ever_cached_or_returned(
    server: FaultServer, tmp_path: Path, mode: str, plain: bool
):
    texts = _texts()
    path = tmp_path / "c.sqlite"
    sc = ClassificationScorer(
        http(server, max_concurrency=4),
        CLASSES,
        PromptTemplate(chat=not plain),
        mode=mode,
        max_new_tokens=2,
        cache=path,
        batch_size=4,
        progress=False,
    )
    s = sc.score(texts, on_error="skip")
    good = [i for i, t in enumerate(texts) if "@" not in t or "@missing_class" in t]
    assert s.ids.tolist() == good
    np.testing.assert_allclose(s.logits, [expected_logits(texts[i]) for i in good])
    assert {f["row"] for f in s.meta["failures"]} == set(range(len(texts))) - set(good)
    assert s.meta["n_filled_missing"] == 1 and s.meta["filled_per_class"] == {
        "negative": 1,
        "positive": 0,
    }
    values = cached_values(path)
    assert len(values) == len(good)  # successes only; no failure was cached
    assert all(all(math.isfinite(v) for v in r["logits"]) for r in values)
    # the rerun asks the server for the failed items only, and again caches none of them
    before = len(server.requests)
    again = sc.score(texts, on_error="skip")
    asked = {
        r["body"].get("prompt") or r["body"]["messages"][-1]["content"]
        for r in server.requests[before:]
    }
    assert all("@" in a and "@missing_class" not in a for a in asked)
    np.testing.assert_array_equal(again.logits, s.logits)
    assert len(cached_values(path)) == len(good)
    assert all(
        r["path"] == ("/v1/completions" if plain else "/v1/chat/completions")
        for r in server.requests
    )  # item 22: plain prompts never go through the chat template


def test_on_error_fail_commits_successes_then_names_the_item(server: FaultServer, tmp_path: Path):
    texts = ["a good film", "x @e500", "a dull film", "plain plot"]
    path = tmp_path / "c.sqlite"
    sc = ClassificationScorer(
        http(server), CLASSES, mode="next_token", cache=path, batch_size=8, progress=False
    )
    with pytest.raises(ItemsFailed, match=r"item 1 \(id '7'\).*HTTP 500") as ei:
        sc.score(texts, ids=[5, 7, 9, 11])
    assert ei.value.failures == [{"row": 1, "id": "7", "reason": ei.value.failures[0]["reason"]}]
    assert len(cached_values(path)) == 3  # before and after the failing item, same batch
    assert ei.value.n_cached == 3
    with pytest.raises(ValueError, match="on_error"):
        sc.score(texts, on_error="ignore")
    with pytest.raises(ItemsFailed, match="3 of 3 items failed"):
        sc.score([f"z{i} @e400" for i in range(3)], on_error="skip")


def test_stop_on_failure_does_not_pay_for_later_batches(server: FaultServer):
    texts = ["@e400", *(f"item {i}" for i in range(10))]  # the shortest text: first batch
    sc = ClassificationScorer(
        http(server, max_concurrency=1), CLASSES, mode="next_token", batch_size=2, progress=False
    )
    with pytest.raises(ItemsFailed):
        sc.score(texts)
    assert len(server.requests) <= 2


def test_missing_class_and_sci_tech_over_http(server: FaultServer):
    """Items 20 and 21 end to end over HTTP, both modes."""
    for mode in ("next_token", "generate"):
        s = ClassificationScorer(
            http(server), CLASSES, mode=mode, max_new_tokens=3, progress=False
        ).score(["good @missing_class"])
        assert s.logits.tolist() == [[-4.5, -0.2]]  # not -0.2/-0.2 (P = 0.5) as before
        ag = ["World", "Sports", "Business", "Sci/Tech"]
        s = ClassificationScorer(
            http(server), ag, mode=mode, max_new_tokens=3, progress=False
        ).score(["new chips @sci"])
        assert s.logits.tolist() == [[-3.0, -1.5, -2.0, -0.3]]
        assert s.prediction.tolist() == [3]


def test_mcq_failures_are_skipped_by_question(server: FaultServer):
    items = [
        {"question": "Text: q1", "choices": ["a", "b"], "answer": 0, "id": "q1"},
        {"question": "Text: q2 @nan", "choices": ["a", "b"], "answer": 1, "id": "q2"},
    ]
    sc = MultipleChoiceScorer(http(server), progress=False)
    with pytest.raises(ItemsFailed, match=r"question 1 \(id 'q2'\).*NaN"):
        sc.score(items)
    s = sc.score(items, on_error="skip")
    assert s.ids.tolist() == ["q1"] and s.meta["failures"][0]["id"] == "q2"


def test_tampered_cache_value_names_the_item_and_key(server: FaultServer, tmp_path: Path):
    path = tmp_path / "c.sqlite"
    sc = ClassificationScorer(http(server), CLASSES, mode="next_token", cache=path, progress=False)
    sc.score(["a good film", "a dull film"], ids=["r1", "r2"])
    con = sqlite3.connect(path)
    (key,) = con.execute("SELECT key FROM scores ORDER BY rowid LIMIT 1").fetchone()
    con.execute("UPDATE scores SET value = ? WHERE key = ?", ('{"logits": [NaN, 1]}', key))
    con.commit()
    with pytest.raises(ValueError, match=rf"item \d \(id 'r\d'\).*{key}.*--no-cache"):
        sc.score(["a good film", "a dull film"], ids=["r1", "r2"])
    con.execute("UPDATE scores SET value = ? WHERE key = ?", ("{not json", key))
    con.commit()
    con.close()
    with pytest.raises(ValueError, match=rf"item \d \(id 'r\d'\).*{key}.*not valid JSON"):
        sc.score(["a good film", "a dull film"], ids=["r1", "r2"])
    bad = tmp_path / "corrupt.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match=r"corrupt.sqlite.*(delete|--no-cache)"):
        ScoreCache(bad)


# ---------------------------------------------------------------------------- CLI
def _csv(tmp_path: Path, texts: list[str], **cols: list[Any]) -> Path:
    p = tmp_path / "data.csv"
    pd.DataFrame({"text": texts, **cols}).to_csv(p, index=False)
    return p


def _score(server: FaultServer, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "score",
        "--model",
        f"openai:{server.url}::stub",
        "--data",
        str(data),
        "--classes",
        "negative",
        "positive",
        "--mode",
        "next_token",
        "--timeout",
        "0.5",
        "--max-retries",
        "1",
        "-o",
        str(out),
        *extra,
    ]


def test_cli_on_error_skip_fail_and_resume(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
):
    """Item 10 and 18 on the command line."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    texts = ["a good film", "bad @nan", "a dull film", "x @echo_auth", "plain plot", "y @e500"]
    data = _csv(tmp_path, texts)
    out = tmp_path / "out.csv"
    cache = tmp_path / "c.sqlite"
    argv = _score(server, data, out, "--cache", str(cache))
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "data row 2 (file line 3)" in lines[0] and "NaN" in lines[0]
    assert KEY not in err and not out.exists()
    assert main([*argv, "--on-error", "skip"]) == 3
    err = capsys.readouterr().err
    assert "3 of 6 items could not be scored" in err and KEY not in err
    assert "scored 0 new items" in err and "3 from the cache" in err  # items/s: new items only
    s = Scores.load(out)
    assert s.per_item["row"].tolist() == [0, 2, 4] and s.ids.tolist() == [0, 2, 4]
    assert [f["row"] for f in s.meta["failures"]] == [1, 3, 5]
    assert KEY not in out.read_text() + (tmp_path / "out.csv.meta.json").read_text()
    assert main([*argv, "--on-error", "skip", "--allow-partial"]) == 0
    capsys.readouterr()


def test_cli_fatal_server_error_is_one_redacted_line(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
):
    """A rejected key stops the run at once: one error line, the key never shown."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    data = _csv(tmp_path, ["@e401", "a good film", "a dull film"])
    assert main(_score(server, data, tmp_path / "o.csv", "--no-cache", "--on-error", "skip")) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "HTTP 401" in lines[0] and "api_key" in lines[0], err
    assert KEY not in err and "Traceback" not in err
    assert len(server.requests) <= 3


def test_cli_rows_join_back_after_limit_split_and_few_shot(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Item 3: output rows carry their source row (and the text with --keep-text)."""
    texts = [f"sentence {i} {'good' if i % 2 else 'bad'}" for i in range(30)]
    labels = ["positive" if i % 2 else "negative" for i in range(30)]
    split = ["train" if i % 3 else "test" for i in range(30)]
    data = _csv(tmp_path, texts, label=labels, split=split)
    out = tmp_path / "o.parquet"
    argv = _score(server, data, out, "--no-cache", "--keep-text")
    for extra in (["--limit", "7"], ["--split", "train", "--limit", "5"], ["--few-shot", "2"]):
        assert main([*argv, *extra]) == 0, capsys.readouterr().err
        s = Scores.load(out)
        rows = s.per_item["row"].tolist()
        assert [texts[r] for r in rows] == s.per_item["text"].tolist()
        assert s.ids.tolist() == rows
        assert [labels[r] for r in rows] == [s.classes[k] for k in s.labels]
        if "--split" in extra:
            assert all(split[r] == "train" for r in rows)
        np.testing.assert_allclose(s.logits, [expected_logits(texts[r]) for r in rows])
    capsys.readouterr()


def test_cli_checks_outputs_before_scoring(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Item 14: unwritable output or cache, -o a folder, .zst output: one error, nothing sent."""
    data = _csv(tmp_path, ["a good film"])
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    folder = tmp_path / "outdir.csv"
    folder.mkdir()
    cases = [
        (["-o", str(blocker / "out.csv")], "file.txt"),
        (["-o", str(folder)], "folder"),
        (["-o", str(tmp_path / "out.csv.zst")], ".parquet, .csv or .jsonl"),
        (["-o", str(data)], "input data file"),
        (["--cache", str(blocker / "c.sqlite")], "--no-cache"),
    ]
    for extra, words in cases:
        argv = _score(server, data, tmp_path / "ok.csv", *extra)
        assert main(argv) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
        assert words in err, err
    assert server.requests == []  # nothing was scored
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            assert main(_score(server, data, ro / "out.csv", "--no-cache")) == 2
            assert server.requests == []
        finally:
            ro.chmod(0o700)


def test_cli_names_row_and_column_of_a_missing_text(tmp_path: Path, capsys: Any):
    data = tmp_path / "d.csv"
    data.write_text("text,label\nfine,positive\n,negative\n")
    argv = ["score", "--data", str(data), "--no-cache", "-o", str(tmp_path / "o.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "column 'text' is empty in data row 2 (file line 3)" in err


def test_cli_http_options_need_an_http_model(tmp_path: Path, capsys: Any):
    data = _csv(tmp_path, ["x"])
    argv = ["score", "--data", str(data), "--classes", "a,b", "-o", str(tmp_path / "o.csv")]
    assert main([*argv, "--timeout", "3"]) == 2
    assert "--timeout" in capsys.readouterr().err


def test_cli_credentials_never_reach_the_output(
    server: FaultServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Item 17: user:password@ of the base URL is stripped from names and metadata."""
    data = _csv(tmp_path, ["a good film"])
    out = tmp_path / "o.parquet"
    url = server.url.replace("http://", "http://alice:pa55word@")
    argv = _score(server, data, out, "--no-cache")
    argv[argv.index("--model") + 1] = f"openai:{url}::stub"
    assert main(argv) == 0, capsys.readouterr().err
    assert b"pa55word" not in out.read_bytes()
    assert "pa55word" not in capsys.readouterr().err


# ---------------------------------------------------------------------------- subprocess runs
def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "calibkit", *argv]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _n_cached(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        con = sqlite3.connect(path, timeout=1)
        try:
            return int(con.execute("SELECT COUNT(*) FROM scores").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _wait(cond: Any, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _assert_interrupted(
    proc: subprocess.Popen[Any], t_sigint: float, log: Path, *, exit_within: float = 5.0
) -> str:
    """Exit 130, one ``interrupted:`` line within 3 s of the signal, no traceback."""
    said = None
    while proc.poll() is None and time.monotonic() - t_sigint < 60:
        if said is None and "interrupted:" in log.read_text():
            said = time.monotonic() - t_sigint
        time.sleep(0.02)
    proc.wait(timeout=1)
    took = time.monotonic() - t_sigint
    err = log.read_text()
    assert proc.returncode == 130, err
    assert (said if said is not None else took) < 3.0, f"the message came after {said}s"
    assert took < exit_within, f"took {took:.1f}s to exit"
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("interrupted:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_against_a_stalled_server_stops_within_seconds(tmp_path: Path):
    with FaultServer(lifetime=60.0) as s:
        # "good" is the shortest text, so it is sent first (the scorer sorts by length)
        data = _csv(tmp_path, ["good", *(f"s{i} @stall" for i in range(6))])
        cache = tmp_path / "c.sqlite"
        argv = _score(s, data, tmp_path / "o.csv", "--cache", str(cache))
        argv[argv.index("--timeout") + 1] = "60"
        argv[argv.index("--max-retries") + 1] = "5"
        log = tmp_path / "stderr.txt"
        with open(log, "w") as fh:  # a file, not a pipe: progress bars never block the run
            proc = subprocess.Popen(_cli(*argv), stderr=fh, env=_env())
        assert _wait(lambda: len(s.requests) >= 5, 60), "the run never reached the server"
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = _assert_interrupted(proc, t0, log)
    # the finished item of the interrupted batch was committed, the stalled ones were not
    assert "interrupted: 1 of 7 items cached; rerun to resume" == line
    assert not (tmp_path / "o.csv").exists() and _n_cached(cache) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigkill_mid_http_run_resumes_with_identical_output(tmp_path: Path):
    texts = [f"text {i} {'good' if i % 3 else ''}" for i in range(48)]
    data = _csv(tmp_path, texts)
    cache = tmp_path / "c.sqlite"
    with FaultServer(delay=0.03, lifetime=120.0) as s:
        base = _score(s, data, tmp_path / "resumed.parquet", "--concurrency", "1")
        proc = subprocess.Popen(
            _cli(*base, "--cache", str(cache)), stderr=subprocess.DEVNULL, env=_env()
        )
        assert _wait(lambda: _n_cached(cache) >= 16, 60), "no batch was committed"
        proc.kill()
        proc.wait(timeout=10)
        n_killed = _n_cached(cache)
        assert 16 <= n_killed < 48
        before = len(s.requests)
        done = subprocess.run(
            _cli(*base, "--cache", str(cache)), capture_output=True, text=True, env=_env()
        )
        assert done.returncode == 0, done.stderr
        # only the missing items (+1: a request of the killed run may still be in transit)
        assert 48 - n_killed <= len(s.requests) - before <= 48 - n_killed + 1
        fresh = [*base, "--no-cache"]
        fresh[fresh.index("-o") + 1] = str(tmp_path / "fresh.parquet")
        assert main(fresh) == 0
    a, b = Scores.load(tmp_path / "resumed.parquet"), Scores.load(tmp_path / "fresh.parquet")
    np.testing.assert_array_equal(a.logits, b.logits)
    assert a.ids.tolist() == b.ids.tolist() and a.per_item["row"].tolist() == list(range(48))


# ---------------------------------------------------------------------------- local model
def _tiny_model_folder(folder: Path) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["negative positive neutral objective subjective the film was good and bad ."] * 20
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=600,
            special_tokens=["<pad>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    LlamaForCausalLM(cfg).eval().save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_model_folder(tmp_path_factory.mktemp("models") / "tiny")


def _local_argv(folder: Path, data: Path, out: Path) -> list[str]:
    return [
        "score",
        "--model",
        str(folder),
        "--data",
        str(data),
        "--classes",
        "negative,positive",
        "--mode",
        "next_token",
        "--plain",
        "--batch-size",
        "4",
        "-o",
        str(out),
    ]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_local_run_sigint_and_sigkill_resume(tiny_folder: Path, tmp_path: Path):
    """Item 11 for a local model: Ctrl-C is one line and exit 130; kill -9 resumes identically."""
    n = 300
    texts = [f"the film {i} was {'good' if i % 2 else 'bad'} ." * (1 + i % 3) for i in range(n)]
    data = _csv(tmp_path, texts)
    cache = tmp_path / "c.sqlite"
    argv = _local_argv(tiny_folder, data, tmp_path / "resumed.parquet")
    log = tmp_path / "stderr.txt"
    with open(log, "w") as fh:
        proc = subprocess.Popen(_cli(*argv, "--cache", str(cache)), stderr=fh, env=_env())
    assert _wait(lambda: _n_cached(cache) >= 16, 240), "no batch was committed"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    # the message is immediate; the exit then waits for torch's interpreter teardown (~5 s on
    # a loaded 2-core machine, the same after a normal run)
    line = _assert_interrupted(proc, t0, log, exit_within=20.0)
    assert f"of {n} items cached; rerun to resume" in line
    n_int = _n_cached(cache)
    proc = subprocess.Popen(
        _cli(*argv, "--cache", str(cache)), stderr=subprocess.DEVNULL, env=_env()
    )
    assert _wait(lambda: _n_cached(cache) >= n_int + 16, 240)
    proc.kill()
    proc.wait(timeout=10)
    assert _n_cached(cache) < n
    done = subprocess.run(
        _cli(*argv, "--cache", str(cache)), capture_output=True, text=True, env=_env()
    )
    assert done.returncode == 0, done.stderr
    fresh = _local_argv(tiny_folder, data, tmp_path / "fresh.parquet")
    assert main([*fresh, "--no-cache"]) == 0
    a, b = Scores.load(tmp_path / "resumed.parquet"), Scores.load(tmp_path / "fresh.parquet")
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
    assert a.per_item["row"].tolist() == b.per_item["row"].tolist() == list(range(n))
    assert json.dumps(a.meta["failures"]) == "[]"
