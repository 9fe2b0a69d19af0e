"""Table-3-style comparison of labeling policies (paper 001): F1, precision, recall and cost
relative to the cheapest model, for single models, weighted majority vote and the cascade, with
uncalibrated and calibrated scores; and the cost-accuracy frontier plot.

:func:`table3` runs the whole protocol honestly: edges are searched and policies trained on a
*dev* set only, and every row is measured on a disjoint *test* set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._validation import check_labels
from calibkit.ensemble.costs import cost_matrix, summarize_cost
from calibkit.ensemble.inputs import answers_confidences, check_ensemble_probs
from calibkit.ensemble.policy import CascadePolicy
from calibkit.ensemble.prf import Average, precision_recall_f1
from calibkit.ensemble.search import SearchResult, search_edges
from calibkit.ensemble.vote import weighted_majority_vote

__all__ = [
    "PolicyRow",
    "Table3Result",
    "baseline_rows",
    "evaluate_predictions",
    "format_table",
    "frontier_plot",
    "pareto_front",
    "table3",
]


@dataclass(frozen=True)
class PolicyRow:
    """One policy's test metrics and cost.

    ``relative_cost`` is the mean per-item cost divided by the cheapest model's mean per-item
    cost; ``share_of_items[k]`` is the fraction of items model ``k`` ran on.
    """

    policy: str
    f1: float
    precision: float
    recall: float
    accuracy: float
    cost_per_item: float
    relative_cost: float
    share_of_items: tuple[float, ...]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "f1": self.f1,
            "precision": self.precision,
            "recall": self.recall,
            "accuracy": self.accuracy,
            "cost_per_item": self.cost_per_item,
            "relative_cost": self.relative_cost,
            "share_of_items": list(self.share_of_items),
            "note": self.note,
        }


def evaluate_predictions(
    name: str,
    y: ArrayLike,
    pred: ArrayLike,
    called: ArrayLike,
    costs: Any,
    *,
    n_classes: int | None = None,
    average: Average = "binary",
    pos_label: int = 1,
    note: str = "",
) -> PolicyRow:
    """Score one policy's ``(n,)`` predictions and ``(n, K)`` called-models mask."""
    m = precision_recall_f1(y, pred, n_classes, average=average, pos_label=pos_label)
    cs = summarize_cost(called, costs)
    return PolicyRow(
        policy=name,
        f1=m.f1,
        precision=m.precision,
        recall=m.recall,
        accuracy=m.accuracy,
        cost_per_item=cs.per_item,
        relative_cost=cs.relative,
        share_of_items=tuple(float(x) for x in cs.share_of_items),
        note=note,
    )


def baseline_rows(
    X: ArrayLike,
    y: ArrayLike,
    costs: Any,
    names: Sequence[str],
    *,
    tag: str = "",
    singles: bool = True,
    average: Average = "binary",
    pos_label: int = 1,
) -> list[PolicyRow]:
    """Rows for each single model and for the weighted majority vote (eq. 1) over all models.

    ``X`` is ``(n, K, C)`` probabilities or ``(n, K)`` binary ``P(y=1)``; ``tag`` is appended to
    the policy names (e.g. ``" (cal.)"``).
    """
    p = check_ensemble_probs(X)
    n, K, C = p.shape
    labels = check_labels(y, n, C, name="y")
    if len(names) != K:
        raise ValueError(f"got {len(names)} names for {K} models")
    a, s = answers_confidences(p)
    rows = []
    kw: dict[str, Any] = {"n_classes": C, "average": average, "pos_label": pos_label}
    if singles:
        for k in range(K):
            called = np.zeros((n, K), dtype=bool)
            called[:, k] = True
            rows.append(
                evaluate_predictions(f"{names[k]} alone", labels, a[:, k], called, costs, **kw)
            )
    wv = weighted_majority_vote(a, s, C)
    rows.append(
        evaluate_predictions(
            f"Weighted maj. vote{tag}", labels, wv, np.ones((n, K), dtype=bool), costs, **kw
        )
    )
    return rows


def format_table(
    rows: Sequence[PolicyRow],
    model_names: Sequence[str],
    *,
    reference: str | None = None,
    digits: int = 3,
) -> str:
    """A Markdown table; F1 / precision / recall also relative to the ``reference`` row (default:
    the first row), like paper 001's Table 3."""
    if not rows:
        raise ValueError("no rows to format")
    ref = next((r for r in rows if r.policy == reference), rows[0]) if reference else rows[0]

    def rel(v: float, base: float) -> str:
        return f"{v / base:.{digits}f}" if base > 0 else "nan"

    share_head = " | ".join(f"reach {n}" for n in model_names)
    out = [
        f"| policy | F1 | prec. | recall | acc. | F1 / ref | prec. / ref | recall / ref | "
        f"cost (x cheapest) | {share_head} | note |",
        "|" + "---|" * (10 + len(model_names)),
    ]
    for r in rows:
        shares = " | ".join(f"{x:.0%}" for x in r.share_of_items)
        out.append(
            f"| {r.policy} | {r.f1:.{digits}f} | {r.precision:.{digits}f} | {r.recall:.{digits}f} "
            f"| {r.accuracy:.{digits}f} | {rel(r.f1, ref.f1)} | {rel(r.precision, ref.precision)} "
            f"| {rel(r.recall, ref.recall)} | {r.relative_cost:.2f}x | {shares} | {r.note} |"
        )
    return "\n".join(out)


def pareto_front(cost: ArrayLike, value: ArrayLike) -> NDArray[np.int64]:
    """Indices of the points no other point beats (lower-or-equal cost and higher value, or equal
    value and lower cost), sorted by cost."""
    c = np.asarray(cost, dtype=np.float64)
    v = np.asarray(value, dtype=np.float64)
    if c.shape != v.shape or c.ndim != 1:
        raise ValueError("cost and value must be 1-D of equal length")
    order = np.lexsort((-v, c))
    front: list[int] = []
    best = -np.inf
    for i in order:
        if v[i] > best:
            front.append(int(i))
            best = v[i]
    return np.asarray(front, dtype=np.int64)


def frontier_plot(
    rows: Sequence[PolicyRow],
    *,
    sweep: Sequence[PolicyRow] = (),
    sweep_label: str = "cascade, cost-penalty sweep",
    metric: str = "f1",
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Cost-accuracy plot: each policy at (relative cost, metric), the Pareto front of all points
    as a grey line, and an optional ``sweep`` of extra policies (e.g. cascades trained with
    growing ``cost_penalty``) as one dashed series. Policies at the same point share one label.

    Returns the matplotlib Figure (matplotlib is imported here, not at module import).
    """
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no rows to plot")
    if metric not in ("f1", "precision", "recall", "accuracy"):
        raise ValueError(f"metric must be f1, precision, recall or accuracy; got {metric!r}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.2, 4.8))
    else:
        fig = ax.figure
    every = list(rows) + list(sweep)
    x = np.array([r.relative_cost for r in every])
    y = np.array([getattr(r, metric) for r in every])
    front = pareto_front(x, y)
    ax.plot(x[front], y[front], "-", color="0.75", lw=3, zorder=1, label="Pareto front")
    if sweep:
        sx = np.array([r.relative_cost for r in sweep])
        sy = np.array([getattr(r, metric) for r in sweep])
        o = np.argsort(sx)
        ax.plot(sx[o], sy[o], "--^", color="tab:purple", ms=4, zorder=2, label=sweep_label)
    groups: dict[tuple[float, float], list[str]] = {}
    for r in rows:
        groups.setdefault((round(r.relative_cost, 3), round(getattr(r, metric), 3)), []).append(
            r.policy
        )
    styles = [("alone", "o", "Single model"), ("vote", "s", "Weighted vote"), ("", "^", "Cascade")]
    seen: set[str] = set()
    for (xi, yi), names in groups.items():
        key = names[0].lower()
        marker, label = next((m, lab) for k, m, lab in styles if k in key)
        color = {"o": "tab:blue", "s": "tab:orange", "^": "tab:green"}[marker]
        ax.scatter(
            [xi],
            [yi],
            marker=marker,
            s=45,
            color=color,
            zorder=3,
            label=None if label in seen else label,
        )
        seen.add(label)
        ax.annotate(
            "\n".join(names), (xi, yi), textcoords="offset points", xytext=(5, 3), fontsize=7
        )
    ax.set_xlabel("cost per item (x cheapest model)")
    ax.set_ylabel(metric.upper() if metric == "f1" else metric)
    ax.set_title(title or "Cost-accuracy frontier")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


@dataclass
class Table3Result:
    """Output of :func:`table3`: the rows (test metrics), the searches behind the cascade rows
    (keyed by ``"uncal/5"`` etc.), and extra cascade points for the frontier."""

    rows: list[PolicyRow]
    searches: dict[str, SearchResult] = field(default_factory=dict)
    frontier: list[PolicyRow] = field(default_factory=list)
    policies: dict[str, CascadePolicy] = field(default_factory=dict)


def table3(
    X_dev: dict[str, ArrayLike],
    y_dev: ArrayLike,
    X_test: dict[str, ArrayLike],
    y_test: ArrayLike,
    *,
    costs: Any,
    model_names: Sequence[str],
    n_bins: Sequence[int] = (5, 10),
    n_trials: int = 400,
    n_splits: int = 10,
    strategies: Sequence[str] | None = None,
    frontier_penalties: Sequence[float] = (0.01, 0.02, 0.05, 0.1, 0.2),
    average: Average = "binary",
    pos_label: int = 1,
    seed: int = 0,
    storage: str | None = None,
    show_progress: bool = False,
) -> Table3Result:
    """Paper 001's Table 3 protocol on a dev/test split.

    Parameters
    ----------
    X_dev, X_test : ``{"uncal": X, "cal": X}`` (either key may be absent) with ``(n, K, C)``
        probabilities, cheapest model first.
    costs : ``(K,)`` per-call costs (or ModelCost list); relative cost is w.r.t. the cheapest.
    n_bins : binning granularities tried; the one with the best *dev* objective is reported.
    frontier_penalties : extra calibrated cascades trained with these ``cost_penalty`` values
        (same edges) for the frontier plot.

    For every variant, single-model and weighted-vote rows come from ``X_test`` directly (no
    training); the cascade's edges are searched on ``X_dev`` (mean F1 over ``n_splits`` 80/20
    splits), its table trained on all of ``X_dev``, and its row measured on ``X_test``.
    """
    if not X_dev or set(X_dev) != set(X_test):
        raise ValueError("X_dev and X_test must have the same non-empty keys ('uncal', 'cal')")
    unknown = set(X_dev) - {"uncal", "cal"}
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; use 'uncal' and/or 'cal'")
    kw: dict[str, Any] = {"average": average, "pos_label": pos_label}
    first = next(iter(X_test.values()))
    p0 = check_ensemble_probs(first)
    n_test, _, C = p0.shape
    cm = cost_matrix(costs, n_test)
    result = Table3Result(rows=[])
    tags = {"uncal": " (uncal.)", "cal": " (cal.)"}
    variants = [v for v in ("uncal", "cal") if v in X_dev]
    first_answers = answers_confidences(X_test[variants[0]])[0]
    for v in variants:
        # single models get a row per variant only where calibration changed their answers
        # (temperature scaling never does; vector scaling can)
        same = v != variants[0] and np.array_equal(answers_confidences(X_test[v])[0], first_answers)
        rows = baseline_rows(X_test[v], y_test, cm, model_names, tag=tags[v], **kw)
        if v != variants[0]:
            rows = [replace(r, policy=r.policy + tags[v]) for r in rows[:-1]] + rows[-1:]
        result.rows += rows[-1:] if same else rows
    for v in variants:
        best: tuple[float, int, SearchResult] | None = None
        for nb in n_bins:
            res = search_edges(
                X_dev[v],
                y_dev,
                n_bins=nb,
                n_trials=n_trials,
                n_splits=n_splits,
                strategies=strategies,
                costs=costs,
                average=average,
                pos_label=pos_label,
                seed=seed,
                storage=storage,
                study_name=f"table3-{v}-{nb}bins-seed{seed}" if storage else None,
                show_progress=show_progress,
                model_names=model_names,
            )
            result.searches[f"{v}/{nb}"] = res
            if best is None or res.value > best[0]:
                best = (res.value, nb, res)
        assert best is not None
        _, nb, res = best
        pol = res.policy
        result.policies[v] = pol
        out = pol.cascade(X_test[v])
        result.rows.append(
            evaluate_predictions(
                f"Cascading{tags[v]}",
                y_test,
                out.predictions,
                out.called,
                cm,
                n_classes=C,
                note=f"{nb} bins/model; dev CV F1 {res.cv.f1:.3f}",
                **kw,
            )
        )
        if v == variants[-1]:
            args = (X_dev[v], y_dev, X_test[v], y_test, cm, C, strategies, costs, model_names)
            for lam in frontier_penalties:
                name = f"Cascading{tags[v]} penalty={lam:g}"
                result.frontier.append(_penalised_row(res, lam, name, *args, kw))
    return result


def _penalised_row(
    res: SearchResult,
    lam: float,
    name: str,
    X_dev: ArrayLike,
    y_dev: ArrayLike,
    X_test: ArrayLike,
    y_test: ArrayLike,
    cm: Any,
    n_classes: int,
    strategies: Sequence[str] | None,
    costs: Any,
    model_names: Sequence[str],
    kw: dict[str, Any],
) -> PolicyRow:
    """Test row of a cascade with the searched edges retrained with ``cost_penalty=lam``."""
    p = CascadePolicy(
        edges=[e.tolist() for e in res.edges],
        strategies=strategies,
        costs=costs,
        cost_penalty=lam,
        model_names=model_names,
    ).fit(X_dev, y_dev)
    o = p.cascade(X_test)
    return evaluate_predictions(
        name, y_test, o.predictions, o.called, cm, n_classes=n_classes, **kw
    )
