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
    "render_report",
    "summarize",
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
    return out


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


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
    paired = comparison.get("paired_vs_uniform", {})
    if paired:
        lines += ["", "| cell | tasks better than U | worse | Wilcoxon p |", "|---|---|---|---|"]
        for key, v in paired.items():
            lines.append(
                f"| {key} | {v['wins']}/{v['tasks']} | {v['losses']} | {v['p_value']:.3f} |"
            )
    return lines


def render_report(
    summary: Any, comparison: Mapping[str, Any], *, model: str, result: StudyResult | None = None
) -> str:
    """Markdown: Table 1 (OOT), Table 2 (best per shots), Table 5 (all cells), paper claims."""
    n_tasks = int(summary.n_tasks.max()) if len(summary) else 0
    lines = [f"## Label-efficient calibration: {model}", ""]
    lines += [
        f"{n_tasks} tasks; ACE statistics across tasks (per-task ACE averaged over seeds).",
        "",
    ]
    lines += _table1(summary, result)
    lines += ["", *_table2(summary)]
    lines += ["", *_table5(summary)]
    lines += ["", *_claims(comparison)]
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
