"""MLA: alternating unimodal steps through one shared head, with the head gradient projection (HGM)."""

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch.profiler import record_function

from ..head_projection import HeadGradientProjector, authors_alpha
from .base import MethodOptions, StepContext, TrainingMethod, register_training_method


@dataclass
class MLAOptions(MethodOptions):
    """Options of MLA (`--mla.<option>` in the scripts)."""

    modality_order: Literal["round_robin", "shuffled"] = field(
        default="round_robin",
        metadata={"help": "Order of the unimodal steps in each batch: the configured order, or a seeded shuffle."})
    hgm: bool = field(default=True, metadata={"help": "Head gradient modification: project the shared head's "
                                                      "update so it keeps what earlier modalities taught it."})
    hgm_alpha_schedule: Literal["authors", "constant"] = field(
        default="authors",
        metadata={"help": "authors: alpha = 0.1 ** (1 + i / N) over the batches of each epoch; constant: hgm_alpha."})
    hgm_alpha: float = field(default=0.1, metadata={"help": "The RLS alpha when hgm_alpha_schedule='constant'."})
    hgm_normalize: bool = field(default=False, metadata={
        "help": "Divide P by its Frobenius norm after each update, as the authors' code does (shrinks the head's "
                "updates by about 1/sqrt(projection_dim))."})
    hgm_update_source: Literal["previous", "current"] = field(
        default="previous",
        metadata={"help": "Update P with the mean feature of the modality just trained (paper) or the current one."})
    hgm_target: Literal["gradient", "update"] = field(default="gradient", metadata={
        "help": "Project the head's gradient (paper), or the optimizer's update to the head: with Adam or clipping "
                "only the latter keeps the head's response to earlier modalities' features unchanged."})
    hgm_feature_scale: Literal["raw", "unit"] = field(default="raw", metadata={
        "help": "raw: update P with the mean feature r as it is (paper); the projection then depends on |r|^2 against "
                "alpha and is weak for small features. unit: with r / |r|, so alpha is relative and the projection "
                "strength does not depend on the feature scale."})
    hgm_forgetting: float = field(default=0.0, metadata={
        "help": "P <- (1 - f) P + f I after each update, so that P cannot collapse and freeze the head (0: off)."})
    hgm_reset_each_epoch: bool = field(default=False, metadata={"help": "Reset P to I at the start of each epoch."})

    def validate(self):
        if self.hgm_alpha <= 0:
            self.fail("hgm_alpha", "must be positive")
        if not 0 <= self.hgm_forgetting < 1:
            self.fail("hgm_forgetting", "must lie in [0, 1)")


@register_training_method("mla", options=MLAOptions)
class MLA(TrainingMethod):
    """Per batch, for each modality in turn: forward ONLY that modality, backward, project the shared head's weight
    gradient by P, optimizer step, RLS update of P, `zero_grad(set_to_none=True)`.

    Gradients of idle encoders stay `None`, so no optimizer (AdamW, SGD with momentum and weight decay) moves them.
    Across processes, each modality's loss is the mean over every sample that has it, wherever it lies: a process
    whose batch lacks the modality takes part with a zero contribution. The mean feature that updates P is reduced
    across processes, so every rank holds the same P.
    """

    head_type = "shared"
    owns_optimizer_steps = True

    @classmethod
    def check_arguments(cls, args):
        if args.gradient_accumulation_steps != 1:
            raise ValueError(
                "method='mla' needs gradient_accumulation_steps=1: accumulating would mix the gradients of several "
                "unimodal steps (accelerate makes the intermediate optimizer steps silent no-ops). Raise "
                "per_device_train_batch_size instead, or use several processes (torchrun).")
        if args.fp16:
            raise ValueError("method='mla' takes several optimizer steps per batch, which fp16's GradScaler does not "
                             "support here: use bf16=True.")

    def reset(self, model, args):
        options = self.options
        self.trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]  # walked once
        self.projector = None
        if options.hgm:
            self.projector = HeadGradientProjector(model.config.projection_dim, normalize=options.hgm_normalize,
                                                   forgetting=options.hgm_forgetting, device=args.device)
        self.previous_feature = None  # mean feature of the modality trained last: what the next step must not disturb

    def alpha(self, step: StepContext) -> float:
        if self.options.hgm_alpha_schedule == "constant":
            return self.options.hgm_alpha
        return authors_alpha(step.epoch_progress())

    def modality_order(self, modalities: list[str], step: StepContext) -> list[str]:
        if self.options.modality_order == "round_robin":
            return modalities
        # Seeded by the step, so every rank and every resumed run draws the same order.
        generator = torch.Generator().manual_seed(step.args.seed + step.state.global_step)
        return [modalities[i] for i in torch.randperm(len(modalities), generator=generator).tolist()]

    def training_step(self, model, inputs: dict, step: StepContext) -> torch.Tensor:
        core = step.accelerator.unwrap_model(model)
        if hasattr(step.optimizer, "train") and callable(step.optimizer.train):
            step.optimizer.train()  # schedule-free optimizers
        if self.projector is not None and self.options.hgm_reset_each_epoch and step.epoch_progress() == 0:
            self.projector.reset()
        # (modalities,) samples having each modality; each modality's forward checks the mask, so this need not.
        present = core.modality_presence(**inputs, check_mask=False).sum(0)
        # One all-reduce and one host sync a batch for both counts.
        present_here, present_anywhere = torch.stack([present, step.reduce_sum(present.clone())]).tolist()
        losses = []
        for name in self.modality_order(core.modalities, step):
            index = core.modalities.index(name)
            if present_anywhere[index] == 0:
                continue  # skipped on every rank alike
            share = present_here[index] * step.accelerator.num_processes / present_anywhere[index]
            loss = self._modality_step(model, core, inputs, name, index, share, step)
            if loss is not None:
                losses.append(loss)
        if not any(present_anywhere):
            raise ValueError("A training batch has no modality present in any sample (check `modality_mask`).")
        return torch.stack(losses).mean() if losses else torch.zeros((), device=step.args.device)

    def _modality_step(self, model, core, inputs, name, index, share, step) -> torch.Tensor | None:
        options, head = self.options, core.head.linear
        with record_function(f"mla.forward_backward.{name}"):
            with step.autocast():
                loss, output = step.compute_loss(model, {**inputs, "modality": name})
            # DDP averages gradients over processes; weighting each process's mean by its share of the samples makes
            # the step the mean over every sample that has the modality, whichever process holds it.
            step.accelerator.backward(loss * share)
        with record_function("mla.hgm"):
            mean_feature = self._mean_feature(output, index, step, reduce=self.projector is not None)
            if self.projector is not None and options.hgm_update_source == "current":
                self.projector.update(self._rls_feature(mean_feature), self.alpha(step))
            if self.projector is not None and options.hgm_target == "gradient" and head.weight.grad is not None:
                self.record("hgm_grad_ratio", name, self.projector.project_(head.weight.grad))
        with record_function("mla.clip"):
            grad_norm = self._clip_and_measure(step)
        if not torch.isfinite(grad_norm):
            step.optimizer.zero_grad(set_to_none=True)
            self.non_finite_step(f"step {step.state.global_step + 1}, modality '{name}'", step.args, loss)
            return None
        reference = self.previous_feature
        before = head.weight.detach() @ reference.to(head.weight) if reference is not None else None
        weight_before = head.weight.detach().clone() if self.projector is not None and options.hgm_target == "update" else None
        with record_function("mla.optimizer_step"):
            step.optimizer.step()
            step.optimizer.zero_grad(set_to_none=True)
        with record_function("mla.hgm"):
            if weight_before is not None:
                self.record("hgm_grad_ratio", name, self._project_update(head.weight, weight_before))
            if before is not None:
                after = head.weight.detach() @ reference.to(head.weight)
                self.record("hgm_drift", name, (after - before).norm() / before.norm().clamp_min(1e-30))
            if self.projector is not None and options.hgm_update_source == "previous":
                self.projector.update(self._rls_feature(mean_feature), self.alpha(step))  # for the next modality
        self.previous_feature = mean_feature
        self.record("feature_norm", name, mean_feature.norm())
        self.record("loss", name, loss.detach())
        self.record("grad_norm", name, grad_norm)
        return loss.detach()

    def _rls_feature(self, mean_feature: torch.Tensor) -> torch.Tensor:
        if self.options.hgm_feature_scale == "unit":
            return mean_feature / mean_feature.norm().clamp_min(1e-12)
        return mean_feature

    @torch.no_grad()
    def _project_update(self, weight: torch.Tensor, weight_before: torch.Tensor) -> torch.Tensor:
        """Keep only the projected part of the step the optimizer just took: W = W_before + (W - W_before) P."""
        update = weight - weight_before
        projected = update @ self.projector.P.to(update.dtype)
        weight.copy_(weight_before + projected)
        return projected.norm() / update.norm().clamp_min(1e-30)

    def _clip_and_measure(self, step) -> torch.Tensor:
        """Total gradient norm of this modality step, before clipping to max_grad_norm (when set)."""
        if step.args.max_grad_norm and step.args.max_grad_norm > 0:
            return torch.as_tensor(step.accelerator.clip_grad_norm_(self.trainable, step.args.max_grad_norm))
        grads = [parameter.grad for parameter in self.trainable if parameter.grad is not None]
        return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())

    @staticmethod
    def _mean_feature(output, index: int, step: StepContext, reduce: bool) -> torch.Tensor:
        """Mean `(projection_dim,)` of the modality's features over its present samples (on all ranks if `reduce`)."""
        rows = output.modality_mask[:, index]
        features = output.modality_features[:, index].detach().float()
        total = torch.cat([features[rows].sum(0), rows.sum().reshape(1).float()])
        if reduce:
            total = step.reduce_sum(total)
        return (total[:-1] / total[-1].clamp_min(1)).double()

    def pop_log_metrics(self) -> dict[str, float]:
        logs = super().pop_log_metrics()
        if self.projector is not None:
            logs.update(self.projector.spectrum())
        return logs

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {} if self.projector is None else {"head_projection.P": self.projector.P}
        if self.previous_feature is not None:
            state["previous_feature"] = self.previous_feature
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        if self.projector is not None:
            self.projector.load_state_dict({"P": state["head_projection.P"]})
        self.previous_feature = state.get("previous_feature")
