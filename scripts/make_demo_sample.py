"""Build the small samples bundled in ``src/calibkit/data`` from the shared real datasets.

    python scripts/make_demo_sample.py [--data-dir ../shared/data]

* ``subj_sample.csv``: 300 SUBJ sentences, 150 objective + 150 subjective, drawn with
  ``numpy.random.default_rng(0)`` (``--seed``), rows shuffled with the same generator;
* ``arc_challenge_sample.jsonl``: 100 ARC-Challenge test questions drawn likewise;
* ``sst2_sample.csv``: 300 SST-2 test sentences (150 negative + 150 positive, ``split=test``) plus
  the 4 short training sentences (2 per class, ``split=train``) that ``calibkit demo`` shows as
  in-context examples: exactly the items and examples of ``calibkit cascade``'s SST-2 sample
  (seed 0), whose SmolLM2 4-shot scores are the committed fixture ``sst2__smollm2-fs.parquet``.

The output is deterministic: rerunning the script reproduces the files byte for byte.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from calibkit.datasets import MCQ, default_data_dir, load_classification

OUT = Path(__file__).resolve().parents[1] / "src" / "calibkit" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="shared data folder (default: auto)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-subj", type=int, default=300)
    ap.add_argument("--n-arc", type=int, default=100)
    ap.add_argument("--n-sst2", type=int, default=300)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    df = load_classification("subj", data_dir=args.data_dir)
    per = args.n_subj // 2
    parts = []
    for label in sorted(df["label"].unique()):
        rows = df[df["label"] == label]
        parts.append(rows.iloc[np.sort(rng.choice(len(rows), size=per, replace=False))])
    sample = np.concatenate([p.index.to_numpy() for p in parts])
    out = df.loc[rng.permutation(sample), ["text", "label", "label_id"]]
    OUT.mkdir(parents=True, exist_ok=True)
    out.to_csv(OUT / "subj_sample.csv", index=False, lineterminator="\n")

    root = Path(args.data_dir) if args.data_dir else default_data_dir()
    path = root / MCQ["arc_challenge"]["test"]
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    pick = np.sort(rng.choice(len(lines), size=args.n_arc, replace=False))
    keep = ("question", "choices", "answer", "answer_letter", "subject", "id")
    with open(OUT / "arc_challenge_sample.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        for i in pick:
            row = json.loads(lines[i])
            fh.write(json.dumps({k: row[k] for k in keep if k in row}, ensure_ascii=False) + "\n")
    n_sst2 = _sst2_sample(args.data_dir, args.seed, args.n_sst2)
    print(
        f"wrote {len(out)} SUBJ rows, {len(pick)} ARC-Challenge questions and {n_sst2} SST-2 rows "
        f"to {OUT}"
    )


def _sst2_sample(data_dir: str | None, seed: int, n: int) -> int:
    """``sst2_sample.csv``: the ``n`` balanced SST-2 test items of ``calibkit cascade``'s sample
    (``calibkit.experiments.cascade.sample_items("sst2", n, seed)``, in its order, ``split=test``)
    followed by its 4 in-context examples (``split=train``, in prompt order), so the demo's
    scores can be checked against the committed fixture ``tests/fixtures/ensemble/
    sst2__smollm2-fs.parquet``."""
    from calibkit.experiments.cascade import sample_items

    texts, labels, ids, demos = sample_items("sst2", n, seed, data_dir)
    classes = ["negative", "positive"]
    rows = [
        (t, lab, classes.index(lab), "test", i)
        for t, lab, i in zip(texts, labels, ids, strict=True)
    ]
    rows += [(t, lab, classes.index(lab), "train", "") for t, lab in demos[:4]]
    import pandas as pd

    out = pd.DataFrame(rows, columns=["text", "label", "label_id", "split", "id"])
    out.to_csv(OUT / "sst2_sample.csv", index=False, lineterminator="\n")
    return len(out)


if __name__ == "__main__":
    main()
