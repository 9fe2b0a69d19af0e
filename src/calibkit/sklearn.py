"""``CalibratedClassifier``: any scikit-learn classifier, cross-fitted with a calibkit calibrator.

It works like scikit-learn's :class:`~sklearn.calibration.CalibratedClassifierCV`: ``cv`` splits
the training data; on each split a clone of the estimator is fitted on the training part and a
calibrator on its scores of the held-out part. ``ensemble=True`` keeps the ``cv`` (estimator,
calibrator) pairs and averages their calibrated probabilities; ``ensemble=False`` fits one
calibrator on the out-of-fold scores of all rows and the estimator once on all data.

What the calibrator is fed (``input_kind`` of the calibrator, see
:mod:`calibkit.calibrators.base`):

* **logit calibrators** (temperature, vector, matrix, Platt, ``"sigmoid"``): the estimator's
  ``decision_function`` when it has one with a usable shape (``(n,)`` for two classes: a binary
  logit; ``(n, K)``: class logits), otherwise ``log predict_proba`` (log-probabilities, a
  probability of 0 becoming ``log 1e-12``);
* **probability calibrators** (isotonic, histogram, beta, Dirichlet): ``predict_proba`` when the
  estimator has it, otherwise the softmax (sigmoid for two classes) of ``decision_function``.

Matching scikit-learn. ``CalibratedClassifierCV(method="sigmoid")`` feeds ``decision_function``
(else the ``predict_proba`` column) to Platt's model with Platt's Bayesian targets; here
``method="sigmoid"`` is :class:`~calibkit.calibrators.PlattScaling` with
``prior_correction=True``, and on an estimator with a ``decision_function`` (logistic
regression, linear SVMs) both see the same scores, so the probabilities agree (to the
optimisers' tolerance, about 1e-7). ``method="platt"`` is plain maximum likelihood (calibkit's
default). ``CalibratedClassifierCV(method="isotonic")`` also fits the raw ``decision_function``
when there is one, where calibkit's isotonic takes probabilities; on an estimator with only
``predict_proba`` (naive Bayes, random forests, k-NN) both see the same probabilities and agree
exactly. Same ``cv`` (an int uses scikit-learn's ``StratifiedKFold`` without shuffling, as
scikit-learn does) and the same ``ensemble`` give the same folds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils import _safe_indexing, get_tags
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, indexable

from calibkit._math import probs_to_logits, sigmoid, softmax

__all__ = ["CalibratedClassifier"]


def _make(method: Any) -> Any:
    """A new calibrator for ``method`` (a name, ``"sigmoid"``, ``"auto"`` or an instance)."""
    from calibkit.calibrators.base import Calibrator

    if isinstance(method, Calibrator):
        return clone(method)
    if not isinstance(method, str):
        raise ValueError(f"method must be a calibrator name or a Calibrator; got {method!r}")
    name = method.lower().strip()
    if name == "sigmoid":
        from calibkit.calibrators import PlattScaling

        return PlattScaling(prior_correction=True)
    from calibkit.calibrators.registry import CALIBRATORS, make_calibrator

    if name == "auto" and "auto" not in CALIBRATORS:
        raise ValueError(
            "method='auto' needs calibkit.calibrators.select (the 'auto' calibrator), which this "
            "calibkit does not have; choose a method: " + ", ".join(["sigmoid", *CALIBRATORS])
        )
    return make_calibrator(name)


def _scores(est: Any, X: Any, kind: str, n_classes: int) -> NDArray[np.float64]:
    """The estimator's scores of ``X`` as the calibrator wants them (see the module docstring)."""
    z = None
    if hasattr(est, "decision_function"):
        d = np.asarray(est.decision_function(X), dtype=np.float64)
        if (d.ndim == 1 and n_classes == 2) or (d.ndim == 2 and d.shape[1] == n_classes > 2):
            z = d
    has_proba = hasattr(est, "predict_proba")
    if kind == "logits":
        if z is not None:
            return z
        if has_proba:
            return probs_to_logits(np.asarray(est.predict_proba(X), dtype=np.float64))
    else:
        if has_proba:
            return np.asarray(est.predict_proba(X), dtype=np.float64)
        if z is not None:
            if z.ndim == 1:
                p1 = sigmoid(z)
                return np.stack([1.0 - p1, p1], axis=1)
            return softmax(z, axis=1)
    raise ValueError(
        f"{type(est).__name__} has neither predict_proba nor a decision_function of shape "
        f"(n,) / (n, {n_classes}); it cannot be calibrated"
    )


def _subset(v: Any, idx: NDArray[np.intp], n: int) -> Any:
    """Row subset of a fit parameter that has one entry per sample; others pass unchanged."""
    if hasattr(v, "__len__") and not isinstance(v, str | bytes | dict) and len(v) == n:
        return _safe_indexing(v, idx)
    return v


class CalibratedClassifier(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """A scikit-learn classifier with cross-fitted calibrated probabilities.

    Parameters
    ----------
    estimator : classifier, default None
        Any scikit-learn classifier with ``decision_function`` or ``predict_proba``; ``None``
        uses ``LogisticRegression()``. Cloned, never modified.
    method : str or Calibrator, default "temperature"
        A calibkit calibrator name (``"temperature"``, ``"vector"``, ``"matrix"``, ``"platt"``,
        ``"isotonic"``, ``"histogram"``, ``"beta"``, ``"dirichlet"``), ``"sigmoid"`` (Platt with
        scikit-learn's prior correction), ``"auto"`` (cross-validated choice, when
        :mod:`calibkit.calibrators.select` is available), or an unfitted calibrator instance
        (cloned per fold).
    cv : int, cross-validation generator or iterable, default 5
        As in scikit-learn (``check_cv``): an int is ``StratifiedKFold(cv)``.
    ensemble : bool, default True
        Average ``cv`` (estimator, calibrator) pairs, or fit one calibrator on out-of-fold
        scores and the estimator on all data.

    Attributes
    ----------
    classes_ : (K,) array
        The class labels.
    calibrated_classifiers_ : list of (estimator, calibrator) pairs
        ``cv`` pairs with ``ensemble=True``, one otherwise.
    n_features_in_, feature_names_in_ : from the fitted estimator, when it has them.
    """

    def __init__(
        self,
        estimator: Any = None,
        method: Any = "temperature",
        cv: Any = 5,
        ensemble: bool = True,
    ) -> None:
        self.estimator = estimator
        self.method = method
        self.cv = cv
        self.ensemble = ensemble

    def _estimator(self) -> Any:
        if self.estimator is None:
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression()
        return self.estimator

    def fit(
        self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None, **fit_params: Any
    ) -> CalibratedClassifier:
        """Cross-fit estimator and calibrator.

        Parameters
        ----------
        X : (n, d) features, anything the estimator accepts
        y : (n,) class labels
        sample_weight : (n,), optional
            Passed to the estimator's ``fit`` (when it accepts them) and to the calibrator.
        **fit_params
            Passed to the estimator's ``fit`` (per-sample arrays are split with the folds).
        """
        from inspect import signature

        from sklearn.model_selection import check_cv
        from sklearn.preprocessing import LabelEncoder

        if not isinstance(self.ensemble, bool | np.bool_):
            raise ValueError(f"ensemble must be True or False; got {self.ensemble!r}")
        _make(self.method)  # a bad method fails before any fitting
        check_classification_targets(y)
        X, y = indexable(X, y)
        y = np.asarray(y)
        n = len(y)
        if n < 2:
            raise ValueError(f"n_samples={n}: cross-fitting needs at least 2 samples per fold")
        le = LabelEncoder().fit(y)
        self.classes_ = le.classes_
        k = len(self.classes_)
        if k < 2:
            raise ValueError(
                f"y has a single class ({self.classes_[0]!r}); calibration needs at least two classes"
            )
        y_enc = le.transform(y).astype(np.int64)
        est = self._estimator()
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if sw is not None and sw.shape != (n,):
            raise ValueError(f"sample_weight must have shape ({n},); got {sw.shape}")
        if sw is not None and "sample_weight" in signature(est.fit).parameters:
            fit_params = {**fit_params, "sample_weight": sw}
        n_folds = self.cv if isinstance(self.cv, int) else getattr(self.cv, "n_splits", None)
        if isinstance(n_folds, int) and np.bincount(y_enc).min() < n_folds:
            raise ValueError(
                f"{n_folds}-fold cross-validation needs at least {n_folds} examples of every "
                f"class; the smallest class has {int(np.bincount(y_enc).min())}"
            )
        splits = list(check_cv(self.cv, y, classifier=True).split(X, y))

        def fit_on(idx: NDArray[np.intp]) -> Any:
            e = clone(est).fit(
                _safe_indexing(X, idx),
                y[idx],
                **{key: _subset(v, idx, n) for key, v in fit_params.items()},
            )
            if not np.array_equal(np.asarray(e.classes_), self.classes_):
                raise ValueError(
                    f"a training fold of {len(idx)} rows lacks some classes (the estimator saw "
                    f"{list(e.classes_)}, y has {list(self.classes_)}); use fewer folds or "
                    "stratified splits"
                )
            return e

        kind = _make(self.method).input_kind
        pairs: list[tuple[Any, Any]] = []
        if self.ensemble:
            for train, test in splits:
                e = fit_on(train)
                cal = _make(self.method).fit(
                    _scores(e, _safe_indexing(X, test), kind, k),
                    y_enc[test],
                    None if sw is None else sw[test],
                )
                pairs.append((e, cal))
        else:
            oof: NDArray[np.float64] | None = None
            for train, test in splits:
                z = _scores(fit_on(train), _safe_indexing(X, test), kind, k)
                if oof is None:
                    oof = np.full((n, *z.shape[1:]), np.nan)
                oof[test] = z
            assert oof is not None
            seen = ~np.isnan(oof.reshape(n, -1)).any(axis=1)
            if not seen.any():
                raise ValueError("the cross-validation splits have no test rows")
            cal = _make(self.method).fit(oof[seen], y_enc[seen], None if sw is None else sw[seen])
            pairs.append((fit_on(np.arange(n)), cal))
        self.calibrated_classifiers_ = pairs
        first = pairs[0][0]
        for attr in ("n_features_in_", "feature_names_in_"):
            if hasattr(first, attr):
                setattr(self, attr, getattr(first, attr))
        return self

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated class probabilities ``(n, K)``, columns in ``classes_`` order."""
        check_is_fitted(self, "calibrated_classifiers_")
        k = len(self.classes_)
        total: NDArray[np.float64] | None = None
        for e, cal in self.calibrated_classifiers_:
            p = cal.predict_proba(_scores(e, X, cal.input_kind, k))
            total = p if total is None else total + p
        assert total is not None
        return total / len(self.calibrated_classifiers_)

    def predict_log_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """``log predict_proba(X)`` (``-inf`` for a probability of exactly 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """The class of highest calibrated probability, ``(n,)``."""
        check_is_fitted(self, "calibrated_classifiers_")
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        inner = get_tags(self._estimator())
        tags.input_tags.sparse = inner.input_tags.sparse
        tags.input_tags.allow_nan = inner.input_tags.allow_nan
        return tags
