"""A diagnostic finding (code, severity, meaning, remedy, numbers) and the flagging limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["PRIOR_SHIFT_P", "PRIOR_SHIFT_TV", "Finding", "format_findings"]


Severity = Literal["warning", "info"]

#: prior shift: chi-square p-value below this ...
PRIOR_SHIFT_P = 0.01
#: ... and total-variation distance above this
PRIOR_SHIFT_TV = 0.05
#: isotonic/histogram ties: flagged when they change this share of predicted classes ...
TIES_PRED_CHANGE = 0.005
#: ... or lower the AUROC (confidence for correctness; binary: P(y=1) for the label) this much
TIES_AUROC_DROP = 0.005


@dataclass(frozen=True)
class Finding:
    """One diagnostic.

    Attributes
    ----------
    code : str
        Stable identifier (see the module table).
    severity : {"warning", "info"}
    message : str
        What was found and what it means, one sentence.
    advice : str
        What to do, one sentence.
    numbers : dict
        The measured quantities behind it (JSON-ready floats, ints, strings, lists).
    """

    code: str
    severity: Severity
    message: str
    advice: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "advice": self.advice,
            "numbers": dict(self.numbers),
        }

    def __str__(self) -> str:
        return f"{self.severity}: [{self.code}] {self.message} {self.advice}"


def format_findings(findings: Sequence[Finding]) -> str:
    """One line per finding (``severity: [code] message advice``); empty string for none."""
    return "\n".join(str(f) for f in findings)


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"
