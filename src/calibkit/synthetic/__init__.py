"""Fill the gaps (paper 000): LLM synthetic data aimed at miscalibrated bins.

Pipeline: train a downstream classifier (:mod:`~calibkit.synthetic.classifiers`) -> find the
bins of the validation reliability diagram with ``|D_m| > 0.03`` (:mod:`~calibkit.synthetic.gaps`)
-> prompt an LLM to write texts at the bin's corrected probability and keep those it relabels
into the right class (:mod:`~calibkit.synthetic.prompts`, :mod:`~calibkit.synthetic.generate`) ->
retrain with Synthesis / Synthesis+ (:mod:`~calibkit.synthetic.augment`). The 1-D toy example
of section 3.3 is :mod:`~calibkit.synthetic.toy`.

Only numpy and scikit-learn are imported here; torch / transformers / matplotlib load inside the
functions that need them.
"""

from calibkit.synthetic.augment import TrainingSet, augment, evaluate_classifier, select_synthetic
from calibkit.synthetic.classifiers import (
    EmbeddingLogisticClassifier,
    HFEncoderClassifier,
    TextClassifier,
    TfidfLogisticClassifier,
    make_classifier,
)
from calibkit.synthetic.gaps import GapReport, TargetBin, find_gaps
from calibkit.synthetic.generate import (
    GenerationRequest,
    SyntheticGenerator,
    SyntheticText,
    generate_synthetic,
    parse_utterances,
    relabel,
    requests_from_gaps,
)
from calibkit.synthetic.prompts import (
    SCENARIOS,
    TASKS,
    generation_messages,
    generation_prompt,
    get_task,
    relabel_template,
    revised_confidence,
)
from calibkit.synthetic.toy import ToyResult, plot_toy, simulate_logistic, toy_example
from calibkit.tasks import TaskSpec

__all__ = [
    "SCENARIOS",
    "TASKS",
    "EmbeddingLogisticClassifier",
    "GapReport",
    "GenerationRequest",
    "HFEncoderClassifier",
    "SyntheticGenerator",
    "SyntheticText",
    "TargetBin",
    "TaskSpec",
    "TextClassifier",
    "TfidfLogisticClassifier",
    "ToyResult",
    "TrainingSet",
    "augment",
    "evaluate_classifier",
    "find_gaps",
    "generate_synthetic",
    "generation_messages",
    "generation_prompt",
    "get_task",
    "make_classifier",
    "parse_utterances",
    "plot_toy",
    "relabel",
    "relabel_template",
    "requests_from_gaps",
    "revised_confidence",
    "select_synthetic",
    "simulate_logistic",
    "toy_example",
]
