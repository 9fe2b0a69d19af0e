"""The self-contained HTML report: content, no network references, and a real browser render
(headless Chromium from Debian's ``chromium`` package; skipped when it is not installed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from calibkit import metrics as m
from calibkit.calibrators import TemperatureScaling, VectorScaling
from calibkit.cli.main import main
from calibkit.io import read_scores_table
from calibkit.report import build_report, write_report
from calibkit.scores import Scores

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO / "examples" / "sst2_scores.csv"
SST2_DEV = REPO / "examples" / "sst2_dev_scores.csv"
SUBJ = REPO / "tests" / "fixtures" / "ensemble" / "subj__smollm2-zs.parquet"


class _Collect(HTMLParser):
    """Headings, table cells and every src/href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.cells: list[str] = []
        self.refs: list[str] = []
        self.tags: list[str] = []
        self._in: str | None = None
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href") and v is not None:
                self.refs.append(v)
        if tag in ("h1", "h2", "td"):
            self._in, self._buf = tag, []

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            text = " ".join("".join(self._buf).split())
            (self.cells if tag == "td" else self.headings).append(text)
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self._buf.append(data)


def _parse(text: str) -> _Collect:
    c = _Collect()
    c.feed(text)
    return c


def _sst2() -> tuple[Scores, Scores, TemperatureScaling]:
    s, _ = read_scores_table(SST2)
    dev, _ = read_scores_table(SST2_DEV)
    return s, dev, TemperatureScaling().fit(dev.logits, dev.labels)


SECTIONS = [
    "Metrics",
    "Reliability diagrams",
    "Risk-coverage curves",
    "Per-class table",
    "Metric conventions",
]


def test_report_content_and_self_contained() -> None:
    s, dev, ts = _sst2()
    text = build_report(s, ts, dev, bootstrap=30, source="sst2_scores.csv")
    page = _parse(text)
    assert page.headings[0] == "Calibration report"
    for h in SECTIONS:
        assert h in page.headings
    assert any(h.startswith("Diagnostics (0 warnings)") for h in page.headings)
    # no network: every src is an inline data URI, no scripts, no external links or fonts
    assert page.refs and all(r.startswith("data:image/png;base64,") for r in page.refs)
    assert "script" not in page.tags and "link" not in page.tags
    no_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"(https?:)?//[a-z0-9]", no_data)
    # the numbers are the metrics' (checked against independent references)
    y = s.require_labels()
    before, after = s.probs, ts.calibrate(s).probs
    ece_row = next(c for c in page.cells if c.startswith("ECE ↓"))
    i = page.cells.index(ece_row)
    assert page.cells[i + 1].startswith(f"{m.ece(before, y):.4f}")
    assert page.cells[i + 2].startswith(f"{m.ece(after, y):.4f}")
    auroc_i = page.cells.index("AUROC ↑")
    correct = before.argmax(1) == y
    assert page.cells[auroc_i + 1].startswith(f"{roc_auc_score(correct, before.max(1)):.4f}")
    # intervals are shown and contain the estimate
    lo, hi = map(float, re.findall(r"\[([0-9.]+), ([0-9.]+)\]", page.cells[i + 1])[0])
    assert lo <= m.ece(before, y) <= hi
    # per-class rows and the conventions
    assert "negative" in page.cells and "positive" in page.cells
    assert "equal-width bins" in text and "multiclass Brier" in text


def test_report_shows_findings_and_write(tmp_path: Path) -> None:
    s = Scores.load(SUBJ)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vs = VectorScaling().fit(s.logits, s.labels)
    path = write_report(tmp_path / "r.html", s, vs, s, bootstrap=0)
    text = path.read_text(encoding="utf-8")
    assert "inverted_scores" in text and "inverted_fit" in text
    assert "What to do:" in text
    assert "No bootstrap intervals" in text
    with pytest.raises(ValueError, match=r"unlabeled|labels"):
        build_report(Scores(logits=s.logits))


def test_cli_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cal = tmp_path / "ts.json"
    assert main(["fit", str(SST2_DEV), "-m", "temperature", "-o", str(cal)]) == 0
    out = tmp_path / "report.html"
    assert (
        main(
            [
                "report",
                str(SST2),
                "--calibrator",
                str(cal),
                "--fit-data",
                str(SST2_DEV),
                "-o",
                str(out),
                "--bootstrap",
                "20",
                "--title",
                "SST-2 <TF-IDF>",
            ]
        )
        == 0
    )
    text = out.read_text(encoding="utf-8")
    assert "<h1>SST-2 &lt;TF-IDF&gt;</h1>" in text
    capsys.readouterr()
    assert main(["report", str(SST2), "-o", str(tmp_path / "r.txt")]) == 2
    assert ".html" in capsys.readouterr().err


def _chromium() -> str | None:
    return (
        os.environ.get("CALIBKIT_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


def _run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = _chromium()
    assert exe is not None
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    s, dev, ts = _sst2()
    page = write_report(tmp_path / "report.html", s, ts, dev, bootstrap=20)
    url = page.resolve().as_uri()
    dom = _run_chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = _parse(dom.stdout)
    for h in SECTIONS:
        assert h in rendered.headings
    y = s.require_labels()
    assert any(c.startswith(f"{m.ece(ts.calibrate(s).probs, y):.4f}") for c in rendered.cells)
    shot = tmp_path / "report.png"
    res = _run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2400", url)
    assert res.returncode == 0, res.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] == 2400 and img.shape[1] == 1200
    assert float(np.std(img[..., :3])) > 0.05  # not a blank page: text and figures drew
