"""Scoring throughput: calibkit's scorer vs a naive per-example ``generate`` loop (SmolLM2).

    python benchmarks/scoring.py [--n 200] [--max-new-tokens 3] [--batch-size 16] [--json out.json]

On the same ``--n`` SUBJ sentences (seeded sample of ../shared/data/subj, falling back to the
bundled sample), zero-shot, with the bundled SmolLM2-135M-Instruct in float32, and the prompt of ``calibkit demo`` (appendix C
label descriptions; ``--prompt minimal`` for the bare class list):

* **naive**: for each sentence, ``model.generate(do_sample=False, output_scores=True,
  return_dict_in_generate=True)`` on the chat prompt, then paper 001's max aggregation of the
  matching tokens' log-probabilities over the generated positions;
* **calibkit generate**: :class:`ClassificationScorer` ``mode="generate"`` (batched, left-padded,
  shared-prefix KV reuse, same ``T``);
* **calibkit next_token**: one forward pass per batch, first answer position only.

The three must agree (class logits to 1e-3 where the positions coincide; this is checked and
printed). A second table compares prefix reuse on/off on a 5-shot prompt (examples drawn from
sentences not scored). No score cache is used. The methods run in interleaved rounds of
``--chunk`` items, so drifting machine load affects them alike; "model tokens / item" (token
positions the model ran) is the load-independent part of the comparison. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np


def _items(n: int, seed: int) -> tuple[list[str], list[str], Any]:
    from calibkit import datasets

    try:
        df = datasets.load_classification("subj")
    except FileNotFoundError:
        df = datasets.load_bundled_sample("subj")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(df))
    pick, rest = idx[:n], idx[n:]
    return df["text"].iloc[pick].tolist(), df["label"].iloc[pick].tolist(), df.iloc[rest]


def naive_scores(
    backend: Any, scorer: Any, texts: list[str], max_new_tokens: int
) -> tuple[np.ndarray, int]:
    """Per-example ``generate(output_scores=True)`` + max aggregation: the baseline.

    Returns the ``(n, K)`` class logits and the number of token positions the model ran.
    """
    import torch

    model, tok = backend.model, backend.tokenizer
    sets = scorer.token_sets
    ids_per_class = [sorted({i for t in ts for i in backend.token_ids(t)}) for ts in sets.tokens]
    out = np.empty((len(texts), len(ids_per_class)))
    n_tokens = 0
    for r, text in enumerate(texts):
        chat_text = tok.apply_chat_template(
            scorer.prompt(text), tokenize=False, add_generation_prompt=True
        )
        enc = tok(chat_text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            gen = model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=tok.pad_token_id,
                eos_token_id=sorted(backend._eos),
            )
        n_tokens += enc["input_ids"].shape[1] + len(gen.scores) - 1
        lps = [torch.log_softmax(s[0].float(), -1) for s in gen.scores]
        for c, ids in enumerate(ids_per_class):
            out[r, c] = max(float(lp[ids].max()) for lp in lps)
    return out, n_tokens


class _Meter:
    """Accumulates seconds and model token positions of one method over interleaved chunks."""

    def __init__(self, name: str):
        self.name, self.seconds, self.tokens, self.n = name, 0.0, 0, 0
        self.parts: list[Any] = []

    def run(self, fn: Any, n: int, backend: Any) -> None:
        before = backend.stats["forward_tokens"]
        t0 = time.perf_counter()
        res = fn()
        self.seconds += time.perf_counter() - t0
        if isinstance(res, tuple):  # naive: (logits, tokens)
            res, toks = res
            self.tokens += toks
        else:
            self.tokens += backend.stats["forward_tokens"] - before
        self.n += n
        self.parts.append(res)

    def logits(self) -> np.ndarray:
        return np.concatenate([p if isinstance(p, np.ndarray) else p.logits for p in self.parts])


def _table(meters: list[_Meter], label: str) -> list[str]:
    base = meters[0].seconds / meters[0].n
    lines = [
        f"| {label} | seconds | items/s | model tokens / item | speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in meters:
        lines.append(
            f"| {m.name} | {m.seconds:.1f} | {m.n / m.seconds:.2f} | {m.tokens / m.n:.0f} "
            f"| {base / (m.seconds / m.n):.1f}x |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--max-new-tokens", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=40, help="items per interleaved round")
    ap.add_argument(
        "--prompt",
        choices=("demo", "minimal"),
        default="demo",
        help="demo: appendix C label descriptions (as calibkit demo); minimal: class list only",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()

    import torch

    from calibkit.scoring.backends.transformers_backend import TransformersBackend
    from calibkit.scoring.classify import ClassificationScorer
    from calibkit.scoring.prompts import APPENDIX_C_DESCRIPTIONS, PromptTemplate

    texts, labels, rest = _items(args.n, args.seed)
    classes = ["objective", "subjective"]
    backend = TransformersBackend.from_pretrained(batch_size=args.batch_size)
    T = args.max_new_tokens
    kw: dict[str, Any] = {"cache": None, "batch_size": args.batch_size, "progress": False}
    base = (
        PromptTemplate(label_descriptions=APPENDIX_C_DESCRIPTIONS["subj"])
        if args.prompt == "demo"
        else PromptTemplate()
    )
    gen = ClassificationScorer(backend, classes, base, mode="generate", max_new_tokens=T, **kw)
    nt = ClassificationScorer(backend, classes, base, mode="next_token", **kw)
    shots = base.with_examples(
        rest["text"].tolist(), rest["label"].tolist(), args.shots, seed=args.seed
    )
    few = ClassificationScorer(backend, classes, shots, mode="next_token", **kw)
    gen.score(texts[:2])  # warm-up: vocabulary table, allocator
    naive_scores(backend, gen, texts[:1], T)

    main_m = [
        _Meter(f"naive per-example `generate(output_scores=True)`, T={T}"),
        _Meter(f"calibkit `generate`, T={T}, batch {args.batch_size}, prefix reuse"),
        _Meter(f"calibkit `next_token`, batch {args.batch_size}, prefix reuse"),
    ]
    few_m = [_Meter("off"), _Meter("on")]

    def set_reuse(on: bool) -> None:
        backend.prefix_reuse = on  # stored prefixes stay: every method keeps its own anchor

    # Methods alternate over chunks (order reversed every other chunk), so a change in machine
    # load hits all of them alike.
    for k, s in enumerate(range(0, len(texts), args.chunk)):
        chunk, lab = texts[s : s + args.chunk], labels[s : s + args.chunk]
        n = len(chunk)
        jobs = [
            (main_m[0], lambda c=chunk: naive_scores(backend, gen, c, T), None),
            (main_m[1], lambda c=chunk, y=lab: gen.score(c, y), True),
            (main_m[2], lambda c=chunk, y=lab: nt.score(c, y), True),
            (few_m[0], lambda c=chunk, y=lab: few.score(c, y), False),
            (few_m[1], lambda c=chunk, y=lab: few.score(c, y), True),
        ]
        for meter, fn, reuse in jobs if k % 2 == 0 else jobs[::-1]:
            set_reuse(True if reuse is None else reuse)
            meter.run(fn, n, backend)
        print(f"round {k + 1}: {s + n}/{len(texts)} items", flush=True)
    set_reuse(True)

    z_gen, z_nt = main_m[1].logits(), main_m[2].logits()
    pos = np.concatenate([np.asarray(p.meta["max_position"]) for p in main_m[1].parts])
    first = pos == 0
    check = {
        "max |naive - calibkit generate|": float(np.abs(main_m[0].logits() - z_gen).max()),
        "max |generate - next_token| where position 1 decides": float(
            np.abs(z_gen[first] - z_nt[first]).max()
        ),
        "max |5-shot reuse - no reuse|": float(np.abs(few_m[0].logits() - few_m[1].logits()).max()),
    }
    acc = float(np.mean(np.argmax(z_gen, axis=1) == np.asarray([classes.index(y) for y in labels])))
    lines = [
        f"SmolLM2-135M-Instruct fp32 on CPU, {len(texts)} SUBJ items, zero-shot {args.prompt} "
        f"prompt (~{len(backend.encode(gen.prompt(texts[0])))} tokens), "
        f"torch threads {torch.get_num_threads()}",
        "",
        *_table(main_m, "method"),
        "",
        f"{args.shots}-shot prompt (~{len(backend.encode(few.prompt(texts[0])))} tokens), "
        "`next_token` mode:",
        "",
        *_table(few_m, "prefix reuse"),
        "",
        "agreement checks:",
        *[f"  {k}: {v:.2e}" for k, v in check.items()],
        f"  accuracy (generate): {acc:.3f}",
    ]
    print("\n" + "\n".join(lines))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "main": [vars(m) | {"parts": None} for m in main_m],
                    "prefix": [vars(m) | {"parts": None} for m in few_m],
                    "checks": check,
                    "threads": torch.get_num_threads(),
                },
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
