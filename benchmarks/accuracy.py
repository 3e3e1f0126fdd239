"""Accuracy of MLA, its HGM variants and every baseline, under two optimizer recipes, with every fusion, on any
dataset the scripts take; mean and std over seeds.

    python benchmarks/accuracy.py                                  # AV-Digits, 3 seeds: results/accuracy.{md,json}
    python benchmarks/accuracy.py --dataset manifest --data_dir data.csv --modality_kinds '{"photo": "image"}'
    python benchmarks/accuracy.py --rows mla "mla, no HGM" joint --seeds 0 1
    python benchmarks/accuracy.py --smoke                          # seconds: tiny data and budget, a scratch folder
    python benchmarks/accuracy.py --render_only                    # rewrite accuracy.md from accuracy.json

Every trained row gets the same data, backbones (the scripts' random-init presets), epochs and seeds; the model after
the last epoch is evaluated (no selection). Trained rows: MLA and its head gradient modification variants, joint
training, OGM-GE, QMF and each modality alone, under AdamW (the package default: lr 1e-3, weight decay 0.01,
clipping 1.0) and under the MLA authors' SGD recipe (`recipe="authors_sgd"`). Fusion rows are computed from the
trained models' per-modality logits, so they cost no training: MLA's shared head and late fusion of the unimodal
models, each fused by entropy (the paper), equal weights, a product of experts, QMF's energy weights, and the
entropy or product of temperature-calibrated logits (temperatures fitted on the validation split; the test split never is). Missing
columns drop modalities at random per sample: one modality from half of the samples, or every modality
independently from 30 % of them (a sample keeps at least one).
"""

import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import torch
from transformers import HfArgumentParser, set_seed
from transformers.utils import logging as transformers_logging

from mla_hf import MLAModel
from mla_hf.data import DataArguments, label_names, load_multimodal_dataset, preprocess_dataset
from mla_hf.fusion import fit_temperatures, fuse_modalities
from mla_hf.presets import SmallBackboneShape, build_model_and_processor
from mla_hf.threads import configure_torch_threads
from mla_hf.training import MLATrainer, MLATrainingArguments, drop_mask, get_training_method
from results_files import render_again, write_results


TRAINED = {  # row -> (method, method options, recipe); unimodal rows are added per modality
    "mla": ("mla", {}, "default"),
    "mla, no HGM": ("mla", {"hgm": False}, "default"),
    "mla, HGM on the update": ("mla", {"hgm_target": "update"}, "default"),
    "mla, HGM with normalised P": ("mla", {"hgm_normalize": True}, "default"),
    "mla, HGM forgetting 0.01": ("mla", {"hgm_forgetting": 0.01}, "default"),
    "joint": ("joint", {}, "default"),
    "ogm_ge": ("ogm_ge", {}, "default"),
    "qmf": ("qmf", {}, "default"),
    "mla (SGD)": ("mla", {}, "authors_sgd"),
    "mla, no HGM (SGD)": ("mla", {"hgm": False}, "authors_sgd"),
    "mla, HGM with normalised P (SGD)": ("mla", {"hgm_normalize": True}, "authors_sgd"),
    "mla, HGM forgetting 0.01 (SGD)": ("mla", {"hgm_forgetting": 0.01}, "authors_sgd"),
    "joint (SGD)": ("joint", {}, "authors_sgd"),
}
FUSIONS = {  # row suffix -> (fusion mode, calibrated)
    "entropy (paper)": ("dynamic", False),
    "equal weights": ("fixed", False),
    "product of experts": ("product", False),
    "energy (QMF)": ("energy", False),
    "calibrated entropy": ("dynamic", True),
    "calibrated product": ("product", True),
}


@dataclass
class BenchmarkArguments:
    _argument_group_name = "benchmark"

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Training seeds."})
    epochs: int = field(default=10, metadata={"help": "Training epochs of every row."})
    rows: list[str] | None = field(default=None, metadata={
        "help": "Trained rows to run (default: all); a unimodal row is 'unimodal <modality>', '(SGD)' for the "
                "authors' recipe. Late fusion needs the unimodal rows of its recipe."})
    hidden_size: int = field(default=64, metadata={"help": "Width of the random-init backbones."})
    num_layers: int = field(default=3, metadata={"help": "ResNet stages (or transformer layers)."})
    projection_dim: int = field(default=64, metadata={"help": "Width of the common feature space."})
    batch_size: int = field(default=64, metadata={"help": "Training batch size."})
    num_threads: int | None = field(default=None, metadata={"help": "torch threads (default: see mla_hf.threads)."})
    output_dir: str = field(default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    output_name: str = field(default="accuracy", metadata={"help": "Results file name (<name>.md and <name>.json)."})
    smoke: bool = field(default=False, metadata={"help": "Tiny data, one seed, one epoch: checks the script runs."})
    render_only: bool = field(default=False, metadata={"help": "Rewrite accuracy.md from accuracy.json."})


def trained_rows(modalities: list[str]) -> dict:
    rows = dict(TRAINED)
    for recipe, suffix in (("default", ""), ("authors_sgd", " (SGD)")):
        rows.update({f"unimodal {name}{suffix}": ("unimodal", {"modality": name}, recipe) for name in modalities})
    return rows


def train(row: str, spec, seed: int, data, build_kwargs: dict, args: BenchmarkArguments, scratch: str):
    method, options, recipe = spec
    set_seed(seed)
    method_class = get_training_method(method)
    config, _ = build_model_and_processor(**build_kwargs, head_type=method_class.head_type, fusion=method_class.fusion)
    training_args = MLATrainingArguments(
        output_dir=os.path.join(scratch, f"{row}-{seed}"), method=method, method_options=options, recipe=recipe,
        seed=seed, num_train_epochs=args.epochs, learning_rate=1e-3, weight_decay=0.01,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=256, save_strategy="no",
        eval_strategy="no", report_to="none", disable_tqdm=True, logging_steps=10_000, use_cpu=True)
    trainer = MLATrainer(model=MLAModel(config), args=training_args, train_dataset=data["train"])
    trainer.train()
    return trainer


def logits_of(trainer, dataset) -> dict:
    """Per-modality logits `(N, M, C)`, presence `(N, M)` and labels `(N,)` of a dataset."""
    output = trainer.predict(dataset)
    _, modality_logits, _, mask = (torch.as_tensor(array) for array in output.predictions)
    return {"logits": modality_logits.float(), "mask": mask.bool(), "labels": torch.as_tensor(output.label_ids)}


def accuracy(logits, labels) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


def missing_settings(modalities: list[str]) -> dict[str, dict]:
    settings = {f"50% lose {name}": {name: 0.5} for name in modalities}
    settings["each modality lost by 30%"] = dict.fromkeys(modalities, 0.3)
    return settings


def scores(test: dict, modalities: list[str], seed: int, fuse) -> dict:
    """Fused accuracy with all modalities and in each missing setting, per-modality accuracy; `fuse(logits, mask)`
    gives fused logits."""
    result = {"fused": accuracy(fuse(test["logits"], test["mask"]), test["labels"])}
    for index, name in enumerate(modalities):
        rows = test["mask"][:, index]
        result[name] = accuracy(test["logits"][rows, index], test["labels"][rows]) if rows.any() else None
    for column, rates in missing_settings(modalities).items():
        kept = test["mask"] & ~drop_mask(len(test["labels"]), modalities, rates, seed, present=test["mask"])
        result[f"fused, {column}"] = accuracy(fuse(test["logits"], kept), test["labels"])
    return result


def fusion(mode: str, temperatures=None):
    return lambda logits, mask: fuse_modalities(mode, logits, mask, fixed=torch.ones(logits.shape[1]),
                                                temperatures=temperatures)[0]


def concat_fusion(logits, mask):  # joint/OGM-GE: the concatenation head is the sum of its present slices
    return (logits * mask.unsqueeze(-1)).sum(1)


def shared_head_rows(name: str, runs: dict, modalities: list[str], seed: int) -> dict:
    """The fusion rows of a model with per-modality logits (or of late fusion): `{row: scores}`."""
    validation, test = runs["validation"], runs["test"]
    temperatures = fit_temperatures(validation["logits"], validation["labels"], validation["mask"])
    rows = {}
    for suffix, (mode, calibrated) in FUSIONS.items():
        rows[f"{name}, {suffix}"] = scores(test, modalities, seed, fusion(mode, temperatures if calibrated else None))
    return rows


def late_fusion(unimodal: dict[str, dict], modalities: list[str]) -> dict:
    """Each unimodal model's own modality, side by side: `{"validation" | "test": {logits, mask, labels}}`."""
    return {split: {"logits": torch.stack([unimodal[name][split]["logits"][:, index]
                                           for index, name in enumerate(modalities)], dim=1),
                    "mask": torch.stack([unimodal[name][split]["mask"][:, index]
                                         for index, name in enumerate(modalities)], dim=1),
                    "labels": unimodal[modalities[0]][split]["labels"]}
            for split in ("validation", "test")}


def run_seed(seed, data, build_kwargs, modalities, rows, args, scratch) -> dict[str, dict]:
    results, predictions = {}, {}
    for row, spec in rows.items():
        started = time.time()
        trainer = train(row, spec, seed, data, build_kwargs, args, scratch)
        predictions[row] = {split: logits_of(trainer, data[split]) for split in ("validation", "test")}
        method = spec[0]
        if method == "unimodal":
            name = spec[1]["modality"]
            index = modalities.index(name)
            test = predictions[row]["test"]
            rows_present = test["mask"][:, index]
            results[row] = {name: accuracy(test["logits"][rows_present, index], test["labels"][rows_present])}
        elif method in ("joint", "ogm_ge"):
            results[row] = scores(predictions[row]["test"], modalities, seed, concat_fusion)
        elif method == "qmf":
            results[row] = scores(predictions[row]["test"], modalities, seed, fusion("energy"))
        else:
            results.update(shared_head_rows(row, predictions[row], modalities, seed))
        print(f"seed {seed} {row}: {time.time() - started:.0f} s", flush=True)
    for suffix in ("", " (SGD)"):
        names = [f"unimodal {name}{suffix}" for name in modalities]
        if all(name in predictions for name in names):
            late = late_fusion({name: predictions[f"unimodal {name}{suffix}"] for name in modalities}, modalities)
            results.update(shared_head_rows(f"late fusion{suffix}", late, modalities, seed))
    return results


def summarise(runs: list[dict]) -> dict:
    summary = {}
    for row in runs[0]:
        summary[row] = {}
        for column in runs[0][row]:
            values = [run[row][column] for run in runs if run[row].get(column) is not None]
            if values:
                summary[row][column] = {"mean": statistics.mean(values), "std": statistics.pstdev(values),
                                        "values": values}
    return summary


def markdown(saved: dict) -> str:
    summary, settings = saved["results"], saved["settings"]
    modalities = saved["modalities"]
    columns = ["fused", *modalities, *(f"fused, {name}" for name in missing_settings(modalities))]
    lines = [
        f"# Accuracy on {saved['dataset']} (test split, %)",
        "",
        *([f"Data variant: `{saved['data']['av_digits_settings']}`.", ""] if saved["data"].get("av_digits_settings")
          else []),
        f"Mean ± std over seeds {settings['seeds']}; {settings['epochs']} epochs, batch {settings['batch_size']}, "
        f"random-init backbones (hidden {settings['hidden_size']}, {settings['num_layers']} layers). Without "
        "'(SGD)': AdamW, lr 1e-3, weight decay 0.01, clipping 1.0; '(SGD)': the authors' recipe (SGD lr 1e-3, "
        "momentum 0.9, weight decay 1e-4, no clipping, lr x0.1 after 70% of the run). The model after the last "
        f"epoch. {saved['machine']}; total wall time {saved['wall_seconds'] / 60:.1f} min.",
        "",
        "| row | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for row, values in summary.items():
        cells = [f"{100 * values[c]['mean']:.1f} ± {100 * values[c]['std']:.1f}" if c in values else "-"
                 for c in columns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += ["", f"Command: `{saved['command']}`; per-seed values in the JSON file beside this one (`--render_only` "
              "rewrites this file from it)."]
    return "\n".join(lines) + "\n"


def main(args: BenchmarkArguments, data_args: DataArguments):
    if args.render_only:
        render_again(markdown, args.output_dir, args.output_name)
        return
    if args.smoke:
        args.seeds, args.epochs, args.hidden_size, args.num_layers, args.projection_dim = [0], 1, 16, 2, 16
        data_args.av_digits_max_images, args.output_dir = 30, tempfile.mkdtemp(prefix="accuracy-smoke-")
        args.rows = args.rows or ["mla", "mla, no HGM", "joint", "mla (SGD)", "unimodal audio", "unimodal image"]
    threads = configure_torch_threads(args.num_threads)
    transformers_logging.disable_progress_bar()
    started = time.time()
    raw, modality_kinds = load_multimodal_dataset(data_args)
    modalities = list(modality_kinds)
    shape = SmallBackboneShape(image_size=32, num_mel_bins=40, max_frames=100)
    build_kwargs = dict(modality_kinds=modality_kinds, label_names=label_names(raw), hidden_size=args.hidden_size,
                        num_layers=args.num_layers, shape=shape, projection_dim=args.projection_dim)
    _, processor = build_model_and_processor(**build_kwargs)
    data = preprocess_dataset(raw, processor)
    missing = sorted({"train", "validation", "test"} - set(data))
    if missing:
        raise ValueError(f"The benchmark needs train, validation and test splits; the dataset lacks {missing}.")
    rows = trained_rows(modalities)
    if args.rows is not None:
        unknown = sorted(set(args.rows) - set(rows))
        if unknown:
            raise ValueError(f"Unknown rows {unknown}; choose from {list(rows)}.")
        rows = {row: rows[row] for row in args.rows}
    with tempfile.TemporaryDirectory() as scratch:
        runs = [run_seed(seed, data, build_kwargs, modalities, rows, args, scratch) for seed in args.seeds]
    saved = {"settings": asdict(args), "data": asdict(data_args), "dataset": data_args.dataset, "modalities": modalities,
             "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, {threads} threads",
             "command": "python " + shlex.join(["benchmarks/accuracy.py", *sys.argv[1:]]),
             "wall_seconds": time.time() - started, "results": summarise(runs)}
    print(write_results(saved, markdown, args.output_dir, args.output_name))
    print(f"Written to {args.output_dir}")


if __name__ == "__main__":
    main(*HfArgumentParser((BenchmarkArguments, DataArguments)).parse_args_into_dataclasses())
