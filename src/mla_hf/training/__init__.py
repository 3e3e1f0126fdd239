"""Training: MLATrainer, its arguments, the registry of training methods and the head gradient projection."""

from .head_projection import HeadGradientProjector, authors_alpha
from .methods import (
    TRAINING_METHODS,
    MethodOptions,
    MLAOptions,
    NonFiniteTrainingError,
    OGMGEOptions,
    QMFOptions,
    TrainingMethod,
    UnimodalOptions,
    get_training_method,
    register_training_method,
)
from .metrics import MultimodalMetrics
from .missing_modalities import MissingModalityDataset, drop_mask
from .trainer import MLATrainer
from .training_args import MLATrainingArguments

__all__ = [
    "HeadGradientProjector",
    "MLAOptions",
    "MLATrainer",
    "MLATrainingArguments",
    "MethodOptions",
    "MissingModalityDataset",
    "MultimodalMetrics",
    "NonFiniteTrainingError",
    "OGMGEOptions",
    "QMFOptions",
    "TRAINING_METHODS",
    "TrainingMethod",
    "UnimodalOptions",
    "authors_alpha",
    "drop_mask",
    "get_training_method",
    "register_training_method",
]
