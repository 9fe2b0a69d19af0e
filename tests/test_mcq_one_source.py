"""Issue #11: one multiple-choice prompt and one paper-002 eq. (1), shared by scoring and finetune."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibkit.finetune import data as ft_data
from calibkit.finetune import evaluate as ft_eval
from calibkit.scores import Scores
from calibkit.scoring import mcq as sc_mcq
from calibkit.scoring.cache import ScoreCache
from calibkit.scoring.option_probs import option_distribution
from calibkit.scoring.prompts import MCQ_SYSTEM, MultipleChoiceTemplate, mcq_user_message

QUESTIONS = [
    ("What is 2+2?", ("3", "4", "5", "6"), 1),
    ("  Padded question?\n", ("yes", "no"), 0),
    ("Pick one", tuple("abcdefg"), 6),
]


@pytest.mark.parametrize(("question", "choices", "answer"), QUESTIONS)
def test_finetune_prompt_is_the_scorer_prompt(question, choices, answer):
    ex = ft_data.MCQExample(question, choices, answer, id="q")
    scorer_msgs = MultipleChoiceTemplate().render(question.strip(), choices, chat=True)
    assert ft_data.build_messages(ex) == scorer_msgs
    assert ft_data.format_user_prompt(ex) == scorer_msgs[-1]["content"]
    no_sys = MultipleChoiceTemplate(system_prompt=None).render(question.strip(), choices)
    assert ft_data.build_messages(ex, system_prompt=None) == no_sys
    with_answer = ft_data.build_messages(ex, with_answer=True)
    assert with_answer[:-1] == scorer_msgs
    assert with_answer[-1] == {"role": "assistant", "content": "ABCDEFG"[answer]}
    assert ft_data.SYSTEM_PROMPT is MCQ_SYSTEM
    assert ft_data.option_letters is sc_mcq.option_letters


def test_table1_user_message_by_hand():
    # the format of table 1 of paper 002, written out independently of the code
    expected = "What is 2+2?\nOptions:\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer with only a single letter:"
    assert mcq_user_message("What is 2+2?", ("3", "4", "5", "6")) == expected
    ex = ft_data.MCQExample(" What is 2+2? ", ("3", "4", "5", "6"), 1)
    assert ft_data.format_user_prompt(ex) == expected


def test_equation1_is_one_function():
    assert sc_mcq.option_distribution is option_distribution
    assert ft_eval.option_distribution is option_distribution
    from calibkit.finetune import trainer

    assert trainer.option_distribution is option_distribution


def test_equation1_numbers_by_hand_and_scores_agree():
    z = np.array([[-1.25, -0.5, -2.0, -3.75], [3.0, 1e-3, -7.5, 0.25]])
    by_hand = np.array([[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in z])
    p = option_distribution(z)
    np.testing.assert_allclose(p, by_hand, rtol=0, atol=1e-12)
    np.testing.assert_allclose(option_distribution(z[0]), by_hand[0], rtol=0, atol=1e-12)
    # the Scores both scorers return give the same probabilities (logits vs log-probs: same)
    s = Scores(logits=z, labels=np.array([1, 0]), classes=("A", "B", "C", "D"))
    np.testing.assert_allclose(s.probs, p, rtol=0, atol=1e-12)
    shifted = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # full-vocabulary log-probs
    np.testing.assert_allclose(option_distribution(shifted), p, rtol=0, atol=1e-12)


def test_equation1_rejects_bad_input():
    with pytest.raises(ValueError, match="row 1"):
        option_distribution([[0.0, 1.0], [np.nan, 0.0]])
    with pytest.raises(ValueError, match="K >= 2"):
        option_distribution([[0.0]])


def test_finetune_report_uses_equation1(monkeypatch):
    calls = []

    def spy(z):
        calls.append(np.asarray(z).shape)
        return option_distribution(z)

    monkeypatch.setattr(ft_eval, "option_distribution", spy)
    z = np.array([[0.0, 1.0, -1.0], [2.0, 0.0, 0.5], [0.1, 0.2, 0.3]])
    s = Scores(logits=z, labels=np.array([1, 0, 2]), classes=("A", "B", "C"))
    rep = ft_eval.calibration_report(s, n_bins=2)
    assert calls == [(3, 3)]
    assert rep["accuracy"] == pytest.approx(1.0)


# ------------------------------------------------------------------ shared scorer plumbing
class _LetterBackend:
    """Fixed letter log-probabilities per question (the first line of the user message)."""

    name = "letters"
    has_chat_template = True

    def __init__(self, table):
        self.table = table

    def next_token_logprobs(self, prompts, candidates):
        return [dict(self.table[p[-1]["content"].split("\n")[0]]) for p in prompts]


def test_both_scorers_run_on_one_runner():
    from calibkit.scoring import _runner, classify

    for mod in (classify, sc_mcq):
        assert mod.run_scorer is _runner.run_scorer
        assert mod.check_record is _runner.check_record
        assert mod.backend_records is _runner.backend_records
    assert classify.ItemsFailed is _runner.ItemsFailed
    assert classify.open_cache is _runner.open_cache


def test_mcq_tampered_cache_names_the_question_and_key(tmp_path):
    import sqlite3

    table = {"Q1": {"A": -1.0, "B": -0.5}, "Q2": {"A": -0.1, "B": -2.0}}
    items = [
        {"question": "Q1", "choices": ["x", "y"], "answer": 1, "id": "q1"},
        {"question": "Q2", "choices": ["x", "y"], "answer": 0, "id": "q2"},
    ]
    path = tmp_path / "c.sqlite"
    sc = sc_mcq.MultipleChoiceScorer(_LetterBackend(table), cache=path, progress=False)
    first = sc.score(items)
    np.testing.assert_allclose(first.probs, option_distribution(first.logits), rtol=0, atol=0)
    assert sc.last_run["n_new"] == 2
    again = sc.score(items)
    assert sc.last_run["n_cached"] == 2 and again.logits.tolist() == first.logits.tolist()
    con = sqlite3.connect(path)
    (key,) = con.execute("SELECT key FROM scores ORDER BY rowid LIMIT 1").fetchone()
    con.execute("UPDATE scores SET value = ? WHERE key = ?", ('{"logits": [1, 2, 3]}', key))
    con.commit()
    con.close()
    with pytest.raises(ValueError, match=rf"question \d \(id 'q\d'\): the result from the cache "
                       rf"\(key {key}\).*--no-cache"):  # fmt: skip
        sc.score(items)


def test_one_answer_confidence():
    from calibkit.scoring import classify
    from calibkit.selection import in_task

    assert classify._score_of_answer is in_task.answer_confidence
    z = np.log(np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.1, 0.6, 0.3]]))
    s = Scores(
        logits=z,
        classes=("a", "b", "c"),
        per_item={"answer_index": np.array([1, -1, 0])},  # -1: unparsed -> argmax
    )
    got = classify.answer_confidence(s)
    np.testing.assert_allclose(got, [0.2, 0.4, 0.1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        got, in_task.answer_confidence(s.probs, np.array([1, 2, 0])), rtol=0, atol=0
    )


def test_mcq_cache_key_unchanged_by_the_refactor():
    """The key of one question, computed with the scorer as it was before issue #11's changes
    (prompt/eq. 1/runner consolidation): a resumed run must still find its cached rows."""
    cache = ScoreCache()
    items = [{"question": "Q1", "choices": ["x", "y"], "answer": 1, "id": "q1"}]
    sc_mcq.MultipleChoiceScorer(
        _LetterBackend({"Q1": {"A": -1.0, "B": -0.5}}), cache=cache, progress=False
    ).score(items)
    pre_refactor = "74a5b5885b810748d600d3c10870f355deb012f77bf8d1896c119f45640a5699"
    assert cache.get(pre_refactor) is not None
