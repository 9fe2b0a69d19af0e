"""Bin-edge search for the cascade (paper 001, section 3.1 and appendix 7.1).

The objective of a set of edges is the mean F1 over repeated 80/20 splits, training the policy
(Algorithm 1) on the 80% and applying it (Algorithm 2) to the 20%; optionally minus
``cost_weight`` x mean relative cost, or penalised when the mean relative cost exceeds ``budget``.
Edges are searched with Optuna's TPE sampler over ``K x (bins - 1)`` parameters.

Speed: everything that does not depend on the edges (each strategy's answer on each item, the
split indices, the costs) is computed once in :class:`CascadeCV`; a trial is then a few
``searchsorted`` + ``bincount`` calls per split, so 400 trials x 10 splits on 10k items take
seconds (``benchmarks/cascade.py``).

Storage, resuming, many machines: ``storage`` is an Optuna RDB URL (``sqlite:///file.db`` on
one machine, ``postgresql://...`` or ``mysql://...`` shared by many) or ``journal:PATH`` (Optuna's
append-only file journal). Use the same ``study_name`` everywhere: every process adds trials to the
same study, and a rerun resumes it. Optuna's RDB layer writes each of the ``K x (bins - 1)``
parameters as its own row, which costs ~0.1-0.2 s per trial with SQLite here; the journal file
costs ~0.04 s and memory nothing (``benchmarks/cascade.py`` measures all three).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._validation import check_labels
from calibkit.ensemble.binning import bin_indices, check_cut_points
from calibkit.ensemble.costs import cost_matrix
from calibkit.ensemble.inputs import answers_confidences, check_ensemble_probs
from calibkit.ensemble.policy import CascadePolicy, apply_tables, strategy_predictions, train_tables
from calibkit.ensemble.prf import Average, precision_recall_f1
from calibkit.ensemble.strategies import build_library

__all__ = ["CVScore", "CascadeCV", "SearchResult", "search_edges"]

Space = Literal["quantile", "value"]


@dataclass(frozen=True)
class CVScore:
    """Mean (and per-split) test metrics of a cascade over repeated splits."""

    f1: float
    precision: float
    recall: float
    accuracy: float
    relative_cost: float
    f1_per_split: NDArray[np.float64]


class CascadeCV:
    """Repeated train/test evaluation of cascade policies on fixed data, for many edge sets.

    Parameters
    ----------
    X : (n, K, C) class probabilities (cheapest model first) or (n, K) binary ``P(y=1)``.
    y : (n,) int labels.
    strategies, cost_penalty : as in :class:`~calibkit.ensemble.CascadePolicy`.
    costs : (K,) / (n, K) / list of ModelCost; default 1 per call for every model.
    n_splits, test_size, seed : the repeated stratified splits.
    average, pos_label : F1 definition (see :func:`~calibkit.ensemble.precision_recall_f1`).
    """

    def __init__(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        strategies: Sequence[str] | None = None,
        costs: Any = None,
        cost_penalty: float = 0.0,
        n_splits: int = 10,
        test_size: float = 0.2,
        seed: int = 0,
        average: Average = "binary",
        pos_label: int = 1,
    ) -> None:
        from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

        p = check_ensemble_probs(X)
        n, K, C = p.shape
        self.y = check_labels(y, n, C, name="y")
        if n_splits < 1:
            raise ValueError(f"n_splits must be >= 1; got {n_splits}")
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size must be in (0, 1); got {test_size}")
        self.n_models, self.n_classes = K, C
        self.average, self.pos_label = average, pos_label
        self.cost_penalty = float(cost_penalty)
        self.answers, self.conf = answers_confidences(p)
        self.library = build_library(strategies, K)
        self.preds = strategy_predictions(self.answers, self.conf, C, self.library)
        correct = [(pr == self.y[:, None]).astype(np.float64) for pr in self.preds]
        c = cost_matrix(np.ones(K) if costs is None else costs, n)
        if c.shape[1] != K:
            raise ValueError(f"costs cover {c.shape[1]} models but X has {K}")
        self.reference_cost = float(np.min(c.mean(axis=0)))
        if self.reference_cost <= 0:
            raise ValueError("the cheapest model's cost must be > 0")
        rel = c / self.reference_cost
        cum = np.cumsum(rel, axis=1)
        counts = np.bincount(self.y, minlength=C)
        n_test = max(1, round(test_size * n))
        stratify = bool(np.all(counts[counts > 0] >= 2)) and n_test >= np.count_nonzero(counts)
        splitter_cls = StratifiedShuffleSplit if stratify else ShuffleSplit
        splitter = splitter_cls(n_splits=n_splits, test_size=n_test, random_state=seed)
        self.splits: list[tuple[NDArray[np.int64], NDArray[np.int64]]] = [
            (np.asarray(tr), np.asarray(te)) for tr, te in splitter.split(np.zeros(n), self.y)
        ]
        # everything per split that does not depend on the edges
        self._train = [([cr[tr] for cr in correct], rel[tr]) for tr, _ in self.splits]
        self._test = [([pr[te] for pr in self.preds], self.y[te], cum[te]) for _, te in self.splits]

    def evaluate(self, edges: Sequence[ArrayLike]) -> CVScore:
        """Mean test metrics of Algorithm 1 (train part) + Algorithm 2 (test part) over splits."""
        e = check_cut_points(edges, self.n_models)
        n_bins = [x.size + 1 for x in e]
        bins = bin_indices(self.conf, e)
        f1s, precs, recs, accs, costs = [], [], [], [], []
        for (tr, te), (corr_tr, cost_tr), (pred_te, y_te, cum_te) in zip(
            self.splits, self._train, self._test, strict=True
        ):
            tables = train_tables(
                bins[tr], n_bins, corr_tr, item_cost=cost_tr, cost_penalty=self.cost_penalty
            )
            pred, depth, _ = apply_tables(tables, bins[te], pred_te)
            m = precision_recall_f1(
                y_te, pred, self.n_classes, average=self.average, pos_label=self.pos_label
            )
            f1s.append(m.f1)
            precs.append(m.precision)
            recs.append(m.recall)
            accs.append(m.accuracy)
            costs.append(float(cum_te[np.arange(te.size), depth - 1].mean()))
        return CVScore(
            f1=float(np.mean(f1s)),
            precision=float(np.mean(precs)),
            recall=float(np.mean(recs)),
            accuracy=float(np.mean(accs)),
            relative_cost=float(np.mean(costs)),
            f1_per_split=np.asarray(f1s),
        )


@dataclass
class SearchResult:
    """Outcome of :func:`search_edges`.

    Attributes
    ----------
    edges : best edges (K arrays). value : best objective. cv : its :class:`CVScore`.
    policy : a :class:`CascadePolicy` with the best edges fitted on all the data.
    n_trials : completed trials in the study. study_name, storage : where the study lives.
    trials : one dict per completed trial: number, value, f1, relative_cost, edges.
    """

    edges: list[NDArray[np.float64]]
    value: float
    cv: CVScore
    policy: CascadePolicy
    n_trials: int
    study_name: str
    storage: str | None
    trials: list[dict[str, Any]] = field(default_factory=list)


def _edges_from_params(
    params: dict[str, float], conf: NDArray[np.float64], n_bins: Sequence[int], space: Space
) -> list[NDArray[np.float64]]:
    edges = []
    for k, b in enumerate(n_bins):
        if space == "quantile":
            qs = np.sort([params[f"m{k}_q{j}"] for j in range(b - 1)])
            edges.append(np.quantile(conf[:, k], qs) if b > 1 else np.empty(0))
        else:
            edges.append(np.sort([params[f"m{k}_e{j}"] for j in range(b - 1)]).astype(np.float64))
    return edges


def _storage(storage: Any) -> Any:
    """Optuna storage from a URL, ``journal:PATH``, an Optuna storage object, or None."""
    if isinstance(storage, str) and storage.startswith("journal:"):
        import optuna
        from optuna.storages.journal import JournalFileBackend

        path = storage[len("journal:") :]
        if not path:
            raise ValueError("journal storage needs a path: 'journal:/path/to/study.log'")
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    return storage


def _param_name(k: int, j: int, space: Space) -> str:
    return f"m{k}_q{j}" if space == "quantile" else f"m{k}_e{j}"


def _initial_params(nb: Sequence[int], space: Space, low: float) -> dict[str, float]:
    """Equal-mass (or equal-width) bins: the first trial, so the search starts from the
    a-priori default and can only improve on it."""
    start = {}
    for k, b in enumerate(nb):
        for j in range(b - 1):
            frac = (j + 1) / b
            start[_param_name(k, j, space)] = (
                frac if space == "quantile" else low + frac * (1 - low)
            )
    return start


def _make_objective(
    cv: CascadeCV,
    nb: Sequence[int],
    space: Space,
    low: float,
    cost_weight: float,
    budget: float | None,
) -> Any:
    """The Optuna objective: mean F1 - ``cost_weight`` x mean relative cost of the trial's
    edges; a trial above ``budget`` scores ``f1 - 1 - excess`` (below every one within)."""

    def objective(trial: Any) -> float:
        params = {
            _param_name(k, j, space): trial.suggest_float(
                _param_name(k, j, space), 0.0 if space == "quantile" else low, 1.0
            )
            for k, b in enumerate(nb)
            for j in range(b - 1)
        }
        edges = _edges_from_params(params, cv.conf, nb, space)
        score = cv.evaluate(edges)
        trial.set_user_attr("f1", score.f1)
        trial.set_user_attr("relative_cost", score.relative_cost)
        trial.set_user_attr("edges", [e.tolist() for e in edges])
        v = score.f1 - cost_weight * score.relative_cost
        if budget is not None and score.relative_cost > budget:
            v = score.f1 - 1.0 - (score.relative_cost - budget)
        return float(v)

    return objective


def _optimize(
    objective: Any,
    start: dict[str, float],
    *,
    n_trials: int,
    name: str,
    storage: Any,
    seed: int,
    timeout: float | None,
    show_progress: bool,
) -> Any:
    """Create (or resume) the TPE study and run it up to ``n_trials`` completed trials."""
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - optuna is a declared extra
        raise ImportError("search_edges needs optuna: pip install 'calibkit[ensemble]'") from exc

    old = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=_storage(storage),
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            load_if_exists=True,
        )
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not done:
            study.enqueue_trial(start)
        remaining = n_trials - len(done)
        if remaining > 0:
            study.optimize(
                objective, n_trials=remaining, timeout=timeout, show_progress_bar=show_progress
            )
    finally:
        optuna.logging.set_verbosity(old)
    return study


def search_edges(
    X: ArrayLike,
    y: ArrayLike,
    *,
    n_bins: int | Sequence[int] = 5,
    n_trials: int = 400,
    n_splits: int = 10,
    test_size: float = 0.2,
    strategies: Sequence[str] | None = None,
    costs: Any = None,
    cost_penalty: float = 0.0,
    cost_weight: float = 0.0,
    budget: float | None = None,
    space: Space = "quantile",
    average: Average = "binary",
    pos_label: int = 1,
    seed: int = 0,
    sampler_seed: int | None = None,
    storage: Any = None,
    study_name: str | None = None,
    timeout: float | None = None,
    show_progress: bool = False,
    model_names: Sequence[str] | None = None,
) -> SearchResult:
    """Search the cascade's bin edges with Optuna TPE.

    Parameters
    ----------
    X : (n, K, C) class probabilities (cheapest model first) or (n, K) binary ``P(y=1)``.
    y : (n,) int labels.
    n_bins : bins per model (the paper uses 5 or 10); ``K x (n_bins - 1)`` parameters.
    n_trials : total completed trials wanted in the study (a resumed study runs only the rest).
    n_splits, test_size : the repeated splits of the objective (paper: 10 x 80/20).
    strategies, costs, cost_penalty : passed to :class:`~calibkit.ensemble.CascadePolicy`.
    cost_weight : objective = mean F1 - ``cost_weight`` x mean relative cost.
    budget : max mean relative cost (x cheapest model); a trial above it scores
        ``f1 - 1 - excess``, below every trial within budget.
    space : ``"quantile"`` (default): each edge is a quantile level in (0, 1) of that model's
        confidences, so the search adapts to skewed score distributions; ``"value"``: edges are
        confidence values in ``(1/C, 1)``. Edges of one model are the sorted parameters.
    seed : seeds the splits of the objective (workers sharing one study must use the same seed,
        so that their trial values are comparable) and, unless ``sampler_seed`` is given, the
        TPE sampler (same seeds, same result with in-memory storage).
    sampler_seed : seeds the TPE sampler alone; give each worker of a shared study its own, so
        that workers started together do not propose the same points. None: ``seed``.
    storage : Optuna storage URL (``"sqlite:///cascade.db"``, any RDB URL), ``"journal:PATH"``,
        an Optuna storage object, or None (in memory).
    study_name : defaults to ``"cascade"``; with ``storage`` an existing study is resumed.
    timeout : stop after this many seconds.

    Returns
    -------
    SearchResult
    """
    if space not in ("quantile", "value"):
        raise ValueError(f"space must be 'quantile' or 'value'; got {space!r}")
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1; got {n_trials}")
    if budget is not None and budget <= 0:
        raise ValueError(f"budget must be > 0; got {budget}")
    cv = CascadeCV(
        X,
        y,
        strategies=strategies,
        costs=costs,
        cost_penalty=cost_penalty,
        n_splits=n_splits,
        test_size=test_size,
        seed=seed,
        average=average,
        pos_label=pos_label,
    )
    K, C = cv.n_models, cv.n_classes
    nb = [int(n_bins)] * K if isinstance(n_bins, (int, np.integer)) else [int(b) for b in n_bins]
    if len(nb) != K or any(b < 1 for b in nb):
        raise ValueError(f"n_bins must be >= 1 for each of the {K} models; got {n_bins}")
    low = 1.0 / C

    objective = _make_objective(cv, nb, space, low, cost_weight, budget)
    name = study_name or "cascade"
    study = _optimize(
        objective,
        _initial_params(nb, space, low),
        n_trials=n_trials,
        name=name,
        storage=storage,
        seed=seed if sampler_seed is None else sampler_seed,
        timeout=timeout,
        show_progress=show_progress,
    )
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        raise ValueError("no trial completed; increase timeout or check the inputs")
    best = study.best_trial
    edges = [np.asarray(e, dtype=np.float64) for e in best.user_attrs["edges"]]
    policy = CascadePolicy(
        edges=[e.tolist() for e in edges],
        strategies=strategies,
        costs=costs,
        cost_penalty=cost_penalty,
        model_names=model_names,
    )
    policy.fit(check_ensemble_probs(X), cv.y)
    trials = [
        {
            "number": t.number,
            "value": t.value,
            "f1": t.user_attrs.get("f1"),
            "relative_cost": t.user_attrs.get("relative_cost"),
            "edges": t.user_attrs.get("edges"),
        }
        for t in complete
    ]
    return SearchResult(
        edges=edges,
        value=float(best.value if best.value is not None else np.nan),
        cv=cv.evaluate(edges),
        policy=policy,
        n_trials=len(complete),
        study_name=name,
        storage=storage if isinstance(storage, str) or storage is None else repr(storage),
        trials=trials,
    )
