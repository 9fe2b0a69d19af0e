"""Scoring throughput: calibkit's scorer vs a naive per-example ``generate`` loop (SmolLM2).

    python benchmarks/scoring.py [--n 200] [--max-new-tokens 3] [--batch-size 16] [--json out.json]

On the same ``--n`` SUBJ sentences (seeded sample of ../shared/data/subj, falling back to the
bundled sample), zero-shot, with the bundled SmolLM2-135M-Instruct in float32:

* **naive**: for each sentence, ``model.generate(do_sample=False, output_scores=True,
  return_dict_in_generate=True)`` on the chat prompt, then paper 001's max aggregation of the
  matching tokens' log-probabilities over the generated positions;
* **calibkit generate**: :class:`ClassificationScorer` ``mode="generate"`` (batched, left-padded,
  shared-prefix KV reuse, same ``T``);
* **calibkit next_token**: one forward pass per batch, first answer position only.

The three must agree (class logits to 1e-3 where the positions coincide; this is checked and
printed). A second table compares prefix reuse on/off on a 5-shot prompt (examples drawn from
sentences not scored). No score cache is used. Prints markdown tables.
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


def naive_scores(backend: Any, scorer: Any, texts: list[str], max_new_tokens: int) -> np.ndarray:
    """Per-example ``generate(output_scores=True)`` + max aggregation: the baseline."""
    import torch

    model, tok = backend.model, backend.tokenizer
    sets = scorer.token_sets
    ids_per_class = [sorted({i for t in ts for i in backend.token_ids(t)}) for ts in sets.tokens]
    out = np.empty((len(texts), len(ids_per_class)))
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
        lps = [torch.log_softmax(s[0].float(), -1) for s in gen.scores]
        for c, ids in enumerate(ids_per_class):
            out[r, c] = max(float(lp[ids].max()) for lp in lps)
    return out


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--max-new-tokens", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()

    import torch

    from calibkit.scoring.backends.transformers_backend import TransformersBackend
    from calibkit.scoring.classify import ClassificationScorer
    from calibkit.scoring.prompts import PromptTemplate

    texts, labels, rest = _items(args.n, args.seed)
    classes = ["objective", "subjective"]
    backend = TransformersBackend.from_pretrained(batch_size=args.batch_size)
    T = args.max_new_tokens
    kw: dict[str, Any] = {"cache": None, "batch_size": args.batch_size, "progress": False}
    gen = ClassificationScorer(backend, classes, mode="generate", max_new_tokens=T, **kw)
    nt = ClassificationScorer(backend, classes, mode="next_token", **kw)
    gen.score(texts[:2])  # warm-up: vocabulary table, first prefix cache, allocator

    rows: list[tuple[str, float, int]] = []
    s_gen, t_gen = _timed(lambda: gen.score(texts, labels))
    rows.append(
        (f"calibkit generate (T={T}, batch {args.batch_size}, prefix reuse)", t_gen, len(texts))
    )
    s_nt, t_nt = _timed(lambda: nt.score(texts, labels))
    rows.append((f"calibkit next_token (batch {args.batch_size}, prefix reuse)", t_nt, len(texts)))
    check: dict[str, float] = {}
    if not args.skip_naive:
        z_naive, t_naive = _timed(lambda: naive_scores(backend, gen, texts, T))
        rows.insert(
            0, (f"naive per-example generate(output_scores=True), T={T}", t_naive, len(texts))
        )
        check["max |naive - calibkit generate|"] = float(np.abs(z_naive - s_gen.logits).max())
    first = np.asarray(s_gen.meta["max_position"]) == 0
    check["max |generate - next_token| where position 1 decides"] = float(
        np.abs(s_gen.logits[first] - s_nt.logits[first]).max()
    )
    base = rows[0][1] / rows[0][2]

    # prefix reuse on a 5-shot prompt
    shots = PromptTemplate().with_examples(
        rest["text"].tolist(), rest["label"].tolist(), args.shots, seed=args.seed
    )
    prefix_rows = []
    for reuse in (False, True):
        backend.prefix_reuse = reuse
        backend.clear_prefix_cache()
        sc = ClassificationScorer(backend, classes, shots, mode="next_token", **kw)
        sc.score(texts[:2])
        s, t = _timed(lambda sc=sc: sc.score(texts, labels))
        prefix_rows.append((reuse, t, s))
    check["max |5-shot reuse - no reuse|"] = float(
        np.abs(prefix_rows[0][2].logits - prefix_rows[1][2].logits).max()
    )
    backend.prefix_reuse = True

    print(
        f"\nSmolLM2-135M-Instruct fp32, {len(texts)} SUBJ items, torch threads "
        f"{torch.get_num_threads()}\n"
    )
    print("| method | seconds | items/s | speed-up vs first row |")
    print("|---|---:|---:|---:|")
    for name, t, n in rows:
        print(f"| {name} | {t:.1f} | {n / t:.2f} | {base / (t / n):.1f}x |")
    ptoks = len(backend.encode(sc.prompt(texts[0])))
    print(f"\n{args.shots}-shot prompt (~{ptoks} tokens), next_token mode:\n")
    print("| prefix reuse | seconds | items/s | speed-up |")
    print("|---|---:|---:|---:|")
    t_off = prefix_rows[0][1]
    for reuse, t, _ in prefix_rows:
        print(f"| {'on' if reuse else 'off'} | {t:.1f} | {len(texts) / t:.2f} | {t_off / t:.1f}x |")
    print("\nagreement checks:")
    for k, v in check.items():
        print(f"  {k}: {v:.2e}")
    acc = float(np.mean(s_gen.prediction == s_gen.labels))
    print(f"  accuracy (generate): {acc:.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "rows": [{"method": m, "seconds": t, "n": n} for m, t, n in rows],
                    "prefix": [{"reuse": r, "seconds": t} for r, t, _ in prefix_rows],
                    "checks": check,
                    "threads": torch.get_num_threads(),
                },
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
