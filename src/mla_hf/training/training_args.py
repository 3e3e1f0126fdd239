"""Training arguments of MLATrainer: the method and its typed options. The model's config.json never carries them."""

import dataclasses
import sys
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from .methods import MethodOptions, get_training_method


# The MLA authors' code (Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation): one SGD optimizer over
# all parameters, lr 1e-3, momentum 0.9, weight decay 1e-4, StepLR(step 70, gamma 0.1) over 100 epochs, no clipping.
# MLATrainer.create_scheduler puts the step at the same share of any run.
RECIPES = {
    "default": {},
    "authors_sgd": {"optim": "sgd", "optim_args": "momentum=0.9", "learning_rate": 1e-3, "weight_decay": 1e-4,
                    "max_grad_norm": 0.0, "lr_scheduler_type": "constant"},
}
AUTHORS_STEP_AT, AUTHORS_GAMMA = 0.7, 0.1


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


@dataclass
class MLATrainingArguments(TrainingArguments):
    r"""
    [`~transformers.TrainingArguments`] plus the training method and its options.

    Args:
        method (`str`, defaults to `"mla"`):
            A registered training method: `mla`, `joint`, `ogm_ge`, `qmf` or `unimodal`.
        method_options (`MethodOptions` or `dict`, *optional*):
            The method's options: an instance of its options class (`MLAOptions`, `OGMGEOptions`, `QMFOptions`,
            `UnimodalOptions`) or a dict of option values. Type-checked here; an option of another method is refused.
        recipe (`str`, defaults to `"default"`):
            `"authors_sgd"` sets the MLA authors' optimizer recipe (see `RECIPES`); `"default"` leaves the
            optimizer flags as given. Under SGD, HGM's collapsing P shrinks the shared head's steps, which AdamW
            compensates and SGD does not: the README's results measure the cost, and `hgm_forgetting` limits it.
        skip_nonfinite_batches (`bool`, defaults to `False`):
            A step whose gradients are not finite stops the run with an error naming the step and modality; with
            this, the step is skipped instead (nothing is applied) and counted in the logs as `skipped_*`.

    Defaults differ from `TrainingArguments` in three places: `remove_unused_columns=False` (model inputs are named
    `<modality>_<argument>` and would be dropped), `ddp_find_unused_parameters=True` (an alternating step leaves
    every other encoder unused) and `hub_strategy="end"` (the only one: a Hub repo receives the finished folder,
    never checkpoints, optimizer state or the pickled arguments that hold the token).
    """

    _VALID_DICT_FIELDS = TrainingArguments._VALID_DICT_FIELDS + ["method_options"]

    method: str = field(
        default="mla",
        metadata={"help": "Training method: mla, joint, ogm_ge, qmf or unimodal. Its options are the "
                          "--<method>.<option> flags below."},
    )
    method_options: dict | str | None = field(
        default=None,
        metadata={"help": 'The method\'s options as JSON, e.g. \'{"modality": "audio"}\' for unimodal (or use the '
                          "--<method>.<option> flags)."},
    )
    recipe: str = field(
        default="default",
        metadata={"help": "default: the optimizer flags as given (AdamW unless --optim). authors_sgd: the MLA authors' "
                          "recipe: SGD (lr 1e-3, momentum 0.9, weight decay 1e-4), no clipping, the learning rate x0.1 "
                          "after 70% of the run (their StepLR at epoch 70 of 100, scaled to this run)."},
    )
    skip_nonfinite_batches: bool = field(
        default=False,
        metadata={"help": "Skip (and count) a step whose gradients are not finite instead of stopping the run."},
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the <modality>_* columns."})
    hub_strategy: str = field(default="end", metadata={
        "help": "Only 'end': the finished model folder is pushed once, never training checkpoints."})
    ddp_find_unused_parameters: bool | None = field(
        default=True, metadata={"help": "Alternating steps leave the other encoders unused; keep True."}
    )

    def __post_init__(self):
        if not _has_accelerator():
            # The CPU is the only device. Saying so matters: without it `torchrun --nproc_per_node 2` starts
            # independent trainings that all believe they are rank 0 and write to the same folder (with it they form
            # one gloo process group), and bf16 is refused instead of running under CPU autocast.
            self.use_cpu = True
        if self.use_cpu:
            self.dataloader_pin_memory = False  # pinning needs an accelerator; torch warns at every epoch otherwise
        if self.disable_tqdm is None and not sys.stderr.isatty():
            self.disable_tqdm = True  # bars redrawn in a log file leave escape codes ("[A") and no progress
        if self.deepspeed or self.fsdp or self.fsdp_config:
            raise ValueError(
                "MLATrainer does not support DeepSpeed or FSDP: MLA projects and steps the shared head's full "
                "gradient once per modality, which ZeRO and FSDP shard across processes. Scale out with DDP "
                "(`torchrun --nproc_per_node N scripts/train.py`, or `--nnodes` for several machines); for large "
                "backbones, train LoRA adapters (--lora_modalities), with activation checkpointing and bf16.")
        if self.recipe not in RECIPES:
            raise ValueError(f"Unknown recipe '{self.recipe}'. Choose one of: {', '.join(RECIPES)}.")
        for name, value in RECIPES[self.recipe].items():
            setattr(self, name, value)
        if self.hub_strategy != "end":
            raise ValueError(f"hub_strategy='{self.hub_strategy}' would push training checkpoints (optimizer state and "
                             "the pickled arguments, which hold the Hub token); MLATrainer pushes the finished model "
                             "folder once: use hub_strategy='end'.")
        super().__post_init__()
        method = get_training_method(self.method)
        if isinstance(self.method_options, str):  # a JSON string the parser could not turn into a dict
            raise ValueError(f"method_options must be a JSON object, got {self.method_options!r}.")
        self.method_options = method.options_class.from_value(self.method_options)
        method.check_arguments(self)

    def to_dict(self):
        output = super().to_dict()
        if isinstance(self.method_options, MethodOptions):
            output["method_options"] = dataclasses.asdict(self.method_options)
        return output
