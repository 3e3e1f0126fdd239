"""OGM-GE (Peng et al., CVPR 2022): on-the-fly gradient modulation of the dominant modality, plus Gaussian noise
(generalisation enhancement). Every parameter of the dominant modality's encoder and projection is scaled, not only
convolution weights as in the MLA authors' code (which leaves transformer encoders untouched)."""

import torch

from .base import TrainingMethod, register_training_method


@register_training_method("ogm_ge")
class OGMGE(TrainingMethod):
    """Args (through `method_kwargs`):
        alpha: modulation strength; a modality with ratio > 1 has its gradients scaled by 1 - tanh(alpha * ratio).
        modulation_starts, modulation_ends: epochs [start, end) in which gradients are modulated.
        gradient_noise: add Gaussian noise with each gradient's own std (GE); False gives plain OGM.
    """

    head_type = "concat"

    def __init__(self, trainer, alpha: float = 0.3, modulation_starts: int = 0, modulation_ends: int = 50,
                 gradient_noise: bool = True):
        super().__init__(trainer)
        self.alpha, self.gradient_noise = alpha, gradient_noise
        self.modulation_epochs = range(modulation_starts, modulation_ends)

    def training_step(self, model, inputs: dict) -> torch.Tensor:
        with self.trainer.compute_loss_context_manager():
            output = model(**inputs)
        loss = self.backward_and_return(output.loss)
        self.record_loss("fused", loss)
        if int(self.trainer.state.epoch) in self.modulation_epochs:
            self._modulate(self.trainer.accelerator.unwrap_model(model), output, inputs["labels"])
        return loss

    def modulation_coefficients(self, modality_logits, modality_mask, labels) -> torch.Tensor:
        """`(num_modalities,)` gradient scales: 1 - tanh(alpha * ratio) where ratio = score_m / sum of the others'
        scores exceeds 1, else 1; score_m = sum over the batch (all ranks) of softmax(z_m)[y]."""
        probs = torch.softmax(modality_logits.detach().float(), dim=-1)  # (batch, modalities, labels)
        true_class = probs.gather(-1, labels.view(-1, 1, 1).expand(-1, probs.shape[1], 1)).squeeze(-1)
        scores = self.trainer.accelerator.reduce((true_class * modality_mask).sum(0), "sum")  # (modalities,)
        ratio = scores / (scores.sum() - scores).clamp_min(1e-8)
        return torch.where(ratio > 1, 1 - torch.tanh(self.alpha * ratio), torch.ones_like(ratio))

    @torch.no_grad()
    def _modulate(self, core, output, labels):
        coefficients = self.modulation_coefficients(output.modality_logits, output.modality_mask, labels)
        # Noise seeded by the step: identical on every rank and in a resumed run.
        generator = torch.Generator(device=labels.device).manual_seed(self.trainer.args.seed + self.trainer.state.global_step)
        for name, coefficient in zip(core.modalities, coefficients.tolist()):
            for parameter in [*core.encoders[name].parameters(), *core.projections[name].parameters()]:
                grad = parameter.grad
                if grad is None:
                    continue
                std = grad.std() if grad.numel() > 1 else None  # GE noise has the unscaled gradient's std
                grad.mul_(coefficient)
                if self.gradient_noise and std is not None:
                    noise = torch.randn(grad.shape, generator=generator, device=grad.device, dtype=grad.dtype)
                    grad.add_(noise * std)
