"""MLA: alternating unimodal steps through one shared head, with the head gradient projection (HGM)."""

import torch

from ..head_projection import HeadGradientProjector, authors_alpha
from .base import TrainingMethod, register_training_method


@register_training_method("mla")
class MLA(TrainingMethod):
    """Per batch, for each modality in turn: forward ONLY that modality, backward, project the shared head's weight
    gradient by P, optimizer step, RLS update of P, `zero_grad(set_to_none=True)`.

    Gradients of idle encoders stay `None`, so no optimizer (AdamW, SGD with momentum and weight decay) moves them.
    The mean feature that updates P is reduced across processes, so every rank holds the same P.
    """

    head_type = "shared"
    takes_own_optimizer_steps = True

    def __init__(self, trainer):
        super().__init__(trainer)
        args = trainer.args
        self.projector = None
        if args.hgm:
            dim = trainer.accelerator.unwrap_model(trainer.model).config.projection_dim
            self.projector = HeadGradientProjector(dim, normalize=args.hgm_normalize, device=args.device)

    def alpha(self) -> float:
        args, state = self.trainer.args, self.trainer.state
        if args.hgm_alpha_schedule == "constant":
            return args.hgm_alpha
        return authors_alpha(state.epoch % 1)  # the Trainer keeps state.epoch = epoch + i / N before batch i

    def modality_order(self, modalities: list[str]) -> list[str]:
        if self.trainer.args.modality_order == "round_robin":
            return modalities
        # Seeded by the step, so every rank and every resumed run draws the same order.
        generator = torch.Generator().manual_seed(self.trainer.args.seed + self.trainer.state.global_step)
        return [modalities[i] for i in torch.randperm(len(modalities), generator=generator).tolist()]

    def training_step(self, model, inputs: dict) -> torch.Tensor:
        trainer, args = self.trainer, self.trainer.args
        core = trainer.accelerator.unwrap_model(model)
        present_here = core.modality_presence(**inputs).sum(0)  # (modalities,) samples having each modality
        present_anywhere = trainer.accelerator.reduce(present_here.clone(), "sum").tolist()  # one all-reduce a batch
        losses = []
        for name in self.modality_order(core.modalities):
            index = core.modalities.index(name)
            if present_anywhere[index] == 0:
                continue  # skipped on every rank alike
            if present_here[index] == 0:
                raise ValueError(
                    f"Modality '{name}' is absent from this process's whole batch but present on another: in "
                    "multi-process training every batch must hold at least one sample with each modality."
                )
            with trainer.compute_loss_context_manager():
                output = model(**inputs, modality=name)
            trainer.accelerator.backward(output.loss)
            mean_feature = self._mean_feature(output, index)
            if self.projector is not None:
                if args.hgm_update_source == "current":
                    self.projector.update(mean_feature, self.alpha())
                self.projector.project_(core.head.linear.weight.grad)
            if args.max_grad_norm and args.max_grad_norm > 0:
                trainer.accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
            if self.projector is not None and args.hgm_update_source == "previous":
                self.projector.update(mean_feature, self.alpha())  # used before the next modality's step
            self.record_loss(name, output.loss.detach())
            losses.append(output.loss.detach())
        if not losses:
            raise ValueError("A training batch has no modality present in any sample (check `modality_mask`).")
        return torch.stack(losses).mean()

    def _mean_feature(self, output, index: int) -> torch.Tensor:
        """Mean `(projection_dim,)` of the modality's features over its present samples on all ranks."""
        rows = output.modality_mask[:, index]
        features = output.modality_features[:, index].detach().float()
        total = torch.cat([features[rows].sum(0), rows.sum().reshape(1).float()])
        total = self.trainer.accelerator.reduce(total, "sum")
        return total[:-1] / total[-1]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.projector is None else {"head_projection.P": self.projector.P}

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        if self.projector is not None:
            self.projector.load_state_dict({"P": state["head_projection.P"]})
