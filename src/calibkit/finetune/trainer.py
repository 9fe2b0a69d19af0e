"""LoRA fine-tuning loop for CFT / RCFT / label smoothing with checkpoints and resume.

* **Adapters**: LoRA via peft on the attention and MLP projections (plain LoRA on the CPU and on
  GPUs without bitsandbytes; QLoRA (4-bit NF4 base weights) when ``quantize="4bit"``, or
  ``"auto"`` with bitsandbytes and CUDA present, and the model is given as a folder / hub id).
* **One forward pass per micro-batch** gives the token loss and the option-letter logits the EM
  regularizer needs (:class:`~calibkit.finetune.losses.Objective`).
* **E-step schedule** (only when ``lam > 0``): at the start of *every epoch* and, if
  ``em_every`` is set, after every ``em_every`` optimizer steps. ``em_source="pass"`` (default)
  re-scores the training questions (or a fixed seeded subset of ``em_max_examples``) with the
  current model in eval mode, one extra no-grad forward per question; ``"running"`` re-estimates
  from the option probabilities of the training forwards since the previous E-step (free, but
  those come from a model that moved during the interval and has dropout on); its first E-step
  is always a pass.
* **Checkpoints** every ``checkpoint_every`` optimizer steps and at the end, written atomically
  (temporary folder + ``os.replace``) to ``<out_dir>/checkpoints/step-XXXXXXX``: adapter
  weights, optimizer, scheduler, Python / NumPy / torch RNG states, step, epoch, position in the
  epoch's seeded data order, EM state, loss history. :meth:`CalibrationTrainer.train` resumes
  from the latest one, refusing a checkpoint made with a different config or data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from calibkit.finetune._forward import causal_forward
from calibkit.finetune.data import (
    SYSTEM_PROMPT,
    EncodedMCQ,
    MCQExample,
    collate,
    encode_examples,
    option_token_ids,
)
from calibkit.finetune.em import EMRegularizer
from calibkit.finetune.evaluate import option_logprobs
from calibkit.finetune.losses import METHODS, Objective, option_logits_at_answer

__all__ = [
    "DEFAULT_TARGET_MODULES",
    "CalibrationTrainer",
    "TrainConfig",
    "TrainResult",
    "latest_checkpoint",
    "load_model_and_tokenizer",
    "wrap_lora",
]

DEFAULT_TARGET_MODULES: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
_STATE = "trainer_state.json"


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


# ---------------------------------------------------------------------------------- model
def _has_bnb_cuda() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None


def load_model_and_tokenizer(
    model: str | None = None, *, quantize: Literal["auto", "4bit", "none"] = "auto"
) -> tuple[Any, Any]:
    """Load a chat model for fine-tuning: ``model`` as accepted by
    :func:`calibkit.scoring.load_causal_lm` (default SmolLM2-135M-Instruct). With
    ``quantize="4bit"`` (or ``"auto"`` when bitsandbytes and CUDA exist) a folder / hub id is
    loaded in 4-bit NF4 for QLoRA; fp32 otherwise."""
    if quantize not in ("auto", "4bit", "none"):
        raise ValueError(f"quantize must be 'auto', '4bit' or 'none'; got {quantize!r}")
    use_4bit = quantize == "4bit" or (quantize == "auto" and _has_bnb_cuda() and model is not None)
    if use_4bit:
        if not _has_bnb_cuda():
            raise ValueError("quantize='4bit' (QLoRA) needs bitsandbytes and a CUDA GPU")
        if model is None or model.endswith(".gguf"):
            raise ValueError("QLoRA needs a model folder or hub id (not the bundled GGUF)")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

        qcfg = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
        m = AutoModelForCausalLM.from_pretrained(
            model, quantization_config=qcfg, device_map={"": 0}
        )
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(m), AutoTokenizer.from_pretrained(model)
    from calibkit.scoring import load_causal_lm

    return load_causal_lm(model)


def wrap_lora(model: Any, config: TrainConfig) -> Any:
    """Add fresh LoRA adapters (seeded by ``config.seed``) to the projections of ``model`` that
    exist; the base weights are frozen. Modifies ``model`` in place (deep-copy it first to keep
    the base model clean)."""
    import torch
    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [t for t in config.target_modules if t in names]
    if not targets:
        raise ValueError(
            f"none of the LoRA target modules {config.target_modules} exist in the model"
        )
    torch.manual_seed(config.seed)
    lcfg = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


def latest_checkpoint(out_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete ``step-*`` checkpoint under ``<out_dir>/checkpoints`` (or None)."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return None
    done = [p for p in root.glob("step-*") if (p / _STATE).is_file()]
    if not done:
        return None
    return max(done, key=lambda p: int(p.name.split("-")[1]))


def _data_fingerprint(encoded: Sequence[EncodedMCQ]) -> str:
    h = hashlib.sha256()
    for e in encoded:
        h.update(f"{e.id}|{e.answer}|{len(e.input_ids)};".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------- trainer
class CalibrationTrainer:
    """Fine-tune a chat model on multiple-choice questions with CFT, RCFT or label smoothing.

    Parameters
    ----------
    model : transformers causal LM
        The aligned model. LoRA adapters are added by :meth:`train` unless the model already is a
        peft model; it is modified in place.
    tokenizer : transformers tokenizer with a chat template
    config : TrainConfig
    out_dir : path, optional
        Where checkpoints go; without it nothing is saved and nothing can resume.
    device : str, optional
        ``"cpu"``, ``"cuda"``...; default: the model's device.

    Examples
    --------
    >>> trainer = CalibrationTrainer(model, tok, TrainConfig(method="rcft"), out_dir="run")
    >>> result = trainer.train(splits["train"])          # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: TrainConfig,
        *,
        out_dir: str | os.PathLike[str] | None = None,
        device: str | None = None,
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.objective = config.objective()
        self.em = EMRegularizer(
            n_bins=config.n_bins,
            prior_strength=config.em_prior,
            divergence=config.divergence,
            gamma_scale=config.gamma_scale,
            preserve_top=config.preserve_top,
            assignment=config.em_assignment,
        )
        from peft import PeftModel

        if not isinstance(model, PeftModel):
            model = wrap_lora(model, config)
        if device is not None:
            model.to(device)
        self.model = model
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # ------------------------------------------------------------------ helpers
    def _trainable(self) -> list[tuple[str, Any]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def _e_step_pass(self, encoded: Sequence[EncodedMCQ], option_ids: Sequence[int]) -> None:
        idx = list(range(len(encoded)))
        m = self.config.em_max_examples
        if m is not None and m < len(idx):
            idx = sorted(random.Random(self.config.seed).sample(idx, m))
        sub = [encoded[i] for i in idx]
        lp = option_logprobs(
            self.model, sub, option_ids, batch_size=self.config.eval_batch_size, pad_id=self.pad_id
        )
        p = np.exp(lp - lp.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        self.em.e_step(p, np.array([e.answer for e in sub]), ids=np.array(idx))

    def _em_record(self, step: int, source: str) -> dict[str, Any]:
        b = self.em.bins_
        assert b is not None
        return {"step": step, "source": source, "ece": b.ece, **b.to_dict()}

    def _save_checkpoint(self, step: int, state: dict[str, Any], opt: Any, sched: Any) -> Path:
        import torch

        assert self.out_dir is not None
        root = self.out_dir / "checkpoints"
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"step-{step:07d}"
        tmp = root / f".tmp-step-{step:07d}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        torch.save({n: p.detach().cpu() for n, p in self._trainable()}, tmp / "adapter.pt")
        torch.save(
            {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp / "optim.pt"
        )
        rng = {
            "python": random.getstate(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        torch.save(rng, tmp / "rng.pt")
        (tmp / _STATE).write_text(json.dumps({**state, "em": self.em.state_dict()}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        olds = sorted(
            (p for p in root.glob("step-*") if p != final), key=lambda p: int(p.name.split("-")[1])
        )
        for p in olds[: max(0, len(olds) - (self.config.keep_checkpoints - 1))]:
            shutil.rmtree(p, ignore_errors=True)
        return final

    def _load_checkpoint(self, path: Path, opt: Any, sched: Any) -> dict[str, Any]:
        import torch

        state = json.loads((path / _STATE).read_text())
        adapter = torch.load(path / "adapter.pt", map_location="cpu")
        params = dict(self._trainable())
        missing = set(params) ^ set(adapter)
        if missing:
            raise ValueError(
                f"checkpoint {path} does not match the model's adapters: {sorted(missing)[:3]}"
            )
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(adapter[n].to(p.device))
        o = torch.load(path / "optim.pt", map_location="cpu", weights_only=False)
        opt.load_state_dict(o["optimizer"])
        sched.load_state_dict(o["scheduler"])
        rng = torch.load(path / "rng.pt", map_location="cpu", weights_only=False)
        random.setstate(rng["python"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.em.load_state_dict(state["em"])
        return dict(state)

    def _forward(self, batch: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Forward a left-padded batch; with completion-only labels only the last
        ``completion_len + 1`` positions get logits. Returns the logits and the batch with
        ``labels`` / ``answer_pos`` cut to the same window."""
        length = int(batch["input_ids"].shape[1])
        keep = 0
        if self.objective.label_mode == "completion" or self.objective.lm_weight == 0:
            keep = min(length, int(batch["completion_len"].max()) + 1)
        logits = causal_forward(self.model, batch["input_ids"], batch["attention_mask"], keep=keep)
        if keep == 0:
            return logits, batch
        view = dict(batch)
        view["labels"] = batch["labels"][:, length - keep :]
        view["answer_pos"] = batch["answer_pos"] - (length - keep)
        return logits, view

    # ------------------------------------------------------------------ main loop
    def train(
        self,
        examples: Sequence[MCQExample],
        *,
        resume: bool = True,
        progress: bool = True,
        callback: Callable[[dict[str, float]], None] | None = None,
    ) -> TrainResult:
        """Fine-tune on ``examples`` (all with the same number of options).

        ``resume=True`` continues from the latest checkpoint in ``out_dir`` if there is one.
        ``callback(record)`` is called after every optimizer step (and its checkpoint).
        """
        import torch

        cfg = self.config
        if not examples:
            raise ValueError("no training questions")
        enc = encode_examples(
            self.tokenizer, examples, system_prompt=cfg.system_prompt, max_length=cfg.max_length
        )
        if not enc:
            raise ValueError("every training question is longer than max_length")
        option_ids = option_token_ids(self.tokenizer, enc[0].n_choices)
        n_batches = math.ceil(len(enc) / cfg.batch_size)
        steps_per_epoch = math.ceil(n_batches / cfg.grad_accum)
        total_steps = steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)

        params = [p for _, p in self._trainable()]
        if not params:
            raise ValueError("the model has no trainable parameters")
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

        def lr_lambda(step: int) -> float:
            if step < cfg.warmup_steps:
                return (step + 1) / (cfg.warmup_steps + 1)
            span = max(1, total_steps - cfg.warmup_steps)
            return max(0.0, 1.0 - (step - cfg.warmup_steps) / span)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        fingerprint = {"config": cfg.fingerprint(), "data": _data_fingerprint(enc)}
        state: dict[str, Any] = {
            "global_step": 0,
            "epoch": 0,
            "batch_in_epoch": 0,
            "history": [],
            "em_history": [],
            "fingerprint": fingerprint,
            "config": cfg.to_dict(),
        }
        resumed_from = None
        ckpt = latest_checkpoint(self.out_dir) if (resume and self.out_dir is not None) else None
        if ckpt is not None:
            saved = json.loads((ckpt / _STATE).read_text())
            if saved.get("fingerprint") != fingerprint:
                raise ValueError(
                    f"checkpoint {ckpt} was made with a different config or training data "
                    f"({saved.get('fingerprint')} vs {fingerprint}); use another out_dir or resume=False"
                )
            state = self._load_checkpoint(ckpt, opt, sched)
            resumed_from = int(state["global_step"])
        else:
            torch.manual_seed(cfg.seed)
            random.seed(cfg.seed)

        step = int(state["global_step"])
        history: list[dict[str, float]] = state["history"]
        em_history: list[dict[str, Any]] = state["em_history"]
        last_ckpt: Path | None = ckpt
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=total_steps, initial=step, desc=f"{cfg.method} fine-tuning", unit="step"
            )

        def save(epoch: int, batch_in_epoch: int) -> None:
            nonlocal last_ckpt
            if self.out_dir is None:
                return
            st = {
                "global_step": step,
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "history": history,
                "em_history": em_history,
                "fingerprint": fingerprint,
                "config": cfg.to_dict(),
            }
            last_ckpt = self._save_checkpoint(step, st, opt, sched)

        self.model.train()
        uses_em = self.objective.uses_em
        finished = step >= total_steps
        try:
            for epoch in range(int(state["epoch"]), cfg.epochs):
                if finished:
                    break
                order = np.random.default_rng([cfg.seed, epoch]).permutation(len(enc))
                batches = [
                    order[i : i + cfg.batch_size] for i in range(0, len(enc), cfg.batch_size)
                ]
                start = int(state["batch_in_epoch"]) if epoch == int(state["epoch"]) else 0
                if uses_em and start == 0:
                    if cfg.em_source == "running" and self.em.n_observed > 0:
                        self.em.e_step_observed()
                        em_history.append(self._em_record(step, "running"))
                    else:
                        self._e_step_pass(enc, option_ids)
                        em_history.append(self._em_record(step, "pass"))
                    self.model.train()
                opt.zero_grad(set_to_none=True)
                acc_parts: list[dict[str, float]] = []
                for bi in range(start, len(batches)):
                    batch = collate(
                        [enc[i] for i in batches[bi]],
                        pad_id=self.pad_id,
                        mode=self.objective.label_mode,
                    )
                    dev = next(self.model.parameters()).device
                    batch = {k: v.to(dev) for k, v in batch.items()}
                    batch["index"] = torch.as_tensor(batches[bi], dtype=torch.long)
                    logits, view = self._forward(batch)
                    loss, parts = self.objective(
                        logits, view, option_ids, self.em if uses_em else None
                    )
                    if uses_em and cfg.em_source == "running":
                        with torch.no_grad():
                            opt_logits = option_logits_at_answer(
                                logits, view["answer_pos"], option_ids
                            )
                            probs = torch.softmax(opt_logits.float(), -1).double().cpu().numpy()
                        self.em.observe(probs, batch["answers"].cpu().numpy(), ids=batches[bi])
                    n_in_group = min(cfg.grad_accum, len(batches) - (bi - bi % cfg.grad_accum))
                    (loss / n_in_group).backward()
                    acc_parts.append({"loss": float(loss.detach()), **parts})
                    del logits, loss
                    if (bi + 1) % cfg.grad_accum != 0 and bi + 1 != len(batches):
                        continue
                    if cfg.max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    lr_now = float(sched.get_last_lr()[0])
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    step += 1
                    rec: dict[str, float] = {
                        "step": step,
                        "epoch": epoch + (bi + 1) / len(batches),
                        "lr": lr_now,
                    }
                    for key in acc_parts[0]:
                        rec[key] = float(np.mean([p[key] for p in acc_parts if key in p]))
                    acc_parts = []
                    history.append(rec)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(
                            {k: f"{v:.4f}" for k, v in rec.items() if k in ("loss", "lm", "ece")}
                        )
                    next_epoch, next_bi = (
                        (epoch, bi + 1) if bi + 1 < len(batches) else (epoch + 1, 0)
                    )
                    if (
                        uses_em
                        and cfg.em_every is not None
                        and step % cfg.em_every == 0
                        and next_bi != 0
                    ):
                        if cfg.em_source == "running":
                            self.em.e_step_observed()
                        else:
                            self._e_step_pass(enc, option_ids)
                            self.model.train()
                        em_history.append(self._em_record(step, cfg.em_source))
                    finished = step >= total_steps
                    if finished or (
                        cfg.checkpoint_every is not None and step % cfg.checkpoint_every == 0
                    ):
                        save(next_epoch, next_bi)
                    if callback is not None:
                        callback(rec)
                    if finished:
                        break
                state["batch_in_epoch"] = 0
            if not finished:
                save(cfg.epochs, 0)
        finally:
            if bar is not None:
                bar.close()
        self.model.eval()
        return TrainResult(
            global_step=step,
            epochs_done=history[-1]["epoch"] if history else 0.0,
            history=history,
            em_history=em_history,
            resumed_from=resumed_from,
            checkpoint=last_ckpt,
        )

    def save_adapter(self, path: str | os.PathLike[str]) -> Path:
        """Save the LoRA adapter (peft format) atomically to the folder ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        self.model.save_pretrained(str(tmp))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        return path
