"""The 1-D logistic regression toy example of paper 000, section 3.3 and Figure 3.

A true model ``P(y=1|x) = sigmoid(beta0 + beta1 x)`` with ``beta0 = -1, beta1 = 2`` labels 300
points drawn uniformly from ``[-10, 10]`` (``y ~ Bernoulli``). An L2 logistic regression
(scikit-learn, ``C = 0.1`` by default: its shrinkage gives first fits as flat as the paper's
``beta1 = 1.13``) is fitted, its reliability table over the same points is computed, and the
over-confident bins with ``|gap| > threshold`` are the targets. For each target bin in turn
(step by step, each refit on all points added so far) ``|B_m|`` synthetic ``x`` are drawn from a
left-truncated normal with the bin's mean and standard deviation of ``x`` (truncated at the mean,
so the points spread to the right of it; the paper does not state the truncation point), labeled
by the true model (the toy analogue of the LLM relabel stage), and the model is refitted.

:func:`plot_toy` draws Figure 3's four panels: (a) data with the true and first fitted curves,
(b) the first reliability diagram with the target bins marked, (c) the curves after each step,
(d) the final reliability diagram. Accuracy and ECE are measured on the original 300 points
(binary view, ``P(y=1)`` against ``y``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from calibkit._math import sigmoid
from calibkit.metrics import ReliabilityTable, reliability_table

__all__ = ["ToyFit", "ToyResult", "fit_logistic", "plot_toy", "simulate_logistic", "toy_example"]


@dataclass(frozen=True)
class ToyFit:
    """One fitted 1-D logistic model.

    Attributes
    ----------
    beta0, beta1 : float
        Intercept and slope.
    acc, ece : float
        On the original points (ECE: binary view, ``n_bins`` bins).
    n_train : int
        Points the model was fitted on.
    distance : float
        Euclidean distance of ``(beta0, beta1)`` to the true parameters.
    """

    beta0: float
    beta1: float
    acc: float
    ece: float
    n_train: int
    distance: float


@dataclass
class ToyResult:
    """Everything Figure 3 shows.

    Attributes
    ----------
    x, y : (n,) the original points and labels
    true_beta : (beta0, beta1)
    fits : list of ToyFit
        ``fits[0]`` on the original points, ``fits[j]`` after adding the synthetic points of the
        first ``j`` target bins.
    tables : list of ReliabilityTable
        Reliability table of each fit on the original points.
    target_bins : list of int
        The over-confident bins over the threshold (from ``tables[0]``).
    synthetic_x, synthetic_y : list of (|B_m|,) arrays, one per target bin
    """

    x: NDArray[np.float64]
    y: NDArray[np.int64]
    true_beta: tuple[float, float]
    n_bins: int
    fits: list[ToyFit] = field(default_factory=list)
    tables: list[ReliabilityTable] = field(default_factory=list)
    target_bins: list[int] = field(default_factory=list)
    synthetic_x: list[NDArray[np.float64]] = field(default_factory=list)
    synthetic_y: list[NDArray[np.int64]] = field(default_factory=list)


def simulate_logistic(
    n: int = 300,
    beta0: float = -1.0,
    beta1: float = 2.0,
    *,
    low: float = -10.0,
    high: float = 10.0,
    seed: int | np.random.Generator = 0,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """``n`` points ``x ~ U(low, high)`` with ``y ~ Bernoulli(sigmoid(beta0 + beta1 x))``."""
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if not low < high:
        raise ValueError(f"need low < high, got [{low}, {high}]")
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, size=n)
    y = (rng.uniform(size=n) < sigmoid(beta0 + beta1 * x)).astype(np.int64)
    return x, y


def fit_logistic(
    x: NDArray[np.float64], y: NDArray[np.int64], *, C: float = 1.0
) -> tuple[float, float]:
    """``(beta0, beta1)`` of an L2 logistic regression of ``y`` on ``x``.

    Minimises ``C * sum_i logloss_i + beta1**2 / 2`` (intercept unpenalised), the objective of
    scikit-learn's ``LogisticRegression(C=C)``, by Newton's method on the 2 x 2 problem.
    """
    xv = np.asarray(x, dtype=np.float64).reshape(-1)
    yv = np.asarray(y, dtype=np.float64).reshape(-1)
    if xv.shape != yv.shape:
        raise ValueError(f"x and y differ in length: {xv.size} vs {yv.size}")
    if np.unique(yv).size < 2:
        raise ValueError("y must contain both classes")
    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    X = np.stack([np.ones_like(xv), xv], axis=1)
    reg = np.diag([0.0, 1.0 / C])
    b = np.zeros(2)
    for _ in range(100):
        p = sigmoid(X @ b)
        grad = X.T @ (p - yv) + reg @ b
        hess = (X * (p * (1 - p))[:, None]).T @ X + reg + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        b -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(b[0]), float(b[1])


def _truncated_normal(
    mu: float, sd: float, size: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    from scipy.stats import truncnorm

    sd = max(sd, 1e-3)
    return np.asarray(truncnorm.rvs(0.0, np.inf, loc=mu, scale=sd, size=size, random_state=rng))


def toy_example(
    *,
    n: int = 300,
    beta0: float = -1.0,
    beta1: float = 2.0,
    low: float = -10.0,
    high: float = 10.0,
    n_bins: int = 10,
    threshold: float = 0.03,
    C: float = 0.1,
    seed: int = 0,
) -> ToyResult:
    """Run section 3.3: fit, find over-confident bins, add truncated-normal points bin by bin.

    Parameters
    ----------
    n : int
        Original points (300).
    beta0, beta1 : float
        True parameters (-1, 2).
    low, high : float
        Range of ``x`` ([-10, 10]).
    n_bins : int
        Bins of the reliability table.
    threshold : float
        Minimum ``|gap|`` of a target bin.
    C : float
        Inverse L2 strength of the fitted logistic regression. 0.1 gives first fits like the
        paper's (mean over seeds about ``(-0.6, 1.2)``; the paper reports ``(-0.06, 1.13)``);
        with scikit-learn's default ``C = 1`` 300 points already give ``beta1`` near 1.9.
    seed : int
        Data and synthetic draws.
    """
    rng = np.random.default_rng(seed)
    x, y = simulate_logistic(n, beta0, beta1, low=low, high=high, seed=rng)
    res = ToyResult(x=x, y=y, true_beta=(beta0, beta1), n_bins=n_bins)
    truth = np.array([beta0, beta1])

    def record(xs: NDArray[np.float64], ys: NDArray[np.int64]) -> NDArray[np.float64]:
        b0, b1 = fit_logistic(xs, ys, C=C)
        p = sigmoid(b0 + b1 * x)
        tab = reliability_table(p, y, n_bins)
        acc = float(np.mean((p > 0.5) == (y == 1)))
        dist = float(np.linalg.norm(np.array([b0, b1]) - truth))
        res.fits.append(ToyFit(b0, b1, acc, tab.ece, int(xs.size), dist))
        res.tables.append(tab)
        return p

    p0 = record(x, y)
    tab0 = res.tables[0]
    over = tab0.over_confident & (np.abs(np.nan_to_num(tab0.gap)) > threshold)
    res.target_bins = [int(m) for m in np.flatnonzero(over)]
    from calibkit.metrics import assign_bins

    bins = assign_bins(p0, tab0.edges)
    xs, ys = x, y
    for m in res.target_bins:
        in_bin = x[bins == m]
        sx = _truncated_normal(float(in_bin.mean()), float(in_bin.std()), in_bin.size, rng)
        sy = (rng.uniform(size=sx.size) < sigmoid(beta0 + beta1 * sx)).astype(np.int64)
        res.synthetic_x.append(sx)
        res.synthetic_y.append(sy)
        xs, ys = np.concatenate([xs, sx]), np.concatenate([ys, sy])
        record(xs, ys)
    return res


def plot_toy(result: ToyResult, *, figsize: tuple[float, float] = (11.0, 8.5)) -> Any:
    """Figure 3 of paper 000 as a 2x2 matplotlib Figure (see the module docstring)."""
    from calibkit.plots import reliability_diagram
    from calibkit.plots.reliability import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=figsize)
    x, y = result.x, result.y
    grid = np.linspace(x.min(), x.max(), 400)
    b0, b1 = result.true_beta
    first = result.fits[0]

    ax = axes[0, 0]
    ax.scatter(x, y, s=8, alpha=0.4, color="0.3", label="observed")
    ax.plot(grid, sigmoid(b0 + b1 * grid), "k--", label=f"true ({b0:g}, {b1:g})")
    ax.plot(
        grid,
        sigmoid(first.beta0 + first.beta1 * grid),
        color="C0",
        label=f"fit ({first.beta0:.2f}, {first.beta1:.2f})",
    )
    ax.set_title(f"(a) fit on observed data: acc {first.acc:.3f}, ECE {first.ece:.4f}")
    ax.set_xlabel("x")
    ax.set_ylabel("P(y = 1)")
    ax.legend(fontsize=8)

    def probs(f: ToyFit) -> NDArray[np.float64]:
        return sigmoid(f.beta0 + f.beta1 * x)

    reliability_diagram(
        probs(first),
        y,
        result.n_bins,
        ax=axes[0, 1],
        show_histogram=False,
        title="(b) reliability before",
    )
    tab0 = result.tables[0]
    for m in result.target_bins:
        axes[0, 1].axvspan(tab0.edges[m], tab0.edges[m + 1], color="purple", alpha=0.12)

    ax = axes[1, 0]
    ax.scatter(x, y, s=8, alpha=0.25, color="0.5")
    for j, (sx, sy) in enumerate(zip(result.synthetic_x, result.synthetic_y, strict=True)):
        ax.scatter(
            sx,
            sy,
            s=14,
            marker="x",
            color=f"C{j + 2}",
            label=f"synthetic, bin {result.target_bins[j] + 1}",
        )
    ax.plot(grid, sigmoid(b0 + b1 * grid), "k--", label="true")
    for j, f in enumerate(result.fits):
        ax.plot(
            grid,
            sigmoid(f.beta0 + f.beta1 * grid),
            color=f"C{j}",
            alpha=0.9,
            label=f"step {j}: ({f.beta0:.2f}, {f.beta1:.2f}), ECE {f.ece:.4f}",
        )
    ax.set_title("(c) refits after adding synthetic points")
    ax.set_xlabel("x")
    ax.set_ylabel("P(y = 1)")
    ax.legend(fontsize=7)

    last = result.fits[-1]
    reliability_diagram(
        probs(last),
        y,
        result.n_bins,
        ax=axes[1, 1],
        show_histogram=False,
        title="(d) reliability after",
    )
    fig.tight_layout()
    return fig
