"""Registry of training methods: a new method is one module here plus its `@register_training_method` line."""

from .base import (
    TRAINING_METHODS,
    TrainingMethod,
    build_training_method,
    get_training_method,
    register_training_method,
)
from . import joint, mla, ogm_ge, qmf, unimodal  # noqa: F401  (each module registers itself)

__all__ = [
    "TRAINING_METHODS",
    "TrainingMethod",
    "build_training_method",
    "get_training_method",
    "register_training_method",
]
