"""Classification heads over the per-modality features `(batch_size, num_modalities, projection_dim)`.

Each head returns per-modality logits `(batch_size, num_modalities, num_labels)`. MLA uses one shared head; the
other two exist so that baselines train, save and load through the same model class.

Part of the flat group of modules shipped as remote code: it imports nothing from mla_hf.
"""

import torch
from torch import nn


class SharedHead(nn.Module):
    """MLA: ONE linear layer applied to each modality's feature separately (no concatenation)."""

    def __init__(self, projection_dim: int, num_labels: int, num_modalities: int, dtype=None):
        super().__init__()
        self.linear = nn.Linear(projection_dim, num_labels, dtype=dtype)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


class PerModalityHead(nn.Module):
    """QMF and late fusion: a separate linear layer per modality."""

    def __init__(self, projection_dim: int, num_labels: int, num_modalities: int, dtype=None):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(projection_dim, num_labels, dtype=dtype) for _ in range(num_modalities))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([linear(features[:, index]) for index, linear in enumerate(self.linears)], dim=1)


class ConcatHead(nn.Module):
    """Joint training: one linear layer on the concatenated features.

    `W [f_1; ...; f_M] + b` is the sum over modalities of `W_m f_m + b / M`, so a modality's logits are its slice of
    the head plus its share of the bias (the OGM-GE convention), and the fused logits are their sum (over the
    modalities present in a sample).
    """

    def __init__(self, projection_dim: int, num_labels: int, num_modalities: int, dtype=None):
        super().__init__()
        self.num_modalities = num_modalities
        self.linear = nn.Linear(projection_dim * num_modalities, num_labels, dtype=dtype)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch_size, num_modalities, width = features.shape
        slices = self.linear.weight.view(-1, num_modalities, width)  # (labels, modalities, width)
        logits = torch.einsum("bmd,cmd->bmc", features, slices)
        return logits + self.linear.bias / self.num_modalities


HEADS = {"shared": SharedHead, "per_modality": PerModalityHead, "concat": ConcatHead}
