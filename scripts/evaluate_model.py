"""Evaluate a saved MLA checkpoint on a dataset split, optionally with modalities missing at random.

    python scripts/evaluate_model.py --model_dir outputs/mla-av-digits
    python scripts/evaluate_model.py --model_dir outputs/mla-av-digits --missing_rates '{"audio": 0.5}' --fusion fixed
    python scripts/evaluate_model.py --model_dir ckpt --dataset crema_d --data_dir /data/CREMA-D --split validation

Prints a table (fused and per-modality accuracy, macro-F1, fusion weights) and writes it as JSON
(`<model_dir>/eval_<split>.json` unless `--output_json` is given).
"""

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from mla_hf import MLAModel
from mla_hf.data import DataArguments, label_names, load_multimodal_dataset, preprocess_dataset
from mla_hf.processing_mla import MLAProcessor
from mla_hf.training import MLATrainer, MLATrainingArguments


@dataclass
class EvaluationArguments:
    model_dir: str = field(metadata={"help": "Folder written by scripts/train.py (model + processor)."})
    split: str = field(default="test", metadata={"help": "train, validation or test."})
    missing_rates: str | None = field(
        default=None, metadata={"help": "JSON {modality: share of samples that lose it}, e.g. '{\"audio\": 0.5}'."}
    )
    missing_seed: int = field(default=0, metadata={"help": "Seed of which samples lose a modality."})
    fusion: str | None = field(default=None, metadata={"help": "Override the saved fusion: dynamic, fixed or energy."})
    batch_size: int = field(default=256, metadata={"help": "Evaluation batch size."})
    output_json: str | None = field(default=None, metadata={"help": "Where to write the results."})


def make_parser() -> HfArgumentParser:
    return HfArgumentParser((EvaluationArguments, DataArguments))


def main(eval_args: EvaluationArguments, data_args: DataArguments) -> dict:
    model = MLAModel.from_pretrained(eval_args.model_dir)
    if eval_args.fusion is not None:
        if eval_args.fusion == "fixed":
            model.config.check_fusion_weights(model.config.fusion_weights or {})
        model.config.fusion = eval_args.fusion
    processor = MLAProcessor.from_pretrained(eval_args.model_dir)
    raw, _ = load_multimodal_dataset(data_args)
    if eval_args.split not in raw:
        raise ValueError(f"No split '{eval_args.split}' in the dataset (splits: {list(raw)}).")
    saved_labels = [model.config.id2label[index] for index in range(model.config.num_labels)]
    if label_names(raw) != saved_labels:
        raise ValueError(f"The dataset's labels {label_names(raw)} are not the model's {saved_labels}.")
    data = preprocess_dataset(raw[eval_args.split], processor)
    with tempfile.TemporaryDirectory() as scratch:
        args = MLATrainingArguments(output_dir=scratch, per_device_eval_batch_size=eval_args.batch_size,
                                    report_to="none", disable_tqdm=True)
        trainer = MLATrainer(model=model, args=args)
        prefix = eval_args.split
        if eval_args.missing_rates:
            metrics = trainer.evaluate_missing(json.loads(eval_args.missing_rates), eval_dataset=data,
                                               seed=eval_args.missing_seed, metric_key_prefix=prefix)
        else:
            metrics = trainer.evaluate(data, metric_key_prefix=prefix)
    results = {"model_dir": eval_args.model_dir, "dataset": data_args.dataset, "split": eval_args.split,
               "missing_rates": json.loads(eval_args.missing_rates) if eval_args.missing_rates else {},
               "fusion": model.config.fusion, "metrics": metrics}
    print(f"\n{data_args.dataset} / {eval_args.split}, fusion '{model.config.fusion}'"
          + (f", missing {results['missing_rates']}" if results["missing_rates"] else "") + ":")
    for name, value in metrics.items():
        if not name.endswith(("runtime", "per_second", "preparation_time", "epoch")):
            print(f"  {name.removeprefix(prefix + '_'):<24}{value:.4f}")
    output = eval_args.output_json or os.path.join(eval_args.model_dir, f"eval_{eval_args.split}.json")
    with open(output, "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"Written to {output}")
    return results


if __name__ == "__main__":
    main(*make_parser().parse_args_into_dataclasses(args=sys.argv[1:]))
