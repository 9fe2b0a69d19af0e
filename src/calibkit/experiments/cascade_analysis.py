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
    "Merged",
    "analyze",
    "available_costs",
    "load_fixtures",
    "summary_table",
]

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
    """Markdown lines of the mean +- std table; F1 also relative to the cheapest model's best
    single-model row (calibrated where calibration changed its answers)."""
    cal_ref = f"{models[0]} alone (cal.)"
    ref = cal_ref if cal_ref in agg else f"{models[0]} alone"
    if ref not in agg:
        ref = names[0]
    lines = [
        f"| policy | F1 | prec. | recall | acc. | F1 / {ref} | cost (x {models[0]}) | "
        + " | ".join(f"reach {x}" for x in models)
        + " |",
        "|" + "---|" * (7 + len(models)),
    ]
    for name in names:
        a = agg[name]
        share = " | ".join(f"{x:.0%}" for x in a["share"])
        lines.append(
            f"| {name} | {a['f1'][0]:.3f} ± {a['f1'][1]:.3f} | {a['precision'][0]:.3f} | "
            f"{a['recall'][0]:.3f} | {a['accuracy'][0]:.3f} | {a['f1'][0] / agg[ref]['f1'][0]:.3f} "
            f"| {a['relative_cost'][0]:.2f}x ± {a['relative_cost'][1]:.2f} | {share} |"
        )
    return lines


def _aggregate(per_repeat: list[list[Any]]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Mean and std over repeats of every policy row's metrics, and its mean item shares."""
    names = [row.policy for row in per_repeat[0]]
    fields = ("f1", "precision", "recall", "accuracy", "relative_cost")
    agg: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        vals = {f: np.array([getattr(rows[i], f) for rows in per_repeat]) for f in fields}
        shares = np.array([rows[i].share_of_items for rows in per_repeat])
        agg[name] = {f: (float(v.mean()), float(v.std())) for f, v in vals.items()}
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
        per_repeat.append(res.rows)
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
    plot: bool = True,
) -> dict[str, Any]:
    """Table 3 over ``repeats`` random cal/dev/test splits; returns markdown, JSON and a figure."""
    from calibkit.ensemble.report import format_table, frontier_plot

    m = load_fixtures(fixtures, tasks, models, order_by=cost)
    n = m.logits.shape[0]
    per_repeat, frontier, sweep, temps_all = _run_repeats(
        m, repeats, cal_frac, test_frac, calibrator, bins, n_trials, n_splits, cost, seed
    )
    names, agg = _aggregate(per_repeat)
    md = "\n".join(
        [
            f"Test-set metrics, mean ± std over {repeats} random cal/dev/test splits "
            f"({cal_frac:.0%}/{1 - cal_frac - test_frac:.0%}/{test_frac:.0%}) of {n} items "
            f"({', '.join(tasks)}); calibrator: {calibrator} scaling per model and task; "
            f"cost = {cost}; cascade bins per model searched in {list(bins)} with {n_trials} "
            f"TPE trials x {n_splits} splits on dev.",
            "",
            *summary_table(agg, names, m.models),
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
            "tasks": tasks,
            "n_items": n,
            "cost_per_item": cost_json,
            "cost_used": cost,
            "aggregate": agg,
            "repeats": [[row.to_dict() for row in rows] for rows in per_repeat],
            "cost_penalty_sweep_repeat0": [row.to_dict() for row in sweep],
            "temperatures": temps_all,
        },
        "figure": fig,
        "rows": per_repeat,
    }
