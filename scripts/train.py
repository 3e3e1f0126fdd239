"""Train a multimodal classifier with MLA or a baseline, evaluate it on the test split, save it and plot laziness.

    python scripts/train.py                                   # MLA on AV-Digits (generated offline, cached)
    python scripts/train.py --compare_joint                   # and joint training beside it in the laziness plot
    python scripts/train.py --method joint                    # a baseline, same data and backbones
    python scripts/train.py --method unimodal --method_kwargs '{"modality": "audio"}'
    python scripts/train.py --dataset crema_d --data_dir /data/CREMA-D
    python scripts/train.py --dataset manifest --data_dir my_data.csv --pretrained_backbones '{"text": "./bert"}'
    torchrun --nproc_per_node 2 scripts/train.py              # 2 processes on CPU (gloo)
    accelerate launch --multi_gpu --num_processes 2 scripts/train.py

The best epoch is chosen on the validation split; the test split is only used for the final report. Every
`MLATrainingArguments` / `TrainingArguments` flag works (`--help`). The output folder holds the model, its
processor, the remote code, a model card (`README.md`), `test_results.json` and `laziness.png`: push it with
`scripts/push_to_hub.py`, or train with `--push_to_hub --hub_model_id you/name`.
"""

import json
import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser, set_seed

from mla_hf import MLAModel
from mla_hf.data import DataArguments, label_names, load_multimodal_dataset, preprocess_dataset
from mla_hf.presets import SmallBackboneShape, build_model_and_processor
from mla_hf.training import MLATrainer, MLATrainingArguments, get_training_method
from mla_hf.training.laziness_plot import plot_laziness


@dataclass
class ModelArguments:
    architecture: str = field(default="resnet", metadata={"help": "Random-init backbones: 'resnet' or 'transformer'."})
    hidden_size: int = field(default=64, metadata={"help": "Width of the random-init backbones (last ResNet stage)."})
    num_layers: int = field(default=3, metadata={"help": "ResNet stages or transformer layers of random-init backbones."})
    projection_dim: int = field(default=64, metadata={"help": "Width of the common feature space."})
    pretrained_backbones: str | None = field(
        default=None, metadata={"help": "JSON {modality: local folder} of pretrained backbones with their processors."}
    )
    image_size: int = field(default=32, metadata={"help": "Images are resized to this size (random-init backbones)."})
    num_mel_bins: int = field(default=40, metadata={"help": "Log-mel bins of audio spectrograms."})
    max_frames: int = field(default=100, metadata={"help": "Spectrogram frames (10 ms each); longer audio is cut."})
    max_text_length: int = field(default=64, metadata={"help": "Token limit of random-init text backbones."})


@dataclass
class ScriptArguments:
    compare_joint: bool = field(default=False, metadata={"help": "Also train joint training and plot it beside."})


TRAINING_DEFAULTS = dict(
    output_dir="outputs/mla-av-digits",
    num_train_epochs=10,
    learning_rate=1e-3,
    weight_decay=0.01,
    per_device_train_batch_size=64,
    per_device_eval_batch_size=256,
    eval_strategy="epoch",
    save_strategy="epoch",
    save_total_limit=1,
    load_best_model_at_end=True,
    metric_for_best_model="accuracy",
    logging_steps=20,
    report_to="none",
)


def make_parser() -> HfArgumentParser:
    parser = HfArgumentParser((ModelArguments, DataArguments, MLATrainingArguments, ScriptArguments))
    parser.set_defaults(**TRAINING_DEFAULTS)
    return parser


def train_and_test(model_args: ModelArguments, data_args: DataArguments, raw, modality_kinds: dict,
                   training_args: MLATrainingArguments):
    """Train one method on preprocessed data; returns the trainer and its test metrics."""
    method = get_training_method(training_args.method)
    set_seed(training_args.seed)  # the backbones' random initialisation, not only the training loop
    shape = SmallBackboneShape(image_size=model_args.image_size, num_mel_bins=model_args.num_mel_bins,
                               max_frames=model_args.max_frames, max_text_length=model_args.max_text_length)
    config, processor = build_model_and_processor(
        modality_kinds, label_names(raw),
        pretrained=json.loads(model_args.pretrained_backbones) if model_args.pretrained_backbones else None,
        hidden_size=model_args.hidden_size, num_layers=model_args.num_layers, shape=shape,
        architecture=model_args.architecture, text_corpus=_texts(raw["train"], modality_kinds),
        projection_dim=model_args.projection_dim, head_type=method.head_type, fusion=method.fusion,
    )
    with training_args.main_process_first(desc="preprocessing"):  # one rank fills the datasets cache
        processed = preprocess_dataset(raw, processor)
    trainer = MLATrainer(model=MLAModel(config), args=training_args, train_dataset=processed["train"],
                         eval_dataset=processed["validation"], processing_class=processor)
    trainer.train()
    metrics = trainer.evaluate(processed["test"], metric_key_prefix="test")
    trainer.save_model()
    trainer.create_model_card(dataset=data_args.dataset)  # README.md: the folder is a complete Hub repo
    return trainer, metrics


def _texts(split, modality_kinds: dict) -> list[str] | None:
    columns = [name for name, kind in modality_kinds.items() if kind == "text"]
    return [text for name in columns for text in split[name] if text] or None


def main(model_args: ModelArguments, data_args: DataArguments, training_args: MLATrainingArguments,
         script_args: ScriptArguments = ScriptArguments()) -> dict:
    with training_args.main_process_first(desc="loading the dataset"):  # one rank generates AV-Digits
        raw, modality_kinds = load_multimodal_dataset(data_args)
    runs = {training_args.method: train_and_test(model_args, data_args, raw, modality_kinds, training_args)}
    if script_args.compare_joint and training_args.method != "joint":
        joint_args = MLATrainingArguments(**{**training_args.to_dict(), "method": "joint", "method_kwargs": {},
                                             "output_dir": os.path.join(training_args.output_dir, "joint")})
        runs["joint"] = train_and_test(model_args, data_args, raw, modality_kinds, joint_args)
    trainer, metrics = runs[training_args.method]
    if trainer.is_world_process_zero():
        modalities = list(modality_kinds)
        print(f"\nTest split ({data_args.dataset}), accuracy:")
        print(f"  {'method':<12}{'fused':>8}" + "".join(f"{name:>8}" for name in modalities))
        for name, (_, result) in runs.items():
            cells = [result["test_accuracy"], *(result[f"test_{modality}_accuracy"] for modality in modalities)]
            print(f"  {name:<12}" + "".join(f"{value:>8.4f}" for value in cells))
        with open(os.path.join(training_args.output_dir, "test_results.json"), "w") as handle:
            json.dump(metrics, handle, indent=2)
        print(f"Model and processor saved to {training_args.output_dir}")
        if training_args.eval_strategy != "no":
            histories = {name: run_trainer.state.log_history for name, (run_trainer, _) in runs.items()}
            plot = plot_laziness(histories, modalities, os.path.join(training_args.output_dir, "laziness.png"))
            print(f"Laziness plot: {plot}")
    return metrics


if __name__ == "__main__":
    main(*make_parser().parse_args_into_dataclasses(args=sys.argv[1:]))
