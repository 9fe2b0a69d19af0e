"""Running a batch function over items through a :class:`~calibkit.scoring.cache.ScoreCache`.

:func:`map_cached` (also importable from :mod:`calibkit.scoring.cache`) computes only the items
whose keys are not in the cache, commits the successes of every finished batch at once (so a
killed run loses at most one batch) and never caches an
:class:`~calibkit.scoring.backends.base.ItemFailure`. The storage itself is
:mod:`calibkit.scoring.cache`; the scorers' plumbing around this is
:mod:`calibkit.scoring._runner`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from calibkit.scoring.backends.base import ItemFailure, PartialResults

if TYPE_CHECKING:
    from calibkit.scoring.cache import ScoreCache

__all__ = ["NOT_RUN", "map_cached"]

T = TypeVar("T")
R = TypeVar("R")

#: What :func:`map_cached` returns for an item it did not attempt (it stopped at a failure).
NOT_RUN = ItemFailure("not scored: the run stopped at an earlier failure")


def _identity(x: Any) -> Any:
    return x


def map_cached(
    fn: Callable[[list[T]], Sequence[R | ItemFailure]],
    items: Sequence[T],
    keys: Sequence[str],
    cache: ScoreCache | None,
    *,
    batch_size: int = 16,
    desc: str = "scoring",
    progress: bool = True,
    encode: Callable[[R], Any] = _identity,
    decode: Callable[[Any], R] = _identity,
    stop_on_failure: bool = False,
    stats: dict[str, int] | None = None,
) -> list[R | ItemFailure]:
    """Apply a batch function to ``items``, skipping those already in ``cache``.

    Parameters
    ----------
    fn : callable
        Takes a list of up to ``batch_size`` items, returns a list of results of the same length
        and order; an :class:`~calibkit.scoring.backends.base.ItemFailure` in place of the
        result of an item that failed.
    items : sequence
        Inputs, length n.
    keys : sequence of str
        Cache key of each item, length n (see :func:`cache_key`). Items sharing a key are
        computed once.
    cache : ScoreCache or None
        Where finished results are looked up and stored; ``None`` computes everything.
    batch_size : int
        Items per call of ``fn``; the successes of each finished batch are committed to the
        cache at once (failures never are), so a killed run loses at most one batch.
    desc : str
        Label of the progress bar.
    progress : bool
        Show a tqdm progress bar (items/s and ETA) on stderr; the cached items count as done.
    encode, decode : callable
        Map a result to a JSON-able value and back (e.g. a dataclass to a dict).
    stop_on_failure : bool
        Stop after the first batch holding a failure (its successes are still committed); the
        items not attempted then get :data:`NOT_RUN`.
    stats : dict, optional
        Filled as the run goes (so it is up to date when an exception escapes): ``n_items``,
        ``n_cached`` (items found in the cache), ``n_new`` (items computed and, with a cache,
        committed), ``n_failed`` (items whose result is a failure).

    When ``fn`` is interrupted with :class:`~calibkit.scoring.backends.base.PartialResults`
    (Ctrl-C in an HTTP backend), the successes it carries are committed before the interrupt
    goes on, so they are not asked for again.

    Returns
    -------
    list
        n results in the order of ``items``, failures included (as ``ItemFailure``). With a
        cache, every result (cached or fresh) is ``decode(JSON round trip of encode(result))``,
        so a resumed run returns exactly what an uninterrupted one would.
    """
    # imported here: calibkit.scoring.cache imports this module (it re-exports map_cached)
    from calibkit.scoring.cache import CacheEntryError, _check_keys, _hint

    if not callable(fn):
        raise ValueError("fn must be callable")
    items = list(items)
    keys = _check_keys(keys, "keys")
    if len(items) != len(keys):
        raise ValueError(f"items and keys differ in length: {len(items)} vs {len(keys)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    st: dict[str, int] = stats if stats is not None else {}
    st.update(n_items=len(items), n_cached=0, n_new=0, n_failed=0)

    done: dict[str, Any] = {}  # key -> decoded result, or ItemFailure
    if cache is not None:
        for k, v in cache.get_many(keys).items():
            try:
                done[k] = decode(v)
            except (TypeError, ValueError, KeyError) as e:
                raise CacheEntryError(
                    f"cache {cache._where}: the value stored under key {k} cannot be decoded "
                    f"({e}); {_hint(cache.path)}",
                    k,
                ) from None

    # One representative item per missing key, in first-occurrence order.
    todo: dict[str, T] = {}
    for k, it in zip(keys, items, strict=True):
        if k not in done and k not in todo:
            todo[k] = it
    n_done_items = sum(1 for k in keys if k in done)
    st["n_cached"] = n_done_items

    bar = _progress_bar(len(items), n_done_items, desc, progress and len(todo) > 0)
    # How many input positions each missing key stands for (duplicates advance the bar together).
    multiplicity: dict[str, int] = {}
    for k in keys:
        if k in todo:
            multiplicity[k] = multiplicity.get(k, 0) + 1
    try:
        todo_keys = list(todo)
        for start in range(0, len(todo_keys), batch_size):
            bkeys = todo_keys[start : start + batch_size]
            batch = [todo[k] for k in bkeys]
            try:
                results = fn(batch)
            except PartialResults as e:  # Ctrl-C: keep what finished before it
                kept = {
                    bkeys[i]: r
                    for i, r in e.results.items()
                    if isinstance(i, int) and 0 <= i < len(bkeys) and not _failed(r)
                }
                if cache is not None and kept:
                    cache.put_many({k: encode(r) for k, r in kept.items()})
                    st["n_new"] += sum(multiplicity[k] for k in kept)
                raise
            if not isinstance(results, Sequence) or isinstance(results, str | bytes):
                raise ValueError(f"fn must return a list, got {type(results).__name__}")
            if len(results) != len(batch):
                raise ValueError(
                    f"fn returned {len(results)} results for a batch of {len(batch)} items"
                )
            ok = [(k, r) for k, r in zip(bkeys, results, strict=True) if not _failed(r)]
            if cache is None:
                for k, r in ok:
                    done[k] = r
            else:
                encoded = {k: encode(r) for k, r in ok}  # type: ignore[arg-type]
                cache.put_many(encoded)
                for k, v in encoded.items():
                    # JSON round trip so fresh and cached results are indistinguishable.
                    done[k] = decode(json.loads(json.dumps(v)))
            failed = False
            for k, r in zip(bkeys, results, strict=True):
                if _failed(r):
                    done[k] = r
                    st["n_failed"] += multiplicity[k]
                    failed = True
                else:
                    st["n_new"] += multiplicity[k]
            if bar is not None:
                bar.update(sum(multiplicity[k] for k in bkeys))
            if failed and stop_on_failure:
                break
    finally:
        if bar is not None:
            bar.close()
    return [done.get(k, NOT_RUN) for k in keys]


def _failed(r: object) -> bool:
    return isinstance(r, ItemFailure)


def _progress_bar(total: int, initial: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are a convenience; tqdm comes with calibkit[llm]
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="item", dynamic_ncols=True)
