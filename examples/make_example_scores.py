"""Write the example scored files used by the README and docs/cli.md.

Trains a TF-IDF + logistic-regression sentiment classifier on the SST-2 train split
(``../shared/data/sst2/sst2.csv``, or ``$CALIBKIT_DATA/sst2/sst2.csv``) and writes its
probabilities on the dev and test splits. The regularisation is weak (``C = 100``), which
makes the model over-confident (test ECE about 0.07, about 0.03 after temperature scaling fitted
on dev): a common situation, and a useful example to calibrate.

* ``examples/sst2_dev_scores.csv``  (872 rows): fit a calibrator on it;
* ``examples/sst2_scores.csv``     (1821 rows): evaluate / apply on it.

Columns: ``id`` (row index within the split), ``label`` (negative / positive),
``prob_negative``, ``prob_positive``. Deterministic: the same data give the same files.

Usage::

    python examples/make_example_scores.py [--data PATH/TO/sst2.csv] [--out-dir examples]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def default_csv() -> Path:
    env = os.environ.get("CALIBKIT_DATA")
    base = Path(env) if env else HERE.parent.parent / "shared" / "data"
    return base / "sst2" / "sst2.csv"


def main(argv: list[str] | None = None) -> int:
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_csv(), help="path to sst2.csv")
    ap.add_argument("--out-dir", type=Path, default=HERE, help="where to write the CSVs")
    ap.add_argument("--C", type=float, default=100.0, help="inverse L2 strength of the model")
    args = ap.parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"{args.data} not found: pass --data or set CALIBKIT_DATA")

    df = pd.read_csv(args.data)
    train = df[df["split"] == "train"]
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vec.fit_transform(train["text"])
    model = LogisticRegression(C=args.C, max_iter=2000)
    model.fit(x_train, train["label_id"])
    names = sorted(df[["label_id", "label"]].drop_duplicates().itertuples(index=False))
    classes = [str(label) for _, label in names]  # label_id order: negative, positive

    for split, fname in (("dev", "sst2_dev_scores.csv"), ("test", "sst2_scores.csv")):
        part = df[df["split"] == split].reset_index(drop=True)
        probs = model.predict_proba(vec.transform(part["text"]))
        out = pd.DataFrame({"id": range(len(part)), "label": part["label"]})
        for j, c in enumerate(classes):
            out[f"prob_{c}"] = probs[:, j]
        path = args.out_dir / fname
        # %.8g keeps tiny probabilities (no rounding to 0) and rows sum to 1 within 1e-7
        tmp = path.with_name(f".{path.name}.tmp")
        out.to_csv(tmp, index=False, float_format="%.8g")
        os.replace(tmp, path)
        acc = float((probs.argmax(1) == part["label_id"].to_numpy()).mean())
        print(f"wrote {path} ({len(out)} rows, accuracy {acc:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
