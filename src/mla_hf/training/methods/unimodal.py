"""Unimodal training: one named modality alone; the other encoders are never forwarded nor changed."""

import torch

from .base import TrainingMethod, register_training_method


@register_training_method("unimodal")
class Unimodal(TrainingMethod):
    head_type = "shared"

    def __init__(self, trainer, modality: str | None = None):
        super().__init__(trainer)
        if modality is None:
            raise ValueError("Training method 'unimodal' needs the modality to train: method_kwargs={'modality': ...}.")
        self.modality = modality

    def check_model(self, model):
        super().check_model(model)
        if self.modality not in model.config.modality_names:
            raise ValueError(
                f"Training method 'unimodal' was asked for modality '{self.modality}', which this model lacks "
                f"(modalities: {', '.join(model.config.modality_names)})."
            )

    def training_step(self, model, inputs: dict) -> torch.Tensor:
        with self.trainer.compute_loss_context_manager():
            output = model(**inputs, modality=self.modality)
        self.record_loss(self.modality, output.loss.detach())
        return self.backward_and_return(output.loss)
