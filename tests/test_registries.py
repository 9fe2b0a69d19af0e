"""One source of truth per concept (issue 11): the metric registry, the calibrator registry and
the CLI that reads them; a toy calibrator and a toy metric registered from outside the package
show up in ``calibkit fit`` / ``evaluate`` / ``-m auto`` / the streaming accumulators.

Numbers are checked against scikit-learn, scipy and hand computations."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray
from scipy.special import log_softmax, softmax
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

from calibkit import Scores
from calibkit import metrics as m
from calibkit.calibrators import (
    CALIBRATORS,
    Calibrator,
    load,
    make_calibrator,
    register_calibrator,
    unregister_calibrator,
)
from calibkit.calibrators.base import FieldCheck
from calibkit.cli.main import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


# ---------------------------------------------------------------------- toys, defined out here
class ToyFixedTemperature(Calibrator):
    """Divides the logits by a fixed ``t`` (a hyper-parameter); "fitting" records it."""

    input_kind = "logits"
    _fitted_fields = ("t_",)

    def __init__(self, t: float = 2.0) -> None:
        self.t = t

    def _validate_params(self, check: FieldCheck) -> None:
        check.number("t", self.t, low=0.0, strict=True)

    def _validate_fitted(self, check: FieldCheck) -> None:
        self.t_ = check.number("t_", self.t_, low=0.0, strict=True)

    def _fit(self, X: NDArray[np.float64], y: NDArray[np.int64], w: Any) -> None:
        self.t_ = float(self.t)

    def _predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        z = np.stack([np.zeros_like(X), X], axis=1) if X.ndim == 1 else X
        return softmax(z / self.t_, axis=1)


def toy_miss(probs: Any, labels: Any) -> float:
    """Mean of ``1 - p(true class)``: a mean of per-item losses (additive)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    p_true = np.where(y == 1, p, 1.0 - p) if p.ndim == 1 else p[np.arange(len(y)), y]
    return float(np.mean(1.0 - p_true))


@pytest.fixture
def toys() -> Iterator[None]:
    register_calibrator("toy", ToyFixedTemperature, aliases=("toy_t",))
    m.register_metric("toy_miss", toy_miss, display="Toy miss", additive=True)
    try:
        yield
    finally:
        if "toy" in CALIBRATORS:
            unregister_calibrator("toy")
        if "toy_miss" in m.METRICS:
            m.unregister_metric("toy_miss")


@pytest.fixture
def example(tmp_path: Path) -> Path:
    dst = tmp_path / "sst2_scores.csv"
    shutil.copy(EXAMPLES / "sst2_scores.csv", dst)
    return dst


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    dst = tmp_path / "sst2_dev_scores.csv"
    shutil.copy(EXAMPLES / "sst2_dev_scores.csv", dst)
    return dst


def _probs_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    df = pd.read_csv(path)
    return (
        df[["prob_negative", "prob_positive"]].to_numpy(),
        (df["label"] == "positive").to_numpy().astype(int),
    )


def _no_nan(text: str) -> Any:
    def refuse(const: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {const} in the output")

    return json.loads(text, parse_constant=refuse)


def _json(capsys: Any, argv: list[str]) -> Any:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return _no_nan(capsys.readouterr().out)


# ---------------------------------------------------------------------- registration from outside
def test_toy_calibrator_and_metric_appear_in_the_cli(
    toys: None, capsys: Any, tmp_path: Path, dev: Path, example: Path
) -> None:
    # fit --help lists the toy calibrator; -m toy (and its alias) fits it
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--help"])
    assert exc.value.code == 0
    assert "toy" in capsys.readouterr().out
    cal_path = tmp_path / "toy.json"
    rep = _json(capsys, ["fit", str(dev), "-m", "toy_t", "-o", str(cal_path)])
    assert rep["method"] == "toy"
    assert isinstance(load(cal_path), ToyFixedTemperature)
    # the toy metric is in fit's before/after: the file's probabilities, then softmax(log p / 2)
    p_dev, y_dev = _probs_labels(dev)
    assert rep["fit"]["before"]["toy_miss"] == pytest.approx(
        np.mean(1 - p_dev[np.arange(len(y_dev)), y_dev]), abs=1e-12
    )
    p_half = softmax(np.log(p_dev) / 2.0, axis=1)
    assert rep["fit"]["after"]["toy_miss"] == pytest.approx(
        np.mean(1 - p_half[np.arange(len(y_dev)), y_dev]), abs=1e-9
    )
    # apply uses the saved toy calibrator
    out = tmp_path / "out.csv"
    _json(capsys, ["apply", str(cal_path), str(example), "-o", str(out)])
    p, y = _probs_labels(example)
    got = pd.read_csv(out)[["prob_negative", "prob_positive"]].to_numpy()
    np.testing.assert_allclose(got, softmax(np.log(p) / 2.0, axis=1), atol=1e-9)
    # evaluate reports the toy metric, in JSON and in the table (display name)
    ev = _json(capsys, ["evaluate", str(example)])
    assert ev["metrics"]["toy_miss"] == pytest.approx(
        np.mean(1 - p[np.arange(len(y)), y]), abs=1e-12
    )
    assert main(["evaluate", str(example)]) == 0
    assert "Toy miss" in capsys.readouterr().out
    # -m auto chooses among the registered calibrators, the toy one included
    auto = _json(
        capsys,
        [
            "fit",
            str(dev),
            "-m",
            "auto",
            "--param",
            'candidates=["toy","temperature"]',
            "-o",
            str(tmp_path / "auto.json"),
        ],
    )
    assert {r["name"] for r in auto["selection"]["candidates"]} == {"none", "toy", "temperature"}
    # the streaming accumulator streams every additive metric, the toy one too
    acc = m.ScoringRuleAccumulator()
    for part in np.array_split(np.arange(len(y)), 3):
        acc.update(p[part], y[part])
    assert acc.compute()["toy_miss"] == pytest.approx(toy_miss(p, y), abs=1e-12)
    # unregistered: gone from the CLI's choices and from the reports
    unregister_calibrator("toy")
    m.unregister_metric("toy_miss")
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "toy" not in capsys.readouterr().out
    assert "toy_miss" not in _json(capsys, ["evaluate", str(example)])["metrics"]
    with pytest.raises(SystemExit):  # argparse: not a choice any more
        main(["fit", str(dev), "-m", "toy", "-o", str(cal_path)])


def test_registration_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="'temperature' is taken"):
        register_calibrator("temperature", ToyFixedTemperature)
    with pytest.raises(ValueError, match="taken \\(by 'platt'\\)"):
        register_calibrator("mine", ToyFixedTemperature, aliases=("sigmoid",))
    with pytest.raises(ValueError, match="lower-case"):
        register_calibrator("Toy", ToyFixedTemperature)
    with pytest.raises(ValueError, match="not a Calibrator subclass"):
        register_calibrator("toy2", dict)  # type: ignore[arg-type]
    assert "mine" not in CALIBRATORS and "toy2" not in CALIBRATORS
    with pytest.raises(ValueError, match="'ece' is taken"):
        m.register_metric("ece", toy_miss)
    with pytest.raises(ValueError, match="'brier_score' is taken"):
        m.register_metric("mine", toy_miss, aliases=("brier_score",))
    with pytest.raises(ValueError, match="spaces or commas"):
        m.register_metric("a,b", toy_miss)
    with pytest.raises(ValueError, match="binned"):
        m.register_metric("mine", toy_miss, additive=True, binned=True)
    assert "mine" not in m.METRICS
    m.register_metric("bad_return", lambda p, y: np.array([1.0, 2.0]))
    try:
        with pytest.raises(ValueError, match="'bad_return' returned"):
            m.compute_metrics(np.array([0.2, 0.7]), np.array([0, 1]), names="bad_return")
    finally:
        m.unregister_metric("bad_return")
    with pytest.raises(ValueError, match="unknown metric 'nope'; known metrics: accuracy"):
        m.get_metric("nope")


# ---------------------------------------------------------------------- the metric registry
def _data(n: int = 2_000, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 2.0
    p = softmax(z, axis=1)
    y = np.array([rng.choice(k, p=row) for row in softmax(z * 0.6, axis=1)])
    return z, p, y


def test_compute_metrics_against_independent_references() -> None:
    _, p, y = _data()
    got = m.compute_metrics(p, y, n_bins=15)
    assert list(got) == m.metric_names(default=True)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    correct = pred == y
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-15)
    assert got["nll"] == pytest.approx(log_loss(y, p), rel=1e-12)
    onehot = np.eye(p.shape[1])[y]
    assert got["brier"] == pytest.approx(np.mean(np.sum((p - onehot) ** 2, axis=1)), rel=1e-12)
    assert got["auroc"] == pytest.approx(roc_auc_score(correct, conf), abs=1e-12)
    # ECE by hand: 15 equal-width bins of the top-label confidence
    b = np.minimum((conf * 15).astype(int), 14)
    ece = sum(
        abs(conf[b == j].mean() - correct[b == j].mean()) * np.mean(b == j)
        for j in range(15)
        if np.any(b == j)
    )
    assert got["ece"] == pytest.approx(ece, abs=1e-12)
    # binary 1-D view: scikit-learn's Brier score
    p1 = p[:, 1] / (p[:, 0] + p[:, 1])
    y1 = (y == 1).astype(int)
    assert m.compute_metrics(p1, y1, names="brier")["brier"] == pytest.approx(
        brier_score_loss(y1, p1), abs=1e-15
    )


def test_bins_and_logits_go_only_to_the_metrics_that_take_them() -> None:
    z, p, y = _data(seed=1)
    got = m.compute_metrics(p, y, names=["ace", "ece", "ece_10_bin"], n_bins=10, binning="uniform")
    # ACE keeps its equal-mass bins (binning= is not passed to it), ECE takes both
    assert got["ace"] == m.ace(p, y, n_bins=10)
    assert got["ace"] != m.ace(p, y, n_bins=10, binning="uniform")
    assert got["ece"] == m.ece(p, y, n_bins=10, binning="uniform")
    assert got["ece_10_bin"] == m.compute_metrics(p, y, names="ece_10_bin", n_bins=3)["ece_10_bin"]
    # NLL of logits is exact (log-softmax), of probabilities clipped at 1e-12
    z2 = z.copy()
    z2[0] = [0.0, 0.0, 0.0, 0.0]
    z2[0, y[0]] = -40.0  # the true class 40 nats below the others
    p2 = softmax(z2, axis=1)
    exact = float(-np.mean(log_softmax(z2, axis=1)[np.arange(len(y)), y]))
    assert m.compute_metrics(p2, y, names="nll", logits=z2)["nll"] == pytest.approx(
        exact, rel=1e-12
    )
    clipped = m.compute_metrics(p2, y, names="nll")["nll"]
    assert clipped < exact - 1e-3  # -log(1e-12) = 27.6 < 40
    # Scores carry their logits: the same exact NLL
    s = Scores(logits=z2, labels=y)
    assert m.compute_metrics(s, names="nll")["nll"] == pytest.approx(exact, rel=1e-12)


def test_bootstrap_metrics_resample_like_bootstrap_ci() -> None:
    from calibkit.metrics.ranking import auroc

    _, p, y = _data(500, seed=2)
    got = m.bootstrap_metrics(p, y, n_boot=50, seed=7, names=["ece", "auroc"], n_bins=10)
    ece = m.bootstrap_ci(m.ece, p, y, n_boot=50, seed=7, n_bins=10)
    auc = m.bootstrap_ci(auroc, p, y, n_boot=50, seed=7)
    assert got["ece"] == (ece.low, ece.high)
    assert got["auroc"] == (auc.low, auc.high)


def test_names_aliases_and_one_vocabulary() -> None:
    assert m.get_metric("classwise_ece").name == "cw_ece"
    assert m.get_metric("selective_acc_at_10").name == "selective_acc@10"
    assert m.resolve_metric_names("all") == list(m.METRICS)
    assert m.resolve_metric_names("nll, brier_score,nll") == ["nll", "brier"]
    assert set(m.metric_names(additive=True)) == {"accuracy", "brier", "nll"}
    # the ranking table of calibkit.metrics.ranking says the same as the registry
    from calibkit.metrics.ranking import RANKING_METRICS

    for key, (display, lower, fn) in RANKING_METRICS.items():
        entry = m.get_metric(key)
        assert (entry.display, entry.lower_is_better, entry.fn) == (display, lower, fn), key
        assert entry.input_kind in ("ranking", "top_label")
    # the streaming accumulators report under registry names
    _, p, y = _data(300, seed=3)
    acc = m.CalibrationErrorAccumulator(15, classwise=True).update(p, y)
    rules = m.ScoringRuleAccumulator().update(p, y)
    for key, value in {**acc.compute(), **rules.compute()}.items():
        assert key in m.METRICS, key
        assert value == pytest.approx(m.compute_metrics(p, y, names=key)[key], abs=1e-12), key


# ---------------------------------------------------------------------- the CLI over the registries
def test_fit_accepts_aliases_and_lists_every_registered_calibrator(
    capsys: Any, tmp_path: Path, dev: Path
) -> None:
    rep = _json(capsys, ["fit", str(dev), "-m", "sigmoid", "-o", str(tmp_path / "p.json")])
    assert rep["method"] == "platt"
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    for name in CALIBRATORS:
        assert name in text, name


def test_fit_auto_prints_and_saves_the_cross_validated_choice(
    capsys: Any, tmp_path: Path, dev: Path, example: Path
) -> None:
    cal_path = tmp_path / "auto.json"
    argv = [
        "fit",
        str(dev),
        "-m",
        "auto",
        "-o",
        str(cal_path),
        "--param",
        'candidates=["temperature","isotonic","histogram"]',
    ]
    rep = _json(capsys, argv)
    sel = rep["selection"]
    assert sel["scoring"] == "nll" and sel["cv"] == 5
    rows = {r["name"]: r for r in sel["candidates"]}
    assert set(rows) == {"none", "temperature", "isotonic", "histogram"}
    ok = [r for r in rows.values() if r["error"] is None]
    best = min(ok, key=lambda r: r["mean"])
    assert sel["selected"] == best["name"] and rows[sel["selected"]]["selected"]
    assert rows[sel["selected"]]["mean"] <= rows["none"]["mean"]
    # the saved calibrator holds the same per-fold scores; mean and std are theirs
    saved = load(cal_path)
    for name, r in rows.items():
        folds = np.asarray(saved.cv_results_[name]["folds"], dtype=np.float64)
        assert r["mean"] == pytest.approx(folds.mean(), abs=1e-12)
        assert r["std"] == pytest.approx(folds.std(), abs=1e-12)
    assert json.loads(cal_path.read_text())["fitted"]["selected_"] == sel["selected"]
    # the table: every candidate with mean and std, and the winner
    capsys.readouterr()
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "5-fold cross-validated NLL" in text and "selected" in text
    for name, r in rows.items():
        assert name in text and f"{r['mean']:.4f}" in text and f"{r['std']:.4f}" in text
    # apply reads the auto calibrator like any other
    res = _json(capsys, ["apply", str(cal_path), str(example), "-o", str(tmp_path / "o.csv")])
    assert res["method"] == "AutoCalibrator"


def test_evaluate_metrics_option_and_ranking_metrics(capsys: Any, example: Path) -> None:
    p, y = _probs_labels(example)
    out = _json(capsys, ["evaluate", str(example), "--metrics", "ece,classwise_ece,auroc"])
    assert list(out["metrics"]) == ["ece", "cw_ece", "auroc"]
    conf, correct = p.max(axis=1), p.argmax(axis=1) == y
    assert out["metrics"]["auroc"] == pytest.approx(roc_auc_score(correct, conf), abs=1e-12)
    assert set(_json(capsys, ["evaluate", str(example), "--metrics", "all"])["metrics"]) == set(
        m.METRICS
    )
    capsys.readouterr()
    assert main(["evaluate", str(example), "--metrics", "ece,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown metric 'nope'" in err[0]


def test_undefined_metrics_are_null_never_nan_in_json(
    capsys: Any, tmp_path: Path, dev: Path
) -> None:
    # every prediction right: AUROC (and PRR) of confidence for correctness are undefined
    f = tmp_path / "all_right.csv"
    rng = np.random.default_rng(0)
    q = rng.uniform(0.6, 0.99, 200)
    y = rng.integers(0, 2, 200)
    pd.DataFrame({"label": y, "prob": np.where(y == 1, q, 1 - q)}).to_csv(f, index=False)
    out = _json(capsys, ["evaluate", str(f), "--bootstrap", "20"])
    assert out["metrics"]["auroc"] is None and out["metrics"]["prr"] is None
    assert out["intervals"]["auroc"] == [None, None]
    assert out["metrics"]["accuracy"] == 1.0
    rep = _json(capsys, ["fit", str(f), "-m", "temperature", "-o", str(tmp_path / "t.json")])
    assert rep["fit"]["before"]["auroc"] is None


def test_evaluate_scores_is_the_api_of_the_command(capsys: Any, example: Path) -> None:
    from calibkit.evaluation import evaluate_scores
    from calibkit.io import read_scores_table, table_probabilities

    cli = _json(capsys, ["evaluate", str(example), "--bins", "10", "--positive", "positive"])
    scores, df = read_scores_table(example)
    ev = evaluate_scores(
        scores, probs=table_probabilities(df, scores), positive="positive", n_bins=10
    )
    d = ev.to_dict()
    assert d["view"] == cli["view"] == "P(y=positive)"
    assert d["metrics"] == cli["metrics"]
    assert d["reliability_table"] == cli["reliability_table"]


def test_io_package_keeps_its_public_names() -> None:
    import calibkit.io as io
    from calibkit.io import schema, scores, tables

    for name in (
        "TABLE_SUFFIXES",
        "read_table",
        "write_table",
        "check_table_output",
        "read_scores_meta",
        "row_ref",
    ):
        assert getattr(io, name) is getattr(tables, name)
    for name in ("ScoreColumns", "detect_score_columns"):
        assert getattr(io, name) is getattr(schema, name)
    for name in ("scores_from_table", "read_scores", "read_scores_table", "table_probabilities"):
        assert getattr(io, name) is getattr(scores, name)
    assert callable(io.atomic_write)
    made = make_calibrator("ts")
    assert type(made).__name__ == "TemperatureScaling"
