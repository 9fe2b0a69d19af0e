"""Ray scale-out under failure: an actor dies mid-run, and the SQLite score cache makes the retry
and a second run resume instead of re-scoring.

The scorer is the real :class:`calibkit.scoring.ClassificationScorer` (``next_token`` mode) with a
toy backend whose log-probabilities are a deterministic function of the prompt, so the expected
logits are computed directly (no Ray) from the same backend. The backend appends one line per
prompt it actually scored to a log file (after the call returns), which tells what was scored
more than once. One actor ``os._exit``s inside its second backend call: after the first half of a
Ray batch has been committed to the cache, before the second half is.

These tests start a local Ray runtime (``num_cpus=2``, ~10 s, once per module) and are marked
slow (about a minute together on 2 cores); ``make test`` / CI run them, with ``ray[data]`` from
the ``scale`` extra that ``make setup`` installs. Without Ray they skip.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from calibkit.scoring import ClassificationScorer
from calibkit.scoring.distributed import score_with_ray

CLASSES = ("negative", "positive")


def _digest(prompt: Any) -> str:
    return hashlib.sha256(repr(prompt).encode()).hexdigest()[:16]


class ToyBackend:
    """Deterministic next-token log-probabilities; optionally kills its process once.

    ``crash_marker``: on the ``crash_on_call``-th call in a process, the first process to create
    this file (``O_EXCL``) exits at once with ``os._exit(1)`` (no cleanup, like a killed worker).
    """

    has_chat_template = False

    def __init__(self, log: str, crash_marker: str | None = None, crash_on_call: int = 2):
        self.log = log
        self.crash_marker = crash_marker
        self.crash_on_call = crash_on_call
        self.calls = 0

    @property
    def name(self) -> str:
        return "toy:v1"

    def generate(self, prompts: Sequence[Any], **kw: Any) -> list[Any]:
        raise AssertionError("the test scores in next_token mode")

    def next_token_logprobs(
        self, prompts: Sequence[Any], candidates: Sequence[str]
    ) -> list[dict[str, float]]:
        self.calls += 1
        if self.crash_marker is not None and self.calls == self.crash_on_call:
            try:
                fd = os.open(self.crash_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, f"{os.getpid()}\n".encode())
                os.close(fd)
                os._exit(1)
        out = []
        for p in prompts:
            h = hashlib.sha256(repr(p).encode()).digest()
            out.append({c: -((h[i % len(h)] % 50) / 10.0) - 0.01 for i, c in enumerate(candidates)})
        with open(self.log, "a") as f:
            f.writelines(f"{os.getpid()}\t{_digest(p)}\n" for p in prompts)
        return out


def make_scorer(
    cache: str, log: str, crash_marker: str | None = None, inner_batch: int = 4
) -> ClassificationScorer:
    """Module-level factory (picklable with functools.partial): one scorer per Ray actor."""
    backend = ToyBackend(log, crash_marker)
    return ClassificationScorer(
        backend, CLASSES, mode="next_token", cache=cache, batch_size=inner_batch, progress=False
    )


def _rows(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [
                f"review number {i}: " + "good " * (i % 4) + "bad " * (i % 3) for i in range(n)
            ],
            "label": [CLASSES[(i * 7) % 3 % 2] for i in range(n)],
            "id": [f"item{i:03d}" for i in range(n)],
        }
    )


def _scored(log: Path) -> Counter[str]:
    if not log.exists():
        return Counter()
    return Counter(line.split("\t")[1] for line in log.read_text().splitlines())


@pytest.fixture(scope="module")
def ray_local() -> Any:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        object_store_memory=100 * 1024**2,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def _direct(df: pd.DataFrame, tmp: Path) -> Any:
    """The same scorer without Ray and without a cache: the expected result."""
    sc = ClassificationScorer(
        ToyBackend(str(tmp / "direct.log")), CLASSES, mode="next_token", progress=False
    )
    return sc.score(list(df["text"]), labels=list(df["label"]), ids=list(df["id"]))


@pytest.mark.slow
def test_actor_killed_mid_run_is_retried_from_the_cache(ray_local: Any, tmp_path: Path) -> None:
    df = _rows(48)
    cache, log, marker = tmp_path / "scores.sqlite", tmp_path / "scored.log", tmp_path / "crashed"
    factory = functools.partial(make_scorer, str(cache), str(log), str(marker))
    got = score_with_ray(df, factory, num_workers=2, batch_size=8, num_cpus_per_worker=0.5)

    # an actor did die (in its second backend call, after 4 items of its batch were cached) ...
    assert marker.exists(), "the crash was not triggered: the test would prove nothing"
    dead_pid = int(marker.read_text())
    assert dead_pid != os.getpid()
    # ... Ray restarted it and retried the batch, and the result is what direct scoring gives
    want = _direct(df, tmp_path)
    np.testing.assert_array_equal(got.logits, want.logits)
    np.testing.assert_array_equal(got.labels, want.labels)
    assert list(got.ids) == list(df["id"])
    # every prompt reached the backend exactly once: the retry read the committed half of the
    # killed batch from the cache (without the cache 4 prompts would be scored twice)
    counts = _scored(log)
    assert len(counts) == len(df) and set(counts.values()) == {1}, counts.most_common(3)
    pids = {int(line.split("\t")[0]) for line in log.read_text().splitlines()}
    assert dead_pid in pids  # the killed actor had scored (and committed) items before dying
    assert len(pids) >= 2  # a restarted actor is a new process

    # a second run (a restarted job) resumes entirely from the cache: no prompt scored again
    again = score_with_ray(
        df, functools.partial(make_scorer, str(cache), str(log)), num_workers=2, batch_size=8,
        num_cpus_per_worker=0.5,
    )  # fmt: skip
    assert _scored(log) == counts
    np.testing.assert_array_equal(again.logits, got.logits)
    np.testing.assert_array_equal(again.labels, got.labels)


@pytest.mark.slow
def test_partial_cache_resume_scores_only_the_rest(ray_local: Any, tmp_path: Path) -> None:
    """A job that stopped after part of the data: the rerun scores only the missing rows."""
    df = _rows(40)
    cache, log = tmp_path / "scores.sqlite", tmp_path / "scored.log"
    first = df.iloc[:15]
    # the first (interrupted) job got through 15 rows, without Ray
    make_scorer(str(cache), str(log)).score(
        list(first["text"]), labels=list(first["label"]), ids=list(first["id"])
    )
    assert sum(_scored(log).values()) == 15
    got = score_with_ray(
        df, functools.partial(make_scorer, str(cache), str(log)), num_workers=2, batch_size=8,
        num_cpus_per_worker=0.5,
    )  # fmt: skip
    counts = _scored(log)
    assert len(counts) == 40 and set(counts.values()) == {1}
    want = _direct(df, tmp_path)
    np.testing.assert_array_equal(got.logits, want.logits)
    assert list(got.ids) == list(df["id"])


@pytest.mark.slow
def test_out_of_core_metrics_on_ray_equal_local(ray_local: Any, tmp_path: Path) -> None:
    """``evaluate_parquet(ray=True)``: per-block sums on Ray Data, merged = the local stream."""
    pytest.importorskip("pyarrow")
    from calibkit.metrics.out_of_core import evaluate_parquet

    rng = np.random.default_rng(0)
    for i, n in enumerate((3_000, 5_000, 1_234)):
        z = rng.normal(size=(n, 3)) * 2
        y = rng.integers(0, 3, n)
        pd.DataFrame(
            {"logit_a": z[:, 0], "logit_b": z[:, 1], "logit_c": z[:, 2], "label": y}
        ).to_parquet(tmp_path / f"part{i}.parquet", index=False)
    local = evaluate_parquet(tmp_path, batch_rows=1_000)
    on_ray = evaluate_parquet(tmp_path, batch_rows=1_000, ray=True)
    assert on_ray.engine == "ray" and on_ray.n == local.n == 9_234
    assert set(on_ray.metrics) == set(local.metrics)
    for k, v in local.metrics.items():
        assert on_ray.metrics[k] == pytest.approx(v, abs=1e-12, rel=0), k
    np.testing.assert_array_equal(on_ray.reliability.count, local.reliability.count)
