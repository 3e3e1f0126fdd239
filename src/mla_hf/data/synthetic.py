"""A generated audio + image classification problem whose modalities are complementary.

Each class has a random prototype per modality: a spectrogram `(frames, mel_bins)` and an image
`(3, height, width)`. A sample is its class prototypes plus Gaussian noise, and a share of the samples has one
modality drowned (prototype scaled to 0), disjointly, so neither modality alone solves the task but the two
together do. Deterministic for a seed.
"""

import datasets
import numpy as np
from transformers import ASTConfig, ViTConfig

from ..configuration_mla import MLAConfig


def make_synthetic_dataset(
    num_samples: int = 768,
    num_labels: int = 4,
    seed: int = 0,
    image_size: int = 16,
    audio_frames: int = 32,
    mel_bins: int = 16,
    noise: float = 1.0,
    drowned_share: float = 0.3,
) -> datasets.DatasetDict:
    """Train / validation / test splits (4:1:1) of one generation, so they share the class prototypes.

    Columns: `audio_input_values` `(audio_frames, mel_bins)`, `image_pixel_values` `(3, image_size, image_size)`
    (float32), `labels` (int). `drowned_share` of the samples lose the audio signal and as many lose the image one.
    """
    if not 0 <= drowned_share <= 0.5:
        raise ValueError(f"drowned_share must lie in [0, 0.5], got {drowned_share}.")
    rng = np.random.default_rng(seed)
    audio_prototypes = rng.normal(size=(num_labels, audio_frames, mel_bins))
    image_prototypes = rng.normal(size=(num_labels, 3, image_size, image_size))
    labels = rng.integers(0, num_labels, size=num_samples)
    order = rng.permutation(num_samples)
    drowned = int(drowned_share * num_samples)
    audio_strength, image_strength = np.ones(num_samples), np.ones(num_samples)
    audio_strength[order[:drowned]] = 0.0
    image_strength[order[drowned : 2 * drowned]] = 0.0
    audio = audio_prototypes[labels] * audio_strength[:, None, None] + noise * rng.normal(
        size=(num_samples, audio_frames, mel_bins)
    )
    image = image_prototypes[labels] * image_strength[:, None, None, None] + noise * rng.normal(
        size=(num_samples, 3, image_size, image_size)
    )
    features = datasets.Features(
        {
            "audio_input_values": datasets.Array2D((audio_frames, mel_bins), "float32"),
            "image_pixel_values": datasets.Array3D((3, image_size, image_size), "float32"),
            "labels": datasets.ClassLabel(names=[f"class_{i}" for i in range(num_labels)]),
        }
    )
    data = {
        "audio_input_values": audio.astype(np.float32),
        "image_pixel_values": image.astype(np.float32),
        "labels": labels.tolist(),
    }
    dataset = datasets.Dataset.from_dict(data, features=features).with_format("torch")
    num_train, num_validation = 4 * num_samples // 6, num_samples // 6
    return datasets.DatasetDict(
        train=dataset.select(range(num_train)),
        validation=dataset.select(range(num_train, num_train + num_validation)),
        test=dataset.select(range(num_train + num_validation, num_samples)),
    )


def tiny_audio_image_config(num_labels: int = 4, image_size: int = 16, audio_frames: int = 32, mel_bins: int = 16,
                            hidden_size: int = 32, projection_dim: int = 32, **kwargs) -> MLAConfig:
    """A small random-init AST (audio spectrogram) + ViT (image) MLA model that fits `make_synthetic_dataset`."""
    width = dict(hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * hidden_size)
    audio = ASTConfig(**width, max_length=audio_frames, num_mel_bins=mel_bins, patch_size=8, frequency_stride=8,
                      time_stride=8)
    image = ViTConfig(**width, image_size=image_size, patch_size=4, num_channels=3)
    names = [f"class_{i}" for i in range(num_labels)]
    return MLAConfig(
        modalities={"audio": audio, "image": image},
        projection_dim=projection_dim,
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
        **kwargs,
    )
