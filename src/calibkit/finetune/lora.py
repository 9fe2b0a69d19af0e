"""The model side of fine-tuning: load a chat model (optionally 4-bit for QLoRA) and add LoRA
adapters."""

from __future__ import annotations

from typing import Any, Literal

from calibkit.finetune.config import TrainConfig

__all__ = ["load_model_and_tokenizer", "wrap_lora"]


def _has_bnb_cuda() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None


def load_model_and_tokenizer(
    model: str | None = None, *, quantize: Literal["auto", "4bit", "none"] = "auto"
) -> tuple[Any, Any]:
    """Load a chat model for fine-tuning: ``model`` as accepted by
    :func:`calibkit.scoring.load_causal_lm` (default SmolLM2-135M-Instruct), optionally with an
    ``hf:`` / ``gguf:`` spec prefix; a model served over HTTP cannot be fine-tuned. With
    ``quantize="4bit"`` (or ``"auto"`` when bitsandbytes and CUDA exist) a folder / hub id is
    loaded in 4-bit NF4 for QLoRA; fp32 otherwise."""
    from calibkit.scoring.backends.registry import local_model_name

    if quantize not in ("auto", "4bit", "none"):
        raise ValueError(f"quantize must be 'auto', '4bit' or 'none'; got {quantize!r}")
    model = local_model_name(model)  # "hf:<id>" / "gguf:<file>" / bare; refuses HTTP specs
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
