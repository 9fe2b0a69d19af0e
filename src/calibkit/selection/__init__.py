"""Which examples to label for calibration (paper 001, section 2.2).

* in-task, under a label budget: :func:`uniform_sample` (U), :func:`stratified_by_error_sample`
  (SE), :func:`importance_by_error_sample` (IE), driven by :func:`surrogate_error`;
* out-of-task, no target labels: :func:`all_oot_sources` (ALL-OOT), :func:`sim_oot_sources`
  (SIM-OOT) and :class:`OutOfTaskCalibrator`;
* task embeddings (:class:`SentenceEmbedder`, :func:`task_embedding`) and clustering
  (:func:`cluster_tasks`, :func:`nearest_tasks`) for SIM-OOT.

torch / transformers / scikit-learn's clustering load only when an embedding or clustering is made.
"""

from calibkit.selection.cluster import cluster_tasks, cosine_similarity_matrix, nearest_tasks
from calibkit.selection.embedding import (
    DEFAULT_EMBEDDING_MODEL,
    SentenceEmbedder,
    default_model_path,
    task_embedding,
)
from calibkit.selection.in_task import (
    STRATEGIES,
    answer_confidence,
    error_strata,
    importance_by_error_sample,
    inclusion_probabilities,
    sample_calibration_set,
    stratified_by_error_sample,
    surrogate_error,
    uniform_sample,
)
from calibkit.selection.out_of_task import (
    METHOD_ALIASES,
    OutOfTaskCalibrator,
    all_oot_sources,
    make_method,
    sim_oot_sources,
    top_label_form,
)

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "METHOD_ALIASES",
    "STRATEGIES",
    "OutOfTaskCalibrator",
    "SentenceEmbedder",
    "all_oot_sources",
    "answer_confidence",
    "cluster_tasks",
    "cosine_similarity_matrix",
    "default_model_path",
    "error_strata",
    "importance_by_error_sample",
    "inclusion_probabilities",
    "make_method",
    "nearest_tasks",
    "sample_calibration_set",
    "sim_oot_sources",
    "stratified_by_error_sample",
    "surrogate_error",
    "task_embedding",
    "top_label_form",
    "uniform_sample",
]
