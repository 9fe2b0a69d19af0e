r"""The PAC bound on the ECE of paper 000 ("Fill In The Gaps", section 3.1 and appendix B).

Hoeffding's inequality for the accuracy of ``n`` i.i.d. predictions (eq. 3):

.. math:: P(|\mathrm{Acc}(X) - \mathrm{Acc}(X^*)| > \epsilon_a) \le 2e^{-2\epsilon_a^2 n}
          =: \delta_a

so ``n = log(2/delta_a) / (2 epsilon_a^2)``. The paper's proposition carries this to the ECE
through the confidence gap ``g = |Conf(X) - Conf(X*)| = sum_m |B_m|/n |Conf(B_m) - Conf(B_m*)|``
(eq. 4-5):

.. math:: P(|\mathrm{ECE}(X) - \mathrm{ECE}(X^*)| > \epsilon_{ECE}) \le
          4e^{-2(\epsilon_{ECE} - g)^2 n} = \delta_{ECE},

    \epsilon_{ECE} = \epsilon_a + g, \qquad \delta_{ECE} = 2\delta_a, \qquad
    n_{ECE} = \frac{\log(4/\delta_{ECE})}{2(\epsilon_{ECE} - g)^2}.

Note that ``n_ECE`` equals the accuracy sample size ``log(2/delta_a) / (2 epsilon_a^2)``: the ECE
needs the same data for twice the failure probability and an error wider by ``g`` (Remark 1).
The paper leaves ``Conf(B_m*)`` abstract (the true per-bin confidence); in its section 3.2 the
per-bin gap is measured against the perfect-calibration line, which :func:`confidence_gap`
computes from a reliability table when no reference table is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibkit.metrics.reliability import ReliabilityTable

__all__ = [
    "PACECEBound",
    "confidence_gap",
    "pac_delta",
    "pac_ece_bound",
    "pac_epsilon",
    "pac_sample_size",
]


def _pos_int(n: int, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"{name} must be a positive int; got {n!r}")
    return int(n)


def _prob(x: float, name: str) -> float:
    x = float(x)
    if not (0.0 < x < 1.0):
        raise ValueError(f"{name} must be in (0, 1); got {x}")
    return x


def _eps(x: float, name: str) -> float:
    x = float(x)
    if not (x > 0.0 and math.isfinite(x)):
        raise ValueError(f"{name} must be a positive finite number; got {x}")
    return x


def _gap(g: float) -> float:
    g = float(g)
    if not (0.0 <= g <= 1.0):
        raise ValueError(f"conf_gap must be in [0, 1]; got {g}")
    return g


def pac_epsilon(n: int, delta: float) -> float:
    """Hoeffding accuracy error ``epsilon_a = sqrt(log(2/delta) / (2 n))`` at confidence
    ``1 - delta`` with ``n`` samples."""
    return math.sqrt(math.log(2.0 / _prob(delta, "delta")) / (2.0 * _pos_int(n)))


def pac_delta(n: int, epsilon_ece: float, conf_gap: float = 0.0) -> float:
    """``delta_ECE = min(1, 4 exp(-2 (epsilon_ECE - g)^2 n))`` (eq. 5): the probability that the
    ECE on ``n`` samples misses the true ECE by more than ``epsilon_ece``.

    With ``conf_gap = g >= epsilon_ece`` the bound is vacuous and 1.0 is returned.
    """
    n = _pos_int(n)
    e, g = _eps(epsilon_ece, "epsilon_ece"), _gap(conf_gap)
    if e <= g:
        return 1.0
    return min(1.0, 4.0 * math.exp(-2.0 * (e - g) ** 2 * n))


def pac_sample_size(epsilon_ece: float, delta_ece: float, conf_gap: float = 0.0) -> int:
    """``n_ECE = ceil(log(4/delta_ECE) / (2 (epsilon_ECE - g)^2))``: samples needed for
    ``|ECE(X) - ECE(X*)| <= epsilon_ECE`` with probability ``>= 1 - delta_ECE``.

    Raises ValueError when ``epsilon_ece <= conf_gap`` (no sample size suffices) or when
    ``delta_ece >= 1`` (nothing to guarantee).
    """
    e, d, g = _eps(epsilon_ece, "epsilon_ece"), _prob(delta_ece, "delta_ece"), _gap(conf_gap)
    if e <= g:
        raise ValueError(
            f"epsilon_ece ({e}) must exceed the confidence gap ({g}): the bound "
            "epsilon_ECE = epsilon_a + gap needs epsilon_a > 0"
        )
    return math.ceil(math.log(4.0 / d) / (2.0 * (e - g) ** 2))


@dataclass(frozen=True)
class PACECEBound:
    """The quantities of paper 000's proposition (section 3.1).

    Attributes
    ----------
    epsilon_a, delta_a : accuracy error and failure probability (Hoeffding, eq. 3)
    conf_gap : g = |Conf(X) - Conf(X*)|
    epsilon_ece : epsilon_a + g
    delta_ece : 2 delta_a
    n_ece : log(4/delta_ece) / (2 (epsilon_ece - g)^2), real-valued (ceil it for a count)
    """

    epsilon_a: float
    delta_a: float
    conf_gap: float
    epsilon_ece: float
    delta_ece: float
    n_ece: float


def pac_ece_bound(
    epsilon_a: float | None = None,
    delta_a: float = 0.05,
    conf_gap: float = 0.0,
    *,
    n: int | None = None,
) -> PACECEBound:
    """Paper 000's ECE bound from ``(epsilon_a, delta_a, g)``, or from ``(n, delta_a, g)``.

    Give exactly one of ``epsilon_a`` and ``n``; with ``n`` the accuracy error is the Hoeffding
    ``epsilon_a = sqrt(log(2/delta_a) / (2 n))``.

    Examples
    --------
    >>> b = pac_ece_bound(0.05, 0.05, conf_gap=0.02)
    >>> round(b.epsilon_ece, 4), b.delta_ece, math.ceil(b.n_ece)
    (0.07, 0.1, 738)
    """
    if (epsilon_a is None) == (n is None):
        raise ValueError("give exactly one of epsilon_a and n")
    d = _prob(delta_a, "delta_a")
    if 2.0 * d >= 1.0:
        raise ValueError(f"delta_a must be < 0.5 so that delta_ECE = 2 delta_a < 1; got {d}")
    g = _gap(conf_gap)
    ea = pac_epsilon(n, d) if n is not None else _eps(epsilon_a, "epsilon_a")  # type: ignore[arg-type]
    d_ece = 2.0 * d
    return PACECEBound(
        epsilon_a=ea,
        delta_a=d,
        conf_gap=g,
        epsilon_ece=ea + g,
        delta_ece=d_ece,
        n_ece=math.log(4.0 / d_ece) / (2.0 * ea**2),
    )


def confidence_gap(table: ReliabilityTable, reference: ReliabilityTable | None = None) -> float:
    """``g = sum_m |B_m|/n |Conf(B_m) - Conf(B_m*)|`` over the non-empty bins of ``table``.

    ``reference`` gives ``Conf(B_m*)`` per bin (same edges; e.g. the table of held-out data).
    Without it, ``Conf(B_m*)`` is the bin's accuracy (the perfect-calibration line, paper
    section 3.2), which makes ``g`` the table's ECE.
    """
    w = table.count / max(table.n, 1)
    if reference is None:
        target = table.accuracy
    else:
        if reference.edges.shape != table.edges.shape or not np.allclose(
            reference.edges, table.edges
        ):
            raise ValueError("reference table must have the same bin edges")
        target = reference.confidence
    d = np.abs(table.confidence - target)
    ok = (table.count > 0) & np.isfinite(d)
    return float(np.sum(np.where(ok, w * np.nan_to_num(d), 0.0)))
