"""Hyper-parameters of a fine-tuning run (:class:`TrainConfig`) and what it did
(:class:`TrainResult`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from calibkit.finetune.data import SYSTEM_PROMPT
from calibkit.finetune.losses import METHODS, Objective

__all__ = ["DEFAULT_TARGET_MODULES", "TrainConfig", "TrainResult"]

DEFAULT_TARGET_MODULES: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one fine-tuning run (all fields JSON-serialisable).

    ``lam=None`` means 0 for CFT and label smoothing and 1.0 for RCFT (paper: lambda = 1).
    ``max_steps`` caps optimizer steps (it also sets the length of the LR schedule).
    """

    method: Literal["cft", "rcft", "label_smoothing"] = "cft"
    lam: float | None = None
    lm_weight: float = 1.0
    smoothing: float = 0.1
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 2
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    n_bins: int = 10
    em_every: int | None = None
    em_source: Literal["pass", "running"] = "pass"
    em_max_examples: int | None = None
    em_prior: float = 0.0
    em_assignment: Literal["estep", "current"] = "estep"
    divergence: Literal["mse", "kl"] = "mse"
    gamma_scale: float | None = None
    preserve_top: bool = True
    max_length: int = 512
    system_prompt: str | None = SYSTEM_PROMPT
    eval_batch_size: int = 8
    checkpoint_every: int | None = 50
    keep_checkpoints: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {self.method!r}")
        ints = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "lora_r": self.lora_r,
            "n_bins": self.n_bins,
            "max_length": self.max_length,
            "eval_batch_size": self.eval_batch_size,
            "keep_checkpoints": self.keep_checkpoints,
        }
        for k, v in ints.items():
            if v < 1:
                raise ValueError(f"{k} must be >= 1; got {v}")
        for k, opt in (
            ("max_steps", self.max_steps),
            ("em_every", self.em_every),
            ("em_max_examples", self.em_max_examples),
            ("checkpoint_every", self.checkpoint_every),
        ):
            if opt is not None and opt < 1:
                raise ValueError(f"{k} must be >= 1 or None; got {opt}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0; got {self.warmup_steps}")
        if self.em_source not in ("pass", "running"):
            raise ValueError(f"em_source must be 'pass' or 'running'; got {self.em_source!r}")
        self.objective()  # validates lam / lm_weight / smoothing

    @property
    def effective_lam(self) -> float:
        if self.lam is not None:
            return float(self.lam)
        return 1.0 if self.method == "rcft" else 0.0

    def objective(self) -> Objective:
        return Objective(self.method, self.effective_lam, self.lm_weight, self.smoothing)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        if "target_modules" in d:
            d["target_modules"] = tuple(d["target_modules"])
        return cls(**d)

    def fingerprint(self) -> str:
        """Hash of everything that changes the training trajectory (not checkpoint cadence)."""
        d = self.to_dict()
        for k in ("checkpoint_every", "keep_checkpoints", "eval_batch_size"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    """What :meth:`CalibrationTrainer.train` did.

    ``history``: one record per optimizer step (``step``, ``epoch``, ``loss``, ``lm``, ``ece``,
    ``lr``); ``em_history``: one record per E-step (``step``, ``ece``, ``accuracy``, ``count``).
    """

    global_step: int
    epochs_done: float
    history: list[dict[str, float]] = field(default_factory=list)
    em_history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None
    checkpoint: Path | None = None
