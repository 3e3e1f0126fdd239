"""Missing-modality evaluation: a seeded random share of the samples loses a modality."""

import torch
from torch.utils.data import Dataset


def drop_mask(num_samples: int, modalities: list[str], rates: dict[str, float], seed: int = 0) -> torch.Tensor:
    """`(num_samples, num_modalities)` bool, True where a modality is dropped.

    For each modality, exactly round(rate * num_samples) samples lose it. The shares are drawn disjointly from one
    seeded permutation, so no sample loses more than one modality (the rates must sum to at most 1).
    """
    unknown = sorted(set(rates) - set(modalities))
    if unknown:
        raise ValueError(f"Missing-modality rates name unknown modalities {unknown} (modalities: {', '.join(modalities)}).")
    if any(not 0 <= rate <= 1 for rate in rates.values()) or sum(rates.values()) > 1 + 1e-9:
        raise ValueError(f"Missing-modality rates must lie in [0, 1] and sum to at most 1, got {rates}.")
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    dropped = torch.zeros(num_samples, len(modalities), dtype=torch.bool)
    start = 0
    for index, name in enumerate(modalities):
        count = round(rates.get(name, 0.0) * num_samples)
        dropped[order[start : start + count], index] = True
        start += count
    return dropped


class MissingModalityDataset(Dataset):
    """Wrap a map-style dataset so that each item's `modality_mask` also hides its dropped modalities."""

    def __init__(self, dataset, dropped: torch.Tensor):
        if len(dataset) != dropped.shape[0]:
            raise ValueError(f"The drop mask covers {dropped.shape[0]} samples, the dataset has {len(dataset)}.")
        self.dataset, self.dropped = dataset, dropped

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        item = dict(self.dataset[index])
        kept = ~self.dropped[index]
        if item.get("modality_mask") is not None:
            kept = kept & torch.as_tensor(item["modality_mask"], dtype=torch.bool)
        item["modality_mask"] = kept
        return item
