"""The interface every training method implements, and the registry that maps `--method` names to them."""

import inspect

import torch


TRAINING_METHODS: dict[str, type["TrainingMethod"]] = {}


def register_training_method(name: str):
    """Class decorator: make a `TrainingMethod` available as `MLATrainingArguments(method=name)`."""

    def register(cls):
        if name in TRAINING_METHODS:
            raise ValueError(f"Training method '{name}' is already registered by {TRAINING_METHODS[name].__name__}.")
        cls.name = name
        TRAINING_METHODS[name] = cls
        return cls

    return register


def get_training_method(name: str) -> type["TrainingMethod"]:
    if name not in TRAINING_METHODS:
        raise ValueError(f"Unknown training method '{name}'. Registered: {', '.join(sorted(TRAINING_METHODS))}.")
    return TRAINING_METHODS[name]


def build_training_method(name: str, trainer, method_kwargs: dict) -> "TrainingMethod":
    """Instantiate a registered method, naming the options it accepts when `method_kwargs` does not fit."""
    method_class = get_training_method(name)
    signature = inspect.signature(method_class)
    try:
        signature.bind(trainer, **method_kwargs)
    except TypeError:
        accepted = [p for p in signature.parameters if p != "trainer"]
        raise ValueError(
            f"Training method '{name}' takes options {accepted or 'none'}, got method_kwargs={method_kwargs}."
        ) from None
    return method_class(trainer, **method_kwargs)


class TrainingMethod:
    """One training strategy. `training_step` runs forward and backward for one batch; methods that leave the
    optimizer step to the Trainer only backpropagate, MLA takes its own per-modality steps.

    Attributes:
        name: the registry name (set by `register_training_method`).
        head_type: the `MLAConfig.head_type` the method trains.
        fusion: the `MLAConfig.fusion` a model trained this way should use.
        consumed_columns: batch columns the method reads itself and the model never sees.
        takes_own_optimizer_steps: the method steps the optimizer itself, so the Trainer's step finds no gradients
            and its logged `grad_norm` (always 0) is dropped.
    """

    name: str
    head_type: str = "shared"
    fusion: str = "dynamic"
    consumed_columns: tuple[str, ...] = ()
    takes_own_optimizer_steps: bool = False

    def __init__(self, trainer):
        self.trainer = trainer
        self._loss_sums: dict[str, float] = {}
        self._loss_counts: dict[str, int] = {}

    def check_model(self, model):
        """Raise a clear error when `model` cannot be trained by this method."""
        if model.config.head_type != self.head_type:
            raise ValueError(
                f"Training method '{self.name}' trains a model with head_type='{self.head_type}', but this model has "
                f"head_type='{model.config.head_type}'. Build it with MLAConfig(..., head_type='{self.head_type}')."
            )

    def training_step(self, model, inputs: dict) -> torch.Tensor:
        raise NotImplementedError

    def backward_and_return(self, loss: torch.Tensor) -> torch.Tensor:
        self.trainer.accelerator.backward(loss)
        return loss.detach()

    def record_loss(self, key: str, loss: torch.Tensor):
        self._loss_sums[key] = self._loss_sums.get(key, 0.0) + float(loss)
        self._loss_counts[key] = self._loss_counts.get(key, 0) + 1

    def pop_log_metrics(self) -> dict[str, float]:
        """Mean of each recorded loss since the last log, e.g. `{"loss_audio": 1.2}`."""
        logs = {f"loss_{key}": total / self._loss_counts[key] for key, total in self._loss_sums.items()}
        self._loss_sums, self._loss_counts = {}, {}
        return logs

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors needed to resume exactly; saved as safetensors in each checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        pass
