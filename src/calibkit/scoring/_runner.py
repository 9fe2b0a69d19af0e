"""Plumbing shared by the scorers (:mod:`~calibkit.scoring.classify`, :mod:`~calibkit.scoring.mcq`).

One place for what every scorer does around its model calls: open the cache, run the batches
through :func:`~calibkit.scoring.cache.map_cached` (length-sorted, failures never cached), turn
Ctrl-C into ``"N of M items cached; rerun to resume"``, validate every record (a cached one
too) naming the item, and apply the ``on_error`` policy (:class:`ItemsFailed`). A scorer only
supplies its prompts, its cache keys and how a backend result becomes a record.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from calibkit.scoring.backends.base import ItemFailure, PartialResults
from calibkit.scoring.cache import NOT_RUN, CacheEntryError, ScoreCache, map_cached

__all__ = [
    "ItemsFailed",
    "OnError",
    "RunResult",
    "backend_records",
    "check_on_error",
    "check_record",
    "failure_message",
    "interrupted_message",
    "open_cache",
    "run_scorer",
]

OnError = Literal["fail", "skip"]
T = TypeVar("T")
R = TypeVar("R")


class ItemsFailed(ValueError):
    """Some items could not be scored (``on_error="fail"``, or every item failed).

    Attributes
    ----------
    failures : list of dict
        ``{"row": int, "id": str, "reason": str}`` per failed item; ``row`` is the 0-based
        position in the scored sequence.
    n_items : int
        Items asked for.
    n_cached : int
        Items whose result is in the cache now (successes are committed before this is raised).
    """

    def __init__(
        self, message: str, failures: list[dict[str, Any]], n_items: int, n_cached: int
    ) -> None:
        super().__init__(message)
        self.failures = failures
        self.n_items = n_items
        self.n_cached = n_cached


def check_on_error(on_error: str) -> None:
    """Raise ``ValueError`` unless ``on_error`` is ``"fail"`` or ``"skip"``."""
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")


def failure_message(
    failures: list[dict[str, Any]], n: int, cached: bool, n_ok: int, *, noun: str = "item"
) -> str:
    """The message of :class:`ItemsFailed`: the first failure (called a ``noun``), counts, and
    what a rerun costs."""
    first = failures[0]
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    kept = (
        f"the {n_ok} successes are cached, a rerun scores only what is missing"
        if cached and n_ok
        else "nothing else was lost"
        if not n_ok
        else "no cache, so a rerun scores everything again"
    )
    return (
        f"{noun} {first['row']} (id {first['id']!r}) could not be scored: {first['reason']}{more}; "
        f"{len(failures)} of {n} items failed, {kept}; to keep the successful rows, use "
        "on_error='skip' (--on-error skip)"
    )


def interrupted_message(stats: Mapping[str, int], n: int, cached: bool) -> str:
    """The message of the ``KeyboardInterrupt`` a scorer raises on Ctrl-C."""
    if cached:
        done = stats.get("n_cached", 0) + stats.get("n_new", 0)
        return f"{done} of {n} items cached; rerun to resume"
    return (
        f"{stats.get('n_new', 0)} of {n} items were scored but not kept (no cache); a rerun "
        "starts over"
    )


def check_record(rec: Any, k: int) -> str | None:
    """What is wrong with a stored classification/MCQ record, or ``None`` if it is usable."""
    if not isinstance(rec, dict):
        return f"is {type(rec).__name__}, expected an object"
    z = rec.get("logits")
    if not isinstance(z, list) or len(z) != k:
        return f"'logits' is not a list of {k} numbers"
    for j, v in enumerate(z):
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
            return f"'logits'[{j}] is {v!r}, expected a finite number"
    if not isinstance(rec.get("answer", ""), str):
        return "'answer' is not a string"
    a = rec.get("answer_index")
    if isinstance(a, bool) or not isinstance(a, int) or not -1 <= a < k:
        return f"'answer_index' is {a!r}, expected an int in [-1, {k})"
    filled = rec.get("filled", [])
    if not isinstance(filled, list) or any(
        isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < k for c in filled
    ):
        return f"'filled' is {filled!r}, expected a list of class indices"
    return None


def open_cache(
    cache: ScoreCache | str | os.PathLike[str] | None, stack: ExitStack
) -> ScoreCache | None:
    """A :class:`ScoreCache` from a cache object, a path (opened and closed by ``stack``) or None."""
    if cache is None or isinstance(cache, ScoreCache):
        return cache
    if isinstance(cache, str | os.PathLike):
        return stack.enter_context(ScoreCache(cache))
    raise ValueError(f"cache must be a ScoreCache, a path or None, got {type(cache).__name__}")


def backend_records(
    call: Callable[[], Sequence[Any]], to_record: Callable[[int, Any], R], n: int
) -> list[R]:
    """Run one backend call for ``n`` prompts and turn each result into a record.

    ``to_record(i, result)`` converts the result of prompt ``i``. On Ctrl-C inside the backend
    (:class:`~calibkit.scoring.backends.base.PartialResults`) the finished results are converted
    and handed on, so the cache keeps them; a backend returning a wrong number of results is an
    error.
    """
    try:
        res = list(call())
    except PartialResults as e:
        raise PartialResults(
            {i: to_record(i, r) for i, r in e.results.items() if 0 <= i < n}
        ) from None
    if len(res) != n:
        raise ValueError(f"backend returned {len(res)} results for {n} prompts")
    return [to_record(i, r) for i, r in enumerate(res)]


@dataclass
class RunResult:
    """What :func:`run_scorer` returns.

    Attributes
    ----------
    records : list
        One per input, in input order: a validated record, or an ``ItemFailure``.
    ok : list of int
        Rows scored, in order.
    failures : list of dict
        ``{"row", "id", "reason"}`` of the rows that failed (not those left unrun).
    stats : dict of str to int
        Counts from :func:`~calibkit.scoring.cache.map_cached` (``n_cached``, ``n_new`` ...).
    """

    records: list[Any]
    ok: list[int]
    failures: list[dict[str, Any]]
    stats: dict[str, int]


def run_scorer(
    fn: Callable[[list[T]], Sequence[Any]],
    items: Sequence[T],
    keys: Sequence[str],
    cache: ScoreCache | str | os.PathLike[str] | None,
    *,
    ids: Sequence[str],
    order: Sequence[int],
    check: Callable[[Any], str | None],
    on_error: OnError,
    batch_size: int,
    desc: str,
    progress: bool,
    stats: dict[str, int] | None = None,
    noun: str = "item",
) -> RunResult:
    """Score ``items`` (in ``order``) through the cache and apply the ``on_error`` policy.

    Parameters
    ----------
    fn : callable
        Batch function: a list of items -> one record (or ``ItemFailure``) per item.
    items, keys, ids : sequences of length n
        The inputs, their cache keys and their ids (used in messages and ``failures``).
    order : permutation of ``range(n)``
        Scoring order (similar lengths share a batch); results come back in input order.
    check : callable
        ``check(record) -> problem or None``; a problem (a corrupt cached record) is a
        ``ValueError`` naming the item and the key.
    on_error : {"fail", "skip"}
        ``"fail"``: stop after the first batch with a failure and raise :class:`ItemsFailed`;
        ``"skip"``: keep going; raise only if nothing succeeded.
    stats : dict, optional
        Filled with the run's counts (pass the scorer's ``last_run``).
    noun : str
        What an item is called in messages (``"item"``, ``"question"``).
    """
    check_on_error(on_error)
    n = len(items)
    stats = {} if stats is None else stats

    def name(rows: list[int]) -> str:
        if not rows:
            return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"
        return f"{noun} {rows[0]} (id {ids[rows[0]]!r})"

    with ExitStack() as stack:
        opened = open_cache(cache, stack)
        try:
            recs_sorted = map_cached(
                fn,
                [items[i] for i in order],
                [keys[i] for i in order],
                opened,
                batch_size=batch_size,
                desc=desc,
                progress=progress,
                stop_on_failure=on_error == "fail",
                stats=stats,
            )
        except KeyboardInterrupt:
            raise KeyboardInterrupt(interrupted_message(stats, n, opened is not None)) from None
        except CacheEntryError as e:
            raise ValueError(f"{name([i for i in range(n) if keys[i] == e.key])}: {e}") from None
    recs: list[Any] = [None] * n
    for j, i in enumerate(order):
        recs[i] = recs_sorted[j]
    for i, r in enumerate(recs):
        if isinstance(r, ItemFailure):
            continue
        problem = check(r)
        if problem is not None:
            where = "the cache" if opened is not None else "the scorer"
            raise ValueError(
                f"{name([i])}: the result from {where} (key {keys[i]}) {problem}; delete the "
                "cache file or run without a cache (--no-cache)"
            )
    failures = [
        {"row": i, "id": ids[i], "reason": r.reason}
        for i, r in enumerate(recs)
        if isinstance(r, ItemFailure) and r is not NOT_RUN
    ]
    ok = [i for i, r in enumerate(recs) if not isinstance(r, ItemFailure)]
    if failures and (on_error == "fail" or not ok):
        cached = opened is not None
        n_cached_now = stats.get("n_cached", 0) + stats.get("n_new", 0) if cached else 0
        raise ItemsFailed(
            failure_message(failures, n, cached, len(ok), noun=noun), failures, n, n_cached_now
        )
    return RunResult(records=recs, ok=ok, failures=failures, stats=stats)
