"""Certify the acceptance rule of each stage of a trained cascade (paper 001, Algorithm 1).

A trained :class:`~calibkit.ensemble.CascadePolicy` exits an item at stage ``k`` when the item's
nested bin key says so; nothing bounds the error of what a stage labels. Here every certified
stage ``k`` gets an extra condition: the item exits only if its **support** - the mean
probability the first ``k`` models give to the stage's answer (for ``k = 1`` the cheap model's
own top-label probability) - reaches a threshold ``lambda_k`` chosen by Learn-then-Test
(:mod:`calibkit.decisions.threshold`) on the calibration items the policy exits at that stage.
Items that fail go on to the next model; at the last stage they go to review (when the last stage
is certified too) or are labeled as the policy says (when it is not).

Guarantee: with probability at least ``1 - delta`` over the calibration sample, every certified
stage's error rate among the items it labels is at most ``epsilon`` (``delta`` is split evenly
over the certified stages). Stage ``k`` is certified on the items that reach it given the
thresholds already chosen for stages ``1..k-1`` on the same data; this is exact for the first
stage and the validity simulations check the later ones. The calibration items must not be the
ones the policy was trained on (its bins were chosen to do well on those).

The cascade policy is consumed through its public attributes (``tables_``, ``edges_``,
``library_``) and :meth:`~calibkit.ensemble.PolicyTables.route`; it is not modified.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.decisions.risk import PVALUE_METHODS, check_unit_interval, clopper_pearson_upper

__all__ = [
    "FORMAT",
    "CascadeComparison",
    "CertifiedCascade",
    "CertifiedCascadeResult",
    "StageCertificate",
    "certify_cascade",
    "compare_cascades",
]

FORMAT = "calibkit-certified-cascade"
VERSION = 1
#: ``restrict``: a certified stage exits only items the policy exits there and whose support
#: reaches the threshold; ``replace``: every item reaching the stage exits when its support does
MODES: tuple[str, ...] = ("restrict", "replace")
_OWN = -100  # route marker: answer with the stage model's own top label


@dataclass(frozen=True)
class StageCertificate:
    """One stage's certified acceptance rule, with its calibration figures.

    Attributes
    ----------
    stage : 1-based model index; model : its name.
    certified : whether the stage's rule was certified (False: the policy's rule, unchanged).
    threshold : exit needs support >= threshold (``inf``: the stage never exits; ``0``: the
        policy's rule as is).
    n_reaching : calibration items that reached the stage.
    n_candidates : of those, the items the policy would exit here.
    n_accepted, n_errors : items the certified rule exits here and its wrong labels among them.
    error_upper : one-sided ``1 - delta_stage`` Clopper-Pearson bound on that error rate.
    pvalue : LTT p-value at the threshold (None if not certified or nothing certified).
    """

    stage: int
    model: str
    certified: bool
    threshold: float
    n_reaching: int
    n_candidates: int
    n_accepted: int
    n_errors: int
    error_upper: float | None
    pvalue: float | None

    @property
    def error(self) -> float | None:
        return self.n_errors / self.n_accepted if self.n_accepted else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "model": self.model,
            "certified": self.certified,
            "threshold": None if math.isinf(self.threshold) else self.threshold,
            "n_reaching": self.n_reaching,
            "n_candidates": self.n_candidates,
            "n_accepted": self.n_accepted,
            "n_errors": self.n_errors,
            "error_upper": self.error_upper,
            "pvalue": self.pvalue,
        }


@dataclass(frozen=True)
class CertifiedCascadeResult:
    """Outcome of a (certified) cascade on ``n`` items.

    Attributes
    ----------
    predictions : (n,) int64 answers (``-1`` for items sent to review).
    depth : (n,) int64 models called (1..K).
    exit_stage : (n,) int64 stage that labeled the item (1..K), ``0`` = review.
    support : (n,) float64 support of the answer at the exit (or at the last stage).
    n_models : K.
    """

    predictions: NDArray[np.int64]
    depth: NDArray[np.int64]
    exit_stage: NDArray[np.int64]
    support: NDArray[np.float64]
    n_models: int

    @property
    def called(self) -> NDArray[np.bool_]:
        """(n, K) mask of the models that ran on each item."""
        return np.arange(self.n_models)[None, :] < self.depth[:, None]

    @property
    def review(self) -> NDArray[np.bool_]:
        """(n,) items sent to review."""
        return self.exit_stage == 0


def _policy_parts(policy: Any) -> tuple[Any, list[NDArray[np.float64]], list[list[Any]], int, int]:
    for attr in ("tables_", "edges_", "library_", "n_models_", "n_classes_"):
        if not hasattr(policy, attr):
            raise ValueError(
                f"policy: not a fitted calibkit CascadePolicy (missing {attr}); fit or load it first"
            )
    return policy.tables_, policy.edges_, policy.library_, policy.n_models_, policy.n_classes_


def _route(
    policy: Any,
    X: ArrayLike,
    thresholds: Sequence[float],
    review_last: bool,
    *,
    replace: Sequence[bool] | None = None,
    choose: Any = None,
) -> tuple[CertifiedCascadeResult, list[float]]:
    """Algorithm 2 with an extra support threshold per stage.

    ``choose(k, support, pred, rows)`` (certification) returns stage ``k``'s threshold from the
    candidates (their supports, answers and row indices); otherwise ``thresholds[k-1]``.
    ``replace[k-1]``: stage ``k`` considers every item that reaches it (the table's exit strategy,
    or the model's own answer where the table goes deeper), not only the table's exits.
    """
    from calibkit.ensemble import answers_confidences, bin_indices, check_ensemble_probs

    tables, edges, library, K, C = _policy_parts(policy)
    p = check_ensemble_probs(X)
    if p.shape[1:] != (K, C):
        raise ValueError(
            f"X has {p.shape[1]} models x {p.shape[2]} classes; the policy was fitted on {K} x {C}"
        )
    n = p.shape[0]
    answers, conf = answers_confidences(p)
    bins = bin_indices(conf, edges)
    pred = np.full(n, -1, dtype=np.int64)
    depth = np.zeros(n, dtype=np.int64)
    exit_stage = np.zeros(n, dtype=np.int64)
    support = np.full(n, np.nan)
    active = np.arange(n)
    parent = np.zeros(n, dtype=np.int64)
    chosen: list[float] = []
    diverted = np.zeros(n, dtype=bool)
    for k in range(1, K + 1):
        code = parent * tables.n_bins[k - 1] + bins[active, k - 1]
        h = np.asarray(tables.route(k, code, parent), dtype=np.int64)
        # an item with no training key here (possible after a diversion, whose sub-keys the saved
        # policy does not keep) answers with model k's own answer; so does any item left at the
        # last stage
        unseen = np.asarray(tables.count[k - 1])[code] == 0
        rep = bool(replace[k - 1]) if replace is not None else False
        own = (h < 0) & ((unseen & diverted[active]) | (k == K) | rep)
        h = np.where(own, _OWN, h)
        depth[active] = k
        cand = (h >= 0) | own
        rows = active[cand]
        ans = np.full(rows.size, -1, dtype=np.int64)
        hc = h[cand]
        for hv in np.unique(hc):
            sel = hc == hv
            r = rows[sel]
            if hv == _OWN:
                ans[sel] = answers[r, k - 1]
            else:
                ans[sel] = library[k - 1][int(hv)](answers[r, :k], conf[r, :k], C)
        # support: mean probability of the answer over models 1..k
        sup = (
            p[rows, :k, :][np.arange(rows.size), :, ans].mean(axis=1) if rows.size else np.zeros(0)
        )
        if choose is not None:
            lam = float(choose(k, sup, ans, rows))
        else:
            lam = float(thresholds[k - 1])
        chosen.append(lam)
        ok = sup >= lam
        ex = rows[ok]
        pred[ex] = ans[ok]
        exit_stage[ex] = k
        support[rows] = sup
        keep = np.ones(active.size, dtype=bool)
        keep[np.flatnonzero(cand)[ok]] = False
        diverted[rows[~ok]] = True
        if k == K:
            left = active[keep]
            if not review_last:
                # not certified: the last stage labels everything that reaches it
                pred[rows[~ok]] = ans[~ok]
                exit_stage[rows[~ok]] = K
            else:
                exit_stage[left] = 0
            break
        active, parent = active[keep], code[keep]
        if active.size == 0:
            chosen += [math.nan] * (K - k)
            break
    return CertifiedCascadeResult(pred, depth, exit_stage, support, K), chosen


class CertifiedCascade:
    """A trained cascade policy plus certified per-stage support thresholds.

    Attributes
    ----------
    policy : the fitted :class:`~calibkit.ensemble.CascadePolicy` (not modified).
    stages : K :class:`StageCertificate`.
    max_error, delta, method : the certificate's parameters.
    """

    def __init__(
        self,
        policy: Any,
        stages: Sequence[StageCertificate],
        *,
        max_error: float,
        delta: float,
        method: str = "binomial",
        mode: str = "restrict",
    ) -> None:
        _, _, _, K, _ = _policy_parts(policy)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        self.mode = mode
        if len(stages) != K:
            raise ValueError(f"stages: need {K} stage certificates; got {len(stages)}")
        self.policy = policy
        self.stages = tuple(stages)
        self.max_error = check_unit_interval(max_error, "max_error")
        self.delta = check_unit_interval(delta, "delta")
        if method not in PVALUE_METHODS:
            raise ValueError(f"method must be one of {', '.join(PVALUE_METHODS)}; got {method!r}")
        self.method = method

    @property
    def thresholds(self) -> tuple[float, ...]:
        return tuple(s.threshold for s in self.stages)

    @property
    def review_last(self) -> bool:
        """Whether items the last stage may not label go to review."""
        return self.stages[-1].certified

    def _replace(self) -> list[bool]:
        return [self.mode == "replace" and s.certified for s in self.stages]

    def cascade(self, X: ArrayLike) -> CertifiedCascadeResult:
        """Run the certified cascade on ``(n, K, C)`` probabilities (or ``(n, K)`` binary)."""
        res, _ = _route(self.policy, X, self.thresholds, self.review_last, replace=self._replace())
        return res

    def guarantee(self) -> str:
        cert = [s.stage for s in self.stages if s.certified]
        return (
            f"with probability >= {1 - self.delta:.4g} over the calibration sample, the error "
            f"rate of what stage(s) {', '.join(map(str, cert))} label is <= {self.max_error:g} "
            f"each (Learn-then-Test, {self.method} p-values, delta split over {len(cert)} stages)"
        )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "max_error": self.max_error,
            "delta": self.delta,
            "method": self.method,
            "mode": self.mode,
            "support": "mean probability of the stage's answer over models 1..k",
            "guarantee": self.guarantee(),
            "stages": [s.to_dict() for s in self.stages],
            "policy": self.policy.to_dict(),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        from calibkit._atomic import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "certified cascade") -> CertifiedCascade:
        """Rebuild and validate; errors name ``source`` and the field."""
        from calibkit.ensemble import CascadePolicy

        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object")

        def bad(field: str, what: str, v: Any) -> ValueError:
            return ValueError(
                f"{source}: field '{field}' {what}; got {json.dumps(v, default=str)[:80]}"
            )

        if d.get("format") != FORMAT:
            raise bad("format", f"must be {FORMAT!r}", d.get("format"))
        if d.get("version") != VERSION:
            raise bad("version", f"must be {VERSION}", d.get("version"))
        for key in ("max_error", "delta"):
            v = d.get(key)
            if not (isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1):
                raise bad(key, "must be a number in (0, 1)", v)
        if d.get("method") not in PVALUE_METHODS:
            raise bad("method", f"must be one of {list(PVALUE_METHODS)}", d.get("method"))
        if d.get("mode") not in MODES:
            raise bad("mode", f"must be one of {list(MODES)}", d.get("mode"))
        pol_d = d.get("policy")
        if not isinstance(pol_d, dict):
            raise bad("policy", "must be a cascade policy object", pol_d)
        try:
            policy = CascadePolicy.from_dict(pol_d)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{source}: field 'policy' is not a valid cascade policy: {exc}"
            ) from None
        st = d.get("stages")
        K = policy.n_models_
        if not isinstance(st, list) or len(st) != K:
            raise bad("stages", f"must list {K} stage certificates", st)
        stages = []
        for i, s in enumerate(st):
            f = f"stages[{i}]"
            if not isinstance(s, dict):
                raise bad(f, "must be an object", s)
            if s.get("stage") != i + 1:
                raise bad(f"{f}.stage", f"must be {i + 1}", s.get("stage"))
            if not isinstance(s.get("certified"), bool):
                raise bad(f"{f}.certified", "must be true or false", s.get("certified"))
            t = s.get("threshold")
            if t is not None and not (
                isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= 1
            ):
                raise bad(f"{f}.threshold", "must be a support in [0, 1] or null (never exit)", t)
            if not s["certified"] and t != 0:
                raise bad(f"{f}.threshold", "must be 0 for a stage that is not certified", t)
            ints = {}
            for key in ("n_reaching", "n_candidates", "n_accepted", "n_errors"):
                v = s.get(key)
                if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                    raise bad(f"{f}.{key}", "must be a non-negative integer", v)
                ints[key] = v
            if not (ints["n_errors"] <= ints["n_accepted"] <= ints["n_reaching"]):
                raise bad(f, "needs n_errors <= n_accepted <= n_reaching", ints)
            if (
                s["certified"]
                and ints["n_accepted"]
                and ints["n_errors"] / ints["n_accepted"] > d["max_error"] + 1e-12
            ):
                raise bad(f"{f}.n_errors", "gives an error rate above max_error", ints["n_errors"])
            for key in ("error_upper", "pvalue"):
                v = s.get(key)
                if v is not None and not (
                    isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1
                ):
                    raise bad(f"{f}.{key}", "must be null or a number in [0, 1]", v)
            stages.append(
                StageCertificate(
                    stage=i + 1,
                    model=str(s.get("model", f"model_{i}")),
                    certified=s["certified"],
                    threshold=math.inf if t is None else float(t),
                    n_reaching=ints["n_reaching"],
                    n_candidates=ints["n_candidates"],
                    n_accepted=ints["n_accepted"],
                    n_errors=ints["n_errors"],
                    error_upper=s.get("error_upper"),
                    pvalue=s.get("pvalue"),
                )
            )
        if not any(s.certified for s in stages):
            raise bad("stages", "certify no stage", [s.certified for s in stages])
        return cls(
            policy,
            stages,
            max_error=float(d["max_error"]),
            delta=float(d["delta"]),
            method=d["method"],
            mode=d["mode"],
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CertifiedCascade:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"certified cascade file {p} not found")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p} is not valid JSON: {exc}") from None
        return cls.from_dict(d, source=str(p))


def certify_cascade(
    policy: Any,
    X: ArrayLike,
    y: ArrayLike,
    *,
    max_error: float,
    delta: float = 0.05,
    stages: Sequence[int] | None = None,
    method: str = "binomial",
    mode: str = "restrict",
    grid: ArrayLike | None = None,
) -> CertifiedCascade:
    """Certify the acceptance rule of the chosen stages of a trained cascade.

    Parameters
    ----------
    policy : fitted :class:`~calibkit.ensemble.CascadePolicy`.
    X : (n, K, C) class probabilities of the K models (cheapest first) or (n, K) binary
        ``P(y=1)``, on labelled calibration items the policy was **not** trained on.
    y : (n,) int labels.
    max_error : epsilon, the error rate allowed among the items each certified stage labels.
    delta : failure probability, split evenly over the certified stages.
    stages : 1-based stages to certify; default all but the last (the last model labels what is
        left). Certifying the last stage sends what it may not label to review.
    method : LTT p-value, "binomial" or "hoeffding_bentkus".
    mode : "restrict" (default): a certified stage exits only what the policy exits there, when
        the support reaches the threshold (the F1-optimal structure, made safe: never cheaper);
        "replace": a certified stage exits every item whose support reaches the threshold (the
        policy's answer where it exits, the model's own answer where it goes deeper), so the
        cheap model may label more than the policy lets it.
    grid : decreasing support thresholds (default :func:`~calibkit.decisions.threshold_grid`).

    Returns
    -------
    CertifiedCascade
    """
    from calibkit._validation import check_labels
    from calibkit.decisions.threshold import (
        _check_grid,
        accepted_counts,
        grid_cells,
        ltt_select,
        threshold_grid,
    )

    eps = check_unit_interval(max_error, "max_error")
    d = check_unit_interval(delta, "delta")
    if method not in PVALUE_METHODS:
        raise ValueError(f"method must be one of {', '.join(PVALUE_METHODS)}; got {method!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    from calibkit.ensemble import CascadePolicy

    _, _, _, K, C = _policy_parts(policy)
    # route on exactly what a saved policy keeps (keys below an exit are not saved), so that the
    # certificate holds for the policy as saved and reloaded
    policy = CascadePolicy.from_dict(policy.to_dict())
    want = list(range(1, K)) if stages is None else sorted({int(s) for s in stages})
    if K == 1 and stages is None:
        want = [1]
    if not want or any(not 1 <= s <= K for s in want):
        raise ValueError(f"stages must be a non-empty subset of 1..{K}; got {stages!r}")
    g = threshold_grid(C) if grid is None else _check_grid(grid)
    n_items = np.asarray(X).shape[0] if np.ndim(X) >= 2 else 0
    labels = check_labels(y, n_items, C, name="y")
    d_stage = d / len(want)
    names = list(getattr(policy, "model_names", None) or [f"model_{k}" for k in range(K)])
    certs: list[StageCertificate] = []
    state: dict[Any, Any] = {}

    def choose(
        k: int, sup: NDArray[np.float64], ans: NDArray[np.int64], rows: NDArray[np.int64]
    ) -> float:
        state[k] = (sup, ans, rows)
        if k not in want:
            return 0.0
        wrong = ans != labels[rows]
        if rows.size == 0:
            return math.inf
        n_acc, n_err = accepted_counts(grid_cells(sup, g), wrong, g.size)
        idx, pv = ltt_select(n_acc, n_err, eps, d_stage, method=method)
        j = int(idx)
        state[(k, "pv")] = float(pv[j]) if j >= 0 else None
        return float(g[j]) if j >= 0 else math.inf

    res, chosen = _route(
        policy,
        X,
        [0.0] * K,
        review_last=K in want,
        replace=[mode == "replace" and k in want for k in range(1, K + 1)],
        choose=choose,
    )
    for k in range(1, K + 1):
        lam = chosen[k - 1] if k - 1 < len(chosen) else math.nan
        if k not in state:  # no item reached the stage
            certs.append(
                StageCertificate(
                    k,
                    names[k - 1],
                    k in want,
                    math.inf if k in want else 0.0,
                    0,
                    0,
                    0,
                    0,
                    None,
                    None,
                )
            )
            continue
        sup, ans, rows = state[k]
        acc = sup >= lam
        n_acc = int(acc.sum())
        n_err = int((ans[acc] != labels[rows[acc]]).sum())
        certs.append(
            StageCertificate(
                stage=k,
                model=names[k - 1],
                certified=k in want,
                threshold=lam if not math.isnan(lam) else 0.0,
                n_reaching=int(np.sum(res.depth >= k)),
                n_candidates=int(rows.size),
                n_accepted=n_acc,
                n_errors=n_err,
                error_upper=float(clopper_pearson_upper(n_err, n_acc, d_stage)),
                pvalue=state.get((k, "pv")),
            )
        )
    if K in want and not np.any(res.exit_stage > 0):
        raise ValueError(
            f"the certified cascade labels nothing at max_error={eps:g}, delta={d:g}: every "
            f"item goes to review ({', '.join(f'stage {c.stage}: {c.n_candidates} candidates' for c in certs)}); "
            "raise max_error, add calibration items, or calibrate the models"
        )
    return CertifiedCascade(policy, certs, max_error=eps, delta=d, method=method, mode=mode)


@dataclass(frozen=True)
class CascadeComparison:
    """The F1-optimal policy beside its certified version on the same labelled items.

    Attributes
    ----------
    rows : list of dicts with ``policy``, ``f1``, ``accuracy``, ``relative_cost``,
        ``share_reaching`` (per model), ``share_review``, ``stage_error`` (error rate of what
        each stage labels) and ``stage_share`` (share of items each stage labels).
    """

    rows: list[dict[str, Any]]

    def table(self, names: Sequence[str]) -> str:
        """A Markdown table."""
        head = (
            "| policy | F1 | accuracy | cost (x cheapest) | review | "
            + " | ".join(f"{n}: labels / error" for n in names)
            + " |"
        )
        sep = "|---" * (5 + len(names)) + "|"
        lines = [head, sep]
        for r in self.rows:
            cells = [
                r["policy"],
                f"{r['f1']:.3f}",
                f"{r['accuracy']:.3f}",
                f"{r['relative_cost']:.2f}",
                f"{r['share_review']:.1%}",
            ]
            for s, e in zip(r["stage_share"], r["stage_error"], strict=True):
                cells.append(f"{s:.1%} / " + ("-" if e is None else f"{e:.3f}"))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _row(
    name: str,
    y: NDArray[np.int64],
    pred: NDArray[np.int64],
    exit_stage: NDArray[np.int64],
    called: NDArray[np.bool_],
    costs: Any,
    C: int,
    average: str,
    pos_label: int,
) -> dict[str, Any]:
    from calibkit.ensemble import summarize_cost

    K = called.shape[1]
    labeled = exit_stage > 0
    # review items get a dummy class C: never a true positive, a false negative of their class
    pr = np.where(labeled, pred, C)
    cm = np.bincount(y * (C + 1) + pr, minlength=C * (C + 1)).reshape(C, C + 1).astype(float)
    tp = np.diag(cm[:, :C])
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(cm[:, :C].sum(axis=0) > 0, tp / cm[:, :C].sum(axis=0), 0.0)
        rec = np.where(cm.sum(axis=1) > 0, tp / cm.sum(axis=1), 0.0)
        f1s = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    if average == "binary":
        f1 = float(f1s[pos_label])
    elif average == "macro":
        f1 = float(f1s.mean())
    elif average == "micro":
        f1 = float(tp.sum() / y.size)
    else:
        raise ValueError(f"average must be 'binary', 'macro' or 'micro'; got {average!r}")
    rel = float("nan")
    if costs is not None:
        rel = summarize_cost(called, costs).relative
    share = [float(np.mean(exit_stage == k)) for k in range(1, K + 1)]
    err = []
    for k in range(1, K + 1):
        sel = exit_stage == k
        err.append(float(np.mean(pred[sel] != y[sel])) if sel.any() else None)
    return {
        "policy": name,
        "f1": f1,
        "accuracy": float(np.mean(labeled & (pred == y))),
        "relative_cost": rel,
        "share_reaching": [float(x) for x in called.mean(axis=0)],
        "share_review": float(np.mean(~labeled)),
        "stage_share": share,
        "stage_error": err,
    }


def compare_cascades(
    certified: CertifiedCascade,
    X: ArrayLike,
    y: ArrayLike,
    *,
    costs: Any = None,
    average: str = "binary",
    pos_label: int = 1,
) -> CascadeComparison:
    """Run the original (F1-optimal) policy and its certified version on the same items.

    ``costs``: (K,) per-call costs or a list of :class:`~calibkit.ensemble.ModelCost`
    (default: the policy's own). Items sent to review count as unlabeled (wrong) in F1 and
    accuracy; their review cost is not included.
    """
    from calibkit._validation import check_labels

    pol = certified.policy
    C = pol.n_classes_
    base = pol.cascade(X)
    labels = check_labels(y, base.predictions.shape[0], C, name="y")
    costs = pol.costs if costs is None else costs
    cm = None
    if costs is not None:
        from calibkit.ensemble import cost_matrix

        cm = cost_matrix(costs, labels.size)
    rows = [
        _row(
            "F1-optimal cascade",
            labels,
            base.predictions,
            base.depth,
            base.called,
            cm,
            C,
            average,
            pos_label,
        )
    ]
    cres = certified.cascade(X)
    rows.append(
        _row(
            f"certified (error <= {certified.max_error:g})",
            labels,
            cres.predictions,
            cres.exit_stage,
            cres.called,
            cm,
            C,
            average,
            pos_label,
        )
    )
    return CascadeComparison(rows)
