"""One self-contained HTML calibration report (``calibkit report``).

:func:`build_report` returns the page as a string and :func:`write_report` writes it atomically:
metrics with bootstrap confidence intervals before and after calibration, reliability diagrams,
risk-coverage curves, a per-class table, the diagnostics of
:func:`calibkit.calibrators.diagnostics.diagnose`, and the metric conventions used. CSS is
inline and figures are inline base64 PNGs, so the file opens anywhere without a network.
"""

from calibkit.report.html import REPORT_METRICS, build_report, write_report

__all__ = ["REPORT_METRICS", "build_report", "write_report"]
