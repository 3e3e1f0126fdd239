"""Datasets: the built-in AV-Digits, the MLA paper's datasets from local folders, any data through a manifest, and
preprocessing into model inputs. `make_synthetic_dataset` is an instant toy problem for unit tests."""

from .av_digits import AVDigitsSettings, generate_av_digits, load_av_digits
from .manifest import build_dataset_dict, load_manifest
from .paper_datasets import PAPER_DATASETS
from .preprocessing import preprocess_dataset
from .sources import DATASET_NAMES, DataArguments, label_names, load_multimodal_dataset
from .synthetic import make_synthetic_dataset, tiny_audio_image_config


__all__ = [
    "AVDigitsSettings",
    "DATASET_NAMES",
    "DataArguments",
    "PAPER_DATASETS",
    "build_dataset_dict",
    "generate_av_digits",
    "label_names",
    "load_av_digits",
    "load_manifest",
    "load_multimodal_dataset",
    "make_synthetic_dataset",
    "preprocess_dataset",
    "tiny_audio_image_config",
]
