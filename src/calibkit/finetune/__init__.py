"""Calibration-aware fine-tuning of aligned LLMs (paper 002: CFT, RCFT, EM ECE regulariser).

==========================================  ===================================================
:func:`rank_preserving_targets`             Appendix A.4 mapping, generalised to ``K`` options
:func:`bin_accuracy`, :class:`EMRegularizer`  E-step per-bin accuracy; M-step ECE loss
:class:`Objective`                          CFT / RCFT / label-smoothing losses of one forward
:func:`make_splits`, :func:`encode_mcq`     MCQ data (Table 1 prompt), completion-only masks
:class:`CalibrationTrainer`, :class:`TrainConfig`  LoRA / QLoRA trainer, checkpoints, resume
:class:`CheckpointManager`, :class:`EMSchedule`  atomic resumable checkpoints; E-step schedule
:func:`option_scores`, :func:`win_rate`     evaluation: option scores, Appendix C.1 win rate
==========================================  ===================================================

Importing this package imports numpy only; torch, transformers and peft load when used.
See ``docs/finetune.md``.
"""

from calibkit.finetune.checkpoints import CheckpointManager
from calibkit.finetune.data import (
    SYSTEM_PROMPT,
    EncodedMCQ,
    MCQExample,
    build_messages,
    collate,
    encode_examples,
    encode_mcq,
    format_user_prompt,
    load_mcq_examples,
    make_labels,
    make_splits,
    option_token_ids,
)
from calibkit.finetune.em import (
    BinAccuracy,
    EMRegularizer,
    bin_accuracy,
    bin_index,
    ece_regularizer,
)
from calibkit.finetune.evaluate import (
    PreferencePair,
    WinRate,
    calibration_report,
    load_preference_pairs,
    option_logprobs,
    option_scores,
    reliability_figures,
    sequence_logprobs,
    win_rate,
)
from calibkit.finetune.losses import (
    Objective,
    label_smoothing_lm_loss,
    lm_loss,
    option_logits_at_answer,
)
from calibkit.finetune.schedule import EMSchedule
from calibkit.finetune.targets import default_gamma_scale, rank_preserving_targets
from calibkit.finetune.trainer import (
    CalibrationTrainer,
    TrainConfig,
    TrainResult,
    latest_checkpoint,
    load_model_and_tokenizer,
    wrap_lora,
)

__all__ = [
    "SYSTEM_PROMPT",
    "BinAccuracy",
    "CalibrationTrainer",
    "CheckpointManager",
    "EMRegularizer",
    "EMSchedule",
    "EncodedMCQ",
    "MCQExample",
    "Objective",
    "PreferencePair",
    "TrainConfig",
    "TrainResult",
    "WinRate",
    "bin_accuracy",
    "bin_index",
    "build_messages",
    "calibration_report",
    "collate",
    "default_gamma_scale",
    "ece_regularizer",
    "encode_examples",
    "encode_mcq",
    "format_user_prompt",
    "label_smoothing_lm_loss",
    "latest_checkpoint",
    "lm_loss",
    "load_mcq_examples",
    "load_model_and_tokenizer",
    "load_preference_pairs",
    "make_labels",
    "make_splits",
    "option_logits_at_answer",
    "option_logprobs",
    "option_scores",
    "option_token_ids",
    "rank_preserving_targets",
    "reliability_figures",
    "sequence_logprobs",
    "win_rate",
    "wrap_lora",
]
