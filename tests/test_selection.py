"""calibkit.selection: in-task samplers (U, SE, IE), surrogate error, OOT pooling, clustering."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from calibkit import Scores, softmax
from calibkit.selection import (
    OutOfTaskCalibrator,
    all_oot_sources,
    answer_confidence,
    cluster_tasks,
    error_strata,
    importance_by_error_sample,
    inclusion_probabilities,
    nearest_tasks,
    sample_calibration_set,
    sim_oot_sources,
    stratified_by_error_sample,
    surrogate_error,
    top_label_form,
    uniform_sample,
)

SAMPLERS = [uniform_sample, stratified_by_error_sample, importance_by_error_sample]


def skewed_errors(n: int = 200, seed: int = 0) -> np.ndarray:
    """Surrogate errors as they look on real tasks: most small, a long tail."""
    return np.random.default_rng(seed).exponential(0.05, size=n)


# --------------------------------------------------------------------------- shared contract
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("budget", [0, 1, 10, 50, 199])
def test_budget_respected_unique_sorted(sampler, budget):
    e = skewed_errors()
    idx = sampler(e, budget, seed=3)
    assert idx.dtype == np.int64
    assert len(idx) == budget
    assert len(np.unique(idx)) == budget
    assert np.all(np.diff(idx) > 0)
    assert idx.size == 0 or (idx.min() >= 0 and idx.max() < len(e))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_budget_at_least_n_returns_everything(sampler):
    e = skewed_errors(30)
    np.testing.assert_array_equal(sampler(e, 30, seed=0), np.arange(30))
    np.testing.assert_array_equal(sampler(e, 500, seed=0), np.arange(30))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_reproducible_with_seed(sampler):
    e = skewed_errors()
    a = sampler(e, 20, seed=11)
    np.testing.assert_array_equal(a, sampler(e, 20, seed=11))
    np.testing.assert_array_equal(a, sampler(e, 20, seed=np.random.default_rng(11)))
    others = [sampler(e, 20, seed=s) for s in range(12, 20)]
    assert any(not np.array_equal(a, o) for o in others)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_bad_input_raises(sampler):
    e = skewed_errors(20)
    with pytest.raises(ValueError, match="budget"):
        sampler(e, -1, seed=0)
    with pytest.raises(ValueError, match="budget"):
        sampler(e, 2.5, seed=0)
    with pytest.raises(ValueError, match="seed"):
        sampler(e, 2, seed="x")
    if sampler is not uniform_sample:
        with pytest.raises(ValueError, match="NaN"):
            sampler(np.r_[e, np.nan], 2, seed=0)
        with pytest.raises(ValueError, match=">= 0"):
            sampler(np.r_[e, -0.1], 2, seed=0)
        with pytest.raises(ValueError, match="1-D"):
            sampler(e.reshape(4, 5), 2, seed=0)
        with pytest.raises(ValueError, match="empty"):
            sampler(np.array([]), 2, seed=0)


def test_uniform_accepts_pool_size_and_is_uniform():
    counts = np.zeros(10)
    for s in range(3000):
        counts[uniform_sample(10, 3, seed=s)] += 1
    # every item's inclusion probability is 3/10
    np.testing.assert_allclose(counts / 3000, 0.3, atol=0.035)


def test_dispatcher():
    e = skewed_errors()
    np.testing.assert_array_equal(
        sample_calibration_set("ie", e, 15, seed=2), importance_by_error_sample(e, 15, seed=2)
    )
    np.testing.assert_array_equal(
        sample_calibration_set("SE", e, 15, seed=2, n_strata=3),
        stratified_by_error_sample(e, 15, seed=2, n_strata=3),
    )
    with pytest.raises(ValueError, match="unknown strategy"):
        sample_calibration_set("XX", e, 5, seed=0)


# --------------------------------------------------------------------------- surrogate error
def test_surrogate_error_reads_the_llm_answer_column():
    unc = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]])
    # a vector-scaling calibrator may flip the argmax of row 2: we still read the LLM's answer
    cal = np.array([[0.7, 0.3], [0.4, 0.6], [0.55, 0.45]])
    np.testing.assert_allclose(surrogate_error(unc, cal), [0.2, 0.1, 0.35])
    # 1-D form: the answer scores themselves
    np.testing.assert_allclose(surrogate_error([0.9, 0.7], [0.7, 0.75]), [0.2, 0.05])
    np.testing.assert_allclose(answer_confidence(cal), [0.7, 0.6, 0.55])
    np.testing.assert_allclose(answer_confidence(cal, np.array([1, 1, 1])), [0.3, 0.6, 0.45])


def test_surrogate_error_validates():
    with pytest.raises(ValueError, match="same shape"):
        surrogate_error(np.full((3, 2), 0.5), np.full((3, 3), 1 / 3))
    with pytest.raises(ValueError, match="sum to 1"):
        surrogate_error(np.array([[0.7, 0.7]]), np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        surrogate_error([1.5], [0.5])
    with pytest.raises(ValueError, match="answer"):
        answer_confidence(np.full((2, 2), 0.5), np.array([0, 2]))


# --------------------------------------------------------------------------- SE
def test_error_strata_by_hand():
    e = np.array([0.0, 0.1, 0.19, 0.25, 0.5, 0.99, 1.0])
    # equal-width edges 0.25, 0.5, 0.75 on [0, 1]; the empty [0.75, 1.0) stratum merges away
    np.testing.assert_array_equal(error_strata(e, 4, strata="uniform"), [0, 0, 0, 1, 2, 3, 3])
    q = np.arange(12, dtype=float)
    np.testing.assert_array_equal(
        error_strata(q, 3, strata="quantile"), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    )
    assert np.all(error_strata(np.zeros(5), 4) == 0)
    with pytest.raises(ValueError, match="strata"):
        error_strata(q, 3, strata="nope")
    with pytest.raises(ValueError, match="n_strata"):
        error_strata(q, 0)


@pytest.mark.parametrize("strata", ["uniform", "quantile"])
@pytest.mark.parametrize("budget", [5, 7, 20, 60])
def test_se_covers_every_stratum(strata, budget):
    e = skewed_errors(300, seed=5)
    ids = error_strata(e, 5, strata=strata)
    n_strata = ids.max() + 1
    for seed in range(10):
        idx = stratified_by_error_sample(e, budget, seed=seed, n_strata=5, strata=strata)
        got = np.bincount(ids[idx], minlength=n_strata)
        assert np.all(got >= 1), got
        # equal allocation: as even as the stratum sizes allow
        sizes = np.bincount(ids)
        open_ = got < sizes
        if open_.sum() > 1:
            assert got[open_].max() - got[open_].min() <= 1


def test_se_oversamples_the_high_error_tail_vs_uniform():
    e = skewed_errors(1000, seed=1)
    top = e > np.quantile(e, 0.9)
    se = np.mean([top[stratified_by_error_sample(e, 50, seed=s)].mean() for s in range(50)])
    u = np.mean([top[uniform_sample(e, 50, seed=s)].mean() for s in range(50)])
    assert u == pytest.approx(0.1, abs=0.03)
    assert se > 2 * u


def test_se_small_stratum_taken_whole_and_surplus_redistributed():
    e = np.r_[np.zeros(40), np.full(2, 1.0)]  # strata of size 40 and 2
    idx = stratified_by_error_sample(e, 20, seed=0, n_strata=2)
    assert {40, 41} <= set(idx.tolist())
    assert len(idx) == 20


def test_se_proportional_allocation_matches_sizes():
    e = np.r_[np.zeros(60), np.full(30, 0.5), np.full(10, 1.0)]
    idx = stratified_by_error_sample(e, 20, seed=0, n_strata=3, allocation="proportional")
    ids = error_strata(e, 3)
    np.testing.assert_array_equal(np.bincount(ids[idx]), [12, 6, 2])
    with pytest.raises(ValueError, match="allocation"):
        stratified_by_error_sample(e, 20, seed=0, allocation="x")


def test_se_zero_errors_is_a_single_stratum():
    idx = stratified_by_error_sample(np.zeros(50), 10, seed=0)
    assert len(np.unique(idx)) == 10


# --------------------------------------------------------------------------- IE
def test_inclusion_probabilities_by_hand():
    # c = 2/8 gives 4 * 0.25 = 1 -> item 3 is certain; the other three share the last slot
    np.testing.assert_allclose(inclusion_probabilities([1, 1, 2, 4], 2), [0.25, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(inclusion_probabilities([1, 2, 3, 4], 1), [0.1, 0.2, 0.3, 0.4])
    # fewer positive errors than the budget: all taken, rest spread over the zeros
    np.testing.assert_allclose(
        inclusion_probabilities([0, 0, 3, 0, 5], 3), [1 / 3, 1 / 3, 1, 1 / 3, 1]
    )
    np.testing.assert_allclose(inclusion_probabilities([0, 0, 0], 1), [1 / 3] * 3)
    np.testing.assert_allclose(inclusion_probabilities([1, 2], 5), [1, 1])
    np.testing.assert_allclose(inclusion_probabilities([1, 2], 0), [0, 0])


def test_inclusion_probabilities_proportional_and_sum_to_budget():
    e = skewed_errors(500, seed=2)
    for b in (5, 50, 200):
        pi = inclusion_probabilities(e, b)
        assert pi.sum() == pytest.approx(b)
        assert np.all((pi >= 0) & (pi <= 1))
        free = pi < 1
        ratio = pi[free] / e[free]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
        assert np.all(e[~free] >= e[free].max())


def test_ie_inclusion_frequencies_match_probabilities():
    e = np.array([0.0, 0.01, 0.02, 0.05, 0.05, 0.1, 0.2, 0.3, 0.5, 0.9, 0.02, 0.04])
    b, reps = 4, 4000
    pi = inclusion_probabilities(e, b)
    counts = np.zeros(len(e))
    for s in range(reps):
        counts[importance_by_error_sample(e, b, seed=s)] += 1
    freq = counts / reps
    tol = 4 * np.sqrt(pi * (1 - pi) / reps) + 1e-9
    assert np.all(np.abs(freq - pi) <= tol), (freq, pi)
    assert counts[0] == 0  # zero error: never picked while positive errors fill the budget


def test_ie_zero_errors_and_floor():
    e = np.r_[np.zeros(8), [0.5, 0.2]]
    idx = importance_by_error_sample(e, 5, seed=0)
    assert {8, 9} <= set(idx.tolist()) and len(idx) == 5
    assert len(importance_by_error_sample(np.zeros(10), 4, seed=0)) == 4
    counts = np.zeros(10)
    for s in range(500):
        counts[importance_by_error_sample(e, 1, seed=s, floor=0.1)] += 1
    assert counts[:8].sum() > 0
    with pytest.raises(ValueError, match="floor"):
        importance_by_error_sample(e, 1, seed=0, floor=-1.0)


# --------------------------------------------------------------------------- clustering
def _three_groups(seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.eye(3, 16) * 5
    names, rows = [], []
    for g, c in enumerate(centers):
        for j in range(4):
            names.append(f"g{g}_{j}")
            rows.append(c + rng.normal(0, 0.3, 16))
    return names, np.array(rows)


def test_cluster_tasks_finds_groups_and_nearest():
    _, emb = _three_groups()
    labels = cluster_tasks(emb)
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(cluster_tasks(emb, 3, method="kmeans"), labels)
    assert np.all(cluster_tasks(emb, 1) == 0)
    near = nearest_tasks(emb, 5, k=3)
    assert set(near.tolist()) == {4, 6, 7}
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_tasks(emb, 99)
    with pytest.raises(ValueError, match="zeros"):
        cluster_tasks(np.zeros((3, 4)))


def test_all_and_sim_oot_sources():
    names, emb = _three_groups()
    assert all_oot_sources("g1_0", names) == [n for n in names if n != "g1_0"]
    sim = sim_oot_sources("g1_0", names, emb)
    assert sorted(sim) == ["g1_1", "g1_2", "g1_3"]
    # sorted by similarity: the first is the true nearest
    assert sim[0] == names[nearest_tasks(emb, names.index("g1_0"), 1)[0]]
    # a singleton cluster falls back to the nearest tasks
    labels = np.arange(len(names))
    got = sim_oot_sources("g2_0", names, emb, labels=labels, min_sources=2)
    assert set(got) <= {"g2_1", "g2_2", "g2_3"} and len(got) == 2
    with pytest.raises(ValueError, match="not among"):
        sim_oot_sources("zzz", names, emb)
    with pytest.raises(ValueError, match="embeddings"):
        sim_oot_sources("g1_0", names, emb[:3])


# --------------------------------------------------------------------------- out-of-task fit
def _task(n: int, k: int, temp: float, seed: int, classes=None) -> Scores:
    """Scores whose true probabilities are softmax(z / temp) (an over/under-confident labeler)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, size=(n, k))
    p = softmax(z / temp, axis=1)
    y = np.array([rng.choice(k, p=row) for row in p])
    return Scores(logits=z, labels=y, classes=classes or tuple(f"c{j}" for j in range(k)))


def _nll_temperature(z: np.ndarray, y: np.ndarray) -> float:
    def loss(log_t: float) -> float:
        lp = np.log(softmax(z / np.exp(log_t), axis=1))
        return -float(np.mean(lp[np.arange(len(y)), y]))

    return float(np.exp(minimize_scalar(loss, bounds=(-5, 5), method="bounded").x))


def test_oot_classes_form_pools_same_k_and_matches_reference():
    from calibkit.calibrators.temperature import TemperatureScaling

    src = {"a": _task(400, 2, 2.0, 0), "b": _task(300, 2, 2.0, 1), "c": _task(300, 3, 0.5, 2)}
    oot = OutOfTaskCalibrator(TemperatureScaling()).fit(src, n_classes=2)
    assert oot.form_ == "classes" and oot.sources_ == ["a", "b"] and oot.n_items_ == 700
    z = np.concatenate([src["a"].logits, src["b"].logits])
    y = np.concatenate([src["a"].labels, src["b"].labels])
    t_ref = _nll_temperature(z, y)
    assert oot.calibrator_.temperature_ == pytest.approx(t_ref, rel=1e-3)
    target = _task(50, 2, 2.0, 9).logits
    expect = softmax(target / t_ref, axis=1)
    np.testing.assert_allclose(oot.predict_proba(target), expect, rtol=1e-3)
    np.testing.assert_allclose(oot.answer_confidence(target), expect.max(axis=1), rtol=1e-3)


def test_oot_top_label_form_across_k_matches_reference():
    from calibkit.calibrators.temperature import TemperatureScaling

    src = {"k3": _task(500, 3, 0.5, 3), "k4": _task(500, 4, 0.5, 4)}
    oot = OutOfTaskCalibrator(TemperatureScaling(), form="auto").fit(src, n_classes=2)
    assert oot.form_ == "top_label" and oot.n_classes_ is None
    feats, hits = zip(*(top_label_form(s.logits, s.labels) for s in src.values()), strict=True)
    f, h = np.concatenate(feats), np.concatenate(hits)
    s = np.exp(f[:, 1])

    # independent fit of P(hit) = s^b / (s^b + (1-s)^b)
    def loss(b: float) -> float:
        q = np.clip(s**b / (s**b + (1 - s) ** b), 1e-12, 1 - 1e-12)
        return -float(np.mean(h * np.log(q) + (1 - h) * np.log1p(-q)))

    b_ref = minimize_scalar(loss, bounds=(0.01, 20), method="bounded").x
    assert 1 / oot.calibrator_.temperature_ == pytest.approx(b_ref, rel=1e-3)
    target = _task(40, 2, 1.0, 5).logits
    st = softmax(target, axis=1).max(axis=1)
    np.testing.assert_allclose(
        oot.answer_confidence(target), st**b_ref / (st**b_ref + (1 - st) ** b_ref), rtol=1e-3
    )
    with pytest.raises(ValueError, match="top_label"):
        oot.predict_proba(target)


def test_oot_validation():
    from calibkit.calibrators.temperature import TemperatureScaling

    lab = _task(50, 2, 1.0, 0)
    unl = Scores(logits=lab.logits)
    with pytest.raises(ValueError, match="unlabeled"):
        OutOfTaskCalibrator(TemperatureScaling()).fit({"u": unl}, n_classes=2)
    with pytest.raises(ValueError, match="empty"):
        OutOfTaskCalibrator(TemperatureScaling()).fit({}, n_classes=2)
    with pytest.raises(ValueError, match="no source task has 3"):
        OutOfTaskCalibrator(TemperatureScaling(), form="classes").fit({"a": lab}, n_classes=3)
    with pytest.raises(ValueError, match="n_classes"):
        OutOfTaskCalibrator(TemperatureScaling()).fit({"a": lab})
    with pytest.raises(ValueError, match="not fitted"):
        OutOfTaskCalibrator(TemperatureScaling()).answer_confidence(lab.logits)
    with pytest.raises(ValueError, match="form"):
        OutOfTaskCalibrator(TemperatureScaling(), form="x").fit({"a": lab}, n_classes=2)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- real embeddings
@pytest.mark.slow
def test_sim_oot_picks_semantically_nearest_tasks_with_minilm():
    from calibkit.selection import SentenceEmbedder, task_embedding

    tasks = {
        "movie_sentiment": (
            [
                "a gripping, beautifully acted film",
                "the plot drags and the jokes fall flat",
                "one of the best movies of the year",
                "a tedious, overlong mess of a movie",
            ],
            "Is the sentiment of this movie review positive? no / yes",
        ),
        "product_sentiment": (
            [
                "the battery life of this phone is fantastic",
                "the camera broke after two days",
                "great sound quality for the price",
                "the charger stopped working, very disappointed",
            ],
            "Is this product review positive? no / yes",
        ),
        "card_arrival": (
            [
                "my new card still has not arrived",
                "when will my card be delivered?",
                "I ordered a card two weeks ago and it's not here",
                "how long does card delivery take",
            ],
            "Is the customer asking about a card that has not arrived? no / yes",
        ),
        "lost_card": (
            [
                "I lost my card yesterday",
                "someone stole my wallet with my bank card",
                "please freeze my card, it was stolen",
                "I can't find my card anywhere",
            ],
            "Is the customer reporting a lost or stolen card? no / yes",
        ),
        "question_number": (
            [
                "How many people live in Tokyo ?",
                "When was the Eiffel Tower built ?",
                "How tall is Mount Everest ?",
                "What year did World War II end ?",
            ],
            "Does this question ask for a number or a date? no / yes",
        ),
        "question_place": (
            [
                "Where is the Louvre ?",
                "What country is Lima the capital of ?",
                "Where was Mozart born ?",
                "Which city hosts the Golden Gate Bridge ?",
            ],
            "Does this question ask about a place? no / yes",
        ),
    }
    embedder = SentenceEmbedder()
    names = list(tasks)
    emb = np.stack([task_embedding(t, d, embedder=embedder) for t, d in tasks.values()])
    pairs = {
        "movie_sentiment": "product_sentiment",
        "product_sentiment": "movie_sentiment",
        "card_arrival": "lost_card",
        "lost_card": "card_arrival",
        "question_number": "question_place",
        "question_place": "question_number",
    }
    for i, name in enumerate(names):
        assert names[nearest_tasks(emb, i, 1)[0]] == pairs[name]
        assert sim_oot_sources(name, names, emb, n_clusters=3) == [pairs[name]]
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0)
