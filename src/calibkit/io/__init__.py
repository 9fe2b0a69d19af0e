"""Read user tables (CSV / TSV / JSONL / JSON / Parquet) and turn their columns into :class:`Scores`.

A *scored table* has one row per item, a label column (optional for ``apply``) and score columns
in one of these layouts (detected automatically, or named explicitly):

* ``logit_<class>`` columns: ``(n, K)`` class logits or log-probabilities;
* ``prob_<class>`` or ``p_<class>`` columns: ``(n, K)`` probabilities, rows summing to 1;
* one ``prob`` / ``p`` / ``score`` column: ``P(y = 1)`` of a binary task;
* one ``logit`` column: the binary logit ``log p / (1 - p)``.

Probabilities are converted to logits explicitly with :func:`calibkit.probs_to_logits` (a
probability of 0 becomes ``log(1e-12)``), so ``Scores.probs`` gives back the input probabilities.

Three modules, one job each:

======================  ======================================================================
:mod:`.tables`          format I/O: suffixes, compression, duplicate columns, atomic writes,
                        row references (:func:`read_table`, :func:`write_table`, :func:`row_ref`)
:mod:`.schema`          schema detection: which columns are the scores
                        (:func:`detect_score_columns`, :class:`ScoreColumns`)
:mod:`.scores`          Scores construction: values and labels checked, Scores built
                        (:func:`scores_from_table`, :func:`read_scores`)
======================  ======================================================================
"""

from calibkit._atomic import atomic_write
from calibkit.io.schema import ScoreColumns, ScoreKind, _binary_classes, detect_score_columns
from calibkit.io.scores import (
    _labels_to_index,
    read_scores,
    read_scores_table,
    scores_from_table,
    table_probabilities,
)
from calibkit.io.tables import (
    TABLE_SUFFIXES,
    check_table_output,
    read_scores_meta,
    read_table,
    row_ref,
    write_table,
)

# ``_binary_classes`` and ``_labels_to_index`` stay importable here for
# ``calibkit.metrics.out_of_core``, which applies the same rules to streamed Parquet batches
__all__ = [
    "TABLE_SUFFIXES",
    "ScoreColumns",
    "ScoreKind",
    "_binary_classes",
    "_labels_to_index",
    "atomic_write",
    "check_table_output",
    "detect_score_columns",
    "read_scores",
    "read_scores_meta",
    "read_scores_table",
    "read_table",
    "row_ref",
    "scores_from_table",
    "table_probabilities",
    "write_table",
]
