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
    """

    def __init__(self, dim: int, normalize: bool = False, device: torch.device | str | None = None):
        self.normalize = normalize
        self.P = torch.eye(dim, dtype=torch.float64, device=device)

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
        if self.normalize:
            self.P /= torch.linalg.matrix_norm(self.P)

    @torch.no_grad()
    def project_(self, weight_grad: torch.Tensor) -> torch.Tensor:
        """Replace the head's weight gradient G `(num_labels, dim)` by G P in place; the bias is not projected."""
        weight_grad.copy_(weight_grad @ self.P.to(weight_grad.dtype))
        return weight_grad

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
