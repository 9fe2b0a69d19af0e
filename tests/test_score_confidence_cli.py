"""Issue #14 item 3: ``calibkit score --confidence logits|ptrue|verbalized|consistency|auto``.

Against the deterministic stub of ``tests/confidence_server.py`` (with and without
log-probabilities): each estimator writes the usual output formats with its metadata (estimator,
cost, unparseable count); ``auto`` says which estimator it chose and why, both ways; a bad
combination is one ``error:`` line with exit 2 before any model is contacted; ``--on-error``
works as for the default scorer; and a run killed mid-way resumes from the cache to the same
output as an uninterrupted run. Expected values come from the stub's own definitions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calibkit.cli.main import main
from confidence_server import CLASSES, ConfidenceServer, answer, belief, sampled, stated, truth

TEXTS = [f"review {i} {'good' if i % 3 else 'bad'} plot" for i in range(10)]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": TEXTS, "label": [truth(t) for t in TEXTS]}).to_csv(path, index=False)
    return path


def run_cli(capsys, argv: list[object]) -> tuple[int, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def score_args(srv: ConfidenceServer, data: Path, out: Path, *extra: object) -> list[object]:
    return ["score", "--model", srv.spec, "--data", data, "--max-retries", "0",
            "--cache", out.parent / "cache.sqlite", "-o", out, *extra]  # fmt: skip


def meta_of(out: Path) -> dict:
    return json.loads(Path(f"{out}.meta.json").read_text())["meta"]


# ---------------------------------------------------------------------- each estimator
def test_verbalized(capsys, data, tmp_path):
    out = tmp_path / "v.csv"
    with ConfidenceServer(logprobs=False) as srv:
        rc, err = run_cli(capsys, score_args(srv, data, out, "--confidence", "verbalized"))
    assert rc == 0, err
    df = pd.read_csv(out)
    assert list(df["row"]) == list(range(len(TEXTS)))
    np.testing.assert_allclose(df["confidence"], [stated(t) / 100 for t in TEXTS])
    np.testing.assert_allclose(np.exp(df["logit_right"]), [stated(t) / 100 for t in TEXTS])
    assert list(df["label"]) == ["right" if answer(t) == truth(t) else "wrong" for t in TEXTS]
    meta = meta_of(out)
    assert meta["estimator"] == "verbalized" and meta["n_unparseable"] == 0
    assert meta["cost"]["model_calls"] == len(TEXTS)
    assert meta["cost"]["output_tokens"] == 4 * len(TEXTS)  # the stub's usage counts
    assert "confidence estimator verbalized: 10 model calls" in err
    acc = np.mean([answer(t) == truth(t) for t in TEXTS])
    assert f"answer accuracy {acc:.3f}" in err


def test_consistency(capsys, data, tmp_path):
    out = tmp_path / "c.jsonl"
    with ConfidenceServer(logprobs=False) as srv:
        rc, err = run_cli(
            capsys,
            score_args(srv, data, out, "--confidence", "consistency", "--samples", 4, "--seed", 3),
        )
    assert rc == 0, err
    df = pd.read_json(out, lines=True)
    for i, t in enumerate(TEXTS):
        votes = [sampled(t, 3 + j) for j in range(4)]
        share = np.array([votes.count(c) / 4 for c in CLASSES])
        got = np.exp(df.loc[i, ["logit_negative", "logit_positive"]].to_numpy(dtype=float))
        np.testing.assert_allclose(got[share > 0], share[share > 0], rtol=1e-6)
    meta = meta_of(out)
    assert meta["estimator"] == "consistency" and meta["sampling"]["n"] == 4
    assert meta["cost"]["model_calls"] == 4 * len(TEXTS)
    assert "n_unparseable" in meta


@pytest.mark.parametrize("method", ["logits", "ptrue"])
def test_logit_estimators_with_logprobs(capsys, data, tmp_path, method):
    out = tmp_path / f"{method}.parquet"
    with ConfidenceServer(logprobs=True) as srv:
        rc, err = run_cli(
            capsys, score_args(srv, data, out, "--confidence", method, "--mode", "next_token")
        )
    assert rc == 0, err
    from calibkit.scores import Scores

    s = Scores.load(out)
    if method == "ptrue":
        np.testing.assert_allclose(s.probs[:, 1], [belief(t) for t in TEXTS], rtol=1e-6)
        assert s.meta["estimator"] == "ptrue" and s.meta["cost"]["model_calls"] == 20
    else:  # the default scorer, unchanged: no estimator metadata
        assert "estimator" not in s.meta
        for i, t in enumerate(TEXTS):
            assert s.probs[i, CLASSES.index(answer(t))] == pytest.approx(belief(t), rel=1e-6)


def test_logit_estimators_without_logprobs_fail_in_one_line(capsys, data, tmp_path):
    with ConfidenceServer(logprobs=False) as srv:
        for method in ("logits", "ptrue"):
            out = tmp_path / f"{method}.csv"
            rc, err = run_cli(capsys, score_args(srv, data, out, "--confidence", method))
            assert rc == 2, err
            # (the default scorer draws a progress bar on stderr; the error is one line)
            lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
            assert len(lines) == 1 and "Traceback" not in err, err
            assert "no log-probabilities" in lines[0]
            assert not out.exists()


# ---------------------------------------------------------------------- auto
def test_auto_without_logprobs_chooses_a_text_only_estimator(capsys, data, tmp_path):
    out = tmp_path / "a.csv"
    with ConfidenceServer(logprobs=False) as srv:
        rc, err = run_cli(capsys, score_args(srv, data, out, "--confidence", "auto"))
    assert rc == 0, err
    said = [ln for ln in err.splitlines() if "confidence auto: chose" in ln]
    assert len(said) == 1 and "no log-probabilities from backend" in said[0], err
    assert "Warning" not in err and "select.py" not in err
    meta = meta_of(out)
    chosen = meta["confidence_auto"]["chosen"]
    assert chosen in ("verbalized", "consistency") and meta["estimator"] == chosen
    assert f"chose {chosen}:" in said[0]
    assert set(meta["confidence_auto"]["table"]) == {"verbalized", "consistency"}


def test_auto_with_logprobs_chooses_logits(capsys, data, tmp_path):
    out = tmp_path / "a.csv"
    with ConfidenceServer(logprobs=True) as srv:
        rc, err = run_cli(capsys, score_args(srv, data, out, "--confidence", "auto"))
        sampled_requests = [r for r in srv.requests if r["body"].get("temperature", 0) > 0]
    assert rc == 0, err
    assert "confidence auto: chose logits: backend" in err
    assert not sampled_requests  # no text-only estimator was tried
    meta = meta_of(out)
    assert meta["estimator"] == "logits" and meta["confidence_auto"]["chosen"] == "logits"


# ---------------------------------------------------------------------- bad arguments, failures
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--confidence", "ptrue", "--task", "mcq"], "--confidence ptrue supports --task classify"),
        (["--confidence", "consistency", "--samples", "1"], "--samples must be >= 2"),
        (["--confidence", "consistency", "--temperature", "0"], "--temperature must be > 0"),
        (["--confidence", "auto", "--auto-target", "2"], "--auto-target"),
    ],
)
def test_bad_combinations_are_one_error_line_before_any_request(
    capsys, data, tmp_path, extra, needle
):
    out = tmp_path / "x.csv"
    with ConfidenceServer(logprobs=False) as srv:
        rc, err = run_cli(capsys, score_args(srv, data, out, *extra))
        assert srv.requests == []
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err


def test_auto_needs_labels(capsys, tmp_path):
    data = tmp_path / "u.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(data, index=False)
    with ConfidenceServer(logprobs=False) as srv:
        rc, err = run_cli(
            capsys,
            score_args(
                srv,
                data,
                tmp_path / "o.csv",
                "--confidence",
                "auto",
                "--classes",
                "negative,positive",
            ),
        )
        assert srv.requests == []
    assert rc == 2 and err.startswith("error: --confidence auto") and "label" in err


def test_on_error_with_an_unparseable_reply(capsys, tmp_path):
    texts = [*TEXTS[:4], "an @unparseable good one"]
    data = tmp_path / "d.csv"
    pd.DataFrame({"text": texts, "label": [truth(t) for t in texts]}).to_csv(data, index=False)
    out = tmp_path / "o.csv"
    with ConfidenceServer(logprobs=False) as srv:
        rc, err = run_cli(capsys, score_args(srv, data, out, "--confidence", "verbalized"))
        assert rc == 2 and len(err.splitlines()) == 1
        assert "data row 5 (file line 6)" in err and "unparseable verbalized confidence" in err
        assert not out.exists()
        rc, err = run_cli(
            capsys, score_args(srv, data, out, "--confidence", "verbalized", "--on-error", "skip")
        )
    assert rc == 3, err
    assert len(pd.read_csv(out)) == 4
    meta = meta_of(out)
    assert meta["n_unparseable"] == 1 and [f["row"] for f in meta["failures"]] == [4]
    assert "1 unparseable" in err


# ---------------------------------------------------------------------- kill and resume
@pytest.mark.parametrize("method", ["consistency", "verbalized"])
def test_killed_run_resumes_to_identical_output(tmp_path, method):
    # enough items for several cache commits (the CLI scores in batches of >= 16 items)
    texts = [f"item {i} {'good' if i % 3 else 'bad'}" for i in range(40)]
    data = tmp_path / "d.csv"
    pd.DataFrame({"text": texts, "label": [truth(t) for t in texts]}).to_csv(data, index=False)
    extra = ["--confidence", method, "--samples", "3", "--concurrency", "2"]
    env = dict(os.environ)
    with ConfidenceServer(logprobs=False, delay=0.05) as srv:
        ref = tmp_path / "ref" / "o.csv"
        ref.parent.mkdir()
        full = subprocess.run(
            [sys.executable, "-m", "calibkit", *map(str, score_args(srv, data, ref, *extra))],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert full.returncode == 0, full.stderr
        total = len(srv.requests)
        srv.requests.clear()

        out = tmp_path / "run" / "o.csv"
        out.parent.mkdir()
        cmd = [sys.executable, "-m", "calibkit", *map(str, score_args(srv, data, out, *extra))]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        while len(srv.requests) < total // 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        first = len(srv.requests)
        assert 0 < first < total and not out.exists()
        srv.requests.clear()

        again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        assert again.returncode == 0, again.stderr
        assert 0 < len(srv.requests) < total  # resumed, not restarted
    assert out.read_text() == ref.read_text()
    assert meta_of(out)["cost"] == meta_of(ref)["cost"]
