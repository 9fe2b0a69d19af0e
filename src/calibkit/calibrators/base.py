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
Loading validates everything it reads (:func:`from_dict`): the hyper-parameters as ``fit`` does,
and the fitted state (field present and of the right type, shapes consistent with the class
count, numbers finite, a temperature positive, isotonic / histogram maps monotone and inside
[0, 1] ...); a problem is a ``ValueError`` naming the file and the field, e.g.
``cal.json: field 'fitted.temperature_' must be a positive finite number, got -2.0``.

:meth:`Calibrator.fingerprint` is a stable hash of the class, parameters and fitted state;
:meth:`Calibrator.calibrate` appends ``{"method", "fingerprint"}`` to
``meta["calibrated_by"]`` of the Scores it returns, and warns when its input already had one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, NoReturn, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from calibkit._math import log_softmax, probs_to_logits
from calibkit._validation import check_labels, check_logits, check_probs
from calibkit.scores import Scores

__all__ = ["Calibrator", "FieldCheck", "from_dict", "load"]

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
    n_features_in_ : int
        Columns of ``X`` seen by ``fit`` (1 for 1-D binary input), as scikit-learn expects.
    """

    input_kind: ClassVar[InputKind] = "logits"
    #: names of the fitted attributes a saved calibrator must hold (besides the common ones)
    _fitted_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            _CLASSES[cls.__name__] = cls

    def __sklearn_tags__(self) -> Any:
        """scikit-learn tags: a classifier (stratified CV folds, ``is_classifier``) that takes
        ``(n, K)`` scores or 1-D binary scores and needs ``y``."""
        from sklearn.utils import ClassifierTags

        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        tags.target_tags.required = True
        tags.input_tags.one_d_array = True
        return tags

    # ------------------------------------------------------------------ to implement
    def _fit(
        self, X: NDArray[np.float64], y: NDArray[np.int64], w: NDArray[np.float64] | None
    ) -> None:
        raise NotImplementedError

    def _predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        raise NotImplementedError

    def _validate_params(self, check: FieldCheck) -> None:
        """Check the hyper-parameters (``check.fail`` names the parameter); run by ``fit`` and on
        load. Subclasses with parameters override it."""

    def _validate_fitted(self, check: FieldCheck) -> None:
        """Check (and normalise) the class-specific fitted attributes of a loaded calibrator; the
        common ones (``n_classes_``, ``binary_input_``, ``classes_``) are checked before."""

    def _n_maps(self) -> int:
        """Binary maps of a one-vs-rest calibrator: 1 for a 2-class problem, ``K`` otherwise."""
        return 1 if self.n_classes_ == 2 else int(self.n_classes_)

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
        self.n_features_in_ = 1 if x.ndim == 1 else k
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
        self._validate_params(FieldCheck(type(self).__name__, params=True))
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
        Scores). Labels, classes, ids and per-item fields are kept; ``meta["calibrator"]`` names
        the calibrator and ``meta["calibrated_by"]`` gets ``{"method": class name,
        "fingerprint": self.fingerprint()}`` appended (provenance). Scores that already carry a
        ``calibrated_by`` entry are calibrated again, with a ``UserWarning``: a calibrator fitted
        on uncalibrated scores does not fit calibrated ones.
        """
        prev = scores.meta.get("calibrated_by")
        if prev is not None and not isinstance(prev, list | tuple):
            raise ValueError(
                f"Scores.meta['calibrated_by'] must be a list of calibrations; got "
                f"{type(prev).__name__}"
            )
        prev = list(prev or [])
        if prev:
            names = ", ".join(
                str(p.get("method", "?")) if isinstance(p, dict) else str(p) for p in prev
            )
            warnings.warn(
                f"these Scores were already calibrated (by {names}); calibrating them again with "
                f"{type(self).__name__} compounds the two maps. Apply calibrators to the "
                "uncalibrated scores",
                UserWarning,
                stacklevel=2,
            )
        x = self._scores_input(scores)
        with np.errstate(over="ignore", invalid="ignore"):  # checked below, with a clear error
            if hasattr(self, "predict_logits"):
                z = self.predict_logits(x)
                if z.ndim == 1:
                    z = np.stack([np.zeros_like(z), z], axis=1)
                new = log_softmax(z, axis=1)
            else:
                new = probs_to_logits(self.predict_proba(x))
        entry = {"method": type(self).__name__, "fingerprint": self.fingerprint()}
        bad = np.isnan(new) | np.isposinf(new)
        if bad.any():
            i = int(np.argmax(bad.any(axis=1)))
            raise ValueError(
                f"{type(self).__name__} (fingerprint {entry['fingerprint']}) gave NaN or infinite "
                f"calibrated scores for {int(bad.any(axis=1).sum())} item(s), first item "
                f"{np.asarray(scores.ids[i]).item()!r}: its fitted state is degenerate for these "
                "scores"
            )
        return scores.with_logits(new, calibrator=type(self).__name__, calibrated_by=[*prev, entry])

    # ------------------------------------------------------------------ persistence
    def _fitted_attributes(self) -> dict[str, Any]:
        # n_features_in_ (scikit-learn's) follows from n_classes_ / binary_input_: not saved
        return {
            k: v
            for k, v in vars(self).items()
            if k.endswith("_") and not k.startswith("_") and k != "n_features_in_"
        }

    def fingerprint(self) -> str:
        """Stable id of this fitted calibrator: the first 16 hex digits of the SHA-256 of its
        class name, hyper-parameters and fitted state as canonical JSON (sorted keys, exact float
        repr). Equal before and after :meth:`save` / :func:`load`; independent of the calibkit
        version and of the file's formatting."""
        check_is_fitted(self, "n_classes_")
        state = {
            "class": type(self).__name__,
            "params": _encode(self.get_params(deep=False)),
            "fitted": _encode(self._fitted_attributes()),
        }
        text = json.dumps(state, sort_keys=True, separators=(",", ":"), allow_nan=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

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


def from_dict(d: dict[str, Any], *, source: str | None = None) -> Calibrator:
    """Rebuild a calibrator from :meth:`Calibrator.to_dict` output, validating every field.

    ``source`` (e.g. the file name) starts every error message; by default the class name does.
    Unknown top-level keys are ignored (the CLI stores its own there).

    Raises
    ------
    ValueError
        Naming the field: not a calibrator, unknown class, bad or unknown parameter, missing,
        unknown or malformed fitted field (wrong type or shape, not finite, out of range, not
        monotone where the map must be).
    """
    where = source or "calibrator"
    if not isinstance(d, dict):
        raise ValueError(f"{where}: not a calibkit calibrator (expected a JSON object)")
    if d.get(_FORMAT_KEY) is None:
        raise ValueError(f"{where}: not a calibkit calibrator file (missing {_FORMAT_KEY!r} key)")
    if d[_FORMAT_KEY] != _FORMAT_VERSION:
        raise ValueError(f"{where}: unsupported calibrator file version {d[_FORMAT_KEY]!r}")
    name = d.get("class")
    if not isinstance(name, str) or name not in _CLASSES:
        raise ValueError(f"{where}: unknown calibrator class {name!r}; known: {sorted(_CLASSES)}")
    cls = _CLASSES[name]
    where = source or name
    params = _decode(d.get("params", {}), "params", where)
    if not isinstance(params, dict):
        raise ValueError(f"{where}: field 'params' must be a JSON object")
    try:
        obj = cls(**params)
    except TypeError as exc:
        raise ValueError(f"{where}: bad field 'params' for {name}: {exc}") from None
    obj._validate_params(FieldCheck(where, prefix="params."))
    fitted = _decode(d.get("fitted"), "fitted", where)
    if not isinstance(fitted, dict):
        raise ValueError(
            f"{where}: field 'fitted' must be a JSON object (is the calibrator fitted?), got "
            f"{_show(fitted)}"
        )
    expected = ("n_classes_", "binary_input_", "classes_", *cls._fitted_fields)
    missing = [k for k in expected if k not in fitted]
    if missing:
        raise ValueError(f"{where}: missing field 'fitted.{missing[0]}'")
    unknown = sorted(set(fitted) - set(expected))
    if unknown:
        raise ValueError(f"{where}: unknown field 'fitted.{unknown[0]}' for {name}")
    check = FieldCheck(where, prefix="fitted.")
    k = check.integer("n_classes_", fitted["n_classes_"], low=2)
    binary = check.boolean("binary_input_", fitted["binary_input_"])
    if binary and k != 2:
        check.fail("n_classes_", "2 for a calibrator fitted on 1-D binary input", k)
    classes = check.array("classes_", fitted["classes_"], (k,))
    if not np.array_equal(classes, np.arange(k)):
        check.fail("classes_", f"[0, 1, ..., {k - 1}]", fitted["classes_"])
    obj.n_classes_ = k
    obj.binary_input_ = binary
    obj.classes_ = np.arange(k, dtype=np.int64)
    obj.n_features_in_ = 1 if binary else k
    for key in cls._fitted_fields:
        setattr(obj, key, fitted[key])
    obj._validate_fitted(check)
    return obj


def load(path: str | os.PathLike[str]) -> Calibrator:
    """Load a calibrator written by :meth:`Calibrator.save`; errors name the file and field."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    return from_dict(d, source=str(path))


class FieldCheck:
    """Validation helpers whose errors name where a value came from.

    ``FieldCheck("cal.json", prefix="fitted.")`` raises
    ``ValueError("cal.json: field 'fitted.temperature_' must be ..., got ...")``;
    ``FieldCheck("VectorScaling", params=True)`` (at ``fit``) raises
    ``ValueError("VectorScaling: parameter 'max_iter' must be ..., got ...")``.
    """

    def __init__(self, where: str, *, prefix: str = "", params: bool = False) -> None:
        self.where = where
        self.prefix = prefix
        self.params = params

    def fail(self, name: str, what: str, got: Any) -> NoReturn:
        kind = "parameter" if self.params else "field"
        raise ValueError(
            f"{self.where}: {kind} '{self.prefix}{name}' must be {what}, got {_show(got)}"
        )

    def number(self, name: str, v: Any, *, low: float | None = None, strict: bool = False) -> float:
        """A finite real number (not a bool, list or string), ``> low`` (``strict``) or ``>= low``."""
        bound = "" if low is None else f" {'>' if strict else '>='} {low:g}"
        what = "a positive finite number" if low == 0 and strict else f"a finite number{bound}"
        if isinstance(v, bool | np.bool_) or not isinstance(
            v, int | float | np.integer | np.floating
        ):
            self.fail(name, what, v)
        x = float(v)
        if not math.isfinite(x) or (low is not None and (x <= low if strict else x < low)):
            self.fail(name, what, v)
        return x

    def integer(self, name: str, v: Any, *, low: int | None = None, high: int | None = None) -> int:
        """An int (not a bool or a float) in ``[low, high]``."""
        rng = "" if low is None else f" >= {low}"
        if high is not None:
            rng = f" in [{low}, {high:,}]"
        if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer):
            self.fail(name, f"an int{rng}", v)
        if (low is not None and v < low) or (high is not None and v > high):
            self.fail(name, f"an int{rng}", v)
        return int(v)

    def boolean(self, name: str, v: Any) -> bool:
        if not isinstance(v, bool | np.bool_):
            self.fail(name, "true or false", v)
        return bool(v)

    def choice(self, name: str, v: Any, options: Sequence[str]) -> str:
        if not isinstance(v, str) or v not in options:
            self.fail(name, "one of " + ", ".join(repr(o) for o in options), v)
        return v

    def array(
        self,
        name: str,
        v: Any,
        shape: tuple[int, ...],
        *,
        low: float | None = None,
        high: float | None = None,
        increasing: bool = False,
    ) -> NDArray[np.float64]:
        """A finite float64 array of ``shape`` (``-1`` = any length >= 1) with values in
        ``[low, high]``, non-decreasing when ``increasing``."""
        dims = " x ".join("n" if d < 0 else str(d) for d in shape)
        what = f"a numeric array of shape ({dims})" if len(shape) > 1 else f"{dims} numbers"
        if isinstance(v, np.ndarray) and v.dtype.kind in "iuf":
            a = v.astype(np.float64)
        elif isinstance(v, list) and all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in v
        ):
            a = np.asarray(v, dtype=np.float64)
        else:
            self.fail(name, f"an array of {what}", v)
        if a.ndim != len(shape) or any(d >= 0 and a.shape[i] != d for i, d in enumerate(shape)):
            self.fail(name, f"an array of {what}", _Text(f"shape {a.shape}"))
        if a.size == 0:
            self.fail(name, "a non-empty array", _Text("an empty array"))
        if not np.all(np.isfinite(a)):
            self.fail(name, "finite (no NaN or infinity)", v)
        if (low is not None and a.min() < low) or (high is not None and a.max() > high):
            lo = "-inf" if low is None else f"{low:g}"
            hi = "inf" if high is None else f"{high:g}"
            self.fail(
                name, f"within [{lo}, {hi}]", _Text(f"values from {a.min():.6g} to {a.max():.6g}")
            )
        if increasing and a.size > 1 and np.any(np.diff(a) < 0):
            i = int(np.argmax(np.diff(a) < 0))
            self.fail(
                name, "non-decreasing", _Text(f"{a[i]:.6g} followed by {a[i + 1]:.6g} at index {i}")
            )
        return a

    def arrays(self, name: str, v: Any, count: int) -> list[Any]:
        """A list of ``count`` entries (one per binary map)."""
        if not isinstance(v, list) or len(v) != count:
            got = _Text(f"{len(v)} entries") if isinstance(v, list) else v
            self.fail(name, f"a list of {count} arrays (one per map)", got)
        return v


class _Text(str):
    """A description shown as is in an error (other values are shown with ``repr``)."""


def _show(v: Any) -> str:
    if isinstance(v, _Text):
        text = str(v)
    elif isinstance(v, np.ndarray):
        text = repr(v.tolist())
    else:
        text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


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


_ARRAY_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "bool")


def _decode(v: Any, field: str = "", where: str = "calibrator") -> Any:
    """Inverse of :func:`_encode`; a malformed array or list names its field."""
    if isinstance(v, dict):
        if "__ndarray__" in v:
            dtype, shape = v.get("dtype"), v.get("shape")
            if dtype not in _ARRAY_DTYPES:
                raise ValueError(
                    f"{where}: field '{field}' has unsupported array dtype {dtype!r} "
                    f"(one of {', '.join(_ARRAY_DTYPES)})"
                )
            if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
            ):
                raise ValueError(f"{where}: field '{field}' has a malformed array shape {shape!r}")
            try:
                return np.asarray(v["__ndarray__"], dtype=dtype).reshape(shape)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"{where}: field '{field}' is not a {dtype} array of shape {shape}: {exc}"
                ) from None
        if "__list__" in v:
            items = v["__list__"]
            if not isinstance(items, list):
                raise ValueError(f"{where}: field '{field}' must hold a list")
            return [_decode(x, f"{field}[{i}]", where) for i, x in enumerate(items)]
        return {k: _decode(x, f"{field}.{k}" if field else k, where) for k, x in v.items()}
    return v
