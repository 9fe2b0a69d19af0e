"""calibkit.finetune: rank-preserving targets, EM regulariser, losses, masking, trainer resume.

Fast tests: a randomly initialised two-layer Llama with a character-level tokenizer that has a
ChatML chat template (both built offline in a few milliseconds).
"""

from __future__ import annotations

import math
import string

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from calibkit.finetune.data import (  # noqa: E402
    SYSTEM_PROMPT,
    MCQExample,
    build_messages,
    collate,
    encode_examples,
    encode_mcq,
    make_labels,
    option_token_ids,
)
from calibkit.finetune.em import (  # noqa: E402
    BinAccuracy,
    EMRegularizer,
    bin_accuracy,
    bin_index,
    ece_regularizer,
)
from calibkit.finetune.losses import (  # noqa: E402
    Objective,
    label_smoothing_lm_loss,
    lm_loss,
    option_logits_at_answer,
)
from calibkit.finetune.targets import rank_preserving_targets  # noqa: E402

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# ---------------------------------------------------------------------------------- fixtures
def _tiny_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(string.printable)))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
    )
    tok.chat_template = CHATML
    return tok


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The tensors here are tiny: one intra-op thread avoids OpenMP spin-waits on a busy CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tok():
    return _tiny_tokenizer()


def _tiny_model(tok, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()


def _toy_questions(n: int, seed: int = 0) -> list[MCQExample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a, b = (int(v) for v in rng.integers(0, 9, 2))
        right = a + b
        choices = [str(right + d) for d in (0, 1, 2, 3)]
        perm = rng.permutation(4)
        choices = [choices[j] for j in perm]
        out.append(MCQExample(f"{a}+{b}=?", tuple(choices), int(np.argmax(perm == 0)), id=f"q{i}"))
    return out


def _reference_mapping_k4(p_sorted_rest: np.ndarray, acc: float) -> np.ndarray:
    """The paper's code (K = 4), written out independently: gamma = ln 3 / (p2 (1 - acc)),
    alpha = beta = (1 - acc) / (T + 3), q_j = alpha tanh(gamma p_j) + beta."""
    if acc == 1.0:
        return np.zeros_like(p_sorted_rest)
    gamma = math.log(3) / (p_sorted_rest[0] * (1 - acc))
    t = np.tanh(gamma * p_sorted_rest)
    alpha = (1 - acc) / (t.sum() + 3)
    return alpha * t + alpha


# ---------------------------------------------------------------------------------- targets
def test_targets_match_paper_formula_for_four_options():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.dirichlet(np.ones(4) * 0.7)
        acc = float(rng.uniform(0.0, 0.99))
        q = rank_preserving_targets(p[None], acc, preserve_top=False)[0]
        top = int(np.argmax(p))
        rest = [j for j in range(4) if j != top]
        order = sorted(rest, key=lambda j: -p[j])
        ref = _reference_mapping_k4(p[order], acc)
        assert q[top] == pytest.approx(acc)
        np.testing.assert_allclose(q[order], ref, rtol=1e-12, atol=1e-15)


@settings(max_examples=200, deadline=None)
@given(
    k=st.integers(2, 9),
    seed=st.integers(0, 10_000),
    acc=st.floats(0.0, 1.0),
    conc=st.floats(0.05, 5.0),
)
def test_targets_properties(k, seed, acc, conc):
    p = np.random.default_rng(seed).dirichlet(np.ones(k) * conc, size=3)
    p = np.clip(p, 0, None)
    p /= p.sum(axis=1, keepdims=True)
    for preserve in (True, False):
        q = rank_preserving_targets(p, acc, preserve_top=preserve)
        a = max(acc, 1.0 / k) if preserve else acc
        np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-12)
        assert np.all(q >= -1e-15)
        for pi, qi in zip(p, q, strict=True):
            top = int(np.argmax(pi))
            rest = np.array([j for j in range(k) if j != top])
            assert qi[top] == pytest.approx(a, abs=1e-12)
            assert qi[rest].sum() == pytest.approx(1.0 - a, abs=1e-12)
            # order among the non-top options is preserved (weakly: tanh may saturate)
            for i in rest:
                for j in rest:
                    if pi[i] > pi[j]:
                        assert qi[i] >= qi[j] - 1e-12
            if preserve:
                assert qi[top] >= qi[rest].max() - 1e-12


def test_targets_strict_order_when_not_saturated():
    p = np.array([[0.5, 0.25, 0.15, 0.1]])
    q = rank_preserving_targets(p, 0.6)[0]
    assert q[0] == pytest.approx(0.6)
    assert q[1] > q[2] > q[3] > 0


def test_targets_at_full_accuracy_are_one_hot():
    p = np.array([[0.1, 0.6, 0.2, 0.1], [0.25, 0.25, 0.3, 0.2]])
    np.testing.assert_array_equal(rank_preserving_targets(p, 1.0), [[0, 1, 0, 0], [0, 0, 1, 0]])


def test_targets_high_accuracy_compresses_non_top_together():
    p = np.array([[0.4, 0.3, 0.2, 0.1]])
    q_mid = rank_preserving_targets(p, 0.5)[0, 1:]
    q_high = rank_preserving_targets(p, 0.99)[0, 1:]
    # relative spread of the non-top targets shrinks as acc -> 1 (tanh saturates)
    assert np.ptp(q_high) / q_high.mean() < np.ptp(q_mid) / q_mid.mean()


def test_targets_low_accuracy_bins():
    k = 4
    p = np.array([[0.5, 0.45, 0.03, 0.02]])
    # 1/K <= acc < 2/(K+2): the paper's alpha = beta solution lets the second option overtake
    acc = 0.28
    raw = rank_preserving_targets(p, acc, preserve_top=False)[0]
    assert raw[1] > acc
    assert raw[1:].sum() == pytest.approx(1 - acc)
    fixed = rank_preserving_targets(p, acc)[0]
    assert fixed[0] == pytest.approx(acc)
    assert fixed[1] == pytest.approx(acc)  # mixed with uniform just enough to tie the top
    assert fixed[1:].sum() == pytest.approx(1 - acc)
    assert fixed[1] > fixed[2] > fixed[3]
    # acc below chance: no target keeps the top on top except the uniform one
    np.testing.assert_allclose(rank_preserving_targets(p, 0.1)[0], np.full(k, 0.25))
    raw = rank_preserving_targets(p, 0.1, preserve_top=False)[0]
    assert raw[0] == pytest.approx(0.1) and raw[1:].sum() == pytest.approx(0.9)


def test_targets_two_options_and_zero_runner_up():
    np.testing.assert_allclose(rank_preserving_targets(np.array([[0.9, 0.1]]), 0.7), [[0.7, 0.3]])
    q = rank_preserving_targets(np.array([[1.0, 0.0, 0.0, 0.0]]), 0.4)[0]
    np.testing.assert_allclose(q, [0.4, 0.2, 0.2, 0.2])


def test_targets_bad_input():
    p = np.array([[0.5, 0.3, 0.2]])
    with pytest.raises(ValueError, match="accuracy"):
        rank_preserving_targets(p, 1.5)
    with pytest.raises(ValueError, match="accuracy"):
        rank_preserving_targets(p, [0.5, 0.5])
    with pytest.raises(ValueError, match="sum to 1"):
        rank_preserving_targets(np.array([[0.5, 0.3, 0.3]]), 0.5)
    with pytest.raises(ValueError, match="gamma_scale"):
        rank_preserving_targets(p, 0.5, gamma_scale=-1.0)
    with pytest.raises(ValueError, match=r"\(n, K\)"):
        rank_preserving_targets(np.array([0.3, 0.7]), 0.5)


# ---------------------------------------------------------------------------------- E-step
def test_bin_accuracy_hand_computed():
    p = np.array([[0.95, 0.05], [0.92, 0.08], [0.55, 0.45], [0.28, 0.72], [0.5, 0.5], [0.0, 1.0]])
    y = np.array([0, 1, 0, 1, 1, 1])
    b = bin_accuracy(p, y, n_bins=10)
    # top confidences 0.95 0.92 0.55 0.72 0.5 1.0 -> bins 9 9 5 7 5 9; ties pick index 0
    np.testing.assert_array_equal(b.count, [0, 0, 0, 0, 0, 2, 0, 1, 0, 3])
    assert b.accuracy[9] == pytest.approx(2 / 3)  # 0.95 right, 0.92 wrong, 1.0 right
    assert b.accuracy[5] == pytest.approx(1 / 2)  # 0.55 right, 0.5 (predicts 0) wrong
    assert b.accuracy[7] == 1.0
    assert np.isnan(b.accuracy[0]) and np.isnan(b.confidence[0])
    assert b.confidence[9] == pytest.approx((0.95 + 0.92 + 1.0) / 3)
    # a Beta prior of strength 1 centred on the bin's mean confidence
    b1 = bin_accuracy(p, y, n_bins=10, prior_strength=1.0)
    assert b1.accuracy[7] == pytest.approx((1 + 0.72) / 2)


def test_bin_accuracy_ece_matches_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4) * 0.4, size=500)
    y = rng.integers(0, 4, 500)
    ref = tm.multiclass_calibration_error(
        torch.tensor(p), torch.tensor(y), num_classes=4, n_bins=10, norm="l1"
    )
    assert bin_accuracy(p, y, 10).ece == pytest.approx(float(ref), abs=1e-6)
    # torchmetrics' bucketize(right=True) - 1 binning, edge values included
    c = np.array([0.0, 0.1, 0.2999, 0.3, 0.5, 0.9999, 1.0])
    edges = torch.linspace(0, 1, 11, dtype=torch.float64)
    ref_idx = (torch.bucketize(torch.tensor(c), edges, right=True) - 1).clamp(0, 9)
    np.testing.assert_array_equal(bin_index(c, 10), ref_idx.numpy())


def test_filled_accuracy_interpolates_empty_bins():
    b = BinAccuracy(
        accuracy=np.array([np.nan, 0.2, np.nan, np.nan, 0.8]),
        count=np.array([0, 5, 0, 0, 5]),
        confidence=np.array([np.nan, 0.3, np.nan, np.nan, 0.9]),
    )
    f = b.filled_accuracy()
    assert f[1] == 0.2 and f[4] == 0.8
    assert f[0] == 0.2  # constant below the first non-empty bin
    # bin 2 centre 0.5 lies 1/3 of the way from 0.3 to 0.9
    assert f[2] == pytest.approx(0.2 + (0.5 - 0.3) / 0.6 * 0.6)
    rt = BinAccuracy.from_dict(b.to_dict())
    np.testing.assert_array_equal(rt.count, b.count)
    np.testing.assert_array_equal(np.isnan(rt.accuracy), np.isnan(b.accuracy))


# ---------------------------------------------------------------------------------- M-step
def _overconfident_logits(n=256, k=4, acc=0.6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(0, 1, (n, k))
    right = rng.random(n) < acc
    top = np.where(right, y, (y + rng.integers(1, k, n)) % k)
    z[np.arange(n), top] += 4.0
    return z, y


def test_regulariser_gradient_moves_confidence_toward_bin_accuracy():
    z, y = _overconfident_logits()
    p0 = torch.softmax(torch.tensor(z), -1).numpy()
    bins = bin_accuracy(p0, y, 10)
    Z = torch.tensor(z, requires_grad=True)
    ece_regularizer(Z, bins).backward()
    with torch.no_grad():
        p1 = torch.softmax(Z - 0.5 * Z.grad, -1).numpy()
    top = p0.argmax(1)
    acc = bins.accuracy[bin_index(p0.max(1), 10)]
    before = np.abs(p0.max(1) - acc)
    after = np.abs(p1[np.arange(len(y)), top] - acc)
    far = before > 0.02
    assert far.sum() > 200
    # the top confidence of (almost) every question moves toward its bin's accuracy; a few may
    # not, because the step lowers the whole-vector distance to the target (non-top options
    # included), which is what every question's own term does strictly:
    assert np.mean(after[far] < before[far]) > 0.95
    assert np.mean(after[far]) < np.mean(before[far])
    q = rank_preserving_targets(p0, acc)
    assert np.all(((p1 - q) ** 2).sum(1) < ((p0 - q) ** 2).sum(1))


@pytest.mark.parametrize(("assignment", "divergence"), [("estep", "mse"), ("current", "kl")])
def test_em_regulariser_calibrates_free_logits_keeping_predictions(assignment, divergence):
    """A few EM rounds on free logits: conf-ECE ~ 0 while (almost) every argmax stays."""
    z, y = _overconfident_logits(n=160)
    ids = np.arange(len(y))
    Z = torch.tensor(z, requires_grad=True)
    em = EMRegularizer(n_bins=10, assignment=assignment, divergence=divergence)
    p0 = torch.softmax(Z.detach(), -1).numpy()
    start = em.e_step(p0, y, ids).ece
    opt = torch.optim.Adam([Z], lr=0.1)
    for it in range(150):
        opt.zero_grad()
        em.loss(Z, ids).backward()
        opt.step()
        if it % 30 == 29:
            em.e_step(torch.softmax(Z.detach(), -1).numpy(), y, ids)
    p = torch.softmax(Z.detach(), -1).numpy()
    assert start > 0.3
    assert bin_accuracy(p, y, 10).ece < 0.02
    # a question whose bin estimate falls below chance gets the uniform target (a tie), so an
    # argmax may flip there; everywhere else the rank-preserving targets keep it
    assert np.mean(p.argmax(1) == p0.argmax(1)) >= 0.99
    assert em.n_estimates_ == 6


def test_regulariser_is_zero_at_the_target():
    p = np.array([[0.7, 0.2, 0.06, 0.04], [0.1, 0.3, 0.5, 0.1]])
    bins = bin_accuracy(p, [0, 2], 10)  # each row alone in its bin and right: acc = 1
    q = rank_preserving_targets(p, bins.accuracy[bin_index(p.max(1), 10)])
    logits = torch.tensor(np.log(np.clip(q, 1e-300, None)))
    for div in ("mse", "kl"):
        assert float(ece_regularizer(logits, bins, divergence=div)) == pytest.approx(0, abs=1e-10)


def test_em_state_roundtrip_and_errors():
    em = EMRegularizer(n_bins=5)
    with pytest.raises(ValueError, match="before the first E-step"):
        em.loss(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="no observations"):
        em.e_step_observed()
    rng = np.random.default_rng(0)
    em.observe(rng.dirichlet(np.ones(4), 6), rng.integers(0, 4, 6), ids=np.arange(6))
    em.e_step_observed()
    em.observe(rng.dirichlet(np.ones(4), 3), rng.integers(0, 4, 3), ids=np.arange(3))
    clone = EMRegularizer(n_bins=5)
    clone.load_state_dict(em.state_dict())
    assert clone.assigned_ == em.assigned_ and clone.n_observed == 3
    np.testing.assert_array_equal(clone.bins_.count, em.bins_.count)
    x = torch.randn(3, 4)
    assert float(clone.loss(x, ids=[0, 1, 2])) == pytest.approx(float(em.loss(x, ids=[0, 1, 2])))
    with pytest.raises(ValueError, match="divergence"):
        EMRegularizer(divergence="l1")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- data / masks
def test_completion_mask_covers_exactly_the_answer_tokens(tok):
    ex = MCQExample("What is 2+2?", ("3", "4", "5", "6"), 1, id="q")
    enc = encode_mcq(tok, ex)
    labels = make_labels(enc, "completion")
    labelled = [i for i, v in enumerate(labels) if v != -100]
    assert labelled == list(range(enc.answer_pos, len(enc.input_ids)))
    assert tok.decode([enc.input_ids[i] for i in labelled]) == "B<|im_end|>"
    assert tok.decode(enc.input_ids[: enc.answer_pos]) == tok.apply_chat_template(
        build_messages(ex), tokenize=False, add_generation_prompt=True
    )
    # RCFT: from the first character of the question on; the system turn is not trained on
    full = make_labels(enc, "prompt_and_answer")
    text = tok.decode([t for t in full if t != -100])
    assert text.startswith("What is 2+2?\nOptions:\nA. 3\nB. 4")
    assert text.endswith(
        "Answer with only a single letter:<|im_end|>\n<|im_start|>assistant\nB<|im_end|>"
    )
    assert SYSTEM_PROMPT not in text
    assert all(v == -100 for v in full[: enc.user_start])


def test_collate_left_pads_and_keeps_answer_columns(tok):
    exs = [
        MCQExample("1+1?", ("2", "3", "4", "5"), 0, id="a"),
        MCQExample("A much longer question?", ("x", "y", "z", "w"), 3, id="b"),
    ]
    enc = encode_examples(tok, exs)
    b = collate(enc, pad_id=tok.pad_token_id, mode="completion")
    ids = option_token_ids(tok, 4)
    for r, e in enumerate(enc):
        assert int(b["input_ids"][r, b["answer_pos"][r]]) == ids[e.answer]
        assert int(b["attention_mask"][r].sum()) == len(e.input_ids)
        assert int((b["labels"][r] != -100).sum()) == 2
    assert b["input_ids"].shape[1] == max(len(e.input_ids) for e in enc)
    assert int(b["attention_mask"][0, 0]) == 0  # the shorter row is padded on the left


def test_encoding_errors(tok):
    from transformers import PreTrainedTokenizerFast

    with pytest.raises(ValueError, match="choices"):
        MCQExample("q", ("only",), 0)
    with pytest.raises(ValueError, match="answer"):
        MCQExample("q", ("a", "b"), 2)
    with pytest.raises(ValueError, match="label mode"):
        make_labels(encode_mcq(tok, _toy_questions(1)[0]), "everything")  # type: ignore[arg-type]
    bare = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer)
    with pytest.raises(ValueError, match="chat template"):
        encode_mcq(bare, _toy_questions(1)[0])
    with pytest.warns(UserWarning, match="dropped 1 of 1"):
        assert encode_examples(tok, _toy_questions(1), max_length=20) == []


def test_make_splits_disjoint_balanced_and_seeded(data_dir):
    from calibkit.finetune.data import make_splits

    sp = make_splits(n_train=60, n_val=12, n_test=30, n_ood=20, seed=1, data_dir=data_dir)
    assert [len(sp[k]) for k in ("train", "val", "test", "ood")] == [60, 12, 30, 20]
    ids = [e.id for k in ("train", "val", "test") for e in sp[k]]
    assert len(set(ids)) == len(ids)
    pooled = sp["train"] + sp["val"] + sp["test"]
    assert {e.source for e in pooled} == {"mmlu", "medmcqa", "openbookqa"}
    assert all(sum(e.source == s for e in pooled) == 34 for s in ("mmlu", "medmcqa", "openbookqa"))
    assert {e.source for e in sp["ood"]} == {"arc_challenge"}
    assert all(len(e.choices) == 4 for k in sp for e in sp[k])
    again = make_splits(n_train=60, n_val=12, n_test=30, n_ood=20, seed=1, data_dir=data_dir)
    assert [e.id for e in again["test"]] == [e.id for e in sp["test"]]
    with pytest.raises(ValueError, match=">= 0"):
        make_splits(n_train=-1, data_dir=data_dir)


# ---------------------------------------------------------------------------------- losses
def test_lm_loss_matches_transformers_and_label_smoothing_by_hand(tok):
    model = _tiny_model(tok)
    enc = encode_examples(tok, _toy_questions(3))
    for mode in ("completion", "prompt_and_answer"):
        b = collate(enc, pad_id=tok.pad_token_id, mode=mode)
        from calibkit.finetune._forward import causal_forward, position_ids_from_mask

        with torch.no_grad():
            ref = model(
                input_ids=b["input_ids"],
                attention_mask=b["attention_mask"],
                position_ids=position_ids_from_mask(b["attention_mask"]),
                labels=b["labels"],
            ).loss
            logits = causal_forward(model, b["input_ids"], b["attention_mask"])
        assert float(lm_loss(logits, b["labels"])) == pytest.approx(float(ref), rel=1e-5)
    # label smoothing, by hand: at the answer position the target is (1-eps) on the right
    # letter and eps/3 on each other letter; the end-of-turn token keeps its one-hot target
    b = collate(enc, pad_id=tok.pad_token_id, mode="completion")
    ids = option_token_ids(tok, 4)
    eps = 0.2
    ls = label_smoothing_lm_loss(logits, b["labels"], b["answer_pos"], b["answers"], ids, eps)
    total, n = 0.0, 0
    logp = torch.log_softmax(logits.double(), -1)
    for r in range(3):
        a = int(b["answer_pos"][r])
        q = np.full(4, eps / 3)
        q[int(b["answers"][r])] = 1 - eps
        total += -sum(q[j] * float(logp[r, a - 1, ids[j]]) for j in range(4))
        total += -float(logp[r, a, b["input_ids"][r, a + 1]])
        n += 2
    assert float(ls) == pytest.approx(total / n, rel=1e-5)
    assert float(
        label_smoothing_lm_loss(logits, b["labels"], b["answer_pos"], b["answers"], ids, 0.0)
    ) == pytest.approx(float(lm_loss(logits, b["labels"])), rel=1e-6)


def test_option_logits_from_training_forward_equal_prompt_only_scores(tok):
    from calibkit.finetune._forward import causal_forward
    from calibkit.finetune.evaluate import option_logprobs

    model = _tiny_model(tok)
    enc = encode_examples(tok, _toy_questions(5))
    ids = option_token_ids(tok, 4)
    b = collate(enc, pad_id=tok.pad_token_id, mode="completion")
    with torch.no_grad():
        full = causal_forward(model, b["input_ids"], b["attention_mask"])
        kept = causal_forward(model, b["input_ids"], b["attention_mask"], keep=3)
    opt = torch.log_softmax(full.double(), -1)
    train_view = option_logits_at_answer(opt, b["answer_pos"], ids).numpy()
    lp = option_logprobs(model, enc, ids, batch_size=2, pad_id=tok.pad_token_id)
    np.testing.assert_allclose(lp, train_view, atol=1e-4)
    L = b["input_ids"].shape[1]
    np.testing.assert_allclose(kept.numpy(), full[:, L - 3 :].numpy(), atol=1e-5)


def test_objective_validation():
    with pytest.raises(ValueError, match="method"):
        Objective("sft")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lambda"):
        Objective("rcft", lam=-1.0)
    with pytest.raises(ValueError, match="nothing to optimise"):
        Objective("rcft", lam=0.0, lm_weight=0.0)
    with pytest.raises(ValueError, match="smoothing"):
        Objective("label_smoothing", smoothing=1.0)
    assert Objective("rcft").label_mode == "prompt_and_answer"
    assert Objective("cft").label_mode == "completion"


# ---------------------------------------------------------------------------------- trainer
def _config(**kw):
    from calibkit.finetune.trainer import TrainConfig

    base = dict(
        method="rcft",
        lam=1.0,
        epochs=2,
        batch_size=2,
        grad_accum=2,
        lr=5e-3,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.1,
        em_source="running",
        checkpoint_every=2,
        keep_checkpoints=2,
        max_length=1024,
        seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_training_resumes_to_the_same_result(tok, tmp_path):
    from calibkit.finetune.trainer import CalibrationTrainer, latest_checkpoint

    data = _toy_questions(10)
    cfg = _config()  # 10 questions / (2 x 2) -> 3 steps per epoch, 6 in all
    full = CalibrationTrainer(_tiny_model(tok), tok, cfg, out_dir=tmp_path / "a")
    ra = full.train(data, progress=False)
    assert ra.global_step == 6 and ra.resumed_from is None
    assert [r["source"] for r in ra.em_history] == ["pass", "running"]  # one E-step per epoch

    class Stop(Exception):
        pass

    def stop_at_4(rec):
        if rec["step"] == 4:
            raise Stop

    first = CalibrationTrainer(_tiny_model(tok), tok, cfg, out_dir=tmp_path / "b")
    with pytest.raises(Stop):
        first.train(data, progress=False, callback=stop_at_4)
    ck = latest_checkpoint(tmp_path / "b")
    assert ck is not None and ck.name == "step-0000004"
    # as in a fresh process: a new copy of the same base model, fresh adapters, RNG elsewhere
    torch.manual_seed(12345)
    again = CalibrationTrainer(_tiny_model(tok), tok, cfg, out_dir=tmp_path / "b")
    torch.manual_seed(777)
    rb = again.train(data, progress=False)
    assert rb.resumed_from == 4 and rb.global_step == 6
    pa = dict(full._trainable())
    pb = dict(again._trainable())
    assert pa.keys() == pb.keys()
    for n in pa:
        torch.testing.assert_close(pb[n], pa[n], rtol=1e-5, atol=1e-6)
    assert [h["loss"] for h in rb.history] == pytest.approx(
        [h["loss"] for h in ra.history], rel=1e-5
    )
    assert rb.em_history[-1]["count"] == ra.em_history[-1]["count"]
    # old checkpoints are pruned; a finished run resumed again does nothing
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == [
        "step-0000004",
        "step-0000006",
    ]
    assert again.train(data, progress=False).global_step == 6


def test_resume_refuses_another_config(tok, tmp_path):
    from calibkit.finetune.trainer import CalibrationTrainer

    data = _toy_questions(4)
    CalibrationTrainer(_tiny_model(tok), tok, _config(epochs=1), out_dir=tmp_path).train(
        data, progress=False
    )
    other = CalibrationTrainer(_tiny_model(tok), tok, _config(epochs=1, lr=1e-3), out_dir=tmp_path)
    with pytest.raises(ValueError, match="different config"):
        other.train(data, progress=False)


def test_cft_training_lowers_the_completion_loss(tok):
    from calibkit.finetune.evaluate import option_logprobs
    from calibkit.finetune.trainer import CalibrationTrainer

    data = _toy_questions(8)
    model = _tiny_model(tok)
    tr = CalibrationTrainer(
        model,
        tok,
        _config(method="cft", lam=0.0, epochs=4, grad_accum=1, lr=5e-2, lora_dropout=0.0),
    )
    enc = encode_examples(tok, data)
    ids = option_token_ids(tok, 4)
    before = option_logprobs(tr.model, enc, ids, pad_id=tok.pad_token_id)
    res = tr.train(data, progress=False)
    after = option_logprobs(tr.model, enc, ids, pad_id=tok.pad_token_id)
    lm = [h["lm"] for h in res.history]
    assert len(lm) == 16
    assert np.mean(lm[-4:]) < np.mean(lm[:4]) - 0.2  # the completion loss goes down
    assert np.abs(after - before).max() > 1e-2
    assert res.em_history == []  # lambda = 0: no E-steps are spent


def test_train_config_validation():
    from calibkit.finetune.trainer import TrainConfig

    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="em_source"):
        TrainConfig(em_source="never")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lambda"):
        TrainConfig(method="rcft", lam=-0.5)
    assert TrainConfig(method="rcft").effective_lam == 1.0
    assert TrainConfig(method="cft").effective_lam == 0.0
    c = TrainConfig(method="rcft", target_modules=("q_proj",))
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert c.fingerprint() == TrainConfig.from_dict(c.to_dict()).fingerprint()


# ---------------------------------------------------------------------------------- evaluation
def test_sequence_logprob_matches_token_by_token(tok):
    from calibkit.finetune.evaluate import PreferencePair, sequence_logprobs, win_rate

    model = _tiny_model(tok)
    prompt = "Say hi"
    got = sequence_logprobs(model, tok, prompt, ["hi!", "no"])
    p_text = tok.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    p_ids = tok(p_text, add_special_tokens=False)["input_ids"]
    for resp, value in zip(["hi!", "no"], got, strict=True):
        r_ids = tok(resp + "<|im_end|>", add_special_tokens=False)["input_ids"]
        total = 0.0
        for t in range(len(r_ids)):  # one forward per prefix: independent of the batched gather
            x = torch.tensor([p_ids + r_ids[:t]])
            with torch.no_grad():
                lp = torch.log_softmax(model(input_ids=x).logits[0, -1].double(), -1)
            total += float(lp[r_ids[t]])
        assert value == pytest.approx(total, abs=1e-4)
    pairs = [
        PreferencePair(prompt, "hi!", "no"),
        PreferencePair(prompt, "no", "hi!"),
        PreferencePair(prompt, "same", "same"),
    ]
    wr = win_rate(model, tok, pairs)
    assert wr.n == 3 and wr.ties == 1
    assert wr.margins[0] == pytest.approx(-wr.margins[1])
    assert wr.win_rate == pytest.approx(1 / 3)
    assert np.isnan(sequence_logprobs(model, tok, prompt, ["x" * 50], max_length=20)[0])


def test_hh_dialogue_parsing():
    from calibkit.finetune.evaluate import _hh_turns

    turns = _hh_turns(
        "\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:"
    )
    assert turns == (("user", "hi there"), ("assistant", "hello"), ("user", "how are you?"))


def test_temperature_scaling_baseline_changes_t():
    """The reference code's closure never updated T; calibkit's temperature scaling must."""
    from calibkit.calibrators import TemperatureScaling

    z, y = _overconfident_logits(n=400)
    ts = TemperatureScaling().fit(z, y)
    assert ts.temperature_ > 1.5  # over-confident logits get softened
    nll = lambda p: -np.mean(np.log(p[np.arange(len(y)), y]))  # noqa: E731
    from calibkit import softmax

    assert nll(ts.predict_proba(z)) < nll(softmax(z, axis=1)) - 0.1
    np.testing.assert_array_equal(ts.predict(z), z.argmax(1))


def test_checkpoint_manager_is_atomic_and_prunes(tmp_path, monkeypatch):
    from calibkit.finetune.checkpoints import CheckpointManager, latest_checkpoint

    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    mgr = CheckpointManager(tmp_path, keep=2)
    for step in (1, 2, 3):
        with torch.no_grad():
            w.fill_(float(step))
        mgr.save(step, {"global_step": step}, {"w": w}, opt, sched)
    assert [p.name for p in sorted((tmp_path / "checkpoints").iterdir())] == [
        "step-0000002",
        "step-0000003",
    ]
    # a crash while writing step 4 leaves no complete step 4 and no temporary file behind
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        if "optimizer" in obj:
            raise OSError("disk full")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        mgr.save(4, {"global_step": 4}, {"w": w}, opt, sched)
    monkeypatch.setattr(torch, "save", real_save)
    assert latest_checkpoint(tmp_path).name == "step-0000003"
    leftovers = [p.name for p in (tmp_path / "checkpoints" / "step-0000004").iterdir()]
    assert leftovers == ["adapter.pt"]  # complete files only; no state file, no temp file
    # restoring step 3 gives back its weights and state
    with torch.no_grad():
        w.fill_(0.0)
    state = mgr.restore(latest_checkpoint(tmp_path), {"w": w}, opt, sched)
    assert state["global_step"] == 3 and torch.equal(w.detach(), torch.full((3,), 3.0))
    # the next save drops the incomplete folder and keeps the newest complete ones
    mgr.save(5, {"global_step": 5}, {"w": w}, opt, sched)
    assert [p.name for p in sorted((tmp_path / "checkpoints").iterdir())] == [
        "step-0000003",
        "step-0000005",
    ]
