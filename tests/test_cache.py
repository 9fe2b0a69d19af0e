"""ScoreCache (SQLite) and map_cached: round trips, concurrent writers, resuming killed runs."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from calibkit.scoring.cache import (
    SCHEMA_VERSION,
    CacheEntryError,
    ScoreCache,
    cache_key,
    default_cache_dir,
    map_cached,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run_python(code: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# --------------------------------------------------------------------------------------------
# keys and paths


def test_cache_key_properties() -> None:
    k = cache_key("smollm2", "prompt-v1", "a sentence")
    assert len(k) == 64 and all(c in "0123456789abcdef" for c in k)
    assert k == cache_key("smollm2", "prompt-v1", "a sentence")
    assert cache_key("ab", "c") != cache_key("a", "bc")  # parts are delimited
    assert cache_key("a", "") != cache_key("a")
    assert cache_key("é") != cache_key("e")
    # stable across processes (no per-process hash seed)
    out = _run_python(
        "import sys; from calibkit.scoring.cache import cache_key;"
        "print(cache_key('smollm2', 'prompt-v1', 'a sentence'))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == k
    with pytest.raises(ValueError, match="part 1"):
        cache_key("a", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        cache_key()


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CALIBKIT_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CALIBKIT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "calibkit"


# --------------------------------------------------------------------------------------------
# ScoreCache


VALUES: dict[str, Any] = {
    "int": 3,
    "float": 0.1 + 0.2,
    "neg_inf": -math.inf,
    "str": "Ünïcode ✓",
    "none": None,
    "bool": True,
    "list": [1, 2.5, "x"],
    "nested": {"logprobs": [{" Yes": -0.1, " No": -2.3}], "text": " Yes"},
    "ключ": "unicode key",
}


@pytest.mark.parametrize("in_memory", [True, False])
def test_round_trip(tmp_path: Path, in_memory: bool) -> None:
    path = None if in_memory else tmp_path / "sub" / "dir" / "scores.sqlite"
    with ScoreCache(path) as c:
        assert len(c) == 0
        c.put_many(VALUES)
        assert len(c) == len(VALUES)
        got = c.get_many([*VALUES, "absent", "int"])
        assert got == VALUES  # absent key left out, duplicate key harmless
        assert got["neg_inf"] == -math.inf
        assert "str" in c and "absent" not in c and 5 not in c
        assert c.get("absent", 7) == 7
        c.put_many({"int": 4})  # replace
        assert c.get("int") == 4 and len(c) == len(VALUES)
        assert list(c.keys()) == [k for k in VALUES if k != "int"] + ["int"]
        c.delete_many(["int", "absent"])
        assert "int" not in c
        c.put_many({})
    assert c.closed
    with pytest.raises(ValueError, match="closed"):
        c.get_many(["str"])
    if path is not None:
        with ScoreCache(path) as again:  # persisted
            assert again.get("nested") == VALUES["nested"]
            again.clear()
            assert len(again) == 0


def test_nan_round_trips() -> None:
    with ScoreCache() as c:
        c.put_many({"nan": math.nan})
        assert math.isnan(c.get("nan"))


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    ScoreCache(path).close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    (version,) = con.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
    assert version == str(SCHEMA_VERSION)
    con.execute("UPDATE meta SET value='999' WHERE name='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="schema version 999"):
        ScoreCache(path)


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="directory"):
        ScoreCache(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match="not a usable SQLite cache"):
        ScoreCache(junk)
    with pytest.raises(ValueError, match="timeout"):
        ScoreCache(timeout=0)
    with ScoreCache() as c:
        with pytest.raises(ValueError, match=r"'bad'.*JSON"):
            c.put_many({"ok": 1, "bad": object()})
        assert len(c) == 0  # nothing of the failed batch was written
        with pytest.raises(ValueError, match="single string"):
            c.get_many("abc")
        with pytest.raises(ValueError, match=r"keys\[1\]"):
            c.get_many(["a", 1])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="mapping"):
            c.put_many([("a", 1)])  # type: ignore[arg-type]


def test_many_keys_beyond_sqlite_parameter_limit() -> None:
    with ScoreCache() as c:
        items = {f"k{i}": i for i in range(2500)}
        c.put_many(items)
        assert c.get_many(list(items)) == items


def test_pickle_reopens_file(tmp_path: Path) -> None:
    c = ScoreCache(tmp_path / "c.sqlite")
    c.put_many({"a": 1})
    c2 = pickle.loads(pickle.dumps(c))
    assert c2.get("a") == 1 and c2 is not c
    c.close()
    c2.close()
    with pytest.raises(TypeError, match="in-memory"):
        pickle.dumps(ScoreCache())


def test_threads_share_one_cache(tmp_path: Path) -> None:
    c = ScoreCache(tmp_path / "c.sqlite")

    def work(t: int) -> None:
        for i in range(50):
            c.put_many({f"{t}-{i}": [t, i]})
            assert c.get(f"{t}-{i}") == [t, i]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(c) == 200
    c.close()


WRITER = """
import os, sys, time
from calibkit.scoring.cache import ScoreCache
path, tag, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:  # start together
    time.sleep(0.005)
with ScoreCache(path, timeout=30) as c:
    for i in range(0, n, 5):
        c.put_many({f"{tag}-{j}": {"tag": tag, "j": j} for j in range(i, i + 5)})
        c.put_many({"shared": tag})
        c.get_many([f"{tag}-{i}", "shared"])
print("done")
"""


def test_concurrent_writers_from_two_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, path, tag, "300", str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for tag in ("a", "b")
    ]
    go.touch()  # both processes open the file and write at the same time
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "done"
    with ScoreCache(path) as c:
        assert len(c) == 601
        got = c.get_many([f"{t}-{j}" for t in "ab" for j in range(300)])
        assert got == {f"{t}-{j}": {"tag": t, "j": j} for t in "ab" for j in range(300)}
        assert c.get("shared") in ("a", "b")


# --------------------------------------------------------------------------------------------
# map_cached


class Counter:
    """A batch function that records every item it computes."""

    def __init__(self, fail_after_batches: int | None = None) -> None:
        self.seen: list[str] = []
        self.batches: list[int] = []
        self.fail_after = fail_after_batches

    def __call__(self, batch: list[str]) -> list[dict[str, Any]]:
        if self.fail_after is not None and len(self.batches) == self.fail_after:
            raise RuntimeError("killed")
        self.batches.append(len(batch))
        self.seen.extend(batch)
        return [{"text": s, "length": len(s), "pair": (s, len(s))} for s in batch]


def _items(n: int) -> tuple[list[str], list[str]]:
    items = [f"sentence number {i}" + "!" * (i % 3) for i in range(n)]
    return items, [cache_key("model", "template", s) for s in items]


def test_map_cached_without_cache_and_order() -> None:
    items, keys = _items(10)
    fn = Counter()
    out = map_cached(fn, items, keys, None, batch_size=4, progress=False)
    assert [o["text"] for o in out] == items
    assert fn.batches == [4, 4, 2]
    assert out[0]["pair"] == (items[0], len(items[0]))  # no JSON round trip without a cache


def test_map_cached_reuses_cache_and_round_trips_consistently() -> None:
    items, keys = _items(23)
    cache = ScoreCache()
    fn = Counter()
    first = map_cached(fn, items, keys, cache, batch_size=5, progress=False)
    assert fn.seen == items and fn.batches == [5, 5, 5, 5, 3]
    assert len(cache) == 23
    fn2 = Counter()
    second = map_cached(fn2, items, keys, cache, batch_size=5, progress=False)
    assert fn2.seen == [] and second == first
    # fresh and cached results look the same (tuples became lists in both)
    assert first[0]["pair"] == [items[0], len(items[0])]
    # a partly cached request computes only the new items, in order
    more, more_keys = _items(30)
    fn3 = Counter()
    out = map_cached(fn3, more, more_keys, cache, batch_size=5, progress=False)
    assert fn3.seen == more[23:]
    assert [o["text"] for o in out] == more


def test_map_cached_duplicate_keys_computed_once() -> None:
    items = ["a", "b", "a", "c", "b"]
    keys = [cache_key(s) for s in items]
    fn = Counter()
    out = map_cached(fn, items, keys, ScoreCache(), batch_size=2, progress=False)
    assert fn.seen == ["a", "b", "c"]
    assert [o["text"] for o in out] == items


def test_map_cached_encode_decode() -> None:
    @dataclasses.dataclass
    class Result:
        label: str
        probs: list[float]

    items, keys = _items(4)
    cache = ScoreCache()

    def fn(batch: list[str]) -> list[Result]:
        return [Result(s[-1], [0.25, 0.75]) for s in batch]

    kw: dict[str, Any] = {
        "encode": dataclasses.asdict,
        "decode": lambda d: Result(**d),
        "progress": False,
    }
    first = map_cached(fn, items, keys, cache, **kw)
    second = map_cached(lambda b: pytest.fail("recomputed"), items, keys, cache, **kw)
    assert first == second and all(isinstance(r, Result) for r in second)
    assert json.loads(json.dumps(cache.get(keys[0]))) == {
        "label": items[0][-1],
        "probs": [0.25, 0.75],
    }


def test_map_cached_bad_inputs() -> None:
    items, keys = _items(3)
    with pytest.raises(ValueError, match="differ in length"):
        map_cached(Counter(), items, keys[:2], None, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        map_cached(Counter(), items, keys, None, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="returned 1 results for a batch of 3"):
        map_cached(lambda b: [1], items, keys, None, progress=False)
    with pytest.raises(ValueError, match="must return a list"):
        map_cached(lambda b: "abc", items, keys, None, progress=False)
    with pytest.raises(ValueError, match=r"keys\[0\]"):
        map_cached(Counter(), items, [1, 2, 3], None, progress=False)  # type: ignore[list-item]
    assert map_cached(Counter(), [], [], ScoreCache(), progress=False) == []


def test_interrupted_run_resumes_without_redoing(tmp_path: Path) -> None:
    items, keys = _items(40)
    path = tmp_path / "run.sqlite"
    killed = Counter(fail_after_batches=3)
    with ScoreCache(path) as cache, pytest.raises(RuntimeError, match="killed"):
        map_cached(killed, items, keys, cache, batch_size=6, progress=False)
    assert killed.seen == items[:18]
    with ScoreCache(path) as cache:
        assert len(cache) == 18  # the three finished batches were committed
        resumed = Counter()
        out = map_cached(resumed, items, keys, cache, batch_size=6, progress=False)
    assert resumed.seen == items[18:]  # nothing finished is redone
    reference = map_cached(Counter(), items, keys, ScoreCache(), batch_size=6, progress=False)
    assert out == reference


KILLED_RUN = """
import os, signal, sys
from calibkit.scoring.cache import ScoreCache, cache_key, map_cached
path = sys.argv[1]
items = [f"item {i}" for i in range(50)]
keys = [cache_key("m", s) for s in items]
calls = 0
def fn(batch):
    global calls
    if calls == 4:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no exception handlers
    calls += 1
    return [len(s) for s in batch]
map_cached(fn, items, keys, ScoreCache(path), batch_size=7, progress=False)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkilled_process_resumes(tmp_path: Path) -> None:
    path = str(tmp_path / "killed.sqlite")
    proc = _run_python(KILLED_RUN, path)
    assert proc.returncode == -9, proc.stderr
    items = [f"item {i}" for i in range(50)]
    keys = [cache_key("m", s) for s in items]
    with ScoreCache(path) as cache:
        assert len(cache) == 28  # four batches of 7 survived the kill
        seen: list[str] = []

        def fn(batch: list[str]) -> list[int]:
            seen.extend(batch)
            return [len(s) for s in batch]

        out = map_cached(fn, items, keys, cache, batch_size=7, progress=False)
    assert seen == items[28:]
    assert out == [len(s) for s in items]


def test_progress_bar_reports_rate(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    items, keys = _items(9)
    cache = ScoreCache()
    map_cached(Counter(), items[:4], keys[:4], cache, batch_size=3, desc="scoring SUBJ")
    map_cached(Counter(), items, keys, cache, batch_size=3, desc="scoring SUBJ")
    err = capsys.readouterr().err
    assert "scoring SUBJ" in err and "item/s" in err
    assert "9/9" in err and "4/9" in err  # cached items start the bar


def test_unusable_cache_files_name_the_file_and_the_way_out(tmp_path: Path) -> None:
    """Issue 10 items 14/18: corrupt, foreign or unwritable caches are one clear error."""
    import sqlite3

    bad = tmp_path / "corrupt.sqlite"
    bad.write_bytes(b"not a database" * 200)
    with pytest.raises(ValueError, match=r"corrupt\.sqlite is not a usable.*--no-cache"):
        ScoreCache(bad)
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE scores (k TEXT)")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match=r"lacks the columns.*--no-cache"):
        ScoreCache(foreign)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"cannot create its folder.*--no-cache"):
        ScoreCache(blocker / "c.sqlite")
    ok = tmp_path / "ok.sqlite"
    with ScoreCache(ok) as c:
        c.put_many({"k": [1.0]})
    con = sqlite3.connect(ok)
    con.execute("UPDATE scores SET value = '{broken'")
    con.commit()
    con.close()
    with ScoreCache(ok) as c, pytest.raises(CacheEntryError, match="key k is not valid JSON") as ei:
        c.get_many(["k"])
    assert ei.value.key == "k"


def test_map_cached_never_caches_failures_and_stops_when_asked() -> None:
    from calibkit.scoring.backends.base import ItemFailure
    from calibkit.scoring.cache import NOT_RUN

    items, keys = _items(7)
    cache = ScoreCache()

    def fn(batch: list[str]) -> list[Any]:
        return [ItemFailure("boom") if s.endswith("!") else len(s) for s in batch]

    stats: dict[str, int] = {}
    out = map_cached(fn, items, keys, cache, batch_size=3, progress=False, stats=stats)
    bad = [i for i, s in enumerate(items) if s.endswith("!")]
    assert [i for i, r in enumerate(out) if isinstance(r, ItemFailure)] == bad
    assert len(cache) == 7 - len(bad)  # the successes of every batch, no failure
    assert stats == {"n_items": 7, "n_cached": 0, "n_new": 7 - len(bad), "n_failed": len(bad)}
    fresh = ScoreCache()
    out = map_cached(fn, items, keys, fresh, batch_size=3, progress=False, stop_on_failure=True)
    assert out[3:] == [NOT_RUN] * 4 and len(fresh) == 1  # stopped after the first batch
