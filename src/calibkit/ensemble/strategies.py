"""The library of answer strategies a cascade can exit with (paper 001, Algorithms 1-2, ``A_k``).

An answer strategy at depth ``k`` sees the first ``k`` models' answers ``(n, k)`` and confidences
``(n, k)`` and returns one answer per item ``(n,)``. It must be *row-wise* (item ``i``'s answer
depends on row ``i`` only), so that it can be applied to any subset of items.

Built-in names:

``single:j``
    model ``j``'s own answer (needs depth ``> j``). The spec ``"single"`` expands to every
    ``single:j`` available at a depth.
``majority``
    unweighted majority vote, ties broken by summed confidence (depth >= 2).
``weighted_vote``
    paper 001 equation (1) (depth >= 2).
``most_confident``
    the answer of the most confident model (depth >= 2).

Register your own with :func:`register_strategy`; a saved policy refers to strategies by name, so
register custom ones before :meth:`CascadePolicy.load`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calibkit.ensemble.vote import majority_vote, most_confident, weighted_majority_vote

__all__ = [
    "DEFAULT_STRATEGIES",
    "Strategy",
    "StrategyFn",
    "available_strategies",
    "build_library",
    "get_strategy",
    "register_strategy",
]

StrategyFn = Callable[[NDArray[np.int64], NDArray[np.float64], int], NDArray[np.int64]]
"""``fn(answers (n, k) int, confidences (n, k) float, n_classes) -> (n,) int answers``."""

DEFAULT_STRATEGIES: tuple[str, ...] = ("single", "majority", "weighted_vote", "most_confident")


@dataclass(frozen=True)
class Strategy:
    """A named answer strategy usable from depth ``min_depth`` on."""

    name: str
    fn: StrategyFn
    min_depth: int = 1

    def __call__(
        self, answers: NDArray[np.int64], scores: NDArray[np.float64], n_classes: int
    ) -> NDArray[np.int64]:
        if answers.shape[1] < self.min_depth:
            raise ValueError(
                f"strategy {self.name!r} needs at least {self.min_depth} models; "
                f"got {answers.shape[1]}"
            )
        out = np.asarray(self.fn(answers, scores, n_classes))
        if out.shape != (answers.shape[0],):
            raise ValueError(
                f"strategy {self.name!r} returned shape {out.shape}; expected ({answers.shape[0]},)"
            )
        return out.astype(np.int64, copy=False)


_REGISTRY: dict[str, Strategy] = {}
_SINGLE = re.compile(r"^single:(\d+)$")


def register_strategy(
    name: str, fn: StrategyFn, *, min_depth: int = 1, overwrite: bool = False
) -> Strategy:
    """Add an answer strategy to the library under ``name`` and return it."""
    if not name or "/" in name or name == "go_deeper" or _SINGLE.match(name) or name == "single":
        raise ValueError(f"invalid strategy name {name!r}")
    if min_depth < 1:
        raise ValueError(f"min_depth must be >= 1; got {min_depth}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"strategy {name!r} is already registered (pass overwrite=True)")
    st = Strategy(name, fn, min_depth)
    _REGISTRY[name] = st
    return st


def _single(j: int) -> Strategy:
    def fn(a: NDArray[np.int64], s: NDArray[np.float64], c: int) -> NDArray[np.int64]:
        return a[:, j]

    return Strategy(f"single:{j}", fn, j + 1)


def get_strategy(name: str) -> Strategy:
    """Look up a registered strategy (or ``single:j``) by name."""
    m = _SINGLE.match(name)
    if m:
        return _single(int(m.group(1)))
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown answer strategy {name!r}; known: {available_strategies()} "
            "(register custom ones with calibkit.ensemble.register_strategy)"
        ) from None


def available_strategies() -> list[str]:
    """Names usable in a strategy spec."""
    return ["single", "single:<j>", *sorted(_REGISTRY)]


def build_library(spec: Sequence[str] | None, n_models: int) -> list[list[Strategy]]:
    """Expand a strategy spec into the per-depth libraries ``[A_1, ..., A_K]``.

    ``A_k`` holds, in spec order and without duplicates, every strategy usable with ``k`` models.
    Every depth must end up with at least one strategy (``single:0`` is always a safe choice).
    """
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1; got {n_models}")
    names = list(DEFAULT_STRATEGIES if spec is None else spec)
    if not names:
        raise ValueError("the strategy spec is empty")
    libs: list[list[Strategy]] = []
    for k in range(1, n_models + 1):
        lib: list[Strategy] = []
        seen: set[str] = set()
        for name in names:
            cands = [_single(j) for j in range(k)] if name == "single" else [get_strategy(name)]
            for st in cands:
                if st.min_depth <= k and st.name not in seen:
                    seen.add(st.name)
                    lib.append(st)
        if not lib:
            raise ValueError(
                f"no strategy in {names} is usable with {k} model(s); include 'single'"
            )
        libs.append(lib)
    return libs


register_strategy("majority", lambda a, s, c: majority_vote(a, c, scores=s), min_depth=2)
register_strategy("weighted_vote", lambda a, s, c: weighted_majority_vote(a, s, c), min_depth=2)
register_strategy("most_confident", lambda a, s, c: most_confident(a, s), min_depth=2)
