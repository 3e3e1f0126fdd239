"""Test-time fusion of per-modality logits.

Every function works per sample: a prediction never depends on the other samples of its batch (the authors' code
computes one weight per modality for the whole batch). An absent modality gets a weight of exactly 0 and its logits
never reach the result, even when they are NaN.

Part of the flat group of modules shipped as remote code: it imports nothing from mla_hf.
"""

import torch


def entropy_weights(modality_logits: torch.Tensor, modality_mask: torch.Tensor) -> torch.Tensor:
    """MLA's uncertainty-based weights: softmax of minus each modality's prediction entropy, over present modalities.

    Args:
        modality_logits: `(batch_size, num_modalities, num_labels)`.
        modality_mask: `(batch_size, num_modalities)` bool, True where the modality is present.

    Returns:
        `(batch_size, num_modalities)` float32 weights summing to 1 over the present modalities of each sample.
    """
    log_probs = torch.log_softmax(modality_logits.float(), dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)  # (batch, modalities)
    scores = (-entropy).masked_fill(~modality_mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def fixed_weights(fixed: torch.Tensor, modality_mask: torch.Tensor) -> torch.Tensor:
    """Given per-modality weights `(num_modalities,)`, renormalised over the modalities present in each sample."""
    weights = fixed.float().expand(modality_mask.shape) * modality_mask  # (batch, modalities)
    return weights / weights.sum(-1, keepdim=True)


def energy_weights(modality_logits: torch.Tensor, modality_mask: torch.Tensor, temperature: float = 10.0) -> torch.Tensor:
    """QMF's energy confidence `logsumexp(z_m) / temperature`, 0 where absent (not normalised, as in QMF)."""
    energy = torch.logsumexp(modality_logits.float(), dim=-1) / temperature  # (batch, modalities)
    return energy.masked_fill(~modality_mask, 0.0)


def fuse(modality_logits: torch.Tensor, weights: torch.Tensor, modality_mask: torch.Tensor) -> torch.Tensor:
    """Weighted sum `(batch_size, num_labels)` of the present modalities' logits."""
    present = modality_mask.unsqueeze(-1)  # (batch, modalities, 1)
    weighted = weights.unsqueeze(-1) * modality_logits.float()
    return torch.where(present, weighted, torch.zeros_like(weighted)).sum(1)


FUSION_MODES = ("dynamic", "fixed", "energy")


def fusion_weights(
    mode: str, modality_logits: torch.Tensor, modality_mask: torch.Tensor, fixed: torch.Tensor | None = None
) -> torch.Tensor:
    """`(batch_size, num_modalities)` weights of fusion `mode`; `fixed` `(num_modalities,)` is used by "fixed"."""
    if mode == "dynamic":
        return entropy_weights(modality_logits, modality_mask)
    if mode == "energy":
        return energy_weights(modality_logits, modality_mask)
    if mode == "fixed":
        if fixed is None:
            raise ValueError("fusion='fixed' needs fusion weights, one positive weight per modality.")
        return fixed_weights(fixed, modality_mask)
    raise ValueError(f"Unknown fusion '{mode}'. Choose one of: {', '.join(FUSION_MODES)}.")
