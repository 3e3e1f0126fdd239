"""Missing-modality evaluation: modalities dropped at random, independently per sample and modality."""

import torch
from torch.utils.data import Dataset


def drop_mask(num_samples: int, modalities: list[str], rates: dict[str, float], seed: int = 0,
              present: torch.Tensor | None = None) -> torch.Tensor:
    """`(num_samples, num_modalities)` bool, True where a modality is dropped.

    Each modality is dropped from round(rate * num_samples) samples drawn at random, independently of the other
    modalities, so any number of modalities may be dropped and a sample may lose several. A sample that would be
    left with none of its modalities keeps one of them, drawn at random. Deterministic for a seed.

    Args:
        present: `(num_samples, num_modalities)` bool, the modalities each sample has to begin with (all, if None).
    """
    unknown = sorted(set(rates) - set(modalities))
    if unknown:
        raise ValueError(f"Missing-modality rates name unknown modalities {unknown} (modalities: {', '.join(modalities)}).")
    if any(not 0 <= rate <= 1 for rate in rates.values()):
        raise ValueError(f"Missing-modality rates must lie in [0, 1], got {rates}.")
    generator = torch.Generator().manual_seed(seed)
    present = torch.ones(num_samples, len(modalities), dtype=torch.bool) if present is None else present.bool()
    dropped = torch.zeros(num_samples, len(modalities), dtype=torch.bool)
    for index, name in enumerate(modalities):
        order = torch.randperm(num_samples, generator=generator)
        dropped[order[: round(rates.get(name, 0.0) * num_samples)], index] = True
    emptied = (present & ~dropped).sum(1) == 0
    scores = torch.rand(num_samples, len(modalities), generator=generator).masked_fill(~present, -1.0)
    keep = scores.argmax(1)  # a random modality the sample has
    dropped[emptied, keep[emptied]] = False
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
