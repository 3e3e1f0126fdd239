"""QMF (Zhang et al., ICML 2023, "Provable dynamic fusion for low-quality multimodal data"): one head per modality,
fused with energy confidences, plus a ranking loss that teaches each modality's confidence to follow the
sample's history of losses on that modality."""

import torch
from torch import nn

from ...fusion import energy_weights, fuse
from .base import TrainingMethod, register_training_method


@register_training_method("qmf")
class QMF(TrainingMethod):
    """Loss = CE(fused) + sum_m CE(z_m) + ranking_weight * sum_m ranking loss.

    The fused logits weight each modality by its energy confidence logsumexp(z_m) / 10, detached. For the ranking
    loss, each sample is paired with its neighbour in the batch: the one with the lower mean past loss on modality
    m must get the higher confidence, by a margin of the difference. The history needs each sample's index: the
    batch column `sample_index` (MLATrainer adds it to a `datasets.Dataset`).

    Args (through `method_kwargs`):
        ranking_weight: weight of the ranking loss.
    """

    head_type = "per_modality"
    fusion = "energy"
    consumed_columns = ("sample_index",)

    def __init__(self, trainer, ranking_weight: float = 0.1):
        super().__init__(trainer)
        self.ranking_weight = ranking_weight
        num_modalities = len(trainer.accelerator.unwrap_model(trainer.model).config.modality_names)
        self.loss_history = torch.zeros(0, num_modalities, device=trainer.args.device)  # (samples, M): mean past loss
        self.history_counts = torch.zeros_like(self.loss_history)

    def check_model(self, model):
        super().check_model(model)
        if model.config.fusion != self.fusion:
            raise ValueError("Training method 'qmf' fuses with energy confidences: build the model with fusion='energy'.")

    def training_step(self, model, inputs: dict) -> torch.Tensor:
        if "sample_index" not in inputs:
            raise ValueError("Training method 'qmf' needs a 'sample_index' column holding each sample's dataset index.")
        inputs = dict(inputs)
        sample_index = inputs.pop("sample_index")
        labels = inputs.pop("labels")
        with self.trainer.compute_loss_context_manager():
            output = model(**inputs)
        logits, mask = output.modality_logits.float(), output.modality_mask  # (batch, modalities, labels), (batch, M)
        fused = fuse(logits, energy_weights(logits.detach(), mask), mask)
        per_sample = nn.functional.cross_entropy(logits.transpose(1, 2), labels.unsqueeze(1).expand_as(mask), reduction="none")
        unimodal = (per_sample * mask).sum(0) / mask.sum(0).clamp_min(1)  # (modalities,)
        ranking = self._ranking_loss(logits, mask, sample_index)
        loss = nn.functional.cross_entropy(fused, labels) + unimodal.sum() + self.ranking_weight * ranking
        self._update_history(sample_index, per_sample.detach(), mask)
        self.record_loss("fused", loss.detach())
        return self.backward_and_return(loss)

    def _ranking_loss(self, logits, mask, sample_index) -> torch.Tensor:
        self._grow_history(int(sample_index.max()) + 1, logits.shape[1])
        confidence = torch.logsumexp(logits, dim=-1) / 10  # (batch, modalities)
        history = self.loss_history[sample_index]
        partner = torch.roll(torch.arange(len(sample_index), device=logits.device), -1)
        seen = (self.history_counts[sample_index] > 0) & (self.history_counts[sample_index][partner] > 0)
        valid = mask & mask[partner] & seen
        target = torch.sign(history[partner] - history)  # +1 where this sample was the more reliable one
        margin = (history[partner] - history).abs()
        hinge = torch.relu(-target * (confidence - confidence[partner]) + margin)
        return (hinge * valid).sum() / valid.sum().clamp_min(1)

    def _update_history(self, sample_index, per_sample, mask):
        """Running mean of each sample's loss per modality, gathered across ranks so every rank keeps the same."""
        gathered = self.trainer.accelerator.gather({"index": sample_index, "loss": per_sample, "mask": mask.float()})
        index, loss, present = gathered["index"], gathered["loss"], gathered["mask"]
        self._grow_history(int(index.max()) + 1, loss.shape[1])
        counts = self.history_counts[index] + present
        self.loss_history[index] = torch.where(
            present.bool(), self.loss_history[index] + (loss - self.loss_history[index]) / counts.clamp_min(1),
            self.loss_history[index],
        )
        self.history_counts[index] = counts

    def _grow_history(self, num_samples: int, num_modalities: int):
        if num_samples > self.loss_history.shape[0]:
            grown = self.loss_history.new_zeros(num_samples, num_modalities)
            grown_counts = torch.zeros_like(grown)
            grown[: self.loss_history.shape[0]] = self.loss_history
            grown_counts[: self.history_counts.shape[0]] = self.history_counts
            self.loss_history, self.history_counts = grown, grown_counts

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"qmf.loss_history": self.loss_history, "qmf.history_counts": self.history_counts}

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        self.loss_history = state["qmf.loss_history"].to(self.loss_history.device)
        self.history_counts = state["qmf.history_counts"].to(self.history_counts.device)
