"""MLATrainer: a `transformers.Trainer` that trains an MLAModel with a registered training method."""

import os
from functools import partial

import datasets
import torch
from accelerate.utils.memory import clear_device_cache
from safetensors.torch import load_file, save_file
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback
from transformers.utils import logging

from ..fusion import fit_temperatures
from ..hub import push_folder_to_hub
from ..model_card import local_repo_id, plots_in, render_model_card, save_model_card
from .checkpoints import METHOD_STATE_NAME, checkpoint_problem, is_checkpoint_folder, newest_complete_checkpoint
from .hgm_report import hgm_summary
from .log_lines import PrinterLines, ProgressLines
from .methods import NonFiniteTrainingError, StepContext, get_training_method
from .metrics import MultimodalMetrics
from .missing_modalities import MissingModalityDataset, drop_mask
from .training_args import AUTHORS_GAMMA, AUTHORS_STEP_AT, MLATrainingArguments


logger = logging.get_logger(__name__)


class MLATrainer(Trainer):
    r"""
    Trains an [`MLAModel`] with the method named by `args.method` (`mla` by default; `joint`, `ogm_ge`, `qmf` and
    `unimodal` are baselines trained through the same API).

    Single-step methods (joint, OGM-GE, QMF, unimodal) run the stock `training_step`: only their loss (and, for
    OGM-GE, a gradient modulation before each optimizer step) is their own, so every `TrainingArguments` option
    behaves as in any Trainer. MLA takes one optimizer step per modality and honours the same options itself
    (label smoothing, `compute_loss_func`, clipping, schedule-free optimizers, `torch_empty_cache_steps`).

    The method's state (MLA's projection matrix P, QMF's loss history) is rebuilt from the model at every `train()`
    (`model_init` and hyper-parameter search included), saved in every checkpoint as
    `training_method_state.safetensors` and restored by `resume_from_checkpoint`; it is not part of the model.

    Example:

    ```python
    >>> trainer = MLATrainer(model=model, args=MLATrainingArguments(output_dir="out", num_train_epochs=3),
    ...                      train_dataset=train, eval_dataset=validation)
    >>> trainer.train()
    >>> trainer.evaluate(test, metric_key_prefix="test")
    ```
    """

    _tag_names = ["mla_hf", "multimodal", "mla"]

    def __init__(self, model=None, args: MLATrainingArguments | None = None, train_dataset=None, compute_metrics=None,
                 compute_loss_func=None, **kwargs):
        args = args if args is not None else MLATrainingArguments(output_dir="mla-output")
        if not isinstance(args, MLATrainingArguments):
            raise ValueError(f"MLATrainer needs MLATrainingArguments, got {type(args).__name__}.")
        self.method = get_training_method(args.method)(args.method_options)
        if compute_loss_func is not None and not self.method.accepts_compute_loss_func:
            raise ValueError(f"Training method '{args.method}' has a loss of its own; it cannot take a compute_loss_func.")
        if self.method.owns_optimizer_steps and args.n_gpu > 1:
            raise ValueError(
                f"method='{args.method}' does not run under torch.nn.DataParallel ({args.n_gpu} GPUs in one process): "
                "launch one process per GPU with `torchrun --nproc_per_node N scripts/train.py` (DDP), or make one "
                "GPU visible (CUDA_VISIBLE_DEVICES=0).")
        if ("sample_index" in self.method.consumed_columns and isinstance(train_dataset, datasets.Dataset)
                and "sample_index" not in train_dataset.column_names):
            train_dataset = train_dataset.add_column("sample_index", list(range(len(train_dataset))))
        super().__init__(model=model, args=args, train_dataset=train_dataset, compute_metrics=compute_metrics,
                         compute_loss_func=compute_loss_func, **kwargs)
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            raise ValueError("MLATrainer does not support DeepSpeed or FSDP (see MLATrainingArguments); use DDP.")
        if self.compute_metrics is None:
            self.compute_metrics = MultimodalMetrics(self.model.config.modality_names)
        self.method.check_model(self.model)
        self.method.reset(self.model, self.args)
        self._resumed_from = None
        self._steps_in_epoch = 1
        for callback in [_RunState(self), _NonFiniteGuard(self), *self.method.callbacks()]:
            self.add_callback(callback)
        for stock, readable in ((ProgressCallback, ProgressLines), (PrinterCallback, PrinterLines)):
            if self.pop_callback(stock) is not None:
                self.add_callback(readable)

    # --- training ---

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`, with checkpoints checked before resuming: `resume_from_checkpoint=True` takes the newest
        complete checkpoint in `output_dir` (an interrupted save is skipped, with a warning that names it), and a
        path that does not exist or holds an incomplete checkpoint is an error."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = newest_complete_checkpoint(self.args.output_dir, self.method.name)
        elif resume_from_checkpoint:
            problem = checkpoint_problem(resume_from_checkpoint, self.method.name)
            if problem:
                raise ValueError(f"Cannot resume from '{resume_from_checkpoint}': {problem}.")
        self._resumed_from = resume_from_checkpoint or None
        return super().train(resume_from_checkpoint=self._resumed_from, **kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """The stock scheduler, except for `recipe="authors_sgd"`: the learning rate drops by 10x after 70% of the
        run, as the authors' StepLR does at epoch 70 of 100."""
        if self.args.recipe != "authors_sgd" or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        step_at = int(AUTHORS_STEP_AT * num_training_steps)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer if optimizer is not None else self.optimizer, lambda step: 1.0 if step < step_at else AUTHORS_GAMMA)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    def _step_context(self, num_items_in_batch=None) -> StepContext:
        return StepContext(args=self.args, state=self.state, accelerator=self.accelerator, optimizer=self.optimizer,
                           compute_loss=partial(self._standard_loss, num_items_in_batch=num_items_in_batch),
                           autocast=self.compute_loss_context_manager, steps_in_epoch=self._steps_in_epoch)

    def _standard_loss(self, model, inputs: dict, num_items_in_batch=None):
        """The stock Trainer loss (label smoothing, `compute_loss_func`) of `inputs`; for a one-modality call
        (`modality` in the inputs) the samples that lack the modality get label -100, which every loss skips."""
        if "modality" in inputs and "labels" in inputs:
            core = self.accelerator.unwrap_model(model)
            # The forward below checks the mask; checking it here too would wait for the device once more.
            present = core.modality_presence(**inputs, check_mask=False)[:, core.modalities.index(inputs["modality"])]
            inputs = {**inputs, "labels": inputs["labels"].masked_fill(~present, -100)}
        return super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:  # evaluation: the fused loss, as any Trainer computes it
            inputs = {key: value for key, value in inputs.items() if key not in self.method.consumed_columns}
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        loss, outputs = self.method.compute_loss(model, inputs, self._step_context(num_items_in_batch))
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        if not self.method.owns_optimizer_steps:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        loss = self.method.training_step(model, self._prepare_inputs(inputs), self._step_context(num_items_in_batch))
        if self.args.torch_empty_cache_steps is not None and self.state.global_step % self.args.torch_empty_cache_steps == 0:
            clear_device_cache()
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = {key: value for key, value in inputs.items() if key not in self.method.consumed_columns}
        ignore_keys = [*(ignore_keys or []), "modality_features"]
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the method's per-modality figures
            logs = {**logs, **self.method.pop_log_metrics()}
            if self.method.owns_optimizer_steps:
                logs.pop("grad_norm", None)  # the Trainer's own step finds no gradient: its norm means nothing
            if self.method.skipped_steps:
                logs["skipped_steps"] = self.method.skipped_steps
        super().log(logs, start_time)

    # --- evaluation ---

    def evaluate_missing(self, missing_rates: dict[str, float], eval_dataset=None, seed: int = 0,
                         metric_key_prefix: str = "eval_missing") -> dict[str, float]:
        """Evaluate with modalities dropped at random, independently per sample and modality, e.g. `{"audio": 0.5}`;
        a sample never loses all of its modalities (see `drop_mask`)."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("evaluate_missing needs an eval_dataset.")
        modalities = self.accelerator.unwrap_model(self.model).config.modality_names
        present = (torch.as_tensor(dataset.with_format("numpy")["modality_mask"][:], dtype=torch.bool)
                   if "modality_mask" in getattr(dataset, "column_names", []) else None)
        dropped = drop_mask(len(dataset), modalities, missing_rates, seed, present=present)
        return self.evaluate(MissingModalityDataset(dataset, dropped), metric_key_prefix=metric_key_prefix)

    def calibrate_fusion(self, eval_dataset=None) -> dict[str, float]:
        """Fit one temperature per modality on `eval_dataset` (the validation split by default; never the test
        split), so that each modality's confidence, which entropy and product fusion rely on, matches its accuracy.
        Stored in `config.fusion_temperatures` (saved with the model); returns them."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("calibrate_fusion needs a validation split (eval_dataset).")
        output = self.predict(dataset)
        _, modality_logits, _, modality_mask = (torch.as_tensor(array) for array in output.predictions)
        core = self.accelerator.unwrap_model(self.model)
        temperatures = fit_temperatures(modality_logits, torch.as_tensor(output.label_ids), modality_mask.bool())
        core.config.fusion_temperatures = dict(zip(core.modalities, temperatures.tolist()))
        return core.config.fusion_temperatures

    # --- saving and loading ---

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """`Trainer.save_model`, refusing a model with non-finite weights (nothing on disk is overwritten); in a
        checkpoint folder the method state is written too."""
        core = self.accelerator.unwrap_model(self.model)
        broken = [name for name, parameter in core.named_parameters() if not torch.isfinite(parameter).all()]
        if broken:
            raise NonFiniteTrainingError(f"Refusing to save a model with non-finite weights ({', '.join(broken[:5])}"
                                         f"{' ...' if len(broken) > 5 else ''}): nothing was written.")
        super().save_model(output_dir, _internal_call=_internal_call)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if is_checkpoint_folder(output_dir) and self.args.should_save:
            state = {key: value.detach().contiguous().cpu() for key, value in self.method.state_dict().items()}
            save_file(state, os.path.join(output_dir, METHOD_STATE_NAME), metadata={"method": self.method.name})

    def create_model_card(self, model_name: str | None = None, dataset: str | list[str] | None = None,
                          **kwargs) -> None:
        """Write `README.md` in the output folder from mla_hf's template: the recipe, which epoch was kept, head
        gradient modification over training, the last evaluation's results and the plots present in the folder
        (called by `push_to_hub`). Other keyword arguments of the stock method are accepted and ignored."""
        if not self.is_world_process_zero():
            return
        history = self.state.log_history
        evaluations = [entry for entry in history if any(key.endswith("_accuracy") for key in entry)]
        output_dir = self.args.output_dir
        card = render_model_card(
            self.accelerator.unwrap_model(self.model).config,
            metrics=evaluations[-1] if evaluations else None,
            training=self.args.to_dict(),
            dataset_name=dataset[0] if isinstance(dataset, list) else dataset,
            repo_id=self.hub_model_id or self.args.hub_model_id or local_repo_id(output_dir),
            model_name=model_name,
            selection=self.kept_epoch(),
            hgm=hgm_summary(history),
            plots=plots_in(output_dir),
        )
        save_model_card(output_dir, card)

    def kept_epoch(self) -> dict | None:
        """Which epoch `load_best_model_at_end` kept and on what validation figure: `{"epoch", "epochs", "metric",
        "value"}`, or None when no best model was kept."""
        if not (self.args.load_best_model_at_end and self.state.best_global_step):
            return None
        kept = next((entry for entry in self.state.log_history
                     if entry.get("step") == self.state.best_global_step and "epoch" in entry), None)
        return {"epoch": kept["epoch"] if kept else self.state.best_global_step, "epochs": self.state.epoch,
                "metric": self.args.metric_for_best_model or "loss", "value": self.state.best_metric}

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None, **kwargs):
        """Save the model and its card, then upload exactly the Hub files of the output folder (`mla_hf.hub`): never
        checkpoints, optimizer state or the pickled training arguments (which hold the Hub token)."""
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        self.create_model_card(**kwargs)
        private = self.args.hub_private_repo if private is None else private
        return push_folder_to_hub(self.args.output_dir, self.hub_model_id, private=bool(private),
                                  commit_message=commit_message, token=token,
                                  revision=revision if revision is not None else self.args.hub_revision)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        self._load_model_weights(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        self._load_model_weights(self.state.best_model_checkpoint)

    def _load_model_weights(self, checkpoint: str) -> None:
        """Restore the model from a checkpoint through `from_pretrained`, strictly.

        The stock Trainer (transformers 5.24) reads the safetensors file into `load_state_dict(strict=False)`, which
        skips the key conversions transformers 5 applies to some backbones (ViT, AST...) and so silently keeps the
        current weights: these two private methods are overridden for that reason only.
        """
        core = self.accelerator.unwrap_model(self.model)
        saved = type(core).from_pretrained(checkpoint, dtype=core.dtype)
        core.load_state_dict(saved.state_dict())

    def load_method_state(self, checkpoint: str) -> None:
        """Restore the method state (P, QMF's history) of a checkpoint that `train` has checked (`checkpoint_problem`:
        complete, and written by this method)."""
        self.method.load_state_dict(load_file(os.path.join(checkpoint, METHOD_STATE_NAME), device=str(self.args.device)))

class _RunState(TrainerCallback):
    """Every run starts from fresh method state built for the model actually trained (`model_init` included), then
    restores the checkpoint's when resuming. Runs after the Trainer has loaded the checkpoint's weights."""

    def __init__(self, trainer: MLATrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        trainer = self.trainer
        trainer.method.check_model(model)
        trainer.method.reset(model, args)
        trainer.method.skipped_steps = 0
        trainer._steps_in_epoch = len(train_dataloader) if hasattr(train_dataloader, "__len__") else max(state.max_steps, 1)
        if trainer._resumed_from:
            trainer.load_method_state(trainer._resumed_from)


class _NonFiniteGuard(TrainerCallback):
    """For methods that leave the optimizer step to the Trainer: non-finite gradients (after the all-reduce, so every
    rank decides alike) stop the run, or with `skip_nonfinite_batches` the step is dropped (no gradient reaches the
    optimizer)."""

    def __init__(self, trainer: MLATrainer):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.trainer.method.owns_optimizer_steps:
            return  # it checks each of its own steps
        grads = [parameter.grad for parameter in model.parameters() if parameter.grad is not None]
        if not grads or torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            return
        self.trainer.method.non_finite_step(f"step {state.global_step + 1} ({self.trainer.method.name})", args)
        model.zero_grad(set_to_none=True)
