"""The HTML report: :func:`build_report` (a string) and :func:`write_report` (a file).

Layout: summary, diagnostics, metrics (estimate and percentile-bootstrap interval, before and
after calibration), reliability diagrams, risk-coverage curves, per-class table, conventions.
Everything a browser needs is in the page (inline CSS, base64 PNG figures); user text is
HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit.calibrators.base import Calibrator
from calibkit.scores import Scores

__all__ = ["REPORT_METRICS", "build_report", "write_report"]

#: metrics shown in the report, in order (names of :data:`calibkit.metrics.METRICS`; display
#: names and directions come from the registry)
REPORT_METRICS: tuple[str, ...] = (
    "accuracy",
    "ece",
    "ace",
    "cw_ece",
    "brier",
    "nll",
    "auroc",
    "auprc",
    "aurc",
    "e_aurc",
    "prr",
    "selective_acc@10",
    "ece_10_bin",
    "ece_1_bin",
)

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
color:#1d2430;background:#f6f7f9;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px;background:#fff;
box-shadow:0 0 12px rgba(0,0,0,.06)}
h1{font-size:1.6em;margin:.2em 0 .1em}h2{font-size:1.2em;margin:1.6em 0 .5em;
border-bottom:2px solid #e3e6eb;padding-bottom:.2em}
.sub{color:#5b6472;margin:0 0 1em}
table{border-collapse:collapse;font-size:.9em;margin:.4em 0 1em}
th,td{padding:4px 10px;border-bottom:1px solid #e6e8ec;text-align:right;white-space:nowrap}
th{background:#f0f2f5;font-weight:600}td:first-child,th:first-child{text-align:left}
.ci{color:#6b7380;font-size:.85em}.better{color:#1a7f37}.worse{color:#c62828}
.finding{border-left:4px solid #c62828;background:#fdf3f3;padding:8px 12px;margin:8px 0;
border-radius:3px}.finding.info{border-color:#3a6fb0;background:#f1f6fc}
.finding code{font-size:.9em;color:#5b6472}.ok{color:#1a7f37}
.advice{color:#39414d;margin-top:3px}
figure{margin:.6em 0 1.2em}figure img{max-width:100%;border:1px solid #e6e8ec}
figcaption{color:#5b6472;font-size:.88em}
.scroll{max-height:420px;max-width:100%;overflow:auto;border:1px solid #e6e8ec;
display:inline-block}
dl{font-size:.92em}dt{font-weight:600;margin-top:.5em}dd{margin-left:1.2em}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt(v: float, digits: int = 4) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _png(fig: Any) -> str:
    """A matplotlib figure as an ``<img>`` with an inline base64 PNG (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _metrics_section(
    columns: Sequence[tuple[str, NDArray[np.float64]]],
    y: NDArray[np.int64],
    *,
    n_bins: int,
    binning: str,
    bootstrap: int,
    alpha: float,
    seed: int,
) -> tuple[str, dict[str, dict[str, float]]]:
    from calibkit.metrics import bootstrap_metrics, compute_metrics, get_metric

    names = list(REPORT_METRICS)
    table = [(k, get_metric(k).display, get_metric(k).lower_is_better) for k in names]
    values: dict[str, dict[str, float]] = {}
    cells: dict[str, list[str]] = {k: [] for k in names}
    for name, p in columns:
        vals = compute_metrics(p, y, names=names, n_bins=n_bins, binning=binning)
        cis = (
            bootstrap_metrics(
                p,
                y,
                n_boot=bootstrap,
                alpha=alpha,
                seed=seed,
                names=names,
                n_bins=n_bins,
                binning=binning,
            )
            if bootstrap > 0
            else {}
        )
        values[name] = vals
        for k in names:
            cell = _fmt(vals[k])
            if k in cis:
                lo, hi = cis[k]
                cell += f' <span class="ci">[{_fmt(lo)}, {_fmt(hi)}]</span>'
            cells[k].append(cell)
    level = f"{100 * (1 - alpha):.0f}%"
    head = "".join(f"<th>{_esc(name)}</th>" for name, _ in columns)
    two = len(columns) == 2
    rows = []
    for key, disp, lower in table:
        change = ""
        if two:
            a, b = (values[name][key] for name, _ in columns)
            d = b - a
            if math.isfinite(d) and abs(d) > 1e-12:
                cls = "better" if (d < 0) == lower else "worse"
                change = f'<td class="{cls}">{d:+.4f}</td>'
            else:
                change = "<td>-</td>"
        arrow = "&darr;" if lower else "&uarr;"
        rows.append(
            f"<tr><td>{_esc(disp)} {arrow}</td>{''.join(f'<td>{c}</td>' for c in cells[key])}"
            f"{change}</tr>"
        )
    ci_note = (
        f"{level} percentile-bootstrap intervals from {bootstrap} resamples (seed {seed}) in "
        "brackets."
        if bootstrap > 0
        else "No bootstrap intervals (bootstrap=0)."
    )
    html_out = (
        f'<table id="metrics"><tr><th>Metric</th>{head}{"<th>Change</th>" if two else ""}</tr>'
        + "".join(rows)
        + f'</table><p class="sub">{ci_note} &darr; lower is better, &uarr; higher is better.</p>'
    )
    return html_out, values


def _per_class_section(
    classes: Sequence[str],
    columns: Sequence[tuple[str, NDArray[np.float64]]],
    y: NDArray[np.int64],
    n_bins: int,
) -> str:
    from calibkit.metrics import classwise_bin_statistics

    k = len(classes)
    support = np.bincount(y, minlength=k)
    per: list[dict[str, NDArray[np.float64]]] = []
    for _, p in columns:
        pred = p.argmax(axis=1)
        tp = np.bincount(pred[pred == y], minlength=k).astype(np.float64)
        npred = np.bincount(pred, minlength=k).astype(np.float64)
        st = classwise_bin_statistics(p, y, n_bins=n_bins)
        ece_k = np.abs(st.sum_outcome - st.sum_confidence).sum(axis=-1) / st.n
        with np.errstate(invalid="ignore", divide="ignore"):
            per.append(
                {
                    "recall": np.where(support > 0, tp / np.maximum(support, 1), np.nan),
                    "precision": np.where(npred > 0, tp / np.maximum(npred, 1), np.nan),
                    "mean_p": p.mean(axis=0),
                    "ece": np.asarray(ece_k, dtype=np.float64),
                }
            )
    keys = (
        ("recall", "Recall"),
        ("precision", "Precision"),
        ("mean_p", "Mean P"),
        ("ece", "Class ECE"),
    )
    arrow = " &rarr; ".join(_esc(name) for name, _ in columns)
    head = "<th>Class</th><th>Support</th><th>Frequency</th>" + "".join(
        f'<th>{label}<br><span class="ci">{arrow}</span></th>' for _, label in keys
    )
    rows = []
    n = max(len(y), 1)
    for j, c in enumerate(classes):
        cells = f"<td>{_esc(c)}</td><td>{int(support[j])}</td><td>{support[j] / n:.3f}</td>"
        for key, _ in keys:
            vals = " &rarr; ".join(_fmt(float(d[key][j]), 3) for d in per)
            cells += f"<td>{vals}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table id="per-class"><tr>{head}</tr>{"".join(rows)}</table></div>'
        f'<p class="sub">Class ECE: one-vs-rest ECE of <i>P(y = k)</i> against '
        f"<i>1[y = k]</i> with {n_bins} equal-width bins (the terms of cw-ECE). A class with "
        "Mean P far from its Frequency carries a prior bias.</p>"
    )


def _findings_section(findings: Sequence[Any]) -> str:
    if not findings:
        return '<p class="ok" id="no-findings">No findings: none of the checks fired.</p>'
    out = []
    for f in findings:
        cls = "finding info" if f.severity == "info" else "finding"
        out.append(
            f'<div class="{cls}"><b>{_esc(f.severity)}</b> <code>{_esc(f.code)}</code> '
            f'{_esc(f.message)}<div class="advice">What to do: {_esc(f.advice)}</div></div>'
        )
    return "".join(out)


def _conventions(n_bins: int, binning: str, binary: bool, bootstrap: int, seed: int) -> str:
    bins = (
        f"{n_bins} equal-width bins on [0, 1]"
        if binning == "uniform"
        else f"{n_bins} equal-mass bins (edges at the quantiles of the confidences)"
    )
    view = (
        "two classes: every metric uses the top-label view of the two columns (confidence "
        "max(p, 1 - p)), not P(y = 1) against y"
        if binary
        else "top-label view: confidence = the largest class probability, correct = argmax "
        "equals the label"
    )
    items = [
        ("View", view + "."),
        (
            "Bins (ECE, cw-ECE, reliability diagrams)",
            f"{bins}; bin m is [e_m, e_m+1), the last bin closed at 1; empty bins take no part. "
            "ACE uses equal-mass bins; ECE 10-bin (HELM) uses HELM's equal-mass rule "
            "(10 near-equal groups of sorted confidences, boundaries at midpoints).",
        ),
        (
            "Brier",
            "multiclass Brier: mean over items of the squared error summed over all K classes, "
            "in [0, 2] (for two classes twice the binary Brier score of P(y = 1)).",
        ),
        (
            "NLL",
            "mean negative natural log of the true class probability, floored at 1e-12 "
            "(a zero probability costs 27.6 nats).",
        ),
        (
            "AUROC, AUPRC",
            "of the confidence for correctness (right answers are positives); ties count 1/2 "
            "(AUROC) or enter together (AUPRC), as scikit-learn.",
        ),
        (
            "AURC, E-AURC, PRR, Sel. acc@10",
            "risk-coverage from the most confident item down; tied confidences are taken in "
            "random order in expectation. E-AURC subtracts the oracle ranking's AURC; PRR = "
            "(error rate - AURC) / (error rate - oracle AURC), LM-Polygraph's normalised "
            "prediction-rejection ratio; Sel. acc@10 is HELM's accuracy of the floor(0.1 n) + 1 "
            "most confident items.",
        ),
        (
            "Intervals",
            f"percentile bootstrap over items, {bootstrap} resamples, seed {seed}; before and "
            "after use the same resamples."
            if bootstrap > 0
            else "none (bootstrap disabled).",
        ),
    ]
    return (
        '<dl id="conventions">'
        + "".join(f"<dt>{_esc(a)}</dt><dd>{_esc(b)}</dd>" for a, b in items)
        + "</dl>"
    )


def build_report(
    scores: Scores,
    calibrator: Calibrator | None = None,
    fit_scores: Scores | None = None,
    *,
    title: str | None = None,
    source: str | None = None,
    n_bins: int = 15,
    binning: str = "uniform",
    bootstrap: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> str:
    """The report page as an HTML string.

    Parameters
    ----------
    scores : Scores
        Labelled, uncalibrated scores of the evaluated items.
    calibrator : Calibrator, optional
        Fitted; adds the "calibrated" column, the after-panels and its diagnostics.
    fit_scores : Scores, optional
        The calibrator's calibration data (for the diagnostics on it).
    title, source : str, optional
        Page title (default "Calibration report") and a description of the input (a file name).
    n_bins, binning : the ECE family's bins
    bootstrap : int
        Resamples of the percentile-bootstrap intervals (0: none).
    alpha : float
        1 - interval level.
    seed : int
        Bootstrap seed.
    """
    from calibkit import __version__
    from calibkit.calibrators.diagnostics import diagnose
    from calibkit.plots.ranking import risk_coverage_plot
    from calibkit.plots.reliability import compare_reliability

    if not isinstance(scores, Scores):
        raise ValueError(f"scores must be calibkit Scores; got {type(scores).__name__}")
    y = scores.require_labels()
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ValueError(f"bootstrap must be an int >= 0; got {bootstrap!r}")
    columns: list[tuple[str, NDArray[np.float64]]] = [("uncalibrated", scores.probs)]
    cal_name = None
    if calibrator is not None:
        cal_name = type(calibrator).__name__
        selected = getattr(calibrator, "selected_", None)
        if selected is not None:
            cal_name += f" (selected: {selected})"
        columns.append(("calibrated", calibrator.calibrate(scores).probs))
    findings = diagnose(scores, calibrator, fit_scores)
    metrics_html, values = _metrics_section(
        columns, y, n_bins=n_bins, binning=binning, bootstrap=bootstrap, alpha=alpha, seed=seed
    )
    rel = _png(
        compare_reliability({name: (p, y) for name, p in columns}, n_bins=n_bins, binning=binning)
    )
    rc = _png(risk_coverage_plot({name: (p, y) for name, p in columns}))
    per_class = _per_class_section(scores.classes, columns, y, n_bins)
    head_title = title or "Calibration report"
    subtitle = [
        f"{len(scores):,} items",
        f"{scores.n_classes} classes",
        f"accuracy {values['uncalibrated']['accuracy']:.4f}",
    ]
    if source:
        subtitle.insert(0, str(source))
    if cal_name:
        subtitle.append(f"calibrator: {cal_name}")
    if fit_scores is not None:
        subtitle.append(f"calibration data: {len(fit_scores):,} items")
    auto_html = ""
    summary = getattr(calibrator, "summary", None)
    if callable(summary) and getattr(calibrator, "cv_results_", None) is not None:
        auto_html = f"<h2>Calibrator selection</h2><pre>{_esc(summary())}</pre>"
    n_warn = sum(f.severity == "warning" for f in findings)
    diag_head = f"Diagnostics ({n_warn} warning{'s' if n_warn != 1 else ''})"
    body = f"""<main>
<h1>{_esc(head_title)}</h1>
<p class="sub">{_esc(" · ".join(subtitle))}</p>
<h2 id="diagnostics">{_esc(diag_head)}</h2>
{_findings_section(findings)}
<h2>Metrics</h2>
{metrics_html}
{auto_html}
<h2>Reliability diagrams</h2>
<figure>{rel}<figcaption>Accuracy per confidence bin (bars), gap to the bin's mean confidence
(hatched), and the share of items per bin (lower panels).</figcaption></figure>
<h2>Risk-coverage curves</h2>
<figure>{rc}<figcaption>Error rate among the items accepted when only the most confident are kept;
lower is better. The dashed line is the oracle ranking, the dotted line a random one.
</figcaption></figure>
<h2>Per-class table</h2>
{per_class}
<h2>Metric conventions</h2>
{_conventions(n_bins, binning, scores.n_classes == 2, bootstrap, seed)}
<p class="sub">calibkit {_esc(__version__)}</p>
</main>"""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(head_title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n"
    )


def write_report(
    path: str | os.PathLike[str],
    scores: Scores,
    calibrator: Calibrator | None = None,
    fit_scores: Scores | None = None,
    **kw: Any,
) -> Path:
    """:func:`build_report` written atomically to ``path`` (UTF-8); returns the path."""
    from calibkit._atomic import atomic_write

    text = build_report(scores, calibrator, fit_scores, **kw)
    p = Path(path)
    with atomic_write(p) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return p
