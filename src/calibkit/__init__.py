"""calibkit: measure, fix and use the calibration of classifiers and LLMs.

``import calibkit`` is light (numpy only); heavy parts load inside the submodules that need them.
"""

from calibkit._math import log_softmax, logit, probs_to_logits, sigmoid, softmax, to_probs
from calibkit.scores import Scores

__version__ = "0.1.0"

__all__ = [
    "Scores",
    "__version__",
    "log_softmax",
    "logit",
    "probs_to_logits",
    "sigmoid",
    "softmax",
    "to_probs",
]
