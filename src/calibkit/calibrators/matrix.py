"""Matrix scaling (Guo et al., 2017) with ODIR regularisation chosen by cross-validation
(Kull et al., 2019)."""

from __future__ import annotations

from typing import Literal

from calibkit.calibrators._affine import Regularization
from calibkit.calibrators._odir import _ODIRScaling

__all__ = ["MatrixScaling"]


class MatrixScaling(_ODIRScaling):
    """Matrix scaling: calibrated logits ``z @ W.T + b`` with ``W`` ``(K, K)`` and ``b`` ``(K,)``.

    Minimises ``mean NLL + penalty`` by (preconditioned) L-BFGS-B with analytic gradients from
    the identity map (``W = I, b = 0``), so the penalised training loss never exceeds the
    uncalibrated NLL.

    Parameters
    ----------
    regularization : {"odir", "l2", "none"}
        ``"odir"`` (default; Kull et al. 2019, "Beyond temperature scaling", off-diagonal and
        intercept regularisation): ``reg_lambda/(K(K-1)) sum_{i!=j} W_ij^2 + reg_mu/K sum_j b_j^2``
        -- the diagonal is free. ``"l2"``: ``reg_lambda/K^2 ||W - I||_F^2 + reg_mu/K ||b||^2``
        (shrinks towards the uncalibrated model). ``"none"``: plain maximum likelihood, which
        overfits when ``K^2`` is not small compared with ``n``.
    reg_lambda : "auto" or float
        ``"auto"`` (default): chosen by ``cv``-fold cross-validated NLL on the calibration set
        over the decade grid ``1e5 .. 1e-3`` (strongest first, early stopping; see
        :mod:`calibkit.calibrators._odir`), as Kull et al. do. A number fixes it (then fewer
        than 10 rows per parameter draws a warning).
    reg_mu : "auto" or float
        ``"auto"`` (default): equal to the (chosen) ``reg_lambda``; a number fixes it.
    cv : int
        Folds of the ``reg_lambda`` search (default 5; stratified by class when possible).
    seed : int
        Seed of the fold split.
    tol : float
        L-BFGS-B tolerance on the projected (preconditioned) gradient of the mean objective.
    max_iter : int
        L-BFGS-B iteration limit.

    Input: logits ``(n, K)`` or ``(n,)`` binary logits (as ``[0, z]``).

    Attributes
    ----------
    coef_ : (K, K) float
        ``W``.
    intercept_ : (K,) float
        ``b``.
    reg_lambda_, reg_mu_ : float
        The strengths used.
    cv_results_ : dict or None
        With ``reg_lambda="auto"``: ``{"lambda": [...], "mean_nll": [...], "std_nll": [...]}``
        over the grid values tried (held-out NLL mean and standard deviation over the folds).
    """

    input_kind = "logits"
    _shape = "matrix"

    def __init__(
        self,
        regularization: Regularization = "odir",
        reg_lambda: float | Literal["auto"] = "auto",
        reg_mu: float | Literal["auto"] = "auto",
        cv: int = 5,
        seed: int = 0,
        tol: float = 1e-9,
        max_iter: int = 1000,
    ) -> None:
        self.regularization = regularization
        self.reg_lambda = reg_lambda  # type: ignore[assignment]
        self.reg_mu = reg_mu  # type: ignore[assignment]
        self.cv = cv
        self.seed = seed
        self.tol = tol
        self.max_iter = max_iter
