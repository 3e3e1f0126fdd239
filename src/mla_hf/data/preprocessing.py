"""From raw multimodal datasets (paths, PIL images, waveforms, strings) to `MLAModel` inputs."""


import datasets
import numpy as np
import torch

from ..processing_mla import MLAProcessor
from ..threads import available_cores


_ARRAY_FEATURES = {2: datasets.Array2D, 3: datasets.Array3D, 4: datasets.Array4D, 5: datasets.Array5D}


def _tensor_features(example: dict[str, np.ndarray], label_feature, label_column: str) -> datasets.Features:
    """Fixed-shape Arrow types for the processed columns: nested lists would be rebuilt in Python at every batch."""
    features = {label_column: label_feature}
    for name, array in example.items():
        dtype = str(array.dtype)
        row_rank = array.ndim - 1
        if row_rank >= 2:
            features[name] = _ARRAY_FEATURES[row_rank](shape=tuple(array.shape[1:]), dtype=dtype)
        elif row_rank == 1:
            features[name] = datasets.Sequence(datasets.Value(dtype), length=array.shape[1])
        else:
            features[name] = datasets.Value(dtype)
    return datasets.Features(features)


def preprocess_dataset(dataset: datasets.DatasetDict | datasets.Dataset, processor: MLAProcessor,
                       label_column: str = "labels", batch_size: int = 256,
                       num_proc: int | None = None) -> datasets.DatasetDict | datasets.Dataset:
    """Run `processor` over every split once (cached by `datasets`) and keep only what the model takes.

    The raw columns named like the processor's modalities become `<modality>_<argument>` tensors and
    `modality_mask`; `label_column` becomes `labels`; every other column is dropped. A missing value (`None`) in a
    modality column marks the modality absent for that sample. Texts are padded to the tokenizer's limit so that
    every row has the same shape. Non-finite values (a NaN in a waveform) are errors that name the split.

    Batches are read as numpy arrays (no per-sample Python lists) and, for splits of 2,000 rows or more, processed
    by `num_proc` processes (default: one per core available; 1 for smaller splits, where starting processes costs
    more than it saves). Each worker uses one torch thread. Returns torch-formatted data.
    """
    splits = dataset if isinstance(dataset, datasets.DatasetDict) else {"data": dataset}
    processed = {}
    for name, split in splits.items():
        if label_column not in split.column_names or not set(processor.modalities) & set(split.column_names):
            raise ValueError(
                f"Split '{name}' has columns {split.column_names}; expected a '{label_column}' column and at least one "
                f"of the modalities {processor.modalities}."
            )
        workers = num_proc if num_proc is not None else (available_cores() if len(split) >= 2000 else 1)

        def encode(batch, workers=workers):
            if workers > 1:
                torch.set_num_threads(1)  # one thread per worker process: the workers already fill the cores
            inputs = {modality: batch[modality] for modality in processor.modalities if modality in batch}
            outputs = {key: tensor.numpy() for key, tensor in processor(inputs, padding="max_length").items()}
            broken = [key for key, array in outputs.items() if array.dtype.kind == "f" and not np.isfinite(array).all()]
            if broken:
                raise ValueError(f"Split '{name}': non-finite values in {broken} after preprocessing (check the inputs "
                                 "for NaN or inf).")
            return outputs

        readable = split.with_format("numpy")
        encoded = readable.map(
            encode,
            batched=True,
            features=_tensor_features(encode(readable[:2], workers=1), split.features[label_column], label_column),
            batch_size=batch_size,
            num_proc=workers if workers > 1 else None,
            remove_columns=[column for column in split.column_names if column != label_column],
            desc=f"Preprocessing {name}",
        )
        if label_column != "labels":
            encoded = encoded.rename_column(label_column, "labels")
        processed[name] = encoded.with_format("torch")
    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict(processed)
    return processed["data"]

