"""QMF (Zhang et al., ICML 2023, "Provable dynamic fusion for low-quality multimodal data"): one head per modality,
fused with energy confidences, plus a ranking loss that teaches each modality's confidence to follow the
sample's history of losses on that modality."""

from dataclasses import dataclass, field

import torch
from torch import nn

from ...fusion import energy_weights, fuse
from .base import MethodOptions, StepContext, TrainingMethod, register_training_method


@dataclass
class QMFOptions(MethodOptions):
    """Options of QMF (`--qmf.<option>` in the scripts)."""

    ranking_weight: float = field(default=0.1, metadata={"help": "Weight of the confidence ranking loss."})

    def validate(self):
        if self.ranking_weight < 0:
            self.fail("ranking_weight", "must be >= 0")


def ranking_loss(confidence: torch.Tensor, history: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """QMF's ranking loss, each sample paired with its batch neighbour: the one with the lower mean past loss must
    get the higher confidence, by a margin of the difference.

    Args:
        confidence: `(batch, modalities)` energy confidences.
        history: `(batch, modalities)` each sample's mean past loss per modality.
        valid: `(batch, modalities)` bool, pairs that count (both present, both with a history).
    """
    partner = torch.roll(torch.arange(confidence.shape[0], device=confidence.device), -1)
    target = torch.sign(history[partner] - history)  # +1 where this sample was the more reliable one
    margin = (history[partner] - history).abs()
    hinge = torch.relu(-target * (confidence - confidence[partner]) + margin)
    return (hinge * valid).sum() / valid.sum().clamp_min(1)


@register_training_method("qmf", options=QMFOptions)
class QMF(TrainingMethod):
    """Loss = CE(fused) + sum_m CE(z_m) + ranking_weight * ranking loss, each cross-entropy with the run's
    `label_smoothing_factor`.

    The fused logits weight each modality by its energy confidence logsumexp(z_m) / 10, detached. The history needs
    each sample's index: the batch column `sample_index` (MLATrainer adds it to a `datasets.Dataset`). The loss IS the
    method, so a `compute_loss_func` is refused.
    """

    head_type = "per_modality"
    fusion = "energy"
    consumed_columns = ("sample_index",)
    accepts_compute_loss_func = False

    def check_model(self, model):
        super().check_model(model)
        if model.config.fusion != self.fusion:
            raise ValueError("Training method 'qmf' fuses with energy confidences: build the model with fusion='energy'.")

    def reset(self, model, args):
        num_modalities = len(model.config.modality_names)
        self.loss_history = torch.zeros(0, num_modalities, device=args.device)  # (samples, M): mean past loss
        self.history_counts = torch.zeros_like(self.loss_history)

    def compute_loss(self, model, inputs: dict, step: StepContext):
        if "sample_index" not in inputs:
            raise ValueError("Training method 'qmf' needs a 'sample_index' column holding each sample's dataset index.")
        inputs = dict(inputs)
        sample_index, labels = inputs.pop("sample_index"), inputs.pop("labels")
        outputs = model(**inputs)
        smoothing = step.args.label_smoothing_factor
        logits, mask = outputs.modality_logits.float(), outputs.modality_mask  # (batch, modalities, labels), (batch, M)
        fused = fuse(logits, energy_weights(logits.detach(), mask), mask)
        per_sample = nn.functional.cross_entropy(logits.transpose(1, 2), labels.unsqueeze(1).expand_as(mask),
                                                 reduction="none", label_smoothing=smoothing)
        unimodal = (per_sample * mask).sum(0) / mask.sum(0).clamp_min(1)  # (modalities,)
        self._grow_history(int(sample_index.max()) + 1)
        seen = self.history_counts[sample_index] > 0
        partner_seen = torch.roll(seen, -1, dims=0)
        valid = mask & torch.roll(mask, -1, dims=0) & seen & partner_seen
        ranking = ranking_loss(torch.logsumexp(logits, dim=-1) / 10, self.loss_history[sample_index], valid)
        loss = nn.functional.cross_entropy(fused, labels, label_smoothing=smoothing) + unimodal.sum() \
            + self.options.ranking_weight * ranking
        self._update_history(sample_index, per_sample.detach(), mask, step)
        self.record("loss", "fused", loss)
        return loss, outputs

    def _update_history(self, sample_index, per_sample, mask, step: StepContext):
        """Running mean of each sample's loss per modality, gathered across ranks so every rank keeps the same."""
        gathered = {"index": sample_index, "loss": per_sample, "mask": mask.float()}
        if step.accelerator.num_processes > 1:
            gathered = step.accelerator.gather(gathered)
        index, loss, present = gathered["index"], gathered["loss"], gathered["mask"]
        self._grow_history(int(index.max()) + 1)
        counts = self.history_counts[index] + present
        self.loss_history[index] = torch.where(
            present.bool(), self.loss_history[index] + (loss - self.loss_history[index]) / counts.clamp_min(1),
            self.loss_history[index],
        )
        self.history_counts[index] = counts

    def _grow_history(self, num_samples: int):
        if num_samples > self.loss_history.shape[0]:
            grown = self.loss_history.new_zeros(num_samples, self.loss_history.shape[1])
            grown_counts = torch.zeros_like(grown)
            grown[: self.loss_history.shape[0]] = self.loss_history
            grown_counts[: self.history_counts.shape[0]] = self.history_counts
            self.loss_history, self.history_counts = grown, grown_counts

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"qmf.loss_history": self.loss_history, "qmf.history_counts": self.history_counts}

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        self.loss_history = state["qmf.loss_history"].to(self.loss_history.device)
        self.history_counts = state["qmf.history_counts"].to(self.history_counts.device)
