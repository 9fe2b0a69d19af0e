"""The cost-aware cascading ensemble policy of paper 001 (section 3.1, Algorithms 1 and 2).

Models run in sequence from the cheapest to the costliest. After model ``k`` answers, the item's
nested bin key ``(b_1, ..., b_k)`` (:mod:`calibkit.ensemble.binning`) is looked up in a table whose
value is either an answer strategy over the first ``k`` models (:mod:`~calibkit.ensemble.strategies`)
or *GoDeeper* (call model ``k + 1``).

Training (Algorithm 1) runs in reverse, ``k = K .. 1``. For every depth-``k`` partition it takes the
answer strategy with the largest reward (hits, optionally minus a cost penalty) and compares that
reward ``m_k`` with the summed best rewards of its depth-``k+1`` sub-partitions; it goes deeper only
when that sum is strictly larger, so ties exit early and save cost. The root's reward is therefore
the best achievable training reward of any policy over these bins, and among the policies that
achieve it, the trained one calls the fewest models. Implementation: every strategy's answer on
every item is computed once; each depth is then one ``numpy.bincount`` over the mixed-radix bin
codes (no per-item Python loop).

Inference (Algorithm 2) calls model ``k`` only on the items whose depth-``k-1`` decision was
GoDeeper (:meth:`CascadePolicy.predict_lazy` takes one callable per model). A bin key never seen in
training (possible only below a GoDeeper partition, or at depth 1) exits with the *fallback*: the
depth-``k`` strategy with the best reward over the parent partition's training items.

The trained policy is a plain lookup table, saved as human-readable JSON (:meth:`CascadePolicy.save`;
persistence and rendering are in :mod:`calibkit.ensemble.policy_io`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin

from calibkit._validation import check_labels
from calibkit.ensemble.binning import (
    bin_indices,
    check_cut_points,
    prefix_codes,
    uniform_cut_points,
)
from calibkit.ensemble.costs import called_from_depth, cost_matrix
from calibkit.ensemble.inputs import answers_confidences, check_ensemble_probs
from calibkit.ensemble.strategies import Strategy, build_library

__all__ = [
    "GO_DEEPER",
    "CascadePolicy",
    "CascadeResult",
    "PolicyTables",
    "apply_tables",
    "strategy_predictions",
    "train_tables",
]

GO_DEEPER = -1
UNSEEN = -2
MAX_CELLS = 1 << 24
FORMAT = "calibkit-cascade-policy"  # the saved policy's format tag (calibkit.ensemble.policy_io)

ModelFn = Callable[[NDArray[np.int64]], ArrayLike]
"""``fn(item_indices (m,)) -> (m, C) class probabilities or (m,) binary P(y=1)``."""


# --------------------------------------------------------------------------- pure functions
@dataclass(frozen=True)
class PolicyTables:
    """Dense lookup tables of a trained cascade, one array per depth ``k = 1..K``.

    Attributes
    ----------
    n_bins : (B_1, ..., B_K) bins per model; depth ``k`` has ``G_k = B_1 * ... * B_k`` keys.
    decision : per depth, (G_k,) int64: a strategy index into ``A_k``, ``GO_DEEPER`` (-1) or
        ``UNSEEN`` (-2, no training item had that key).
    fallback : per depth ``k = 0..K-1``, (G_k,) int64 with ``G_0 = 1`` (the root): the best
        depth-``k+1`` strategy pooled over the node's training items (-1 for empty nodes).
    count : per depth, (G_k,) number of training items with that key.
    reward : per depth, (G_k,) ``m_k``: the best reward achievable on that partition.
    """

    n_bins: tuple[int, ...]
    decision: tuple[NDArray[np.int64], ...]
    fallback: tuple[NDArray[np.int64], ...]
    count: tuple[NDArray[np.int64], ...]
    reward: tuple[NDArray[np.float64], ...]

    @property
    def n_models(self) -> int:
        return len(self.n_bins)

    @property
    def total_reward(self) -> float:
        """Training reward of the whole policy (sum of the depth-1 ``m_1``)."""
        return float(self.reward[0].sum())

    def route(
        self, depth: int, codes: NDArray[np.int64], parent_codes: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        """Decisions at ``depth`` for items with these depth codes: strategy index or GO_DEEPER."""
        d = self.decision[depth - 1][codes]
        unseen = d == UNSEEN
        if np.any(unseen):
            d = d.copy()
            d[unseen] = self.fallback[depth - 1][parent_codes[unseen]]
        return d


def _cell_counts(n_bins: Sequence[int]) -> NDArray[np.int64]:
    sizes = np.cumprod(np.asarray(n_bins, dtype=np.int64))
    if sizes[-1] > MAX_CELLS:
        raise ValueError(
            f"{' x '.join(map(str, n_bins))} = {sizes[-1]} bin keys is too many "
            f"(limit {MAX_CELLS}); use fewer bins or models"
        )
    return sizes


def strategy_predictions(
    answers: NDArray[np.int64],
    scores: NDArray[np.float64],
    n_classes: int,
    library: Sequence[Sequence[Strategy]],
) -> list[NDArray[np.int64]]:
    """Every depth-``k`` strategy's answer on every item: per depth an ``(n, |A_k|)`` array."""
    out = []
    for k, lib in enumerate(library, start=1):
        a, s = answers[:, :k], scores[:, :k]
        out.append(np.stack([st(a, s, n_classes) for st in lib], axis=1))
    return out


def train_tables(
    bins: NDArray[np.int64],
    n_bins: Sequence[int],
    correct: Sequence[NDArray[Any]],
    *,
    item_cost: NDArray[np.float64] | None = None,
    cost_penalty: float = 0.0,
) -> PolicyTables:
    """Algorithm 1 of paper 001, vectorised.

    Parameters
    ----------
    bins : (n, K) int bin index of each model's confidence.
    n_bins : (K,) number of bins per model.
    correct : per depth ``k``, (n, |A_k|) whether (or how much) strategy ``h`` got item ``i`` right:
        the per-item reward.
    item_cost : (n, K) cost of calling model ``k`` on item ``i`` (used when ``cost_penalty > 0``).
    cost_penalty : reward lost per unit of cost; an exit at depth ``k`` pays the cost of models
        ``1..k``.

    Returns
    -------
    PolicyTables
    """
    n, K = bins.shape
    if len(correct) != K or len(n_bins) != K:
        raise ValueError(f"need correct and n_bins for each of the {K} models")
    sizes = _cell_counts(n_bins)
    cum_cost = None
    if cost_penalty:
        if item_cost is None:
            raise ValueError("cost_penalty > 0 needs item costs")
        cum_cost = np.cumsum(np.asarray(item_cost, dtype=np.float64), axis=1)
    decision: list[NDArray[np.int64]] = [np.empty(0, np.int64)] * K
    fallback: list[NDArray[np.int64]] = [np.empty(0, np.int64)] * K
    count: list[NDArray[np.int64]] = [np.empty(0, np.int64)] * K
    reward: list[NDArray[np.float64]] = [np.empty(0)] * K
    m_next: NDArray[np.float64] | None = None
    mu_next: NDArray[np.float64] | None = None
    for k in range(K, 0, -1):
        G = int(sizes[k - 1])
        code = prefix_codes(bins, n_bins, k)
        corr = np.asarray(correct[k - 1], dtype=np.float64)
        if corr.ndim != 2 or corr.shape[0] != n:
            raise ValueError(f"correct[{k - 1}] must be (n, H); got shape {corr.shape}")
        H = corr.shape[1]
        flat = (code[:, None] * H + np.arange(H)[None, :]).ravel()
        mu = np.bincount(flat, weights=corr.ravel(), minlength=G * H).astype(np.float64, copy=False)
        mu = mu.reshape(G, H)
        cnt = np.bincount(code, minlength=G)
        if cum_cost is not None:
            pen = cost_penalty * np.bincount(code, weights=cum_cost[:, k - 1], minlength=G)
            mu = mu - pen[:, None]
        best = np.argmax(mu, axis=1)
        m: NDArray[np.float64] = mu[np.arange(G), best]
        dec = best.astype(np.int64)
        if k < K:
            assert m_next is not None and mu_next is not None
            B = int(n_bins[k])
            deeper = m_next.reshape(G, B).sum(axis=1)
            go = deeper > m + 1e-9 * np.maximum(1.0, np.abs(m))
            dec[go] = GO_DEEPER
            m = np.where(go, deeper, m)
            pooled = mu_next.reshape(G, B, mu_next.shape[1]).sum(axis=1)
            fallback[k] = np.where(cnt > 0, np.argmax(pooled, axis=1), -1).astype(np.int64)
        dec[cnt == 0] = UNSEEN
        decision[k - 1], count[k - 1], reward[k - 1] = dec, cnt.astype(np.int64), m
        m_next, mu_next = m, mu
    assert mu_next is not None
    fallback[0] = np.array([int(np.argmax(mu_next.sum(axis=0)))], dtype=np.int64)
    return PolicyTables(
        n_bins=tuple(int(b) for b in n_bins),
        decision=tuple(decision),
        fallback=tuple(fallback),
        count=tuple(count),
        reward=tuple(reward),
    )


def apply_tables(
    tables: PolicyTables,
    bins: NDArray[np.int64],
    predictions: Sequence[NDArray[np.int64]],
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Algorithm 2 on items whose every model answer is already known (fast path for search).

    Parameters
    ----------
    bins : (m, K) bin indices.
    predictions : per depth, (m, |A_k|) each strategy's answer (see :func:`strategy_predictions`).

    Returns
    -------
    pred : (m,) final answers; depth : (m,) models used; strategy : (m,) index into ``A_depth``.
    """
    m, K = bins.shape
    pred = np.empty(m, dtype=np.int64)
    depth = np.empty(m, dtype=np.int64)
    strat = np.empty(m, dtype=np.int64)
    active = np.arange(m)
    parent = np.zeros(m, dtype=np.int64)
    code = np.zeros(m, dtype=np.int64)
    for k in range(1, K + 1):
        code = parent * tables.n_bins[k - 1] + bins[active, k - 1]
        h = tables.route(k, code, parent)
        ex = h >= 0
        rows = active[ex]
        pred[rows] = predictions[k - 1][rows, h[ex]]
        depth[rows] = k
        strat[rows] = h[ex]
        active = active[~ex]
        parent = code[~ex]
        if active.size == 0:
            break
    return pred, depth, strat


# --------------------------------------------------------------------------- estimator
@dataclass(frozen=True)
class CascadeResult:
    """Outcome of running a cascade on ``n`` items.

    Attributes
    ----------
    predictions : (n,) int64 final answers.
    depth : (n,) int64 number of models called (1..K); model ``k`` ran iff ``k < depth``.
    strategy : (n,) str name of the answer strategy each item exited with.
    n_models : K.
    """

    predictions: NDArray[np.int64]
    depth: NDArray[np.int64]
    strategy: NDArray[np.str_]
    n_models: int

    @property
    def called(self) -> NDArray[np.bool_]:
        """(n, K) mask of the models that ran on each item."""
        return called_from_depth(self.depth, self.n_models)

    @property
    def calls(self) -> NDArray[np.int64]:
        """(K,) number of items each model ran on."""
        return self.called.sum(axis=0).astype(np.int64)


def _relative_costs(costs: Any, n: int, k: int) -> NDArray[np.float64]:
    c = cost_matrix(costs, n)
    if c.shape[1] != k:
        raise ValueError(f"costs cover {c.shape[1]} models but X has {k}")
    ref = float(np.min(c.mean(axis=0)))
    if ref <= 0:
        raise ValueError("the cheapest model's cost must be > 0 to use cost_penalty")
    return c / ref


class CascadePolicy(ClassifierMixin, BaseEstimator):
    """Cost-aware cascading ensemble of K models (paper 001, Algorithms 1 and 2).

    Parameters
    ----------
    edges : sequence of K 1-D arrays or None
        A-priori cut points (interior bin edges, not the ``M + 1`` edges of
        :mod:`calibkit.metrics.binning`) of each model's confidence (see
        :mod:`calibkit.ensemble.binning`). ``None``: ``n_bins`` equal-width bins on ``[1/C, 1]``.
        Search them with :func:`calibkit.ensemble.search_edges`.
    n_bins : int or sequence of int
        Bins per model when ``edges`` is None.
    strategies : sequence of str or None
        Answer-strategy spec (:func:`calibkit.ensemble.build_library`); default
        ``("single", "majority", "weighted_vote", "most_confident")``.
    costs : (K,) per-call costs, list of :class:`~calibkit.ensemble.ModelCost`, or None
        Used by ``cost_penalty`` and kept in the saved policy for reports.
    cost_penalty : float
        Hits a cascade is willing to lose per unit of cost, cost measured in multiples of the
        cheapest model's per-item cost. ``0`` (default) is the paper's reward: hits only.
    model_names : sequence of K str or None
        For the saved table.

    Attributes
    ----------
    edges_ : list of K arrays; n_bins_ : tuple; library_ : per-depth lists of strategies;
    tables_ : :class:`PolicyTables`; training_reward_ : float; n_models_, n_classes_, classes_.
    """

    def __init__(
        self,
        edges: Sequence[ArrayLike] | None = None,
        n_bins: int | Sequence[int] = 5,
        strategies: Sequence[str] | None = None,
        costs: Any = None,
        cost_penalty: float = 0.0,
        model_names: Sequence[str] | None = None,
    ) -> None:
        self.edges = edges
        self.n_bins = n_bins
        self.strategies = strategies
        self.costs = costs
        self.cost_penalty = cost_penalty
        self.model_names = model_names

    # ------------------------------------------------------------------ training
    def fit(self, X: ArrayLike, y: ArrayLike) -> CascadePolicy:
        """Algorithm 1.

        Parameters
        ----------
        X : (n, K, C) class probabilities of K models (cheapest first), or (n, K) binary
            ``P(y=1)``; probabilities, not logits (calibrate them first).
        y : (n,) int class labels.
        """
        p = check_ensemble_probs(X)
        n, K, C = p.shape
        labels = check_labels(y, n, C, name="y")
        answers, conf = answers_confidences(p)
        edges = (
            uniform_cut_points(self.n_bins, K, low=1.0 / C, high=1.0)
            if self.edges is None
            else check_cut_points(self.edges, K)
        )
        n_bins = tuple(e.size + 1 for e in edges)
        library = build_library(self.strategies, K)
        if self.cost_penalty < 0:
            raise ValueError(f"cost_penalty must be >= 0; got {self.cost_penalty}")
        item_cost = None
        if self.cost_penalty:
            if self.costs is None:
                raise ValueError("cost_penalty > 0 needs costs")
            item_cost = _relative_costs(self.costs, n, K)
        bins = bin_indices(conf, edges)
        preds = strategy_predictions(answers, conf, C, library)
        correct = [pr == labels[:, None] for pr in preds]
        self.tables_ = train_tables(
            bins, n_bins, correct, item_cost=item_cost, cost_penalty=float(self.cost_penalty)
        )
        self.edges_ = edges
        self.n_bins_ = n_bins
        self.library_ = library
        self.n_models_ = K
        self.n_classes_ = C
        self.classes_ = np.arange(C)
        self.training_reward_ = self.tables_.total_reward
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "tables_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this CascadePolicy is not fitted; call fit() or load() first")

    # ------------------------------------------------------------------ inference
    def predict_lazy(self, models: Sequence[ModelFn], n_items: int) -> CascadeResult:
        """Algorithm 2 with lazy model calls.

        Parameters
        ----------
        models : K callables, cheapest first. ``models[k](idx)`` receives the int64 indices of
            the items (out of ``n_items``) that reached depth ``k + 1`` and returns their
            ``(m, C)`` class probabilities or ``(m,)`` binary ``P(y=1)``. Model ``k`` is called
            at most once, and only if some item reached it.
        n_items : number of items.
        """
        self._check_fitted()
        K, C = self.n_models_, self.n_classes_
        if len(models) != K:
            raise ValueError(f"the policy has {K} models but {len(models)} callables were given")
        if n_items < 1:
            raise ValueError(f"n_items must be >= 1; got {n_items}")
        answers = np.full((n_items, K), -1, dtype=np.int64)
        conf = np.full((n_items, K), np.nan)
        pred = np.full(n_items, -1, dtype=np.int64)
        depth = np.zeros(n_items, dtype=np.int64)
        strat = np.empty(n_items, dtype=object)
        active = np.arange(n_items, dtype=np.int64)
        parent = np.zeros(n_items, dtype=np.int64)
        t = self.tables_
        for k in range(1, K + 1):
            out = np.asarray(models[k - 1](active.copy()), dtype=np.float64)
            if out.ndim == 1:
                out = out[:, None]
                p = check_ensemble_probs(out, name=f"output of model {k - 1}")[:, 0, :]
            else:
                p = check_ensemble_probs(out[:, None, :], name=f"output of model {k - 1}")[:, 0, :]
            if p.shape != (active.size, C):
                raise ValueError(
                    f"model {k - 1} returned {p.shape[0]} rows of {p.shape[1]} classes for "
                    f"{active.size} items of {C} classes"
                )
            a = np.argmax(p, axis=1)
            answers[active, k - 1] = a
            conf[active, k - 1] = p[np.arange(active.size), a]
            b = np.searchsorted(self.edges_[k - 1], conf[active, k - 1], side="right")
            code = parent * t.n_bins[k - 1] + b
            h = t.route(k, code, parent)
            ex = h >= 0
            for hv in np.unique(h[ex]):
                rows = active[h == hv]
                st = self.library_[k - 1][int(hv)]
                pred[rows] = st(answers[rows, :k], conf[rows, :k], C)
                strat[rows] = st.name
            depth[active[ex]] = k
            active = active[~ex]
            parent = code[~ex]
            if active.size == 0:
                break
        return CascadeResult(pred, depth, strat.astype(str), K)

    def cascade(self, X: ArrayLike) -> CascadeResult:
        """Algorithm 2 on precomputed scores ``X`` (same layout as in :meth:`fit`)."""
        self._check_fitted()
        p = check_ensemble_probs(X)
        if p.shape[1:] != (self.n_models_, self.n_classes_):
            raise ValueError(
                f"X has {p.shape[1]} models x {p.shape[2]} classes; the policy was fitted on "
                f"{self.n_models_} x {self.n_classes_}"
            )
        fns = [(lambda idx, k=k: p[idx, k, :]) for k in range(self.n_models_)]
        return self.predict_lazy(fns, p.shape[0])

    def predict(self, X: ArrayLike) -> NDArray[np.int64]:
        """(n,) final answers of Algorithm 2."""
        return self.cascade(X).predictions

    # ------------------------------------------------------------------ the lookup table
    # (persistence and rendering live in calibkit.ensemble.policy_io)
    def table(self) -> dict[str, dict[str, Any]]:
        """The policy as ``{"b1/b2": {"decision", "n", "reward"[, "fallback"]}}`` (the keys
        Algorithm 2 can reach); see :func:`calibkit.ensemble.policy_io.policy_table`."""
        from calibkit.ensemble.policy_io import policy_table

        return policy_table(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: parameters, bins, libraries and the lookup table."""
        from calibkit.ensemble.policy_io import policy_to_dict

        return policy_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CascadePolicy:
        """Rebuild a fitted policy from :meth:`to_dict` output."""
        from calibkit.ensemble.policy_io import policy_from_dict

        return policy_from_dict(cls, d)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the policy as indented JSON, atomically."""
        from calibkit.ensemble.policy_io import save_policy

        return save_policy(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CascadePolicy:
        """Read a policy written by :meth:`save`."""
        from calibkit.ensemble.policy_io import load_policy

        return load_policy(cls, path)

    def describe(self) -> str:
        """A readable multi-line rendering of the lookup table."""
        from calibkit.ensemble.policy_io import describe_policy

        return describe_policy(self)
