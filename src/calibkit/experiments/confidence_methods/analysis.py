"""Analysis stage of the confidence-methods study: pure functions from Scores files to rows.

For one (task, model, variant) run with ``n`` requested items of which ``m`` got a confidence
(unparseable replies and items with no vote are not scored; :func:`summarize` says how many):

* ``coverage = m / n``; ``accuracy`` of the answers on the m scored items beside the
  ``majority`` baseline (share of the most frequent gold class among them);
* ``auroc``: the confidence of the answer as a score for "the answer is right", on all m items,
  with a percentile bootstrap CI (``n_boot`` resamples); ``chance`` is ``"above"`` when the CI
  lies above 0.5, ``"no better"`` when it holds 0.5 and ``"worse"`` when it lies below;
* over ``n_splits`` random calibration/held-out halves (seeded; each half holds a right and a
  wrong answer):
  ECE (10 equal-width bins of P(correct)) and Brier on the held-out half, raw and after each
  calibrator of :data:`CALIBRATORS` fitted on the calibration half; reported as the mean and the
  2.5/97.5 percentiles over the splits, plus the per-split difference calibrated - raw ECE (its
  mean and in how many splits calibration made ECE worse);
* the cost per scored item: model calls, generated tokens, prompt characters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CALIBRATORS",
    "analyze_folder",
    "auroc_ci",
    "brier",
    "chance_verdict",
    "compare_folders",
    "compare_runs",
    "fit_pcorrect",
    "majority_baseline",
    "nothing_scored_row",
    "random_half",
    "server_table_md",
    "split_study",
    "summarize",
    "table_md",
]

#: calibrators of P(correct) compared (name -> factory of a calibkit binary calibrator)
CALIBRATORS: dict[str, Callable[[], Any]] = {}
EPS = 1e-6
MIN_PER_OUTCOME = 8  # right and wrong answers needed for an AUROC CI and split metrics


def _platt() -> Any:
    from calibkit.calibrators import PlattScaling

    return PlattScaling()


def _histogram() -> Any:
    from calibkit.calibrators import HistogramBinning

    return HistogramBinning(n_bins=5)


def _isotonic() -> Any:
    from calibkit.calibrators import IsotonicCalibrator

    return IsotonicCalibrator()


CALIBRATORS.update(platt=_platt, histogram=_histogram, isotonic=_isotonic)


def brier(conf: ArrayLike, correct: ArrayLike) -> float:
    """Brier score of P(correct): ``mean (conf - correct)^2``; ``conf`` probabilities ``(n,)``."""
    c = np.asarray(conf, dtype=np.float64)
    r = np.asarray(correct, dtype=np.float64)
    return float(np.mean((c - r) ** 2))


def majority_baseline(gold: ArrayLike) -> float:
    """Accuracy of always answering the most frequent class of ``gold`` ``(n,)``."""
    g = np.asarray(gold)
    if g.size == 0:
        return float("nan")
    _, counts = np.unique(g, return_counts=True)
    return float(counts.max() / g.size)


def chance_verdict(ci: Sequence[float]) -> str:
    """``"above"`` (CI low > 0.5), ``"worse"`` (CI high < 0.5), ``"no better"`` when the CI
    holds 0.5, ``"too few"`` when there is no CI (nan: too few right or wrong answers)."""
    lo, hi = float(ci[1]), float(ci[2])
    if np.isnan(lo) or np.isnan(hi):
        return "too few"
    if lo > 0.5:
        return "above"
    if hi < 0.5:
        return "worse"
    return "no better"


def auroc_ci(conf: ArrayLike, correct: ArrayLike, *, n_boot: int, seed: int) -> list[float]:
    """``[AUROC, low, high]`` of ``conf`` ``(n,)`` as a score for ``correct`` ``(n,)``: a 95%
    percentile bootstrap CI; nan when fewer than :data:`MIN_PER_OUTCOME` right or wrong answers
    (a CI from one or two positives says nothing)."""
    from calibkit.metrics import binary_auroc, bootstrap_ci

    c = np.asarray(conf, dtype=np.float64)
    r = np.asarray(correct, dtype=bool)
    if min(int(r.sum()), int((~r).sum())) < MIN_PER_OUTCOME:
        return [float("nan")] * 3
    ci = bootstrap_ci(lambda p, y: binary_auroc(p, y), c, r, n_boot=n_boot, seed=seed)
    return [float(ci.estimate), float(ci.low), float(ci.high)]


def random_half(
    correct: ArrayLike, rng: np.random.Generator, *, max_tries: int = 1000
) -> NDArray[np.bool_]:
    """A calibration mask ``(n,)``: a uniformly random half of the items (``n // 2``), drawn
    with ``rng`` again until both halves hold a right and a wrong answer (``ValueError`` after
    ``max_tries``). Not stratified: the held-out half's share of right answers is not given to
    the calibrator."""
    r = np.asarray(correct, dtype=bool)
    n = r.size
    for _ in range(max_tries):
        cal = np.zeros(n, dtype=bool)
        cal[rng.permutation(n)[: n // 2]] = True
        if 0 < r[cal].sum() < cal.sum() and 0 < r[~cal].sum() < (~cal).sum():
            return cal
    raise ValueError(f"no split with both outcomes in each half after {max_tries} draws")


def fit_pcorrect(
    name: str, conf: ArrayLike, correct: ArrayLike
) -> Callable[[NDArray[np.float64]], NDArray[np.float64]]:
    """Fit calibrator ``name`` of :data:`CALIBRATORS` on ``conf`` ``(n,)`` (a probability, the
    confidence of the answer) -> ``correct`` ``(n,)``; returns a map conf -> P(correct)."""
    from calibkit.scores import Scores

    c = np.clip(np.asarray(conf, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(correct, dtype=np.int64)
    cal = CALIBRATORS[name]().fit_scores(Scores.from_probs(c, labels=y))

    def apply(x: NDArray[np.float64]) -> NDArray[np.float64]:
        held = Scores.from_probs(np.clip(np.asarray(x, dtype=np.float64), EPS, 1 - EPS))
        return np.asarray(cal.calibrate(held).probs[:, 1], dtype=np.float64)

    return apply


def _interval(values: Sequence[float]) -> list[float]:
    v = np.asarray(values, dtype=np.float64)
    return [float(v.mean()), float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]


def split_study(
    conf: ArrayLike,
    correct: ArrayLike,
    *,
    n_splits: int = 20,
    seed: int = 0,
    calibrators: Sequence[str] = ("platt", "histogram", "isotonic"),
) -> dict[str, Any]:
    """ECE and Brier on held-out halves, raw and calibrated, over ``n_splits`` random splits.

    Returns ``{"per_split": {metric: [R values]}, "ece_raw": [mean, p2.5, p97.5], "brier_raw":
    ..., "ece_base_rate": ECE of the calibration half's accuracy given to every held-out item,
    "ece_<cal>": ..., "brier_<cal>": ..., "d_ece_<cal>": [mean, p2.5, p97.5] of calibrated
    - raw ECE, "n_worse_<cal>": splits where calibrated ECE > raw ECE, "n_splits": R}``.
    Raises ``ValueError`` when fewer than :data:`MIN_PER_OUTCOME` right or wrong items.
    """
    from calibkit.scoring.confidence.select import pcorrect_ece

    c = np.asarray(conf, dtype=np.float64)
    r = np.asarray(correct, dtype=bool)
    if c.shape != r.shape or c.ndim != 1:
        raise ValueError(f"conf {c.shape} and correct {r.shape} must be the same 1-D shape")
    if min(int(r.sum()), int((~r).sum())) < MIN_PER_OUTCOME:
        raise ValueError(
            f"{int(r.sum())} right and {int((~r).sum())} wrong answers: need >= "
            f"{MIN_PER_OUTCOME} of each for calibration/held-out splits"
        )
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    rng = np.random.default_rng(seed)
    per: dict[str, list[float]] = {"ece_raw": [], "brier_raw": [], "ece_base_rate": []}
    for name in calibrators:
        per[f"ece_{name}"], per[f"brier_{name}"] = [], []
    for _ in range(n_splits):
        cal = random_half(r, rng)
        ct, yt = c[~cal], r[~cal]
        per["ece_raw"].append(pcorrect_ece(ct, yt))
        per["brier_raw"].append(brier(ct, yt))
        # reference: everyone gets the calibration half's accuracy (what an uninformative
        # confidence can at best be calibrated to)
        per["ece_base_rate"].append(pcorrect_ece(np.full(ct.size, r[cal].mean()), yt))
        for name in calibrators:
            p = fit_pcorrect(name, c[cal], r[cal])(ct)
            per[f"ece_{name}"].append(pcorrect_ece(p, yt))
            per[f"brier_{name}"].append(brier(p, yt))
    out: dict[str, Any] = {"n_splits": n_splits, "per_split": per}
    for k, v in per.items():
        out[k] = _interval(v)
    raw = np.asarray(per["ece_raw"])
    for name in calibrators:
        d = np.asarray(per[f"ece_{name}"]) - raw
        out[f"d_ece_{name}"] = _interval(d)
        out[f"n_worse_{name}"] = int(np.sum(d > 1e-12))
    return out


def summarize(
    scores: Any, *, n_splits: int = 20, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """One result row of a study fixture (Scores with ``meta["study"]`` and
    ``per_item["gold"]``, as :func:`calibkit.experiments.confidence_methods.score.score_one`
    writes them)."""
    from calibkit.scoring.confidence import correctness

    st = scores.meta.get("study")
    if not isinstance(st, dict):
        raise ValueError("Scores have no meta['study']: not a confidence-methods fixture")
    for k in ("task", "model", "variant", "n_items"):
        if k not in st:
            raise ValueError(f"meta['study'] lacks {k!r}")
    n, m = int(st["n_items"]), len(scores)
    if not 0 < m <= n:
        raise ValueError(f"{m} scored rows for {n} requested items")
    conf, correct = correctness(scores)
    if not np.all((conf >= 0) & (conf <= 1)):
        raise ValueError("confidences outside [0, 1]")
    cost = scores.meta.get("cost", {}).get("per_item", {})
    failures = scores.meta.get("failures", [])
    reasons: dict[str, int] = {}
    for f in failures:
        key = str(f.get("reason", "?")).split(":")[0][:60]
        reasons[key] = reasons.get(key, 0) + 1
    row: dict[str, Any] = {
        "task": st["task"],
        "model": st["model"],
        "estimator": st["variant"],
        "n_items": n,
        "n_scored": m,
        "coverage": m / n,
        "n_not_scored": n - m,
        "not_scored_reasons": reasons,
        "accuracy": float(correct.mean()),
        "majority": majority_baseline(scores.per_item["gold"]),
        "n_distinct_conf": int(np.unique(np.round(conf, 6)).size),
        "conf_mean": float(conf.mean()),
        "conf_std": float(conf.std()),
        "auroc": auroc_ci(conf, correct, n_boot=n_boot, seed=seed),
        "calls_per_item": float(cost.get("model_calls", float("nan"))),
        "output_tokens_per_item": float(cost.get("output_tokens", float("nan"))),
        "prompt_chars_per_item": float(cost.get("prompt_chars", float("nan"))),
    }
    row["chance"] = chance_verdict(row["auroc"])
    try:
        sp = split_study(conf, correct, n_splits=n_splits, seed=seed)
    except ValueError as e:
        row["split_note"] = str(e)
    else:
        sp.pop("per_split")
        row.update(sp)
    return row


def compare_runs(a: Any, b: Any) -> dict[str, Any]:
    """The same (task, variant) scored two ways (e.g. a llama.cpp server ``a`` and the local
    transformers backend ``b``), on the items both scored and on the requested items.

    Returns ``{task, variant, model_a, model_b, n_items, coverage_a, coverage_b, n_common,
    answer_agreement (same answer index, -1 = names no class), answer_names_class_a/_b (share of
    generated answers that name a class), conf_mean_abs_diff, conf_corr, accuracy_a, accuracy_b, auroc_a, auroc_b}``
    and, for per-class Scores (logits, consistency), ``prob_mean_abs_diff`` /
    ``prob_max_abs_diff`` (over every class probability of the common items) and
    ``argmax_agreement``. ``ValueError`` when the two are not the same task and variant.
    """
    from calibkit.metrics import binary_auroc
    from calibkit.scoring.confidence import correctness

    sa, sb = a.meta["study"], b.meta["study"]
    for k in ("task", "variant"):
        if sa[k] != sb[k]:
            raise ValueError(f"compare_runs: {k} differs ({sa[k]!r} vs {sb[k]!r})")
    ia = {int(v): i for i, v in enumerate(a.ids)}
    ib = {int(v): i for i, v in enumerate(b.ids)}
    asked = set(sa["item_ids"]) & set(sb["item_ids"])
    common = sorted(set(ia) & set(ib) & asked)
    if not common:
        raise ValueError("compare_runs: no item scored by both")
    ra = np.asarray([ia[i] for i in common])
    rb = np.asarray([ib[i] for i in common])
    ca, ya = correctness(a)
    cb, yb = correctness(b)
    ans_a = np.asarray(a.per_item["answer_index"])[ra]
    ans_b = np.asarray(b.per_item["answer_index"])[rb]
    out: dict[str, Any] = {
        "task": sa["task"],
        "variant": sa["variant"],
        "model_a": sa["model"],
        "model_b": sb["model"],
        "n_items": len(asked),
        "coverage_a": sum(int(i) in asked for i in ia) / len(asked),
        "coverage_b": sum(int(i) in asked for i in ib) / len(asked),
        "n_common": len(common),
        "answer_agreement": float(np.mean(ans_a == ans_b)),
        "answer_names_class_a": float(np.mean(ans_a >= 0)),
        "answer_names_class_b": float(np.mean(ans_b >= 0)),
        "conf_mean_abs_diff": float(np.mean(np.abs(ca[ra] - cb[rb]))),
        "conf_corr": float(np.corrcoef(ca[ra], cb[rb])[0, 1])
        if ca[ra].std() > 0 and cb[rb].std() > 0
        else float("nan"),
        "accuracy_a": float(ya[ra].mean()),
        "accuracy_b": float(yb[rb].mean()),
        "auroc_a": binary_auroc(ca[ra], ya[ra]),
        "auroc_b": binary_auroc(cb[rb], yb[rb]),
    }
    if a.classes == b.classes and a.classes != ("wrong", "right"):
        d = np.abs(a.probs[ra] - b.probs[rb])
        out["prob_mean_abs_diff"] = float(d.mean())
        out["prob_max_abs_diff"] = float(d.max())
        out["argmax_agreement"] = float(np.mean(a.prediction[ra] == b.prediction[rb]))
    return out


def analyze_folder(
    folder: Path, *, n_splits: int = 20, n_boot: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """:func:`summarize` of every ``*.parquet`` study fixture in ``folder`` (sorted by name); a
    file that is not one is an error naming it."""
    import json

    from calibkit.scores import Scores

    files = sorted(
        [*Path(folder).glob("*__*__*.parquet"), *Path(folder).glob("*__*__*.json")],
        key=lambda p: p.stem,
    )
    if not files:
        raise ValueError(f"no <task>__<model>__<estimator>.parquet fixtures in {folder}")
    rows = []
    for f in files:
        try:
            if f.suffix == ".json":
                rows.append(nothing_scored_row(json.loads(f.read_text())["nothing_scored"]))
            else:
                s = Scores.load(f)
                rows.append(summarize(s, n_splits=n_splits, n_boot=n_boot, seed=seed))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{f}: {e!r}") from e
    return rows


def nothing_scored_row(study: dict[str, Any]) -> dict[str, Any]:
    """The row of a run in which no item got a confidence (coverage 0)."""
    n = int(study["n_items"])
    reasons: dict[str, int] = {}
    for f in study["failures"]:
        key = str(f.get("reason", "?")).split(":")[0][:60]
        reasons[key] = reasons.get(key, 0) + 1
    nan = float("nan")
    return {
        "task": study["task"],
        "model": study["model"],
        "estimator": study["variant"],
        "n_items": n,
        "n_scored": 0,
        "coverage": 0.0,
        "n_not_scored": n,
        "not_scored_reasons": reasons,
        "accuracy": nan,
        "majority": nan,
        "auroc": [nan, nan, nan],
        "chance": "too few",
        "calls_per_item": nan,
        "output_tokens_per_item": nan,
        "prompt_chars_per_item": nan,
        "split_note": "no item got a confidence",
    }


def _f(v: Any, d: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{d}f}"


def _ci(v: Sequence[float] | None, d: int = 3) -> str:
    if v is None:
        return "-"
    return f"{_f(v[0], d)} [{_f(v[1], d)}, {_f(v[2], d)}]"


def table_md(rows: Sequence[dict[str, Any]]) -> str:
    """The study's markdown table (one line per task/model/estimator) and notes."""
    head = (
        "| task | model | estimator | scored/n | acc. (majority) | AUROC [95% CI] | vs chance "
        "| ECE raw | ECE Platt | ΔECE Platt (worse/R) | ECE hist. / isot. / base rate | Brier raw | "
        "Brier Platt | calls | gen. tokens | prompt chars |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    notes = []
    for r in rows:
        if "ece_raw" in r:
            d = r["d_ece_platt"]
            cells = [
                _ci(r["ece_raw"]),
                _ci(r["ece_platt"]),
                f"{d[0]:+.3f} ({r['n_worse_platt']}/{r['n_splits']})",
                f"{_f(r['ece_histogram'][0])} / {_f(r['ece_isotonic'][0])} / "
                f"{_f(r['ece_base_rate'][0])}",
                _ci(r["brier_raw"]),
                _ci(r["brier_platt"]),
            ]
        else:
            cells = ["-"] * 6
            notes.append(f"{r['task']} / {r['model']} / {r['estimator']}: {r['split_note']}")
        verdict = {
            "above": "above",
            "no better": "**no better**",
            "worse": "**worse**",
            "too few": "n/a (too few right/wrong)",
        }[r["chance"]]
        lines.append(
            "| "
            + " | ".join(
                [
                    r["task"],
                    r["model"],
                    r["estimator"],
                    f"{r['n_scored']}/{r['n_items']}",
                    f"{_f(r['accuracy'], 2)} ({_f(r['majority'], 2)})",
                    _ci(r["auroc"]),
                    verdict,
                    *cells,
                    _f(r["calls_per_item"], 1),
                    _f(r["output_tokens_per_item"], 1),
                    _f(r["prompt_chars_per_item"], 0),
                ]
            )
            + " |"
        )
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\nNo split metrics:\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


def compare_folders(server: Path, local: Path, *, reference: str) -> list[dict[str, Any]]:
    """:func:`compare_runs` of every fixture in ``server`` with the fixture of the same task and
    variant of model ``reference`` in ``local``; a server fixture without one gets a row with
    ``note`` only."""
    from calibkit.scores import Scores

    out = []
    for f in sorted(Path(server).glob("*__*__*.parquet")):
        task, _, variant = f.stem.split("__")
        ref = Path(local) / f"{task}__{reference}__{variant}.parquet"
        if not ref.is_file():
            note = (
                f"local run {ref.stem}: no item got a confidence"
                if ref.with_suffix(".json").is_file()
                else f"no local run {ref.name}"
            )
            out.append({"task": task, "variant": variant, "note": note})
            continue
        a, b = Scores.load(f), Scores.load(ref)
        both = {int(v) for v in a.ids} & {int(v) for v in b.ids}
        if not both:
            out.append({"task": task, "variant": variant, "note": "no item scored by both"})
            continue
        try:
            out.append(compare_runs(a, b))
        except ValueError as e:
            raise ValueError(f"{f} vs {ref}: {e}") from e
    return out


def server_table_md(pairs: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`compare_folders` rows ("" when there are none)."""
    if not pairs:
        return ""
    lines = [
        "",
        "Server (a) vs local transformers (b), same items:",
        "",
        "| task | estimator | n | scored a / b | answer names a class a / b | answers agree "
        "| mean abs dconf (corr) "
        "| class probs: mean / max abs diff, argmax agree | acc. a / b | AUROC a / b |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        if "note" in p:
            lines.append(f"| {p['task']} | {p['variant']} | {p['note']} |" + " - |" * 7)
            continue
        probs = (
            f"{_f(p['prob_mean_abs_diff'])} / {_f(p['prob_max_abs_diff'])}, "
            f"{_f(p['argmax_agreement'], 2)}"
            if "prob_mean_abs_diff" in p
            else "-"
        )
        lines.append(
            f"| {p['task']} | {p['variant']} | {p['n_items']} | {_f(p['coverage_a'], 2)} / "
            f"{_f(p['coverage_b'], 2)} | {_f(p['answer_names_class_a'], 2)} / "
            f"{_f(p['answer_names_class_b'], 2)} | {_f(p['answer_agreement'], 2)} | "
            f"{_f(p['conf_mean_abs_diff'])} ({_f(p['conf_corr'], 2)}) | {probs} | "
            f"{_f(p['accuracy_a'], 2)} / {_f(p['accuracy_b'], 2)} | {_f(p['auroc_a'])} / "
            f"{_f(p['auroc_b'])} |"
        )
    return "\n".join(lines) + "\n"
