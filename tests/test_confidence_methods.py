"""The confidence-methods study (issue #14 item 4): MCQ adapter, item selection, scoring stage
on a scripted backend, and the analysis checked against scikit-learn and hand computations."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from calibkit.datasets import MCQItem
from calibkit.scores import Scores
from calibkit.scoring.backends.base import Generation


# ---------------------------------------------------------------------------- MCQ adapter
def _items() -> list[MCQItem]:
    return [
        MCQItem("What is 2+2?", ("3", "4", "5", "6"), 1, id="q1"),
        MCQItem("Sky colour?", ("red", "green", "blue", "pink"), 2, id="q2"),
    ]


def test_mcq_adapter_letters_are_the_classes_and_the_text_shows_the_options():
    from calibkit.scoring.confidence import mcq_as_classification

    m = mcq_as_classification(_items())
    assert m.classes == ("A", "B", "C", "D")
    assert m.labels == ["B", "C"] and m.ids == ["q1", "q2"]
    assert m.texts[0] == "What is 2+2?\nOptions:\nA. 3\nB. 4\nC. 5\nD. 6"
    prompt = m.template.render(m.texts[0], m.classes, chat=True)
    assert "A, B, C, D" in prompt[0]["content"] and "B. 4" in prompt[-1]["content"]
    assert m.template.render(m.texts[0], m.classes, chat=False).rstrip().endswith("Answer:")


def test_mcq_adapter_errors_name_the_item():
    from calibkit.scoring.confidence import mcq_as_classification

    bad = [*_items(), MCQItem("Three?", ("a", "b", "c"), 0, id="q3")]
    with pytest.raises(ValueError, match=r"item 2 \('q3'\) has 3 options but item 0 has 4"):
        mcq_as_classification(bad)
    with pytest.raises(ValueError, match="non-empty"):
        mcq_as_classification([])


def test_every_estimator_runs_on_an_mcq_task():
    from calibkit.scoring.confidence import ESTIMATORS, correctness, mcq_as_classification

    m = mcq_as_classification(_items() * 3)
    be = _Backend(answers={t: "B" for t in m.texts})
    for name in ("logits", "ptrue", "verbalized", "consistency"):
        s = ESTIMATORS[name](be, list(m.classes), m.template).score(m.texts, m.labels)
        _, right = correctness(s)
        assert right.tolist() == [True, False] * 3, name  # "B" is right for q1 only


# ---------------------------------------------------------------------------- a scripted model
def _text_of(p) -> str:
    s = p if isinstance(p, str) else p[-1]["content"] if p[-1]["role"] == "user" else ""
    if not isinstance(p, str):
        users = [m["content"] for m in p if m["role"] == "user"]
        s = users[0]
    for line in s.splitlines():
        if line.startswith("Text: ") or line.startswith("Question: "):
            return line.split(": ", 1)[1]
    return s


class _Backend:
    """Answers ``answers[text]`` (a class name or junk), states confidence 80%, P(True) 0.7,
    samples cycle through ``[answer, other]`` by a hash of seed + sample index."""

    name = "scripted-study"
    has_chat_template = True

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = {
            _text_of(k) if "\n" not in k else k.split("\n")[0]: v for k, v in answers.items()
        }

    def _answer(self, p) -> str:
        return self.answers.get(_text_of(p), "???")

    def generate(self, prompts, *, max_new_tokens=8, candidates=(), top_logprobs=20):
        out = []
        for p in prompts:
            last = p if isinstance(p, str) else p[-1]["content"]
            t = "Confidence: 80%" if "How confident" in last else self._answer(p)
            if "Confidence:" in last and "Answer:" in last:
                t = f"Answer: {self._answer(p)}\nConfidence: 80%"
            first = t.split()[0]
            lp = {c: (-0.2 if c.strip() == first else -2.5) for c in candidates} or {first: -0.1}
            out.append(Generation(text=t, tokens=t.split(), logprobs=[lp]))
        return out

    def next_token_logprobs(self, prompts, candidates):
        out = []
        for p in prompts:
            if isinstance(p, list) and p[-1]["role"] == "user" and "True" in p[-1]["content"]:
                out.append(
                    {c: (np.log(0.7) if c.strip() == "A" else np.log(0.3)) for c in candidates}
                )
            else:
                a = self._answer(p)
                out.append({c: (-0.2 if c.strip() == a else -2.5) for c in candidates})
        return out

    def sample(self, prompts, params, max_new_tokens=64):
        out = []
        for p in prompts:
            a = self._answer(p)
            row = []
            for j in range(params.n):
                h = hashlib.sha256(f"{params.seed + j}|{_text_of(p)}".encode()).digest()
                t = a if h[0] % 3 else "zzz"
                row.append(Generation(text=t, tokens=[t], logprobs=[{t: -0.5}]))
            out.append(row)
        return out


def _task(n: int = 12):
    from calibkit.experiments.confidence_methods.score import StudyTask

    texts = [f"item {i}" for i in range(n)]
    labels = ["positive" if i % 2 else "negative" for i in range(n)]
    return StudyTask("toy", texts, labels, ("negative", "positive"), None, np.arange(100, 100 + n))


# ---------------------------------------------------------------------------- scoring stage
def test_load_task_same_items_for_any_n_and_trec_readable_classes():
    from calibkit.experiments.confidence_methods import load_task

    a, b = load_task("sst2", 10, seed=3), load_task("sst2", 25, seed=3)
    assert list(a.ids) == list(b.ids[:10]) and a.texts == b.texts[:10]
    assert load_task("sst2", 10, seed=4).texts != a.texts
    t = load_task("trec", 5)
    assert "location" in t.classes and len(t.classes) == 6
    m = load_task("arc_easy", 6)
    assert m.classes == ("A", "B", "C", "D") and set(m.labels) <= set(m.classes)
    with pytest.raises(ValueError, match="unknown study task 'nope'"):
        load_task("nope", 10)


def test_score_one_leaves_out_unparseable_items_and_says_which(tmp_path: Path):
    from calibkit.experiments.confidence_methods.analysis import summarize
    from calibkit.experiments.confidence_methods.score import fixture_path, score_one

    task = _task(12)
    answers = {t: ("positive" if i < 9 else "I do not know") for i, t in enumerate(task.texts)}
    be = _Backend(answers)
    s = score_one(be, task, "verbalized-2s", model="toy", cache=str(tmp_path / "c.sqlite"))
    st = s.meta["study"]
    # the confidence is read for every item (80%) but the answer names no class for items 9..11:
    # they are scored as wrong, not dropped
    assert st["n_items"] == 12 and len(s) == 12 and st["failed_ids"] == []
    assert s.labels.tolist() == [int(i % 2 == 1 and i < 9) for i in range(12)]
    np.testing.assert_array_equal(s.per_item["gold"], [i % 2 for i in range(12)])
    path = s.save(fixture_path(tmp_path, "toy", "openai:x/y", "verbalized-2s"))
    assert path.name == "toy__openai_x_y__verbalized-2s.parquet"
    back = Scores.load(path)
    assert back.meta["study"]["variant"] == "verbalized-2s"
    # consistency: items where no sample names a class have no vote -> not scored, listed
    answers = {t: ("positive" if i % 4 else "zzz") for i, t in enumerate(task.texts)}
    c = score_one(_Backend(answers), task, "consistency", model="toy", cache=None)
    cst = c.meta["study"]
    assert cst["failed_ids"] == [100, 104, 108] and len(c) == 9
    assert sorted(int(i) for i in c.ids) == [101, 102, 103, 105, 106, 107, 109, 110, 111]
    row = summarize(c, n_splits=3, n_boot=50)
    assert row["coverage"] == pytest.approx(9 / 12) and row["n_not_scored"] == 3
    assert sum(row["not_scored_reasons"].values()) == 3
    with pytest.raises(ValueError, match="unknown estimator variant 'bogus'"):
        score_one(be, task, "bogus", model="toy", cache=None)


def test_few_shot_template_is_the_cascades_and_zero_shot_keys_are_unchanged(tmp_path: Path):
    from calibkit.experiments import cascade
    from calibkit.experiments.confidence_methods import load_task
    from calibkit.experiments.confidence_methods.score import (
        model_label,
        parse_model,
        score_one,
        with_shots,
    )
    from calibkit.scoring import ScoreCache
    from calibkit.scoring.confidence import ESTIMATORS

    assert parse_model("gemma3-270m@4") == ("gemma3-270m", 4)
    assert parse_model("openai:http://h:1/v1::m") == ("openai:http://h:1/v1::m", 0)
    assert model_label("gemma3-270m", 4) == "gemma3-270m-4shot"
    assert model_label("smollm2", 0) == "smollm2"
    with pytest.raises(ValueError, match="number of shots"):
        parse_model("gemma3-270m@four")

    base = load_task("sst2", 8)
    assert with_shots(base, 0) is base and base.template is None
    few = with_shots(base, 4)
    # the very examples and prompt of the cascade's 4-shot labeler (gemma3-fs), not a copy
    _, _, _, demos = cascade.sample_items("sst2", 300, 0, None)
    ref = cascade.make_scorer("sst2", "gemma3-fs", None, demos, None)
    assert few.template.examples == tuple(demos[:4]) and len(set(demos[:4])) == 4
    assert few.template.few_shot_style == "dialogue"
    assert few.texts == base.texts and list(few.ids) == list(base.ids)
    est = ESTIMATORS["logits"](_Backend({}), list(few.classes), few.template)
    prompt = est.prompt(few.texts[0])
    assert prompt == ref.prompt(few.texts[0])
    turns = [m["content"] for m in prompt if m["role"] in ("user", "assistant")]
    for text, label in demos[:4]:
        assert any(text in t for t in turns) and label in turns
    with pytest.raises(ValueError, match="few-shot prompts exist only"):
        with_shots(load_task("trec", 5), 4)

    # cache keys: the study's zero-shot path gives the keys of an estimator with no template
    # (what the committed fixtures were scored with); the few-shot keys are all different
    def keys(task, path: Path, direct: bool = False) -> set[str]:
        be = _Backend({t: "positive" for t in task.texts})
        if direct:
            ESTIMATORS["ptrue"](be, list(task.classes), cache=str(path)).score(
                task.texts, task.labels, ids=task.ids
            )
        else:
            score_one(be, task, "ptrue", model="toy", cache=str(path))
        return set(ScoreCache(path).keys())

    zero = keys(with_shots(base, 0), tmp_path / "a.sqlite")
    assert len(zero) == 8 and zero == keys(base, tmp_path / "b.sqlite", direct=True)
    assert not zero & keys(few, tmp_path / "c.sqlite")


# ---------------------------------------------------------------------------- analysis
def _synthetic(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.3, 1.0, n)
    correct = rng.uniform(size=n) < conf**2  # overconfident but informative
    return conf, correct


def test_auroc_and_brier_match_sklearn_and_chance_verdicts():
    from sklearn.metrics import brier_score_loss, roc_auc_score

    from calibkit.experiments.confidence_methods.analysis import auroc_ci, brier, chance_verdict

    conf, correct = _synthetic()
    a = auroc_ci(conf, correct, n_boot=300, seed=1)
    assert a[0] == pytest.approx(roc_auc_score(correct, conf))
    assert a[1] < a[0] < a[2]
    assert brier(conf, correct) == pytest.approx(brier_score_loss(correct, conf))
    assert chance_verdict(a) == "above"
    assert chance_verdict([0.5, 0.4, 0.6]) == "no better"
    assert chance_verdict([0.3, 0.2, 0.45]) == "worse"
    assert chance_verdict([float("nan")] * 3) == "too few"
    assert np.isnan(auroc_ci(conf, np.ones_like(correct), n_boot=10, seed=0)[0])
    seven = np.r_[np.ones(7, bool), np.zeros(50, bool)]  # 7 right answers: no CI
    assert np.isnan(auroc_ci(conf[:57], seven, n_boot=10, seed=0)[1])


def test_ece_is_the_hand_computed_binned_gap():
    from calibkit.scoring.confidence.select import pcorrect_ece

    conf = np.array([0.05, 0.15, 0.15, 0.95, 1.0, 0.55])
    correct = np.array([0, 1, 0, 1, 1, 0])
    # bins: [0,.1): {.05 -> 0}; [.1,.2): {.15,.15 -> 1,0}; [.5,.6): {.55 -> 0}; [.9,1]: {.95,1}
    hand = (1 * 0.05 + 2 * abs(0.5 - 0.15) + 1 * 0.55 + 2 * abs(1 - 0.975)) / 6
    assert pcorrect_ece(conf, correct) == pytest.approx(hand)


def test_platt_fit_matches_sklearn_logistic_regression_on_the_logit():
    from sklearn.linear_model import LogisticRegression

    from calibkit.experiments.confidence_methods.analysis import fit_pcorrect

    conf, correct = _synthetic(200, seed=2)
    f = fit_pcorrect("platt", conf, correct)
    z = np.log(conf / (1 - conf)).reshape(-1, 1)
    ref = LogisticRegression(C=1e8).fit(z, correct).predict_proba(z)[:, 1]
    np.testing.assert_allclose(f(conf), ref, atol=2e-3)


def test_random_half_and_split_study():
    from calibkit.experiments.confidence_methods.analysis import (
        fit_pcorrect,
        random_half,
        split_study,
    )
    from calibkit.scoring.confidence.select import pcorrect_ece

    conf, correct = _synthetic(101, seed=5)
    cal = random_half(correct, np.random.default_rng(0))
    assert cal.sum() == 50 and correct[cal].any() and not correct[cal].all()
    rare = np.r_[np.ones(2, bool), np.zeros(40, bool)]
    for seed in range(5):  # one right answer on each side, always
        m = random_half(rare, np.random.default_rng(seed))
        assert rare[m].sum() == 1
    with pytest.raises(ValueError, match="no split with both outcomes"):
        random_half(np.r_[True, np.zeros(9, bool)], np.random.default_rng(0))
    out = split_study(conf, correct, n_splits=6, seed=3, calibrators=("platt",))
    per = out["per_split"]
    assert len(per["ece_raw"]) == 6 and out["n_splits"] == 6
    # recompute split 0 independently
    rng = np.random.default_rng(3)
    c0 = random_half(correct, rng)
    p = fit_pcorrect("platt", conf[c0], correct[c0])(conf[~c0])
    assert per["ece_raw"][0] == pytest.approx(pcorrect_ece(conf[~c0], correct[~c0]))
    assert per["ece_platt"][0] == pytest.approx(pcorrect_ece(p, correct[~c0]))
    base = np.full((~c0).sum(), correct[c0].mean())
    assert per["ece_base_rate"][0] == pytest.approx(pcorrect_ece(base, correct[~c0]))
    d = np.asarray(per["ece_platt"]) - np.asarray(per["ece_raw"])
    assert out["d_ece_platt"][0] == pytest.approx(d.mean())
    assert out["n_worse_platt"] == int((d > 1e-12).sum())
    assert out["ece_raw"][1] <= out["ece_raw"][0] <= out["ece_raw"][2]
    # overconfident scores: Platt lowers held-out ECE on average
    assert out["d_ece_platt"][0] < 0
    with pytest.raises(ValueError, match="need >= 8 of each"):
        split_study(conf[:20], np.r_[np.ones(13, bool), np.zeros(7, bool)])


def test_summarize_and_table_mark_chance_and_coverage(tmp_path: Path):
    from calibkit.experiments.confidence_methods.analysis import (
        analyze_folder,
        majority_baseline,
        table_md,
    )

    conf, correct = _synthetic(80, seed=7)
    gold = np.arange(80) % 3 == 0
    meta = {
        "study": {"task": "t", "model": "m", "variant": "verbalized", "n_items": 100},
        "cost": {"per_item": {"model_calls": 2, "output_tokens": 7.5, "prompt_chars": 300}},
        "failures": [
            {"row": i, "id": str(i), "reason": "unparseable confidence: x"} for i in range(20)
        ],
    }
    s = Scores.from_probs(
        conf,
        labels=correct.astype(int),
        classes=("wrong", "right"),
        meta=meta,
        per_item={"gold": gold.astype(np.int64)},
    )
    s.save(tmp_path / "t__m__verbalized.parquet")
    noise = Scores.from_probs(
        np.full(80, 0.9),
        labels=correct.astype(int),
        classes=("wrong", "right"),
        meta={**meta, "study": {**meta["study"], "variant": "constant"}, "failures": []},
        per_item={"gold": gold.astype(np.int64)},
    )
    noise.save(tmp_path / "t__m__constant.parquet")
    rows = analyze_folder(tmp_path, n_splits=4, n_boot=100)
    by = {r["estimator"]: r for r in rows}
    r = by["verbalized"]
    assert r["coverage"] == 0.8 and r["not_scored_reasons"] == {"unparseable confidence": 20}
    assert r["majority"] == pytest.approx(majority_baseline(gold)) == pytest.approx(1 - 27 / 80)
    assert r["accuracy"] == pytest.approx(correct.mean()) and r["calls_per_item"] == 2
    assert by["constant"]["chance"] == "no better" and by["constant"]["n_distinct_conf"] == 1
    md = table_md(rows)
    assert "| t | m | constant | 80/100 |" in md and "**no better**" in md
    (tmp_path / "x__y__z.parquet").write_bytes(b"not parquet")
    with pytest.raises(Exception, match=r"x__y__z\.parquet"):
        analyze_folder(tmp_path)


def _per_class(probs, gold, ids, asked, model):
    meta = {
        "study": {
            "task": "t",
            "model": model,
            "variant": "logits",
            "n_items": len(asked),
            "item_ids": asked,
        }
    }
    s = Scores.from_probs(
        np.asarray(probs),
        labels=np.asarray(gold),
        classes=("neg", "pos"),
        ids=np.asarray(ids),
        meta=meta,
    )
    return Scores(
        s.logits,
        s.labels,
        s.classes,
        s.ids,
        meta,
        {"answer_index": s.prediction, "gold": np.asarray(gold)},
    )


def test_compare_runs_on_the_common_items_only():
    from calibkit.experiments.confidence_methods.analysis import compare_runs

    asked = [10, 11, 12, 13, 14]
    a = _per_class(
        [[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]],
        [0, 1, 0, 1],
        [10, 11, 12, 14],
        asked,
        "server",
    )
    b = _per_class(
        [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5], [0.1, 0.9]],
        [0, 1, 1, 0, 1],
        [10, 11, 13, 12, 14],
        asked,
        "local",
    )
    r = compare_runs(a, b)
    # common ids 10, 11, 12, 14; b's rows for them: 0, 1, 3, 4
    pa = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])
    pb = np.array([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5], [0.1, 0.9]])
    assert r["n_common"] == 4 and r["coverage_a"] == 0.8 and r["coverage_b"] == 1.0
    assert r["prob_mean_abs_diff"] == pytest.approx(np.abs(pa - pb).mean())
    assert r["prob_max_abs_diff"] == pytest.approx(0.6)
    # argmax a: 0,1,1,0; b: 0,1,0 (tie -> first),1
    assert r["argmax_agreement"] == pytest.approx(0.5) == r["answer_agreement"]
    assert r["answer_names_class_a"] == r["answer_names_class_b"] == 1.0
    other = _per_class([[0.5, 0.5]] * 4, [0] * 4, [10, 11, 12, 14], asked, "x")
    other.meta["study"]["variant"] = "ptrue"
    with pytest.raises(ValueError, match="variant differs"):
        compare_runs(a, other)


def test_cli_analyze_writes_table_and_results(tmp_path: Path, capsys):
    import json

    from calibkit.cli.main import main

    conf, correct = _synthetic(60, seed=1)
    meta = {"study": {"task": "t", "model": "m", "variant": "ptrue", "n_items": 60}}
    Scores.from_probs(
        conf,
        labels=correct.astype(int),
        classes=("wrong", "right"),
        meta=meta,
        per_item={"gold": np.zeros(60, np.int64)},
    ).save(tmp_path / "t__m__ptrue.parquet")
    out = tmp_path / "res"
    argv = [
        "experiment",
        "confidence-methods",
        "--stage",
        "analyze",
        "--fixtures",
        str(tmp_path),
        "--out",
        str(out),
        "--splits",
        "3",
        "--n-boot",
        "50",
    ]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["rows"][0]["estimator"] == "ptrue" and res["server_vs_local"] == []
    assert "| t | m | ptrue | 60/60 |" in (out / "table.md").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    capsys.readouterr()
    assert main([*argv[:5], str(empty), "--out", str(out)]) == 2
    assert "no <task>__<model>__<estimator>.parquet fixtures in" in capsys.readouterr().err


def test_a_run_with_nothing_scored_is_a_row_with_coverage_zero(tmp_path: Path):
    from calibkit.experiments.confidence_methods.analysis import analyze_folder, table_md
    from calibkit.experiments.confidence_methods.score import NothingScored, score_one

    task = _task(6)
    be = _Backend({t: "positive" for t in task.texts})
    be.generate = lambda prompts, **kw: [  # type: ignore[method-assign]
        Generation(text="no idea", tokens=["no", "idea"], logprobs=[{"no": -0.1}]) for _ in prompts
    ]
    out = score_one(be, task, "verbalized", model="toy", cache=None)
    assert isinstance(out, NothingScored)
    assert out.study["failed_ids"] == list(range(100, 106)) and len(out.study["failures"]) == 6
    path = out.save(tmp_path / "toy__toy__verbalized.parquet")
    assert path.suffix == ".json"
    (row,) = analyze_folder(tmp_path)
    assert row["coverage"] == 0.0 and row["n_scored"] == 0 and row["chance"] == "too few"
    assert "| toy | toy | verbalized | 0/6 |" in table_md([row])
