"""Tables and figures of the label-efficiency study: across-task ACE statistics, the paper's
Tables 1, 2 and 5 next to ours, the paper's headline claims measured, ACE-vs-shots plot."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from calibkit.experiments.label_efficiency.config import OOT_SCENARIOS, UNCAL
from calibkit.experiments.label_efficiency.study import StudyResult
from calibkit.selection.in_task import STRATEGIES

__all__ = [
    "PAPER_TABLE1",
    "PAPER_TABLE5",
    "paper_comparison",
    "plot_ace_vs_shots",
    "pooled_wilcoxon",
    "render_labeler_summary",
    "render_report",
    "summarize",
    "wilcoxon_tests",
    "zero_label_share",
]

#: Paper 001 Table 1 (fine-tuned Llama2-7B, 12 tasks): (mean, std, median, IQR/2)
PAPER_TABLE1: dict[tuple[str, str], tuple[float, float, float, float]] = {
    (UNCAL, "-"): (0.070, 0.039, 0.058, 0.027),
    ("ALL-OOT", "SV"): (0.089, 0.032, 0.087, 0.022),
    ("ALL-OOT", "ST"): (0.074, 0.023, 0.073, 0.021),
    ("SIM-OOT", "SV"): (0.102, 0.073, 0.087, 0.037),
    ("SIM-OOT", "ST"): (0.068, 0.027, 0.062, 0.015),
}
#: Paper 001 Table 5: (shots, strategy, method) -> (mean, std, median, IQR, Q3)
PAPER_TABLE5: dict[tuple[int, str, str], tuple[float, float, float, float, float]] = {
    (10, "U", "SV"): (0.123, 0.098, 0.100, 0.080, 0.140),
    (10, "U", "ST"): (0.103, 0.056, 0.086, 0.054, 0.113),
    (10, "SE", "SV"): (0.098, 0.045, 0.095, 0.023, 0.107),
    (10, "SE", "ST"): (0.103, 0.041, 0.099, 0.044, 0.121),
    (10, "IE", "SV"): (0.110, 0.079, 0.076, 0.055, 0.104),
    (10, "IE", "ST"): (0.104, 0.047, 0.099, 0.047, 0.122),
    (20, "U", "SV"): (0.069, 0.025, 0.059, 0.020, 0.070),
    (20, "U", "ST"): (0.078, 0.023, 0.072, 0.033, 0.089),
    (20, "SE", "SV"): (0.072, 0.026, 0.078, 0.029, 0.093),
    (20, "SE", "ST"): (0.084, 0.031, 0.084, 0.049, 0.109),
    (20, "IE", "SV"): (0.063, 0.023, 0.057, 0.036, 0.075),
    (20, "IE", "ST"): (0.080, 0.018, 0.078, 0.022, 0.089),
    (50, "U", "SV"): (0.049, 0.023, 0.050, 0.030, 0.065),
    (50, "U", "ST"): (0.067, 0.033, 0.067, 0.052, 0.093),
    (50, "SE", "SV"): (0.044, 0.014, 0.044, 0.019, 0.054),
    (50, "SE", "ST"): (0.061, 0.026, 0.058, 0.040, 0.078),
    (50, "IE", "SV"): (0.053, 0.020, 0.054, 0.030, 0.069),
    (50, "IE", "ST"): (0.063, 0.022, 0.053, 0.025, 0.066),
    (100, "U", "SV"): (0.042, 0.019, 0.040, 0.026, 0.053),
    (100, "U", "ST"): (0.058, 0.029, 0.053, 0.033, 0.069),
    (100, "SE", "SV"): (0.041, 0.014, 0.044, 0.024, 0.056),
    (100, "SE", "ST"): (0.059, 0.024, 0.057, 0.024, 0.069),
    (100, "IE", "SV"): (0.038, 0.015, 0.036, 0.022, 0.047),
    (100, "IE", "ST"): (0.060, 0.026, 0.052, 0.024, 0.065),
}


def summarize(raw: Any) -> Any:
    """Across-task ACE statistics per (strategy, method, shots), like Tables 1, 2 and 5.

    Per task the ACE is first averaged over seeds; then, across tasks: ``mean``, ``std``
    (sample, ddof=1), ``median``, ``iqr`` (Q3 - Q1, linear interpolation), ``q3`` and ``n_tasks``.
    ``fallback_rate`` is the share of in-task fits that had a single class and kept the
    zero-shot calibration, ``warned_rate`` the share whose optimiser warned (e.g. a separable
    10-shot sample driving vector scaling to the bounds).
    """
    import pandas as pd

    keys = ["strategy", "method", "shots"]
    if "warned" not in raw.columns:
        raw = raw.assign(warned=False)
    per_task = raw.groupby([*keys, "task"], sort=False).agg(
        ace=("ace", "mean"), fallback=("fallback", "mean"), warned=("warned", "mean")
    )
    out = []
    for key, g in per_task.groupby(level=[0, 1, 2], sort=False):
        a = g["ace"].to_numpy()
        q1, med, q3 = np.quantile(a, [0.25, 0.5, 0.75])
        out.append(
            dict(
                zip(keys, key, strict=True),
                mean=float(a.mean()),
                std=float(a.std(ddof=1)) if a.size > 1 else 0.0,
                median=float(med),
                iqr=float(q3 - q1),
                q3=float(q3),
                n_tasks=int(a.size),
                fallback_rate=float(g["fallback"].mean()),
                warned_rate=float(g["warned"].mean()),
            )
        )
    return pd.DataFrame(out)


def _cell(summary: Any, strategy: str, method: str, shots: int) -> Any:
    m = summary[
        (summary.strategy == strategy) & (summary.method == method) & (summary.shots == shots)
    ]
    return None if m.empty else m.iloc[0]


def paper_comparison(raw: Any, summary: Any) -> dict[str, Any]:
    """The paper's two headline claims, measured on our results.

    * ``reduction_vs_uncal``: ``1 - mean ACE / mean uncalibrated ACE`` of every 100-shot (largest
      shots) cell; the paper reports 46% for IE/SV at 100 shots;
    * ``surrogate_vs_uniform``: per (method, shots), ``1 - ACE(X) / ACE(U)`` of mean ACE for
      X in SE, IE and the better of the two; averaged over cells (paper: about 10%);
    * ``paired``: per (method, shots, X), the number of tasks where X beats U and a two-sided
      Wilcoxon signed-rank p-value over tasks (per-task ACE averaged over seeds).
    """
    from scipy.stats import wilcoxon

    unc = _cell(summary, UNCAL, "-", 0)
    top = int(summary[summary.shots > 0].shots.max()) if (summary.shots > 0).any() else 0
    out: dict[str, Any] = {"uncalibrated_mean": None if unc is None else float(unc["mean"])}
    red = {}
    for _, r in summary[summary.shots == top].iterrows():
        if unc is not None and unc["mean"] > 0:
            red[f"{r.strategy}/{r.method}"] = float(1 - r["mean"] / unc["mean"])
    out["largest_shots"] = top
    out["reduction_vs_uncal"] = red
    methods = sorted(set(summary[summary.shots > 0].method))
    shots = sorted(set(summary[summary.shots > 0].shots))
    rel: dict[str, list[float]] = {"SE": [], "IE": [], "best(SE,IE)": []}
    per_cell: dict[str, dict[str, float]] = {}
    for m in methods:
        for k in shots:
            u = _cell(summary, "U", m, k)
            if u is None or u["mean"] <= 0:
                continue
            vals = {}
            for x in ("SE", "IE"):
                c = _cell(summary, x, m, k)
                if c is not None:
                    vals[x] = float(1 - c["mean"] / u["mean"])
                    rel[x].append(vals[x])
            if vals:
                vals["best(SE,IE)"] = max(vals.values())
                rel["best(SE,IE)"].append(vals["best(SE,IE)"])
                per_cell[f"{m}/{k}"] = vals
    out["surrogate_vs_uniform_mean"] = {k: float(np.mean(v)) for k, v in rel.items() if v}
    out["surrogate_vs_uniform_cells"] = per_cell
    per_task = raw[raw.shots > 0].groupby(["strategy", "method", "shots", "task"])["ace"].mean()
    paired = {}
    for m in methods:
        for k in shots:
            try:
                u = per_task.loc[("U", m, k)]
            except KeyError:
                continue
            for x in ("SE", "IE"):
                try:
                    v = per_task.loc[(x, m, k)].reindex(u.index)
                except KeyError:
                    continue
                d = (v - u).to_numpy()
                p = float(wilcoxon(d).pvalue) if np.any(d != 0) and d.size > 1 else 1.0
                paired[f"{x}/{m}/{k}"] = {
                    "wins": int(np.sum(d < 0)),
                    "losses": int(np.sum(d > 0)),
                    "tasks": int(d.size),
                    "p_value": p,
                }
    out["paired_vs_uniform"] = paired
    out["wilcoxon"] = wilcoxon_tests(raw)
    out["zero_label_share"] = zero_label_share(summary)
    return out


def wilcoxon_tests(raw: Any) -> list[dict[str, Any]]:
    """Paired two-sided Wilcoxon signed-rank tests across tasks (per-task ACE averaged over
    seeds; ``scipy.stats.wilcoxon``), per method ``m`` and the largest shots ``K``:

    * ALL-OOT/m and SIM-OOT/m vs uncalibrated (does out-of-task calibration help?);
    * X/m at K vs uncalibrated, X in the in-task strategies;
    * U/m at K vs ALL-OOT/m (do K in-task labels add to zero in-task labels?);
    * SE/m and IE/m at K vs U/m at K (paper: SE/IE beat U).

    Each row: ``a``, ``b`` (the two cells), ``n_tasks``, ``mean_a``, ``mean_b``, ``wins``
    (tasks where ``a`` has the lower ACE), ``losses``, ``p_value`` (1.0 when every difference is
    0; nan with fewer than 2 tasks) and ``min_p`` (the smallest two-sided exact p-value
    ``n_tasks`` tasks allow: ``2 / 2**n``; with 5 tasks no test can reach 0.05).
    """
    from scipy.stats import wilcoxon

    per_task = raw.groupby(["strategy", "method", "shots", "task"])["ace"].mean()

    def cell(strategy: str, method: str, shots: int) -> Any:
        try:
            return per_task.loc[(strategy, method, shots)]
        except KeyError:
            return None

    intask = raw[raw.shots > 0]
    if len(intask) == 0:
        return []
    top = int(intask.shots.max())
    methods = sorted(set(intask.method))
    strategies = [x for x in STRATEGIES if x in set(intask.strategy)]
    unc: tuple[str, str, int] = (UNCAL, "-", 0)
    pairs: list[tuple[tuple[str, str, int], tuple[str, str, int]]] = []
    for m in methods:
        pairs += [((scen, m, 0), unc) for scen in OOT_SCENARIOS]
        pairs += [((x, m, top), unc) for x in strategies]
        pairs.append((("U", m, top), ("ALL-OOT", m, 0)))
        pairs += [((x, m, top), ("U", m, top)) for x in strategies if x != "U"]
    rows = []
    for a, b in pairs:
        va, vb = cell(*a), cell(*b)
        if va is None or vb is None:
            continue
        common = va.index.intersection(vb.index)
        d = (va.loc[common] - vb.loc[common]).to_numpy(dtype=np.float64)
        n = int(d.size)
        if n < 2:
            p = float("nan")
        elif not np.any(d != 0):
            p = 1.0
        else:
            p = float(wilcoxon(d).pvalue)
        rows.append(
            {
                "a": _label(a),
                "b": _label(b),
                "n_tasks": n,
                "mean_a": float(va.loc[common].mean()),
                "mean_b": float(vb.loc[common].mean()),
                "wins": int(np.sum(d < 0)),
                "losses": int(np.sum(d > 0)),
                "p_value": p,
                "min_p": float(min(1.0, 2.0 / 2.0**n)) if n else float("nan"),
            }
        )
    return rows


def pooled_wilcoxon(raws: Mapping[str, Any]) -> list[dict[str, Any]]:
    """:func:`wilcoxon_tests` over every (labeler, task) pair of several labelers' studies
    (``raws``: labeler -> raw ACE rows), each pair one unit. The same task under two labelers is
    two units that are not independent, so read these p-values as a summary, not as exact;
    empty with fewer than two labelers."""
    import pandas as pd

    if len(raws) < 2:
        return []
    parts = [r.assign(task=[f"{lab}:{t}" for t in r.task]) for lab, r in raws.items()]
    return wilcoxon_tests(pd.concat(parts, ignore_index=True))


def _label(key: tuple[str, str, int]) -> str:
    strategy, method, shots = key
    if strategy == UNCAL:
        return UNCAL
    return f"{strategy}/{method}" + (f"@{shots}" if shots else "")


def zero_label_share(summary: Any) -> dict[str, Any]:
    """The share of the calibration gain that needs no in-task label.

    ``gain(X) = mean ACE(uncalibrated) - mean ACE(X)``; ``share = gain(ALL-OOT, its better
    method) / gain(best in-task cell)`` (any shots, strategy, method). ``share`` is nan when the
    best in-task cell does not beat uncalibrated (no gain to share); above 1 when ALL-OOT beats
    every in-task cell.
    """
    unc = _cell(summary, UNCAL, "-", 0)
    oot = summary[summary.strategy == "ALL-OOT"]
    intask = summary[summary.shots > 0]
    out: dict[str, Any] = {"share": float("nan")}
    if unc is None or oot.empty or intask.empty:
        return out
    o = oot.loc[oot["mean"].idxmin()]
    b = intask.loc[intask["mean"].idxmin()]
    g_oot = float(unc["mean"] - o["mean"])
    g_in = float(unc["mean"] - b["mean"])
    out.update(
        uncalibrated=float(unc["mean"]),
        all_oot=f"ALL-OOT/{o.method}",
        all_oot_mean=float(o["mean"]),
        best_in_task=f"{b.strategy}/{b.method}@{int(b.shots)}",
        best_in_task_mean=float(b["mean"]),
        gain_all_oot=g_oot,
        gain_in_task=g_in,
        share=g_oot / g_in if g_in > 0 else float("nan"),
    )
    return out


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _fmt_p(p: float | None) -> str:
    """A p-value: 3 decimals, or 2 significant digits below 0.001 (never a bare 0.000)."""
    if p is None or not np.isfinite(p):
        return "-"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _table1(summary: Any, result: StudyResult | None) -> list[str]:
    lines = ["### Table 1: out-of-task (0 shots)", ""]
    lines += [
        "| Scenario | Method | Mean±Std | Median±IQR/2 | paper Mean±Std | paper Median±IQR/2 |"
    ]
    lines += ["|---|---|---|---|---|---|"]
    for scen, meth in [(UNCAL, "-")] + [(s, m) for s in OOT_SCENARIOS for m in ("SV", "ST")]:
        r = _cell(summary, scen, meth, 0)
        if r is None:
            continue
        p = PAPER_TABLE1.get((scen, meth))
        ps = f"{p[0]:.3f}±{p[1]:.3f} | {p[2]:.3f}±{p[3]:.3f}" if p else "- | -"
        lines.append(
            f"| {scen} | {meth} | {_fmt(r['mean'])}±{_fmt(r['std'])} | "
            f"{_fmt(r['median'])}±{_fmt(r['iqr'] / 2)} | {ps} |"
        )
    if result is not None:
        lines += ["", f"Surrogate for SE/IE: **{result.surrogate}** (lowest mean OOT ACE)."]
    return lines


def _best_row(k: Any, g: Any) -> str:
    b = g.loc[g["mean"].idxmin()]
    c = g.loc[g["median"].idxmin()]
    return (
        f"| {k} | {_fmt(b['mean'])}±{_fmt(b['std'])}/{b.strategy}/{b.method} | "
        f"{_fmt(c['median'])}±{_fmt(c['iqr'] / 2)}/{c.strategy}/{c.method} |"
    )


def _table2(summary: Any) -> list[str]:
    intask = summary[summary.shots > 0]
    lines = ["### Table 2: best in-task cell per shots", ""]
    lines += ["| shots | Mean±Std | Median±IQR/2 |", "|---|---|---|"]
    oot = summary[summary.strategy.isin(OOT_SCENARIOS)]
    if len(oot):
        lines.append(_best_row(0, oot))
    for k in sorted(set(intask.shots)):
        lines.append(_best_row(k, intask[intask.shots == k]))
    return lines


def _table5(summary: Any) -> list[str]:
    intask = summary[summary.shots > 0]
    lines = ["### Table 5: every in-task cell (paper's mean in the last column)", ""]
    lines += ["| Shots | Strategy | Method | Mean | Std | Median | IQR | Q3 | paper Mean |"]
    lines += ["|---|---|---|---|---|---|---|---|---|"]
    for _, r in intask.sort_values(["shots", "strategy", "method"]).iterrows():
        p5 = PAPER_TABLE5.get((int(r.shots), r.strategy, r.method))
        lines.append(
            f"| {int(r.shots)} | {r.strategy} | {r.method} | {_fmt(r['mean'])} | {_fmt(r['std'])} | "
            f"{_fmt(r['median'])} | {_fmt(r['iqr'])} | {_fmt(r['q3'])} | {_fmt(p5[0] if p5 else None)} |"
        )
    fb = float(intask.fallback_rate.mean()) if len(intask) else 0.0
    if fb > 0:
        lines += ["", f"Single-class draws that kept the zero-shot calibration: {fb:.1%} of fits."]
    wr = float(intask.warned_rate.mean()) if len(intask) else 0.0
    if wr > 0:
        lines += ["", f"Fits whose optimiser warned (not converged / at a bound): {wr:.1%}."]
    return lines


def _claims(comparison: Mapping[str, Any]) -> list[str]:
    lines = ["### The paper's claims, measured here", ""]
    k = comparison.get("largest_shots")
    red = comparison.get("reduction_vs_uncal", {})
    if red:
        best = min(red, key=lambda s: -red[s])
        lines.append(
            f"- {k}-shot vs uncalibrated mean ACE: IE/SV {_pct(red.get('IE/SV'))}, "
            f"best cell {best} {_pct(red[best])} (paper: IE/SV -46% at 100 shots)."
        )
    sv = comparison.get("surrogate_vs_uniform_mean", {})
    if sv:
        lines.append(
            "- SE/IE vs U, mean relative ACE reduction over (method, shots) cells: "
            + ", ".join(f"{k2} {_pct(v, sign=False)}" for k2, v in sv.items())
            + " (paper: about 10%; positive = better than U)."
        )
    z = comparison.get("zero_label_share") or {}
    if z.get("best_in_task"):
        share = z["share"]
        lines.append(
            f"- Share of the gain that needs zero in-task labels: {z['all_oot']} gains "
            f"{z['gain_all_oot']:+.3f} over uncalibrated, the best in-task cell "
            f"{z['best_in_task']} {z['gain_in_task']:+.3f}: "
            + (f"**{share:.0%}**." if np.isfinite(share) else "undefined (no in-task gain).")
        )
    wx = comparison.get("wilcoxon") or []
    if wx:
        lines += [
            "",
            "Wilcoxon signed-rank tests across tasks (two-sided; per-task ACE averaged over "
            "seeds; wins = tasks where A has the lower ACE; min p = the smallest p the number "
            "of tasks allows):",
            "",
            "| A | B | mean ACE A | mean ACE B | A better | p | min p |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in wx:
            lines.append(
                f"| {r['a']} | {r['b']} | {_fmt(r['mean_a'])} | {_fmt(r['mean_b'])} | "
                f"{r['wins']}/{r['n_tasks']} | {_fmt_p(r['p_value'])} | {_fmt_p(r['min_p'])} |"
            )
    paired = comparison.get("paired_vs_uniform", {})
    if paired:
        lines += ["", "| cell | tasks better than U | worse | Wilcoxon p |", "|---|---|---|---|"]
        for key, v in paired.items():
            lines.append(
                f"| {key} | {v['wins']}/{v['tasks']} | {v['losses']} | {v['p_value']:.3f} |"
            )
    return lines


def render_report(
    summary: Any,
    comparison: Mapping[str, Any],
    *,
    model: str,
    result: StudyResult | None = None,
    screen: str | None = None,
) -> str:
    """Markdown: the signal screen (``screen``, already rendered), Table 1 (OOT), Table 2 (best
    per shots), Table 5 (all cells), paper claims."""
    n_tasks = int(summary.n_tasks.max()) if len(summary) else 0
    lines = [f"## Label-efficient calibration: {model}", ""]
    if screen:
        lines += ["### Signal screen (AUROC of the class margin vs the label)", "", screen, ""]
    lines += [
        f"{n_tasks} tasks; ACE statistics across tasks (per-task ACE averaged over seeds).",
        "",
    ]
    lines += _table1(summary, result)
    lines += ["", *_table2(summary)]
    lines += ["", *_table5(summary)]
    lines += ["", *_claims(comparison)]
    return "\n".join(lines) + "\n"


def render_labeler_summary(
    results: Mapping[str, Mapping[str, Any]],
    paper: bool = True,
    pooled: list[dict[str, Any]] | None = None,
) -> str:
    """One row per labeler: tasks kept, mean ACE uncalibrated / ALL-OOT / SIM-OOT (ST, SV) /
    the best in-task cell at the largest shots, the zero-label share and the Wilcoxon p of
    ALL-OOT/ST vs uncalibrated; then the ``pooled`` tests (:func:`pooled_wilcoxon`), if any."""
    head = (
        "| labeler | tasks kept | uncalibrated | ALL-OOT ST | ALL-OOT SV | SIM-OOT ST | "
        "SIM-OOT SV | best in-task at K shots | zero-label share | p (ALL-OOT ST vs uncal.) |"
    )
    lines = [head, "|" + "---|" * 10]
    if paper:
        p1 = PAPER_TABLE1
        lines.append(
            f"| paper (Llama2-7B) | 12/12 | {p1[(UNCAL, '-')][0]:.3f} | "
            f"{p1[('ALL-OOT', 'ST')][0]:.3f} | {p1[('ALL-OOT', 'SV')][0]:.3f} | "
            f"{p1[('SIM-OOT', 'ST')][0]:.3f} | {p1[('SIM-OOT', 'SV')][0]:.3f} | "
            f"{PAPER_TABLE5[(100, 'IE', 'SV')][0]:.3f} (IE/SV@100) | - | - |"
        )
    for lab, r in results.items():
        summ = r.get("summary_frame")
        if summ is None:
            lines.append(f"| {lab} | {r.get('kept', '-')} | not run: {r.get('note', '')} |")
            continue
        comp = r["comparison"]

        def m(strategy: str, method: str, shots: int = 0, summ: Any = summ) -> str:
            c = _cell(summ, strategy, method, shots)
            return "-" if c is None else _fmt(c["mean"])

        top = comp.get("largest_shots") or 0
        intask = summ[summ.shots == top]
        best = intask.loc[intask["mean"].idxmin()] if len(intask) else None
        best_s = (
            "-" if best is None else f"{_fmt(best['mean'])} ({best.strategy}/{best.method}@{top})"
        )
        share = (comp.get("zero_label_share") or {}).get("share", float("nan"))
        p_oot = next(
            (w["p_value"] for w in comp.get("wilcoxon", [])
             if w["a"] == "ALL-OOT/ST" and w["b"] == UNCAL),
            float("nan"),
        )  # fmt: skip
        lines.append(
            f"| {lab} | {r.get('kept', '-')} | {m(UNCAL, '-')} | {m('ALL-OOT', 'ST')} | "
            f"{m('ALL-OOT', 'SV')} | {m('SIM-OOT', 'ST')} | {m('SIM-OOT', 'SV')} | {best_s} | "
            f"{_fmt(share, 2) if np.isfinite(share) else '-'} | {_fmt_p(p_oot)} |"
        )
    if pooled:
        n = pooled[0]["n_tasks"]
        lines += [
            "",
            f"Wilcoxon signed-rank tests over all {n} kept (labeler, task) pairs (two-sided; "
            "a task kept by two labelers counts twice, so these pairs are not independent):",
            "",
            "| A | B | mean ACE A | mean ACE B | A better | p |",
            "|---|---|---|---|---|---|",
        ]
        for w in pooled:
            lines.append(
                f"| {w['a']} | {w['b']} | {_fmt(w['mean_a'])} | {_fmt(w['mean_b'])} | "
                f"{w['wins']}/{w['n_tasks']} | {_fmt_p(w['p_value'])} |"
            )
    return "\n".join(lines) + "\n"


def _pct(x: float | None, sign: bool = True) -> str:
    if x is None:
        return "-"
    return f"{-x:+.0%}" if sign else f"{x:+.0%}"


def plot_ace_vs_shots(summary: Any, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Mean ACE across tasks vs shots, one line per strategy and one panel per method, with the
    uncalibrated and out-of-task (0-shot) levels as horizontal lines. Saved atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    from calibkit.plots import save_figure

    intask = summary[summary.shots > 0]
    methods = sorted(set(intask.method)) or ["-"]
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 3.8), sharey=True)
    axes = np.atleast_1d(axes)
    unc = _cell(summary, UNCAL, "-", 0)
    for ax, m in zip(axes, methods, strict=True):
        present = set(intask.strategy)
        order = [x for x in STRATEGIES if x in present] + sorted(present - set(STRATEGIES))
        for st, marker in zip(order, "osD^v", strict=False):
            g = intask[(intask.strategy == st) & (intask.method == m)].sort_values("shots")
            sem = g["std"] / np.sqrt(g["n_tasks"].clip(lower=1))
            ax.errorbar(g.shots, g["mean"], yerr=sem, marker=marker, capsize=3, label=st)
        if unc is not None:
            ax.axhline(unc["mean"], color="k", ls="--", lw=1, label="uncalibrated")
        for scen, ls in zip(OOT_SCENARIOS, (":", "-."), strict=True):
            r = _cell(summary, scen, m, 0)
            if r is not None:
                ax.axhline(r["mean"], color="grey", ls=ls, lw=1, label=f"{scen} (0 shots)")
        ax.set_xscale("log")
        ks = sorted(set(intask.shots))
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("labeled in-task examples (shots)")
        ax.set_title(f"{m} ({'temperature' if m == 'ST' else 'vector'} scaling)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean ACE across tasks (± s.e.)")
    axes[-1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    out = save_figure(fig, path)
    plt.close(fig)
    return out
