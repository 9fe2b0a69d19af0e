"""Time and peak memory of ECE in calibkit, netcal and torchmetrics, side by side, and the fit
time of temperature scaling in calibkit and scikit-learn.

    python benchmarks/metrics.py            # ECE on 1M and 10M predictions, K = 2 and K = 100
    python benchmarks/metrics.py --quick    # 100k and 1M predictions (a minute)

What is measured
* ECE, 15 equal-width bins, on float32 probabilities (10M x 100 float64 would be 8 GB; float32
  is 4 GB). K = 2 uses the binary view, a 1-D ``P(y=1)`` against ``y`` (the only binary input
  the three libraries read the same way); K = 100 the top-label view of an ``(n, 100)`` array.
  The three ECE values are printed so one can see they agree.
  calibkit: ``calibkit.metrics.ece(p, y)``; netcal: ``netcal.metrics.ECE(15).measure(p, y)``;
  torchmetrics: ``binary_/multiclass_calibration_error(torch.from_numpy(p), ..., n_bins=15)``
  (zero-copy tensors, validate_args=True, the defaults).
* time: best wall-clock time of ``--repeat`` runs (the input arrays already exist), after a
  warm-up run.
* peak memory, two methods, both measured in a separate run from the timing:
  ``tracemalloc`` (peak of Python/numpy allocations above the input; torch's allocator is
  invisible to it, so "-" for torchmetrics) and ``RSS`` (peak resident-set growth over the call,
  sampled every 2 ms by a thread via psutil; the same method for all three libraries).
* temperature scaling fit on 1M x 100 float32 logits: ``calibkit.calibrators.TemperatureScaling``
  vs scikit-learn's ``CalibratedClassifierCV(FrozenEstimator(identity), method="temperature")``,
  whose estimator's ``decision_function`` returns the logits unchanged.

A library is skipped for a size, with the reason printed, if free memory is short.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import threading
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

N_BINS = 15
MiB = 1024.0**2


# ---------------------------------------------------------------------- data
def make_probs(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(n, k)`` softmax probabilities of over-confident logits, and labels with about
    70% top-label accuracy; built in chunks so no float64 (n, k) copy ever exists."""
    rng = np.random.default_rng(seed)
    p = np.empty((n, k), dtype=np.float32)
    y = np.empty(n, dtype=np.int64)
    step = max(1, (1 << 22) // k)
    for s in range(0, n, step):
        e = min(n, s + step)
        z = rng.standard_normal((e - s, k), dtype=np.float32) * np.float32(3.0)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        p[s:e] = z
        top = z.argmax(axis=1)
        other = rng.integers(0, k, e - s)
        y[s:e] = np.where(rng.random(e - s) < 0.7, top, other)
    return p, y


def make_logits(n: int, k: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(n, k)`` logits (over-confident: temperature ~2 fits) and labels."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k), dtype=np.float32) * np.float32(4.0)
    g = z / 2.0 + rng.gumbel(size=(n, k)).astype(np.float32)
    return z, g.argmax(axis=1).astype(np.int64)


# ---------------------------------------------------------------------- measurement
class RSSPeak:
    """Peak RSS growth over a ``with`` block, sampled by a background thread."""

    def __init__(self, interval: float = 0.002):
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> RSSPeak:
        gc.collect()
        self.base = self._proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.base) / MiB


@dataclass
class Result:
    task: str
    size: str
    library: str
    seconds: float | None = None
    tracemalloc_mib: float | None = None
    rss_mib: float | None = None
    value: float | None = None
    note: str = ""


def measure(
    fn: Callable[[], float], repeat: int, trace: bool
) -> tuple[float, float | None, float, float]:
    """(best seconds, tracemalloc peak MiB or None, RSS peak growth MiB, value).

    The first call, under the RSS sampler, also warms up (imports, first touch of the input)
    and gives the value; then ``repeat`` timed calls; then one under tracemalloc.
    """
    with RSSPeak() as rss:
        value = float(fn())
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    tm = None
    if trace:
        gc.collect()
        tracemalloc.start()
        tracemalloc.reset_peak()
        fn()
        tm = tracemalloc.get_traced_memory()[1] / MiB
        tracemalloc.stop()
    return best, tm, rss.delta_mib, value


def available_mib() -> float:
    import psutil

    return psutil.virtual_memory().available / MiB


# ---------------------------------------------------------------------- ECE
def ece_fns(p: np.ndarray, y: np.ndarray, k: int) -> dict[str, Callable[[], float]]:
    import torch
    from netcal.metrics import ECE
    from torchmetrics.functional.classification import (
        binary_calibration_error,
        multiclass_calibration_error,
    )

    from calibkit.metrics import ece

    tp, ty = torch.from_numpy(p), torch.from_numpy(y)

    def tm() -> float:
        if k == 2:
            return float(binary_calibration_error(tp, ty, n_bins=N_BINS).item())
        return float(multiclass_calibration_error(tp, ty, num_classes=k, n_bins=N_BINS).item())

    def nc() -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(ECE(bins=N_BINS).measure(p, y))

    return {
        "calibkit": lambda: ece(p, y, N_BINS),
        "netcal": nc,
        "torchmetrics": tm,
    }


# rough peak-memory multiple of the input each library needs (netcal clips into a copy and
# builds float64 (n, 1) arrays; torchmetrics' range check makes two (n, K) bool masks)
_NEED = {"calibkit": 0.2, "netcal": 2.5, "torchmetrics": 1.0}


def bench_ece(sizes: list[int], ks: list[int], repeat: int | None) -> list[Result]:
    out: list[Result] = []
    for n in sizes:
        for k in ks:
            p, y = make_probs(n, k)
            if k == 2:
                p = np.ascontiguousarray(p[:, 1])  # binary view: P(y = 1)
                y = (y == 1).astype(np.int64)
            size = f"{n / 1e6:g}M x {k}"
            rep = repeat if repeat is not None else (3 if n * k <= 10_000_000 else 1)
            fns = ece_fns(p, y, k)
            for lib, fn in fns.items():
                need = _NEED[lib] * p.nbytes / MiB + 512
                if available_mib() < need:
                    out.append(
                        Result(
                            "ECE",
                            size,
                            lib,
                            note=f"skipped: needs ~{need:.0f} MiB free, "
                            f"{available_mib():.0f} MiB available",
                        )
                    )
                    print(f"  {size:>12} {lib:<13} {out[-1].note}", flush=True)
                    continue
                sec, tm, rss, val = measure(fn, rep, trace=lib != "torchmetrics")
                out.append(Result("ECE", size, lib, sec, tm, rss, val))
                print(
                    f"  {size:>12} {lib:<13} {sec:8.3f} s  tracemalloc "
                    f"{'-' if tm is None else f'{tm:.1f}'} MiB  RSS {rss:.1f} MiB  ECE {val:.6f}",
                    flush=True,
                )
            del p, y, fns
            gc.collect()
    return out


# ---------------------------------------------------------------------- temperature scaling
def bench_temperature(n: int, k: int, repeat: int) -> list[Result]:
    z, y = make_logits(n, k)
    size = f"{n / 1e6:g}M x {k}"
    out: list[Result] = []
    try:
        from calibkit.calibrators import TemperatureScaling
    except ImportError as e:
        out.append(Result("temperature fit", size, "calibkit", note=f"skipped: {e}"))
        print(f"  calibkit TemperatureScaling not importable: {e}")
    else:

        def ck() -> float:
            return float(TemperatureScaling().fit(z, y).temperature_)

        sec, tm, rss, val = measure(ck, repeat, trace=True)
        out.append(Result("temperature fit", size, "calibkit", sec, tm, rss, val, "T"))
        print(f"  calibkit     {sec:8.3f} s  T = {val:.6f}", flush=True)

    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    class Identity(ClassifierMixin, BaseEstimator):
        """A 'classifier' whose decision_function returns its input: the logits."""

        def fit(self, X: np.ndarray, y: np.ndarray) -> Identity:
            self.classes_ = np.arange(X.shape[1])
            return self

        def decision_function(self, X: np.ndarray) -> np.ndarray:
            return np.asarray(X)

        def predict(self, X: np.ndarray) -> np.ndarray:
            return np.asarray(X).argmax(axis=1)

    base = FrozenEstimator(Identity().fit(z[:1], y[:1]))

    def sk() -> float:
        cal = CalibratedClassifierCV(base, method="temperature").fit(z, y)
        return float(1.0 / cal.calibrated_classifiers_[0].calibrators[0].beta_)

    sec, tm, rss, val = measure(sk, repeat, trace=True)
    out.append(Result("temperature fit", size, "scikit-learn", sec, tm, rss, val, "T"))
    print(f"  scikit-learn {sec:8.3f} s  T = {val:.6f}", flush=True)
    return out


# ---------------------------------------------------------------------- report
def _f(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def markdown(results: list[Result]) -> str:
    lines = [
        "| task | size | library | time (s) | x calibkit time | peak tracemalloc (MiB) "
        "| peak RSS growth (MiB) | value |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    base = {(r.task, r.size): r.seconds for r in results if r.library == "calibkit"}
    for r in results:
        ref = base.get((r.task, r.size))
        ratio = None if (r.seconds is None or not ref) else r.seconds / ref
        val = r.note if r.seconds is None else f"{r.note + ' = ' if r.note else ''}{r.value:.6f}"
        lines.append(
            f"| {r.task} | {r.size} | {r.library} | {_f(r.seconds, '.3f')} | "
            f"{_f(ratio, '.1f')} | {_f(r.tracemalloc_mib, '.1f')} | {_f(r.rss_mib, '.1f')} "
            f"| {val} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="100k and 1M predictions only")
    ap.add_argument("--sizes", type=int, nargs="+", help="numbers of predictions")
    ap.add_argument("--classes", type=int, nargs="+", default=[2, 100])
    ap.add_argument("--repeat", type=int, help="timed runs per cell (default 3, 1 above 1e7)")
    ap.add_argument("--temp-n", type=int, help="rows for the temperature fit (default 1M)")
    ap.add_argument("--no-temperature", action="store_true")
    args = ap.parse_args(argv)

    sizes = args.sizes or ([100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000])
    temp_n = args.temp_n or (200_000 if args.quick else 1_000_000)

    import netcal
    import sklearn
    import torch
    import torchmetrics

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numpy {np.__version__}, netcal {netcal.__version__}, torchmetrics "
        f"{torchmetrics.__version__}, torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), scikit-learn {sklearn.__version__}; {available_mib():.0f} MiB free",
        flush=True,
    )
    results = bench_ece(sizes, args.classes, args.repeat)
    if not args.no_temperature:
        print("temperature scaling", flush=True)
        results += bench_temperature(temp_n, 100, args.repeat or (3 if temp_n <= 200_000 else 1))
    print()
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
