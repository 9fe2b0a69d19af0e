"""Tests of calibkit.ensemble: votes, strategies, bins, Algorithm 1 against a brute-force
reference, Algorithm 2's lazy model calls, JSON round trip, costs, F1, edge search."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import precision_recall_fscore_support

from calibkit import Scores
from calibkit.ensemble import (
    CascadePolicy,
    ModelCost,
    answers_confidences,
    bin_indices,
    build_library,
    called_from_depth,
    majority_vote,
    most_confident,
    parse_costs,
    precision_recall_f1,
    prefix_codes,
    quantile_cut_points,
    register_strategy,
    stack_scores,
    summarize_cost,
    uniform_cut_points,
    weighted_majority_vote,
)
from calibkit.ensemble.policy import apply_tables, strategy_predictions, train_tables


# --------------------------------------------------------------------------- helpers
def random_ensemble(n: int, k: int, c: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, k, c) probabilities whose argmax agrees with y more often for later models."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    X = np.empty((n, k, c))
    for j in range(k):
        logits = rng.normal(size=(n, c))
        logits[np.arange(n), y] += 0.5 + 0.5 * j + rng.normal(size=n)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        X[:, j] = e / e.sum(axis=1, keepdims=True)
    return X, y


def hand_answer(name: str, a: list[int], s: list[float], n_classes: int) -> int:
    """Per-item reference implementation of the built-in strategies (no numpy)."""
    if name.startswith("single:"):
        return a[int(name.split(":")[1])]
    if name == "weighted_vote":
        tot = {c: 0.0 for c in range(n_classes)}
        for ak, sk in zip(a, s, strict=True):
            tot[ak] += sk
        best = max(tot.values())
        return min(c for c, v in tot.items() if v == best)
    if name == "most_confident":
        j = max(range(len(s)), key=lambda i: (s[i], -i))
        return a[j]
    if name == "majority":
        cnt = Counter(a)
        top = max(cnt.values())
        tied = [c for c in cnt if cnt[c] == top]
        w = {c: sum(sk for ak, sk in zip(a, s, strict=True) if ak == c) for c in tied}
        best = max(w.values())
        return min(c for c in tied if w[c] == best)
    raise AssertionError(name)


def hand_bin(edges: list[float], s: float) -> int:
    return sum(1 for e in edges if s >= e)


# --------------------------------------------------------------------------- votes
def test_weighted_majority_vote_by_hand():
    answers = np.array([[0, 1, 1], [0, 1, 1], [2, 2, 0], [1, 0, 2]])
    scores = np.array([[0.9, 0.5, 0.3], [0.7, 0.5, 0.3], [0.4, 0.4, 0.9], [0.6, 0.6, 0.5]])
    # row 0: class0 0.9 vs class1 0.8 -> 0; row 1: 0.7 vs 0.8 -> 1
    # row 2: class2 0.8 vs class0 0.9 -> 0; row 3: 0.6 / 0.6 / 0.5 -> tie -> lowest class 0
    np.testing.assert_array_equal(weighted_majority_vote(answers, scores, 3), [0, 1, 0, 0])
    # unweighted majority: rows 0, 1 -> 1; row 2 -> 2; row 3: three-way tie broken by summed
    # confidence (0.6, 0.6, 0.5) then lowest index -> 0
    np.testing.assert_array_equal(majority_vote(answers, 3, scores=scores), [1, 1, 2, 0])
    np.testing.assert_array_equal(most_confident(answers, scores), [0, 0, 0, 1])


def test_vote_bad_input():
    with pytest.raises(ValueError, match="scores shape"):
        weighted_majority_vote(np.zeros((3, 2), int), np.zeros((3, 3)), 2)
    with pytest.raises(ValueError, match="n_classes"):
        weighted_majority_vote(np.array([[0, 2]]), np.ones((1, 2)), 2)
    with pytest.raises(ValueError, match="integer"):
        majority_vote(np.array([[0.5, 1.0]]), 2)


def test_strategies_match_hand_reference():
    X, _ = random_ensemble(200, 4, c=3, seed=1)
    a, s = answers_confidences(X)
    libs = build_library(None, 4)
    preds = strategy_predictions(a, s, 3, libs)
    for k, lib in enumerate(libs, start=1):
        for h, st in enumerate(lib):
            ref = [
                hand_answer(st.name, a[i, :k].tolist(), s[i, :k].tolist(), 3) for i in range(200)
            ]
            np.testing.assert_array_equal(preds[k - 1][:, h], ref, err_msg=st.name)
    assert [s.name for s in libs[0]] == ["single:0"]
    assert [s.name for s in libs[1]] == [
        "single:0",
        "single:1",
        "majority",
        "weighted_vote",
        "most_confident",
    ]


def test_custom_strategy_and_unknown_name():
    register_strategy(
        "always_zero_test", lambda a, s, c: np.zeros(a.shape[0], np.int64), overwrite=True
    )
    libs = build_library(["single", "always_zero_test"], 2)
    assert [s.name for s in libs[1]][-1] == "always_zero_test"
    with pytest.raises(ValueError, match="unknown answer strategy"):
        build_library(["nope"], 2)
    with pytest.raises(ValueError, match="usable"):
        build_library(["weighted_vote"], 2)  # depth 1 has nothing


# --------------------------------------------------------------------------- bins
def test_bins_and_codes():
    s = np.array([[0.5, 0.95], [0.7, 0.6], [0.9, 0.8], [0.71, 1.0]])
    edges = [[0.7, 0.9], [0.8]]
    b = bin_indices(s, edges)
    ref = [[hand_bin(edges[k], s[i, k]) for k in range(2)] for i in range(4)]
    np.testing.assert_array_equal(b, ref)
    np.testing.assert_array_equal(prefix_codes(b, (3, 2), 2), b[:, 0] * 2 + b[:, 1])
    u = uniform_cut_points(4, 2, low=0.5)
    np.testing.assert_allclose(u[0], [0.625, 0.75, 0.875])
    q = quantile_cut_points(np.linspace(0, 1, 101)[:, None], 4)
    np.testing.assert_allclose(q[0], [0.25, 0.5, 0.75])
    with pytest.raises(ValueError, match="sorted"):
        bin_indices(s, [[0.9, 0.7], [0.8]])
    with pytest.raises(ValueError, match="2 models"):
        bin_indices(s, [[0.7]])


def test_cut_points_and_metric_edges_are_one_binning():
    """Issue #11: ensemble cut points = interior of the metrics' M+1 edges; same bins."""
    from calibkit.ensemble import cut_points_to_edges, edges_to_cut_points
    from calibkit.metrics.binning import assign_bins, quantile_edges, uniform_edges

    cuts = np.array([0.3, 0.3, 0.55, 0.9])  # a repeated cut point too
    e = cut_points_to_edges(cuts)
    np.testing.assert_array_equal(e, [0.0, 0.3, 0.3, 0.55, 0.9, 1.0])
    np.testing.assert_array_equal(edges_to_cut_points(e), cuts)
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.uniform(0, 1, 500), [0.0, 0.3, 0.55, 0.9, 1.0]])  # ties at edges
    np.testing.assert_array_equal(bin_indices(v[:, None], [cuts])[:, 0], assign_bins(v, e))
    np.testing.assert_allclose(uniform_cut_points(5, 1, low=0.0)[0], uniform_edges(5)[1:-1])
    np.testing.assert_allclose(quantile_cut_points(v[:, None], 4)[0], quantile_edges(v, 4)[1:-1])
    with pytest.raises(ValueError, match="outside"):
        cut_points_to_edges([1.5])
    with pytest.raises(ValueError, match="at least 2"):
        edges_to_cut_points([0.5])


# --------------------------------------------------------------------------- Algorithm 1
def _subtree_nodes(key: tuple[int, ...], keys_seen: set[tuple[int, ...]], K: int):
    """Seen nodes of the subtree rooted at key, parents before children."""
    out = [key]
    if len(key) < K:
        for child in sorted(k for k in keys_seen if len(k) == len(key) + 1 and k[:-1] == key):
            out += _subtree_nodes(child, keys_seen, K)
    return out


def brute_force_subtree(key, items, keys, a, s, y, libs, K, n_classes, lam, cum):
    """Max penalised reward over every strategy/GoDeeper assignment to the seen nodes of the
    subtree at `key`, evaluated item by item, and the fewest model calls among the maximisers."""
    seen = {kk[:d] for i in items for kk in [keys[i]] for d in range(1, K + 1)}
    nodes = _subtree_nodes(key, seen, K)
    options = [
        [st.name for st in libs[len(nd) - 1]] + (["go_deeper"] if len(nd) < K else [])
        for nd in nodes
    ]
    best, best_calls = -np.inf, np.inf
    for choice in itertools.product(*options):
        pol = dict(zip(nodes, choice, strict=True))
        total, calls = 0.0, 0
        for i in items:
            d = len(key)
            while pol[keys[i][:d]] == "go_deeper":
                d += 1
            name = pol[keys[i][:d]]
            hit = hand_answer(name, a[i, :d].tolist(), s[i, :d].tolist(), n_classes) == y[i]
            total += hit - lam * cum[i, d - 1]
            calls += d
        if total > best + 1e-9 or (abs(total - best) <= 1e-9 and calls < best_calls):
            best, best_calls = total, calls
    return best, best_calls


@pytest.mark.parametrize(
    ("K", "n_bins", "strategies", "lam", "seed"),
    [
        (2, (3, 3), ("single", "weighted_vote"), 0.0, 0),
        (2, (3, 2), ("single", "majority", "most_confident"), 0.0, 1),
        (3, (2, 2, 2), ("single",), 0.0, 2),
        (3, (2, 2, 2), ("single", "weighted_vote"), 0.0, 3),
        (3, (2, 2, 2), ("single", "weighted_vote"), 0.05, 4),
        (2, (3, 3), ("single", "weighted_vote"), 0.2, 5),
    ],
)
def test_algorithm1_matches_brute_force(K, n_bins, strategies, lam, seed):
    n = 30
    X, y = random_ensemble(n, K, c=2, seed=seed)
    a, s = answers_confidences(X)
    edges = [np.sort(np.random.default_rng(seed + 100).uniform(0.55, 0.95, b - 1)) for b in n_bins]
    costs = np.array([1.0, 2.5, 6.0][:K])
    pol = CascadePolicy(edges=edges, strategies=strategies, costs=costs, cost_penalty=lam).fit(X, y)
    libs = build_library(strategies, K)
    keys = [tuple(hand_bin(list(edges[k]), s[i, k]) for k in range(K)) for i in range(n)]
    cum = np.cumsum(np.broadcast_to(costs / costs.min(), (n, K)), axis=1)
    t = pol.tables_
    total_calls = 0
    # every seen partition's m_k equals the best achievable reward in its subtree
    for depth in range(K, 0, -1):
        for key in sorted({kk[:depth] for kk in keys}):
            items = [i for i in range(n) if keys[i][:depth] == key]
            g = 0
            for j, b in enumerate(key):
                g = g * n_bins[j] + b
            best, calls = brute_force_subtree(key, items, keys, a, s, y, libs, K, 2, lam, cum)
            assert t.reward[depth - 1][g] == pytest.approx(best, abs=1e-9), (key, depth)
            if depth == 1:
                total_calls += calls
    # the whole policy: best training reward, and the fewest calls among the best policies
    res = pol.cascade(X)
    hits = (res.predictions == y).astype(float)
    achieved = float(np.sum(hits - lam * cum[np.arange(n), res.depth - 1]))
    assert achieved == pytest.approx(pol.training_reward_, abs=1e-9)
    assert int(res.depth.sum()) == total_calls


def test_algorithm1_goes_deeper_only_when_strictly_better():
    # model 0 is always right: nothing can beat it, so the policy must never go deeper
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    p0 = np.where(y == 1, 0.8, 0.2)
    p1 = rng.uniform(size=100)
    pol = CascadePolicy(n_bins=3).fit(np.stack([p0, p1], axis=1), y)
    res = pol.cascade(np.stack([p0, p1], axis=1))
    assert np.all(res.depth == 1)
    assert pol.training_reward_ == 100
    # model 0 always wrong, model 1 always right: every item must reach model 1
    p0 = 1 - p0
    p1 = np.where(y == 1, 0.9, 0.1)
    X = np.stack([p0, p1], axis=1)
    pol = CascadePolicy(n_bins=3).fit(X, y)
    res = pol.cascade(X)
    assert np.all(res.depth == 2) and np.all(res.predictions == y)


# --------------------------------------------------------------------------- Algorithm 2
def test_algorithm2_calls_only_needed_models():
    X, y = random_ensemble(300, 3, c=2, seed=7)
    pol = CascadePolicy(n_bins=4).fit(X[:200], y[:200])
    Xt = X[200:]
    calls = np.zeros((100, 3), dtype=int)
    n_invocations = [0, 0, 0]

    def make(k):
        def fn(idx):
            n_invocations[k] += 1
            calls[idx, k] += 1
            return Xt[idx, k, :]

        return fn

    res = pol.predict_lazy([make(k) for k in range(3)], 100)
    # each model invoked at most once (batched), each item at most once per model
    assert max(n_invocations) <= 1 and calls.max() <= 1
    # model k ran exactly on items that went deeper than k, and those are exactly the items the
    # JSON lookup table sends deeper (walked by hand, item by item)
    np.testing.assert_array_equal(calls.astype(bool), res.called)
    table = json.loads(json.dumps(pol.to_dict()))
    edges = table["edges"]
    for i in range(100):
        a = [int(np.argmax(Xt[i, k])) for k in range(3)]
        s = [float(np.max(Xt[i, k])) for k in range(3)]
        key: list[int] = []
        d = 0
        while True:
            key.append(hand_bin(edges[d], s[d]))
            d += 1
            row = table["table"].get("/".join(map(str, key)))
            if row is None:  # unseen key: parent's fallback
                parent = table["table"].get("/".join(map(str, key[:-1])))
                name = parent["fallback"] if parent else table["root_fallback"]
                break
            if row["decision"] != "go_deeper":
                name = row["decision"]
                break
        assert res.depth[i] == d, i
        assert calls[i].sum() == d and calls[i, :d].all()
        assert res.strategy[i] == name
        assert res.predictions[i] == hand_answer(name, a[:d], s[:d], 2)


def test_fast_path_equals_estimator_with_unseen_keys():
    X, y = random_ensemble(400, 3, c=3, seed=11)
    pol = CascadePolicy(n_bins=6).fit(X[:60], y[:60])  # few items: many unseen keys
    a, s = answers_confidences(X[60:])
    bins = bin_indices(s, pol.edges_)
    preds = strategy_predictions(a, s, 3, pol.library_)
    pred, depth, strat = apply_tables(pol.tables_, bins, preds)
    res = pol.cascade(X[60:])
    np.testing.assert_array_equal(pred, res.predictions)
    np.testing.assert_array_equal(depth, res.depth)
    names = [pol.library_[d - 1][h].name for d, h in zip(depth, strat, strict=True)]
    assert names == res.strategy.tolist()
    assert np.any(pol.tables_.decision[2] == -2)  # the test really exercises unseen keys


def test_lazy_rejects_bad_model_output():
    X, y = random_ensemble(50, 2, seed=0)
    pol = CascadePolicy(n_bins=2).fit(X, y)
    with pytest.raises(ValueError, match="rows"):
        pol.predict_lazy([lambda idx: X[:3, 0], lambda idx: X[idx, 1]], 50)
    with pytest.raises(ValueError, match="callables"):
        pol.predict_lazy([lambda idx: X[idx, 0]], 50)


# --------------------------------------------------------------------------- estimator / JSON
def test_json_round_trip(tmp_path):
    X, y = random_ensemble(300, 3, seed=3)
    pol = CascadePolicy(
        n_bins=(3, 4, 2), costs=[1.0, 2.0, 5.0], cost_penalty=0.01, model_names=["a", "b", "c"]
    ).fit(X, y)
    path = pol.save(tmp_path / "policy.json")
    text = path.read_text()
    d = json.loads(text)
    assert d["models"] == ["a", "b", "c"]
    assert d["table"]
    assert all(set(k) <= set("0123456789/") for k in d["table"])
    loaded = CascadePolicy.load(path)
    np.testing.assert_array_equal(loaded.predict(X), pol.predict(X))
    assert loaded.table() == pol.table()
    assert loaded.training_reward_ == pytest.approx(pol.training_reward_)
    assert "go_deeper" in text or "single:0" in text
    assert pol.describe().startswith("a bins:")
    bad = dict(d, format="nope")
    with pytest.raises(ValueError, match="not a calibkit cascade policy"):
        CascadePolicy.from_dict(bad)
    d2 = json.loads(text)
    key = next(iter(d2["table"]))
    d2["table"][key]["decision"] = "no_such_strategy"
    with pytest.raises(ValueError, match=r"unknown answer strategy|not in the depth"):
        CascadePolicy.from_dict(d2)


def test_estimator_contract_and_errors():
    X, y = random_ensemble(100, 2, seed=0)
    pol = CascadePolicy(n_bins=3, strategies=["single", "weighted_vote"])
    assert clone(pol).get_params() == pol.get_params()
    with pytest.raises(Exception, match="not fitted"):
        pol.predict(X)
    assert pol.fit(X, y) is pol
    assert 0.0 <= pol.score(X, y) <= 1.0
    with pytest.raises(ValueError, match="sum"):
        pol.fit(X * 0.5, y)
    with pytest.raises(ValueError, match="classes"):
        pol.fit(X, y + 5)
    with pytest.raises(ValueError, match="needs costs"):
        CascadePolicy(cost_penalty=0.1).fit(X, y)
    with pytest.raises(ValueError, match="shape"):
        pol.fit(X[:, :, 0][:, :, None, None], y)
    with pytest.raises(ValueError, match="fitted on"):
        pol.predict(np.concatenate([X, X], axis=1))


def test_binary_2d_input_equals_3d():
    X, y = random_ensemble(200, 3, c=2, seed=5)
    a = CascadePolicy(n_bins=4).fit(X, y).predict(X)
    b = CascadePolicy(n_bins=4).fit(X[:, :, 1], y).predict(X[:, :, 1])
    np.testing.assert_array_equal(a, b)


def test_stack_scores_aligns_by_id():
    rng = np.random.default_rng(0)
    ids = np.array(["a", "b", "c", "d"])
    z = rng.normal(size=(4, 2))
    s0 = Scores(z, labels=[0, 1, 1, 0], classes=("neg", "pos"), ids=ids, meta={"model": "m0"})
    perm = np.array([2, 0, 3, 1])
    s1 = Scores(
        2 * z[perm], labels=np.array([0, 1, 1, 0])[perm], classes=("neg", "pos"), ids=ids[perm]
    )
    st = stack_scores([s0, s1])
    np.testing.assert_allclose(st.probs[:, 1, :], s1.probs[np.argsort(perm)])
    assert st.names == ("m0", "model_1")
    np.testing.assert_array_equal(st.labels, [0, 1, 1, 0])
    with pytest.raises(ValueError, match="lacks 1"):
        stack_scores([s0, s1.subset([0, 1, 2])])
    bad = Scores(z, labels=[1, 1, 1, 0], classes=("neg", "pos"), ids=ids)
    with pytest.raises(ValueError, match="disagree"):
        stack_scores([s0, bad])
    other = Scores(z, classes=("x", "y"), ids=ids)
    with pytest.raises(ValueError, match="classes"):
        stack_scores([s0, other])


# --------------------------------------------------------------------------- costs and F1
def test_costs_by_hand(tmp_path):
    depth = np.array([1, 2, 3, 1])
    called = called_from_depth(depth, 3)
    cs = summarize_cost(called, [1.0, 3.0, 10.0])
    assert cs.total == pytest.approx(1 * 4 + 3 * 2 + 10 * 1)
    assert cs.per_item == pytest.approx(20 / 4)
    assert cs.relative == pytest.approx(5.0)
    np.testing.assert_array_equal(cs.calls, [4, 2, 1])
    np.testing.assert_allclose(cs.share_of_items, [1.0, 0.5, 0.25])
    np.testing.assert_allclose(cs.share_of_calls, [4 / 7, 2 / 7, 1 / 7])
    mc = ModelCost("x", per_call=0.5, per_input_token=0.01, per_output_token=0.1)
    np.testing.assert_allclose(mc.item_costs(2, [100, 200], [1, 2]), [0.5 + 1 + 0.1, 0.5 + 2 + 0.2])
    with pytest.raises(ValueError, match="input_tokens"):
        mc.item_costs(2)
    assert [c.per_call for c in parse_costs("1, 2.5,10")] == [1.0, 2.5, 10.0]
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"b": {"per_call": 2}, "a": 1}))
    assert [c.per_call for c in parse_costs(f, names=["a", "b"])] == [1.0, 2.0]
    with pytest.raises(ValueError, match="lack"):
        parse_costs(f, names=["a", "z"])
    with pytest.raises(ValueError, match=">= 0"):
        parse_costs([1, -2])


@pytest.mark.parametrize("seed", range(5))
def test_prf_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    c = 2 + seed % 3
    y = rng.integers(0, c, 50)
    p = rng.integers(0, c, 50)
    if seed == 0:
        p[:] = 0  # no positive predictions: precision 0 by convention
    for avg in ("binary", "macro") if c == 2 else ("macro",):
        ours = precision_recall_f1(y, p, c, average=avg)
        ref = precision_recall_fscore_support(
            y, p, average=avg, labels=None if avg == "binary" else list(range(c)), zero_division=0
        )
        assert ours.precision == pytest.approx(ref[0])
        assert ours.recall == pytest.approx(ref[1])
        assert ours.f1 == pytest.approx(ref[2])
    assert precision_recall_f1(y, p, c, average="micro").f1 == pytest.approx(np.mean(y == p))


# --------------------------------------------------------------------------- train_tables input checks
def test_train_tables_rejects_too_many_cells():
    bins = np.zeros((4, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="too many"):
        train_tables(bins, (1000, 1000, 1000), [np.zeros((4, 1))] * 3)
