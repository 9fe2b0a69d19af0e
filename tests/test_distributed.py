"""Scale-out: ScoringWorker / rows_to_scores without Ray, and small local Ray Data runs (slow).

The Ray runs use a stand-in scorer (and, for the vLLM route, the HTTP backend against a local
stub server speaking the OpenAI protocol), so they test the plumbing, not a model.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from calibkit.scores import Scores
from calibkit.scoring.distributed import ScoringWorker, rows_to_scores, score_with_ray

CLASSES = ("negative", "positive")


def _logits(text: str) -> list[float]:
    # Any deterministic function of the text; the expected values are computed from it directly.
    return [float(len(text) % 7), float(text.count("e")) - 1.5]


class StubScorer:
    """Stand-in with the ClassificationScorer.score signature."""

    def __init__(self, log: str | None = None):
        if log is not None:  # record each construction (one per actor expected)
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\n")

    def score(self, texts: list[str], labels: Any = None, ids: Any = None) -> Scores:
        lab = None
        if labels is not None:
            lab = [CLASSES.index(x) if isinstance(x, str) else int(x) for x in labels]
        return Scores(
            logits=np.array([_logits(t) for t in texts]),
            labels=lab,
            classes=CLASSES,
            ids=np.asarray(ids) if ids is not None else np.arange(len(texts)),
            meta={"model": "stub", "pid": os.getpid()},
        )


def make_stub(log: str | None = None) -> StubScorer:
    return StubScorer(log)


def _rows(n: int) -> pd.DataFrame:
    texts = [f"sentence {i} " + "e" * (i % 5) + "x" * (i % 3) for i in range(n)]
    return pd.DataFrame(
        {
            "text": texts,
            "label": [CLASSES[i % 2] for i in range(n)],
            "id": [f"r{i}" for i in range(n)],
        }
    )


# --------------------------------------------------------------------------------------------
# without Ray


def test_worker_classify_batch() -> None:
    df = _rows(5)
    w = ScoringWorker(make_stub)
    batch = {c: df[c].to_numpy() for c in df.columns} | {"_calibkit_row": np.arange(5)}
    out = w(batch)
    np.testing.assert_array_equal(out["logits"], np.array([_logits(t) for t in df["text"]]))
    np.testing.assert_array_equal(out["label"], [0, 1, 0, 1, 0])
    assert list(out["id"]) == list(df["id"])
    assert json.loads(out["classes"][0]) == list(CLASSES)
    assert json.loads(out["meta"][0])["model"] == "stub"
    np.testing.assert_array_equal(out["_calibkit_row"], np.arange(5))


def test_worker_unlabeled_and_errors() -> None:
    w = ScoringWorker(make_stub, label_column=None)
    out = w({"text": np.array(["a", "bb"], dtype=object)})
    np.testing.assert_array_equal(out["label"], [-1, -1])
    with pytest.raises(ValueError, match="no text column 'text'"):
        w({"sentence": np.array(["a"])})
    with pytest.raises(ValueError, match="no score"):
        ScoringWorker(lambda: object())
    with pytest.raises(ValueError, match="task"):
        ScoringWorker(make_stub, task="regress")  # type: ignore[arg-type]

    class Short(StubScorer):
        def score(self, texts: list[str], labels: Any = None, ids: Any = None) -> Scores:
            return super().score(texts[:-1])

    with pytest.raises(ValueError, match="1 scores for a batch of 2"):
        ScoringWorker(Short)({"text": np.array(["a", "bb"])})


def test_rows_to_scores_restores_order() -> None:
    df = _rows(11)
    w = ScoringWorker(make_stub)
    row = np.arange(11)
    parts = [w({c: df[c].to_numpy()[s] for c in df.columns} | {"_calibkit_row": row[s]}) for s in
             (slice(7, 11), slice(0, 3), slice(3, 7))]  # fmt: skip
    merged = rows_to_scores(parts, distributed="test")
    direct = StubScorer().score(list(df["text"]), labels=list(df["label"]), ids=list(df["id"]))
    np.testing.assert_array_equal(merged.logits, direct.logits)
    np.testing.assert_array_equal(merged.labels, direct.labels)
    assert list(merged.ids) == list(df["id"])
    assert merged.classes == CLASSES and merged.meta["distributed"] == "test"
    bad = dict(parts[0])
    bad["classes"] = np.array([json.dumps(["a", "b"])] * 4, dtype=object)
    with pytest.raises(ValueError, match="disagree on the classes"):
        rows_to_scores([parts[1], bad])
    with pytest.raises(ValueError, match="no scored rows"):
        rows_to_scores([])


def test_score_with_ray_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_workers"):
        score_with_ray(_rows(2), make_stub, num_workers=0)
    with pytest.raises(ValueError, match="batch_size"):
        score_with_ray(_rows(2), make_stub, batch_size=0)


# --------------------------------------------------------------------------------------------
# small local Ray runs


@pytest.fixture(scope="module")
def ray_local() -> Any:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    # Ship this test module's functions to the workers by value (tests/ is not a package).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        object_store_memory=100 * 1024**2,
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_two_actors_match_direct_scoring(ray_local: Any, tmp_path: Path) -> None:
    df = _rows(60)
    log = tmp_path / "built.txt"
    scores = score_with_ray(
        df, functools.partial(make_stub, str(log)), num_workers=2, batch_size=8,
        num_cpus_per_worker=0.5,
    )  # fmt: skip
    direct = StubScorer().score(list(df["text"]), labels=list(df["label"]), ids=list(df["id"]))
    np.testing.assert_array_equal(scores.logits, direct.logits)
    np.testing.assert_array_equal(scores.labels, direct.labels)
    assert list(scores.ids) == list(df["id"])
    assert scores.meta["distributed"] == "ray"
    builds = log.read_text().split()
    # once per actor (a pool of 2; Ray may finish before starting the second), not per batch (8)
    assert 1 <= len(builds) <= 2
    assert set(scores.meta) >= {"model", "pid"}
    assert os.getpid() not in {int(p) for p in builds}  # it ran in the actors


class _OpenAIStub(BaseHTTPRequestHandler):
    """Chat completions whose first-token logprobs depend on the prompt (a mini 'vLLM')."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        chat = self.path.endswith("/chat/completions")  # plain prompts go to /completions
        text = body["messages"][-1]["content"] if chat else body["prompt"]
        lp = _logits(text)
        tops = [
            {"token": " negative", "logprob": lp[0] - 10},
            {"token": " positive", "logprob": lp[1] - 10},
        ]
        best = max(tops, key=lambda t: t["logprob"])
        if chat:
            content = [{"token": best["token"], "logprob": best["logprob"], "top_logprobs": tops}]
            choice = {"message": {"content": best["token"]}, "logprobs": {"content": content}}
        else:
            choice = {
                "text": best["token"],
                "logprobs": {
                    "tokens": [best["token"]],
                    "token_logprobs": [best["logprob"]],
                    "top_logprobs": [{t["token"]: t["logprob"] for t in tops}],
                },
            }
        data = json.dumps({"choices": [choice]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class HTTPScorer:
    """Minimal scorer over the HTTP backend: class logits = first-token logprobs of ' <class>'."""

    def __init__(self, spec: str):
        from calibkit.scoring.backends.openai_http import OpenAICompatibleBackend

        self.backend = OpenAICompatibleBackend.from_spec(spec, max_concurrency=2, api_key="")

    def score(self, texts: list[str], labels: Any = None, ids: Any = None) -> Scores:
        cands = [" " + c for c in CLASSES]
        lps = self.backend.next_token_logprobs(texts, cands)
        return Scores(
            logits=np.array([[d[c] for c in cands] for d in lps]),
            labels=None if labels is None else [CLASSES.index(x) for x in labels],
            classes=CLASSES,
            ids=np.asarray(ids),
            meta={"model": self.backend.name},
        )


def make_http(spec: str) -> HTTPScorer:
    return HTTPScorer(spec)


@pytest.mark.slow
def test_ray_actors_behind_an_openai_server(ray_local: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIStub)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        df = _rows(24)
        scores = score_with_ray(
            df.to_dict("records"), functools.partial(make_http, f"openai:{url}::stub"),
            num_workers=2, batch_size=6, num_cpus_per_worker=0.5,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    expected = np.array([_logits(t) for t in df["text"]]) - 10
    np.testing.assert_allclose(scores.logits, expected)
    assert scores.meta["model"] == f"openai:{url}:stub"
    np.testing.assert_array_equal(scores.labels, [i % 2 for i in range(24)])


class RecordingMCQScorer:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def score(self, items: list[Any]) -> Scores:
        self.items.extend(items)
        k = max(len(it.choices) for it in items)
        return Scores(
            logits=np.zeros((len(items), k)),
            labels=[it.answer for it in items],
            classes=tuple("ABCD"[:k]),
            ids=np.array([it.id for it in items], dtype=object),
        )


def test_worker_mcq_builds_items() -> None:
    pytest.importorskip("calibkit.datasets")
    w = ScoringWorker(RecordingMCQScorer, task="mcq")
    choices = np.empty(2, dtype=object)
    choices[0], choices[1] = np.array(["3", "4", "5"]), np.array(["red", "blue", "green"])
    batch = {
        "question": np.array(["2+2?", "Sky colour?"], dtype=object),
        "choices": choices,
        "answer": np.array([1, 1]),
        "subject": np.array(["math", "science"], dtype=object),
        "id": np.array(["q1", "q2"], dtype=object),
    }
    out = w(batch)
    items = w.scorer.items
    assert [it.question for it in items] == ["2+2?", "Sky colour?"]
    assert [list(it.choices) for it in items] == [["3", "4", "5"], ["red", "blue", "green"]]
    assert [it.answer for it in items] == [1, 1] and [it.id for it in items] == ["q1", "q2"]
    np.testing.assert_array_equal(out["label"], [1, 1])
    with pytest.raises(ValueError, match="no 'choices' column"):
        w({"question": batch["question"], "answer": batch["answer"]})


# --------------------------------------------------------------------------------------------
# issue #10 item 24: per-item fields and counters of every batch survive the merge


class FixedBackend:
    """Generated answers fixed by the text ``t<i>``: yes / no / unparsable, and item failures
    for the rows in ``fail`` (an :class:`ItemFailure` in place of the generation)."""

    name = "fixed"
    has_chat_template = False

    def __init__(self, fail: tuple[int, ...] = ()) -> None:
        self.fail = set(fail)

    @staticmethod
    def _row(p: Any) -> int:
        return int(str(p).split("Text: t")[1].split("\n")[0])

    def generate(self, prompts: Any, *, max_new_tokens: int = 8, candidates: Any = (),
                 top_logprobs: int = 20) -> list[Any]:  # fmt: skip
        from calibkit.scoring.backends.base import Generation, ItemFailure

        out: list[Any] = []
        for j, p in enumerate(prompts):
            i = self._row(p)
            if i in self.fail:
                out.append(ItemFailure(f"scripted failure of t{i}", j))
                continue
            lp = {"yes": -0.1 - 0.003 * i, "no": -2.0 + 0.004 * i}
            text = ["yes", "no", "perhaps"][i % 3]
            out.append(Generation(text=text, tokens=[text], logprobs=[lp]))
        return out

    def next_token_logprobs(self, prompts: Any, candidates: Any) -> list[Any]:
        raise NotImplementedError


def make_fixed_scorer(fail: tuple[int, ...] = ()) -> Any:
    from calibkit.scoring.classify import ClassificationScorer

    return ClassificationScorer(
        FixedBackend(fail), ["yes", "no"], max_new_tokens=1, progress=False, batch_size=16
    )


def _texts(n: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"t{i}" for i in range(n)], "label": [i % 2 for i in range(n)]})


def _worker_batches(w: ScoringWorker, df: pd.DataFrame, size: int) -> list[dict[str, Any]]:
    return [
        w({c: df[c].to_numpy()[s : s + size] for c in df.columns}
          | {"_calibkit_row": np.arange(len(df))[s : s + size]})
        for s in range(0, len(df), size)
    ]  # fmt: skip


def _reblock(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Ray may do to the outputs: reorder them and glue several into one block."""
    parts = parts[::-1]
    glued = {k: np.concatenate([parts[0][k], parts[1][k]]) for k in parts[0]}
    return [glued, *parts[2:]]


def test_merge_keeps_per_item_fields_and_counts_of_every_batch() -> None:
    from calibkit.scoring.classify import answer_confidence

    df = _texts(200)
    direct = make_fixed_scorer().score(list(df["text"]), labels=list(df["label"]))
    assert direct.meta["n_unparsed"] == 66
    merged = rows_to_scores(_reblock(_worker_batches(ScoringWorker(make_fixed_scorer), df, 64)))
    assert len(merged) == 200
    for name, v in direct.per_item.items():
        assert merged.per_item[name].tolist() == v.tolist(), name
    assert merged.meta["n_unparsed"] == 66  # the old merge kept the first batch's count
    assert merged.meta["n_filled_missing"] == direct.meta["n_filled_missing"]
    assert list(merged.ids) == list(range(200))  # row positions in the input, not per batch
    np.testing.assert_array_equal(merged.logits, direct.logits)
    np.testing.assert_allclose(answer_confidence(merged), answer_confidence(direct))


def test_skipped_failures_of_every_batch_are_listed_with_their_input_row() -> None:
    df = _texts(40)
    fail = (3, 17, 18, 39)
    w = ScoringWorker(functools.partial(make_fixed_scorer, fail), on_error="skip")
    merged = rows_to_scores(_reblock(_worker_batches(w, df, 8)))
    keep = [i for i in range(40) if i not in fail]
    assert list(merged.ids) == keep
    assert [f["row"] for f in merged.meta["failures"]] == list(fail)
    assert all("scripted failure" in f["reason"] for f in merged.meta["failures"])
    direct = make_fixed_scorer().score([f"t{i}" for i in keep])
    for name, v in direct.per_item.items():
        assert merged.per_item[name].tolist() == v.tolist(), name
    assert merged.meta["n_unparsed"] == direct.meta["n_unparsed"]
    np.testing.assert_array_equal(merged.labels, [i % 2 for i in keep])
    # a batch where everything failed still reports its rows
    all_bad = ScoringWorker(functools.partial(make_fixed_scorer, tuple(range(8, 16))),
                            on_error="skip")  # fmt: skip
    merged = rows_to_scores(_worker_batches(all_bad, df, 8))
    assert [f["row"] for f in merged.meta["failures"]] == list(range(8, 16))
    assert len(merged) == 32
    # without skip the first failure stops the batch, naming the item
    with pytest.raises(ValueError, match=r"t3|item 3"):
        _worker_batches(ScoringWorker(functools.partial(make_fixed_scorer, fail)), df, 8)
    with pytest.raises(ValueError, match="all 8 items failed"):
        rows_to_scores(_worker_batches(all_bad, df.iloc[8:16].reset_index(drop=True), 8))


@pytest.mark.slow
def test_ray_merges_per_item_fields_of_all_batches(ray_local: Any) -> None:
    df = _texts(200)
    scores = score_with_ray(df, make_fixed_scorer, num_workers=2, batch_size=64,
                            num_cpus_per_worker=0.5)  # fmt: skip
    direct = make_fixed_scorer().score(list(df["text"]), labels=list(df["label"]))
    assert len(scores.per_item["answer_text"]) == 200
    assert scores.per_item["answer_index"].tolist() == direct.per_item["answer_index"].tolist()
    assert scores.meta["n_unparsed"] == direct.meta["n_unparsed"] == 66
    np.testing.assert_array_equal(scores.logits, direct.logits)
