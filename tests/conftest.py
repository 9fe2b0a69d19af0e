"""Shared fixtures. The real datasets live in ``<repo>/../shared/data`` (or $CALIBKIT_DATA)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A runner that starts pytest in the background of a non-interactive shell hands it SIGINT
# ignored (SIG_IGN is inherited, and stays ignored across exec). The Ctrl-C tests need Python's
# own handler, in this process and in the subprocesses they start (a handled signal is reset to
# the default on exec), so put it back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _data_dir() -> Path:
    env = os.environ.get("CALIBKIT_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _data_dir()
    if not d.is_dir():
        pytest.skip(f"real datasets not found at {d} (set CALIBKIT_DATA)")
    return d
