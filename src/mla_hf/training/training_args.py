"""Training arguments of MLATrainer: the method and its hyper-parameters. The model's config.json never carries them."""

import os
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import TrainingArguments


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


@dataclass
class MLATrainingArguments(TrainingArguments):
    r"""
    [`~transformers.TrainingArguments`] plus the training method and MLA's head gradient modification (HGM).

    Defaults differ from `TrainingArguments` in two places: `remove_unused_columns=False` (model inputs are named
    `<modality>_<argument>` and would be dropped) and `ddp_find_unused_parameters=True` (an alternating step leaves
    every other encoder unused).
    """

    _VALID_DICT_FIELDS = TrainingArguments._VALID_DICT_FIELDS + ["method_kwargs"]

    method: str = field(
        default="mla",
        metadata={"help": "Training method: mla, joint, ogm_ge, qmf or unimodal (see mla_hf.training.TRAINING_METHODS)."},
    )
    method_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": 'Method options as a dict or JSON string, e.g. \'{"modality": "audio"}\' for unimodal.'},
    )
    modality_order: Literal["round_robin", "shuffled"] = field(
        default="round_robin",
        metadata={"help": "Order of the unimodal steps in each batch: the configured order, or a seeded shuffle."},
    )
    hgm: bool = field(default=True, metadata={"help": "Project the shared head's weight gradient (RLS, MLA's HGM)."})
    hgm_alpha_schedule: Literal["authors", "constant"] = field(
        default="authors",
        metadata={"help": "authors: alpha = 0.1 ** (1 + i / N) over the batches of each epoch; constant: hgm_alpha."},
    )
    hgm_alpha: float = field(default=0.1, metadata={"help": "The RLS alpha when hgm_alpha_schedule='constant'."})
    hgm_normalize: bool = field(
        default=False,
        metadata={"help": "Divide P by its Frobenius norm after each update, as the authors' code does."},
    )
    hgm_update_source: Literal["previous", "current"] = field(
        default="previous",
        metadata={"help": "Update P with the mean feature of the modality just trained (paper) or the current one."},
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the <modality>_* columns."})
    ddp_find_unused_parameters: bool | None = field(
        default=True, metadata={"help": "Alternating steps leave the other encoders unused; keep True."}
    )

    def __post_init__(self):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not self.use_cpu and not _has_accelerator():
            # Without this, `torchrun --nproc_per_node 2` on a CPU-only machine starts independent trainings that
            # all believe they are rank 0 and write to the same folder; with it they form one gloo process group.
            self.use_cpu = True
        if self.use_cpu or not _has_accelerator():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; torch warns at every epoch otherwise
        super().__post_init__()
        if self.gradient_accumulation_steps != 1:
            raise ValueError(
                "MLATrainer needs gradient_accumulation_steps=1: accumulating would mix the gradients of several "
                "unimodal steps (accelerate makes the intermediate optimizer steps silent no-ops). Raise "
                "per_device_train_batch_size instead."
            )
        if self.hgm_alpha <= 0:
            raise ValueError(f"hgm_alpha must be positive, got {self.hgm_alpha}.")
        self.method_kwargs = dict(self.method_kwargs or {})
