"""The scripts' command line: `HfArgumentParser` plus each training method's typed options as `--<method>.<option>`
flags, and a `--help` that leads with what a run is about (the full `TrainingArguments` list is `--help_all`)."""

import argparse
import dataclasses
import types
import typing
from typing import Literal, get_args, get_origin

from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from .methods import TRAINING_METHODS
from .training_args import MLATrainingArguments


# TrainingArguments flags a run usually sets; --help lists these and --help_all every other one.
COMMON_TRAINING_FLAGS = (
    "output_dir", "num_train_epochs", "max_steps", "per_device_train_batch_size", "per_device_eval_batch_size",
    "learning_rate", "weight_decay", "lr_scheduler_type", "warmup_steps", "max_grad_norm", "optim", "seed", "bf16",
    "activation_checkpointing", "eval_strategy", "save_strategy", "save_total_limit", "load_best_model_at_end",
    "metric_for_best_model", "logging_steps", "resume_from_checkpoint", "report_to", "use_cpu", "disable_tqdm",
    "dataloader_num_workers", "label_smoothing_factor", "push_to_hub", "hub_model_id",
)
_METHOD_FLAGS = ("method", "method_options", "skip_nonfinite_batches")


def _option_type(annotation):
    """(argparse type, choices) of an option annotated bool, int, float, str or Literal (optionally `| None`)."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(kind for kind in get_args(annotation) if kind is not type(None))
    kind = annotation
    if get_origin(kind) is Literal:
        return str, list(get_args(kind))
    return (string_to_bool if kind is bool else kind), None


class _HelpAll(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="Show every flag, all of TrainingArguments', and exit.")

    def __call__(self, parser, namespace, values, option_string=None):
        for action in parser._actions:
            action.help = getattr(action, "full_help", action.help)
        parser.print_help()
        parser.exit()


class MLAArgumentParser(HfArgumentParser):
    """`HfArgumentParser` over the given dataclasses (one of them `MLATrainingArguments`), plus:

    - each registered method's options as `--<method>.<option>` flags (e.g. `--mla.hgm false`, `--ogm_ge.alpha 0.5`),
      collected into `MLATrainingArguments.method_options` and validated with it: an option of another method than
      `--method` is an error;
    - a `--help` that shows the description (the script's docstring), the method and its options, the other
      dataclasses and the common training flags; `--help_all` shows every TrainingArguments flag too.
    """

    def __init__(self, dataclass_types, description: str | None = None, **kwargs):
        super().__init__(dataclass_types, description=description,
                         formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
        training_group = next(group for group in self._action_groups
                              if any(action.dest == "method" for action in group._group_actions))
        method_group = self.add_argument_group("training method")
        for action in [action for action in training_group._group_actions if action.dest in _METHOD_FLAGS]:
            training_group._group_actions.remove(action)
            method_group._group_actions.append(action)
        for name, method in TRAINING_METHODS.items():
            fields = dataclasses.fields(method.options_class)
            if not fields:
                continue
            group = self.add_argument_group(f"options of method '{name}' (--method {name})")
            hints = typing.get_type_hints(method.options_class)
            for field in fields:
                kind, choices = _option_type(hints[field.name])
                extra = {"nargs": "?", "const": True} if kind is string_to_bool else {}
                group.add_argument(f"--{name}.{field.name}", dest=f"{name}.{field.name}", type=kind, choices=choices,
                                   default=argparse.SUPPRESS, metavar=field.name.upper() if not choices else None,
                                   help=f"{field.metadata.get('help', '')} (default: {field.default})", **extra)
        self.add_argument("--help_all", action=_HelpAll)
        for action in training_group._group_actions:
            action.full_help = action.help
            if action.dest not in COMMON_TRAINING_FLAGS:
                action.help = argparse.SUPPRESS
        training_group.title = "training (common flags; --help_all lists all of TrainingArguments)"
        # Method first, then its options, then the other dataclasses, then training.
        positional, *others = [group for group in self._action_groups if group not in (method_group, training_group)]
        option_groups = [group for group in others if group.title.startswith("options of method")]
        self._action_groups = [positional, method_group, *option_groups,
                               *[group for group in others if group not in option_groups], training_group]
        self.usage = ("%(prog)s [--method METHOD] [--<method>.<option> VALUE ...] [--<flag> VALUE ...]\n"
                      "       (--help_all lists every flag)")

    def parse_args_into_dataclasses(self, args=None, **kwargs):
        outputs = list(super().parse_args_into_dataclasses(args=args, **kwargs))
        extra = next((item for item in outputs if isinstance(item, argparse.Namespace)), None)
        if extra is None:
            return tuple(outputs)
        outputs.remove(extra)
        given = {key: value for key, value in vars(extra).items() if "." in key}
        if len(given) != len(vars(extra)):
            raise ValueError(f"Unexpected arguments: {sorted(set(vars(extra)) - set(given))}.")
        index, training_args = next((i, item) for i, item in enumerate(outputs) if isinstance(item, MLATrainingArguments))
        others = sorted({key.split(".")[0] for key in given} - {training_args.method})
        if others:
            raise ValueError(f"{', '.join(f'--{key}' for key in given if key.split('.')[0] in others)}: option(s) of "
                             f"method {', '.join(repr(name) for name in others)}, but --method is "
                             f"'{training_args.method}'.")
        options = {**dataclasses.asdict(training_args.method_options),
                   **{key.split(".", 1)[1]: value for key, value in given.items()}}
        outputs[index] = dataclasses.replace(training_args, method_options=options)
        return tuple(outputs)
