"""Shared fixtures. The real datasets live in ``<repo>/../shared/data`` (or $CALIBKIT_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    env = os.environ.get("CALIBKIT_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _data_dir()
    if not d.is_dir():
        pytest.skip(f"real datasets not found at {d} (set CALIBKIT_DATA)")
    return d
