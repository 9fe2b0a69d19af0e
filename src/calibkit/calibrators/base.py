"""``Calibrator``: the scikit-learn style base class every calibrator derives from.

A calibrator maps uncalibrated scores to calibrated ``(n, K)`` probabilities.

* ``input_kind = "logits"`` (temperature, vector, matrix, Platt): ``X`` is ``(n, K)`` class
  logits or ``(n,)`` binary logits ``log p / (1 - p)``.
* ``input_kind = "probs"`` (isotonic, histogram, beta, Dirichlet): ``X`` is ``(n, K)`` rows on
  the simplex or ``(n,)`` = ``P(y = 1)``.

Labels ``y`` are integer class indices ``0..K-1`` (``{0, 1}`` for 1-D binary input). Whatever the
input, ``predict_proba`` returns ``(n, K)`` (``K = 2`` for 1-D input). A calibrator fitted on a
1-D binary input must be applied to 1-D input; one fitted on ``(n, K)`` needs ``K`` columns.
``fit`` needs at least two distinct classes in ``y`` (``ValueError`` otherwise); a class absent
from ``y`` gets (near-)zero probability from the one-vs-rest and vector/matrix calibrators.

Fitted calibrators serialise to a small JSON file (:meth:`Calibrator.save`, :func:`load`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from calibkit._math import log_softmax, probs_to_logits
from calibkit._validation import check_labels, check_logits, check_probs
from calibkit.scores import Scores

__all__ = ["Calibrator", "from_dict", "load"]

InputKind = Literal["logits", "probs"]

#: every concrete calibrator class by its class name, for :func:`load`
_CLASSES: dict[str, type[Calibrator]] = {}

_FORMAT_KEY = "calibkit_calibrator"
_FORMAT_VERSION = 1


class Calibrator(BaseEstimator):
    """Base class: validation, ``predict``, ``calibrate(Scores)``, JSON ``save``/:func:`load`.

    Subclasses set ``input_kind`` and implement ``_fit(X, y, w)`` and ``_predict_proba(X)`` on
    validated arrays (``X`` as given: ``(n,)`` or ``(n, K)``; ``w`` validated non-negative
    sample weights, or ``None`` for uniform weights).

    Fitted attributes common to all calibrators
    -------------------------------------------
    n_classes_ : int
        ``K`` (2 for 1-D binary input).
    binary_input_ : bool
        Whether ``fit`` saw a 1-D binary input.
    classes_ : (K,) int64
        ``0..K-1``.
    """

    input_kind: ClassVar[InputKind] = "logits"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            _CLASSES[cls.__name__] = cls

    # ------------------------------------------------------------------ to implement
    def _fit(
        self, X: NDArray[np.float64], y: NDArray[np.int64], w: NDArray[np.float64] | None
    ) -> None:
        raise NotImplementedError

    def _predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        raise NotImplementedError

    # ------------------------------------------------------------------ validation
    def _check_X(self, X: ArrayLike, name: str = "X") -> NDArray[np.float64]:
        if self.input_kind == "logits":
            z = np.asarray(X, dtype=np.float64)
            check_logits(z[:1] if z.ndim else z, name=name)  # shape checks, cheap
            if np.isfinite(np.sum(z)):  # one pass: a finite sum has no NaN or inf term
                return z
            check_logits(z, name=name)  # NaN / +inf with the shared messages
            if np.any(np.isneginf(z)):
                raise ValueError(
                    f"{name} contains -inf logits; {type(self).__name__} needs finite logits "
                    "(clip them, e.g. np.maximum(logits, -1e4))"
                )
            return z
        return check_probs(X, name=name)

    def _check_fit_input(
        self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None
    ) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64] | None]:
        x = self._check_X(X)
        k = 2 if x.ndim == 1 else int(x.shape[1])
        yy = check_labels(y, x.shape[0], k, name="y")
        if np.unique(yy).size < 2:
            raise ValueError(
                f"y contains a single class ({int(yy[0])}); calibration needs labels of at "
                "least two classes"
            )
        w = _check_weights(sample_weight, x.shape[0])
        self.n_classes_ = k
        self.binary_input_ = x.ndim == 1
        self.classes_ = np.arange(k, dtype=np.int64)
        return x, yy, w

    def _check_predict_input(self, X: ArrayLike) -> NDArray[np.float64]:
        check_is_fitted(self, "n_classes_")
        x = self._check_X(X)
        if self.binary_input_ and x.ndim != 1:
            raise ValueError(
                f"X has shape {x.shape} but {type(self).__name__} was fitted on 1-D binary "
                f"{self.input_kind} (n,)"
            )
        if not self.binary_input_ and (x.ndim != 2 or x.shape[1] != self.n_classes_):
            raise ValueError(
                f"X has shape {x.shape} but {type(self).__name__} was fitted on "
                f"{self.n_classes_} columns (n, {self.n_classes_})"
            )
        return x

    # ------------------------------------------------------------------ public API
    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Self:
        """Fit on uncalibrated scores.

        Parameters
        ----------
        X : (n, K) or (n,) array
            Logits if ``input_kind == "logits"``, probabilities if ``"probs"`` (see module doc).
        y : (n,) int
            Class indices ``0..K-1`` (``{0, 1}`` for 1-D ``X``).
        sample_weight : (n,) array, optional
            Non-negative weights.
        """
        x, yy, w = self._check_fit_input(X, y, sample_weight)
        self._fit(x, yy, w)
        return self

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated probabilities ``(n, K)`` (``K = 2`` for 1-D input); rows sum to 1."""
        return self._predict_proba(self._check_predict_input(X))

    def predict(self, X: ArrayLike) -> NDArray[np.int64]:
        """Calibrated argmax class ``(n,)``."""
        return np.argmax(self.predict_proba(X), axis=1).astype(np.int64)

    def _scores_input(self, scores: Scores) -> NDArray[np.float64]:
        check_is_fitted(self, "n_classes_")
        if self.binary_input_:
            if scores.n_classes != 2:
                raise ValueError(
                    f"{type(self).__name__} was fitted on binary scores; these Scores have "
                    f"{scores.n_classes} classes"
                )
            if self.input_kind == "logits":
                return np.asarray(scores.logits[:, 1] - scores.logits[:, 0])
            return np.asarray(scores.probs[:, 1])
        return np.asarray(scores.logits if self.input_kind == "logits" else scores.probs)

    def fit_scores(self, scores: Scores, sample_weight: ArrayLike | None = None) -> Self:
        """Fit on labelled :class:`~calibkit.Scores` (its logits or probabilities, per ``input_kind``)."""
        x = np.asarray(scores.logits if self.input_kind == "logits" else scores.probs)
        return self.fit(x, scores.require_labels(), sample_weight)

    def calibrate(self, scores: Scores) -> Scores:
        """Calibrated copy of ``scores``: logits become calibrated log-probabilities.

        Logit calibrators read ``scores.logits``, probability calibrators ``scores.probs``
        (a calibrator fitted on 1-D binary input reads the positive-class column of 2-class
        Scores). Labels, classes and ids are kept; ``meta["calibrator"]`` names the calibrator.
        """
        x = self._scores_input(scores)
        if hasattr(self, "predict_logits"):
            z = self.predict_logits(x)
            if z.ndim == 1:
                z = np.stack([np.zeros_like(z), z], axis=1)
            new = log_softmax(z, axis=1)
        else:
            new = probs_to_logits(self.predict_proba(x))
        return scores.with_logits(new, calibrator=type(self).__name__)

    # ------------------------------------------------------------------ persistence
    def _fitted_attributes(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: class name, hyper-parameters and fitted arrays."""
        from calibkit import __version__

        return {
            _FORMAT_KEY: _FORMAT_VERSION,
            "class": type(self).__name__,
            "calibkit_version": __version__,
            "params": _encode(self.get_params(deep=False)),
            "fitted": _encode(self._fitted_attributes()),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the calibrator (parameters and fitted state) to a JSON file, atomically."""
        from calibkit._atomic import atomic_write

        path = Path(path)
        text = json.dumps(self.to_dict(), indent=1, allow_nan=True)
        with atomic_write(path) as tmp:
            tmp.write_text(text)
        return path


def from_dict(d: dict[str, Any]) -> Calibrator:
    """Rebuild a calibrator from :meth:`Calibrator.to_dict` output."""
    if not isinstance(d, dict) or d.get(_FORMAT_KEY) is None:
        raise ValueError(f"not a calibkit calibrator file (missing {_FORMAT_KEY!r} key)")
    if d[_FORMAT_KEY] != _FORMAT_VERSION:
        raise ValueError(f"unsupported calibrator file version {d[_FORMAT_KEY]!r}")
    name = d.get("class")
    if name not in _CLASSES:
        raise ValueError(f"unknown calibrator class {name!r}; known: {sorted(_CLASSES)}")
    cls = _CLASSES[name]
    try:
        obj = cls(**_decode(d.get("params", {})))
    except TypeError as exc:
        raise ValueError(f"bad parameters for {name}: {exc}") from exc
    for k, v in _decode(d.get("fitted", {})).items():
        setattr(obj, k, v)
    return obj


def load(path: str | os.PathLike[str]) -> Calibrator:
    """Load a calibrator written by :meth:`Calibrator.save`."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    return from_dict(d)


# ---------------------------------------------------------------------- helpers
def _check_weights(sample_weight: ArrayLike | None, n: int) -> NDArray[np.float64] | None:
    """Validate sample weights: ``(n,)``, finite, non-negative, positive sum."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},); got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("sample_weight contains NaN or infinite values")
    if np.any(w < 0):
        raise ValueError("sample_weight must be non-negative")
    total = w.sum()
    if total <= 0:
        raise ValueError("sample_weight sums to zero")
    return w


def normalized(w: NDArray[np.float64] | None) -> NDArray[np.float64] | None:
    """Weights rescaled to sum to 1 (``None`` stays ``None``: uniform)."""
    return None if w is None else w / w.sum()


def _encode(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return {"__ndarray__": v.tolist(), "dtype": str(v.dtype), "shape": list(v.shape)}
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, dict):
        return {str(k): _encode(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return {"__list__": [_encode(x) for x in v]}
    if v is None or isinstance(v, str | int | float | bool):
        return v
    raise TypeError(f"cannot serialise {type(v).__name__} to JSON")


def _decode(v: Any) -> Any:
    if isinstance(v, dict):
        if "__ndarray__" in v:
            return np.asarray(v["__ndarray__"], dtype=v["dtype"]).reshape(v["shape"])
        if "__list__" in v:
            return [_decode(x) for x in v["__list__"]]
        return {k: _decode(x) for k, x in v.items()}
    return v
