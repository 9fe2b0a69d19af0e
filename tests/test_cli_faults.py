"""Issue 10 ("nothing silently wrong"), the file-input and CLI side: every fault ends in a correct
result or ONE ``error:`` line with exit 2 (130 for Ctrl-C), no traceback, no partial or hidden
files. Each test here fails on the code before the fix (see the comment naming the old
behaviour)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from calibkit import metrics
from calibkit.cli.main import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---------------------------------------------------------------------- helpers
@pytest.fixture
def example(tmp_path: Path) -> Path:
    dst = tmp_path / "in" / "sst2_scores.csv"
    dst.parent.mkdir(exist_ok=True)
    shutil.copy(EXAMPLES / "sst2_scores.csv", dst)
    return dst


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    dst = tmp_path / "in" / "sst2_dev_scores.csv"
    dst.parent.mkdir(exist_ok=True)
    shutil.copy(EXAMPLES / "sst2_dev_scores.csv", dst)
    return dst


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_error(capsys, argv: list[str], *needles: str) -> str:
    """Run in-process: exit 2, stderr exactly one ``error:`` line holding every needle."""
    rc, _, err = run_cli(capsys, argv)
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def subprocess_cli(args: list[str], cwd: Path | None = None, code: str | None = None) -> Any:
    """``python -m calibkit ARGS`` (or ``python -c CODE ARGS``), stdout/stderr piped."""
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "calibkit", *args]
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
        timeout=120,
    )


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def three_models(tmp_path: Path, n: int, seed: int) -> list[str]:
    """Three models' Scores files (parquet, class names neg/pos, ids item<i>)."""
    from calibkit import Scores

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    ids = np.array([f"item{i}" for i in range(n)])
    paths = []
    for k, name in enumerate(["a", "b", "c"]):
        z = rng.normal(0, 1, n) + (2 * y - 1) * (k + 1) * 0.5
        s = Scores(np.stack([np.zeros(n), z], axis=1), y, ("neg", "pos"), ids, {"model": name})
        paths.append(str(s.save(tmp_path / f"{name}.parquet")))
    return paths


def unwritable_dir(tmp_path: Path) -> Path:
    """A path whose folder cannot be written: chmod 0o555 where that binds, else (root) a path
    under a regular file, which no user can create."""
    if not IS_ROOT:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    return blocker / "sub"


# ---------------------------------------------------------------------- item 4: duplicates
def test_duplicated_score_or_label_column_is_an_error(capsys, tmp_path: Path) -> None:
    # old: the second logit_negative became class 'negative.1' (a third class), and a second
    # 'label' column became 'label.1', silently ignored
    f = tmp_path / "dup.csv"
    f.write_text(
        "label,logit_negative,logit_positive,logit_negative\n0,0.1,0.2,0.3\n1,0.3,0.1,0.0\n"
    )
    one_error(capsys, ["evaluate", f], "dup.csv", "'logit_negative' at columns 2, 4")
    g = tmp_path / "dup_label.csv"
    g.write_text("label,prob,label\n1,0.9,0\n0,0.2,1\n")
    one_error(capsys, ["evaluate", g], "'label' at columns 1, 3")
    h = tmp_path / "dup.jsonl"
    h.write_text('{"label": 1, "prob": 0.9}\n{"label": 0, "prob": 0.2, "prob": 0.7}\n')
    one_error(capsys, ["evaluate", h], "dup.jsonl", "file line 2", "'prob'")
    # a DataFrame built in Python with repeated names is refused too
    from calibkit.io import scores_from_table

    df = pd.DataFrame([[0, 0.4, 0.6, 0.5]], columns=["label", "prob_a", "prob_b", "prob_a"])
    with pytest.raises(ValueError, match="repeats column name"):
        scores_from_table(df)


# ---------------------------------------------------------------------- item 6: apply twice
def test_apply_records_provenance_and_refuses_to_calibrate_twice(
    capsys, tmp_path: Path, dev: Path, example: Path
) -> None:
    cal = tmp_path / "cal.json"
    assert run_cli(capsys, ["fit", dev, "-m", "temperature", "-o", cal])[0] == 0
    once = tmp_path / "once.csv"
    rc, out, _ = run_cli(capsys, ["apply", cal, example, "-o", once, "--json"])
    assert rc == 0
    fp = json.loads(out)["fingerprint"]
    df = pd.read_csv(once)
    assert (df["calibrated_by"] == fp).all() and fp.startswith("TemperatureScaling")
    # old: a second pass ran silently (ECE 0.026 -> 0.135); now refused, nothing written
    twice = tmp_path / "twice.csv"
    one_error(capsys, ["apply", cal, once, "-o", twice], "already calibrated", fp, "--force")
    assert not twice.exists()
    # --force allows it and chains the fingerprints
    assert run_cli(capsys, ["apply", cal, once, "-o", twice, "--force"])[0] == 0
    assert (pd.read_csv(twice)["calibrated_by"] == f"{fp}>{fp}").all()
    # -o equal to the input: refused (the input is untouched), allowed with --force
    before = example.read_bytes()
    one_error(capsys, ["apply", cal, example, "-o", example], "overwrite the input", "--force")
    assert example.read_bytes() == before
    same = tmp_path / "in" / "." / example.name  # another spelling of the same file
    one_error(capsys, ["apply", cal, example, "-o", same], "overwrite the input")
    one_error(capsys, ["apply", cal, example, "-o", cal], "calibrator file")
    assert run_cli(capsys, ["apply", cal, example, "-o", example, "--force"])[0] == 0
    assert "calibrated_by" in pd.read_csv(example).columns
    # a Scores file calibrated in Python carries the calibrator in its metadata: refused too
    from calibkit import Scores
    from calibkit.calibrators import load

    p = pd.read_csv(dev)[["prob_negative", "prob_positive"]].to_numpy()
    s = Scores.from_probs(p / p.sum(1, keepdims=True), classes=("negative", "positive"))
    done = load(cal).calibrate(s)
    path = done.save(tmp_path / "py_calibrated.parquet")
    one_error(capsys, ["apply", cal, path, "-o", tmp_path / "x.csv"], "already calibrated")


# ---------------------------------------------------------------------- item 7: NLL
def _isotonic_files(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Fit data where isotonic maps low scores to P(y=1) = 0 exactly, and eval data whose
    low-score items include a positive (true-class probability 0 after calibration)."""
    rng = np.random.default_rng(0)
    n = 400
    p1 = rng.uniform(0, 1, n)
    y = (p1 > 0.3).astype(int) * (rng.uniform(0, 1, n) < 0.9)
    y[p1 < 0.3] = 0
    fit = tmp_path / "fit.csv"
    pd.DataFrame({"label": y, "prob_0": 1 - p1, "prob_1": p1}).to_csv(fit, index=False)
    q1 = np.array([0.05, 0.1, 0.2, 0.6, 0.8, 0.95, 0.15, 0.7])
    yq = np.array([1, 0, 0, 1, 1, 1, 1, 0])
    ev = tmp_path / "eval.csv"
    pd.DataFrame({"label": yq, "prob_0": 1 - q1, "prob_1": q1}).to_csv(ev, index=False)
    return fit, ev, np.stack([1 - q1, q1], axis=1), yq


def test_fit_eval_nll_equals_the_python_api(capsys, tmp_path: Path) -> None:
    # old: the CLI clipped the calibrated probabilities at 1e-12 through Scores while
    # calibkit.metrics.nll used its own floor, so `fit --eval` and the API disagreed
    from calibkit.calibrators import load

    fit, ev, q, yq = _isotonic_files(tmp_path)
    cal_path = tmp_path / "iso.json"
    rc, out, err = run_cli(
        capsys, ["fit", fit, "-m", "isotonic", "-o", cal_path, "--eval", ev, "--json"]
    )
    assert rc == 0, err
    rep = json.loads(out)
    cal = load(cal_path)
    after = cal.predict_proba(q[:, 1] if getattr(cal, "binary_input_", False) else q)
    assert after[yq == 1, 1].min() == 0.0  # the case in question: a zero on the true class
    assert rep["eval"]["after"]["nll"] == metrics.nll(after, yq)
    assert rep["eval"]["before"]["nll"] == metrics.nll(q, yq)
    # evaluate on the same numbers agrees too
    calibrated = tmp_path / "after.csv"
    pd.DataFrame({"label": yq, "prob_0": after[:, 0], "prob_1": after[:, 1]}).to_csv(
        calibrated, index=False, float_format="%.17g"
    )
    rc, out, _ = run_cli(capsys, ["evaluate", calibrated, "--json"])
    assert json.loads(out)["metrics"]["nll"] == metrics.nll(after, yq)


def test_evaluate_nll_of_logits_is_exact(capsys, tmp_path: Path) -> None:
    # old: logits went through softmax and a probability floor: a true-class log-probability
    # of -40 counted as -36.04; exact log-softmax (by hand) is -40 - log(1 + e^-40)
    f = tmp_path / "logits.csv"
    pd.DataFrame({"label": [0, 1], "logit_a": [0.0, 0.0], "logit_b": [40.0, 2.0]}).to_csv(
        f, index=False
    )
    rc, out, _ = run_cli(capsys, ["evaluate", f, "--json"])
    assert rc == 0
    by_hand = (40.0 + np.log1p(np.exp(-40.0)) + np.log1p(np.exp(-2.0))) / 2
    assert json.loads(out)["metrics"]["nll"] == pytest.approx(by_hand, rel=1e-12)


# ---------------------------------------------------------------------- item 12: evaluate plots
def test_evaluate_writes_no_plot_unless_asked_and_a_failed_plot_is_a_warning(
    capsys, tmp_path: Path, example: Path, monkeypatch
) -> None:
    # old: a PNG was written next to the input by default, and an unwritable folder crashed
    # the command before any metric was printed
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    rc, out, err = run_cli(capsys, ["evaluate", example])
    assert rc == 0 and "ECE" in out and err == ""
    assert files_under(tmp_path) == before
    bad = unwritable_dir(tmp_path) / "rel.png"
    rc, out, err = run_cli(capsys, ["evaluate", example, "--plot", bad])
    assert rc == 0
    assert "ECE" in out and "Reliability table" in out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: reliability diagram"), err
    assert str(bad) in lines[0]
    rc, out, err = run_cli(capsys, ["evaluate", example, "--plot", bad, "--json"])
    rep = json.loads(out)
    assert rc == 0 and rep["plot"] is None and len(rep["warnings"]) == 1
    assert rep["metrics"]["ece"] == pytest.approx(
        metrics.ece(
            pd.read_csv(example)[["prob_negative", "prob_positive"]].to_numpy(),
            (pd.read_csv(example)["label"] == "positive").astype(int).to_numpy(),
        ),
        abs=1e-12,
    )
    # a plot path with no figure suffix is a usage error, found before any work
    one_error(capsys, ["evaluate", example, "--plot", tmp_path / "rel.txt"], "rel.txt", ".png")


# ---------------------------------------------------------------------- item 13: markup
def test_square_brackets_in_paths_and_labels_survive(capsys, tmp_path: Path) -> None:
    # old: rich ate "[draft]" from messages and "[/x]" raised MarkupError in the handler
    d = tmp_path / "[draft]"
    d.mkdir()
    f = d / "scores [v1].csv"
    f.write_text("label,prob_[/x],prob_[b]\n[/x],0.8,0.2\n[b],0.3,0.7\n[b],0.4,0.6\n")
    rc, out, err = run_cli(capsys, ["evaluate", f])
    assert rc == 0, err
    flat = " ".join(out.split())
    assert "[draft]" in flat and "[v1]" in flat and "[/x]" in flat and "[b]" in flat
    missing = d / "[" / "x]" / "missing.csv"  # the path text holds "[/x]"
    line = one_error(capsys, ["evaluate", missing], "[draft]/[/x]/missing.csv")
    assert "not found" in line
    cal = tmp_path / "[draft] cal.json"
    assert run_cli(capsys, ["fit", f, "-m", "temperature", "-o", cal])[0] == 0
    rc, out, _ = run_cli(capsys, ["apply", cal, f, "-o", d / "out [v2].csv"])
    assert rc == 0 and "out [v2].csv" in " ".join(out.split())


# ---------------------------------------------------------------------- item 14: OS errors
def test_os_and_format_errors_are_one_line(
    capsys, tmp_path: Path, example: Path, dev: Path
) -> None:
    cal = tmp_path / "cal.json"
    assert run_cli(capsys, ["fit", dev, "-o", cal])[0] == 0
    # -o pointing at a folder (old: IsADirectoryError traceback after the work)
    folder = tmp_path / "outdir.csv"  # a folder with a table suffix
    folder.mkdir()
    one_error(capsys, ["apply", cal, example, "-o", folder], "is a folder")
    one_error(capsys, ["fit", dev, "-o", folder], "is a folder")
    # read-only output folder (old: PermissionError traceback)
    ro = unwritable_dir(tmp_path)
    one_error(capsys, ["apply", cal, example, "-o", ro / "out.csv"], "out.csv")
    one_error(capsys, ["fit", dev, "-o", ro / "cal.json"], "cal.json")
    # corrupt and truncated .gz input (old: BadGzipFile / EOFError tracebacks)
    bad_gz = tmp_path / "bad.csv.gz"
    bad_gz.write_bytes(b"this is not gzip data at all\n")
    one_error(capsys, ["evaluate", bad_gz], "bad.csv.gz", "corrupt or truncated")
    good = gzip.compress(example.read_bytes())
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(good[: len(good) // 2])
    one_error(capsys, ["evaluate", cut], "cut.csv.gz", "corrupt or truncated")
    # the input is a folder
    one_error(capsys, ["evaluate", folder / "x.csv"], "not found")
    # calibrator files with missing / malformed fields name the file
    d = json.loads(cal.read_text())
    for name, broken in [
        ("no_fitted.json", {k: v for k, v in d.items() if k != "fitted"}),
        ("no_class.json", {k: v for k, v in d.items() if k != "class"}),
        ("list.json", [d]),
        ("bad_cli.json", {**d, "calibkit_cli": ["x"]}),
    ]:
        path = tmp_path / name
        path.write_text(json.dumps(broken))
        one_error(capsys, ["apply", path, example, "-o", tmp_path / "o.csv"], name)
    assert not (tmp_path / "o.csv").exists()


def test_zst_without_zstandard_names_the_package(
    capsys, tmp_path: Path, example: Path, dev: Path, monkeypatch
) -> None:
    # old: pandas' ImportError traceback after the work was done
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard -> ImportError
    cal = tmp_path / "cal.json"
    assert run_cli(capsys, ["fit", dev, "-o", cal])[0] == 0
    out = tmp_path / "out.csv.zst"
    one_error(capsys, ["apply", cal, example, "-o", out], "zstandard", "pip install")
    assert files_under(tmp_path) == [
        "cal.json",
        "in",
        "in/sst2_dev_scores.csv",
        "in/sst2_scores.csv",
    ]
    (tmp_path / "in.csv.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    one_error(capsys, ["evaluate", tmp_path / "in.csv.zst"], "zstandard")


def test_policy_and_edges_files_with_missing_fields(capsys, tmp_path: Path) -> None:
    paths = three_models(tmp_path, 60, seed=3)
    pol = tmp_path / "p.json"
    argv = ["cascade", "train", *paths, "--out", pol, "--edges", "0.7;0.7;0.7"]
    assert run_cli(capsys, argv)[0] == 0
    d = json.loads(pol.read_text())
    for field in ("edges", "strategies", "table"):
        broken = tmp_path / f"no_{field}.json"
        broken.write_text(json.dumps({k: v for k, v in d.items() if k != field}))
        out = tmp_path / "labels.csv"
        line = one_error(capsys, ["cascade", "apply", broken, *paths, "--out", out], broken.name)
        assert field in line
        assert not out.exists()
    edges = tmp_path / "edges.json"
    edges.write_text(json.dumps({"bins": [[0.5]]}))
    one_error(
        capsys,
        ["cascade", "train", *paths, "--out", tmp_path / "q.json", "--edges", edges],
        "edges.json",
        "'edges'",
    )


# ---------------------------------------------------------------------- item 15: bins bound
@pytest.mark.parametrize("command", ["evaluate", "fit", "apply"])
def test_huge_bins_is_refused_before_any_work(
    capsys, tmp_path: Path, example: Path, dev: Path, command: str
) -> None:
    # old: --bins 100000000 allocated 23.6 GB and was killed
    cal = tmp_path / "cal.json"
    assert run_cli(capsys, ["fit", dev, "-o", cal])[0] == 0
    argv = {
        "evaluate": ["evaluate", example],
        "fit": ["fit", dev, "-o", tmp_path / "c2.json"],
        "apply": ["apply", cal, example, "-o", tmp_path / "o.csv"],
    }[command]
    t0 = time.perf_counter()
    one_error(capsys, [*argv, "--bins", "100000000"], "--bins", "10000")
    assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "c2.json").exists() and not (tmp_path / "o.csv").exists()


# ---------------------------------------------------------------------- item 16: no output
def test_fit_checks_eval_and_plot_before_writing_the_calibrator(
    capsys, tmp_path: Path, dev: Path, example: Path
) -> None:
    # old: the calibrator was written, then --eval / --plot failed
    out = tmp_path / "cal.json"
    one_error(capsys, ["fit", dev, "-o", out, "--eval", tmp_path / "missing.csv"], "missing.csv")
    assert not out.exists()
    three = tmp_path / "three.csv"
    three.write_text("label,prob_a,prob_b,prob_c\na,0.2,0.3,0.5\n")
    one_error(capsys, ["fit", dev, "-o", out, "--eval", three], "three.csv", "classes")
    assert not out.exists()
    one_error(capsys, ["fit", dev, "-o", out, "--plot", tmp_path / "ba.txt"], "ba.txt")
    assert not out.exists()
    bad_plot = unwritable_dir(tmp_path) / "ba.png"
    one_error(capsys, ["fit", dev, "-o", out, "--plot", bad_plot], "ba.png")
    assert not out.exists()
    one_error(capsys, ["fit", dev, "-o", dev], "overwrite the input")
    assert dev.read_bytes() == (EXAMPLES / "sst2_dev_scores.csv").read_bytes()


def test_cascade_apply_validates_everything_before_writing_labels(capsys, tmp_path: Path) -> None:
    # old: the labels were written, then the cost summary failed with a zip() error
    paths = three_models(tmp_path, 60, seed=4)
    pol = tmp_path / "p.json"
    argv = ["cascade", "train", *paths, "--out", pol, "--edges", "0.7;0.7;0.7", "--costs", "1,2,3"]
    assert run_cli(capsys, argv)[0] == 0
    out = tmp_path / "labels.csv"
    one_error(capsys, ["cascade", "apply", pol, *paths, "--out", out, "--costs", "1,2"], "--costs")
    assert not out.exists()
    one_error(capsys, ["cascade", "apply", pol, *paths[:2], "--out", out], "3 models")
    assert not out.exists()
    one_error(capsys, ["cascade", "apply", pol, *paths, "--out", tmp_path / "l.txt"], "l.txt")
    one_error(capsys, ["cascade", "apply", pol, *paths, "--out", paths[0]], "overwrite the input")
    # train checks --out before the search
    folder = tmp_path / "dir"
    folder.mkdir()
    one_error(capsys, ["cascade", "train", *paths, "--out", folder, "--trials", "2"], "is a folder")
    assert files_under(folder) == []


def test_atomic_write_temp_files_are_visible_and_cleaned(tmp_path: Path) -> None:
    # old: a hidden ".name.XXXX.tmp" file stayed forever after kill -9
    from calibkit._atomic import TEMP_MARKER, atomic_write

    target = tmp_path / "out.csv"
    seen: list[str] = []
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        seen.append(tmp.name)
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert seen[0].startswith(f"out.csv{TEMP_MARKER}{os.getpid()}-") and seen[0].endswith(".csv")
    assert files_under(tmp_path) == []  # removed in `finally`
    # a real kill -9 in the middle of a write: the temp file is visible, the target untouched,
    # and the next write of the same target removes it
    target.write_text("old\n")
    code = textwrap.dedent(
        f"""
        import sys, time
        from calibkit._atomic import atomic_write
        with atomic_write({str(target)!r}) as tmp:
            tmp.write_text("half")
            print(tmp.name, flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    name = proc.stdout.readline().strip()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    left = tmp_path / name
    assert left.exists() and not name.startswith(".") and TEMP_MARKER in name
    assert target.read_text() == "old\n"
    with atomic_write(target) as tmp:
        tmp.write_text("new\n")
    assert target.read_text() == "new\n" and not left.exists()
    assert files_under(tmp_path) == ["out.csv"]
    # a temp file of a live process (this one) is never touched
    mine = tmp_path / f"out.csv{TEMP_MARKER}{os.getpid()}-x.csv"
    mine.write_text("in use")
    with atomic_write(target) as tmp:
        tmp.write_text("newer\n")
    assert mine.exists()


def test_apply_cleans_a_stale_temp_file_of_a_killed_run(
    capsys, tmp_path: Path, dev: Path, example: Path
) -> None:
    from calibkit._atomic import TEMP_MARKER

    cal = tmp_path / "cal.json"
    assert run_cli(capsys, ["fit", dev, "-o", cal])[0] == 0
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(proc.stdout)  # a pid that has exited
    stale = tmp_path / f"out.csv{TEMP_MARKER}{dead}-abc123.csv"
    stale.write_text("half-written")
    assert run_cli(capsys, ["apply", cal, example, "-o", tmp_path / "out.csv"])[0] == 0
    assert not stale.exists() and (tmp_path / "out.csv").exists()


# ---------------------------------------------------------------------- item 18: messages
def test_cascade_errors_name_file_and_column_and_accept_01_labels(capsys, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 80
    y = rng.integers(0, 2, n)
    paths = []
    for k in range(3):
        z = rng.normal(0, 1, n) + (2 * y - 1) * (k + 1) * 0.5
        df = pd.DataFrame(
            {
                "id": [f"i{i}" for i in range(n)],
                "label": y,
                "logit_neg": np.zeros(n),
                "logit_pos": z,
            }
        )
        paths.append(tmp_path / f"m{k}.csv")
        df.to_csv(paths[-1], index=False)
    # old: 0/1 labels were rejected ("labels ['0', '1'] are not among the classes")
    pol = tmp_path / "p.json"
    rc, _, err = run_cli(
        capsys, ["cascade", "train", *paths, "--out", pol, "--edges", "0.6;0.6;0.6"]
    )
    assert rc == 0, err
    # old: "No columns to parse from file" / "could not convert string to float: 'abc'"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    one_error(
        capsys,
        ["cascade", "apply", pol, empty, paths[1], paths[2], "--out", tmp_path / "o.csv"],
        "empty.csv",
    )
    bad = tmp_path / "bad.csv"
    text = paths[1].read_text().splitlines()
    cells = text[6].split(",")
    cells[3] = "abc"
    text[6] = ",".join(cells)
    bad.write_text("\n".join(text) + "\n")
    one_error(
        capsys,
        ["cascade", "apply", pol, paths[0], bad, paths[2], "--out", tmp_path / "o.csv"],
        "bad.csv",
        "'logit_pos'",
        "data row 6 (file line 7)",
        "'abc'",
    )
    assert not (tmp_path / "o.csv").exists()


def test_row_numbers_are_data_rows_and_file_lines(capsys, tmp_path: Path) -> None:
    # old: "row 7" (a 0-based data index): neither the data row a person counts nor the line
    f = tmp_path / "s.csv"
    rows = ["id,text,label,prob"]
    for i in range(10):
        text = '"two\nlines"' if i == 2 else f"t{i}"  # a quoted line break shifts the lines
        rows.append(f"{i},{text},{i % 2},{'x' if i == 7 else 0.5}")
    f.write_text("\n".join(rows) + "\n")
    lines = f.read_text().splitlines()
    want_line = next(j for j, ln in enumerate(lines, start=1) if ln.endswith(",x"))
    assert want_line == 10  # by hand: header, 7 rows, one row on two lines, then the bad one
    one_error(capsys, ["evaluate", f], "s.csv", "'prob'", f"data row 8 (file line {want_line})")
    j = tmp_path / "s.jsonl"
    recs = [{"label": 1, "prob": 0.5}] * 3 + [{"label": 1, "prob": None}]
    j.write_text(
        "\n".join(json.dumps(r) for r in recs[:2])
        + "\n\n"
        + "\n".join(json.dumps(r) for r in recs[2:])
        + "\n"
    )
    one_error(capsys, ["evaluate", j], "s.jsonl", "data row 4 (file line 5)")


def test_classes_accept_spaces_and_commas(capsys, tmp_path: Path) -> None:
    # old: `--classes neg pos` was an argparse error ("unrecognized arguments: pos")
    f = tmp_path / "b.csv"
    pd.DataFrame({"label": ["neg", "pos", "pos", "neg"], "prob": [0.2, 0.8, 0.6, 0.3]}).to_csv(
        f, index=False
    )
    a = run_cli(capsys, ["evaluate", f, "--json", "--classes", "neg,pos"])
    b = run_cli(capsys, ["evaluate", f, "--json", "--classes", "neg", "pos"])
    assert a[0] == b[0] == 0
    assert json.loads(a[1])["metrics"] == json.loads(b[1])["metrics"]
    assert json.loads(b[1])["classes"] == ["neg", "pos"]
    from calibkit.cli._args import parse_classes

    assert parse_classes(["a,b", "c"]) == ["a", "b", "c"] == parse_classes("a, b,c")
    with pytest.raises(ValueError, match="repeats"):
        parse_classes(["a", "a"])


def test_a_broken_calibrator_is_named_not_scores_logits(
    capsys, tmp_path: Path, dev: Path, example: Path
) -> None:
    # old: "Scores.logits contains NaN" with no hint that the calibrator file was the problem
    cal = tmp_path / "cal.json"
    assert run_cli(capsys, ["fit", dev, "-o", cal])[0] == 0
    d = json.loads(cal.read_text())
    d["fitted"]["temperature_"] = float("nan")
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(d))
    line = one_error(capsys, ["apply", bad, example, "-o", tmp_path / "o.csv"], "tampered.json")
    assert "Scores.logits" not in line
    assert not (tmp_path / "o.csv").exists()


# ---------------------------------------------------------------------- CLI handler, end to end
def test_subprocess_errors_are_one_unwrapped_line(tmp_path: Path) -> None:
    # old: rich hard-wrapped `error:` lines at 80 columns when piped
    deep = tmp_path / ("a_rather_long_folder_name_" * 4) / "[draft]"
    deep.mkdir(parents=True)
    missing = deep / "scores_of_the_model_we_want.csv"
    res = subprocess_cli(["evaluate", missing])
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [f"error: table file {missing} not found"]
    bad_gz = tmp_path / "bad.csv.gz"
    bad_gz.write_bytes(b"not gzip")
    res = subprocess_cli(["evaluate", bad_gz, "--bins", "100000000"])
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1
    res = subprocess_cli(["evaluate", bad_gz])
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) == 1 and "bad.csv.gz" in res.stderr


def test_ctrl_c_is_one_line_and_exit_130(
    capsys, tmp_path: Path, example: Path, monkeypatch
) -> None:
    import calibkit.cli.evaluate as ev

    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt("3 of 10 items cached; rerun to resume")

    monkeypatch.setattr(ev, "run", interrupted)
    rc, _, err = run_cli(capsys, ["evaluate", example])
    assert rc == 130 and err.splitlines() == ["interrupted: 3 of 10 items cached; rerun to resume"]
    # a real SIGINT in a real process
    code = textwrap.dedent(
        """
        import os, signal, sys, time
        import calibkit.cli.evaluate as ev
        def run(args):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
        ev.run = run
        from calibkit.cli.main import main
        raise SystemExit(main(sys.argv[1:]))
        """
    )
    t0 = time.perf_counter()
    res = subprocess_cli(["evaluate", example], code=code)
    assert res.returncode == 130 and res.stderr.splitlines() == ["interrupted: stopped"]
    assert time.perf_counter() - t0 < 25


def test_demo_and_finetune_check_their_output_folder_before_loading_a_model(
    capsys, tmp_path: Path
) -> None:
    # old: the demo loaded and ran the model, then failed writing; --bins was unchecked
    blocked = unwritable_dir(tmp_path) / "out"
    t0 = time.perf_counter()
    one_error(capsys, ["demo", "--out", blocked, "--n", "40"], "--out folder", str(blocked))
    one_error(capsys, ["demo", "--out", tmp_path / "d", "--bins", "0"], "--bins")
    one_error(capsys, ["finetune", "cft", "--out", blocked], "--out folder", str(blocked))
    assert time.perf_counter() - t0 < 60  # no model was loaded
    assert not (tmp_path / "d").exists()
