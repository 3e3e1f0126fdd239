"""Head gradient modification (HGM): the recursive-least-squares projection that keeps the shared head from
forgetting the modalities trained before the current one (orthogonal weight modification).

P lives with the trainer, not in the model: it is training state (like optimizer moments), saved in training
checkpoints and absent from the inference weights that go to the Hub.
"""

import torch


class HeadGradientProjector:
    """Holds P `(dim, dim)`, P_0 = I, kept in float64 so that it stays finite, symmetric and positive
    semi-definite over long runs.

    Args:
        dim: width of the features entering the head (`projection_dim`).
        normalize: divide P by its Frobenius norm after each update, as the authors' code does. Off by default:
            it shrinks the head gradient by about 1/sqrt(dim).
        forgetting: after each update, P <- (1 - forgetting) P + forgetting I: directions learned long ago are
            released at this rate, so P cannot collapse to zero (0, the default, is the paper's RLS).
    """

    def __init__(self, dim: int, normalize: bool = False, forgetting: float = 0.0,
                 device: torch.device | str | None = None):
        if not 0 <= forgetting < 1:
            raise ValueError(f"forgetting must lie in [0, 1), got {forgetting}.")
        self.normalize, self.forgetting = normalize, forgetting
        self.P = torch.eye(dim, dtype=torch.float64, device=device)

    def reset(self):
        self.P = torch.eye(self.P.shape[0], dtype=self.P.dtype, device=self.P.device)

    @torch.no_grad()
    def update(self, mean_feature: torch.Tensor, alpha: float):
        """RLS step with the batch-mean feature r `(dim,)`: k = P r, P <- P - k k^T / (alpha + r k)."""
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}.")
        r = mean_feature.detach().to(self.P)
        k = self.P @ r  # (dim,)
        u = k * (alpha + torch.dot(r, k)).rsqrt()  # alpha + r^T P r > 0: P stays positive semi-definite
        # u u^T is exactly symmetric (u_i u_j == u_j u_i, with or without FMA), so P stays exactly symmetric without
        # an explicit (P + P^T) / 2, which cost 6x the update itself at d = 768.
        self.P.addr_(u, u, alpha=-1.0)
        if self.forgetting:
            self.P.mul_(1 - self.forgetting).diagonal().add_(self.forgetting)
        if self.normalize:
            self.P /= torch.linalg.matrix_norm(self.P)

    @torch.no_grad()
    def project_(self, weight_grad: torch.Tensor) -> torch.Tensor:
        """Replace the head's weight gradient G `(num_labels, dim)` by G P in place; the bias is not projected.
        Returns ||G P|| / ||G||, how much of the gradient the projection lets through (a 0-d tensor on G's device)."""
        before = torch.linalg.vector_norm(weight_grad)
        weight_grad.copy_(weight_grad @ self.P.to(weight_grad.dtype))
        return torch.linalg.vector_norm(weight_grad) / before.clamp_min(1e-30)

    def spectrum(self) -> dict[str, float]:
        """Smallest and mean eigenvalue of P and its effective rank (exp of the entropy of the normalised
        eigenvalues): a collapsing P freezes the head, and this is where it shows."""
        eigenvalues = torch.linalg.eigvalsh(self.P).clamp_min(0)
        shares = eigenvalues / eigenvalues.sum().clamp_min(1e-300)
        entropy = -(shares * shares.clamp_min(1e-300).log()).sum()
        return {"p_min_eigenvalue": float(eigenvalues.min()), "p_mean_eigenvalue": float(eigenvalues.mean()),
                "p_effective_rank": float(entropy.exp())}

    def state_dict(self) -> dict:
        return {"P": self.P.clone()}

    def load_state_dict(self, state: dict):
        if state["P"].shape != self.P.shape:
            raise ValueError(f"Checkpointed P has shape {tuple(state['P'].shape)}, expected {tuple(self.P.shape)}.")
        self.P = state["P"].to(self.P)


def authors_alpha(epoch_progress: float) -> float:
    """The authors' schedule alpha = 0.1 ** (1 + i / N), with `epoch_progress` = i / N the share of the epoch done:
    0.1 at the start of each epoch down to 0.01."""
    return 0.1 ** (1 + epoch_progress)
