"""The public figure functions are importable from ``calibkit.plots`` (issue 12)."""

from __future__ import annotations


def test_risk_coverage_plot_is_exported() -> None:
    import calibkit.plots as plots
    from calibkit.plots.ranking import risk_coverage_plot

    assert plots.risk_coverage_plot is risk_coverage_plot
    assert "risk_coverage_plot" in plots.__all__
