"""Resumable training checkpoints: ``<out_dir>/checkpoints/step-XXXXXXX``.

A checkpoint folder holds the trainable (adapter) weights ``adapter.pt``, the optimizer and
scheduler states ``optim.pt``, the Python / torch (/ CUDA) RNG states ``rng.pt`` and, written
last, ``trainer_state.json`` (step, epoch, position in the epoch, loss and EM histories, config
and data fingerprints, EM state). Every file is written through :func:`calibkit._atomic.
atomic_write`; the state file marks a checkpoint complete, so a crash mid-save leaves a folder
that :func:`latest_checkpoint` ignores. Only the newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from calibkit._atomic import atomic_write, atomic_write_text

__all__ = ["STATE_FILE", "CheckpointManager", "latest_checkpoint"]

STATE_FILE = "trainer_state.json"


def _step_of(p: Path) -> int:
    return int(p.name.split("-")[1])


def latest_checkpoint(out_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete ``step-*`` checkpoint under ``<out_dir>/checkpoints`` (or None)."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return None
    done = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file()]
    return max(done, key=_step_of) if done else None


class CheckpointManager:
    """Save and restore the full training state under ``<out_dir>/checkpoints``.

    Parameters
    ----------
    out_dir : path or None
        Run folder; ``None`` disables saving (and resuming).
    keep : int
        Checkpoints kept (older ones are deleted after each save).
    """

    def __init__(self, out_dir: str | os.PathLike[str] | None, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1; got {keep}")
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.keep = keep

    @property
    def enabled(self) -> bool:
        return self.out_dir is not None

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None (always None when disabled)."""
        return None if self.out_dir is None else latest_checkpoint(self.out_dir)

    @staticmethod
    def read_state(path: Path) -> dict[str, Any]:
        """The ``trainer_state.json`` of a checkpoint."""
        return dict(json.loads((path / STATE_FILE).read_text()))

    def save(
        self,
        step: int,
        state: Mapping[str, Any],
        trainable: Mapping[str, Any],
        opt: Any,
        sched: Any,
    ) -> Path:
        """Write checkpoint ``step`` (``trainable``: name -> parameter); returns its folder."""
        import torch

        assert self.out_dir is not None, "checkpointing is disabled (out_dir=None)"
        root = self.out_dir / "checkpoints"
        final = root / f"step-{step:07d}"
        final.mkdir(parents=True, exist_ok=True)
        (final / STATE_FILE).unlink(missing_ok=True)  # incomplete until the state is rewritten
        blobs = {
            "adapter.pt": {n: p.detach().cpu() for n, p in trainable.items()},
            "optim.pt": {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()},
            "rng.pt": {
                "python": random.getstate(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }
        for name, obj in blobs.items():
            with atomic_write(final / name) as tmp, open(tmp, "wb") as fh:
                torch.save(obj, fh)
        atomic_write_text(final / STATE_FILE, json.dumps(dict(state)))
        self._prune(root, final)
        return final

    def _prune(self, root: Path, newest: Path) -> None:
        """Delete incomplete checkpoints (a crash mid-save) and all but the newest ``keep``."""
        olds = sorted((p for p in root.glob("step-*") if p != newest), key=_step_of)
        complete = [p for p in olds if (p / STATE_FILE).is_file()]
        drop = [p for p in olds if p not in complete]
        drop += complete[: max(0, len(complete) - (self.keep - 1))]
        for p in drop:
            shutil.rmtree(p, ignore_errors=True)

    def restore(
        self, path: Path, trainable: Mapping[str, Any], opt: Any, sched: Any
    ) -> dict[str, Any]:
        """Load weights, optimizer, scheduler and RNG states of ``path``; returns its state."""
        import torch

        state = self.read_state(path)
        adapter = torch.load(path / "adapter.pt", map_location="cpu")
        missing = set(trainable) ^ set(adapter)
        if missing:
            raise ValueError(
                f"checkpoint {path} does not match the model's adapters: {sorted(missing)[:3]}"
            )
        with torch.no_grad():
            for n, p in trainable.items():
                p.copy_(adapter[n].to(p.device))
        o = torch.load(path / "optim.pt", map_location="cpu", weights_only=False)
        opt.load_state_dict(o["optimizer"])
        sched.load_state_dict(o["scheduler"])
        rng = torch.load(path / "rng.pt", map_location="cpu", weights_only=False)
        random.setstate(rng["python"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        return state
