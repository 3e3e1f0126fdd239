"""The package's evaluation metrics as local `evaluate` modules: `evaluate.load(path)` works without the Hub."""

from pathlib import Path


MULTIMODAL_CLASSIFICATION = str(Path(__file__).parent / "multimodal_classification")

__all__ = ["MULTIMODAL_CLASSIFICATION"]
