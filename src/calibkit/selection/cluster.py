"""Cluster tasks by their embeddings and look up the nearest tasks (SIM-OOT, paper 001 §2.2.1).

Embeddings are compared by cosine similarity. :func:`cluster_tasks` uses average-linkage
agglomerative clustering on cosine distance (or k-means on the unit-normalised vectors); when
``n_clusters`` is not given it is chosen by the best cosine silhouette over ``2 .. T - 1``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["cluster_tasks", "cosine_similarity_matrix", "nearest_tasks"]


def _check_embeddings(embeddings: ArrayLike) -> NDArray[np.float64]:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (n_tasks, d); got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("embeddings is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings contains NaN or infinite values")
    norms = np.linalg.norm(x, axis=1)
    if np.any(norms == 0):
        raise ValueError(f"embeddings row {int(np.argmin(norms))} is all zeros")
    return np.asarray(x / norms[:, None], dtype=np.float64)


def cosine_similarity_matrix(embeddings: ArrayLike) -> NDArray[np.float64]:
    """``(T, T)`` cosine similarities of the rows of ``embeddings`` ``(T, d)``."""
    x = _check_embeddings(embeddings)
    return np.clip(x @ x.T, -1.0, 1.0)


def nearest_tasks(embeddings: ArrayLike, index: int, k: int | None = None) -> NDArray[np.int64]:
    """Indices of the tasks most similar to task ``index`` (itself excluded), most similar first.

    Parameters
    ----------
    embeddings : (T, d)
    index : int
        The target task's row.
    k : int, optional
        How many to return (all ``T - 1`` by default). Ties are broken by lower index.
    """
    sim = cosine_similarity_matrix(embeddings)
    t = sim.shape[0]
    if not 0 <= index < t:
        raise ValueError(f"index {index} is out of range for {t} tasks")
    order = np.lexsort((np.arange(t), -sim[index]))
    order = order[order != index]
    if k is not None:
        if k < 0:
            raise ValueError(f"k must be >= 0; got {k}")
        order = order[:k]
    return order.astype(np.int64)


def _fit_labels(x: NDArray[np.float64], k: int, method: str, seed: int) -> NDArray[np.int64]:
    if method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        model = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average")
        return model.fit_predict(x).astype(np.int64)
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x).astype(np.int64)


def cluster_tasks(
    embeddings: ArrayLike,
    n_clusters: int | None = None,
    *,
    method: Literal["agglomerative", "kmeans"] = "agglomerative",
    seed: int = 0,
) -> NDArray[np.int64]:
    """Cluster tasks by embedding.

    Parameters
    ----------
    embeddings : (T, d)
        One row per task (need not be normalised; rows are L2-normalised first).
    n_clusters : int, optional
        Number of clusters; ``None`` picks the ``k`` in ``2 .. T - 1`` with the highest cosine
        silhouette score (``T < 3``: one cluster per task).
    method : "agglomerative" (average linkage, cosine distance) or "kmeans"
    seed : int
        Only used by k-means.

    Returns
    -------
    (T,) int64 cluster labels, renumbered in order of first appearance.
    """
    x = _check_embeddings(embeddings)
    t = x.shape[0]
    if method not in ("agglomerative", "kmeans"):
        raise ValueError(f"method must be 'agglomerative' or 'kmeans'; got {method!r}")
    if n_clusters is not None:
        if isinstance(n_clusters, bool) or not 1 <= int(n_clusters) <= t:
            raise ValueError(f"n_clusters must be in [1, {t}]; got {n_clusters!r}")
        k = int(n_clusters)
        labels = np.zeros(t, dtype=np.int64) if k == 1 else _fit_labels(x, k, method, seed)
    elif t < 3:
        labels = np.arange(t, dtype=np.int64)
    else:
        from sklearn.metrics import silhouette_score

        best: tuple[float, NDArray[np.int64]] | None = None
        for k in range(2, t):
            cand = _fit_labels(x, k, method, seed)
            if len(np.unique(cand)) < 2:
                continue
            score = float(silhouette_score(x, cand, metric="cosine"))
            if best is None or score > best[0] + 1e-12:
                best = (score, cand)
        labels = best[1] if best is not None else np.zeros(t, dtype=np.int64)
    _, first = np.unique(labels, return_index=True)
    remap = {int(labels[i]): j for j, i in enumerate(np.sort(first))}
    return np.array([remap[int(v)] for v in labels], dtype=np.int64)
