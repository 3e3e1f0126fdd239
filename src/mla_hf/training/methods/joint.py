"""Joint training ("Normal" in the paper): all modalities forward together, concatenated features, one head."""

import torch

from .base import TrainingMethod, register_training_method


@register_training_method("joint")
class Joint(TrainingMethod):
    head_type = "concat"

    def training_step(self, model, inputs: dict) -> torch.Tensor:
        with self.trainer.compute_loss_context_manager():
            output = model(**inputs)
        self.record_loss("fused", output.loss.detach())
        return self.backward_and_return(output.loss)
