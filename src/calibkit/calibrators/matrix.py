"""Matrix scaling (Guo et al., 2017) with ODIR regularisation (Kull et al., 2019)."""

from __future__ import annotations

from calibkit.calibrators._affine import Regularization, _AffineScaling

__all__ = ["MatrixScaling"]


class MatrixScaling(_AffineScaling):
    """Matrix scaling: calibrated logits ``z @ W.T + b`` with ``W`` ``(K, K)`` and ``b`` ``(K,)``.

    Minimises ``mean NLL + penalty`` by L-BFGS-B with analytic gradients from the identity map
    (``W = I, b = 0``), so the penalised training loss never exceeds the uncalibrated NLL.

    Parameters
    ----------
    regularization : {"odir", "l2", "none"}
        ``"odir"`` (default; Kull et al. 2019, "Beyond temperature scaling", off-diagonal and
        intercept regularisation): ``reg_lambda/(K(K-1)) sum_{i!=j} W_ij^2 + reg_mu/K sum_j b_j^2``
        -- the diagonal is free. ``"l2"``: ``reg_lambda/K^2 ||W - I||_F^2 + reg_mu/K ||b||^2``
        (shrinks towards the uncalibrated model). ``"none"``: plain maximum likelihood, which
        overfits when ``K^2`` is not small compared with ``n``.
    reg_lambda, reg_mu : float
        Strengths; default ``1e-2`` each, a mild default for a few thousand calibration rows.
        Kull et al. select both on a log grid by cross-validation; do so when it matters.
    tol : float
        L-BFGS-B tolerance on the projected gradient of the mean objective.
    max_iter : int
        L-BFGS-B iteration limit.

    Input: logits ``(n, K)`` or ``(n,)`` binary logits (as ``[0, z]``).

    Attributes
    ----------
    coef_ : (K, K) float
        ``W``.
    intercept_ : (K,) float
        ``b``.
    """

    input_kind = "logits"
    _shape = "matrix"

    def __init__(
        self,
        regularization: Regularization = "odir",
        reg_lambda: float = 1e-2,
        reg_mu: float = 1e-2,
        tol: float = 1e-9,
        max_iter: int = 1000,
    ) -> None:
        self.regularization = regularization
        self.reg_lambda = reg_lambda
        self.reg_mu = reg_mu
        self.tol = tol
        self.max_iter = max_iter
