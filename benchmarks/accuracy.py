"""Accuracy of MLA against every baseline on AV-Digits, over seeds.

    python benchmarks/accuracy.py                 # full: 3 seeds, writes benchmarks/results/accuracy.{md,json}
    python benchmarks/accuracy.py --smoke         # seconds: tiny data and budget, writes to a scratch folder

Rows: MLA with dynamic fusion, the same models with fixed (equal) fusion, MLA without head gradient modification,
joint training (concatenation head), OGM-GE, QMF, each modality alone, and late fusion of the two unimodal models
(entropy weights). Columns: fused test accuracy, each modality's accuracy (through the shared head, or the head's
slice), and fused accuracy when 50 % of the test samples lose one modality. Every method gets the same data,
backbones, optimiser, epochs and seeds; the model after the last epoch is evaluated (no selection on validation).
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from transformers import set_seed

from mla_hf import MLAModel
from mla_hf.data import AVDigitsSettings, load_av_digits, preprocess_dataset
from mla_hf.data.av_digits import LABEL_NAMES
from mla_hf.fusion import entropy_weights, fuse
from mla_hf.presets import SmallBackboneShape, build_model_and_processor
from mla_hf.training import MLATrainer, MLATrainingArguments, get_training_method
from mla_hf.training.missing_modalities import drop_mask


MODALITIES = ["audio", "image"]
TRAINED = {  # row name -> (method, method_options, extra training arguments)
    "mla": ("mla", {}, {}),
    "mla, no HGM": ("mla", {"hgm": False}, {}),
    "joint": ("joint", {}, {}),
    "ogm_ge": ("ogm_ge", {}, {}),
    "qmf": ("qmf", {}, {}),
    "unimodal audio": ("unimodal", {"modality": "audio"}, {}),
    "unimodal image": ("unimodal", {"modality": "image"}, {}),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--num_layers", type=int, default=3)
    parser.add_argument("--max_images", type=int, default=None, help="AV-Digits from a subset of the images.")
    parser.add_argument("--output_dir", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--smoke", action="store_true", help="Tiny data, one seed, one epoch: checks the script runs.")
    parser.add_argument("--render_only", action="store_true", help="Rewrite accuracy.md from accuracy.json.")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.epochs, args.hidden_size, args.num_layers, args.max_images = [0], 1, 16, 2, 30
        args.output_dir = tempfile.mkdtemp(prefix="accuracy-smoke-")
    return args


def predictions(trainer, dataset):
    """Test-set modality logits `(N, M, C)` and labels `(N,)` of a trained model."""
    output = trainer.predict(dataset)
    return torch.as_tensor(output.predictions[1]), torch.as_tensor(output.label_ids)


def accuracy(logits, labels) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


def train(row, seed, data, processor_config, args, scratch):
    method, kwargs, extra = TRAINED[row]
    set_seed(seed)
    spec = get_training_method(method)
    config, _ = build_model_and_processor(**processor_config, head_type=spec.head_type, fusion=spec.fusion)
    training_args = MLATrainingArguments(
        output_dir=os.path.join(scratch, f"{row}-{seed}"), method=method, method_options=kwargs, seed=seed,
        num_train_epochs=args.epochs, learning_rate=1e-3, weight_decay=0.01, per_device_train_batch_size=64,
        per_device_eval_batch_size=256, save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
        logging_steps=10_000, use_cpu=True, **extra,
    )
    trainer = MLATrainer(model=MLAModel(config), args=training_args, train_dataset=data["train"])
    trainer.train()
    return trainer


def evaluate_row(trainer, test, seed) -> dict:
    metrics = trainer.evaluate(test, metric_key_prefix="test")
    if trainer.args.method == "unimodal":  # only the trained modality means anything
        trained = trainer.args.method_options.modality
        return {"fused": None, **{name: metrics[f"test_{name}_accuracy"] if name == trained else None
                                  for name in MODALITIES}, **{f"fused, 50% lose {name}": None for name in MODALITIES}}
    result = {}
    result["fused"] = metrics["test_accuracy"]
    for name in MODALITIES:
        result[name] = metrics.get(f"test_{name}_accuracy")
    for name in MODALITIES:
        missing = trainer.evaluate_missing({name: 0.5}, eval_dataset=test, seed=seed, metric_key_prefix="missing")
        result[f"fused, 50% lose {name}"] = missing["missing_accuracy"]
    return result


def late_fusion(audio_trainer, image_trainer, test, seed) -> dict:
    audio_logits, labels = predictions(audio_trainer, test)
    image_logits, _ = predictions(image_trainer, test)
    stacked = torch.stack([audio_logits[:, 0], image_logits[:, 1]], dim=1)  # each model's own modality
    full = torch.ones(len(labels), 2, dtype=torch.bool)
    result = {"fused": accuracy(fuse(stacked, entropy_weights(stacked, full), full), labels),
              "audio": accuracy(stacked[:, 0], labels), "image": accuracy(stacked[:, 1], labels)}
    for name in MODALITIES:
        mask = ~drop_mask(len(labels), MODALITIES, {name: 0.5}, seed)
        result[f"fused, 50% lose {name}"] = accuracy(fuse(stacked, entropy_weights(stacked, mask), mask), labels)
    return result


def summarise(runs: dict[str, list[dict]]) -> dict:
    summary = {}
    for row, results in runs.items():
        summary[row] = {}
        for column in results[0]:
            values = [result[column] for result in results if result[column] is not None]
            if values:
                summary[row][column] = {"mean": statistics.mean(values), "std": statistics.pstdev(values),
                                        "values": values}
    return summary


BASELINES = ["joint", "ogm_ge", "qmf", "late fusion of unimodal models"]


def targets(summary: dict) -> list[str]:
    """The issue's accuracy targets, each marked met or not."""
    mla = summary["mla"]["fused"]
    lines = []
    for baseline in BASELINES:
        other = summary[baseline]["fused"]
        gap = mla["mean"] - other["mean"]
        ok = gap > max(mla["std"], other["std"])
        lines.append(f"- MLA fused above {baseline} by more than one std: {100 * gap:+.1f} points against a std of "
                     f"{100 * max(mla['std'], other['std']):.1f}: {'met' if ok else '**not met**'}")
    for name in MODALITIES:
        gap = summary["mla"][name]["mean"] - summary[f"unimodal {name}"][name]["mean"]
        lines.append(f"- MLA's {name} accuracy no more than 2 points below unimodal {name}: {100 * gap:+.1f} points: "
                     f"{'met' if gap >= -0.02 else '**not met**'}")
    return lines


def markdown(summary: dict, args, seconds: float) -> str:
    columns = ["fused", *MODALITIES, *(f"fused, 50% lose {name}" for name in MODALITIES)]
    lines = [
        "# Accuracy on AV-Digits (test split, %)",
        "",
        f"Mean ± std over seeds {args.seeds}; {args.epochs} epochs, AdamW lr 1e-3, batch 64, random-init ResNets "
        f"(hidden {args.hidden_size}, {args.num_layers} stages) for audio (40x100 log-mel) and image (32x32). "
        f"Total wall time {seconds / 60:.1f} min.",
        "",
        "| method | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for row, values in summary.items():
        cells = [f"{100 * values[c]['mean']:.1f} ± {100 * values[c]['std']:.1f}" if c in values else "-" for c in columns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += ["", "Targets:", "", *targets(summary), "", "Command: `python benchmarks/accuracy.py`; raw values per seed in "
              "`accuracy.json` (`--render_only` rewrites this file from it)."]
    return "\n".join(lines) + "\n"


def main():
    args = parse_args()
    if args.render_only:
        with open(os.path.join(args.output_dir, "accuracy.json")) as handle:
            saved = json.load(handle)
        settings = argparse.Namespace(**saved["settings"])
        with open(os.path.join(args.output_dir, "accuracy.md"), "w") as handle:
            handle.write(markdown(saved["results"], settings, saved["wall_seconds"]))
        return
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    start = time.time()
    raw = load_av_digits(AVDigitsSettings(max_images=args.max_images))
    shape = SmallBackboneShape(image_size=32, num_mel_bins=40, max_frames=100)
    processor_config = dict(modality_kinds={"audio": "audio", "image": "image"}, label_names=LABEL_NAMES,
                            hidden_size=args.hidden_size, num_layers=args.num_layers, shape=shape, projection_dim=64)
    _, processor = build_model_and_processor(**processor_config)
    data = preprocess_dataset(raw, processor)
    test = data["test"]
    runs = {row: [] for row in ["mla", "mla, fixed fusion", "mla, no HGM", "joint", "ogm_ge", "qmf",
                                "unimodal audio", "unimodal image", "late fusion of unimodal models"]}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            trainers = {}
            for row in TRAINED:
                trainers[row] = train(row, seed, data, processor_config, args, scratch)
                runs[row].append(evaluate_row(trainers[row], test, seed))
                print(f"seed {seed} {row}: {runs[row][-1]}", flush=True)
            mla = trainers["mla"].accelerator.unwrap_model(trainers["mla"].model)
            mla.config.fusion, mla.config.fusion_weights = "fixed", {name: 1.0 for name in MODALITIES}
            runs["mla, fixed fusion"].append(evaluate_row(trainers["mla"], test, seed))
            runs["late fusion of unimodal models"].append(
                late_fusion(trainers["unimodal audio"], trainers["unimodal image"], test, seed))
    summary = summarise(runs)
    os.makedirs(args.output_dir, exist_ok=True)
    seconds = time.time() - start
    with open(os.path.join(args.output_dir, "accuracy.json"), "w") as handle:
        json.dump({"settings": vars(args), "wall_seconds": seconds, "results": summary}, handle, indent=2)
    with open(os.path.join(args.output_dir, "accuracy.md"), "w") as handle:
        handle.write(markdown(summary, args, seconds))
    print(markdown(summary, args, seconds))
    print(f"Written to {args.output_dir}")


if __name__ == "__main__":
    main()
