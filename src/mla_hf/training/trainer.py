"""MLATrainer: a `transformers.Trainer` that trains an MLAModel with a registered training method."""

import os

import datasets
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import Trainer

from ..model_card import render_model_card, save_model_card
from .methods import build_training_method, get_training_method
from .metrics import MultimodalMetrics
from .missing_modalities import MissingModalityDataset, drop_mask
from .training_args import MLATrainingArguments


METHOD_STATE_NAME = "training_method_state.safetensors"


class MLATrainer(Trainer):
    r"""
    Trains an [`MLAModel`] with the method named by `args.method` (`mla` by default; `joint`, `ogm_ge`, `qmf` and
    `unimodal` are baselines trained through the same API).

    The method's state (MLA's projection matrix P, QMF's loss history) is saved in every checkpoint as
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
                 **kwargs):
        args = args if args is not None else MLATrainingArguments(output_dir="mla-output")
        if not isinstance(args, MLATrainingArguments):
            raise ValueError(f"MLATrainer needs MLATrainingArguments, got {type(args).__name__}.")
        method_class = get_training_method(args.method)
        if args.method == "mla" and args.fp16:
            raise ValueError("method='mla' takes several optimizer steps per batch, which fp16's GradScaler does not "
                             "support here: use bf16=True.")
        if compute_metrics is None and model is not None:
            compute_metrics = MultimodalMetrics(model.config.modality_names)
        if ("sample_index" in method_class.consumed_columns and isinstance(train_dataset, datasets.Dataset)
                and "sample_index" not in train_dataset.column_names):
            train_dataset = train_dataset.add_column("sample_index", list(range(len(train_dataset))))
        super().__init__(model=model, args=args, train_dataset=train_dataset, compute_metrics=compute_metrics, **kwargs)
        self.method = build_training_method(args.method, self, args.method_kwargs)
        self.method.check_model(self.accelerator.unwrap_model(self.model))

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        model.train()
        return self.method.training_step(model, self._prepare_inputs(inputs))

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = {key: value for key, value in inputs.items() if key not in self.method.consumed_columns}
        ignore_keys = [*(ignore_keys or []), "modality_features"]
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def evaluate_missing(self, missing_rates: dict[str, float], eval_dataset=None, seed: int = 0,
                         metric_key_prefix: str = "eval_missing") -> dict[str, float]:
        """Evaluate with a seeded random share of the samples losing a modality, e.g. `{"audio": 0.5}`: the
        dropped modality is masked out of the fusion (see `drop_mask`)."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("evaluate_missing needs an eval_dataset.")
        modalities = self.accelerator.unwrap_model(self.model).config.modality_names
        dropped = drop_mask(len(dataset), modalities, missing_rates, seed)
        return self.evaluate(MissingModalityDataset(dataset, dropped), metric_key_prefix=metric_key_prefix)

    def create_model_card(self, model_name: str | None = None, dataset: str | list[str] | None = None, **kwargs) -> None:
        """Write `README.md` in the output folder from mla_hf's template, with the last evaluation's results (called
        by `push_to_hub`). Other keyword arguments of the stock method are accepted and ignored."""
        if not self.is_world_process_zero():
            return
        evaluations = [entry for entry in self.state.log_history if any(key.endswith("_accuracy") for key in entry)]
        card = render_model_card(
            self.accelerator.unwrap_model(self.model).config,
            metrics=evaluations[-1] if evaluations else None,
            training=self.args.to_dict(),
            dataset_name=dataset[0] if isinstance(dataset, list) else dataset,
            repo_id=self.hub_model_id or self.args.hub_model_id or self.args.output_dir,
            model_name=model_name,
        )
        save_model_card(self.args.output_dir, card)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the method's per-modality losses
            logs = {**logs, **self.method.pop_log_metrics()}
            if self.method.takes_own_optimizer_steps:
                logs.pop("grad_norm", None)
        super().log(logs, start_time)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        self._method_state_path(resume_from_checkpoint)  # refuse another method's checkpoint before touching weights
        self._load_model_weights(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        self._load_model_weights(self.state.best_model_checkpoint)

    def _load_model_weights(self, checkpoint: str) -> None:
        """Restore the model from a checkpoint through `from_pretrained`, strictly.

        The stock Trainer reads the safetensors file into `load_state_dict(strict=False)`, which skips the key
        conversions transformers 5 applies to some backbones (ViT, AST...) and so silently keeps the current weights.
        """
        core = self.accelerator.unwrap_model(self.model)
        saved = type(core).from_pretrained(checkpoint, dtype=core.dtype)
        core.load_state_dict(saved.state_dict())

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            state = {key: value.detach().contiguous().cpu() for key, value in self.method.state_dict().items()}
            save_file(state, os.path.join(output_dir, METHOD_STATE_NAME), metadata={"method": self.method.name})

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        self.method.load_state_dict(load_file(self._method_state_path(checkpoint), device=str(self.args.device)))

    def _method_state_path(self, checkpoint: str) -> str:
        path = os.path.join(checkpoint, METHOD_STATE_NAME)
        if not os.path.isfile(path):
            raise ValueError(f"Checkpoint {checkpoint} has no {METHOD_STATE_NAME}: it was not written by MLATrainer.")
        with safe_open(path, framework="pt") as handle:
            saved_method = (handle.metadata() or {}).get("method")
        if saved_method != self.method.name:
            raise ValueError(f"Checkpoint {checkpoint} was trained with method '{saved_method}', not '{self.method.name}'.")
        return path
