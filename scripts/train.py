"""Train a multimodal classifier with MLA or a baseline, evaluate it on the test split and save it.

    python scripts/train.py                                   # MLA on the built-in generated audio+image data
    python scripts/train.py --method joint                    # a baseline, same data and backbones
    python scripts/train.py --method unimodal --method_kwargs '{"modality": "audio"}'
    torchrun --nproc_per_node 2 scripts/train.py              # 2 processes on CPU (gloo)
    accelerate launch --multi_gpu --num_processes 2 scripts/train.py   # also 2 processes on a CPU-only machine

The best epoch is chosen on the validation split; the test split is only used for the final report. Every
`MLATrainingArguments` / `TrainingArguments` flag works (`--help`).
"""

import json
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser, set_seed

from mla_hf import MLAModel
from mla_hf.data import make_synthetic_dataset, tiny_audio_image_config
from mla_hf.training import MLATrainer, MLATrainingArguments, get_training_method


@dataclass
class ModelArguments:
    hidden_size: int = field(default=32, metadata={"help": "Width of the random-init AST (audio) and ViT (image)."})
    projection_dim: int = field(default=32, metadata={"help": "Width of the common feature space."})


@dataclass
class DataArguments:
    num_samples: int = field(default=1536, metadata={"help": "Generated samples, split 4:1:1 into train/val/test."})
    noise: float = field(default=1.0, metadata={"help": "Gaussian noise added to both modalities."})
    generation_seed: int = field(default=0, metadata={"help": "Seed of the generated data."})


TRAINING_DEFAULTS = dict(
    output_dir="outputs/mla-synthetic",
    num_train_epochs=5,
    learning_rate=1e-3,
    per_device_train_batch_size=32,
    per_device_eval_batch_size=64,
    eval_strategy="epoch",
    save_strategy="epoch",
    save_total_limit=1,
    load_best_model_at_end=True,
    metric_for_best_model="accuracy",
    logging_steps=10,
    report_to="none",
)


def make_parser() -> HfArgumentParser:
    parser = HfArgumentParser((ModelArguments, DataArguments, MLATrainingArguments))
    parser.set_defaults(**TRAINING_DEFAULTS)
    return parser


def main(model_args: ModelArguments, data_args: DataArguments, training_args: MLATrainingArguments) -> dict:
    data = make_synthetic_dataset(num_samples=data_args.num_samples, noise=data_args.noise, seed=data_args.generation_seed)
    method = get_training_method(training_args.method)
    set_seed(training_args.seed)  # the backbones' random initialisation, not only the training loop
    config = tiny_audio_image_config(hidden_size=model_args.hidden_size, projection_dim=model_args.projection_dim,
                                     head_type=method.head_type, fusion=method.fusion)
    trainer = MLATrainer(model=MLAModel(config), args=training_args, train_dataset=data["train"],
                         eval_dataset=data["validation"])
    trainer.train()
    metrics = trainer.evaluate(data["test"], metric_key_prefix="test")
    trainer.save_model()
    if trainer.is_world_process_zero():
        print(f"\nTest split, method '{training_args.method}':")
        for name in ["accuracy", *(f"{m}_accuracy" for m in config.modality_names), "macro_f1"]:
            print(f"  {name:<18}{metrics[f'test_{name}']:.4f}")
        print(f"Model saved to {training_args.output_dir}")
        with open(f"{training_args.output_dir}/test_results.json", "w") as handle:
            json.dump(metrics, handle, indent=2)
    return metrics


if __name__ == "__main__":
    main(*make_parser().parse_args_into_dataclasses(args=sys.argv[1:]))
