"""Paper 002 on the subsets where the model is above chance: per-subject accuracy
(:mod:`calibkit.finetune.subjects`), ``dataset:subject`` sources, scanned questions excluded from
the splits, and the ``--targets`` variants of ``calibkit experiment finetune``."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from calibkit.finetune.data import load_mcq_examples, make_splits
from calibkit.finetune.subjects import (
    SubsetAccuracy,
    sample_subsets,
    subject_table,
    subset_accuracy,
)


def _parser() -> argparse.ArgumentParser:
    from calibkit.experiments.finetune import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p


# ------------------------------------------------------------------------ subset accuracy
def test_subset_accuracy_matches_scipy_exact_interval_and_hand_ece():
    from scipy.stats import binomtest

    rng = np.random.default_rng(0)
    n, k = 40, 4
    logits = rng.normal(size=(n, k))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, k, size=n)
    r = subset_accuracy("mmlu:x", p, y, n_bins=10)
    correct = int((p.argmax(1) == y).sum())
    ci = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="exact")
    assert r.correct == correct and r.n == n and r.k == k
    assert r.accuracy == pytest.approx(correct / n)
    assert (r.acc_low, r.acc_high) == pytest.approx((ci.low, ci.high), abs=1e-9)
    # conf-ECE by hand: 10 equal-width bins on the top probability, last bin closed
    conf, hit = p.max(1), (p.argmax(1) == y).astype(float)
    idx = np.minimum((conf * 10).astype(int), 9)
    ece = sum(
        abs(conf[idx == b].mean() - hit[idx == b].mean()) * (idx == b).sum() / n
        for b in range(10)
        if (idx == b).any()
    )
    assert r.conf_ece == pytest.approx(ece)
    assert r.mean_conf == pytest.approx(conf.mean())
    assert r.chance == 0.25 and r.kept == (ci.low > 0.25)


def test_subset_kept_only_when_interval_is_above_chance():
    y = np.zeros(30, dtype=np.int64)
    right = np.tile([0.7, 0.1, 0.1, 0.1], (30, 1))
    wrong = np.tile([0.1, 0.7, 0.1, 0.1], (30, 1))
    # 15 of 30 right: exact 95 % interval (0.313, 0.687) > 0.25 -> kept
    half = np.vstack([right[:15], wrong[:15]])
    assert subset_accuracy("a", half, y).kept
    # 10 of 30 (0.33, above 1/4 as a point estimate, interval (0.173, 0.528)) -> dropped
    third = np.vstack([right[:10], wrong[:20]])
    r = subset_accuracy("b", third, y)
    assert r.accuracy > r.chance and not r.kept
    with pytest.raises(ValueError, match="'c'"):
        subset_accuracy("c", np.zeros((0, 4)), np.zeros(0, dtype=np.int64))


def test_subject_table_lists_pooled_first_then_best_first():
    rows = [
        SubsetAccuracy("lo", 10, 4, 2, 0.2, 0.0, 0.5, 0.25, 0.3, 0.1, False),
        SubsetAccuracy("hi", 10, 4, 9, 0.9, 0.6, 1.0, 0.25, 0.8, 0.1, True),
    ]
    pooled = {"all": SubsetAccuracy("all", 20, 4, 11, 0.55, 0.3, 0.8, 0.25, 0.5, 0.1, True)}
    lines = subject_table(rows, pooled=pooled).splitlines()
    assert lines[2].startswith("| **all**") and "| hi |" in lines[3] and "| lo |" in lines[4]
    assert lines[3].endswith("| yes |") and lines[4].endswith("| no |")


# ------------------------------------------------------------------------ real data
def test_subject_source_keeps_one_subject_with_the_datasets_ids(data_dir):
    full = load_mcq_examples("mmlu", data_dir=data_dir)
    one = load_mcq_examples("mmlu:anatomy", data_dir=data_dir)
    assert one and all(e.subject == "anatomy" for e in one)
    assert [e.id for e in one] == [e.id for e in full if e.subject == "anatomy"]
    with pytest.raises(ValueError, match="no questions of subject 'no_such'"):
        load_mcq_examples("mmlu:no_such", data_dir=data_dir)
    with pytest.raises(ValueError, match="empty subject"):
        load_mcq_examples("mmlu:", data_dir=data_dir)


def test_make_splits_never_draws_excluded_ids(data_dir):
    srcs = ["mmlu:anatomy", "openbookqa"]
    base = make_splits(
        srcs, ["arc_easy"], n_train=40, n_val=0, n_test=40, n_ood=30, seed=3, data_dir=data_dir
    )
    drawn = [e.id for v in base.values() for e in v]
    sp = make_splits(
        srcs,
        ["arc_easy"],
        n_train=40,
        n_val=0,
        n_test=40,
        n_ood=30,
        seed=3,
        data_dir=data_dir,
        exclude_ids=drawn,
    )
    again = {e.id for v in sp.values() for e in v}
    assert len(again) == 110 and not again & set(drawn)
    assert {e.subject for e in sp["train"] if e.source == "mmlu"} == {"anatomy"}


def test_sample_subsets_per_subject_seeded(data_dir):
    s = sample_subsets(
        ["mmlu", "openbookqa"], per_subject=5, per_dataset=12, seed=1, data_dir=data_dir
    )
    mm = [k for k in s if k.startswith("mmlu:")]
    assert len(mm) == 57 and all(len(s[k]) == 5 for k in mm)
    assert all(e.subject == k.split(":")[1] for k in mm for e in s[k])
    assert len(s["openbookqa"]) == 12
    assert all(len(e.choices) == 4 for v in s.values() for e in v)
    again = sample_subsets(
        ["mmlu", "openbookqa"], per_subject=5, per_dataset=12, seed=1, data_dir=data_dir
    )
    assert {k: [e.id for e in v] for k, v in s.items()} == {
        k: [e.id for e in v] for k, v in again.items()
    }


# ------------------------------------------------------------------------ experiment glue
def test_targets_both_adds_paper_targets_only_where_there_is_an_ece_term():
    from calibkit.experiments.finetune import method_configs

    args = _parser().parse_args(["--methods", "dpo,cft,rcft", "--targets", "both"])
    _, cfgs = method_configs(args)
    assert set(cfgs) == {"cft", "rcft", "rcft_paper_targets"}
    assert cfgs["rcft"].preserve_top and not cfgs["rcft_paper_targets"].preserve_top
    assert cfgs["rcft_paper_targets"].effective_lam == cfgs["rcft"].effective_lam == 1.0
    assert cfgs["cft"].effective_lam == 0
    assert cfgs["rcft"].fingerprint() != cfgs["rcft_paper_targets"].fingerprint()
    _, only = method_configs(_parser().parse_args(["--methods", "rcft", "--targets", "paper"]))
    assert list(only) == ["rcft_paper_targets"]
    _, default = method_configs(_parser().parse_args(["--methods", "rcft"]))
    assert list(default) == ["rcft"] and default["rcft"].preserve_top
    with pytest.raises(ValueError, match="--targets"):
        method_configs(_parser().parse_args(["--no-preserve-top"]))


def test_no_preserve_top_flag_reaches_the_config():
    from calibkit.finetune.pipeline import config_from_args

    args = _parser().parse_args(["--no-preserve-top"])
    assert config_from_args(args, "rcft").preserve_top is False
    assert config_from_args(_parser().parse_args([]), "rcft").preserve_top is True


def test_subjects_from_trains_on_kept_minus_eval_and_excludes_scanned(tmp_path):
    from calibkit.experiments.finetune import _subjects_sources

    path = tmp_path / "subjects.json"
    path.write_text(
        json.dumps(
            {
                "model": "smollm2",
                "kept": ["mmlu:marketing", "arc_easy", "openbookqa"],
                "scanned_ids": ["a", "b"],
            }
        )
    )
    args = _parser().parse_args(["--subjects-from", str(path), "--eval", "arc_easy"])
    train, excl = _subjects_sources(args)
    assert train == ["mmlu:marketing", "openbookqa"] and excl == ["a", "b"]
    path.write_text(json.dumps({"model": "smollm2", "kept": []}))
    with pytest.raises(ValueError, match="'scanned_ids'"):
        _subjects_sources(args)
    path.write_text(json.dumps({"model": "smollm2", "kept": ["arc_easy"], "scanned_ids": []}))
    with pytest.raises(ValueError, match="no kept subset"):
        _subjects_sources(args)
    args = _parser().parse_args(["--subjects-from", str(tmp_path / "nope.json")])
    with pytest.raises(ValueError, match=r"nope\.json"):
        _subjects_sources(args)


# ------------------------------------------------------------------------ paired differences
def _scores(logits, y, ids):
    from calibkit.scores import Scores

    return Scores(
        logits=logits, labels=y, classes=("A", "B", "C", "D"), ids=np.array(ids, dtype=object)
    )


def _hand_conf_ece(p, y):
    conf, hit = p.max(1), (p.argmax(1) == y).astype(float)
    idx = np.minimum((conf * 10).astype(int), 9)
    return sum(
        abs(conf[idx == b].mean() - hit[idx == b].mean()) * (idx == b).sum() / len(y)
        for b in range(10)
        if (idx == b).any()
    )


def test_paired_differences_against_a_hand_computation():
    from calibkit.finetune.evaluate import paired_differences

    rng = np.random.default_rng(1)
    n = 50
    y = rng.integers(0, 4, size=n)
    la, lb = rng.normal(size=(n, 4)), rng.normal(size=(n, 4)) * 2
    ids = [f"q{i}" for i in range(n)]
    d = paired_differences(_scores(la, y, ids), _scores(lb, y, ids), n_boot=200, seed=5)

    def soft(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    pa, pb = soft(la), soft(lb)
    acc = lambda p, yy: float(np.mean(p.argmax(1) == yy))  # noqa: E731
    assert d["accuracy"][0] == pytest.approx(acc(pb, y) - acc(pa, y))
    assert d["conf_ece"][0] == pytest.approx(_hand_conf_ece(pb, y) - _hand_conf_ece(pa, y))
    # the same resampled questions for both models
    r = np.random.default_rng(5)
    draws = []
    for _ in range(200):
        i = r.integers(0, n, size=n)
        draws.append(acc(pb[i], y[i]) - acc(pa[i], y[i]))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    assert d["accuracy"][1:] == pytest.approx((lo, hi))
    same = paired_differences(_scores(la, y, ids), _scores(la, y, ids), n_boot=50)
    assert all(v == (0.0, 0.0, 0.0) for v in same.values())


def test_paired_differences_refuses_unpaired_scores():
    from calibkit.finetune.evaluate import paired_differences

    y = np.array([0, 1, 2])
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match="different question ids"):
        paired_differences(_scores(z, y, ["a", "b", "c"]), _scores(z, y, ["a", "c", "b"]))
    with pytest.raises(ValueError, match="labels"):
        paired_differences(_scores(z, y, ["a", "b", "c"]), _scores(z, y[::-1], ["a", "b", "c"]))


def test_difference_table_reads_the_saved_scores(tmp_path):
    from calibkit.experiments.finetune import difference_table

    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, size=30)
    ids = [f"q{i}" for i in range(30)]
    for name in ("dpo", "rcft"):
        for split in ("test", "ood"):
            _scores(rng.normal(size=(30, 4)), y, ids).save(
                tmp_path / "scores" / f"{name}_{split}.parquet"
            )
    table, res = difference_table(tmp_path, ["dpo", "rcft", "cft"], n_boot=20)
    assert list(res) == ["rcft"] and set(res["rcft"]) == {"test", "ood"}
    assert table.count("\n") == 3 and "| RCFT |" in table


def test_scan_refuses_a_folder_scanned_with_other_questions(tmp_path, data_dir):
    from calibkit.experiments.finetune import run

    (tmp_path / "scan_questions.json").write_text(json.dumps({"model": "smollm2", "ids": {}}))
    argv = ["--scan", "--out", str(tmp_path), "--scan-sources", "openbookqa"]
    args = _parser().parse_args([*argv, "--data-dir", str(data_dir)])
    with pytest.raises(ValueError, match="scanned with other questions"):
        run(args)  # before any model is loaded
