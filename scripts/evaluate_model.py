"""Evaluate a saved MLA model on a dataset split, optionally with modalities missing at random or another fusion.

examples:
  python scripts/evaluate_model.py --model_dir outputs/mla-av-digits
  python scripts/evaluate_model.py --model_dir outputs/mla-av-digits --missing_rates '{"audio": 0.5}'
  python scripts/evaluate_model.py --model_dir outputs/mla-av-digits --fusion fixed
  python scripts/evaluate_model.py --model_dir outputs/mla-av-digits --fusion fixed --fusion_weights '{"audio": 0.3, "image": 0.7}'
  python scripts/evaluate_model.py --model_dir ckpt --dataset crema_d --data_dir /data/CREMA-D --split validation

Prints a table (fused and per-modality accuracy, macro-F1, fusion weights) and writes it as JSON to
<model_dir>/eval/<split>[-fusion-<fusion>][-missing-<rates>].json (or --output_json): each setting keeps its own file.
"""

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from mla_hf import MLAModel
from mla_hf.data import DataArguments, label_names, load_multimodal_dataset, preprocess_dataset
from mla_hf.processing_mla import MLAProcessor
from mla_hf.threads import configure_torch_threads
from mla_hf.training import MLATrainer, MLATrainingArguments


@dataclass
class EvaluationArguments:
    _argument_group_name = "evaluation"

    model_dir: str = field(metadata={"help": "Folder written by scripts/train.py (model + processor)."})
    split: str = field(default="test", metadata={"help": "train, validation or test."})
    missing_rates: str | None = field(default=None, metadata={
        "help": "JSON {modality: share of samples that lose it}, e.g. '{\"audio\": 0.5}'; modalities are dropped "
                "independently, and a sample keeps at least one."})
    missing_seed: int = field(default=0, metadata={"help": "Seed of which samples lose a modality."})
    fusion: str | None = field(default=None, metadata={"help": "Override the saved fusion: dynamic, fixed or energy."})
    fusion_weights: str | None = field(default=None, metadata={
        "help": "JSON {modality: weight} for --fusion fixed (default: the saved weights, else equal weights)."})
    batch_size: int = field(default=256, metadata={"help": "Evaluation batch size."})
    num_threads: int | None = field(default=None, metadata={"help": "torch CPU threads (see scripts/train.py)."})
    output_json: str | None = field(default=None, metadata={"help": "Where to write the results."})


def make_parser() -> HfArgumentParser:
    return HfArgumentParser((EvaluationArguments, DataArguments), description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)


def results_path(eval_args: EvaluationArguments, data_args: DataArguments, fusion: str) -> str:
    """A file per setting, so that a subset, missing-modality or fusion run never replaces the plain one."""
    name = eval_args.split
    if data_args.max_eval_samples is not None:
        name += f"-subset{data_args.max_eval_samples}-seed{data_args.split_seed}"
    if eval_args.fusion is not None:
        name += f"-fusion-{fusion}"
    if eval_args.missing_rates:
        rates = json.loads(eval_args.missing_rates)
        name += "-missing-" + "-".join(f"{modality}{rate:g}" for modality, rate in sorted(rates.items()))
        name += f"-seed{eval_args.missing_seed}"
    return os.path.join(eval_args.model_dir, "eval", f"{name}.json")


def main(eval_args: EvaluationArguments, data_args: DataArguments) -> dict:
    configure_torch_threads(eval_args.num_threads)
    model = MLAModel.from_pretrained(eval_args.model_dir)
    if eval_args.fusion_weights:
        model.config.fusion_weights = model.config.check_fusion_weights(json.loads(eval_args.fusion_weights))
    if eval_args.fusion is not None:
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
               "max_eval_samples": data_args.max_eval_samples,
               "missing_rates": json.loads(eval_args.missing_rates) if eval_args.missing_rates else {},
               "fusion": model.config.fusion, "fusion_weights": model.config.fusion_weights, "metrics": metrics}
    print(f"\n{data_args.dataset} / {eval_args.split}, fusion '{model.config.fusion}'"
          + (f", missing {results['missing_rates']}" if results["missing_rates"] else "") + ":")
    for name, value in metrics.items():
        if not name.endswith(("runtime", "per_second", "preparation_time", "epoch")):
            print(f"  {name.removeprefix(prefix + '_'):<24}{value:.4f}")
    output = eval_args.output_json or results_path(eval_args, data_args, model.config.fusion)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"Written to {output}")
    return results


if __name__ == "__main__":
    main(*make_parser().parse_args_into_dataclasses(args=sys.argv[1:]))
