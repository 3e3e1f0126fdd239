"""Datasets: a generated two-modality toy problem (the built-in default until AV-Digits lands)."""

from .synthetic import make_synthetic_dataset, tiny_audio_image_config

__all__ = ["make_synthetic_dataset", "tiny_audio_image_config"]
