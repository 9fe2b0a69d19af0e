"""Every calibkit calibrator and ``auto`` side by side with netcal's and scikit-learn's, on real
classifier outputs: accuracy, ECE, NLL and fit time on a held-out half.

    python benchmarks/calibrators.py                      # all datasets, markdown tables
    python benchmarks/calibrators.py --datasets lenet-5-cifar-10 --json out.json
    python benchmarks/calibrators.py --quick              # LLM fixtures and CIFAR-10 only

Data
* The three CIFAR records in ``../shared/data/cifar_records`` (netcal's example outputs of a
  WideResNet-16-4 on CIFAR-10 / CIFAR-100 and a LeNet-5 on CIFAR-10; 10,000 test images each).
  ``log(predictions)`` are the logits (softmax probabilities' log: the logits up to a per-row
  constant). Split 50/50 with a fixed seed (0): fit on the first half, evaluate on the second.
* The LLM scores committed as ``tests/fixtures/ensemble/*.parquet`` (SmolLM2-135M and Gemma 3
  270M, zero- and few-shot, on SST-2, CR and SUBJ; 300 items each, two classes), split 50/50 the
  same way.

Methods
* calibkit: ``none`` (identity), temperature, vector, matrix, dirichlet (both with the default
  cross-validated ODIR ``reg_lambda="auto"``), platt, isotonic, histogram, beta and ``auto``
  (``calibkit.calibrators.select``: 5-fold cross-validated NLL over all of them).
* netcal 1.3 (on the probabilities, its defaults): TemperatureScaling, IsotonicRegression and
  HistogramBinning (10 bins; netcal 1.3 returns the full (n, K) distribution for K > 2), and
  for K <= 10 only LogisticCalibration (vector scaling for K > 2) and BetaCalibration (about a
  minute each at K = 10; far longer at K = 100).
* scikit-learn: ``CalibratedClassifierCV(FrozenEstimator(identity), method=...)`` with
  ``sigmoid``, ``isotonic`` and ``temperature``; the frozen "classifier" returns the logits as
  its ``decision_function`` (the margin ``z_1 - z_0`` for two classes).

Metrics (on the held-out half): accuracy; ECE with 15 equal-width bins, top-label
(``calibkit.metrics.ece``); NLL (``calibkit.metrics.nll``, natural log, true-class probability
floored at 1e-12); fit time in seconds (wall clock, one run, single process). A method that
fails is listed with its error.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cifar_records"
FIXTURES = REPO / "tests" / "fixtures" / "ensemble"
CIFAR = ("wideresnet-16-4-cifar-10", "lenet-5-cifar-10", "wideresnet-16-4-cifar-100")
CALIBKIT = (
    "none",
    "temperature",
    "vector",
    "matrix",
    "dirichlet",
    "platt",
    "isotonic",
    "histogram",
    "beta",
    "auto",
)


# ---------------------------------------------------------------------- data
def load_cifar(name: str) -> tuple[np.ndarray, np.ndarray]:
    d = np.load(DATA / f"{name}.npz")
    p = d["predictions"].astype(np.float64)
    p /= p.sum(axis=1, keepdims=True)
    return np.log(np.clip(p, 1e-300, None)), d["ground_truth"].astype(np.int64)


def load_fixture(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from calibkit.scores import Scores

    s = Scores.load(path)
    return np.asarray(s.logits, dtype=np.float64), s.require_labels()


def split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).permutation(n)
    return idx[: n // 2], idx[n // 2 :]


# ---------------------------------------------------------------------- methods
Fitter = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def calibkit_method(name: str) -> Fitter:
    from calibkit._math import softmax
    from calibkit.calibrators import make_calibrator

    def run(z_fit: np.ndarray, y_fit: np.ndarray, z_test: np.ndarray) -> np.ndarray:
        cal = make_calibrator(name)
        if cal.input_kind == "logits":
            return cal.fit(z_fit, y_fit).predict_proba(z_test)
        return cal.fit(softmax(z_fit, axis=1), y_fit).predict_proba(softmax(z_test, axis=1))

    return run


def netcal_method(name: str) -> Fitter:
    def run(z_fit: np.ndarray, y_fit: np.ndarray, z_test: np.ndarray) -> np.ndarray:
        from netcal import binning, scaling

        from calibkit._math import softmax

        cls = {
            "TemperatureScaling": scaling.TemperatureScaling,
            "LogisticCalibration": scaling.LogisticCalibration,
            "BetaCalibration": scaling.BetaCalibration,
            "IsotonicRegression": binning.IsotonicRegression,
            "HistogramBinning": binning.HistogramBinning,
        }[name]
        p_fit, p_test = softmax(z_fit, axis=1), softmax(z_test, axis=1)
        binary = z_fit.shape[1] == 2
        cal = cls()
        cal.fit(p_fit[:, 1] if binary else p_fit, y_fit)
        out = np.asarray(cal.transform(p_test[:, 1] if binary else p_test), dtype=np.float64)
        if out.ndim == 1:
            out = np.stack([1.0 - out, out], axis=1)
        out = np.clip(out, 0.0, 1.0)
        return out / out.sum(axis=1, keepdims=True)

    return run


def sklearn_method(method: str) -> Fitter:
    def run(z_fit: np.ndarray, y_fit: np.ndarray, z_test: np.ndarray) -> np.ndarray:
        from sklearn.base import BaseEstimator, ClassifierMixin
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.frozen import FrozenEstimator

        k = z_fit.shape[1]

        class Identity(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
            """A 'classifier' whose decision_function is its input: the logits."""

            def fit(self, X: np.ndarray, y: np.ndarray) -> Identity:
                self.classes_ = np.arange(k)
                return self

            def decision_function(self, X: np.ndarray) -> np.ndarray:
                X = np.asarray(X)
                return X[:, 1] - X[:, 0] if k == 2 else X

            def predict(self, X: np.ndarray) -> np.ndarray:
                return np.asarray(X).argmax(axis=1)

        base = FrozenEstimator(Identity().fit(z_fit[:1], y_fit[:1]))
        cal = CalibratedClassifierCV(base, method=method).fit(z_fit, y_fit)
        return np.asarray(cal.predict_proba(z_test), dtype=np.float64)

    return run


def methods(k: int) -> list[tuple[str, str, Fitter]]:
    out = [("calibkit", name, calibkit_method(name)) for name in CALIBKIT]
    nc = ["TemperatureScaling", "IsotonicRegression", "HistogramBinning"]
    if k <= 10:  # one torch fit per class: about a minute for K = 10, far longer for K = 100
        nc[1:1] = ["LogisticCalibration"]
        nc.append("BetaCalibration")
    out += [("netcal", name, netcal_method(name)) for name in nc]
    out += [("scikit-learn", m, sklearn_method(m)) for m in ("sigmoid", "isotonic", "temperature")]
    return out


# ---------------------------------------------------------------------- run
def evaluate(dataset: str, z: np.ndarray, y: np.ndarray, seed: int = 0) -> list[dict[str, Any]]:
    from calibkit import metrics as m

    a, b = split(len(y), seed)
    rows = []
    for lib, name, fit in methods(z.shape[1]):
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = fit(z[a], y[a], z[b])
            sec = time.perf_counter() - t0
            row = {
                "dataset": dataset,
                "library": lib,
                "method": name,
                "accuracy": m.accuracy(p, y[b]),
                "ece": m.ece(p, y[b], n_bins=15),
                "nll": m.nll(p, y[b]),
                "fit_s": sec,
                "error": None,
            }
        except Exception as exc:  # a failing method is reported, not fatal
            row = {"dataset": dataset, "library": lib, "method": name, "error": repr(exc)[:120]}
        rows.append(row)
        shown = (
            f"acc {row['accuracy']:.4f}  ECE {row['ece']:.4f}  NLL {row['nll']:.4f}  "
            f"{row['fit_s']:.2f}s"
            if row["error"] is None
            else f"failed: {row['error']}"
        )
        print(f"  {lib:<12} {name:<20} {shown}", flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    out = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == ds]
        out.append(f"\n**{ds}**\n")
        out.append("| library | method | accuracy | ECE | NLL | fit (s) |")
        out.append("|---|---|---:|---:|---:|---:|")
        ok = [r for r in sub if r["error"] is None]
        best = min(r["nll"] for r in ok) if ok else None
        for r in sub:
            if r["error"] is not None:
                out.append(f"| {r['library']} | {r['method']} | failed: {r['error']} | | | |")
                continue
            nll = f"{r['nll']:.4f}"
            if best is not None and r["nll"] == best:
                nll = f"**{nll}**"
            out.append(
                f"| {r['library']} | {r['method']} | {r['accuracy']:.4f} | {r['ece']:.4f} | "
                f"{nll} | {r['fit_s']:.2f} |"
            )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", nargs="*", help="CIFAR record names and/or fixture stems")
    ap.add_argument("--quick", action="store_true", help="LLM fixtures and CIFAR-10 only")
    ap.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    ap.add_argument("--json", help="also write the rows as JSON here")
    args = ap.parse_args()
    fixtures = sorted(FIXTURES.glob("*.parquet"))
    wanted: list[str] = list(args.datasets or [])
    if not wanted:
        wanted = [p.stem for p in fixtures] + [c for c in CIFAR if not (args.quick and "100" in c)]
    rows: list[dict[str, Any]] = []
    for ds in wanted:
        if ds in CIFAR:
            if not (DATA / f"{ds}.npz").exists():
                print(f"{ds}: skipped, {DATA} not found")
                continue
            z, y = load_cifar(ds)
        else:
            path = FIXTURES / f"{ds}.parquet"
            if not path.exists():
                raise SystemExit(f"unknown dataset {ds!r}")
            z, y = load_fixture(path)
        print(f"{ds}: n = {len(y)}, K = {z.shape[1]}", flush=True)
        rows += evaluate(ds, z, y, args.seed)
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
