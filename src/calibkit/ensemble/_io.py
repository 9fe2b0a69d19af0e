"""Atomic file writes for the ensemble outputs (thin wrappers over :mod:`calibkit._atomic`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from calibkit._atomic import atomic_write as atomic_path
from calibkit._atomic import atomic_write_text

__all__ = ["atomic_path", "atomic_savefig", "atomic_write_text"]


def atomic_savefig(fig: Any, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """``fig.savefig`` atomically (the format follows the suffix of ``path``)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return Path(path)
