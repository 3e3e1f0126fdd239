"""Test-time fusion of per-modality logits.

Every function works per sample: a prediction never depends on the other samples of its batch (the authors' code
computes one weight per modality for the whole batch). An absent modality gets a weight of exactly 0 and its logits
never reach the result, even when they are NaN.

Part of the flat group of modules shipped as remote code: it imports nothing from mla_hf.
"""

import math

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


FUSION_MODES = ("dynamic", "fixed", "energy", "product")


def fusion_weights(
    mode: str, modality_logits: torch.Tensor, modality_mask: torch.Tensor, fixed: torch.Tensor | None = None
) -> torch.Tensor:
    """`(batch_size, num_modalities)` weights of fusion `mode`; `fixed` `(num_modalities,)` is used by "fixed".
    "product" weighs every present modality's log-probabilities by 1."""
    if mode == "dynamic":
        return entropy_weights(modality_logits, modality_mask)
    if mode == "energy":
        return energy_weights(modality_logits, modality_mask)
    if mode == "product":
        return modality_mask.float()
    if mode == "fixed":
        if fixed is None:
            raise ValueError("fusion='fixed' needs fusion weights, one positive weight per modality.")
        return fixed_weights(fixed, modality_mask)
    raise ValueError(f"Unknown fusion '{mode}'. Choose one of: {', '.join(FUSION_MODES)}.")


def fuse_modalities(mode: str, modality_logits: torch.Tensor, modality_mask: torch.Tensor,
                    fixed: torch.Tensor | None = None, temperatures: torch.Tensor | None = None):
    """Fused logits `(batch_size, num_labels)` and the weights `(batch_size, num_modalities)` of fusion `mode`.

    With `temperatures` `(num_modalities,)`, each modality's logits are divided by its temperature first (see
    `fit_temperatures`). "product" fuses log-probabilities (a product of experts: p(y | all) is proportional to the
    product of the modalities' p(y | m) under conditional independence and a uniform prior); the other modes fuse
    logits.
    """
    if temperatures is not None:
        modality_logits = modality_logits.float() / temperatures.to(modality_logits.device).view(1, -1, 1)
    weights = fusion_weights(mode, modality_logits, modality_mask, fixed)
    if mode == "product":
        modality_logits = torch.log_softmax(modality_logits.float(), dim=-1)
    return fuse(modality_logits, weights, modality_mask), weights


def fit_temperatures(modality_logits: torch.Tensor, labels: torch.Tensor, modality_mask: torch.Tensor,
                     bounds: tuple[float, float] = (0.05, 20.0), iterations: int = 60) -> torch.Tensor:
    """Per modality, the temperature T minimising the negative log-likelihood of softmax(z_m / T) over the samples
    that have the modality (temperature scaling, Guo et al., 2017), by golden-section search on log T. Fit on a
    validation split, never on the test split. Returns `(num_modalities,)`; 1 for a modality no sample has.
    """
    golden = (5 ** 0.5 - 1) / 2
    temperatures = []
    for index in range(modality_logits.shape[1]):
        rows = modality_mask[:, index]
        if not rows.any():
            temperatures.append(1.0)
            continue
        logits, targets = modality_logits[rows, index].double(), labels[rows]

        def nll(log_temperature: float) -> float:
            return float(torch.nn.functional.cross_entropy(logits / math.exp(log_temperature), targets))

        low, high = math.log(bounds[0]), math.log(bounds[1])
        for _ in range(iterations):
            left, right = high - golden * (high - low), low + golden * (high - low)
            if nll(left) < nll(right):
                high = right
            else:
                low = left
        temperatures.append(math.exp((low + high) / 2))
    return torch.tensor(temperatures)
