"""LLM backends; see :mod:`calibkit.scoring.backends.base` for the protocol.

:func:`make_backend` builds one from a model spec: ``"openai:<base_url>::<model>"`` for an
OpenAI-compatible server, anything else for a local transformers model (see
:mod:`calibkit.scoring.models`).
"""

from __future__ import annotations

import os
from typing import Any

from calibkit.scoring.backends.base import Backend, ChatMessage, Generation, ItemFailure, Prompt

__all__ = ["Backend", "ChatMessage", "Generation", "ItemFailure", "Prompt", "make_backend"]


def make_backend(
    model: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 8,
    **kwargs: Any,
) -> Backend:
    """A backend for a model spec, built by the factory registered for its prefix.

    Parameters
    ----------
    model : str, path or None
        ``"openai:<base_url>::<model>[?api_key_env=NAME&...]"`` -> :class:`~calibkit.scoring.
        backends.openai_http.OpenAICompatibleBackend` (``kwargs`` go to its constructor);
        ``"hf:<id or folder>"``, ``"gguf:<file>"`` or no prefix (``None``/``"smollm2"``,
        ``"gemma3-270m"``, a ``.gguf`` file, a folder or a hub id) -> :class:`~calibkit.scoring.
        backends.transformers_backend.TransformersBackend` with ``batch_size`` (``kwargs``:
        ``cache_dir``, ``dtype``, ``prefix_reuse`` ...); any prefix added with
        :func:`calibkit.scoring.backends.registry.register_backend`.
    """
    from calibkit.scoring.backends.registry import make_backend as from_registry

    return from_registry(model, batch_size=batch_size, **kwargs)
