"""On-disk cache of scoring results, so an interrupted run resumes where it stopped.

A :class:`ScoreCache` is a key/value table in SQLite (WAL journal, busy timeout), safe to share
between processes and threads: keys are text (build them with :func:`cache_key`), values are
anything JSON can hold (``Infinity``/``NaN`` included, as Python's :mod:`json` writes them).
:func:`map_cached` (defined in :mod:`calibkit.scoring.batching`, importable from here too) runs a
batch function over the items whose keys are not in the cache yet and commits the successes of
every finished batch at once, so a killed run loses at most one batch. A result that is an
:class:`~calibkit.scoring.backends.base.ItemFailure` is never cached: the next run tries that
item again.

Errors name the cache file and say what to do: a file that is not a usable cache, a value that
is not valid JSON (tampered), a folder that cannot be written, all raise ``ValueError`` with the
hint to delete the file or run without a cache (``--no-cache`` on the command line).

Example
-------
>>> cache = ScoreCache()                      # in memory; pass a path to keep it on disk
>>> keys = [cache_key("model", "prompt-v1", t) for t in ["a", "bb"]]
>>> map_cached(lambda batch: [len(t) for t in batch], ["a", "bb"], keys, cache, progress=False)
[1, 2]
>>> len(cache)
2
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

# the batch runner has its own module; NOT_RUN and map_cached stay importable from here
from calibkit.scoring.batching import NOT_RUN, map_cached

__all__ = [
    "NOT_RUN",
    "SCHEMA_VERSION",
    "CacheEntryError",
    "ScoreCache",
    "cache_key",
    "default_cache_dir",
    "map_cached",
]

#: Version of the on-disk layout; a file written with another version is refused.
SCHEMA_VERSION = 1

# SQLite's default limit on bound parameters per statement is 999 on old builds.
_CHUNK = 500


class CacheEntryError(ValueError):
    """A stored value cannot be used (not JSON, or not what the caller stored); ``key`` names it."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


def _hint(path: Path | None) -> str:
    where = "the in-memory cache" if path is None else f"delete {path}"
    return f"{where} or run without a cache (--no-cache)"


def default_cache_dir() -> Path:
    """Directory for calibkit's caches: ``$CALIBKIT_CACHE`` if set, else ``~/.cache/calibkit``.

    The directory is not created; :class:`ScoreCache` creates the parents of its file.
    """
    env = os.environ.get("CALIBKIT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "calibkit"


def cache_key(*parts: str) -> str:
    """SHA-256 hex digest identifying a tuple of strings.

    Each part is length-prefixed before hashing, so ``("ab", "c")`` and ``("a", "bc")`` differ.

    Parameters
    ----------
    *parts : str
        What the result depends on, e.g. model name, prompt fingerprint, input text, mode.

    Returns
    -------
    str
        64 lowercase hex characters.
    """
    if not parts:
        raise ValueError("cache_key: needs at least one part")
    h = hashlib.sha256()
    for i, p in enumerate(parts):
        if not isinstance(p, str):
            raise ValueError(f"cache_key: part {i} is {type(p).__name__}, expected str")
        b = p.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


class ScoreCache:
    """Persistent key -> JSON value store in SQLite.

    Parameters
    ----------
    path : str or os.PathLike or None
        SQLite file (parent directories are created). ``None`` keeps the cache in memory, for
        tests and one-off runs.
    timeout : float
        Seconds a writer waits for another process's lock before failing (busy timeout).

    Notes
    -----
    Each process should open its own ``ScoreCache`` on the same path (pickling one re-opens the
    file in the receiving process). Writes are committed immediately, one transaction per
    :meth:`put_many`; a later write of the same key replaces the earlier value.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 60.0):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.path: Path | None = None if path is None else Path(path).expanduser()
        self.timeout = float(timeout)
        self._lock = threading.RLock()
        if self.path is None:
            target = ":memory:"
        else:
            if self.path.is_dir():
                raise ValueError(f"ScoreCache path {self.path} is a directory, expected a file")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ValueError(
                    f"cache {self.path}: cannot create its folder ({e.strerror or e}); "
                    "give another --cache path or run with --no-cache"
                ) from None
            target = str(self.path)
        # isolation_level=None: we manage transactions ourselves (BEGIN IMMEDIATE ... COMMIT).
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = sqlite3.connect(
                target, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            self._setup()
        except ValueError:
            self.close()
            raise
        except sqlite3.DatabaseError as e:
            self.close()
            msg = str(e)
            if "readonly" in msg or "unable to open" in msg or "read-only" in msg:
                raise ValueError(
                    f"cache {target} cannot be written ({msg}); give a writable --cache path "
                    "or run with --no-cache"
                ) from None
            raise ValueError(
                f"cache {target} is not a usable SQLite cache ({msg}); {_hint(self.path)}"
            ) from None

    # -- setup -----------------------------------------------------------------------------
    def _setup(self) -> None:
        conn = self._connection()
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        if self.path is not None:
            mode = _retry_locked(
                lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0], self.timeout
            )
            if str(mode).lower() != "wal":  # e.g. a network file system without shared memory
                conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("PRAGMA synchronous = NORMAL")
        with self._transaction() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            c.execute(
                "CREATE TABLE IF NOT EXISTS scores ("
                "key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
            )
            row = c.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
            if row is None:
                c.execute(
                    "INSERT INTO meta (name, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise ValueError(
                    f"ScoreCache {self.path}: schema version {row[0]} is not supported "
                    f"(this calibkit writes version {SCHEMA_VERSION}); use a new cache file"
                )
            cols = {r[1] for r in c.execute("PRAGMA table_info(scores)").fetchall()}
            lacking = sorted({"key", "value", "created"} - cols)
            if lacking:
                raise ValueError(
                    f"cache {self._where}: table 'scores' lacks the columns {lacking}, so it is "
                    f"not a calibkit cache; {_hint(self.path)}"
                )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("ScoreCache is closed")
        return self._conn

    class _Txn:
        def __init__(self, cache: ScoreCache):
            self.cache = cache

        def __enter__(self) -> sqlite3.Connection:
            self.cache._lock.acquire()
            try:
                conn = self.cache._connection()
                _retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"), self.cache.timeout)
            except BaseException:
                self.cache._lock.release()
                raise
            return conn

        def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
            try:
                conn = self.cache._connection()
                if exc_type is None:
                    _retry_locked(lambda: conn.execute("COMMIT"), self.cache.timeout)
                else:
                    conn.execute("ROLLBACK")
            finally:
                self.cache._lock.release()

    def _transaction(self) -> ScoreCache._Txn:
        return ScoreCache._Txn(self)

    # -- public API ------------------------------------------------------------------------
    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """JSON-decoded values of those ``keys`` that are present (absent keys are left out)."""
        keys = _check_keys(keys, "keys")
        out: dict[str, Any] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            conn = self._connection()
            for i in range(0, len(uniq), _CHUNK):
                chunk = uniq[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT key, value FROM scores WHERE key IN ({marks})"
                try:
                    rows = _retry_locked(partial(_fetchall, conn, sql, chunk), self.timeout)
                except sqlite3.DatabaseError as e:
                    raise ValueError(
                        f"cache {self._where}: reading failed ({e}); {_hint(self.path)}"
                    ) from None
                for k, v in rows:
                    try:
                        out[k] = json.loads(v)
                    except (TypeError, ValueError) as e:
                        raise CacheEntryError(
                            f"cache {self._where}: the value stored under key {k} is not valid "
                            f"JSON ({e}); {_hint(self.path)}",
                            k,
                        ) from None
        return out

    def get(self, key: str, default: Any = None) -> Any:
        """The value of one key, or ``default``."""
        return self.get_many([key]).get(key, default)

    def put_many(self, items: Mapping[str, Any]) -> None:
        """Store ``key -> value`` pairs (JSON-encoded) in one transaction, committed at once.

        Raises ``ValueError`` naming the key whose value JSON cannot encode; nothing is written
        then.
        """
        if not isinstance(items, Mapping):
            raise ValueError(f"items must be a mapping of key -> value, got {type(items).__name__}")
        _check_keys(list(items), "items keys")
        now = time.time()
        rows = []
        for k, v in items.items():
            try:
                rows.append((k, json.dumps(v, separators=(",", ":")), now))
            except (TypeError, ValueError) as e:
                raise ValueError(f"value for cache key {k!r} is not JSON-serializable: {e}") from e
        if not rows:
            return
        try:
            with self._transaction() as c:
                c.executemany(
                    "INSERT OR REPLACE INTO scores (key, value, created) VALUES (?, ?, ?)", rows
                )
        except sqlite3.DatabaseError as e:
            msg = str(e)
            hint = (
                "give a writable --cache path or run with --no-cache"
                if any(w in msg for w in ("readonly", "read-only", "disk", "full", "open"))
                else _hint(self.path)
            )
            raise ValueError(f"cache {self._where}: writing failed ({msg}); {hint}") from None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.get_many([key])

    def __len__(self) -> int:
        with self._lock:
            conn = self._connection()
            return int(
                _retry_locked(
                    lambda: conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0],
                    self.timeout,
                )
            )

    def keys(self) -> Iterator[str]:
        """All stored keys (a snapshot, in insertion order of the table)."""
        with self._lock:
            conn = self._connection()
            rows = conn.execute("SELECT key FROM scores ORDER BY rowid").fetchall()
        return iter([r[0] for r in rows])

    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove ``keys`` (absent ones are ignored), e.g. to force re-scoring."""
        keys = _check_keys(keys, "keys")
        with self._transaction() as c:
            c.executemany("DELETE FROM scores WHERE key = ?", [(k,) for k in keys])

    def clear(self) -> None:
        """Remove every entry."""
        with self._transaction() as c:
            c.execute("DELETE FROM scores")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    @property
    def _where(self) -> str:
        return "(in memory)" if self.path is None else str(self.path)

    def __enter__(self) -> ScoreCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        if self.path is None:
            raise TypeError("an in-memory ScoreCache cannot be pickled; give it a path")
        return (_reopen, (str(self.path), self.timeout))

    def __repr__(self) -> str:
        where = "memory" if self.path is None else str(self.path)
        state = "closed" if self.closed else "open"
        return f"ScoreCache({where!r}, {state})"

    def __del__(self) -> None:  # pragma: no cover - depends on garbage collection
        try:
            self.close()
        except Exception:
            pass


def _reopen(path: str, timeout: float) -> ScoreCache:
    return ScoreCache(path, timeout=timeout)


def _retry_locked(op: Callable[[], Any], timeout: float) -> Any:
    """Run ``op``, retrying on "database is locked" (which can escape SQLite's busy handler,
    e.g. when a WAL checkpoint or a lock upgrade collides) until ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return op()
        except sqlite3.OperationalError as e:
            msg = str(e).lower()
            if ("locked" not in msg and "busy" not in msg) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _check_keys(keys: Sequence[str], what: str) -> list[str]:
    if isinstance(keys, str):
        raise ValueError(f"{what} must be a sequence of strings, got a single string")
    out = list(keys)
    for i, k in enumerate(out):
        if not isinstance(k, str):
            raise ValueError(f"{what}[{i}] is {type(k).__name__}, expected str")
    return out


def _fetchall(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    return conn.execute(sql, params).fetchall()
