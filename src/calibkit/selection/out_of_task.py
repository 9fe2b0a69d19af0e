"""Out-of-task calibration when the target task has no labels (paper 001, section 2.2.1).

* **ALL-OOT** (:func:`all_oot_sources`): fit the calibrator on the pooled labeled scores of every
  other task.
* **SIM-OOT** (:func:`sim_oot_sources`): fit it only on the other tasks in the target's cluster,
  tasks being clustered by sentence embeddings (:mod:`calibkit.selection.embedding`,
  :mod:`calibkit.selection.cluster`). The clustering sees only texts, never labels, so the target
  can be clustered too.

:class:`OutOfTaskCalibrator` pools the source tasks and fits one calibrator on them.

Transfer across tasks with different numbers of classes
-------------------------------------------------------
In the paper every task is a binary yes/no question, so the two logits ``(no, yes)`` mean the same
thing in every task and a vector-scaling calibrator ``softmax(A x + B)`` (per-position ``A``, ``B``)
transfers as is. calibkit keeps that when it can and falls back to a K-free form when it cannot:

``form="classes"``
    Pool only the sources with the target's number of classes ``K`` and fit on their ``(n, K)``
    logits, column ``j`` of every task being taken to mean the same thing (true for a suite of
    yes/no tasks whose classes are all ``("no", "yes")``).
``form="top_label"``
    Reduce every task to the binary problem "is the LLM's answer right?": the features are
    ``[log(1 - s), log s]`` with ``s`` the top-label (answer) confidence and the label is the hit.
    Any K pools with any other. Temperature scaling here gives ``s^t / (s^t + (1 - s)^t)`` and
    vector scaling a two-parameter logistic map of ``log s`` and ``log(1 - s)``; only the
    calibrated score of the answer, which is all that ACE of paper 001 uses, is produced.
``form="auto"`` (default)
    ``classes`` with the same-K sources when there is at least one, otherwise ``top_label`` with
    all sources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._math import softmax
from calibkit._validation import check_logits
from calibkit.scores import Scores
from calibkit.selection.cluster import cluster_tasks, nearest_tasks

__all__ = [
    "METHOD_ALIASES",
    "OutOfTaskCalibrator",
    "all_oot_sources",
    "make_method",
    "sim_oot_sources",
    "top_label_form",
]

Form = Literal["auto", "classes", "top_label"]

#: Paper names of the two softmax scaling variants -> calibkit.calibrators names.
METHOD_ALIASES = {"ST": "temperature", "SV": "vector"}

_EPS = 1e-12


# --------------------------------------------------------------------------- source selection
def _check_names(target: str, names: Sequence[str]) -> list[str]:
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError("task names must be unique")
    if target not in names:
        raise ValueError(f"target task {target!r} is not among the tasks {names}")
    return names


def all_oot_sources(target: str, names: Sequence[str]) -> list[str]:
    """**ALL-OOT**: every task except ``target`` (in the given order)."""
    names = _check_names(target, names)
    out = [n for n in names if n != target]
    if not out:
        raise ValueError("out-of-task calibration needs at least one task besides the target")
    return out


def sim_oot_sources(
    target: str,
    names: Sequence[str],
    embeddings: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    n_clusters: int | None = None,
    method: Literal["agglomerative", "kmeans"] = "agglomerative",
    min_sources: int = 1,
    seed: int = 0,
) -> list[str]:
    """**SIM-OOT**: the other tasks in the target's cluster, most similar first.

    Parameters
    ----------
    target : str
    names : sequence of str
        All tasks, the target included, in the row order of ``embeddings``.
    embeddings : (T, d)
        Task embeddings (:func:`calibkit.selection.embedding.task_embedding`).
    labels : (T,) int, optional
        Precomputed cluster labels; otherwise :func:`cluster_tasks` is called with
        ``n_clusters``, ``method`` and ``seed``.
    min_sources : int
        If the cluster holds fewer other tasks than this (e.g. the target is alone), the nearest
        tasks by cosine similarity are added until there are ``min_sources``.

    Returns
    -------
    list of task names (never the target).
    """
    names = _check_names(target, names)
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != len(names):
        raise ValueError(f"embeddings must be ({len(names)}, d) to match names; got {emb.shape}")
    if len(names) < 2:
        raise ValueError("out-of-task calibration needs at least one task besides the target")
    if min_sources < 0:
        raise ValueError(f"min_sources must be >= 0; got {min_sources}")
    if labels is None:
        lab = cluster_tasks(emb, n_clusters, method=method, seed=seed)
    else:
        lab = np.asarray(labels)
        if lab.shape != (len(names),):
            raise ValueError(f"labels must have shape ({len(names)},); got {lab.shape}")
    t = names.index(target)
    ranked = nearest_tasks(emb, t)
    same = [int(i) for i in ranked if lab[i] == lab[t]]
    for i in ranked:
        if len(same) >= min(min_sources, len(names) - 1):
            break
        if int(i) not in same:
            same.append(int(i))
    return [names[i] for i in same]


# --------------------------------------------------------------------------- calibrator plumbing
def make_method(method: Any, **kwargs: Any) -> Any:
    """An unfitted calibrator from a name (``"ST"``, ``"SV"`` or any
    :func:`calibkit.calibrators.make_calibrator` name) or a clone of an unfitted estimator."""
    if isinstance(method, str):
        from calibkit.calibrators import make_calibrator

        name = METHOD_ALIASES.get(method.upper(), method)
        return make_calibrator(name, **kwargs)
    if not hasattr(method, "fit") or not hasattr(method, "predict_proba"):
        raise ValueError(f"method must be a calibrator name or an estimator; got {method!r}")
    from sklearn.base import clone

    est = clone(method)
    if kwargs:
        est.set_params(**kwargs)
    return est


def _fit_input(est: Any, logits: NDArray[np.float64]) -> NDArray[np.float64]:
    """What the calibrator's ``fit``/``predict_proba`` takes: logits or probabilities."""
    if getattr(est, "input_kind", "logits") == "probs":
        return softmax(logits, axis=1)
    return logits


def top_label_form(
    logits: ArrayLike, labels: ArrayLike | None = None
) -> tuple[NDArray[np.float64], NDArray[np.int64] | None]:
    """Binary "is the answer right?" view of ``(n, K)`` class logits.

    Returns
    -------
    features : (n, 2) float64
        ``[log(1 - s), log(s)]`` with ``s`` the softmax probability of the argmax class.
    hit : (n,) int64 or None
        ``1`` where the argmax equals ``labels`` (``None`` when no labels are given).
    """
    z = check_logits(logits)
    if z.ndim != 2:
        raise ValueError(f"logits must be (n, K); got shape {z.shape}")
    p = softmax(z, axis=1)
    a = np.argmax(p, axis=1)
    s = np.clip(p[np.arange(p.shape[0]), a], _EPS, 1.0 - _EPS)
    feats = np.stack([np.log1p(-s), np.log(s)], axis=1)
    if labels is None:
        return feats, None
    y = np.asarray(labels)
    if y.shape != a.shape:
        raise ValueError(f"labels must have shape {a.shape}; got {y.shape}")
    return feats, (a == y).astype(np.int64)


class OutOfTaskCalibrator:
    """One calibrator fitted on the pooled labeled scores of other tasks.

    Parameters
    ----------
    method : str or estimator
        ``"ST"`` / ``"temperature"``, ``"SV"`` / ``"vector"``, any
        :func:`calibkit.calibrators.make_calibrator` name, or an unfitted estimator (cloned).
    form : "auto", "classes" or "top_label"
        How tasks with different numbers of classes pool; see the module docstring.
    calibrator_kwargs : dict, optional
        Passed to the calibrator.

    Attributes
    ----------
    form_ : "classes" or "top_label"
    calibrator_ : the fitted calibrator
    sources_ : list of str
        Names of the source tasks actually pooled.
    n_classes_ : int or None
        K of the pooled tasks in the ``classes`` form.
    n_items_ : int
    """

    def __init__(
        self,
        method: Any = "temperature",
        *,
        form: Form = "auto",
        calibrator_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.method = method
        self.form = form
        self.calibrator_kwargs = calibrator_kwargs

    def fit(
        self, sources: Mapping[str, Scores] | Sequence[Scores], n_classes: int | None = None
    ) -> OutOfTaskCalibrator:
        """Pool ``sources`` (labeled Scores) and fit.

        Parameters
        ----------
        sources : mapping name -> Scores, or sequence of Scores
        n_classes : int, optional
            The target task's number of classes; needed by the ``classes`` and ``auto`` forms.
        """
        if self.form not in ("auto", "classes", "top_label"):
            raise ValueError(f"form must be 'auto', 'classes' or 'top_label'; got {self.form!r}")
        items = (
            [(str(k), v) for k, v in sources.items()]
            if isinstance(sources, Mapping)
            else [(f"source_{i}", v) for i, v in enumerate(sources)]
        )
        if not items:
            raise ValueError("sources is empty: out-of-task calibration needs at least one task")
        for name, sc in items:
            if not isinstance(sc, Scores):
                raise ValueError(
                    f"source {name!r} must be a calibkit Scores; got {type(sc).__name__}"
                )
            sc.require_labels()
        form = self.form
        same = [(n, s) for n, s in items if n_classes is not None and s.n_classes == n_classes]
        if form in ("auto", "classes") and n_classes is None:
            raise ValueError(f"form={form!r} needs the target's n_classes")
        if form == "classes" and not same:
            raise ValueError(
                f"no source task has {n_classes} classes; use form='top_label' or 'auto' to pool "
                "tasks with a different number of classes"
            )
        if form == "auto":
            form = "classes" if same else "top_label"
        est = make_method(self.method, **dict(self.calibrator_kwargs or {}))
        if form == "classes":
            used = same
            x = np.concatenate([s.logits for _, s in used])
            y = np.concatenate([s.require_labels() for _, s in used])
            self.n_classes_: int | None = n_classes
        else:
            used = items
            parts = [top_label_form(s.logits, s.require_labels()) for _, s in used]
            x = np.concatenate([f for f, _ in parts])
            y = np.concatenate([h for _, h in parts if h is not None])
            self.n_classes_ = None
        est.fit(_fit_input(est, x), y)
        self.calibrator_ = est
        self.form_ = form
        self.sources_ = [n for n, _ in used]
        self.n_items_ = int(x.shape[0])
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "calibrator_"):
            raise ValueError("this OutOfTaskCalibrator is not fitted yet; call fit(sources) first")

    def predict_proba(self, logits: ArrayLike) -> NDArray[np.float64]:
        """Calibrated ``(n, K)`` class probabilities of target logits (``classes`` form only)."""
        self._check_fitted()
        if self.form_ != "classes":
            raise ValueError(
                "a top_label-form calibrator only calibrates the answer's score; "
                "use answer_confidence(logits)"
            )
        z = check_logits(logits)
        if z.ndim != 2 or z.shape[1] != self.n_classes_:
            raise ValueError(f"logits must be (n, {self.n_classes_}); got shape {z.shape}")
        return np.asarray(
            self.calibrator_.predict_proba(_fit_input(self.calibrator_, z)), dtype=np.float64
        )

    def answer_confidence(self, logits: ArrayLike) -> NDArray[np.float64]:
        """Calibrated score ``s = z_a`` of the LLM's answer ``a = argmax(logits)``.

        Parameters
        ----------
        logits : (n, K) uncalibrated class logits of the target task (not probabilities)

        Returns
        -------
        (n,) float64 probabilities.
        """
        self._check_fitted()
        z = check_logits(logits)
        if z.ndim != 2:
            raise ValueError(f"logits must be (n, K); got shape {z.shape}")
        a = np.argmax(z, axis=1)
        if self.form_ == "classes":
            return self.predict_proba(z)[np.arange(z.shape[0]), a]
        feats, _ = top_label_form(z)
        p = np.asarray(
            self.calibrator_.predict_proba(_fit_input(self.calibrator_, feats)), dtype=np.float64
        )
        return p[:, 1]
