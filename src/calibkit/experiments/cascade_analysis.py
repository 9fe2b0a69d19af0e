"""The analysis stage of ``calibkit experiment cascade`` (paper 001, Table 3): read the stored
Scores of every (task, model), calibrate per model and task, train the weighted vote and the
cascade on a dev split and report them on a test split, over repeated random splits."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit.scores import Scores

__all__ = [
    "COST_FIELDS",
    "PAIRS",
    "LabelerSignal",
    "Merged",
    "analyze",
    "available_costs",
    "baseline_policy_rows",
    "labeler_signal",
    "load_fixtures",
    "paired_tests",
    "select_labelers",
    "subset_models",
    "summary_table",
]

#: policy pairs compared across repeats by :func:`paired_tests` (first minus second)
PAIRS = (
    ("Cascading (cal.)", "Weighted maj. vote (cal.)"),
    ("Cascading (cal.)", "Cascading (uncal.)"),
    ("Weighted maj. vote (cal.)", "Weighted maj. vote (uncal.)"),
    ("Cascading (cal.)", "always positive"),
)

#: --cost choice -> the Scores.meta field of the per-item cost
COST_FIELDS = {
    "flops": "flops_per_item",
    "flops2n": "flops_2n_per_item",
    "seconds": "seconds_per_item",
}


@dataclass
class Merged:
    logits: NDArray[np.float64]  # (n, K, 2)
    labels: NDArray[np.int64]  # (n,)
    task: NDArray[np.int64]  # (n,) index into tasks
    costs: dict[str, NDArray[np.float64]]  # "flops" / "flops2n" / "seconds" -> (K,) per item
    models: list[str]
    tasks: list[str]


def _cost_of(s: Scores, path: Path, field: str, required: bool) -> float:
    """A per-item cost from ``s.meta``: finite and > 0, or NaN where the model has none (e.g.
    FLOPs of a model served over HTTP) and this cost is not the one ``required``."""
    v = s.meta.get(field)
    if v is None:
        if field not in s.meta and required:
            raise ValueError(f"{path} lacks meta[{field!r}]; rerun the score stage")
        if required:
            raise ValueError(
                f"{path}: meta[{field!r}] is empty (a model without local weights has no "
                "FLOPs count); use --cost seconds"
            )
        return float("nan")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: meta[{field!r}] = {v!r} is not a number") from None
    if not np.isfinite(x) or x <= 0:
        raise ValueError(f"{path}: meta[{field!r}] = {v!r} must be a finite number > 0")
    return x


def _task_logits(
    fixtures: Path, task: str, models: list[str], order_by: str, per_task: dict[str, Any], ti: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """(n, K, 2) raw class logits aligned by id, and labels, of one task; fills ``per_task``."""
    from calibkit.ensemble import stack_scores

    scores = []
    for mi, key in enumerate(models):
        path = fixtures / f"{task}__{key}.parquet"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; run: calibkit experiment cascade --stage score"
            )
        s = Scores.load(path)
        scores.append(s)
        for k, field in COST_FIELDS.items():
            per_task[k][ti, mi] = _cost_of(s, path, field, required=k == order_by)
    st = stack_scores(scores, names=models)  # validates ids, classes and labels
    if st.labels is None:
        raise ValueError(f"fixtures of task {task} are unlabeled")
    if len(st.classes) != 2:
        raise ValueError(f"task {task}: the cascade study is binary; got classes {st.classes}")
    key0 = [str(i) for i in st.ids]
    z = np.empty((len(key0), len(models), 2))
    for mi, s in enumerate(scores):
        pos = {str(i): j for j, i in enumerate(s.ids)}
        z[:, mi, :] = s.logits[[pos[i] for i in key0]]
    return z, st.labels


def load_fixtures(
    fixtures: Path, tasks: list[str], models: list[str], order_by: str = "flops"
) -> Merged:
    """Read ``<task>__<model>.parquet`` files, align by id, merge tasks and order models by
    ``order_by`` cost (``"flops"``: forward FLOPs, ``"flops2n"``: 2 x params x tokens,
    ``"seconds"``: measured). Costs other than ``order_by`` may be missing (NaN)."""
    if order_by not in COST_FIELDS:
        raise ValueError(f"order_by must be one of {sorted(COST_FIELDS)}; got {order_by!r}")
    logits, labels, task_idx = [], [], []
    per_task = {k: np.zeros((len(tasks), len(models))) for k in COST_FIELDS}
    for ti, task in enumerate(tasks):
        z, y = _task_logits(Path(fixtures), task, models, order_by, per_task, ti)
        logits.append(z)  # raw class logits, as the scorer produced them
        labels.append(y)
        task_idx.append(np.full(len(y), ti))
    w = np.array([len(y) for y in labels], dtype=np.float64)
    costs = {k: (v * w[:, None]).sum(0) / w.sum() for k, v in per_task.items()}
    order = np.argsort(costs[order_by], kind="stable")
    z = np.concatenate(logits)[:, order, :]
    return Merged(
        logits=z,
        labels=np.concatenate(labels),
        task=np.concatenate(task_idx),
        costs={k: v[order] for k, v in costs.items()},
        models=[models[i] for i in order],
        tasks=tasks,
    )


def available_costs(fixtures: Path, tasks: list[str], models: list[str]) -> list[str]:
    """The ``--cost`` kinds every stored Scores file has a number for."""
    out = []
    for k, field in COST_FIELDS.items():
        ok = True
        for t in tasks:
            for m in models:
                path = Path(fixtures) / f"{t}__{m}.parquet"
                if path.is_file() and Scores.load(path).meta.get(field) is None:
                    ok = False
        if ok:
            out.append(k)
    return out


@dataclass(frozen=True)
class LabelerSignal:
    """Whether one labeler's scores carry signal on one task.

    ``auroc`` (with its DeLong 95 % interval ``low``-``high``) is the AUROC of the class margin
    ``z_1 - z_0`` (raw logits) against ``label == 1``; ``accuracy`` is the raw argmax accuracy,
    ``positive_share`` the share of items answered with class 1, ``cal_accuracy`` the accuracy
    after per-task calibration cross-fitted over ``folds`` stratified folds (every item scored by
    a calibrator fitted without it), ``majority`` the accuracy of always answering the most
    frequent class.
    """

    labeler: str
    task: str
    n: int
    auroc: float
    low: float
    high: float
    accuracy: float
    positive_share: float
    cal_accuracy: float
    majority: float

    @property
    def has_signal(self) -> bool:
        """The AUROC interval lies above 0.5 (a labeler that ranks right above wrong)."""
        return bool(self.low > 0.5)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "has_signal": self.has_signal}


def labeler_signal(
    m: Merged, *, calibrator: str = "vector", folds: int = 5, seed: int = 0
) -> list[LabelerSignal]:
    """:class:`LabelerSignal` of every (model, task) of ``m``, models in ``m.models`` order."""
    from sklearn.model_selection import StratifiedKFold

    from calibkit.calibrators import make_calibrator
    from calibkit.metrics.ranking import binary_auroc_ci

    out = []
    for k, name in enumerate(m.models):
        for ti, task in enumerate(m.tasks):
            rows = np.flatnonzero(m.task == ti)
            z, y = m.logits[rows, k], m.labels[rows]
            ci = binary_auroc_ci(z[:, 1] - z[:, 0], y == 1)
            pred = np.empty(len(y), dtype=np.int64)
            skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            for tr, te in skf.split(z, y):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a labeler without signal hits T's bound
                    cal = make_calibrator(calibrator).fit(z[tr], y[tr])
                pred[te] = np.argmax(cal.predict_proba(z[te]), axis=1)
            out.append(
                LabelerSignal(
                    labeler=name,
                    task=task,
                    n=len(y),
                    auroc=ci.estimate,
                    low=ci.low,
                    high=ci.high,
                    accuracy=float(np.mean(np.argmax(z, axis=1) == y)),
                    positive_share=float(np.mean(np.argmax(z, axis=1) == 1)),
                    cal_accuracy=float(np.mean(pred == y)),
                    majority=float(max(np.mean(y == 1), np.mean(y == 0))),
                )
            )
    return out


def select_labelers(signals: list[LabelerSignal]) -> tuple[list[str], dict[str, list[str]]]:
    """Labelers whose AUROC interval lies above 0.5 on every task (in the order given), and the
    others with the tasks where they have none."""
    names = list(dict.fromkeys(s.labeler for s in signals))
    weak: dict[str, list[str]] = {}
    for s in signals:
        if not s.has_signal:
            weak.setdefault(s.labeler, []).append(s.task)
    return [n for n in names if n not in weak], weak


def signal_table(signals: list[LabelerSignal]) -> list[str]:
    """Markdown rows: AUROC [95 % CI], raw and calibrated accuracy per labeler and task."""
    lines = [
        "| labeler | task | AUROC of the margin [95% CI] | signal | acc. (raw) | answers class 1 "
        "| acc. (calibrated, 5-fold cross-fit) | majority class |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in signals:
        lines.append(
            f"| {s.labeler} | {s.task} | {s.auroc:.3f} [{s.low:.3f}, {s.high:.3f}] | "
            f"{'yes' if s.has_signal else 'no'} | {s.accuracy:.3f} | {s.positive_share:.0%} | "
            f"{s.cal_accuracy:.3f} | {s.majority:.3f} |"
        )
    return lines


def subset_models(m: Merged, keep: list[str]) -> Merged:
    """``m`` restricted to the labelers ``keep`` (kept in ``m``'s cost order)."""
    unknown = [k for k in keep if k not in m.models]
    if unknown:
        raise ValueError(f"unknown labelers {unknown}; have {m.models}")
    if not keep:
        raise ValueError("no labeler left to build a cascade from")
    idx = [i for i, name in enumerate(m.models) if name in keep]
    return Merged(
        logits=m.logits[:, idx, :],
        labels=m.labels,
        task=m.task,
        costs={k: v[idx] for k, v in m.costs.items()},
        models=[m.models[i] for i in idx],
        tasks=m.tasks,
    )


def baseline_policy_rows(
    y_fit: NDArray[np.int64], y_test: NDArray[np.int64], n_models: int
) -> list[Any]:
    """Trivial rows that call no model: always answering class 1 ("positive"), and always
    answering the most frequent class of ``y_fit`` (the items a policy may learn from; ties
    go to class 0)."""
    from calibkit.ensemble.report import evaluate_predictions

    majority = int(np.mean(y_fit == 1) > 0.5)
    none = np.zeros((len(y_test), n_models), dtype=bool)
    costs = np.ones(n_models)
    return [
        evaluate_predictions(name, y_test, np.full(len(y_test), c), none, costs, n_classes=2)
        for name, c in (("always positive", 1), ("majority class", majority))
    ]


def paired_tests(
    per_repeat: list[list[Any]], pairs: tuple[tuple[str, str], ...] = PAIRS
) -> list[dict[str, Any]]:
    """Paired comparisons of two policies across repeats, for F1 and accuracy: mean difference
    (first minus second), wins / ties / losses, the two-sided Wilcoxon signed-rank p (zero
    differences dropped; 1.0 when all are zero), the two-sided sign-test p, and the mean ratio
    of their relative costs. Repeats share items, so the p-values are optimistic."""
    from scipy.stats import binomtest, wilcoxon

    out = []
    for a, b in pairs:
        rows = [{r.policy: r for r in rows} for rows in per_repeat]
        if not all(a in r and b in r for r in rows):
            continue
        ratio = [r[a].relative_cost / r[b].relative_cost for r in rows if r[b].relative_cost > 0]
        for metric in ("f1", "accuracy"):
            d = np.array([getattr(r[a], metric) - getattr(r[b], metric) for r in rows])
            wins, losses = int(np.sum(d > 1e-12)), int(np.sum(d < -1e-12))
            nz = d[np.abs(d) > 1e-12]
            p_w = float(wilcoxon(nz).pvalue) if nz.size else 1.0
            p_s = float(binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0
            out.append(
                {
                    "a": a,
                    "b": b,
                    "metric": metric,
                    "mean_diff": float(d.mean()),
                    "std_diff": float(d.std()),
                    "wins": wins,
                    "ties": len(d) - wins - losses,
                    "losses": losses,
                    "wilcoxon_p": p_w,
                    "sign_p": p_s,
                    "cost_ratio": float(np.mean(ratio)) if ratio else float("nan"),
                }
            )
    return out


def paired_table(tests: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| A | B | metric | mean A - B (± std) | A wins / ties / losses | Wilcoxon p | sign p "
        "| cost A / B |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in tests:
        lines.append(
            f"| {t['a']} | {t['b']} | {t['metric']} | {t['mean_diff']:+.3f} ± {t['std_diff']:.3f} "
            f"| {t['wins']} / {t['ties']} / {t['losses']} | {t['wilcoxon_p']:.3g} | "
            f"{t['sign_p']:.3g} | {_num(t['cost_ratio'], '.2f')} |"
        )
    return lines


def claim_verdict(tests: list[dict[str, Any]], alpha: float = 0.05) -> str:
    """Paper 001's claim: the calibrated cascade beats the (calibrated) weighted vote at under
    half its cost. Holds when its F1 is higher with Wilcoxon p < ``alpha`` and cost ratio < 0.5."""
    t = next(
        (t for t in tests if (t["a"], t["b"], t["metric"]) == (*PAIRS[0], "f1")),
        None,
    )
    if t is None:
        return "claim not tested (no cascade / weighted-vote rows)"
    significant = t["wilcoxon_p"] < alpha
    better = t["mean_diff"] > 0 and significant
    cheaper = t["cost_ratio"] < 0.5
    if significant:
        how = "significantly higher" if t["mean_diff"] > 0 else "significantly lower"
    else:
        how = "not significantly different"
    parts = [
        f"F1 difference {t['mean_diff']:+.3f} ({how}: Wilcoxon p = {t['wilcoxon_p']:.3g}, "
        f"{t['wins']}/{t['ties']}/{t['losses']} wins/ties/losses)",
        f"cost {t['cost_ratio']:.2f}x the vote's",
    ]
    verdict = "HOLDS" if better and cheaper else "DOES NOT HOLD"
    return (
        f"Paper 001's claim (calibrated cascade better than the calibrated weighted vote at "
        f"under half the cost) {verdict} here: " + "; ".join(parts) + "."
    )


def _split(
    strata: NDArray[np.int64], cal_frac: float, test_frac: float, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    cal, dev, test = [], [], []
    for s in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == s))
        nc, nt = round(cal_frac * idx.size), round(test_frac * idx.size)
        cal.append(idx[:nc])
        test.append(idx[nc : nc + nt])
        dev.append(idx[nc + nt :])
    return (
        np.sort(np.concatenate(cal)),
        np.sort(np.concatenate(dev)),
        np.sort(np.concatenate(test)),
    )


def _calibrate(
    m: Merged, cal: NDArray[np.int64], calibrator: str
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """Per (model, task) calibrator fitted on the cal items: (n, K, 2) probabilities and the
    fitted temperatures (plus any fit warning) by ``model/task``."""
    from calibkit.calibrators import make_calibrator

    n, K, C = m.logits.shape
    out = np.empty((n, K, C))
    temps: dict[str, Any] = {}
    for k in range(K):
        for ti, task in enumerate(m.tasks):
            rows = np.flatnonzero(m.task == ti)
            fit_rows = np.intersect1d(rows, cal)
            with warnings.catch_warnings(record=True) as caught:
                # a labeler with no signal on a task drives T to its bound: expected here,
                # and recorded in the output instead of printed
                warnings.simplefilter("always")
                cal_k = make_calibrator(calibrator).fit(m.logits[fit_rows, k], m.labels[fit_rows])
            out[rows, k] = cal_k.predict_proba(m.logits[rows, k])
            name = f"{m.models[k]}/{task}"
            if hasattr(cal_k, "temperature_"):
                temps[name] = float(cal_k.temperature_)
            if caught:
                temps[f"{name}/warning"] = str(caught[0].message)
    return out, temps


def summary_table(agg: dict[str, dict[str, Any]], names: list[str], models: list[str]) -> list[str]:
    """Markdown lines of the mean ± std table (with the 2.5-97.5 % range over repeats of F1 and
    accuracy where ``agg`` has it); F1 also relative to the cheapest model's best single-model
    row (calibrated where calibration changed its answers)."""
    cal_ref = f"{models[0]} alone (cal.)"
    ref = cal_ref if cal_ref in agg else f"{models[0]} alone"
    if ref not in agg:
        ref = names[0]
    lines = [
        f"| policy | F1 | F1 range | prec. | recall | acc. | acc. range | F1 / {ref} "
        f"| cost (x {models[0]}) | " + " | ".join(f"reach {x}" for x in models) + " |",
        "|" + "---|" * (9 + len(models)),
    ]

    def rng(a: dict[str, Any], f: str) -> str:
        lo_hi = a.get("range", {}).get(f)
        return "-" if lo_hi is None else f"{lo_hi[0]:.3f}-{lo_hi[1]:.3f}"

    for name in names:
        a = agg[name]
        share = " | ".join(f"{x:.0%}" for x in a["share"])
        lines.append(
            f"| {name} | {a['f1'][0]:.3f} ± {a['f1'][1]:.3f} | {rng(a, 'f1')} | "
            f"{a['precision'][0]:.3f} | {a['recall'][0]:.3f} | "
            f"{a['accuracy'][0]:.3f} ± {a['accuracy'][1]:.3f} | {rng(a, 'accuracy')} | "
            f"{a['f1'][0] / agg[ref]['f1'][0]:.3f} "
            f"| {a['relative_cost'][0]:.2f}x ± {a['relative_cost'][1]:.2f} | {share} |"
        )
    return lines


def _aggregate(per_repeat: list[list[Any]]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Mean and std over repeats of every policy row's metrics, the 2.5-97.5 % range of F1 and
    accuracy over repeats (``"range"``), and its mean item shares."""
    names = [row.policy for row in per_repeat[0]]
    fields = ("f1", "precision", "recall", "accuracy", "relative_cost")
    agg: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        vals = {f: np.array([getattr(rows[i], f) for rows in per_repeat]) for f in fields}
        shares = np.array([rows[i].share_of_items for rows in per_repeat])
        agg[name] = {f: (float(v.mean()), float(v.std())) for f, v in vals.items()}
        agg[name]["range"] = {
            f: (float(np.percentile(vals[f], 2.5)), float(np.percentile(vals[f], 97.5)))
            for f in ("f1", "accuracy")
        }
        agg[name]["share"] = shares.mean(axis=0).tolist()
    return names, agg


def _num(x: float, fmt: str, suffix: str = "") -> str:
    return "-" if not np.isfinite(x) else f"{x:{fmt}}{suffix}"


def _cost_table(m: Merged, fixtures: Path, task: str) -> list[str]:
    """Markdown rows of each model's size and per-item costs ('-' where a model has none)."""
    fl, f2, sec = m.costs["flops"], m.costs["flops2n"], m.costs["seconds"]
    lines = [
        "| model | params | forward GFLOPs/item | 2 x params x tokens, GFLOPs | measured ms/item "
        "| relative forward FLOPs | relative 2N FLOPs | relative seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, key in enumerate(m.models):
        params = Scores.load(Path(fixtures) / f"{task}__{key}.parquet").meta.get("params")
        size = "-" if params is None else f"{int(params) / 1e6:.0f}M"
        lines.append(
            f"| {key} | {size} | {_num(fl[k] / 1e9, '.1f')} | {_num(f2[k] / 1e9, '.1f')} | "
            f"{_num(sec[k] * 1e3, '.0f')} | {_num(fl[k] / fl[0], '.2f', suffix='x')} | "
            f"{_num(f2[k] / f2[0], '.2f', suffix='x')} | {_num(sec[k] / sec[0], '.2f', suffix='x')} |"
        )
    return lines


def _run_repeats(
    m: Merged,
    repeats: int,
    cal_frac: float,
    test_frac: float,
    calibrator: str,
    bins: list[int] | tuple[int, ...],
    n_trials: int,
    n_splits: int,
    cost: str,
    seed: int,
) -> tuple[list[list[Any]], list[Any], list[Any], list[dict[str, Any]]]:
    """Table 3 rows of every repeat, repeat 0's rows and cost-penalty sweep, and the fitted
    temperatures of every repeat."""
    from calibkit._math import softmax
    from calibkit.ensemble.report import table3

    uncal = softmax(m.logits, axis=2)
    K = m.logits.shape[1]
    per_repeat: list[list[Any]] = []
    frontier: list[Any] = []
    sweep: list[Any] = []
    temps_all = []
    strata = m.task * 2 + m.labels
    for r in range(repeats):
        cal, dev, test = _split(strata, cal_frac, test_frac, np.random.default_rng([seed, r]))
        calp, temps = _calibrate(m, cal, calibrator)
        temps_all.append(temps)
        res = table3(
            {"uncal": uncal[dev], "cal": calp[dev]},
            m.labels[dev],
            {"uncal": uncal[test], "cal": calp[test]},
            m.labels[test],
            costs=m.costs[cost],
            model_names=m.models,
            n_bins=tuple(bins),
            n_trials=n_trials,
            n_splits=n_splits,
            seed=seed + r,
        )
        base = baseline_policy_rows(m.labels[np.concatenate([cal, dev])], m.labels[test], K)
        per_repeat.append(base + res.rows)
        if r == 0:
            frontier, sweep = res.rows, res.frontier
        print(f"repeat {r + 1}/{repeats} done", flush=True)
    return per_repeat, frontier, sweep, temps_all


def analyze(
    fixtures: Path,
    tasks: list[str],
    models: list[str],
    *,
    repeats: int = 5,
    cal_frac: float = 0.2,
    test_frac: float = 0.3,
    calibrator: str = "vector",
    bins: list[int] | tuple[int, ...] = (2, 3, 5, 10),
    n_trials: int = 400,
    n_splits: int = 10,
    cost: str = "flops",
    seed: int = 0,
    select: str = "all",
    plot: bool = True,
) -> dict[str, Any]:
    """Table 3 over ``repeats`` random cal/dev/test splits; returns markdown, JSON and a figure.

    Every labeler's signal (:func:`labeler_signal`) is reported first; ``select="signal"``
    keeps only the labelers whose AUROC interval lies above 0.5 on every task, ``"all"`` keeps
    them all (with a warning naming those without signal).
    """
    from calibkit.ensemble.report import format_table, frontier_plot

    if select not in ("all", "signal"):
        raise ValueError(f"select must be 'all' or 'signal'; got {select!r}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    full = load_fixtures(fixtures, tasks, models, order_by=cost)
    signals = labeler_signal(full, calibrator=calibrator, seed=seed)
    kept, weak = select_labelers(signals)
    weak_text = "; ".join(f"{k} (no signal on {', '.join(v)})" for k, v in weak.items())
    if select == "signal":
        if not kept:
            raise ValueError(
                f"no labeler has signal (AUROC CI above 0.5) on every task: {weak_text}"
            )
        m = subset_models(full, kept)
    else:
        m = full
        if weak:
            warnings.warn(
                f"labelers without signal kept in the cascade: {weak_text}; "
                "--select signal drops them",
                stacklevel=2,
            )
    n = m.logits.shape[0]
    per_repeat, frontier, sweep, temps_all = _run_repeats(
        m, repeats, cal_frac, test_frac, calibrator, bins, n_trials, n_splits, cost, seed
    )
    names, agg = _aggregate(per_repeat)
    # also against the most expensive labeler alone (calibrated), the cascade's last stage
    tests = paired_tests(per_repeat, (*PAIRS, ("Cascading (cal.)", f"{m.models[-1]} alone (cal.)")))
    verdict = claim_verdict(tests)
    selection = (
        f"Labelers in the cascade ({'AUROC CI above 0.5 on every task' if select == 'signal' else 'all given'}): "
        f"{', '.join(m.models)}" + (f"; without signal: {weak_text}" if weak else "") + "."
    )
    md = "\n".join(
        [
            "Signal of each labeler (all items of the task; DeLong 95% CI):",
            "",
            *signal_table(signals),
            "",
            selection,
            "",
            f"Test-set metrics, mean ± std and 2.5-97.5% range over {repeats} random "
            f"cal/dev/test splits ({cal_frac:.0%}/{1 - cal_frac - test_frac:.0%}/{test_frac:.0%}) "
            f"of {n} items ({', '.join(tasks)}); calibrator: {calibrator} scaling per model and "
            f"task; cost = {cost}; cascade bins per model searched in {list(bins)} with "
            f"{n_trials} TPE trials x {n_splits} splits on dev. 'always positive' and 'majority "
            "class' (of the cal + dev items) call no model.",
            "",
            *summary_table(agg, names, m.models),
            "",
            f"Paired across the {repeats} splits (they share items, so p-values are optimistic):",
            "",
            *paired_table(tests),
            "",
            verdict,
            "",
            *_cost_table(m, fixtures, tasks[0]),
            "",
            "Repeat 0 in full (relative to the first row):",
            "",
            format_table(frontier + sweep, m.models),
        ]
    )
    fig = (
        frontier_plot(frontier, sweep=sweep, title="Cost-accuracy frontier (repeat 0, test set)")
        if plot
        else None
    )
    cost_json = {
        k: [None if not np.isfinite(x) else float(x) for x in v] for k, v in m.costs.items()
    }
    return {
        "markdown": md,
        "json": {
            "models": m.models,
            "models_given": full.models,
            "select": select,
            "without_signal": weak,
            "signal": [sig.to_dict() for sig in signals],
            "tasks": tasks,
            "n_items": n,
            "cost_per_item": cost_json,
            "cost_used": cost,
            "aggregate": agg,
            "paired_tests": tests,
            "claim": verdict,
            "repeats": [[row.to_dict() for row in rows] for rows in per_repeat],
            "cost_penalty_sweep_repeat0": [row.to_dict() for row in sweep],
            "temperatures": temps_all,
        },
        "figure": fig,
        "rows": per_repeat,
        "signal": signals,
        "paired_tests": tests,
    }
