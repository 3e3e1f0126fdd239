"""Joint training ("Normal" in the paper): all modalities forward together, concatenated features, one head. The
Trainer's own loss and step: every stock option behaves as in any Trainer."""

from dataclasses import dataclass

from .base import MethodOptions, TrainingMethod, register_training_method


@dataclass
class JointOptions(MethodOptions):
    """Joint training has no options of its own."""


@register_training_method("joint", options=JointOptions)
class Joint(TrainingMethod):
    head_type = "concat"
