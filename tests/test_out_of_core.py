"""Out-of-core evaluation (calibkit.metrics.out_of_core): a multi-file Parquet dataset streamed in
batches gives the in-memory metrics (to 1e-9), in memory that does not grow with the rows.

References: the ``calibkit.metrics`` functions on the concatenated arrays, ``calibkit evaluate
--json`` on the same rows in one file (the in-memory command), scikit-learn's ``roc_auc_score``
for the AUROC (within the reported histogram bound).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from sklearn.metrics import roc_auc_score  # noqa: E402

from calibkit import metrics as m  # noqa: E402
from calibkit._math import softmax  # noqa: E402
from calibkit.cli.main import main  # noqa: E402
from calibkit.metrics.out_of_core import (  # noqa: E402
    AurocHistogram,
    StreamingEvaluator,
    evaluate_parquet,
)

EXACT = ("accuracy", "ece", "mce", "rms_ce", "conf_ece", "cw_ece", "brier", "nll")


def _write_parts(df: pd.DataFrame, root: Path, cuts: list[int]) -> Path:
    """Rows split into files at ``cuts`` (one in a sub-folder), plus the whole table."""
    (root / "parts" / "sub").mkdir(parents=True)
    bounds = [0, *cuts, len(df)]
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        where = root / "parts" / ("sub" if i == 1 else "") / f"part{i}.parquet"
        df.iloc[a:b].to_parquet(where, index=False)
    df.to_parquet(root / "whole.parquet", index=False)
    return root / "parts"


def _in_memory(path: Path, capsys: Any, *extra: str) -> dict[str, Any]:
    assert main(["evaluate", str(path), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _probs_frame(n: int, k: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = softmax(rng.normal(size=(n, k)) * 2.5, axis=1)
    p[:50, 0], p[:50, 1:] = 1.0, 0.0  # exact 0/1 probabilities are kept as the file has them
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, k - 1)
    names = [f"c{j}" for j in range(k)]
    df = pd.DataFrame({f"prob_{c}": p[:, j] for j, c in enumerate(names)})
    df["label"] = [names[i] for i in y]
    return df, p, y


def test_multifile_probabilities_equal_in_memory(tmp_path: Path, capsys: Any) -> None:
    df, p, y = _probs_frame(30_011, 4, seed=0)
    parts = _write_parts(df, tmp_path, [7_000, 19_999])
    res = evaluate_parquet(parts, batch_rows=4_096, n_bins=15)
    assert res.n == len(df) and res.classes == ("c0", "c1", "c2", "c3") and len(res.files) == 3
    # files are read in sorted path order: part0, part2, sub/part1 -> compare as a multiset
    ref = {
        "accuracy": m.accuracy(p, y),
        "ece": m.ece(p, y, 15),
        "mce": m.mce(p, y, 15),
        "rms_ce": m.rms_ce(p, y, 15),
        "conf_ece": m.conf_ece(p, y, 15),
        "cw_ece": m.classwise_ece(p, y, 15),
        "brier": m.brier_score(p, y),
        "nll": m.nll(p, y),
        "debiased_ece": m.debiased_ece(p, y, 15),
    }
    for k, v in ref.items():
        assert res.metrics[k] == pytest.approx(v, abs=1e-9, rel=0), k
    mem = _in_memory(tmp_path / "whole.parquet", capsys, "--bins", "15")
    for k in EXACT:
        assert res.metrics[k] == pytest.approx(mem["metrics"][k], abs=1e-9, rel=0), k
    counts = [r["count"] for r in mem["reliability_table"]]
    np.testing.assert_array_equal(res.reliability.count, counts)
    # AUROC of the confidence for correctness: within the stated bound of the exact value
    s, o = m.binned_outcomes(p, y)
    exact = roc_auc_score(o, s)
    assert 0 < res.metrics["auroc_bound"] < 1e-4
    assert abs(res.metrics["auroc"] - exact) <= res.metrics["auroc_bound"] + 1e-12


def test_logit_columns_positive_view_and_cli(tmp_path: Path, capsys: Any) -> None:
    rng = np.random.default_rng(1)
    n = 12_345
    z = rng.normal(size=(n, 2)) * 3
    y = (rng.random(n) < softmax(z, axis=1)[:, 1]).astype(int)
    df = pd.DataFrame({"logit_neg": z[:, 0], "logit_pos": z[:, 1], "label": y})
    parts = _write_parts(df, tmp_path, [5_000, 5_001])
    for extra in ([], ["--positive", "pos"]):
        mem = _in_memory(tmp_path / "whole.parquet", capsys, *extra)
        assert main(["evaluate", str(parts), "--json", "--batch-rows", "3000", *extra]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["engine"] == "pyarrow" and got["n"] == n and got["view"] == mem["view"]
        for k in EXACT:
            assert got["metrics"][k] == pytest.approx(mem["metrics"][k], abs=1e-9, rel=0), k
    # the NLL of logit columns is the exact log-softmax (as in memory), not clipped probabilities
    p1 = softmax(z, axis=1)[:, 1]
    assert got["metrics"]["nll"] == pytest.approx(
        m.nll(z[:, 1] - z[:, 0], y, from_logits=True), abs=1e-9
    )
    assert got["metrics"]["ece"] == pytest.approx(m.ece(p1, y), abs=1e-9)


def test_labels_are_mapped_on_the_whole_column(tmp_path: Path, capsys: Any) -> None:
    """Columns logit_1..logit_3 with labels 0..2: the whole column is read as indices (label 0 is
    no class name). A file holding only labels 1 and 2 must not switch to names on its own."""
    rng = np.random.default_rng(2)
    n = 3_000
    z = rng.normal(size=(n, 3))
    y = np.where(np.arange(n) < 1_000, 1 + (np.arange(n) % 2), rng.integers(0, 3, n))
    df = pd.DataFrame({f"logit_{j + 1}": z[:, j] for j in range(3)} | {"label": y})
    parts = _write_parts(df, tmp_path, [1_000, 2_000])
    res = evaluate_parquet(parts, batch_rows=500)
    mem = _in_memory(tmp_path / "whole.parquet", capsys)
    for k in EXACT:
        assert res.metrics[k] == pytest.approx(mem["metrics"][k], abs=1e-9, rel=0), k
    assert res.metrics["accuracy"] == pytest.approx(m.accuracy(z, y, from_logits=True), abs=1e-12)


def test_binary_prob_column_with_true_false_labels(tmp_path: Path, capsys: Any) -> None:
    rng = np.random.default_rng(3)
    n = 4_000
    p = rng.random(n)
    lab = np.where(rng.random(n) < p, "true", "false")
    lab[:1_500] = "true"  # the first file holds one class only
    df = pd.DataFrame({"prob": p, "label": lab})
    parts = _write_parts(df, tmp_path, [1_500, 2_500])
    res = evaluate_parquet(parts, batch_rows=999)
    assert res.classes == ("false", "true")
    mem = _in_memory(tmp_path / "whole.parquet", capsys)
    for k in EXACT:
        assert res.metrics[k] == pytest.approx(mem["metrics"][k], abs=1e-9, rel=0), k


def test_errors_name_the_file_and_rows(tmp_path: Path) -> None:
    df, _, _ = _probs_frame(2_000, 3, seed=4)
    bad = df.copy()
    bad.loc[1_234, "prob_c1"] = np.nan
    d = tmp_path / "d"
    d.mkdir()
    df.iloc[:1_000].to_parquet(d / "a.parquet", index=False)
    bad.iloc[1_000:].to_parquet(d / "b.parquet", index=False)
    with pytest.raises(ValueError, match=r"b\.parquet, rows 0\.\.499 .*'prob_c1'.*row 234"):
        evaluate_parquet(d, batch_rows=500)
    nolab = df.iloc[1_000:].copy()
    nolab["label"] = nolab["label"].where(np.arange(1_000) != 7, None)
    nolab.to_parquet(d / "b.parquet", index=False)
    with pytest.raises(ValueError, match=r"b\.parquet: label column 'label' has 1 missing.*row 7"):
        evaluate_parquet(d)
    df.iloc[:10].drop(columns="prob_c2").to_parquet(d / "b.parquet", index=False)
    with pytest.raises(ValueError, match="same columns"):
        evaluate_parquet(d)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"holds no \.parquet"):
        evaluate_parquet(empty)
    assert main(["evaluate", str(empty)]) == 2  # a directory goes the streaming way
    assert main(["evaluate", str(d / "a.parquet"), "--stream", "--binning", "quantile"]) == 2
    assert main(["evaluate", str(d / "a.parquet"), "--stream", "--bootstrap", "10"]) == 2


def test_auroc_histogram_bound_and_merge() -> None:
    rng = np.random.default_rng(5)
    s = np.round(rng.random(5_000), 3)  # many exact ties
    o = rng.random(5_000) < s
    for bins in (10, 1_000, 1 << 20):
        h = AurocHistogram(bins).update(s[:2_000], o[:2_000])
        h.merge(AurocHistogram(bins).update(s[2_000:], o[2_000:]))
        assert abs(h.auroc() - roc_auc_score(o, s)) <= h.bound() + 1e-12
    # fine bins resolve these 3-decimal scores: each bin holds one distinct value, exact result
    fine = AurocHistogram(1 << 20).update(s, o)
    assert fine.auroc() == pytest.approx(roc_auc_score(o, s), abs=1e-12)
    import pickle

    back = pickle.loads(pickle.dumps(fine))
    np.testing.assert_array_equal(back.pos, fine.pos)
    np.testing.assert_array_equal(back.neg, fine.neg)
    with pytest.raises(ValueError, match="both outcomes"):
        AurocHistogram(8).update([0.5, 0.7], [True, True]).auroc()
    ev = StreamingEvaluator(10)
    ev.update(np.array([[0.6, 0.4]]), [0])
    with pytest.raises(ValueError, match="with every batch or with none"):
        ev.update(np.array([[0.6, 0.4]]), [0], logits=np.zeros((1, 2)))


_MEASURE = textwrap.dedent(
    """
    import json, sys, tracemalloc
    import pyarrow as pa
    from calibkit.metrics.out_of_core import evaluate_parquet
    evaluate_parquet(sys.argv[1], batch_rows=65536)  # warm-up: imports and caches
    tracemalloc.start()
    res = evaluate_parquet(sys.argv[1], batch_rows=65536)
    py_peak = tracemalloc.get_traced_memory()[1]
    print(json.dumps({"n": res.n, "py_peak": py_peak,
                      "arrow_peak": pa.default_memory_pool().max_memory()}))
    """
)


@pytest.mark.slow
def test_memory_does_not_grow_with_rows(tmp_path: Path) -> None:
    """Peak memory (numpy/Python via tracemalloc + Arrow's pool) for 200k and 3M rows: the same
    bound, below the in-memory size of the larger table (3M x (2 float64 + int8) = 57 MB)."""
    peaks = {}
    for n in (200_000, 3_000_000):
        rng = np.random.default_rng(n)
        p = rng.random(n)
        tab = pa.table({"prob_a": 1 - p, "prob_b": p, "label": (rng.random(n) < p).astype(np.int8)})
        f = tmp_path / f"s{n}.parquet"
        pq.write_table(tab, f, row_group_size=131_072)
        del tab, p
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(f)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        assert r["n"] == n
        peaks[n] = r["py_peak"] + r["arrow_peak"]
    # measured: about 25 MB + 11 MB for both sizes (the AUROC histogram is 2 x 8 MB of it)
    assert peaks[3_000_000] < 48e6, peaks  # the 3M-row table alone is 57 MB in memory
    assert peaks[3_000_000] < 1.1 * peaks[200_000] + 2e6, peaks
