"""Build the small samples bundled in ``src/calibkit/data`` from the shared real datasets.

    python scripts/make_demo_sample.py [--data-dir ../shared/data]

* ``subj_sample.csv``: 300 SUBJ sentences, 150 objective + 150 subjective, drawn with
  ``numpy.random.default_rng(0)`` (``--seed``), rows shuffled with the same generator;
* ``arc_challenge_sample.jsonl``: 100 ARC-Challenge test questions drawn likewise.

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
    print(f"wrote {len(out)} SUBJ rows and {len(pick)} ARC-Challenge questions to {OUT}")


if __name__ == "__main__":
    main()
