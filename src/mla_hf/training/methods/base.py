"""The interface every training method implements, its typed options, and the registry that maps `--method` names
to them (PEFT-style: each method registers itself, with its options class, beside its definition)."""

import dataclasses
import types
import typing
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, get_args, get_origin

import torch


TRAINING_METHODS: dict[str, type["TrainingMethod"]] = {}


class NonFiniteTrainingError(RuntimeError):
    """A step produced a non-finite loss or gradient; nothing was applied to the model."""


@dataclass
class MethodOptions:
    """Options of one training method. Subclasses declare typed fields (with `metadata={"help": ...}`, shown by
    `scripts/train.py --help` as `--<method>.<option>`); values are type-checked on construction and `validate`
    adds range checks."""

    method_name: typing.ClassVar[str] = ""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            setattr(self, field.name, self._checked(field.name, getattr(self, field.name), hints[field.name]))
        self.validate()

    def validate(self):
        """Raise a ValueError naming the option when a value is out of range."""

    def fail(self, option: str, requirement: str):
        value = getattr(self, option)
        raise ValueError(f"Option '{option}' of method '{self.method_name}' {requirement}, got {value!r}.")

    def _checked(self, name: str, value, annotation):
        kinds = get_args(annotation) if get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,)
        if value is None and type(None) in kinds:
            return None
        for kind in kinds:
            if get_origin(kind) is Literal:
                if value in get_args(kind):
                    return value
            elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            elif kind is int and isinstance(value, int) and not isinstance(value, bool):
                return value
            elif kind in (bool, str) and isinstance(value, kind):
                return value
        expected = " or ".join(f"one of {list(get_args(kind))}" if get_origin(kind) is Literal else kind.__name__
                               for kind in kinds)
        raise ValueError(f"Option '{name}' of method '{self.method_name}' must be {expected}, got {value!r}.")

    @classmethod
    def from_value(cls, value) -> "MethodOptions":
        """Options from an instance of this class, a dict of option values or None (the defaults); an option of
        another method is refused with the method it belongs to."""
        if isinstance(value, cls):
            return value
        if isinstance(value, MethodOptions):
            raise ValueError(f"Method '{cls.method_name}' takes {cls.__name__}, got {type(value).__name__}.")
        value = dict(value or {})
        known = {field.name for field in dataclasses.fields(cls)}
        for option in value:
            if option not in known:
                owners = [name for name, method in TRAINING_METHODS.items() if option in
                          {field.name for field in dataclasses.fields(method.options_class)}]
                belongs = f"'{option}' is an option of method {', '.join(repr(o) for o in owners)}" if owners \
                    else f"Unknown option '{option}'"
                raise ValueError(f"{belongs}; method '{cls.method_name}' takes {sorted(known) or 'no options'}.")
        return cls(**value)


@dataclass
class StepContext:
    """What a training method may use during a training step, handed over by the trainer at each call: the method
    keeps no reference to the trainer.

    Attributes:
        args: the `MLATrainingArguments`.
        state: the Trainer's `TrainerState` (`global_step`, `epoch`).
        accelerator: the run's `accelerate.Accelerator` (backward, clipping, reduce and gather across processes).
        optimizer: the optimizer (only methods that take their own optimizer steps use it).
        compute_loss: `(model, inputs) -> (loss, outputs)`, the Trainer's own loss: label smoothing and a user's
            `compute_loss_func` apply.
        autocast: the Trainer's autocast context manager factory.
        steps_in_epoch: batches per epoch, to place a step within its epoch with integers.
    """

    args: typing.Any
    state: typing.Any
    accelerator: typing.Any
    optimizer: torch.optim.Optimizer | None
    compute_loss: Callable
    autocast: Callable[[], AbstractContextManager]
    steps_in_epoch: int

    def epoch_progress(self) -> float:
        """i / N for the batch about to be trained: i batches of the epoch done, N per epoch."""
        return (self.state.global_step % self.steps_in_epoch) / self.steps_in_epoch

    def reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor, "sum") if self.accelerator.num_processes > 1 else tensor


def register_training_method(name: str, options: type[MethodOptions]):
    """Class decorator: make a `TrainingMethod` available as `MLATrainingArguments(method=name)`, with its options
    class (`method_options=`)."""

    def register(cls):
        if name in TRAINING_METHODS:
            raise ValueError(f"Training method '{name}' is already registered by {TRAINING_METHODS[name].__name__}.")
        cls.name = name
        cls.options_class = options
        options.method_name = name
        TRAINING_METHODS[name] = cls
        return cls

    return register


def get_training_method(name: str) -> type["TrainingMethod"]:
    if name not in TRAINING_METHODS:
        raise ValueError(f"Unknown training method '{name}'. Registered: {', '.join(sorted(TRAINING_METHODS))}.")
    return TRAINING_METHODS[name]


class TrainingMethod:
    """One training strategy, built from its options.

    A method that leaves the optimizer step to the Trainer (`owns_optimizer_steps = False`) only changes the loss
    (`compute_loss`) and may add Trainer callbacks (`callbacks`), so every stock Trainer option behaves as in any
    Trainer. A method that owns its steps (MLA) implements `training_step`.

    Attributes:
        name: the registry name (set by `register_training_method`).
        options_class: the `MethodOptions` subclass of its options.
        head_type: the `MLAConfig.head_type` the method trains.
        fusion: the `MLAConfig.fusion` a model trained this way should use.
        consumed_columns: batch columns the method reads itself and the model never sees.
        owns_optimizer_steps: the method steps the optimizer itself; the Trainer's own step then finds no gradient.
        accepts_compute_loss_func: whether a user's `compute_loss_func` can replace the method's loss.
    """

    name: str
    options_class: type[MethodOptions]
    head_type: str = "shared"
    fusion: str = "dynamic"
    consumed_columns: tuple[str, ...] = ()
    owns_optimizer_steps: bool = False
    accepts_compute_loss_func: bool = True

    def __init__(self, options: MethodOptions):
        self.options = options
        self.skipped_steps = 0  # steps dropped for non-finite gradients (skip_nonfinite_batches)
        self._loss_sums: dict[str, float] = {}
        self._loss_counts: dict[str, int] = {}

    def check_model(self, model):
        """Raise a clear error when `model` cannot be trained by this method."""
        if model.config.head_type != self.head_type:
            raise ValueError(
                f"Training method '{self.name}' trains a model with head_type='{self.head_type}', but this model has "
                f"head_type='{model.config.head_type}'. Build it with MLAConfig(..., head_type='{self.head_type}')."
            )

    @classmethod
    def check_arguments(cls, args):
        """Raise a clear error for a TrainingArguments option this method cannot honour."""

    def reset(self, model, args):
        """Start a run: rebuild every piece of method state for `model` (called at each `train()`)."""

    def compute_loss(self, model, inputs: dict, step: StepContext) -> tuple[torch.Tensor, typing.Any]:
        """`(loss, outputs)` of a training batch; by default the Trainer's own loss."""
        loss, outputs = step.compute_loss(model, inputs)
        self.record("loss", "fused", loss)
        return loss, outputs

    def training_step(self, model, inputs: dict, step: StepContext) -> torch.Tensor:
        """Only for methods that own their optimizer steps."""
        raise NotImplementedError

    def non_finite_step(self, where: str, args, loss: torch.Tensor | None = None) -> None:
        """A step whose gradients are not finite was not applied: count it under `skip_nonfinite_batches`, else stop
        the run with an error naming `where` (the step, and the modality for MLA)."""
        if args.skip_nonfinite_batches:
            self.skipped_steps += 1
            return
        found = "the gradients are not finite" if loss is None else \
            f"the loss is {float(loss.detach()):.4g} and the gradients are not finite"
        raise NonFiniteTrainingError(
            f"Training diverged at {where}: {found}, so the step was not applied. Lower the learning rate, check the "
            "inputs for NaN or inf, or set skip_nonfinite_batches=True to skip such steps (they are counted in the logs).")

    def callbacks(self) -> list:
        """Trainer callbacks the method needs (e.g. a gradient modulation before each optimizer step)."""
        return []

    def record(self, what: str, key: str, value: torch.Tensor | float):
        """Add a value to the running mean logged as `<what>_<key>`. Tensors stay on their device until the log,
        so recording never waits for the GPU."""
        name = f"{what}_{key}"
        value = value.detach() if isinstance(value, torch.Tensor) else value
        self._loss_sums[name] = self._loss_sums.get(name, 0.0) + value
        self._loss_counts[name] = self._loss_counts.get(name, 0) + 1

    def pop_log_metrics(self) -> dict[str, float]:
        """Mean of each recorded value since the last log, e.g. `{"loss_audio": 1.2, "grad_norm_audio": 0.3}`."""
        logs = {name: float(total) / self._loss_counts[name] for name, total in self._loss_sums.items()}
        self._loss_sums, self._loss_counts = {}, {}
        return logs

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors needed to resume exactly; saved as safetensors in each checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        pass
