"""Slow tests with the real SmolLM2-135M-Instruct (bundled GGUF, converted once into the cache
dir) on real rows of ../shared/data: SUBJ, CR and ARC-Challenge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

N = 16


@pytest.fixture(scope="module")
def backend():
    from calibkit.scoring.backends.transformers_backend import TransformersBackend

    return TransformersBackend.from_pretrained(batch_size=8)


@pytest.fixture(scope="module")
def subj(data_dir):
    from calibkit.datasets import load_classification

    df = load_classification("subj", data_dir=data_dir)
    return df.sample(N, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def cr(data_dir):
    from calibkit.datasets import load_classification

    df = load_classification("cr", split="test", data_dir=data_dir)
    return df.sample(N, random_state=0).reset_index(drop=True)


class Counting:
    def __init__(self, inner):
        self.inner, self.prompts = inner, 0

    def __getattr__(self, item):
        return getattr(self.inner, item)

    @property
    def name(self):
        return self.inner.name

    def generate(self, prompts, **kw):
        self.prompts += len(prompts)
        return self.inner.generate(prompts, **kw)

    def next_token_logprobs(self, prompts, candidates):
        self.prompts += len(prompts)
        return self.inner.next_token_logprobs(prompts, candidates)


@pytest.mark.parametrize("dataset", ["subj", "cr"])
def test_next_token_equals_generate_where_first_token_decides(backend, dataset, request):
    from calibkit.scoring.classify import ClassificationScorer

    df = request.getfixturevalue(dataset)
    classes = sorted(df["label"].unique())
    kw = {"progress": False, "batch_size": 8}
    gen = ClassificationScorer(backend, classes, max_new_tokens=2, **kw).score(
        df["text"].tolist(), labels=df["label"].tolist()
    )
    nt = ClassificationScorer(backend, classes, mode="next_token", **kw).score(
        df["text"].tolist(), labels=df["label"].tolist()
    )
    first = np.asarray(gen.per_item["max_position"].tolist()) == 0
    assert first.mean() >= 0.5  # the first answer token decides for most entries
    np.testing.assert_allclose(gen.logits[first], nt.logits[first], atol=1e-4)
    assert np.all(gen.logits >= nt.logits - 1e-4)  # extra positions can only raise the max
    # independent reference for two rows: one plain forward pass, no batching/padding/cache
    sets = ClassificationScorer(backend, classes, mode="next_token", **kw).token_sets
    for r in range(2):
        ids = backend.encode(
            ClassificationScorer(backend, classes, **kw).prompt(df["text"].iloc[r])
        )
        with torch.inference_mode():
            lp = torch.log_softmax(backend.model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
        for c, ts in enumerate(sets.tokens):
            ref = max(float(lp[i]) for t in ts for i in backend.token_ids(t))
            assert abs(nt.logits[r, c] - ref) < 1e-4
    assert np.isfinite(gen.logits).all()
    np.testing.assert_allclose(gen.probs.sum(axis=1), 1.0)


def test_prefix_reuse_matches_no_reuse_on_five_shot(backend, subj, data_dir):
    from calibkit.datasets import load_classification
    from calibkit.scoring.classify import ClassificationScorer
    from calibkit.scoring.prompts import PromptTemplate

    pool = load_classification("subj", data_dir=data_dir).sample(200, random_state=1)
    shots = PromptTemplate().with_examples(pool["text"].tolist(), pool["label"].tolist(), 5)
    texts = subj["text"].tolist()[:6]
    classes = ["objective", "subjective"]
    out = {}
    for reuse in (True, False):
        backend.prefix_reuse = reuse
        backend.clear_prefix_cache()
        before = dict(backend.stats)
        sc = ClassificationScorer(backend, classes, shots, mode="next_token", progress=False)
        out[reuse] = sc.score(texts).logits
        reused = backend.stats["reused_tokens"] - before["reused_tokens"]
        assert (reused > 0) == reuse
    backend.prefix_reuse = True
    np.testing.assert_allclose(out[True], out[False], atol=1e-4)


def test_cache_reuse_real(backend, cr, tmp_path):
    from calibkit.scoring.classify import ClassificationScorer

    classes = ["negative", "positive"]
    path = tmp_path / "c.sqlite"
    first = Counting(backend)
    s1 = ClassificationScorer(first, classes, mode="next_token", cache=path, progress=False).score(
        cr["text"].tolist(), labels=cr["label"].tolist()
    )
    assert first.prompts == N
    second = Counting(backend)
    s2 = ClassificationScorer(second, classes, mode="next_token", cache=path, progress=False).score(
        cr["text"].tolist(), labels=cr["label"].tolist()
    )
    assert second.prompts == 0
    np.testing.assert_array_equal(s1.logits, s2.logits)


def test_killed_run_resumes(backend, subj, tmp_path):
    """A scoring process killed with SIGKILL mid-run loses at most one batch."""
    from calibkit.scoring.cache import ScoreCache
    from calibkit.scoring.classify import ClassificationScorer

    texts_file = tmp_path / "texts.txt"
    texts = subj["text"].tolist()
    texts_file.write_text("\n".join(texts))
    path = tmp_path / "kill.sqlite"
    script = textwrap.dedent(
        f"""
        from calibkit.scoring.backends.transformers_backend import TransformersBackend
        from calibkit.scoring.classify import ClassificationScorer
        texts = open({str(texts_file)!r}).read().split("\\n")
        be = TransformersBackend.from_pretrained(batch_size=4)
        sc = ClassificationScorer(be, ["objective", "subjective"], mode="next_token",
                                  cache={str(path)!r}, batch_size=4, progress=False)
        sc.score(texts)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ))
    done = 0
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists():
                with ScoreCache(path) as c:
                    done = len(c)
                if done >= 4:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, "the scoring process ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with ScoreCache(path) as c:
        done = len(c)
    assert 4 <= done < N
    counting = Counting(backend)
    sc = ClassificationScorer(
        counting,
        ["objective", "subjective"],
        mode="next_token",
        cache=path,
        batch_size=4,
        progress=False,
    )
    s = sc.score(texts)
    assert counting.prompts == N - done  # finished items were not redone
    fresh = ClassificationScorer(
        backend, ["objective", "subjective"], mode="next_token", progress=False
    ).score(texts[:4])  # uncached reference for a few rows
    np.testing.assert_allclose(s.logits[:4], fresh.logits, atol=1e-4)


def test_arc_challenge_mcq(backend, data_dir):
    from calibkit.datasets import load_mcq
    from calibkit.scoring.mcq import MultipleChoiceScorer

    items = load_mcq("arc_challenge", split="test", data_dir=data_dir)
    rng = np.random.default_rng(0)
    picked = [items[i] for i in rng.choice(len(items), size=12, replace=False)]
    sc = MultipleChoiceScorer(backend, progress=False)
    s = sc.score(picked)
    assert s.classes[:4] == ("A", "B", "C", "D")
    assert s.labels.tolist() == [it.answer for it in picked]
    np.testing.assert_allclose(s.probs.sum(axis=1), 1.0)
    # equation 1 by hand for one question: softmax over the letters' log-probabilities
    it = picked[0]
    ids = backend.encode(sc.prompt(it.question, it.choices))
    with torch.inference_mode():
        lp = torch.log_softmax(backend.model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
    z = np.array(
        [
            max(float(lp[i]) for t in (L, " " + L) for i in backend.token_ids(t))
            for L in "ABCD"[: len(it.choices)]
        ]
    )
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(s.probs[0, : len(it.choices)], p, atol=1e-4)
    gen = MultipleChoiceScorer(backend, mode="generate", max_new_tokens=2, progress=False).score(
        picked[:8]
    )
    parsed = np.asarray(gen.per_item["answer_index"])
    assert (parsed >= 0).mean() >= 0.5  # the model mostly answers with a letter
