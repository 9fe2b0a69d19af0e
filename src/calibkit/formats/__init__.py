"""Readers for score files that other tools write (see each module).

* :mod:`calibkit.formats.lm_eval`: the per-sample files of ``lm_eval --log_samples``
  (lm-evaluation-harness) for multiple-choice tasks.
"""

from calibkit.formats.lm_eval import LM_EVAL_FORMATS, read_lm_eval_samples

__all__ = ["LM_EVAL_FORMATS", "read_lm_eval_samples"]
