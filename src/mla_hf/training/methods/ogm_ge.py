"""OGM-GE (Peng et al., CVPR 2022): on-the-fly gradient modulation of the dominant modality, plus Gaussian noise
(generalisation enhancement). Every parameter of the dominant modality's encoder and projection is scaled, not only
convolution weights as in the MLA authors' code (which leaves transformer encoders untouched).

The loss and backward are the Trainer's own; the modulation is a callback that runs before each optimizer step
(after gradient clipping), from the scores of every micro-batch the step accumulated."""

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from .base import MethodOptions, StepContext, TrainingMethod, register_training_method


@dataclass
class OGMGEOptions(MethodOptions):
    """Options of OGM-GE (`--ogm_ge.<option>` in the scripts)."""

    alpha: float = field(default=0.3, metadata={
        "help": "Modulation strength: a modality whose score ratio exceeds 1 has its gradients scaled by "
                "1 - tanh(alpha * ratio)."})
    modulation_starts: int = field(default=0, metadata={"help": "First epoch with modulation."})
    modulation_ends: int = field(default=50, metadata={"help": "Epoch at which modulation stops (exclusive)."})
    gradient_noise: bool = field(default=True, metadata={
        "help": "Add Gaussian noise with each gradient's own std (GE); false gives plain OGM."})

    def validate(self):
        if self.alpha <= 0:
            self.fail("alpha", "must be positive")
        if self.modulation_starts < 0:
            self.fail("modulation_starts", "must be >= 0")
        if self.modulation_ends <= self.modulation_starts:
            self.fail("modulation_ends", f"must be greater than modulation_starts ({self.modulation_starts})")


def modulation_coefficients(scores: torch.Tensor, alpha: float) -> torch.Tensor:
    """`(num_modalities,)` gradient scales from each modality's score (sum over the batch of softmax(z_m)[y]):
    1 - tanh(alpha * ratio) where ratio = score_m / (sum of the other modalities' scores) exceeds 1, else 1."""
    ratio = scores / (scores.sum() - scores).clamp_min(1e-8)
    return torch.where(ratio > 1, 1 - torch.tanh(alpha * ratio), torch.ones_like(ratio))


@register_training_method("ogm_ge", options=OGMGEOptions)
class OGMGE(TrainingMethod):
    head_type = "concat"

    def reset(self, model, args):
        self.scores = None  # (modalities,) accumulated over the micro-batches of the coming optimizer step

    def compute_loss(self, model, inputs: dict, step: StepContext):
        labels = inputs["labels"]
        loss, outputs = step.compute_loss(model, inputs)
        probabilities = torch.softmax(outputs.modality_logits.detach().float(), dim=-1)  # (batch, modalities, labels)
        true_class = probabilities.gather(-1, labels.view(-1, 1, 1).expand(-1, probabilities.shape[1], 1)).squeeze(-1)
        scores = (true_class * outputs.modality_mask).sum(0)
        self.scores = scores if self.scores is None else self.scores + scores
        self.record("loss", "fused", loss)
        return loss, outputs

    def callbacks(self) -> list:
        return [_ModulateGradients(self)]

    @torch.no_grad()
    def modulate(self, model, args, state):
        scores, self.scores = self.scores, None
        if scores is None or not self.options.modulation_starts <= int(state.epoch) < self.options.modulation_ends:
            return
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(scores)  # every rank scales by the same coefficients
        coefficients = modulation_coefficients(scores, self.options.alpha)
        # Noise seeded by the step: identical on every rank and in a resumed run.
        generator = torch.Generator(device=scores.device).manual_seed(args.seed + state.global_step)
        for name, coefficient in zip(model.modalities, coefficients.tolist()):
            self.record("modulation", name, coefficient)
            for parameter in [*model.encoders[name].parameters(), *model.projections[name].parameters()]:
                grad = parameter.grad
                if grad is None:
                    continue
                std = grad.std() if grad.numel() > 1 else None  # GE noise has the unscaled gradient's std
                grad.mul_(coefficient)
                if self.options.gradient_noise and std is not None:
                    grad.add_(torch.randn(grad.shape, generator=generator, device=grad.device, dtype=grad.dtype) * std)


class _ModulateGradients(TrainerCallback):
    def __init__(self, method: OGMGE):
        self.method = method

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.method.modulate(model, args, state)
