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

from calibkit.decisions.cascade_compare import CascadeComparison, compare_cascades
from calibkit.decisions.cascade_io import FORMAT, MODES, VERSION, parse_cascade_dict
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
        kw = parse_cascade_dict(d, source)
        return cls(kw.pop("policy"), kw.pop("stages"), **kw)

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
    certs = _certificates(res, chosen, state, K, want, names, labels, d_stage)
    if K in want and not np.any(res.exit_stage > 0):
        raise ValueError(
            f"the certified cascade labels nothing at max_error={eps:g}, delta={d:g}: every "
            f"item goes to review ({', '.join(f'stage {c.stage}: {c.n_candidates} candidates' for c in certs)}); "
            "raise max_error, add calibration items, or calibrate the models"
        )
    return CertifiedCascade(policy, certs, max_error=eps, delta=d, method=method, mode=mode)


def _certificates(
    res: CertifiedCascadeResult,
    chosen: Sequence[float],
    state: dict[Any, Any],
    K: int,
    want: Sequence[int],
    names: Sequence[str],
    labels: NDArray[np.int64],
    d_stage: float,
) -> list[StageCertificate]:
    """One :class:`StageCertificate` per stage from the routing ``state`` of ``choose``."""
    certs: list[StageCertificate] = []
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
    return certs
