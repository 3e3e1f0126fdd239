"""Registry of training methods: a new method is one module here, with its options dataclass and its
`@register_training_method("name", options=...)` line."""

from .base import (
    TRAINING_METHODS,
    MethodOptions,
    NonFiniteTrainingError,
    StepContext,
    TrainingMethod,
    get_training_method,
    register_training_method,
)
from .joint import Joint, JointOptions
from .mla import MLA, MLAOptions
from .ogm_ge import OGMGE, OGMGEOptions
from .qmf import QMF, QMFOptions
from .unimodal import Unimodal, UnimodalOptions

__all__ = [
    "MLA",
    "OGMGE",
    "QMF",
    "TRAINING_METHODS",
    "Joint",
    "JointOptions",
    "MLAOptions",
    "MethodOptions",
    "NonFiniteTrainingError",
    "OGMGEOptions",
    "QMFOptions",
    "StepContext",
    "TrainingMethod",
    "Unimodal",
    "UnimodalOptions",
    "get_training_method",
    "register_training_method",
]
