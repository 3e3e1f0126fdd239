"""Unimodal training: one named modality alone; the other encoders are never forwarded nor changed."""

from dataclasses import dataclass, field

from .base import MethodOptions, StepContext, TrainingMethod, register_training_method


@dataclass
class UnimodalOptions(MethodOptions):
    """Options of unimodal training (`--unimodal.<option>` in the scripts)."""

    modality: str | None = field(default=None, metadata={"help": "The modality to train (required)."})


@register_training_method("unimodal", options=UnimodalOptions)
class Unimodal(TrainingMethod):
    head_type = "shared"

    def check_model(self, model):
        super().check_model(model)
        if self.options.modality is None:
            raise ValueError("Training method 'unimodal' needs the modality to train: "
                             "method_options={'modality': ...} (scripts: --unimodal.modality audio).")
        if self.options.modality not in model.config.modality_names:
            raise ValueError(
                f"Training method 'unimodal' was asked for modality '{self.options.modality}', which this model lacks "
                f"(modalities: {', '.join(model.config.modality_names)})."
            )

    def compute_loss(self, model, inputs: dict, step: StepContext):
        loss, outputs = step.compute_loss(model, {**inputs, "modality": self.options.modality})
        self.record("loss", self.options.modality, loss)
        return loss, outputs
