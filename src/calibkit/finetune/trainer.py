"""LoRA fine-tuning loop for CFT / RCFT / label smoothing with checkpoints and resume.

* **Adapters**: LoRA via peft on the attention and MLP projections (plain LoRA on the CPU and on
  GPUs without bitsandbytes; QLoRA (4-bit NF4 base weights) when ``quantize="4bit"``, or
  ``"auto"`` with bitsandbytes and CUDA present, and the model is given as a folder / hub id).
* **One forward pass per micro-batch** gives the token loss and the option-letter logits the EM
  regularizer needs (:class:`~calibkit.finetune.losses.Objective`).
* **E-step schedule** (only when ``lam > 0``; :class:`~calibkit.finetune.schedule.EMSchedule`):
  at the start of *every epoch* and, if ``em_every`` is set, after every ``em_every`` optimizer
  steps. ``em_source="pass"`` (default) re-scores the training questions (or a fixed seeded
  subset of ``em_max_examples``) with the current model in eval mode, one extra no-grad forward
  per question; ``"running"`` re-estimates from the option probabilities of the training
  forwards since the previous E-step (free, but those come from a model that moved during the
  interval and has dropout on); its first E-step is always a pass.
* **Checkpoints** (:class:`~calibkit.finetune.checkpoints.CheckpointManager`) every
  ``checkpoint_every`` optimizer steps and at the end, every file written atomically, to
  ``<out_dir>/checkpoints/step-XXXXXXX``: adapter weights, optimizer, scheduler, Python / torch
  RNG states, step, epoch, position in the epoch's seeded data order, EM state, loss history.
  :meth:`CalibrationTrainer.train` resumes from the latest one, refusing a checkpoint made with
  a different config or data.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibkit._atomic import atomic_write
from calibkit.finetune._forward import causal_forward
from calibkit.finetune.checkpoints import CheckpointManager, latest_checkpoint
from calibkit.finetune.config import DEFAULT_TARGET_MODULES, TrainConfig, TrainResult
from calibkit.finetune.data import (
    EncodedMCQ,
    MCQExample,
    collate,
    encode_examples,
    option_token_ids,
)
from calibkit.finetune.em import EMRegularizer
from calibkit.finetune.evaluate import option_logprobs
from calibkit.finetune.lora import load_model_and_tokenizer, wrap_lora
from calibkit.finetune.losses import option_logits_at_answer
from calibkit.finetune.schedule import EMSchedule, linear_schedule
from calibkit.scoring.option_probs import option_distribution

__all__ = [
    "DEFAULT_TARGET_MODULES",
    "CalibrationTrainer",
    "TrainConfig",
    "TrainResult",
    "latest_checkpoint",
    "load_model_and_tokenizer",
    "wrap_lora",
]


def _data_fingerprint(encoded: Sequence[EncodedMCQ]) -> str:
    h = hashlib.sha256()
    for e in encoded:
        h.update(f"{e.id}|{e.answer}|{len(e.input_ids)};".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------- trainer
@dataclass
class _Run:
    """Where a training run stands; saved in every checkpoint, restored on resume."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    em_history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None
    checkpoint: Path | None = None


@dataclass
class _Loop:
    """What one call of :meth:`CalibrationTrainer.train` works with."""

    enc: Sequence[EncodedMCQ]
    option_ids: list[int]
    params: list[Any]
    opt: Any
    sched: Any
    total_steps: int
    fingerprint: dict[str, str]
    run: _Run
    em: EMSchedule
    bar: Any = None
    callback: Callable[[dict[str, float]], None] | None = None


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
        self.checkpoints = CheckpointManager(self.out_dir, keep=config.keep_checkpoints)
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
        """Re-score the training questions (or a seeded subset) in eval mode; E-step on them."""
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
        self.model.train()

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

    # ------------------------------------------------------------------ the loop's steps
    def _setup(self, examples: Sequence[MCQExample], resume: bool) -> _Loop:
        """Encode the data, build optimizer and LR schedule, resume or seed the run."""
        import torch

        cfg = self.config
        if not examples:
            raise ValueError("no training questions")
        enc = encode_examples(
            self.tokenizer, examples, system_prompt=cfg.system_prompt, max_length=cfg.max_length
        )
        if not enc:
            raise ValueError("every training question is longer than max_length")
        steps_per_epoch = math.ceil(math.ceil(len(enc) / cfg.batch_size) / cfg.grad_accum)
        total = steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        params = [p for _, p in self._trainable()]
        if not params:
            raise ValueError("the model has no trainable parameters")
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(cfg.warmup_steps, total))
        fingerprint = {"config": cfg.fingerprint(), "data": _data_fingerprint(enc)}
        run = self._resume(fingerprint, opt, sched) if resume else None
        if run is None:
            torch.manual_seed(cfg.seed)
            random.seed(cfg.seed)
            run = _Run()
        option_ids = option_token_ids(self.tokenizer, enc[0].n_choices)
        em = EMSchedule(
            self.em,
            enabled=self.objective.uses_em,
            source=cfg.em_source,
            every=cfg.em_every,
            e_step_pass=lambda: self._e_step_pass(enc, option_ids),
            history=run.em_history,
        )
        return _Loop(enc, option_ids, params, opt, sched, total, fingerprint, run, em)

    def _resume(self, fingerprint: dict[str, str], opt: Any, sched: Any) -> _Run | None:
        """The run state of the latest checkpoint (weights, optimizer, RNG restored), or None."""
        ckpt = self.checkpoints.latest()
        if ckpt is None:
            return None
        saved = self.checkpoints.read_state(ckpt)
        if saved.get("fingerprint") != fingerprint:
            raise ValueError(
                f"checkpoint {ckpt} was made with a different config or training data "
                f"({saved.get('fingerprint')} vs {fingerprint}); use another out_dir or resume=False"
            )
        state = self.checkpoints.restore(ckpt, dict(self._trainable()), opt, sched)
        self.em.load_state_dict(state["em"])
        step = int(state["global_step"])
        return _Run(step, int(state["epoch"]), int(state["batch_in_epoch"]), state["history"],
                    state["em_history"], resumed_from=step, checkpoint=ckpt)  # fmt: skip

    def _save(self, loop: _Loop, epoch: int, batch_in_epoch: int) -> None:
        if not self.checkpoints.enabled:
            return
        r = loop.run
        state = {
            "global_step": r.step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "history": r.history,
            "em_history": r.em_history,
            "fingerprint": loop.fingerprint,
            "config": self.config.to_dict(),
            "em": self.em.state_dict(),
        }
        trainable = dict(self._trainable())
        r.checkpoint = self.checkpoints.save(r.step, state, trainable, loop.opt, loop.sched)

    def _micro_batch(self, loop: _Loop, rows: Any, n_in_group: int) -> dict[str, float]:
        """Forward and backward one micro-batch (loss scaled by the accumulation group size)."""
        import torch

        batch = collate([loop.enc[i] for i in rows], pad_id=self.pad_id,
                        mode=self.objective.label_mode)  # fmt: skip
        dev = next(self.model.parameters()).device
        batch = {k: v.to(dev) for k, v in batch.items()}
        batch["index"] = torch.as_tensor(rows, dtype=torch.long)
        logits, view = self._forward(batch)
        uses_em = self.objective.uses_em
        loss, parts = self.objective(logits, view, loop.option_ids, self.em if uses_em else None)
        if loop.em.observes:
            with torch.no_grad():
                opt_logits = option_logits_at_answer(logits, view["answer_pos"], loop.option_ids)
                probs = option_distribution(opt_logits.float().double().cpu().numpy())
            loop.em.observe(probs, batch["answers"].cpu().numpy(), ids=rows)
        (loss / n_in_group).backward()
        return {"loss": float(loss.detach()), **parts}

    def _optimizer_step(
        self, loop: _Loop, epoch: float, parts: list[dict[str, float]]
    ) -> dict[str, float]:
        """Clip, step optimizer and scheduler; the step's record (mean of its micro-batches)."""
        import torch

        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(loop.params, self.config.max_grad_norm)
        lr_now = float(loop.sched.get_last_lr()[0])
        loop.opt.step()
        loop.sched.step()
        loop.opt.zero_grad(set_to_none=True)
        loop.run.step += 1
        rec: dict[str, float] = {"step": loop.run.step, "epoch": epoch, "lr": lr_now}
        for key in parts[0]:
            rec[key] = float(np.mean([p[key] for p in parts if key in p]))
        loop.run.history.append(rec)
        if loop.bar is not None:
            loop.bar.update(1)
            loop.bar.set_postfix(
                {k: f"{v:.4f}" for k, v in rec.items() if k in ("loss", "lm", "ece")}
            )
        return rec

    def _epoch(self, loop: _Loop, epoch: int, start: int) -> bool:
        """Optimizer steps of one epoch from micro-batch ``start``; True once training is done."""
        cfg = self.config
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(loop.enc))
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(loop.enc), cfg.batch_size)]
        loop.opt.zero_grad(set_to_none=True)
        parts: list[dict[str, float]] = []
        for bi in range(start, len(batches)):
            n_in_group = min(cfg.grad_accum, len(batches) - (bi - bi % cfg.grad_accum))
            parts.append(self._micro_batch(loop, batches[bi], n_in_group))
            if (bi + 1) % cfg.grad_accum != 0 and bi + 1 != len(batches):
                continue
            rec = self._optimizer_step(loop, epoch + (bi + 1) / len(batches), parts)
            parts = []
            last = bi + 1 == len(batches)
            loop.em.after_step(loop.run.step, epoch_ends=last)
            finished = loop.run.step >= loop.total_steps
            every = cfg.checkpoint_every
            if finished or (every is not None and loop.run.step % every == 0):
                self._save(loop, epoch + 1 if last else epoch, 0 if last else bi + 1)
            if loop.callback is not None:
                loop.callback(rec)
            if finished:
                return True
        return False

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
        loop = self._setup(examples, resume)
        loop.callback = callback
        run, cfg = loop.run, self.config
        if progress:
            from tqdm.auto import tqdm

            loop.bar = tqdm(total=loop.total_steps, initial=run.step,
                            desc=f"{cfg.method} fine-tuning", unit="step")  # fmt: skip
        self.model.train()
        finished = run.step >= loop.total_steps
        first_epoch = run.epoch
        try:
            for epoch in range(first_epoch, cfg.epochs):
                if finished:
                    break
                start = run.batch_in_epoch if epoch == first_epoch else 0
                if start == 0:
                    loop.em.epoch_start(run.step)
                finished = self._epoch(loop, epoch, start)
            if not finished:
                self._save(loop, cfg.epochs, 0)
        finally:
            if loop.bar is not None:
                loop.bar.close()
        self.model.eval()
        return TrainResult(
            global_step=run.step,
            epochs_done=run.history[-1]["epoch"] if run.history else 0.0,
            history=run.history,
            em_history=run.em_history,
            resumed_from=run.resumed_from,
            checkpoint=run.checkpoint,
        )

    def save_adapter(self, path: str | os.PathLike[str]) -> Path:
        """Save the LoRA adapter (peft format) to the folder ``path``: every file atomically,
        ``adapter_config.json`` last (so a folder with a config is complete)."""
        import tempfile

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "adapter_config.json").unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(
            dir=path.parent, prefix=f"{path.name}.calibkit-stage-"
        ) as stage:
            self.model.save_pretrained(stage)
            files = sorted(Path(stage).rglob("*"), key=lambda f: f.name == "adapter_config.json")
            for f in files:
                if f.is_file():
                    target = path / f.relative_to(stage)
                    with atomic_write(target) as tmp:
                        shutil.copyfile(f, tmp)
        return path
