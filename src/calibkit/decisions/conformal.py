r"""Split conformal prediction sets for classifiers and multiple-choice LLMs.

Every method scores each candidate label ``y`` of an item with a non-conformity score
``s(x, y)`` computed from the ``(n, K)`` class **probabilities** (softmax of the logits), and
keeps the labels whose score is at most the conformal quantile ``q`` of the calibration items'
true-label scores:

.. math:: C(x) = \{y : s(x, y) \le q\}, \qquad
          q = s_{(\lceil (n+1)(1-\alpha) \rceil)} \text{ (the k-th smallest of n scores)}

so that ``P(y_test in C(x_test)) >= 1 - alpha`` for exchangeable calibration and test items
(``q = inf`` and every set is full when ``n < 1/alpha - 1``).

``lac``  (Sadinle, Lei and Wasserman 2019) ``s = 1 - p_y``: the smallest sets on average.
``aps``  (Romano, Sesia and Candès 2020) ``s = sum of the probabilities ranked above y + u p_y``
         with ``u ~ U(0, 1)`` when ``randomized`` (coverage closest to ``1 - alpha``, sets may be
         empty) and ``u = 0`` otherwise: the mass ranked strictly above ``y``, so a set is the
         top labels up to and including the one whose cumulative mass crosses ``q`` (never
         empty). ``u = 1`` (the mass up to and including ``y``) is as valid but explodes on
         peaked models: 6.3 labels of 10 on the CIFAR-10 WideResNet at ``alpha = 0.1``, against
         1.0 with ``u = 0`` (see ``docs/decisions.md``).
``raps`` (Angelopoulos, Bates, Malik and Jordan 2021) APS plus ``lam * max(0, rank(y) - k_reg)``,
         which penalises long tails of unlikely labels (``rank`` is 1 for the top class).

Mondrian (class-conditional, ``mondrian=True``): one quantile per true class, from the
calibration items of that class, and ``y`` is kept when ``s(x, y) <= q_y``; each class then gets
``1 - alpha`` coverage on its own (Vovk et al. 2005).

Randomness (``u``) comes only from ``seed``: calibration and prediction draw from separate,
fixed streams, so the same inputs give the same sets. Ties in probabilities are broken by class
index (the order ``numpy.argsort`` gives on ``-p``, stable).

Pure functions (:func:`label_scores`, :func:`conformal_quantile`, :func:`prediction_sets`) take
any leading batch shape, which the validity tests use to run a thousand splits at once;
:class:`SplitConformal` is the thin stateful wrapper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit.decisions.risk import check_unit_interval
from calibkit.scores import Scores

__all__ = [
    "CONFORMAL_METHODS",
    "ConformalReport",
    "SplitConformal",
    "conformal_quantile",
    "evaluate_sets",
    "label_scores",
    "prediction_sets",
]

#: non-conformity scores of :func:`label_scores`
CONFORMAL_METHODS: tuple[str, ...] = ("lac", "aps", "raps")


def _check_method(method: str) -> str:
    if method not in CONFORMAL_METHODS:
        raise ValueError(f"method must be one of {', '.join(CONFORMAL_METHODS)}; got {method!r}")
    return method


def label_scores(
    probs: ArrayLike,
    method: str = "lac",
    *,
    u: ArrayLike | None = None,
    k_reg: int = 1,
    lam: float = 0.01,
) -> NDArray[np.float64]:
    """Non-conformity score of every candidate label.

    Parameters
    ----------
    probs : (..., K) class probabilities (rows on the simplex; not logits).
    method : "lac", "aps" or "raps".
    u : (...,) uniforms in [0, 1] for randomized APS/RAPS; ``None`` means ``u = 0``
        (non-randomized: the mass ranked strictly above the label). Ignored by LAC.
    k_reg, lam : RAPS regularisation: ``lam * max(0, rank - k_reg)`` with rank 1 = top class.

    Returns
    -------
    (..., K) float64 scores; lower means more conforming.
    """
    _check_method(method)
    p = np.asarray(probs, dtype=np.float64)
    if method == "lac":
        return 1.0 - p
    order = np.argsort(-p, axis=-1, kind="stable")
    srt = np.take_along_axis(p, order, axis=-1)
    before = np.cumsum(srt, axis=-1) - srt  # mass ranked strictly above each label
    uu = np.zeros(p.shape[:-1]) if u is None else np.asarray(u, dtype=np.float64)
    s_sorted = before + uu[..., None] * srt
    if method == "raps":
        if isinstance(k_reg, bool) or int(k_reg) != k_reg or k_reg < 0:
            raise ValueError(f"k_reg must be an int >= 0; got {k_reg!r}")
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0; got {lam!r}")
        rank = np.arange(1, p.shape[-1] + 1, dtype=np.float64)
        s_sorted = s_sorted + lam * np.maximum(rank - k_reg, 0.0)
    out = np.empty_like(s_sorted)
    np.put_along_axis(out, order, s_sorted, axis=-1)
    return out


def conformal_quantile(scores: ArrayLike, alpha: float) -> NDArray[np.float64]:
    """The split-conformal quantile along the last axis.

    Parameters
    ----------
    scores : (..., n) calibration scores (true-label non-conformity scores).
    alpha : miscoverage in (0, 1).

    Returns
    -------
    (...,) the ``ceil((n + 1)(1 - alpha))``-th smallest score, ``inf`` when that exceeds ``n``.
    """
    a = check_unit_interval(alpha, "alpha")
    s = np.asarray(scores, dtype=np.float64)
    n = s.shape[-1]
    k = math.ceil((n + 1) * (1.0 - a) - 1e-12)
    if n == 0 or k > n:
        return np.full(s.shape[:-1], np.inf)
    return np.partition(s, k - 1, axis=-1)[..., k - 1]


def prediction_sets(scores: ArrayLike, quantile: ArrayLike) -> NDArray[np.bool_]:
    """``scores <= quantile``: (..., K) label scores against a scalar, a (...,) or a (K,) quantile."""
    s = np.asarray(scores, dtype=np.float64)
    q = np.asarray(quantile, dtype=np.float64)
    if q.ndim and q.shape[-1] != s.shape[-1]:
        q = q[..., None]
    return np.asarray(s <= q)


@dataclass(frozen=True)
class ConformalReport:
    """Coverage and efficiency of prediction sets on labelled items.

    Attributes
    ----------
    coverage : share of items whose true label is in its set.
    class_coverage : (K,) coverage per true class (NaN where a class has no items).
    mean_size : average set size; size_counts : (K + 1,) items with set size 0..K.
    empty : share of empty sets; singleton : share of sets with exactly one label.
    n : items evaluated.
    """

    coverage: float
    class_coverage: NDArray[np.float64]
    mean_size: float
    size_counts: NDArray[np.int64]
    empty: float
    singleton: float
    n: int

    def to_dict(self, classes: Sequence[str] | None = None) -> dict[str, Any]:
        names = (
            list(classes)
            if classes is not None
            else [str(i) for i in range(len(self.class_coverage))]
        )
        return {
            "n": self.n,
            "coverage": self.coverage,
            "mean_size": self.mean_size,
            "empty": self.empty,
            "singleton": self.singleton,
            "size_counts": {str(i): int(c) for i, c in enumerate(self.size_counts)},
            "class_coverage": {
                c: (None if not math.isfinite(v) else float(v))
                for c, v in zip(names, self.class_coverage, strict=True)
            },
        }


def evaluate_sets(sets: ArrayLike, labels: ArrayLike) -> ConformalReport:
    """Coverage and set-size distribution of ``(n, K)`` boolean sets against ``(n,)`` labels."""
    from calibkit._validation import check_labels

    m = np.asarray(sets, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"sets must be (n, K) booleans; got shape {m.shape}")
    n, k = m.shape
    y = check_labels(labels, n, k)
    hit = m[np.arange(n), y]
    size = m.sum(axis=1)
    per = np.bincount(y, weights=hit, minlength=k)
    cnt = np.bincount(y, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        cc = np.where(cnt > 0, per / np.maximum(cnt, 1), np.nan)
    return ConformalReport(
        coverage=float(hit.mean()),
        class_coverage=cc,
        mean_size=float(size.mean()),
        size_counts=np.bincount(size, minlength=k + 1).astype(np.int64),
        empty=float(np.mean(size == 0)),
        singleton=float(np.mean(size == 1)),
        n=int(n),
    )


def _probs_labels(
    X: Scores | ArrayLike, y: ArrayLike | None, from_logits: bool, need_labels: bool
) -> tuple[NDArray[np.float64], NDArray[np.int64] | None]:
    from calibkit.decisions.threshold import top_label_outcomes_of

    if isinstance(X, Scores):
        probs = X.probs
        labels = X.labels if y is None else np.asarray(y)
        if labels is None and need_labels:
            raise ValueError(
                "scores: these Scores are unlabeled (labels is None); calibration needs labels"
            )
        if labels is not None:
            from calibkit._validation import check_labels

            labels = check_labels(labels, probs.shape[0], probs.shape[1])
        return probs, labels
    # validation (range, simplex, NaN, labels) is shared with the threshold code
    top_label_outcomes_of(X, y, from_logits=from_logits, need_labels=need_labels)
    from calibkit._math import to_probs

    p = (
        to_probs(np.asarray(X, dtype=np.float64))
        if from_logits
        else np.asarray(X, dtype=np.float64)
    )
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    labels = None
    if y is not None:
        from calibkit._validation import check_labels

        labels = check_labels(y, p.shape[0], p.shape[1])
    return p, labels


class SplitConformal:
    """Split conformal prediction sets (LAC / APS / RAPS, optionally Mondrian).

    Parameters
    ----------
    alpha : float in (0, 1)
        Target miscoverage: sets contain the true label with probability >= ``1 - alpha``.
    method : "lac", "aps" or "raps".
    randomized : APS/RAPS with the uniform ``u`` (exact coverage; sets can be empty).
    mondrian : class-conditional quantiles (coverage >= ``1 - alpha`` within each true class).
    k_reg, lam : RAPS regularisation.
    seed : int, the only source of randomness.

    Attributes
    ----------
    quantile_ : float (or (K,) with ``mondrian``), n_calibration_ : int, n_classes_ : int.
    """

    def __init__(
        self,
        alpha: float = 0.1,
        method: str = "lac",
        *,
        randomized: bool = False,
        mondrian: bool = False,
        k_reg: int = 1,
        lam: float = 0.01,
        seed: int = 0,
    ) -> None:
        self.alpha = alpha
        self.method = method
        self.randomized = randomized
        self.mondrian = mondrian
        self.k_reg = k_reg
        self.lam = lam
        self.seed = seed

    def _u(self, n: int, stream: int) -> NDArray[np.float64] | None:
        if not self.randomized or self.method == "lac":
            return None
        return np.random.default_rng([int(self.seed), stream]).random(n)

    def _scores(self, probs: NDArray[np.float64], stream: int) -> NDArray[np.float64]:
        return label_scores(
            probs, self.method, u=self._u(probs.shape[0], stream), k_reg=self.k_reg, lam=self.lam
        )

    def fit(
        self, X: Scores | ArrayLike, y: ArrayLike | None = None, *, from_logits: bool = False
    ) -> SplitConformal:
        """Calibrate on labelled items.

        Parameters
        ----------
        X : Scores, (n, K) probabilities (logits with ``from_logits``) or (n,) ``P(y=1)``.
        y : (n,) int labels (taken from a labelled Scores when omitted).
        """
        a = check_unit_interval(self.alpha, "alpha")
        _check_method(self.method)
        probs, labels = _probs_labels(X, y, from_logits, need_labels=True)
        assert labels is not None
        n, k = probs.shape
        s = self._scores(probs, stream=0)[np.arange(n), labels]
        if self.mondrian:
            q = np.array(
                [conformal_quantile(s[labels == c], a) for c in range(k)], dtype=np.float64
            )
        else:
            q = np.asarray(conformal_quantile(s, a), dtype=np.float64)
        self.quantile_ = q
        self.n_calibration_ = int(n)
        self.n_classes_ = int(k)
        self.calibration_scores_ = s
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "quantile_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this SplitConformal is not fitted; call fit() first")

    @property
    def infinite_quantile(self) -> bool:
        """Whether some quantile is ``inf`` (too few calibration items: full sets)."""
        self._check_fitted()
        return bool(np.any(np.isinf(self.quantile_)))

    def predict_sets(
        self, X: Scores | ArrayLike, *, from_logits: bool = False
    ) -> NDArray[np.bool_]:
        """(n, K) boolean prediction sets (True = label kept)."""
        self._check_fitted()
        probs, _ = _probs_labels(X, None, from_logits, need_labels=False)
        if probs.shape[1] != self.n_classes_:
            raise ValueError(
                f"X has {probs.shape[1]} classes; the conformal sets were calibrated on "
                f"{self.n_classes_}"
            )
        return prediction_sets(self._scores(probs, stream=1), self.quantile_)

    def evaluate(
        self, X: Scores | ArrayLike, y: ArrayLike | None = None, *, from_logits: bool = False
    ) -> ConformalReport:
        """Coverage and set sizes on labelled test items."""
        probs, labels = _probs_labels(X, y, from_logits, need_labels=True)
        assert labels is not None
        return evaluate_sets(self.predict_sets(probs), labels)
