"""The label-efficiency study of one model (paper 001, Tables 1, 2 and 5): every ACE.

Each task is split once (seeded) into a calibration *pool* and a held-out *evaluation* set; shots
are drawn from the pool and every ACE (uncalibrated, out-of-task, in-task) is measured on the
same evaluation items, so all rows of a task are comparable.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from calibkit.experiments.label_efficiency.config import (
    OOT_SCENARIOS,
    UNCAL,
    StudyConfig,
    parse_setting,
)
from calibkit.scores import Scores
from calibkit.selection.in_task import answer_confidence, sample_calibration_set, surrogate_error
from calibkit.selection.out_of_task import (
    Form,
    OutOfTaskCalibrator,
    all_oot_sources,
    make_method,
    sim_oot_sources,
)

__all__ = ["StudyResult", "run_study", "split_pool_eval"]

_LOGIT_FLOOR = -1e4
Setting = tuple[str, str]  # (scenario, method), e.g. ("SIM-OOT", "ST")


def split_pool_eval(
    n: int, eval_fraction: float, seed: int, name: str = ""
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Seeded split of ``n`` items into a calibration pool and an evaluation set (sorted)."""
    if n < 2:
        raise ValueError(f"a task needs at least 2 items to split; got {n}")
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
    perm = rng.permutation(n)
    n_eval = min(n - 1, max(1, round(eval_fraction * n)))
    return np.sort(perm[n_eval:]).astype(np.int64), np.sort(perm[:n_eval]).astype(np.int64)


def _ace(confidence: NDArray[np.float64], hits: NDArray[np.int64], n_bins: int) -> float:
    """Paper 001 eq. (2): equal-mass bins over the answer score ``s``, mean |mean s - hit rate|."""
    from calibkit.metrics import ace

    return float(ace(np.clip(confidence, 0.0, 1.0), hits, n_bins=n_bins))


@dataclass
class StudyResult:
    """Everything one model's study produced.

    Attributes
    ----------
    raw : pandas.DataFrame
        One row per ACE: task, strategy, method, shots, seed, ace, n_fit, fallback (single-class
        draw: zero-shot calibration kept), warned (the calibrator's optimiser warned).
    surrogate : str
        The out-of-task setting whose scores defined the surrogate error (e.g. "SIM-OOT/ST").
    clusters : dict task -> cluster id
    sim_sources : dict task -> list of source tasks
    oot_forms : dict (scenario/method/task) -> "classes" or "top_label"
    """

    raw: Any
    surrogate: str
    clusters: dict[str, int]
    sim_sources: dict[str, list[str]]
    oot_forms: dict[str, str]


def _seed_for(*parts: int | str) -> np.random.Generator:
    key = [p if isinstance(p, int) else zlib.crc32(str(p).encode()) for p in parts]
    return np.random.default_rng(key)


@dataclass
class _Study:
    """The per-task state every stage reads, and the ACE rows it collects."""

    scores: dict[str, Scores]
    cfg: StudyConfig
    splits: dict[str, tuple[NDArray[np.int64], NDArray[np.int64]]] = field(init=False)
    answers: dict[str, NDArray[np.int64]] = field(init=False)
    hits: dict[str, NDArray[np.int64]] = field(init=False)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        c = self.cfg
        self.splits = {
            n: split_pool_eval(len(s), c.eval_fraction, c.split_seed, n)
            for n, s in self.scores.items()
        }
        self.answers = {n: np.argmax(s.probs, axis=1) for n, s in self.scores.items()}
        self.hits = {
            n: (self.answers[n] == s.require_labels()).astype(np.int64)
            for n, s in self.scores.items()
        }

    @property
    def names(self) -> list[str]:
        return list(self.scores)

    def add(
        self, task: str, strategy: str, method: str, shots: int, seed: int, conf: Any, **kw: Any
    ) -> None:
        """Record the ACE of ``conf`` (answer scores of the task's evaluation items)."""
        ev = self.splits[task][1]
        ace = _ace(conf, self.hits[task][ev], self.cfg.ace_bins)
        self.rows.append(
            dict(task=task, strategy=strategy, method=method, shots=shots, seed=seed, ace=ace, **kw)
        )


def _checked_scores(scores: Mapping[str, Scores]) -> dict[str, Scores]:
    if len(scores) < 2:
        raise ValueError("the study needs at least two tasks (out-of-task calibration)")
    for n, s in scores.items():
        s.require_labels()
        if len(s) < 2:
            raise ValueError(f"task {n!r} has fewer than 2 items")
    # a class whose tokens the backend never saw has logit -inf: keep it finite for the fits
    return {
        n: s if np.isfinite(s.logits).all() else s.with_logits(np.maximum(s.logits, _LOGIT_FLOOR))
        for n, s in scores.items()
    }


def _fit_oot(
    st: _Study, setting: Setting, sources: list[str], task: str
) -> tuple[OutOfTaskCalibrator, bool]:
    """An out-of-task calibrator for ``task`` fitted on ``sources``, and whether it warned."""
    src = {s: st.scores[s] for s in sources}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        oot = OutOfTaskCalibrator(setting[1], form=cast(Form, st.cfg.oot_form))
        oot.fit(src, st.scores[task].n_classes)
    return oot, bool(caught)


def _out_of_task(
    st: _Study, sources: dict[str, dict[str, list[str]]]
) -> tuple[dict[Setting, dict[str, NDArray[np.float64]]], dict[str, str]]:
    """Table 1: ALL-OOT and SIM-OOT x every method, leave-one-task-out."""
    oot_conf: dict[Setting, dict[str, NDArray[np.float64]]] = {}
    forms: dict[str, str] = {}
    for scen in OOT_SCENARIOS:
        for m in st.cfg.methods:
            oot_conf[(scen, m)] = {}
            for n in st.names:
                oot, warned = _fit_oot(st, (scen, m), sources[scen][n], n)
                conf = oot.answer_confidence(st.scores[n].logits)
                oot_conf[(scen, m)][n] = conf
                forms[f"{scen}/{m}/{n}"] = oot.form_
                ev = st.splits[n][1]
                st.add(n, scen, m, 0, -1, conf[ev], n_fit=oot.n_items_, fallback=False,
                       warned=warned)  # fmt: skip
    return oot_conf, forms


def _surrogate(
    st: _Study,
    oot_conf: dict[Setting, dict[str, NDArray[np.float64]]],
    sources: dict[str, dict[str, list[str]]],
) -> Setting:
    """The top-performing out-of-task setting by mean ACE (or the configured one)."""
    if st.cfg.surrogate == "auto":
        mean_ace = {
            key: float(np.mean([r["ace"] for r in st.rows if (r["strategy"], r["method"]) == key]))
            for key in oot_conf
        }
        return min(mean_ace, key=lambda k: (mean_ace[k], k))
    best = parse_setting(st.cfg.surrogate)
    if best not in oot_conf:
        oot_conf[best] = {
            n: _fit_oot(st, best, sources[best[0]][n], n)[0].answer_confidence(st.scores[n].logits)
            for n in st.names
        }
    return best


def _in_task(
    st: _Study,
    unc_conf: dict[str, NDArray[np.float64]],
    sur_conf: dict[str, NDArray[np.float64]],
    progress: bool,
) -> None:
    """Tables 2 and 5: every (task, shots, strategy, seed, method) cell."""
    cfg = st.cfg
    kwargs = {"SE": dict(cfg.se), "IE": dict(cfg.ie), "U": {}}
    n_cells = len(st.names) * len(cfg.shots) * len(cfg.strategies) * len(cfg.methods)
    bar = _progress(n_cells * int(cfg.seeds), "in-task fits", progress)
    for n in st.names:
        pool, ev = st.splits[n]
        err = surrogate_error(unc_conf[n][pool], sur_conf[n][pool])
        z = st.scores[n].logits
        y = st.scores[n].require_labels()
        for k in cfg.shots:
            for strategy in cfg.strategies:
                for seed in range(int(cfg.seeds)):
                    rng = _seed_for(seed, n, k, strategy)
                    pick = pool[
                        sample_calibration_set(strategy, err, k, seed=rng, **kwargs[strategy])
                    ]
                    single = np.unique(y[pick]).size < 2
                    for m in cfg.methods:
                        caught: list[warnings.WarningMessage] = []
                        if single:  # nothing to fit: keep the zero-shot (surrogate) calibration
                            conf = sur_conf[n][ev]
                        else:
                            # tiny samples can be separable: the optimiser may warn; counted
                            with warnings.catch_warnings(record=True) as caught:
                                warnings.simplefilter("always")
                                est = make_method(m).fit(z[pick], y[pick])
                            conf = answer_confidence(est.predict_proba(z[ev]), st.answers[n][ev])
                        st.add(n, strategy, m, k, seed, conf, n_fit=int(pick.size),
                               fallback=bool(single), warned=bool(caught))  # fmt: skip
                        bar(1)
    bar(0, close=True)


def run_study(
    scores: Mapping[str, Scores],
    embeddings: NDArray[np.float64],
    cfg: StudyConfig,
    *,
    progress: bool = True,
) -> StudyResult:
    """Run the label-efficiency study of one model.

    Parameters
    ----------
    scores : mapping task name -> labeled Scores (uncalibrated class logits)
    embeddings : (T, d)
        Task embeddings in the order of ``scores`` (for SIM-OOT clustering).
    cfg : StudyConfig
    progress : bool
        Show a tqdm progress bar over the in-task fits.
    """
    import pandas as pd

    from calibkit.selection.cluster import cluster_tasks

    st = _Study(_checked_scores(scores), cfg)
    names = st.names
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != len(names):
        raise ValueError(f"embeddings must be ({len(names)}, d); got {emb.shape}")
    sim = dict(cfg.sim_oot)
    labels = cluster_tasks(
        emb, sim.get("n_clusters"), method=sim.get("method", "agglomerative"), seed=cfg.split_seed
    )
    unc_conf = {n: answer_confidence(st.scores[n].probs, st.answers[n]) for n in names}
    for n in names:
        st.add(n, UNCAL, "-", 0, -1, unc_conf[n][st.splits[n][1]], n_fit=0, fallback=False,
               warned=False)  # fmt: skip
    min_src = int(sim.get("min_sources", 1))
    sources = {
        "ALL-OOT": {n: all_oot_sources(n, names) for n in names},
        "SIM-OOT": {
            n: sim_oot_sources(n, names, emb, labels=labels, min_sources=min_src) for n in names
        },
    }
    oot_conf, forms = _out_of_task(st, sources)
    best = _surrogate(st, oot_conf, sources)
    _in_task(st, unc_conf, oot_conf[best], progress)
    return StudyResult(
        raw=pd.DataFrame(st.rows),
        surrogate=f"{best[0]}/{best[1]}",
        clusters={n: int(c) for n, c in zip(names, labels, strict=True)},
        sim_sources=sources["SIM-OOT"],
        oot_forms=forms,
    )


def _progress(total: int, desc: str, enabled: bool) -> Callable[..., None]:
    if not enabled:
        return lambda k=1, close=False: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, leave=False)

    def step(k: int = 1, close: bool = False) -> None:
        bar.update(k)
        if close:
            bar.close()

    return step
