"""Validity, efficiency and speed of calibkit.decisions on real model outputs (the long version of
``tests/test_decisions_validity.py`` and ``tests/test_decisions_mapie.py``).

    python benchmarks/decisions.py                 # 10,000 draws per setting (a few minutes)
    python benchmarks/decisions.py --splits 1000   # quicker
    python benchmarks/decisions.py --only ltt conformal

Sections (Markdown tables on stdout):

* ``ltt``: Learn-then-Test. *population*: calibration drawn with replacement from the 10,000
  outputs, which are the population, so ``R(lambda_hat)`` is exact; *split*: random splits
  without replacement, and the error on the held-out part (whose own sampling noise is outside
  the guarantee, hence the half/half rows exceeding delta); *batch guarantee*: the threshold
  certified for the held-out half itself (``AutoLabelPolicy.apply(..., batch=True)``), whose
  realised error is what it bounds. Tolerance: ``delta + 3 sd``.
* ``gate``: where fixed-sequence testing starts (``min_certifiable_n`` vs the default
  ``default_min_accepted``).
* ``crc``: conformal risk control's expected share of items accepted and wrong.
* ``conformal``: marginal and worst-class coverage and set sizes of LAC / APS / RAPS / Mondrian.
* ``mapie``: the same split against MAPIE (quantile, coverage, set size).
* ``speed``: wall time of the API calls on 10k items.

Data: ``../shared/data/cifar_records`` (or $CALIBKIT_DATA) and ``tests/fixtures/ensemble``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np

from calibkit import Scores
from calibkit.decisions import (
    SplitConformal,
    accepted_counts,
    batch_select,
    certify_threshold,
    conformal_quantile,
    crc_select,
    default_min_accepted,
    evaluate_sets,
    fixed_sequence,
    grid_cells,
    label_scores,
    ltt_select,
    min_certifiable_n,
    threshold_grid,
)
from calibkit.decisions.risk import pvalue

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CALIBKIT_DATA", REPO.parent / "shared" / "data"))
FIXTURES = REPO / "tests" / "fixtures" / "ensemble"
RECORDS = ("wideresnet-16-4-cifar-10", "lenet-5-cifar-10", "wideresnet-16-4-cifar-100")


def cifar(name: str) -> tuple[np.ndarray, np.ndarray]:
    d = np.load(DATA / "cifar_records" / f"{name}.npz")
    p = d["predictions"].astype(np.float64)
    return p / p.sum(axis=1, keepdims=True), d["ground_truth"].astype(np.int64)


def llm(task: str, model: str) -> tuple[np.ndarray, np.ndarray]:
    s = Scores.load(FIXTURES / f"{task}__{model}.parquet")
    return s.probs, s.require_labels()


def split_masks(rng: np.random.Generator, n: int, n_cal: int, s: int) -> np.ndarray:
    pick = np.argpartition(rng.random((s, n)), n_cal, axis=1)[:, :n_cal]
    mask = np.zeros((s, n), dtype=bool)
    np.put_along_axis(mask, pick, True, axis=1)
    return mask


def boot_counts(rng: np.random.Generator, n: int, n_cal: int, s: int) -> np.ndarray:
    idx = rng.integers(0, n, size=(s, n_cal))
    flat = (np.arange(s)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=s * n).reshape(s, n)


def batched(fn, S: int, chunk: int = 1000):
    """Run ``fn(s)`` on chunks of draws and concatenate the (s, ...) outputs."""
    outs = [fn(min(chunk, S - i)) for i in range(0, S, chunk)]
    return [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]


def tol(delta: float, S: int) -> float:
    return delta + 3 * math.sqrt(delta * (1 - delta) / S)


# --------------------------------------------------------------------------- sections
def section_ltt(S: int) -> None:
    print("\n## Learn-then-Test validity\n")
    print(
        "| scores | eps | delta | n cal | mode | certified | mean coverage | oracle coverage | "
        "P(risk > eps) | tolerance |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    settings = [
        ("cifar", "wideresnet-16-4-cifar-10", 0.02, 0.05, 2000),
        ("cifar", "wideresnet-16-4-cifar-10", 0.01, 0.1, 5000),
        ("cifar", "lenet-5-cifar-10", 0.1, 0.05, 3000),
        ("cifar", "lenet-5-cifar-10", 0.2, 0.05, 2000),
        ("cifar", "wideresnet-16-4-cifar-100", 0.05, 0.1, 2000),
        ("llm", ("sst2", "smollm2-fs"), 0.3, 0.1, 300),
        ("llm", ("cr", "gemma3-zs"), 0.3, 0.1, 300),
    ]
    rng = np.random.default_rng(0)
    for kind, name, eps, delta, n_cal in settings:
        p, y = cifar(name) if kind == "cifar" else llm(*name)
        label = name if kind == "cifar" else f"{name[0]} {name[1]}"
        conf, wrong = p.max(axis=1), p.argmax(axis=1) != y
        g = threshold_grid(p.shape[1])
        cells = grid_cells(conf, g)
        A, E = accepted_counts(cells, wrong, g.size)
        good = np.flatnonzero(E <= eps * A)
        oracle = A[good[-1]] / y.size if good.size else 0.0

        def pop(s: int, cells=cells, wrong=wrong, g=g, y=y, n_cal=n_cal, eps=eps, delta=delta):
            na, ne = accepted_counts(cells, wrong, g.size, mask=boot_counts(rng, y.size, n_cal, s))
            idx, _ = ltt_select(na, ne, eps, delta)
            return (idx,)

        (idx,) = batched(pop, S)
        ok = idx >= 0
        risk = np.where(ok, E[idx] / np.maximum(A[idx], 1), 0.0)
        cov = np.where(ok, A[idx] / y.size, 0.0)
        print(
            f"| {label} | {eps} | {delta} | {n_cal} | population | {ok.mean():.3f} | "
            f"{cov.mean():.3f} | {oracle:.3f} | {np.mean(risk > eps):.4f} | {tol(delta, S):.4f} |"
        )
        if kind != "cifar":
            continue
        for n_c in sorted({1000, y.size // 2}):

            def spl(
                s: int, cells=cells, wrong=wrong, g=g, y=y, n_c=n_c, eps=eps, delta=delta, A=A, E=E
            ):
                mask = split_masks(rng, y.size, n_c, s)
                na, ne = accepted_counts(cells, wrong, g.size, mask=mask)
                idx, _ = ltt_select(na, ne, eps, delta)
                r = np.arange(s)
                return idx, (A - na)[r, idx], (E - ne)[r, idx]

            idx, ta, te = batched(spl, S)
            ok = idx >= 0
            terr = np.where(ok & (ta > 0), te / np.maximum(ta, 1), 0.0)
            prisk = np.where(ok, E[idx] / np.maximum(A[idx], 1), 0.0)
            print(
                f"| {label} | {eps} | {delta} | {n_c} | split, test part | {ok.mean():.3f} | "
                f"{np.mean(np.where(ok, ta / (y.size - n_c), 0)):.3f} | {oracle:.3f} | "
                f"{np.mean(terr > eps):.4f} (pool: {np.mean(prisk > eps):.4f}) | "
                f"{tol(delta, S):.4f} |"
            )
        # the batch guarantee (apply(..., batch=True)) on half/half splits
        n_c = y.size // 2
        sb = min(S, 2000)

        def bat(
            s: int, cells=cells, wrong=wrong, g=g, y=y, n_c=n_c, eps=eps, delta=delta, A=A, E=E
        ):
            mask = split_masks(rng, y.size, n_c, s)
            na, ne = accepted_counts(cells, wrong, g.size, mask=mask)
            idx, _ = batch_select(na, ne, A - na, eps, delta)
            r = np.arange(s)
            return idx, (A - na)[r, idx], (E - ne)[r, idx]

        idx, ta, te = batched(bat, sb)
        ok = idx >= 0
        terr = np.where(ok & (ta > 0), te / np.maximum(ta, 1), 0.0)
        print(
            f"| {label} | {eps} | {delta} | {n_c} | split, batch guarantee | {ok.mean():.3f} | "
            f"{np.mean(np.where(ok, ta / (y.size - n_c), 0)):.3f} | {oracle:.3f} | "
            f"{np.mean(terr > eps):.4f} | {tol(delta, sb):.4f} |"
        )


def section_gate(S: int) -> None:
    print("\n## Where the fixed sequence starts (population mode)\n")
    print("| scores | eps | delta | n cal | gate | refused | mean coverage | P(risk > eps) |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(1)
    for name, eps, delta, n_cal in [
        ("wideresnet-16-4-cifar-10", 0.01, 0.1, 1000),
        ("lenet-5-cifar-10", 0.1, 0.05, 3000),
        ("wideresnet-16-4-cifar-100", 0.05, 0.1, 2000),
        ("wideresnet-16-4-cifar-100", 0.05, 0.05, 500),
    ]:
        p, y = cifar(name)
        conf, wrong = p.max(axis=1), p.argmax(axis=1) != y
        g = threshold_grid(p.shape[1])
        cells = grid_cells(conf, g)
        A, E = accepted_counts(cells, wrong, g.size)
        s = min(S, 2000)
        na, ne = accepted_counts(cells, wrong, g.size, mask=boot_counts(rng, y.size, n_cal, s))
        pv = pvalue(ne, na, eps)
        for gname, m in [
            ("min_certifiable_n", min_certifiable_n(eps, delta)),
            ("default_min_accepted", int(default_min_accepted(eps, delta, n_cal))),
        ]:
            idx = fixed_sequence(pv, delta, tested=na >= m)
            ok = idx >= 0
            risk = np.where(ok, E[idx] / np.maximum(A[idx], 1), 0.0)
            cov = np.where(ok, A[idx] / y.size, 0.0)
            print(
                f"| {name} | {eps} | {delta} | {n_cal} | {gname} ({m}) | {1 - ok.mean():.3f} | "
                f"{cov.mean():.3f} | {np.mean(risk > eps):.4f} |"
            )


def section_crc(S: int) -> None:
    print("\n## Conformal risk control: E[accepted and wrong] <= eps\n")
    print("| scores | eps | n cal | mean test share accepted & wrong | +3 se | mean coverage |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(2)
    for name, eps in [("wideresnet-16-4-cifar-10", 0.02), ("lenet-5-cifar-10", 0.05)]:
        p, y = cifar(name)
        conf, wrong = p.max(axis=1), p.argmax(axis=1) != y
        g = threshold_grid(p.shape[1])
        cells = grid_cells(conf, g)
        A, E = accepted_counts(cells, wrong, g.size)
        n_cal = 2000

        def one(s: int, cells=cells, wrong=wrong, g=g, y=y, eps=eps, A=A, E=E, n_cal=n_cal):
            na, ne = accepted_counts(cells, wrong, g.size, mask=split_masks(rng, y.size, n_cal, s))
            idx = crc_select(ne, n_cal, eps)
            r = np.arange(s)
            return (E - ne)[r, idx] / (y.size - n_cal), (A - na)[r, idx] / (y.size - n_cal)

        joint, cov = batched(one, S)
        print(
            f"| {name} | {eps} | {n_cal} | {joint.mean():.5f} | "
            f"{joint.mean() + 3 * joint.std() / math.sqrt(S):.5f} | {cov.mean():.3f} |"
        )


def section_conformal(S: int) -> None:
    print("\n## Conformal sets (alpha = 0.1, 1,000 calibration items)\n")
    print("| scores | method | mean coverage | min over splits | worst class | mean size |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(3)
    alpha, n_cal = 0.1, 1000
    s = min(S, 2000)
    for name in RECORDS:
        p, y = cifar(name)
        K = p.shape[1]
        for method, randomized, mondrian in [
            ("lac", False, False),
            ("aps", False, False),
            ("aps", True, False),
            ("raps", False, False),
            ("lac", False, True),
        ]:
            mask = split_masks(rng, y.size, n_cal, s)
            if randomized:
                u = rng.random((s, y.size))
                base = label_scores(p, method)  # u = 0
                sc = base[np.arange(y.size), y][None, :] + u * p[np.arange(y.size), y][None, :]
            else:
                u = None
                sc = np.broadcast_to(label_scores(p, method)[np.arange(y.size), y], (s, y.size))
            if not mondrian:
                q = conformal_quantile(sc[mask].reshape(s, n_cal), alpha)
                hit = (sc <= q[:, None]) & ~mask
                cov = hit.sum(1) / (y.size - n_cal)
                worst = min(
                    float(hit[:, y == c].sum() / (~mask[:, y == c]).sum()) for c in range(K)
                )
            else:
                hit = np.zeros((s, y.size), dtype=bool)
                for c in range(K):
                    cls = y == c
                    sc_c = np.where(mask[:, cls], sc[:, cls], np.inf)
                    srt = np.sort(sc_c, axis=1)
                    n_c = mask[:, cls].sum(1)
                    k = np.ceil((n_c + 1) * (1 - alpha) - 1e-12).astype(int)
                    q_c = np.where(k <= n_c, srt[np.arange(s), np.clip(k, 1, None) - 1], np.inf)
                    hit[:, cls] = sc[:, cls] <= q_c[:, None]
                hit &= ~mask
                cov = hit.sum(1) / (y.size - n_cal)
                worst = min(
                    float(hit[:, y == c].sum() / (~mask[:, y == c]).sum()) for c in range(K)
                )
            # set sizes on 20 splits (a full (S, n, K) array would not fit)
            sizes = []
            for i in range(20):
                cal = np.flatnonzero(mask[i])
                test = np.flatnonzero(~mask[i])
                cp = SplitConformal(
                    alpha, method, randomized=randomized, mondrian=mondrian, seed=i
                ).fit(p[cal], y[cal])
                sizes.append(cp.predict_sets(p[test]).sum(1).mean())
            kind = (
                method + (" randomized" if randomized else "") + (" Mondrian" if mondrian else "")
            )
            print(
                f"| {name} | {kind} | {cov.mean():.4f} | {cov.min():.4f} | {worst:.4f} | "
                f"{np.mean(sizes):.3f} |"
            )


def section_mapie() -> None:
    try:
        from mapie.classification import SplitConformalClassifier
    except ImportError:
        print("\n(MAPIE not installed: pip install 'calibkit[dev]')")
        return
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Pre(ClassifierMixin, BaseEstimator):
        def __init__(self, k: int = 2) -> None:
            self.k = k

        def fit(self, X, y):
            self.classes_ = np.arange(self.k)
            return self

        def predict_proba(self, X):
            return np.asarray(X)

        def predict(self, X):
            return np.asarray(X).argmax(1)

    print("\n## Against MAPIE (same half/half split, alpha = 0.1)\n")
    print(
        "| scores | method | quantile calibkit / MAPIE | coverage calibkit / MAPIE | mean size calibkit / MAPIE |"
    )
    print("|---|---|---|---|---|")
    for name in RECORDS:
        p, y = cifar(name)
        perm = np.random.default_rng(0).permutation(y.size)
        c, t = perm[: y.size // 2], perm[y.size // 2 :]
        for method, last, rand in [
            ("lac", True, False),
            ("aps", True, False),
            ("aps", "randomized", True),
        ]:
            ours = SplitConformal(0.1, method, randomized=rand).fit(p[c], y[c])
            r = ours.evaluate(p[t], y[t])
            est = Pre(p.shape[1]).fit(p[c], y[c])
            mp = SplitConformalClassifier(
                estimator=est,
                confidence_level=0.9,
                conformity_score=method,
                prefit=True,
                random_state=0,
            ).conformalize(p[c], y[c])
            params = None if method == "lac" else {"include_last_label": last}
            _, sets = mp.predict_set(p[t], conformity_score_params=params)
            rm = evaluate_sets(sets[:, :, 0], y[t])
            q = float(np.ravel(mp._mapie_classifier.conformity_score_function_.quantiles_)[0])
            kind = method + (" randomized" if rand else "")
            print(
                f"| {name} | {kind} | {float(ours.quantile_):.6f} / {q:.6f} | "
                f"{r.coverage:.4f} / {rm.coverage:.4f} | {r.mean_size:.3f} / {rm.mean_size:.3f} |"
            )


def section_speed() -> None:
    print("\n## Speed (10,000 items)\n")
    p, y = cifar("wideresnet-16-4-cifar-100")
    for label, fn in [
        (
            "certify_threshold (1000-point grid, binomial)",
            lambda: certify_threshold(p, y, max_error=0.1, delta=0.05),
        ),
        (
            "certify_threshold by_class (100 classes)",
            lambda: certify_threshold(p, y, max_error=0.2, delta=0.05, by_class=True),
        ),
        (
            "SplitConformal aps fit 5k + predict 5k, K=100",
            lambda: SplitConformal(0.1, "aps").fit(p[:5000], y[:5000]).predict_sets(p[5000:]),
        ),
    ]:
        fn()
        t = time.perf_counter()
        for _ in range(3):
            fn()
        print(f"- {label}: {(time.perf_counter() - t) / 3 * 1000:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--splits", type=int, default=10_000, help="draws / splits per setting")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["ltt", "gate", "crc", "conformal", "mapie", "speed"],
        default=["ltt", "gate", "crc", "conformal", "mapie", "speed"],
    )
    args = ap.parse_args(argv)
    if not (DATA / "cifar_records").is_dir():
        raise SystemExit(f"CIFAR records not found under {DATA} (set CALIBKIT_DATA)")
    warnings.simplefilter("ignore", UserWarning)
    t0 = time.perf_counter()
    sections = {
        "ltt": lambda: section_ltt(args.splits),
        "gate": lambda: section_gate(args.splits),
        "crc": lambda: section_crc(args.splits),
        "conformal": lambda: section_conformal(args.splits),
        "mapie": section_mapie,
        "speed": section_speed,
    }
    for name in args.only:
        sections[name]()
    print(f"\n(total {time.perf_counter() - t0:.0f} s, {args.splits} draws per setting)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
