"""calibkit.plots: the drawn bars equal hand-computed bin statistics, titles carry the metrics'
ECE / cw-ECE, files are written atomically as PNG / SVG / PDF."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

from calibkit import metrics, softmax
from calibkit.plots import (
    classwise_reliability_diagram,
    compare_reliability,
    reliability_diagram,
    save_figure,
)
from calibkit.scores import Scores


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def multiclass() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(600, 4)) * 2.5
    p_true = softmax(z / 2.0)  # the scores are over-confident: the truth is tempered
    y = (p_true.cumsum(1) > rng.random((600, 1))).argmax(1)
    return softmax(z), y


def _hand_bins(conf: np.ndarray, hit: np.ndarray, m: int):
    """Equal-width bins ``[k/m, (k+1)/m)``, the last closed (numpy.histogram's convention),
    independent of calibkit."""
    idx = np.minimum(np.floor(conf * m).astype(int), m - 1)
    count = np.bincount(idx, minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(idx, hit, m) / count
        mean_conf = np.bincount(idx, conf, m) / count
    return count, acc, mean_conf


def _bars(ax, label: str) -> list[Rectangle]:
    conts = [c for c in ax.containers if c.get_label() == label]
    assert len(conts) == 1, f"expected one bar container labelled {label!r}"
    return list(conts[0].patches)


def _title_value(text: str, name: str) -> float:
    m = re.search(rf"{re.escape(name)} = ([0-9.]+)", text)
    assert m, f"{name} not in title {text!r}"
    return float(m.group(1))


def test_bars_match_hand_bins_and_title_has_ece(multiclass) -> None:
    p, y = multiclass
    m = 10
    fig = reliability_diagram(p, y, n_bins=m, title="demo")
    ax_rel, ax_hist = fig.axes
    conf, pred = p.max(1), p.argmax(1)
    count, acc, mean_conf = _hand_bins(conf, (pred == y).astype(float), m)
    full = count > 0
    acc_bars = _bars(ax_rel, "Accuracy")
    gap_bars = _bars(ax_rel, "Gap")
    assert len(acc_bars) == len(gap_bars) == int(full.sum())
    np.testing.assert_allclose([b.get_height() for b in acc_bars], acc[full], atol=1e-12)
    np.testing.assert_allclose([b.get_x() for b in acc_bars], np.flatnonzero(full) / m, atol=1e-12)
    np.testing.assert_allclose([b.get_width() for b in acc_bars], 1 / m, atol=1e-12)
    # the gap spans accuracy -> mean confidence of the bin
    np.testing.assert_allclose([b.get_y() for b in gap_bars], acc[full], atol=1e-12)
    np.testing.assert_allclose(
        [b.get_y() + b.get_height() for b in gap_bars], mean_conf[full], atol=1e-12
    )
    # histogram panel: fraction of samples per bin
    hist = [r for r in ax_hist.patches if isinstance(r, Rectangle)]
    np.testing.assert_allclose([r.get_height() for r in hist], count / len(y), atol=1e-12)
    # the diagonal and the title
    assert any(line.get_label() == "Perfect calibration" for line in ax_rel.lines)
    title = ax_rel.get_title()
    assert title.startswith("demo\n")
    hand_ece = float(np.sum(count[full] * np.abs(acc[full] - mean_conf[full])) / len(y))
    assert _title_value(title, "ECE") == pytest.approx(metrics.ece(p, y, n_bins=m), abs=5e-5)
    assert _title_value(title, "ECE") == pytest.approx(hand_ece, abs=5e-5)
    assert ax_rel.get_ylabel() == "Accuracy"


def test_binary_1d_is_positive_class_reliability() -> None:
    rng = np.random.default_rng(1)
    p1 = rng.random(400)
    y = (rng.random(400) < p1**1.5).astype(int)
    fig = reliability_diagram(p1, y, n_bins=5, show_histogram=False)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    count, frac_pos, _ = _hand_bins(p1, y.astype(float), 5)
    np.testing.assert_allclose(
        [b.get_height() for b in _bars(ax, "Fraction of positives")], frac_pos[count > 0]
    )
    assert "P(y = 1)" in ax.get_xlabel()
    assert _title_value(ax.get_title(), "ECE") == pytest.approx(
        metrics.ece(p1, y, n_bins=5), abs=5e-5
    )


def test_logits_input_equals_probabilities(multiclass) -> None:
    p, y = multiclass
    z = np.log(p) + 3.0  # logits up to a per-row constant
    a = reliability_diagram(p, y, n_bins=8, show_histogram=False).axes[0]
    b = reliability_diagram(z, y, n_bins=8, from_logits=True, show_histogram=False).axes[0]
    ha = [r.get_height() for r in _bars(a, "Accuracy")]
    hb = [r.get_height() for r in _bars(b, "Accuracy")]
    np.testing.assert_allclose(ha, hb)
    assert a.get_title() == b.get_title()


def test_quantile_bins_have_equal_mass(multiclass) -> None:
    p, y = multiclass
    fig = reliability_diagram(p, y, n_bins=6, binning="quantile")
    ax_rel, ax_hist = fig.axes
    widths = [b.get_width() for b in _bars(ax_rel, "Accuracy")]
    assert np.ptp(widths) > 1e-3  # unequal widths...
    fracs = [r.get_height() for r in ax_hist.patches if isinstance(r, Rectangle)]
    np.testing.assert_allclose(fracs, 1 / 6, atol=2 / len(y))  # ...equal counts
    assert _title_value(ax_rel.get_title(), "ECE") == pytest.approx(
        metrics.ece(p, y, n_bins=6, binning="quantile"), abs=5e-5
    )


def test_draw_into_given_axes_with_twin_histogram(multiclass) -> None:
    p, y = multiclass
    fig, ax = plt.subplots()
    out = reliability_diagram(p, y, ax=ax, title="mine")
    assert out is fig
    assert len(fig.axes) == 2  # ax + its twin histogram
    assert ax.get_title().startswith("mine\nECE = ")
    fig2, ax2 = plt.subplots()
    reliability_diagram(p, y, ax=ax2, show_histogram=False)
    assert len(fig2.axes) == 1


def test_empty_bins_and_extreme_confidences() -> None:
    # confidences exactly 0.5 and 1.0: most bins empty, nothing NaN is drawn
    p = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = np.array([0, 0, 0, 0])
    ax = reliability_diagram(p, y, n_bins=10, show_histogram=False).axes[0]
    heights = [b.get_height() for b in _bars(ax, "Accuracy")]
    assert len(heights) == 2 and np.all(np.isfinite(heights))
    count, acc, _ = _hand_bins(p.max(1), (p.argmax(1) == y).astype(float), 10)
    np.testing.assert_allclose(heights, acc[count > 0])


def test_compare_reliability_panels(multiclass) -> None:
    p, y = multiclass
    z = np.log(p)
    after = softmax(z / 2.0)
    scores = Scores(logits=z, labels=y)
    fig = compare_reliability(
        {"before": (p, y), "after": (after, y), "scores": scores}, n_bins=10, title="T = 2"
    )
    rel_axes = [a for a in fig.axes if a.get_title()]
    assert [a.get_title().split("\n")[0] for a in rel_axes] == ["before", "after", "scores"]
    e_before = _title_value(rel_axes[0].get_title(), "ECE")
    e_after = _title_value(rel_axes[1].get_title(), "ECE")
    assert e_before == pytest.approx(metrics.ece(p, y, n_bins=10), abs=5e-5)
    assert e_after == pytest.approx(metrics.ece(after, y, n_bins=10), abs=5e-5)
    assert e_after < e_before  # tempering over-confident scores helps
    assert _title_value(rel_axes[2].get_title(), "ECE") == pytest.approx(e_before, abs=1e-4)
    assert fig.get_suptitle() == "T = 2"
    with pytest.raises(ValueError, match="results is empty"):
        compare_reliability({})
    with pytest.raises(ValueError, match=r"bad: expected \(probs, labels\)"):
        compare_reliability({"bad": p})


def test_classwise_panels_and_cw_ece(multiclass) -> None:
    p, y = multiclass
    fig = classwise_reliability_diagram(p, y, n_bins=10, classes=list("abcd"), title="cw")
    titled = [a for a in fig.axes if a.get_title()]
    assert len(titled) == 4
    for k, ax in enumerate(titled):
        assert ax.get_title().startswith("abcd"[k] + ":")
        per_class = metrics.ece(p[:, k], (y == k).astype(int), n_bins=10)
        assert _title_value(ax.get_title(), "ECE") == pytest.approx(per_class, abs=5e-5)
        count, frac, _ = _hand_bins(p[:, k], (y == k).astype(float), 10)
        hs = [b.get_height() for b in _bars(ax, "Frequency of class k")]
        np.testing.assert_allclose(hs, frac[count > 0], atol=1e-12)
    sup = fig.get_suptitle()
    assert sup.startswith("cw\n")
    assert _title_value(sup, "cw-ECE") == pytest.approx(
        metrics.classwise_ece(p, y, n_bins=10), abs=5e-5
    )


def test_classwise_caps_panels_to_most_frequent() -> None:
    rng = np.random.default_rng(2)
    y = rng.choice(6, size=500, p=[0.4, 0.02, 0.3, 0.02, 0.2, 0.06])
    p = softmax(rng.normal(size=(500, 6)))
    fig = classwise_reliability_diagram(p, y, max_classes=3, show_histogram=False)
    names = [a.get_title().split(":")[0] for a in fig.axes if a.get_title()]
    assert names == ["class 0", "class 2", "class 4"]
    assert "3 most frequent of 6 classes" in fig.get_suptitle()


def test_input_errors(multiclass) -> None:
    p, y = multiclass
    with pytest.raises(ValueError, match="length"):
        reliability_diagram(p, y[:-1])
    bad = p.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reliability_diagram(bad, y)
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        reliability_diagram(p, y, n_bins=0)
    with pytest.raises(ValueError, match="sum to 1"):
        reliability_diagram(p * 0.5, y)
    with pytest.raises(ValueError, match="classes has 2 names"):
        classwise_reliability_diagram(p, y, classes=["a", "b"])


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_save_figure_formats(tmp_path: Path, multiclass, suffix: str) -> None:
    p, y = multiclass
    fig = reliability_diagram(p, y)
    out = save_figure(fig, tmp_path / "sub" / f"rel{suffix}", close=True)
    data = out.read_bytes()
    magic = {".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF"}[suffix]
    assert data.startswith(magic) and len(data) > 1000
    assert not [f for f in out.parent.iterdir() if f.name.endswith(".tmp")]
    assert not plt.fignum_exists(fig.number)


def test_save_figure_rejects_unknown_suffix(tmp_path: Path, multiclass) -> None:
    fig = reliability_diagram(*multiclass)
    with pytest.raises(ValueError, match=r"\.png"):
        save_figure(fig, tmp_path / "rel.gif")
    assert not list(tmp_path.iterdir())


def test_import_calibkit_plots_does_not_import_matplotlib() -> None:
    code = (
        "import sys, calibkit, calibkit.plots, calibkit.io; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
