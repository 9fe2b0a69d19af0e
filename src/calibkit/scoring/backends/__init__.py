"""LLM backends; see :mod:`calibkit.scoring.backends.base` for the protocol.

:func:`make_backend` builds one from a model spec: ``"openai:<base_url>::<model>"`` for an
OpenAI-compatible server, anything else for a local transformers model (see
:mod:`calibkit.scoring.models`).
"""

from __future__ import annotations

import os
from typing import Any

from calibkit.scoring.backends.base import Backend, ChatMessage, Generation, Prompt

__all__ = ["Backend", "ChatMessage", "Generation", "Prompt", "make_backend"]


def make_backend(
    model: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 8,
    **kwargs: Any,
) -> Backend:
    """A backend for a model spec.

    Parameters
    ----------
    model : str, path or None
        ``"openai:<base_url>::<model>"`` -> :class:`~calibkit.scoring.backends.openai_http.
        OpenAICompatibleBackend` (``kwargs`` go to its constructor); otherwise a local model
        (``None``/``"smollm2"``, ``"gemma3-270m"``, a ``.gguf`` file, a folder or a hub id) ->
        :class:`~calibkit.scoring.backends.transformers_backend.TransformersBackend` with
        ``batch_size`` (``kwargs``: ``cache_dir``, ``dtype``, ``prefix_reuse`` ...).
    """
    from calibkit.scoring.backends.openai_http import OpenAICompatibleBackend, is_openai_spec

    if is_openai_spec(model):
        return OpenAICompatibleBackend.from_spec(str(model), **kwargs)
    from calibkit.scoring.backends.transformers_backend import TransformersBackend

    return TransformersBackend.from_pretrained(model, batch_size=batch_size, **kwargs)
