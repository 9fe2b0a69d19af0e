"""Validity of the guarantees by simulation on real model outputs (seeded, vectorised, CI-sized).

Monte Carlo tolerance: a share ``v`` estimated from ``S`` independent splits must satisfy
``v <= delta + 3 sqrt(delta (1 - delta) / S)``; a mean ``m`` with sample standard deviation
``sd`` must satisfy ``m >= target - 3 sd / sqrt(S)`` (or ``<=`` for risks).

Two readings of "the error among accepted items exceeds epsilon":

* population: calibration items are drawn with replacement from the 10,000 CIFAR test outputs,
  which are then the population, so ``R(lambda)`` is known exactly. This is the statement
  Learn-then-Test makes.
* split: a random calibration/test split without replacement, and the error on the test part.
  The test part's own sampling noise is not covered by the guarantee, so the test part is made
  large (9,000 items against 1,000 for calibration) to keep that noise small.

The larger versions (10,000 splits, half/half splits, every record) are in
``benchmarks/decisions.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from calibkit import Scores
from calibkit.decisions import (
    accepted_counts,
    batch_select,
    conformal_quantile,
    crc_select,
    grid_cells,
    label_scores,
    ltt_select,
    threshold_grid,
)

S = 1000
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ensemble"


def _tol_share(delta: float, s: int = S) -> float:
    return delta + 3.0 * math.sqrt(delta * (1.0 - delta) / s)


def _cifar(data_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    f = data_dir / "cifar_records" / f"{name}.npz"
    if not f.is_file():
        pytest.skip(f"{f} not found")
    d = np.load(f)
    p = d["predictions"].astype(np.float64)
    return p / p.sum(axis=1, keepdims=True), d["ground_truth"].astype(np.int64)


def _split_masks(rng: np.random.Generator, n: int, n_cal: int, s: int = S) -> np.ndarray:
    """(s, n) bool: a uniformly random calibration subset of size n_cal per row."""
    pick = np.argpartition(rng.random((s, n)), n_cal, axis=1)[:, :n_cal]
    mask = np.zeros((s, n), dtype=bool)
    np.put_along_axis(mask, pick, True, axis=1)
    return mask


def _bootstrap_counts(rng: np.random.Generator, n: int, n_cal: int, s: int = S) -> np.ndarray:
    idx = rng.integers(0, n, size=(s, n_cal))
    flat = (np.arange(s)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=s * n).reshape(s, n)


# --------------------------------------------------------------------------- LTT
@pytest.mark.parametrize(
    ("record", "eps", "delta", "n_cal"),
    [
        ("wideresnet-16-4-cifar-10", 0.02, 0.05, 2000),
        ("lenet-5-cifar-10", 0.2, 0.05, 2000),
        ("wideresnet-16-4-cifar-100", 0.05, 0.1, 2000),
    ],
)
def test_ltt_population_risk_valid(data_dir, record, eps, delta, n_cal) -> None:
    """P(R(lambda_hat) > eps) <= delta with the 10k outputs as the population."""
    p, y = _cifar(data_dir, record)
    conf, wrong = p.max(axis=1), p.argmax(axis=1) != y
    g = threshold_grid(p.shape[1])
    cells = grid_cells(conf, g)
    pop_acc, pop_err = accepted_counts(cells, wrong, g.size)
    rng = np.random.default_rng(7)
    na, ne = accepted_counts(cells, wrong, g.size, mask=_bootstrap_counts(rng, y.size, n_cal))
    idx, _ = ltt_select(na, ne, eps, delta)
    ok = idx >= 0
    assert ok.mean() > 0.5, "the test needs settings where something is usually certified"
    risk = np.where(ok, pop_err[idx] / np.maximum(pop_acc[idx], 1), 0.0)
    violation = float(np.mean(risk > eps))
    assert violation <= _tol_share(delta), (violation, delta)
    # and the guarantee is not met by refusing: the certified coverage is substantial
    assert np.mean(np.where(ok, pop_acc[idx] / y.size, 0.0)) > 0.15


@pytest.mark.parametrize("method", ["binomial", "hoeffding_bentkus"])
def test_ltt_split_test_error_valid(data_dir, method) -> None:
    """Random 1,000 / 9,000 splits: the test error among accepted items exceeds eps in at most
    delta of the splits (plus Monte Carlo error)."""
    p, y = _cifar(data_dir, "wideresnet-16-4-cifar-10")
    conf, wrong = p.max(axis=1), p.argmax(axis=1) != y
    g = threshold_grid(10)
    cells = grid_cells(conf, g)
    all_acc, all_err = accepted_counts(cells, wrong, g.size)
    rng = np.random.default_rng(11)
    mask = _split_masks(rng, y.size, 1000)
    na, ne = accepted_counts(cells, wrong, g.size, mask=mask)
    eps, delta = 0.02, 0.05
    idx, _ = ltt_select(na, ne, eps, delta, method=method)
    ok = idx >= 0
    rows = np.arange(S)
    t_acc = (all_acc - na)[rows, idx]
    t_err = (all_err - ne)[rows, idx]
    test_error = np.where(ok & (t_acc > 0), t_err / np.maximum(t_acc, 1), 0.0)
    assert ok.mean() > 0.8
    assert np.mean(test_error > eps) <= _tol_share(delta)


@pytest.mark.parametrize(
    ("record", "eps", "delta"),
    [("wideresnet-16-4-cifar-10", 0.02, 0.05), ("lenet-5-cifar-10", 0.2, 0.05)],
)
def test_batch_guarantee_on_half_splits(data_dir, record, eps, delta) -> None:
    """Half/half splits: the error realised on the held-out half is what the batch guarantee
    bounds, so it exceeds eps in at most delta of the splits."""
    p, y = _cifar(data_dir, record)
    conf, wrong = p.max(axis=1), p.argmax(axis=1) != y
    g = threshold_grid(10)
    cells = grid_cells(conf, g)
    all_acc, all_err = accepted_counts(cells, wrong, g.size)
    mask = _split_masks(np.random.default_rng(13), y.size, 5000)
    na, ne = accepted_counts(cells, wrong, g.size, mask=mask)
    m, te = all_acc - na, all_err - ne
    idx, _ = batch_select(na, ne, m, eps, delta)
    rows = np.arange(S)
    ok = idx >= 0
    assert ok.mean() > 0.9
    err = np.where(ok & (m[rows, idx] > 0), te[rows, idx] / np.maximum(m[rows, idx], 1), 0.0)
    assert np.mean(err > eps) <= _tol_share(delta)


def test_certified_coverage_close_to_test_oracle(data_dir) -> None:
    """Efficiency: with 5,000 calibration items the certified threshold's test coverage is within
    a few points of the oracle threshold picked on the test half itself (the highest coverage
    whose test error is <= eps)."""
    p, y = _cifar(data_dir, "wideresnet-16-4-cifar-10")
    conf, wrong = p.max(axis=1), p.argmax(axis=1) != y
    g = threshold_grid(10)
    cells = grid_cells(conf, g)
    all_acc, all_err = accepted_counts(cells, wrong, g.size)
    mask = _split_masks(np.random.default_rng(3), y.size, 5000, s=300)
    na, ne = accepted_counts(cells, wrong, g.size, mask=mask)
    idx, _ = ltt_select(na, ne, 0.02, 0.05)
    assert np.all(idx >= 0)
    t_acc, t_err = all_acc - na, all_err - ne
    rows = np.arange(idx.size)
    cov = t_acc[rows, idx] / 5000
    good = (t_acc > 0) & (t_err <= 0.02 * t_acc)
    oracle = g.size - 1 - np.argmax(good[:, ::-1], axis=1)
    gap = t_acc[rows, oracle] / 5000 - cov
    assert 0.0 <= float(np.mean(gap)) < 0.05, float(np.mean(gap))


def test_crc_expected_joint_error(data_dir) -> None:
    """Conformal risk control: mean over splits of the test share of items accepted and wrong
    is <= eps (plus Monte Carlo error)."""
    p, y = _cifar(data_dir, "lenet-5-cifar-10")
    conf, wrong = p.max(axis=1), p.argmax(axis=1) != y
    g = threshold_grid(10)
    cells = grid_cells(conf, g)
    _all_acc, all_err = accepted_counts(cells, wrong, g.size)
    mask = _split_masks(np.random.default_rng(5), y.size, 2000)
    _na, ne = accepted_counts(cells, wrong, g.size, mask=mask)
    eps = 0.05
    idx = crc_select(ne, 2000, eps)
    assert np.all(idx >= 0)
    joint = (all_err - ne)[np.arange(S), idx] / (y.size - 2000)
    assert joint.mean() <= eps + 3 * joint.std() / math.sqrt(S)
    # tight, not trivially conservative
    assert joint.mean() > 0.8 * eps


def test_ltt_valid_on_llm_fixture() -> None:
    """Real SmolLM2 few-shot SST-2 scores (300 items): population = the 300 items."""
    s = Scores.load(FIXTURES / "sst2__smollm2-fs.parquet")
    conf, wrong = s.confidence, ~s.correct
    g = threshold_grid(2)
    cells = grid_cells(conf, g)
    pop_acc, pop_err = accepted_counts(cells, wrong, g.size)
    eps, delta = 0.3, 0.1
    na, ne = accepted_counts(
        cells, wrong, g.size, mask=_bootstrap_counts(np.random.default_rng(1), len(s), 300)
    )
    idx, _ = ltt_select(na, ne, eps, delta)
    ok = idx >= 0
    assert ok.mean() > 0.3
    risk = np.where(ok, pop_err[idx] / np.maximum(pop_acc[idx], 1), 0.0)
    assert np.mean(risk > eps) <= _tol_share(delta)


# --------------------------------------------------------------------------- conformal
def _true_scores(p: np.ndarray, y: np.ndarray, method: str, u: np.ndarray | None) -> np.ndarray:
    """(S, n) true-label scores (u: (S, n) uniforms or None)."""
    if u is None:
        return np.broadcast_to(label_scores(p, method)[np.arange(y.size), y], (S, y.size))
    # randomized APS/RAPS: mass above y + u p_y (+ RAPS penalty), per split draw
    base = label_scores(p, method, u=np.zeros(y.size))[np.arange(y.size), y]
    return base[None, :] + u * p[np.arange(y.size), y][None, :]


@pytest.mark.parametrize(
    ("record", "method", "randomized"),
    [
        ("wideresnet-16-4-cifar-10", "lac", False),
        ("wideresnet-16-4-cifar-10", "aps", True),
        ("lenet-5-cifar-10", "aps", False),
        ("wideresnet-16-4-cifar-100", "raps", True),
    ],
)
def test_conformal_marginal_coverage(data_dir, record, method, randomized) -> None:
    p, y = _cifar(data_dir, record)
    alpha, n_cal = 0.1, 1000
    rng = np.random.default_rng(17)
    u = rng.random((S, y.size)) if randomized else None
    sc = _true_scores(p, y, method, u)
    mask = _split_masks(rng, y.size, n_cal)
    cal = sc[mask].reshape(S, n_cal)
    q = conformal_quantile(cal, alpha)
    covered = sc <= q[:, None]
    cov = (covered & ~mask).sum(axis=1) / (y.size - n_cal)
    m, se = cov.mean(), cov.std() / math.sqrt(S)
    assert m >= 1 - alpha - 3 * se
    # and not trivially over-covering: split conformal coverage is <= 1 - alpha + 1/(n + 1)
    # for continuous scores (randomized, or LAC on distinct probabilities)
    if randomized or method == "lac":
        assert m <= 1 - alpha + 1 / (n_cal + 1) + 3 * se


def test_mondrian_class_coverage(data_dir) -> None:
    """Class-conditional (Mondrian) LAC: every class reaches 1 - alpha on average over splits."""
    p, y = _cifar(data_dir, "lenet-5-cifar-10")
    alpha, n_cal, K = 0.1, 3000, 10
    sc_all = label_scores(p, "lac")
    true = sc_all[np.arange(y.size), y]
    mask = _split_masks(np.random.default_rng(23), y.size, n_cal)
    for c in range(K):
        cls = y == c
        m_c = mask[:, cls]
        s_c = np.where(m_c, true[cls][None, :], np.inf)
        srt = np.sort(s_c, axis=1)
        n_c = m_c.sum(axis=1)
        k = np.ceil((n_c + 1) * (1 - alpha) - 1e-12).astype(int)
        q = np.where(k <= n_c, srt[np.arange(S), np.minimum(k, n_c) - 1], np.inf)
        hit = (true[cls][None, :] <= q[:, None]) & ~m_c
        cov = hit.sum(axis=1) / (~m_c).sum(axis=1)
        assert cov.mean() >= 1 - alpha - 3 * cov.std() / math.sqrt(S), c
    # the marginal LAC quantile alone does not give per-class coverage on this model
    q_m = conformal_quantile(np.broadcast_to(true, mask.shape)[mask].reshape(S, n_cal), alpha)
    worst = min(
        float(
            ((true[y == c][None, :] <= q_m[:, None]) & ~mask[:, y == c]).sum()
            / (~mask[:, y == c]).sum()
        )
        for c in range(K)
    )
    assert worst < 1 - alpha - 0.02


def test_conformal_coverage_on_llm_fixture() -> None:
    s = Scores.load(FIXTURES / "cr__gemma3-zs.parquet")
    p, y = s.probs, s.require_labels()
    alpha, n_cal = 0.2, 150
    rng = np.random.default_rng(29)
    for method in ("lac", "aps"):
        u = rng.random((S, y.size))
        sc = _true_scores(p, y, method, u if method == "aps" else None)
        mask = _split_masks(rng, y.size, n_cal)
        q = conformal_quantile(sc[mask].reshape(S, n_cal), alpha)
        cov = ((sc <= q[:, None]) & ~mask).sum(axis=1) / (y.size - n_cal)
        assert cov.mean() >= 1 - alpha - 3 * cov.std() / math.sqrt(S), method
