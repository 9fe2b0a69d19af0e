"""Cross-validated choice of a calibrator: :func:`select` and :class:`AutoCalibrator` (``"auto"``).

Every candidate -- by default every registered calibrator, always with ``"none"`` (the identity)
-- is scored by ``cv``-fold cross-validation on the calibration set: fitted on ``cv - 1`` folds,
scored on the held-out fold by a proper score (NLL by default, or the Brier score), or by the
ECE on request. The candidate with the lowest mean held-out score wins (ties go to the earlier
candidate, and ``"none"`` comes first), so the choice is never worse than no calibration in
cross-validation. The winner is refitted on all rows.

Calibrators with an inner cross-validation (matrix scaling and Dirichlet calibration with
``reg_lambda="auto"``) run it on the *same* folds, and the held-out predictions at the
``lambda`` they choose are their candidate score: one pass instead of a nested one. The score
is then optimistic by the choice of one hyper-parameter among at most nine values.

:class:`AutoCalibrator` follows the calibrator contract (``fit``, ``predict_proba``,
``calibrate``, JSON ``save`` / ``load``) and remembers what it chose and why: ``selected_`` and
``cv_results_`` (each candidate's per-fold scores, mean and standard deviation).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._math import PROB_FLOOR, to_probs
from calibkit.calibrators._cv import Folds, make_folds
from calibkit.calibrators.base import Calibrator, FieldCheck, from_dict
from calibkit.scores import Scores

__all__ = ["SCORINGS", "AutoCalibrator", "select"]

Scoring = Literal["nll", "brier", "ece"]

#: selection scores (all lower-is-better)
SCORINGS: tuple[str, ...] = ("nll", "brier", "ece")


def _score(
    p: NDArray[np.float64],
    y: NDArray[np.int64],
    w: NDArray[np.float64] | None,
    scoring: str,
    n_bins: int,
) -> float:
    """Held-out score of ``(n, K)`` probabilities: weighted mean NLL (natural log, true-class
    probability floored at ``PROB_FLOOR = 1e-12``, as :func:`calibkit.metrics.nll`), multiclass Brier
    score in [0, 2] (as :func:`calibkit.metrics.brier_score` on ``(n, K)``), or top-label ECE with
    ``n_bins`` equal-width bins (:func:`calibkit.metrics.ece`; unweighted)."""
    idx = np.arange(y.shape[0])
    if scoring == "nll":
        per = -np.log(np.maximum(p[idx, y], PROB_FLOOR))
    elif scoring == "brier":
        per = np.einsum("ij,ij->i", p, p) - 2.0 * p[idx, y] + 1.0
    else:
        from calibkit.metrics import ece

        return float(ece(p, y, n_bins=n_bins))
    return float(per.mean() if w is None else (w @ per) / w.sum())


def _candidate_names(candidates: Sequence[str] | None) -> list[str]:
    """Registry keys of the candidates, ``"none"`` first, duplicates and ``"auto"`` removed."""
    from calibkit.calibrators.registry import CALIBRATORS, canonical_name

    names = ["none"]
    pool = (
        [k for k in CALIBRATORS if k not in ("auto", "none")] if candidates is None else candidates
    )
    for c in pool:
        key = canonical_name(c)
        if key == "auto":
            raise ValueError("'auto' cannot be a candidate of itself")
        if key not in names:
            names.append(key)
    return names


class AutoCalibrator(Calibrator):
    """The calibrator chosen by ``cv``-fold cross-validation among ``candidates`` and ``"none"``.

    Parameters
    ----------
    candidates : sequence of str or None
        Registered calibrator names (``calibkit.calibrators.CALIBRATORS``; aliases allowed), each
        with its default hyper-parameters. ``None`` (default): all of them. ``"none"`` is always
        added.
    cv : int
        Folds (default 5; stratified by class when every class has ``cv`` members).
    scoring : {"nll", "brier", "ece"}
        Held-out score to minimise: NLL (default) or Brier, both proper scores, or the top-label
        ECE with ``n_bins`` equal-width bins (not a proper score: a constant prediction at the
        accuracy has ECE 0; use it only when ECE is what you report).
    seed : int
        Seed of the fold split.
    n_bins : int
        Bins of the ECE scoring.
    allow_inverted : bool
        Keep a winner whose fit turns the scores around (negative temperature, slopes or
        diagonal coefficients). Off by default: such a "gain" is a sign flip, not calibration;
        the next best candidate is chosen and the CV table marks the excluded one.

    Input: logits ``(n, K)`` or ``(n,)`` binary logits (``Scores.logits``); probability
    calibrators receive their softmax (sigmoid).

    Attributes
    ----------
    selected_ : str
        Registry name of the chosen calibrator (``"none"`` for the identity).
    calibrator_ : Calibrator
        The chosen calibrator, refitted on all rows.
    cv_results_ : dict
        Per candidate: ``{"folds": [score per fold], "mean", "std", "error"}``; ``error`` is the
        message of a candidate that failed to fit (then ``mean`` is ``nan``), else ``None``.
    """

    input_kind = "logits"
    _fitted_fields = ("selected_", "calibrator_", "cv_results_")
    selected_: str
    calibrator_: Calibrator
    cv_results_: dict[str, dict[str, Any]]

    def __init__(
        self,
        candidates: Sequence[str] | None = None,
        cv: int = 5,
        scoring: Scoring = "nll",
        seed: int = 0,
        n_bins: int = 15,
        allow_inverted: bool = False,
    ) -> None:
        self.candidates = candidates
        self.cv = cv
        self.scoring = scoring
        self.seed = seed
        self.n_bins = n_bins
        self.allow_inverted = allow_inverted

    # ------------------------------------------------------------------ validation
    def _validate_params(self, check: FieldCheck) -> None:
        if self.candidates is not None:
            if isinstance(self.candidates, str) or not isinstance(self.candidates, list | tuple):
                check.fail("candidates", "null or a list of calibrator names", self.candidates)
            if not all(isinstance(c, str) for c in self.candidates):
                check.fail("candidates", "a list of calibrator names", self.candidates)
            try:
                _candidate_names(self.candidates)
            except ValueError as exc:
                check.fail("candidates", f"registered calibrator names ({exc})", self.candidates)
        check.integer("cv", self.cv, low=2)
        check.choice("scoring", self.scoring, SCORINGS)
        check.integer("seed", self.seed, low=0)
        check.integer("n_bins", self.n_bins, low=1, high=10_000)
        if not isinstance(self.allow_inverted, bool):
            check.fail("allow_inverted", "true or false", self.allow_inverted)

    def _validate_fitted(self, check: FieldCheck) -> None:
        from calibkit.calibrators.registry import CALIBRATORS

        names = _candidate_names(self.candidates)
        sel = check.choice("selected_", self.selected_, names)
        inner = self.calibrator_
        if isinstance(inner, dict):
            inner = from_dict(inner, source=f"{check.where}: field 'fitted.calibrator_'")
        if not isinstance(inner, CALIBRATORS[sel]):
            check.fail("calibrator_", f"a fitted {CALIBRATORS[sel].__name__}", type(inner).__name__)
        if inner.n_classes_ != self.n_classes_ or inner.binary_input_ != self.binary_input_:
            check.fail("calibrator_", f"fitted on {self.n_classes_} classes", inner.n_classes_)
        self.calibrator_ = inner
        res = self.cv_results_
        if not isinstance(res, dict) or sel not in res:
            check.fail("cv_results_", f"an object with an entry for {sel!r}", res)
        for name, row in res.items():
            if name not in names or not isinstance(row, dict):
                check.fail(f"cv_results_.{name}", "a candidate's result object", row)
            if set(row) != {"folds", "mean", "std", "error"}:
                check.fail(f"cv_results_.{name}", "an object with folds, mean, std, error", row)
            if row["error"] is None:
                check.array(f"cv_results_.{name}.folds", row["folds"], (-1,), low=0.0)
                check.number(f"cv_results_.{name}.mean", row["mean"], low=0.0)
                check.number(f"cv_results_.{name}.std", row["std"], low=0.0)
            elif not isinstance(row["error"], str):
                check.fail(f"cv_results_.{name}.error", "null or a message", row["error"])

    # ------------------------------------------------------------------ fit / predict
    @staticmethod
    def _input_for(cal: Calibrator, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return X if cal.input_kind == "logits" else to_probs(X)

    def _fit(
        self, X: NDArray[np.float64], y: NDArray[np.int64], w: NDArray[np.float64] | None
    ) -> None:
        from sklearn.base import clone

        from calibkit.calibrators.registry import make_calibrator

        if self.scoring == "ece" and w is not None:
            raise ValueError("AutoCalibrator: scoring='ece' does not support sample_weight")
        n_bins = int(self.n_bins)
        names = _candidate_names(self.candidates)
        n, cv = int(y.shape[0]), int(self.cv)
        if n < 4:
            warnings.warn(
                f"AutoCalibrator: {n} rows are too few to cross-validate; keeping no calibration",
                UserWarning,
                stacklevel=3,
            )
            self.selected_ = "none"
            self.calibrator_ = make_calibrator("none").fit(X, y, w)
            msg = f"not cross-validated: {n} rows"
            self.cv_results_ = {
                "none": {"folds": [], "mean": math.nan, "std": math.nan, "error": msg}
            }
            return
        if n < 2 * cv:
            warnings.warn(
                f"AutoCalibrator: {n} rows are too few for {cv}-fold cross-validation; using "
                f"{n // 2} folds",
                UserWarning,
                stacklevel=3,
            )
            cv = n // 2
        folds: Folds = make_folds(y, cv, int(self.seed))
        results: dict[str, dict[str, Any]] = {}
        fitted: dict[str, Calibrator] = {}
        for name in names:
            proto = make_calibrator(name)
            xc = self._input_for(proto, X)
            if name == "none":  # nothing to fit: score the scores themselves
                p_all = proto.fit(xc, y).predict_proba(xc)
                sc = [
                    _score(p_all[te], y[te], None if w is None else w[te], self.scoring, n_bins)
                    for _, te in folds
                ]
                results[name] = {
                    "folds": sc,
                    "mean": float(np.mean(sc)),
                    "std": float(np.std(sc)),
                    "error": None,
                }
                fitted[name] = proto
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # fold fits; the final fit warns
                    scores = self._cv_scores(proto, xc, y, w, folds, fitted, name, clone)
            except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
                results[name] = {"folds": [], "mean": math.nan, "std": math.nan, "error": str(exc)}
                continue
            results[name] = {
                "folds": scores,
                "mean": float(np.mean(scores)),
                "std": float(np.std(scores)),
                "error": None,
            }
        ok = [c for c in names if results[c]["error"] is None]
        if not ok:
            raise ValueError(f"AutoCalibrator: every candidate failed: {results}")
        best, cal = self._choose(ok, names, results, fitted, X, y, w)
        self.selected_ = best
        self.calibrator_ = cal
        self.cv_results_ = results

    def _choose(
        self,
        ok: list[str],
        names: list[str],
        results: dict[str, dict[str, Any]],
        fitted: dict[str, Calibrator],
        X: NDArray[np.float64],
        y: NDArray[np.int64],
        w: NDArray[np.float64] | None,
    ) -> tuple[str, Calibrator]:
        """Best CV score first; a winner whose refit turns the scores around (negative
        temperature / slopes / diagonal) is passed over unless ``allow_inverted``: its "gain" is
        a sign flip, not calibration (diagnostics' ``inverted_fit``). Marks the excluded ones."""
        from calibkit.calibrators.registry import make_calibrator

        ranked = sorted(ok, key=lambda c: (results[c]["mean"], names.index(c)))
        for name in ranked:
            fit_c = fitted.get(name)
            if fit_c is None:
                proto = make_calibrator(name)
                fit_c = proto.fit(self._input_for(proto, X), y, w)
            fitted[name] = fit_c
            flip = None if self.allow_inverted else _inversion(fit_c)
            if flip is None:
                return name, fit_c
            results[name]["error"] = f"excluded: {flip} (allow_inverted=True keeps it)"
        # every candidate inverts ("none" was not offered): keep the CV winner
        results[ranked[0]]["error"] = None
        return ranked[0], fitted[ranked[0]]

    def _cv_scores(
        self,
        proto: Calibrator,
        xc: NDArray[np.float64],
        y: NDArray[np.int64],
        w: NDArray[np.float64] | None,
        folds: Folds,
        fitted: dict[str, Calibrator],
        name: str,
        clone: Any,
    ) -> list[float]:
        n_bins = int(self.n_bins)
        fit_folds = getattr(proto, "_fit_folds", None)
        if fit_folds is not None and getattr(proto, "_auto", False):
            # inner CV of the regularisation on the same folds: its held-out predictions at the
            # chosen value are the candidate's score, and the full-data fit comes with it
            proto._validate_params(FieldCheck(type(proto).__name__, params=True))
            x, yy, ww = proto._check_fit_input(xc, y, w)
            oof = fit_folds(x, yy, ww, folds)
            if oof is not None:
                fitted[name] = proto
                return [
                    _score(p, y[te], None if w is None else w[te], self.scoring, n_bins)
                    for p, (_, te) in zip(oof, folds, strict=True)
                ]
        out = []
        for tr, te in folds:
            c = clone(proto).fit(xc[tr], y[tr], None if w is None else w[tr])
            p = c.predict_proba(xc[te])
            out.append(_score(p, y[te], None if w is None else w[te], self.scoring, n_bins))
        return out

    def _predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.calibrator_.predict_proba(self._input_for(self.calibrator_, X))

    # ------------------------------------------------------------------ persistence
    def _fitted_attributes(self) -> dict[str, Any]:
        out = super()._fitted_attributes()
        inner = out.get("calibrator_")
        if isinstance(inner, Calibrator):
            out["calibrator_"] = _raw_state(inner)
        return out

    # ------------------------------------------------------------------ reporting
    def summary_rows(self) -> list[dict[str, Any]]:
        """One dict per candidate, best first: ``name``, ``mean``, ``std``, ``selected``,
        ``error``."""
        rows = [
            {
                "name": name,
                "mean": r["mean"],
                "std": r["std"],
                "selected": name == self.selected_,
                "error": r["error"],
            }
            for name, r in self.cv_results_.items()
        ]
        return sorted(rows, key=lambda r: (r["error"] is not None, _nan_last(r["mean"])))

    def summary(self) -> str:
        """Plain-text table of the cross-validated scores and the choice, e.g. for a CLI."""
        n_folds = max((len(r["folds"]) for r in self.cv_results_.values()), default=0)
        lines = [f"{n_folds}-fold cross-validated {self.scoring.upper()} (mean +- std over folds)"]
        for r in self.summary_rows():
            mark = "*" if r["selected"] else " "
            if r["error"] is not None and str(r["error"]).startswith("excluded:"):
                lines.append(
                    f" {mark} {r['name']:<12} {r['mean']:.4f} +- {r['std']:.4f}  {r['error']}"
                )
            elif r["error"] is not None:
                lines.append(f" {mark} {r['name']:<12} failed: {r['error']}")
            else:
                lines.append(f" {mark} {r['name']:<12} {r['mean']:.4f} +- {r['std']:.4f}")
        none = self.cv_results_["none"]["mean"]
        sel = self.cv_results_[self.selected_]["mean"]
        if not math.isfinite(sel):
            lines.append(f"selected: {self.selected_} (not cross-validated)")
            return "\n".join(lines)
        lines.append(
            f"selected: {self.selected_} ({self.scoring} {sel:.4f} vs {none:.4f} uncalibrated)"
        )
        return "\n".join(lines)


def _inversion(cal: Calibrator) -> str | None:
    """Why ``cal`` turns its input scores around (negative temperature, slopes or diagonal), or
    ``None``."""
    from calibkit.calibrators.fit_checks import _check_inverted_fit

    found = _check_inverted_fit(cal, None)
    if not found:
        return None
    neg = found[0].numbers.get("negative", [])
    return (
        "the fit inverts the scores (negative coefficients "
        + ", ".join(f"{v:.3g}" for v in neg[:4])
        + ")"
    )


def _nan_last(x: float) -> float:
    return math.inf if not math.isfinite(x) else x


def _raw_state(cal: Calibrator) -> dict[str, Any]:
    """A nested calibrator as :meth:`Calibrator.to_dict` would write it, but not yet encoded
    (the outer calibrator encodes everything once)."""
    from calibkit.calibrators.base import _FORMAT_KEY, _FORMAT_VERSION

    return {
        _FORMAT_KEY: _FORMAT_VERSION,
        "class": type(cal).__name__,
        "params": cal.get_params(deep=False),
        "fitted": cal._fitted_attributes(),
    }


def select(
    X: ArrayLike | Scores,
    y: ArrayLike | None = None,
    *,
    candidates: Sequence[str] | None = None,
    cv: int = 5,
    scoring: Scoring = "nll",
    seed: int = 0,
    sample_weight: ArrayLike | None = None,
    n_bins: int = 15,
) -> AutoCalibrator:
    """Choose a calibrator by ``cv``-fold cross-validation and return it fitted on all rows.

    Parameters
    ----------
    X : (n, K) or (n,) logits, or labelled :class:`~calibkit.Scores` (its logits and labels)
    y : (n,) class indices (taken from ``X`` when it is Scores)
    candidates, cv, scoring, seed, n_bins
        See :class:`AutoCalibrator`.
    sample_weight : (n,) non-negative weights, optional (not with ``scoring="ece"``)

    Returns
    -------
    AutoCalibrator
        Fitted; ``selected_`` names the winner, ``cv_results_`` holds every candidate's scores,
        ``summary()`` prints them.

    Examples
    --------
    >>> auto = select(scores, candidates=["temperature", "vector", "isotonic"])  # doctest: +SKIP
    >>> print(auto.summary())  # doctest: +SKIP
    """
    if isinstance(X, Scores):
        if y is None:
            y = X.require_labels()
        X = X.logits
    if y is None:
        raise ValueError("select needs labels y (or labelled Scores)")
    return AutoCalibrator(
        candidates=candidates, cv=cv, scoring=scoring, seed=seed, n_bins=n_bins
    ).fit(X, y, sample_weight)
