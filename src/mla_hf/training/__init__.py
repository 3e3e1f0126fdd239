"""Training: MLATrainer, its arguments, the registry of training methods and the head gradient projection."""

from .head_projection import HeadGradientProjector, authors_alpha
from .methods import TRAINING_METHODS, TrainingMethod, get_training_method, register_training_method
from .metrics import MultimodalMetrics
from .missing_modalities import MissingModalityDataset, drop_mask
from .trainer import MLATrainer
from .training_args import MLATrainingArguments

__all__ = [
    "HeadGradientProjector",
    "MLATrainer",
    "MLATrainingArguments",
    "MissingModalityDataset",
    "MultimodalMetrics",
    "TRAINING_METHODS",
    "TrainingMethod",
    "authors_alpha",
    "drop_mask",
    "get_training_method",
    "register_training_method",
]
