"""Vector scaling (Guo et al., 2017): ``p = softmax(w * z + b)``, a scale and a bias per class."""

from __future__ import annotations

from calibkit.calibrators._affine import Regularization, _AffineScaling

__all__ = ["VectorScaling"]


class VectorScaling(_AffineScaling):
    """Vector scaling: calibrated logits ``z * w + b`` with ``w, b`` of shape ``(K,)``.

    Fitted by L-BFGS-B on the mean NLL with analytic gradients, starting from the identity
    (``w = 1, b = 0``). Input: logits ``(n, K)`` or ``(n,)`` binary logits (as ``[0, z]``).
    Ranking within a row may change (unlike temperature scaling).

    Parameters
    ----------
    regularization : {"l2", "odir", "none"}
        ``"l2"``: ``reg_lambda/K ||w - 1||^2 + reg_mu/K ||b||^2``; ``"odir"`` has no off-diagonal
        here and penalises only ``b``.
    reg_lambda, reg_mu : float
        Strengths (default 0: plain maximum likelihood, as Guo et al.).
    tol : float
        L-BFGS-B tolerance on the projected gradient of the mean NLL.
    max_iter : int
        L-BFGS-B iteration limit.

    Attributes
    ----------
    coef_ : (K,) float
        Per-class scale ``w``.
    intercept_ : (K,) float
        Per-class bias ``b`` (defined up to a common shift).
    """

    input_kind = "logits"
    _shape = "vector"

    def __init__(
        self,
        regularization: Regularization = "l2",
        reg_lambda: float = 0.0,
        reg_mu: float = 0.0,
        tol: float = 1e-9,
        max_iter: int = 1000,
    ) -> None:
        self.regularization = regularization
        self.reg_lambda = reg_lambda
        self.reg_mu = reg_mu
        self.tol = tol
        self.max_iter = max_iter
