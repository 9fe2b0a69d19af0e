"""Compare a trained cascade with its certified version: cost, coverage and errors per item."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from calibkit.decisions.cascade import CertifiedCascade

__all__ = ["CascadeComparison", "compare_cascades"]


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
