"""EM-estimated ECE regularizer (paper 002, Section 5.2 and Algorithm 1).

The ECE loss of the paper is ``E_x[D(p_theta(x), P*(x))]`` where ``P*`` is the unknown target
generative model. It is estimated by alternating:

**E-step** (:func:`bin_accuracy`): bin the training questions by the current model's top-option
confidence into ``M`` equal-width bins on ``[0, 1]`` (intervals ``[lo, hi)``, the last one
closed, as in torchmetrics) and estimate each bin's accuracy
``acc_m = (#correct_m + kappa * conf_m) / (n_m + kappa)``; ``kappa = prior_strength`` is an
optional Beta-prior pseudo-count centred on the bin's mean confidence (0, the default, is the
paper's plain frequency). Empty bins have no estimate.

**M-step** (:func:`ece_regularizer`): for each question of a batch take its bin ``m``, build the
target ``q`` with :func:`~calibkit.finetune.targets.rank_preserving_targets` (top option of the
*current* ``p`` -> ``acc_m``, non-top options -> the rank-preserving mapping) and penalise the
distance between the option probabilities ``p`` and ``q`` (``q`` is a constant):

* ``divergence="mse"`` (the paper's experiments): ``sum_j (p_j - q_j)^2``;
* ``divergence="kl"`` (Appendix A.5's cross-entropy, shifted by the entropy of ``q`` so that it
  is 0 at the target): ``sum_j q_j (log q_j - log p_j)``.

Which bin a question belongs to (``assignment``):

* ``"estep"`` (default): the bin its confidence fell in *at the E-step* (the latent assignment
  of EM, held fixed during the M-step), so a question whose confidence is pulled out of its bin
  keeps its target; questions not seen by the E-step fall back to ``"current"``;
* ``"current"`` (the reference code): the bin of its current confidence.

A bin that was empty at the E-step gets the accuracy linearly interpolated between the nearest
non-empty bins' (mean confidence, accuracy) points, constant beyond the outermost ones.

The batch loss is the mean over the batch's questions. Averaged over the training set, the MSE version is
``(1/n) sum_i (conf_i - acc_{b(i)})^2 + ...`` which, by Jensen, upper-bounds the squared binned
L2 calibration error ``sum_m (n_m / n) (conf_m - acc_m)^2`` of the fixed E-step estimate.

:class:`EMRegularizer` holds the E-step state between re-estimations (the schedule is the
trainer's: at the start of every epoch at least, see :mod:`calibkit.finetune.trainer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibkit._validation import check_labels, check_probs
from calibkit.finetune.targets import rank_preserving_targets

if TYPE_CHECKING:
    import torch

__all__ = ["BinAccuracy", "EMRegularizer", "bin_accuracy", "bin_index", "ece_regularizer"]

Divergence = Literal["mse", "kl"]


def bin_index(confidence: ArrayLike, n_bins: int) -> NDArray[np.int64]:
    """Equal-width bin of each confidence in ``[0, 1]``: ``[lo, hi)`` bins, the last one closed
    (:func:`calibkit.metrics.assign_bins` on :func:`calibkit.metrics.uniform_edges`, the binning
    of every calibkit metric, netcal and torchmetrics)."""
    from calibkit.metrics.binning import assign_bins, uniform_edges

    return assign_bins(np.asarray(confidence, dtype=np.float64), uniform_edges(n_bins)).astype(
        np.int64
    )


@dataclass(frozen=True)
class BinAccuracy:
    """E-step result over ``M`` equal-width confidence bins.

    Attributes
    ----------
    accuracy : (M,) float64
        Estimated accuracy per bin; NaN where the bin is empty.
    count : (M,) int64
        Number of questions per bin.
    confidence : (M,) float64
        Mean top confidence per bin; NaN where empty.
    """

    accuracy: NDArray[np.float64]
    count: NDArray[np.int64]
    confidence: NDArray[np.float64]

    @property
    def n_bins(self) -> int:
        return int(self.count.shape[0])

    @property
    def ece(self) -> float:
        """Binned conf-ECE ``sum_m (n_m / n) |conf_m - acc_m|`` of the E-step data (plain
        frequencies only when ``prior_strength = 0``)."""
        ok = self.count > 0
        n = self.count.sum()
        if n == 0:
            return float("nan")
        gap = np.abs(self.confidence[ok] - self.accuracy[ok])
        return float(np.sum(self.count[ok] / n * gap))

    def filled_accuracy(self) -> NDArray[np.float64]:
        """(M,) accuracies with empty bins interpolated (see module docstring); all NaN if the
        E-step saw no data."""
        ok = self.count > 0
        if not ok.any():
            return np.full(self.n_bins, np.nan)
        centers = (np.arange(self.n_bins) + 0.5) / self.n_bins
        x = np.where(ok, self.confidence, centers)
        order = np.argsort(x[ok], kind="stable")
        filled = np.interp(x, x[ok][order], self.accuracy[ok][order])
        return np.where(ok, self.accuracy, filled)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": [None if np.isnan(a) else float(a) for a in self.accuracy],
            "count": [int(c) for c in self.count],
            "confidence": [None if np.isnan(a) else float(a) for a in self.confidence],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BinAccuracy:
        def arr(xs: list[float | None]) -> NDArray[np.float64]:
            return np.array([np.nan if x is None else float(x) for x in xs], dtype=np.float64)

        return cls(arr(d["accuracy"]), np.asarray(d["count"], dtype=np.int64), arr(d["confidence"]))


def bin_accuracy(
    probs: ArrayLike, labels: ArrayLike, n_bins: int = 10, *, prior_strength: float = 0.0
) -> BinAccuracy:
    """E-step: per-bin accuracy of the top option of ``probs``.

    Parameters
    ----------
    probs : (n, K) array
        Option **probabilities**.
    labels : (n,) int array
        Index of the correct option.
    n_bins : int
        Number of equal-width bins on ``[0, 1]`` (the paper uses 10).
    prior_strength : float
        ``kappa >= 0``: pseudo-count of a Beta prior centred on the bin's mean confidence.
    """
    p = check_probs(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must be (n, K) option probabilities; got shape {p.shape}")
    y = check_labels(labels, p.shape[0], p.shape[1])
    if not np.isfinite(prior_strength) or prior_strength < 0:
        raise ValueError(f"prior_strength must be finite and >= 0; got {prior_strength}")
    pred = np.argmax(p, axis=1)
    conf = p[np.arange(p.shape[0]), pred]
    correct = (pred == y).astype(np.float64)
    idx = bin_index(conf, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    n_correct = np.bincount(idx, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
        acc = np.where(
            count > 0,
            (n_correct + prior_strength * np.nan_to_num(mean_conf)) / (count + prior_strength),
            np.nan,
        )
    return BinAccuracy(accuracy=acc, count=count, confidence=mean_conf)


def ece_regularizer(
    option_logits: torch.Tensor,
    bins: BinAccuracy,
    *,
    bin_ids: ArrayLike | None = None,
    divergence: Divergence = "mse",
    gamma_scale: float | None = None,
    preserve_top: bool = True,
) -> torch.Tensor:
    """M-step loss: pull each question's option probabilities to its bin's target.

    Parameters
    ----------
    option_logits : (B, K) torch tensor
        **Logits** (or log-probabilities) of the ``K`` option letters at the answer position;
        softmax over them is the option distribution of paper eq. (1).
    bins : BinAccuracy
        The current E-step estimate.
    bin_ids : (B,) int array, optional
        Each question's E-step bin; ``-1`` (or no array) = the bin of its current confidence.
    divergence : {"mse", "kl"}
        Distance between ``p`` and the target ``q``, summed over options.

    Returns
    -------
    scalar torch tensor
        Mean over the ``B`` questions; differentiable in ``option_logits``.
    """
    import torch

    if option_logits.ndim != 2 or option_logits.shape[1] < 2:
        raise ValueError(
            f"option_logits must be (B, K) with K >= 2; got {tuple(option_logits.shape)}"
        )
    if divergence not in ("mse", "kl"):
        raise ValueError(f"divergence must be 'mse' or 'kl'; got {divergence!r}")
    logp = torch.log_softmax(option_logits.float(), dim=-1)
    p = logp.exp()
    p_np = p.detach().cpu().double().numpy()
    p_np = p_np / p_np.sum(axis=1, keepdims=True)
    conf = p_np.max(axis=1)
    idx = bin_index(conf, bins.n_bins)
    if bin_ids is not None:
        given = np.asarray(bin_ids, dtype=np.int64)
        if given.shape != idx.shape:
            raise ValueError(f"bin_ids must have shape {idx.shape}; got {given.shape}")
        if given.max(initial=-1) >= bins.n_bins:
            raise ValueError(f"bin_ids must be < n_bins={bins.n_bins}")
        idx = np.where(given >= 0, given, idx)
    acc = bins.filled_accuracy()[idx]
    valid = ~np.isnan(acc)
    if not valid.any():
        return option_logits.sum() * 0.0
    q_np = np.zeros_like(p_np)
    q_np[valid] = rank_preserving_targets(
        p_np[valid], acc[valid], gamma_scale=gamma_scale, preserve_top=preserve_top
    )
    q = torch.as_tensor(q_np, dtype=p.dtype, device=p.device)
    w = torch.as_tensor(valid, dtype=p.dtype, device=p.device)
    if divergence == "mse":
        per = ((p - q) ** 2).sum(dim=-1)
    else:
        per = (q * (torch.log(q.clamp_min(1e-12)) - logp)).sum(dim=-1)
    return (per * w).sum() / option_logits.shape[0]


@dataclass
class EMRegularizer:
    """Stateful wrapper: E-step estimate + observations gathered since the last E-step.

    Parameters
    ----------
    n_bins : int
        Equal-width confidence bins (paper: 10).
    prior_strength : float
        Beta-prior pseudo-count of :func:`bin_accuracy` (0 = plain frequency).
    assignment : {"estep", "current"}
        Which bin a question's target comes from (see module docstring).
    divergence, gamma_scale, preserve_top
        Passed to :func:`ece_regularizer`.

    Attributes
    ----------
    bins_ : BinAccuracy or None
        The current estimate (``None`` before the first E-step).
    n_estimates_ : int
        How many E-steps have run.
    """

    n_bins: int = 10
    prior_strength: float = 0.0
    divergence: Divergence = "mse"
    gamma_scale: float | None = None
    preserve_top: bool = True
    assignment: Literal["estep", "current"] = "estep"
    bins_: BinAccuracy | None = None
    n_estimates_: int = 0
    assigned_: dict[int, int] = field(default_factory=dict, repr=False)
    _probs: list[NDArray[np.float64]] = field(default_factory=list, repr=False)
    _labels: list[NDArray[np.int64]] = field(default_factory=list, repr=False)
    _ids: list[NDArray[np.int64]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.n_bins < 1:
            raise ValueError(f"n_bins must be >= 1; got {self.n_bins}")
        if self.divergence not in ("mse", "kl"):
            raise ValueError(f"divergence must be 'mse' or 'kl'; got {self.divergence!r}")
        if self.assignment not in ("estep", "current"):
            raise ValueError(f"assignment must be 'estep' or 'current'; got {self.assignment!r}")

    def e_step(
        self, probs: ArrayLike, labels: ArrayLike, ids: ArrayLike | None = None
    ) -> BinAccuracy:
        """Re-estimate per-bin accuracies from ``(n, K)`` option probabilities and labels;
        ``ids`` (n,) int, optional: question ids whose bin is remembered for the M-step."""
        p = np.asarray(probs, dtype=np.float64)
        self.bins_ = bin_accuracy(p, labels, self.n_bins, prior_strength=self.prior_strength)
        self.n_estimates_ += 1
        self.assigned_ = {}
        if ids is not None:
            ii = np.asarray(ids, dtype=np.int64)
            if ii.shape != (p.shape[0],):
                raise ValueError(f"ids must have shape ({p.shape[0]},); got {ii.shape}")
            b = bin_index(p.max(axis=1), self.n_bins)
            self.assigned_ = {int(i): int(m) for i, m in zip(ii, b, strict=True)}
        return self.bins_

    def observe(self, probs: ArrayLike, labels: ArrayLike, ids: ArrayLike | None = None) -> None:
        """Record a batch's (detached) option probabilities for a later :meth:`e_step_observed`."""
        p = np.asarray(probs, dtype=np.float64)
        self._probs.append(p)
        self._labels.append(np.asarray(labels, dtype=np.int64))
        self._ids.append(
            np.full(p.shape[0], -1, dtype=np.int64)
            if ids is None
            else np.asarray(ids, dtype=np.int64)
        )

    @property
    def n_observed(self) -> int:
        return int(sum(len(x) for x in self._labels))

    def e_step_observed(self) -> BinAccuracy:
        """E-step from the observations since the last call (the "running" schedule)."""
        if not self._probs:
            raise ValueError("no observations recorded since the last E-step")
        ids = np.concatenate(self._ids)
        keep = ids >= 0
        bins = self.e_step(np.concatenate(self._probs), np.concatenate(self._labels))
        if keep.any():
            p = np.concatenate(self._probs)[keep]
            b = bin_index(p.max(axis=1), self.n_bins)
            self.assigned_ = {int(i): int(m) for i, m in zip(ids[keep], b, strict=True)}
        self._probs.clear()
        self._labels.clear()
        self._ids.clear()
        return bins

    def loss(self, option_logits: torch.Tensor, ids: ArrayLike | None = None) -> torch.Tensor:
        """M-step loss of a batch (see :func:`ece_regularizer`); ``ids`` (B,) are the questions'
        ids as given to the E-step. Needs an E-step first."""
        if self.bins_ is None:
            raise ValueError("EMRegularizer.loss called before the first E-step")
        bin_ids = None
        if ids is not None and self.assignment == "estep":
            bin_ids = np.array([self.assigned_.get(int(i), -1) for i in np.asarray(ids).ravel()])
        return ece_regularizer(
            option_logits,
            self.bins_,
            bin_ids=bin_ids,
            divergence=self.divergence,
            gamma_scale=self.gamma_scale,
            preserve_top=self.preserve_top,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "bins": None if self.bins_ is None else self.bins_.to_dict(),
            "n_estimates": self.n_estimates_,
            "assigned": sorted([k, v] for k, v in self.assigned_.items()),
            "observed_probs": [x.tolist() for x in self._probs],
            "observed_labels": [x.tolist() for x in self._labels],
            "observed_ids": [x.tolist() for x in self._ids],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bins_ = None if state["bins"] is None else BinAccuracy.from_dict(state["bins"])
        self.n_estimates_ = int(state["n_estimates"])
        self._probs = [np.asarray(x, dtype=np.float64) for x in state.get("observed_probs", [])]
        self._labels = [np.asarray(x, dtype=np.int64) for x in state.get("observed_labels", [])]
        self._ids = [np.asarray(x, dtype=np.int64) for x in state.get("observed_ids", [])]
        self.assigned_ = {int(k): int(v) for k, v in state.get("assigned", [])}
