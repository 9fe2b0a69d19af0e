"""Calibration figures (matplotlib, imported only when drawing: ``pip install 'calibkit[plot]'``).

* :func:`reliability_diagram`: accuracy bars, hatched gap, diagonal, confidence histogram, ECE.
* :func:`classwise_reliability_diagram`: one one-vs-rest panel per class, cw-ECE in the title.
* :func:`compare_reliability`: panels side by side (before / after calibration).
* :func:`risk_coverage_plot`: risk-coverage curves with their AURC (and the oracle curve).
* :func:`save_figure`: atomic PNG / SVG / PDF.
"""

from calibkit.plots.ranking import risk_coverage_plot
from calibkit.plots.reliability import (
    FIGURE_FORMATS,
    classwise_reliability_diagram,
    compare_reliability,
    reliability_diagram,
    save_figure,
)

__all__ = [
    "FIGURE_FORMATS",
    "classwise_reliability_diagram",
    "compare_reliability",
    "reliability_diagram",
    "risk_coverage_plot",
    "save_figure",
]
