"""Fast tests of calibkit.scoring: prompts, matching token sets, the transformers backend on tiny
randomly initialised models built in-process (no download), and the scorers.

References are independent of the code under test: a plain unpadded ``model(input_ids)`` forward
pass, Hugging Face ``model.generate``, and hand computations.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pytest

from calibkit.scoring.backends.base import Generation, Prompt
from calibkit.scoring.cache import ScoreCache
from calibkit.scoring.classify import ClassificationScorer, answer_confidence, parse_answer
from calibkit.scoring.matching import (
    aggregate_generation,
    aggregate_next_token,
    label_variants,
    matching_token_sets,
)
from calibkit.scoring.mcq import MISSING_OPTION_LOGIT, MultipleChoiceScorer, parse_letter
from calibkit.scoring.prompts import (
    MCQ_HINT,
    MCQ_SYSTEM,
    MultipleChoiceTemplate,
    PromptTemplate,
    option_letters,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "the movie begins in the past where a young boy named sam attempts to save a friend .",
    "an inelegant combination of two unrelated shorts that falls far short .",
    "for its seriousness and stunning acting , the film can only be applauded .",
    "objective subjective Objective Subjective positive negative neutral",
    "Consider the task of classifying between the following classes:",
    "You are a careful annotator. Answer with only one of the class names.",
    "Which of the following is very difficult to induce antibody? Options: A. B. C. D. E.",
]


# ---------------------------------------------------------------------------- tiny models
@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads; on a shared CPU they only add contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = CHATML
    return fast


@pytest.fixture(scope="module")
def tiny_llama(tiny_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tiny_tokenizer.bos_token_id,
        eos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(cfg).eval()
    # larger weights -> peaked, tie-free distributions, so greedy paths are stable
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    return model


@pytest.fixture(scope="module")
def tiny_t5(tiny_tokenizer):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(1)
    cfg = T5Config(
        vocab_size=len(tiny_tokenizer),
        d_model=32,
        d_ff=64,
        d_kv=8,
        num_layers=2,
        num_heads=4,
        decoder_start_token_id=tiny_tokenizer.pad_token_id,
        pad_token_id=tiny_tokenizer.pad_token_id,
        eos_token_id=tiny_tokenizer.eos_token_id,
    )
    return T5ForConditionalGeneration(cfg).eval()


def make_backend(model, tok, **kw):
    from calibkit.scoring.backends.transformers_backend import TransformersBackend

    return TransformersBackend(model, tok, name="tiny", **kw)


def ref_next_logprobs(model, ids: list[int]) -> np.ndarray:
    """Independent reference: one unpadded forward pass, no cache."""
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids]))
    return torch.log_softmax(out.logits[0, -1].float(), -1).numpy()


LONG_SYSTEM = (
    "You are a careful annotator. Consider the task of classifying between the following "
    "classes: objective, subjective. Answer with only one of the class names."
)
TEXTS = [
    "the movie begins in the past .",
    "an inelegant combination of two unrelated shorts that falls far short .",
    "stunning acting",
    "for its seriousness and stunning acting , the film can only be applauded .",
    "a young boy named sam attempts to save a friend .",
]


def chat(text: str, system: str = LONG_SYSTEM) -> Prompt:
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


# ---------------------------------------------------------------------------- prompts
def test_prompt_template_zero_shot_chat_and_plain():
    t = PromptTemplate()
    msgs = t.render("a film.", ["objective", "subjective"])
    assert isinstance(msgs, list) and [m["role"] for m in msgs] == ["system", "user"]
    assert "1. objective\n2. subjective" in msgs[0]["content"]
    assert msgs[1]["content"].startswith("Text: a film.")
    assert "objective, subjective" in msgs[1]["content"]
    plain = t.render("a film.", ["objective", "subjective"], chat=False)
    assert isinstance(plain, str) and plain.endswith("Answer:")
    assert msgs[0]["content"] in plain


def test_prompt_template_appendix_c_style_and_dialogue():
    desc = {"objective": "assigned to text that presents factual information"}
    t = PromptTemplate(
        label_descriptions=desc,
        examples=[("fact one", "objective"), ("what a film", "subjective")],
    )
    sys_msg = t.render("x", ["objective", "subjective"])[0]["content"]
    assert "(along with some examples):" in sys_msg
    assert "1. objective, which is assigned to text that presents factual information." in sys_msg
    assert 'Some examples of utterances include:\n- "fact one"' in sys_msg
    d = PromptTemplate(examples=[("fact one", "objective")], few_shot_style="dialogue")
    msgs = d.render("x", ["objective", "subjective"])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"] == "objective"


def test_prompt_fingerprint_stable_and_sensitive():
    a, b = PromptTemplate(), PromptTemplate()
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 16
    assert PromptTemplate(system_prompt="x").fingerprint() != a.fingerprint()
    assert PromptTemplate(examples=[("t", "c")]).fingerprint() != a.fingerprint()
    assert MultipleChoiceTemplate().fingerprint() != a.fingerprint()


def test_with_examples_is_balanced_and_seeded():
    texts = [f"t{i}" for i in range(20)]
    labels = ["a"] * 15 + ["b"] * 5
    t = PromptTemplate().with_examples(texts, labels, 4, seed=3)
    got = [lab for _, lab in t.examples]
    assert sorted(got) == ["a", "a", "b", "b"]
    assert t.examples == PromptTemplate().with_examples(texts, labels, 4, seed=3).examples
    with pytest.raises(ValueError, match="k=30"):
        PromptTemplate().with_examples(texts, labels, 30)


def test_prompt_template_errors():
    with pytest.raises(ValueError, match="text"):
        PromptTemplate(input_template="no placeholder")
    with pytest.raises(ValueError, match="not classes"):
        PromptTemplate(examples=[("t", "zzz")]).render("x", ["a", "b"])
    with pytest.raises(ValueError, match="at least 2"):
        PromptTemplate().render("x", ["a"])
    with pytest.raises(ValueError, match="few_shot_style"):
        PromptTemplate(few_shot_style="bogus")  # type: ignore[arg-type]


def test_mcq_template_table1():
    msgs = MultipleChoiceTemplate().render(
        "Which is hard to induce antibody?", ["Polysaccharide", "Protein", "Antigen"]
    )
    assert msgs[0] == {"role": "system", "content": MCQ_SYSTEM}
    assert msgs[1]["content"] == (
        "Which is hard to induce antibody?\nOptions:\nA. Polysaccharide\nB. Protein\n"
        f"C. Antigen\n{MCQ_HINT}"
    )
    assert MCQ_HINT == "Answer with only a single letter:"
    assert option_letters(5) == ("A", "B", "C", "D", "E")
    with pytest.raises(ValueError):
        MultipleChoiceTemplate(examples=[("q", ("a", "b"), 2)])


# ---------------------------------------------------------------------------- matching
def fake_tokenize(text: str) -> list[str]:
    """Splits into words (keeping a leading space) and cuts words after 4 characters."""
    out: list[str] = []
    for i, w in enumerate(text.split(" ")):
        w = (" " if i or text.startswith(" ") else "") + w if w else w
        while w.strip():
            out.append(w[:4] if not w.startswith(" ") else w[:5])
            w = w[len(out[-1]) :]
    return out


def test_label_variants():
    v = label_variants("not_complaint")
    for form in ["not_complaint", " not_complaint", "Not complaint", " NOT COMPLAINT"]:
        assert form in v
    assert label_variants("A", case=False) == ["A", " A"]


def test_matching_sets_first_tokens_and_distinctive_fallback():
    sets = matching_token_sets(["positive", "negative"], fake_tokenize)
    assert set(sets.tokens[0]) == {"posi", "Posi", "POSI", " posi", " Posi", " POSI"}
    assert all(sets.first_token)
    # 'card_arrival' / 'card_lost' share the first token 'card' -> distinctive tokens
    sets = matching_token_sets(["card_arrival", "card_lost"], fake_tokenize)
    assert sets.first_token == (False, False)
    assert "card" not in sets.tokens[0] and " card" not in sets.tokens[1]
    assert (
        "_arr" in sets.tokens[0]
        or "_arri" in sets.tokens[0]
        or any("arr" in t for t in sets.tokens[0])
    )
    with pytest.raises(ValueError, match="shares its first token"):
        matching_token_sets(["card_arrival", "card_lost"], fake_tokenize, first_token_only=True)


def test_matching_sets_short_fragments_dropped_and_no_tokenizer():
    # " S" of " SUBJECTIVE" would be a 1-character fragment: excluded by the length guard
    def tok(text: str) -> list[str]:
        return [text[:2], text[2:]] if text.strip().isupper() else [text]

    sets = matching_token_sets(["objective", "subjective"], tok)
    assert all(len(t.strip()) >= 3 for ts in sets.tokens for t in ts)
    plain = matching_token_sets(["yes", "no"], None)
    assert "yes" in plain.tokens[0] and " No" in plain.tokens[1]
    with pytest.raises(ValueError, match="unique"):
        matching_token_sets(["a", "a"], None)
    with pytest.raises(ValueError, match="unknown classes"):
        matching_token_sets(["a", "b"], None, aliases={"c": ["x"]})


def test_aggregate_generation_is_max_over_tokens_and_positions():
    sets = matching_token_sets(["yes", "no"], None)
    gen = Generation(
        text="Yes",
        tokens=["Yes", "</s>"],
        logprobs=[
            {"Yes": -0.2, "No": -2.0, " no": -1.5, "x": -9.0},
            {"</s>": -0.01, "yes": -0.1, "no": -5.0},
        ],
    )
    z, pos = aggregate_generation(gen, sets)
    np.testing.assert_allclose(z, [-0.1, -1.5])
    assert pos.tolist() == [1, 0]
    # a class never reported gets the item's smallest reported log-probability
    gen2 = Generation(text="x", tokens=["x"], logprobs=[{"x": -0.5, "yes": -1.0, "y": -7.0}])
    z2, pos2 = aggregate_generation(gen2, sets)
    np.testing.assert_allclose(z2, [-1.0, -7.0])
    assert pos2.tolist() == [0, -1]
    np.testing.assert_allclose(aggregate_next_token({"Yes": -3.0, "no": -0.3}, sets), [-3.0, -0.3])


def test_parse_answer_and_letter():
    cls = ["complaint", "not_complaint"]
    assert parse_answer("Not complaint.", cls) == 1
    assert parse_answer("complaint", cls) == 0
    assert parse_answer("Answer: complaint", cls) == 0
    assert parse_answer("I think it is a complaint", cls) == 0
    assert parse_answer("hmm", cls) == -1
    assert parse_answer("", cls) == -1
    assert parse_letter("B", 4) == 1
    assert parse_letter("(C) Antigen", 4) == 2
    assert parse_letter("The answer is D", 4) == 3
    assert parse_letter("E", 4) == -1
    assert parse_letter("Because", 4) == -1


# ---------------------------------------------------------------------------- backend
def test_next_token_batched_padded_equals_unpadded_reference(tiny_llama, tiny_tokenizer):
    be = make_backend(tiny_llama, tiny_tokenizer, batch_size=3, prefix_reuse=False)
    prompts = [chat(t) for t in TEXTS]
    got = be.next_token_logprob_matrix(prompts)
    for p, row in zip(prompts, got, strict=True):
        ref = ref_next_logprobs(tiny_llama, be.encode(p))
        np.testing.assert_allclose(row, ref, atol=1e-4)
    assert be.stats["reused_tokens"] == 0


def test_prefix_reuse_equals_no_reuse_and_reuses(tiny_llama, tiny_tokenizer):
    prompts = [chat(t) for t in TEXTS]
    plain = make_backend(tiny_llama, tiny_tokenizer, batch_size=2, prefix_reuse=False)
    reuse = make_backend(tiny_llama, tiny_tokenizer, batch_size=2, min_prefix_tokens=8)
    a = plain.next_token_logprob_matrix(prompts)
    b = reuse.next_token_logprob_matrix(prompts)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert reuse.stats["reused_tokens"] > 0
    assert reuse.stats["forward_tokens"] < plain.stats["forward_tokens"]
    # one anchor serves every batch (cropped where a batch shares more or less)
    assert len(reuse._anchors) == 1
    # single prompts (batch of one) also reuse the prefix and still match the reference
    solo = make_backend(tiny_llama, tiny_tokenizer, batch_size=1, min_prefix_tokens=8)
    c = solo.next_token_logprob_matrix(prompts)
    np.testing.assert_allclose(a, c, atol=1e-4)
    assert solo.stats["reused_tokens"] > 0


def test_prefix_anchor_follows_a_longer_template(tiny_llama, tiny_tokenizer):
    be = make_backend(tiny_llama, tiny_tokenizer, batch_size=5, min_prefix_tokens=8)
    short = [chat(t, "You are a careful annotator.") for t in TEXTS]
    longer = [chat(t, "You are a careful annotator. " + LONG_SYSTEM) for t in TEXTS]
    be.next_token_logprob_matrix(short)
    before = be.stats["reused_tokens"]
    got = be.next_token_logprob_matrix(longer)
    # the second template's whole shared head is reused, not only the part it shares with the first
    head = _common_prefix_len([be.encode(p) for p in longer])
    assert be.stats["reused_tokens"] - before == head * len(longer)
    ref = make_backend(tiny_llama, tiny_tokenizer, prefix_reuse=False).next_token_logprob_matrix(
        longer
    )
    np.testing.assert_allclose(got, ref, atol=1e-4)


def _common_prefix_len(seqs: list[list[int]]) -> int:
    n = min(len(s) for s in seqs) - 1
    for i in range(n):
        if len({s[i] for s in seqs}) > 1:
            return i
    return n


def test_generate_matches_hf_generate(tiny_llama, tiny_tokenizer):
    be = make_backend(tiny_llama, tiny_tokenizer, batch_size=3, min_prefix_tokens=8)
    prompts = [chat(t) for t in TEXTS]
    gens = be.generate(prompts, max_new_tokens=4, candidates=["objective", " subjective"])
    vocab = be._vocab_strings()
    for p, g in zip(prompts, gens, strict=True):
        ids = torch.tensor([be.encode(p)])
        with torch.inference_mode():
            ref = tiny_llama.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=4,
                output_scores=True,
                return_dict_in_generate=True,
                eos_token_id=sorted(be._eos),
                pad_token_id=tiny_tokenizer.pad_token_id,
            )
        new = ref.sequences[0, ids.shape[1] :].tolist()
        assert g.tokens == [vocab[t] for t in new]
        for j, (t, sc) in enumerate(zip(new, ref.scores, strict=False)):
            lp = torch.log_softmax(sc[0].float(), -1)
            assert math.isclose(g.logprobs[j][vocab[t]], float(lp[t]), abs_tol=1e-4)
            for c in ["objective", " subjective"]:
                ids_c = be.token_ids(c)
                if ids_c:
                    assert math.isclose(g.logprobs[j][c], float(lp[ids_c].max()), abs_tol=1e-4)
            top = torch.topk(lp, 20).indices.tolist()  # the top-20 alternatives are reported
            assert {vocab[i] for i in top} <= set(g.logprobs[j])


def test_generate_first_position_equals_next_token(tiny_llama, tiny_tokenizer):
    be = make_backend(tiny_llama, tiny_tokenizer, batch_size=4)
    prompts = [chat(t) for t in TEXTS]
    cands = ["objective", "subjective", " positive"]
    nt = be.next_token_logprobs(prompts, cands)
    gens = be.generate(prompts, max_new_tokens=2, candidates=cands)
    for d, g in zip(nt, gens, strict=True):
        for c in d:
            assert math.isclose(d[c], g.logprobs[0][c], abs_tol=1e-5)


def test_seq2seq_generate_matches_hf(tiny_t5, tiny_tokenizer):
    be = make_backend(tiny_t5, tiny_tokenizer, batch_size=3)
    assert be.is_encoder_decoder
    prompts = ["the movie begins .", "an inelegant combination of two unrelated shorts ."]
    gens = be.generate(prompts, max_new_tokens=3)
    vocab = be._vocab_strings()
    for p, g in zip(prompts, gens, strict=True):
        ids = torch.tensor([be.encode(p)])
        with torch.inference_mode():
            ref = tiny_t5.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=3,
                output_scores=True,
                return_dict_in_generate=True,
            )
        new = ref.sequences[0, 1:].tolist()
        assert g.tokens == [vocab[t] for t in new][: len(g.tokens)]
        lp = torch.log_softmax(ref.scores[0][0].float(), -1)
        assert math.isclose(g.logprobs[0][vocab[new[0]]], float(lp[new[0]]), abs_tol=1e-4)


def test_backend_input_errors(tiny_llama, tiny_tokenizer):
    be = make_backend(tiny_llama, tiny_tokenizer)
    with pytest.raises(ValueError, match="batch_size"):
        make_backend(tiny_llama, tiny_tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        be.generate(["x"], max_new_tokens=0)
    with pytest.raises(ValueError, match="prompt"):
        be.encode(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not one string"):
        be.next_token_logprobs(["x"], "yes")
    assert be.next_token_logprobs(["x"], ["no-such-token-string"]) == [{}]
    assert be.name == "hf:tiny:float32"


# ---------------------------------------------------------------------------- scorers
class CountingBackend:
    """Wraps a backend; counts prompts sent; optionally fails after ``fail_after`` calls."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner = inner
        self.calls = 0
        self.prompts = 0
        self.fail_after = fail_after

    @property
    def name(self) -> str:
        return self.inner.name

    def __getattr__(self, item):
        return getattr(self.inner, item)

    def _tick(self, n: int) -> None:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        self.prompts += n

    def generate(self, prompts, **kw):
        self._tick(len(prompts))
        return self.inner.generate(prompts, **kw)

    def next_token_logprobs(self, prompts, candidates):
        self._tick(len(prompts))
        return self.inner.next_token_logprobs(prompts, candidates)


class ScriptedBackend:
    """A backend returning fixed log-probabilities: for exact checks of the scorer logic."""

    name = "scripted"
    has_chat_template = True

    def __init__(self, table: dict[str, list[dict[str, float]]], text: dict[str, str]):
        self.table, self.text = table, text

    def _key(self, prompt: Prompt) -> str:
        assert isinstance(prompt, list)
        return prompt[-1]["content"].split("\n")[0]

    def generate(
        self, prompts: Sequence[Prompt], *, max_new_tokens=8, candidates=(), top_logprobs=20
    ):
        out = []
        for p in prompts:
            k = self._key(p)
            steps = self.table[k][:max_new_tokens]
            out.append(Generation(text=self.text[k], tokens=["t"] * len(steps), logprobs=steps))
        return out

    def next_token_logprobs(self, prompts, candidates):
        return [dict(self.table[self._key(p)][0]) for p in prompts]


def test_classification_scorer_four_steps_by_hand():
    table = {
        "Text: a": [{"yes": -0.1, "no": -3.0}, {"yes": -2.0, "no": -0.5}],
        "Text: b": [{"no": -0.2}, {"yes": -4.0, "no": -1.0}],
    }
    be = ScriptedBackend(table, {"Text: a": "yes", "Text: b": "No."})
    sc = ClassificationScorer(be, ["yes", "no"], max_new_tokens=2, progress=False)
    s = sc.score(["a", "b"], labels=["yes", "no"], ids=["i1", "i2"])
    np.testing.assert_allclose(s.logits, [[-0.1, -0.5], [-4.0, -0.2]])
    assert s.labels.tolist() == [0, 1] and s.ids.tolist() == ["i1", "i2"]
    assert s.per_item["answer_index"].tolist() == [0, 1]
    assert s.per_item["answer_text"].tolist() == ["yes", "No."]
    # step 2 softmax and step 4 score of the answer, by hand
    z0 = math.exp(-0.1) / (math.exp(-0.1) + math.exp(-0.5))
    np.testing.assert_allclose(s.probs[0, 0], z0)
    np.testing.assert_allclose(answer_confidence(s), [z0, 1 / (1 + math.exp(-3.8))])
    nt = ClassificationScorer(be, ["yes", "no"], mode="next_token", progress=False).score(["a"])
    np.testing.assert_allclose(nt.logits, [[-0.1, -3.0]])


def test_scorer_next_token_equals_generate_first_position(tiny_llama, tiny_tokenizer):
    be = make_backend(tiny_llama, tiny_tokenizer, batch_size=2, min_prefix_tokens=8)
    classes = ["objective", "subjective"]
    nt = ClassificationScorer(be, classes, mode="next_token", progress=False).score(TEXTS)
    g1 = ClassificationScorer(be, classes, max_new_tokens=1, progress=False).score(TEXTS)
    np.testing.assert_allclose(nt.logits, g1.logits, atol=1e-5)
    g3 = ClassificationScorer(be, classes, max_new_tokens=3, progress=False).score(TEXTS)
    # more positions can only raise a class's max; where position 1 holds it, equal
    assert np.all(g3.logits >= nt.logits - 1e-5)
    first = np.asarray(g3.per_item["max_position"].tolist()) == 0
    np.testing.assert_allclose(g3.logits[first], nt.logits[first], atol=1e-5)


def test_scorer_cache_reuse_and_resume(tiny_llama, tiny_tokenizer, tmp_path):
    inner = make_backend(tiny_llama, tiny_tokenizer, batch_size=2)
    classes = ["objective", "subjective"]
    texts = [f"{t} {i}" for i, t in enumerate(TEXTS * 2)]  # 10 distinct items
    path = tmp_path / "cache.sqlite"
    kw = {"mode": "next_token", "batch_size": 3, "progress": False}
    flaky = CountingBackend(inner, fail_after=2)
    sc = ClassificationScorer(flaky, classes, cache=path, **kw)
    with pytest.raises(RuntimeError, match="simulated crash"):
        sc.score(texts)
    with ScoreCache(path) as c:
        assert len(c) == 6  # two finished batches of 3 survived the crash
    counting = CountingBackend(inner)
    sc2 = ClassificationScorer(counting, classes, cache=path, **kw)
    s = sc2.score(texts)
    assert counting.prompts == 4  # only the unfinished items
    again = CountingBackend(inner)
    s2 = ClassificationScorer(again, classes, cache=path, **kw).score(texts)
    assert again.prompts == 0
    np.testing.assert_array_equal(s.logits, s2.logits)
    fresh = ClassificationScorer(inner, classes, **kw).score(texts)
    np.testing.assert_allclose(s.logits, fresh.logits, atol=1e-5)
    # a different prompt is a different key
    other = CountingBackend(inner)
    ClassificationScorer(other, classes, PromptTemplate(system_prompt="x"), cache=path, **kw).score(
        texts[:2]
    )
    assert other.prompts == 2


def test_scorer_input_errors(tiny_llama, tiny_tokenizer):
    be = make_backend(tiny_llama, tiny_tokenizer)
    with pytest.raises(ValueError, match="mode"):
        ClassificationScorer(be, ["a", "b"], mode="bogus")  # type: ignore[arg-type]
    sc = ClassificationScorer(be, ["objective", "subjective"], progress=False)
    with pytest.raises(ValueError, match="empty"):
        sc.score([])
    with pytest.raises(ValueError, match="not one string"):
        sc.score("text")
    with pytest.raises(ValueError, match="not among the classes"):
        sc.score(["x"], labels=["neutral"])
    with pytest.raises(ValueError, match="shape"):
        sc.score(["x", "y"], labels=[0])
    with pytest.raises(ValueError, match="cache"):
        ClassificationScorer(be, ["objective", "subjective"], cache=3.5).score(["x"])  # type: ignore[arg-type]


def test_mcq_scorer_equation_1_by_hand():
    table = {
        "Q1": [{"A": -1.0, " B": -0.5, "C": -2.0, "D": -3.0}],
        "Q2": [{"A": -0.1, "B": -2.0, "C": -0.3, "D": -0.01}],
    }
    be = ScriptedBackend(table, {"Q1": "B", "Q2": "A"})
    items = [
        {"question": "Q1", "choices": ["w", "x", "y", "z"], "answer": 1, "id": "q1"},
        {"question": "Q2", "choices": ["w", "x", "y"], "answer": 0, "id": "q2"},
    ]
    s = MultipleChoiceScorer(be, progress=False).score(items)
    assert s.classes == ("A", "B", "C", "D") and s.labels.tolist() == [1, 0]
    z = np.array([-1.0, -0.5, -2.0, -3.0])
    np.testing.assert_allclose(s.probs[0], np.exp(z) / np.exp(z).sum())
    assert s.logits[1, 3] == MISSING_OPTION_LOGIT and s.probs[1, 3] == 0.0  # only 3 options
    z2 = np.array([-0.1, -2.0, -0.3])
    np.testing.assert_allclose(s.probs[1, :3], np.exp(z2) / np.exp(z2).sum())
    g = MultipleChoiceScorer(be, mode="generate", max_new_tokens=1, progress=False).score(items)
    assert g.per_item["answer_index"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="out of range"):
        MultipleChoiceScorer(be, progress=False).score(
            [{"question": "q", "choices": ["a", "b"], "answer": 5}]
        )
    with pytest.raises(ValueError, match="n_options"):
        MultipleChoiceScorer(be, n_options=3, progress=False).score(items[:1])


def test_mcq_scorer_tiny_model_matches_reference(tiny_llama, tiny_tokenizer):
    be = make_backend(tiny_llama, tiny_tokenizer, batch_size=2)
    items = [
        {
            "question": "Which of the following is very difficult?",
            "choices": list("wxyz"),
            "answer": 0,
        },
        {"question": "Which is it?", "choices": list("wxyzv"), "answer": 4},
        {"question": "Which of the following?", "choices": list("wxy"), "answer": 2},
    ]
    sc = MultipleChoiceScorer(be, progress=False)
    s = sc.score(items)
    assert s.logits.shape == (3, 5)
    sets = sc.token_sets(5)
    for r, it in enumerate(items):
        ref = ref_next_logprobs(tiny_llama, be.encode(sc.prompt(it["question"], it["choices"])))
        for k in range(len(it["choices"])):
            ids = [i for t in sets.tokens[k] for i in be.token_ids(t)]
            assert math.isclose(s.logits[r, k], float(ref[ids].max()), abs_tol=1e-4)
        assert np.all(s.logits[r, len(it["choices"]) :] == MISSING_OPTION_LOGIT)
    np.testing.assert_allclose(s.probs.sum(axis=1), 1.0)


def test_scores_roundtrip_with_meta(tmp_path, tiny_llama, tiny_tokenizer):
    from calibkit.scores import Scores

    be = make_backend(tiny_llama, tiny_tokenizer)
    s = ClassificationScorer(be, ["objective", "subjective"], max_new_tokens=2, progress=False)
    s = s.score(TEXTS[:3], labels=[0, 1, 0])
    back = Scores.load(s.save(tmp_path / "s.parquet"))
    np.testing.assert_allclose(back.logits, s.logits)
    assert back.per_item["answer_text"].tolist() == s.per_item["answer_text"].tolist()
    json.dumps(s.meta)  # meta stays JSON-able


def test_scoring_package_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, calibkit.scoring, calibkit.scoring.prompts, calibkit.datasets;"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------- models + CLI
def test_resolve_model_specs(tmp_path):
    from calibkit.scoring.models import resolve_model

    spec = resolve_model(None)
    assert spec.name == "smollm2-135m-instruct" and spec.path.endswith(".gguf")
    assert resolve_model("smollm2") == spec
    assert resolve_model("gemma3-270m").name == "gemma3-270m"
    assert resolve_model("org/model").source == "hub"
    assert resolve_model(str(tmp_path)).source == "folder"
    with pytest.raises(ValueError, match="GGUF file not found"):
        resolve_model(tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="unknown model"):
        resolve_model("no such model")
    from calibkit.scoring.models import load_causal_lm

    with pytest.raises(ValueError, match="dtype"):
        load_causal_lm(tmp_path, dtype="int8")


@pytest.fixture(scope="module")
def tiny_folder(tiny_llama, tiny_tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-llama"
    tiny_llama.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_cli_score_classify_and_mcq(tiny_folder, tiny_llama, tiny_tokenizer, tmp_path):
    import pandas as pd

    from calibkit.cli.main import main
    from calibkit.scores import Scores

    data = tmp_path / "d.csv"
    pd.DataFrame(
        {
            "text": TEXTS,
            "label": ["objective", "subjective"] * 2 + ["objective"],
            "id": list("abcde"),
        }
    ).to_csv(data, index=False)
    out = tmp_path / "s.parquet"
    argv = ["score", "--model", str(tiny_folder), "--data", str(data), "--mode", "next_token"]
    assert main([*argv, "--no-cache", "-o", str(out)]) == 0
    s = Scores.load(out)
    assert s.classes == ("objective", "subjective") and len(s) == 5
    assert s.ids.tolist() == list("abcde")
    direct = ClassificationScorer(
        make_backend(tiny_llama, tiny_tokenizer), s.classes, mode="next_token", progress=False
    ).score(TEXTS)
    np.testing.assert_allclose(s.logits, direct.logits, atol=1e-5)
    # --limit takes a seeded subset; few-shot examples are not scored
    assert main([*argv, "--no-cache", "--limit", "3", "-o", str(out)]) == 0
    assert len(Scores.load(out)) == 3
    assert main([*argv, "--no-cache", "--few-shot", "2", "-o", str(out)]) == 0
    assert len(Scores.load(out)) == 3

    mcq = tmp_path / "q.jsonl"
    rows = [
        {
            "question": "Which of the following?",
            "choices": ["w", "x", "y", "z"],
            "answer": 1,
            "id": "q1",
        },
        {"question": "Which is it?", "choices": ["w", "x", "y"], "answer": 2, "id": "q2"},
    ]
    mcq.write_text("\n".join(json.dumps(r) for r in rows))
    out2 = tmp_path / "m.csv"
    cache = tmp_path / "c.sqlite"
    assert (
        main(
            [
                "score",
                "--model",
                str(tiny_folder),
                "--data",
                str(mcq),
                "--task",
                "mcq",
                "--cache",
                str(cache),
                "-o",
                str(out2),
            ]
        )
        == 0
    )
    m = Scores.load(out2)
    assert m.classes == ("A", "B", "C", "D") and m.labels.tolist() == [1, 2]
    assert ScoreCache(cache).__len__() == 2


def test_cli_score_errors(tiny_folder, tmp_path, capsys):
    from calibkit.cli.main import main

    assert main(["score", "--data", "nope", "-o", str(tmp_path / "x.parquet")]) == 2
    assert "neither a file" in capsys.readouterr().err
    data = tmp_path / "d.csv"
    data.write_text("text\nhello\n")
    assert (
        main(
            [
                "score",
                "--model",
                str(tiny_folder),
                "--data",
                str(data),
                "-o",
                str(tmp_path / "x.parquet"),
            ]
        )
        == 2
    )
    assert "--classes" in capsys.readouterr().err
    assert main(["score", "--data", str(data), "-o", str(tmp_path / "x.txt")]) == 2


def test_make_backend_dispatch_and_answer_confidence_guard():
    from calibkit.scoring.backends import make_backend as mk
    from calibkit.scoring.backends.openai_http import OpenAICompatibleBackend

    be = mk("openai:http://127.0.0.1:9/v1::some-model")
    assert isinstance(be, OpenAICompatibleBackend)
    table = {"Text: a": [{"yes": -0.1, "no": -3.0}], "Text: b": [{"yes": -2.0, "no": -0.2}]}
    s = ClassificationScorer(
        ScriptedBackend(table, {"Text: a": "no", "Text: b": "No"}),
        ["yes", "no"],
        max_new_tokens=1,
        progress=False,
    ).score(["a", "b"])
    # step 4 keeps the score of the model's *answer* even when it is not the argmax
    np.testing.assert_allclose(answer_confidence(s)[0], 1 - s.probs[0, 0])
    # per-item answers travel with the rows (issue #10 item 8): a subset keeps row 1's answer
    np.testing.assert_allclose(answer_confidence(s.subset([1])), answer_confidence(s)[[1]])
    np.testing.assert_allclose(answer_confidence(s.subset([1, 0])), answer_confidence(s)[[1, 0]])
