"""Train a multimodal classifier with MLA or a baseline, save it as a Hub-ready folder, then test it.

examples:
  python scripts/train.py                                   # MLA, and joint training as reference, on AV-Digits
  python scripts/train.py --compare_joint false             # MLA only
  python scripts/train.py --method joint                    # a baseline, same data and backbones
  python scripts/train.py --method unimodal --unimodal.modality audio
  python scripts/train.py --mla.hgm false --mla.modality_order shuffled
  python scripts/train.py --dataset manifest --data_dir data.csv --modality_kinds '{"photo": "image", "caption": "text"}'
  python scripts/train.py --dataset manifest --data_dir data.csv \\
      --pretrained_backbones '{"image": "google/vit-base-patch16-224", "text": "google-bert/bert-base-uncased"}' \\
      --lora_modalities all --attn_implementation sdpa --bf16 --activation_checkpointing
  python scripts/train.py --resume_from_checkpoint latest   # continue an interrupted run in --output_dir
  torchrun --nproc_per_node 2 scripts/train.py              # 2 processes (DDP; gloo on CPU)

The best epoch is chosen on the validation split; the final model is saved (LoRA adapters merged), then tested on
the test split. The output folder holds the model, its processor, the remote code, a model card (README.md),
test_results.json, laziness.png and hgm.png: push it with scripts/push_to_hub.py, or train with --push_to_hub
--hub_model_id you/name.
"""

import json
import os
import sys
from dataclasses import dataclass, field, replace

import datasets
from transformers import set_seed
from transformers.utils import logging as transformers_logging

from mla_hf import MLAModel
from mla_hf.data import DataArguments, label_names, load_multimodal_dataset, preprocess_dataset
from mla_hf.hub import push_folder_to_hub
from mla_hf.presets import SmallBackboneShape, build_model_and_processor, lora_adapters
from mla_hf.threads import configure_torch_threads
from mla_hf.training import MLATrainer, MLATrainingArguments, get_training_method
from mla_hf.training.argument_parser import MLAArgumentParser
from mla_hf.training.hgm_report import plot_hgm
from mla_hf.training.laziness_plot import plot_laziness


def json_or_text(value: str | None):
    """A flag that takes one value or a JSON {modality: value} object."""
    return json.loads(value) if value and value.lstrip().startswith("{") else value


@dataclass
class ModelArguments:
    _argument_group_name = "model"

    pretrained_backbones: str | None = field(default=None, metadata={
        "help": 'JSON {modality: Hub id or local folder} of pretrained backbones, each with its processor or '
                'tokenizer, e.g. \'{"image": "google/vit-base-patch16-224"}\'. Other modalities get small random-init '
                "backbones."})
    backbone_revision: str | None = field(default=None, metadata={
        "help": "Revision (branch, tag or commit) of the pretrained backbones, or JSON {modality: revision}."})
    attn_implementation: str | None = field(default=None, metadata={
        "help": "Attention of the backbones: eager, sdpa, flash_attention_2..., or JSON {modality: implementation}."})
    lora_modalities: str | None = field(default=None, metadata={
        "help": "Comma-separated modalities (or 'all') whose backbones train LoRA adapters instead of all weights."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(default="all-linear", metadata={
        "help": "Modules LoRA adapts: 'all-linear' or comma-separated names (e.g. q_proj,v_proj)."})
    architecture: str = field(default="resnet", metadata={"help": "Random-init backbones: 'resnet' or 'transformer'."})
    hidden_size: int = field(default=64, metadata={"help": "Width of the random-init backbones (last ResNet stage)."})
    num_layers: int = field(default=3, metadata={"help": "ResNet stages or transformer layers of random-init backbones."})
    projection_dim: int = field(default=64, metadata={"help": "Width of the common feature space."})
    fusion: str | None = field(default=None, metadata={
        "help": "Test-time fusion of a shared or per-modality head: dynamic (MLA's entropy weights, the default), "
                "fixed (equal weights), product (a product of experts) or energy (QMF's, its default). The "
                "concatenation head of joint training and OGM-GE sums its slices."})
    image_size: int = field(default=32, metadata={"help": "Images are resized to this size (random-init backbones)."})
    num_mel_bins: int = field(default=40, metadata={"help": "Log-mel bins of audio spectrograms."})
    max_frames: int = field(default=100, metadata={"help": "Spectrogram frames (10 ms each); longer audio is cut."})
    max_text_length: int = field(default=64, metadata={"help": "Token limit of random-init text backbones."})


@dataclass
class ScriptArguments:
    _argument_group_name = "script"

    compare_joint: bool = field(default=True, metadata={
        "help": "Also train joint training, as the reference of the laziness plot (a lazy modality shows there)."})
    calibrate_fusion: bool = field(default=False, metadata={
        "help": "After training, fit one temperature per modality on the validation split (MLATrainer."
                "calibrate_fusion) and save them with the model: each modality's confidence then matches its "
                "accuracy, which entropy and product fusion rely on."})
    num_threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads per process (default: $OMP_NUM_THREADS when set, else the cores available to "
                "each process). Oversubscribed threads make CPU training many times slower on a busy machine."})


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


def make_parser() -> MLAArgumentParser:
    parser = MLAArgumentParser((ScriptArguments, ModelArguments, DataArguments, MLATrainingArguments),
                               description=__doc__)
    parser.set_defaults(**TRAINING_DEFAULTS)
    return parser


def build(model_args: ModelArguments, raw, modality_kinds: dict, method_name: str):
    """The MLAConfig and MLAProcessor of a run, with LoRA adapters when asked for."""
    method = get_training_method(method_name)
    shape = SmallBackboneShape(image_size=model_args.image_size, num_mel_bins=model_args.num_mel_bins,
                               max_frames=model_args.max_frames, max_text_length=model_args.max_text_length)
    config_kwargs = {}
    if model_args.attn_implementation:
        config_kwargs["attn_implementation"] = json_or_text(model_args.attn_implementation)
    hub_options = {"revision": json_or_text(model_args.backbone_revision)} if model_args.backbone_revision else None
    config, processor = build_model_and_processor(
        modality_kinds, label_names(raw), pretrained=json_or_text(model_args.pretrained_backbones),
        hidden_size=model_args.hidden_size, num_layers=model_args.num_layers, shape=shape,
        architecture=model_args.architecture, text_corpus=_texts(raw["train"], modality_kinds), hub_options=hub_options,
        projection_dim=model_args.projection_dim, head_type=method.head_type, fusion=model_args.fusion or method.fusion,
        **config_kwargs,
    )
    model = MLAModel(config)
    if model_args.lora_modalities:
        modalities = list(modality_kinds) if model_args.lora_modalities == "all" else model_args.lora_modalities.split(",")
        targets = model_args.lora_target_modules
        model.add_backbone_adapters(lora_adapters(
            modalities, r=model_args.lora_r, alpha=model_args.lora_alpha, dropout=model_args.lora_dropout,
            target_modules=targets if targets == "all-linear" else targets.split(",")))
    return model, processor


def _texts(split, modality_kinds: dict) -> list[str] | None:
    columns = [name for name, kind in modality_kinds.items() if kind == "text"]
    return [text for name in columns for text in split[name] if text] or None


def fit_splits(raw, training_args: MLATrainingArguments) -> MLATrainingArguments:
    """Training arguments that the dataset's splits can honour: without a validation split there is no
    evaluation during training, hence no best-model selection (said, not silently dropped)."""
    if "train" not in raw:
        raise ValueError(f"The dataset has no train split (splits: {list(raw)}).")
    if "validation" in raw or training_args.eval_strategy == "no":
        return training_args
    print("No validation split: training without evaluation and keeping the last model.")
    return replace(training_args, eval_strategy="no", load_best_model_at_end=False)


def train_and_test(model_args, data_args, raw, modality_kinds: dict, training_args: MLATrainingArguments,
                   calibrate_fusion: bool = False):
    """Train one method, save it (before anything else can fail), then test it; returns (trainer, test metrics)."""
    set_seed(training_args.seed)  # the backbones' random initialisation, not only the training loop
    model, processor = build(model_args, raw, modality_kinds, training_args.method)
    with training_args.main_process_first(desc="preprocessing"):  # one rank fills the datasets cache
        processed = preprocess_dataset(raw, processor)
    trainer = MLATrainer(model=model, args=training_args, train_dataset=processed["train"],
                         eval_dataset=processed.get("validation"), processing_class=processor)
    resume = training_args.resume_from_checkpoint
    trainer.train(resume_from_checkpoint=True if resume in ("latest", "true", "True") else resume)
    # Checkpoints keep the adapters (exact resume); the final folder is a plain MLA model that loads without peft.
    trainer.accelerator.unwrap_model(trainer.model).merge_backbone_adapters()
    if calibrate_fusion:
        temperatures = trainer.calibrate_fusion()
        if trainer.is_world_process_zero():
            print("Fusion temperatures fitted on the validation split: "
                  + ", ".join(f"{name} {value:.3g}" for name, value in temperatures.items()))
    trainer.save_model()
    metrics = None
    if "test" in processed:
        metrics = trainer.evaluate(processed["test"], metric_key_prefix="test")
    elif trainer.is_world_process_zero():
        print("No test split: the model is saved untested.")
    return trainer, metrics


def main(script_args: ScriptArguments, model_args: ModelArguments, data_args: DataArguments,
         training_args: MLATrainingArguments) -> dict | None:
    configure_torch_threads(script_args.num_threads)
    quiet_progress_bars()
    with training_args.main_process_first(desc="loading the dataset"):  # one rank generates AV-Digits
        raw, modality_kinds = load_multimodal_dataset(data_args)
    push = training_args.push_to_hub  # pushed once at the end, with the tested card and the plots
    training_args = replace(fit_splits(raw, training_args), push_to_hub=False)
    concat_head = get_training_method(training_args.method).head_type == "concat"
    if script_args.calibrate_fusion and ("validation" not in raw or concat_head):
        raise ValueError("--calibrate_fusion needs a validation split and a shared or per-modality head (the "
                         "concatenation head of joint training and OGM-GE has no per-modality fusion).")
    runs = {training_args.method: train_and_test(model_args, data_args, raw, modality_kinds, training_args,
                                                 script_args.calibrate_fusion)}
    if script_args.compare_joint and training_args.method != "joint":
        joint_args = replace(training_args, method="joint", method_options=None, resume_from_checkpoint=None,
                             output_dir=os.path.join(training_args.output_dir, "joint"))
        runs["joint"] = train_and_test(model_args, data_args, raw, modality_kinds, joint_args)
    trainer, metrics = runs[training_args.method]
    if trainer.is_world_process_zero():
        report(runs, list(modality_kinds), data_args, training_args)
        trainer.create_model_card(dataset=data_args.dataset)  # after the plots, which it shows
        if push:
            repo_id = training_args.hub_model_id or os.path.basename(os.path.normpath(training_args.output_dir))
            commit = push_folder_to_hub(training_args.output_dir, repo_id, private=bool(training_args.hub_private_repo),
                                        token=training_args.hub_token, dataset_name=data_args.dataset)
            print(f"Pushed to {getattr(commit, 'commit_url', repo_id)}")
    return metrics


def quiet_progress_bars():
    """No bar for saving or loading a few-MB model, and none at all in a log file (bars there leave escape codes)."""
    transformers_logging.disable_progress_bar()
    if not sys.stderr.isatty():
        datasets.disable_progress_bars()


def report(runs: dict, modalities: list[str], data_args: DataArguments, training_args: MLATrainingArguments):
    """Print the test table and write test_results.json and the plots."""
    output_dir = training_args.output_dir
    trainer, metrics = runs[training_args.method]
    if metrics is not None:
        print(f"\nTest split ({data_args.dataset}), accuracy:")
        print(f"  {'method':<12}{'fused':>8}" + "".join(f"{name:>8}" for name in modalities))
        for name, (_, result) in runs.items():
            cells = [result["test_accuracy"], *(result.get(f"test_{modality}_accuracy", float("nan"))
                                                for modality in modalities)]
            print(f"  {name:<12}" + "".join(f"{value:>8.4f}" for value in cells))
        with open(os.path.join(output_dir, "test_results.json"), "w") as handle:
            json.dump(metrics, handle, indent=2)
    print(f"Model and processor saved to {output_dir}")
    if training_args.eval_strategy != "no":
        histories = {name: run_trainer.state.log_history for name, (run_trainer, _) in runs.items()}
        kept = {name: (run_trainer.kept_epoch() or {}).get("epoch") for name, (run_trainer, _) in runs.items()}
        titles = {name: f"{name} on {data_args.dataset}" for name in runs}
        chance = {"chance": 1 / trainer.model.config.num_labels}
        plot = plot_laziness(histories, modalities, os.path.join(output_dir, "laziness.png"), kept_epochs=kept,
                             titles=titles, references=chance)
        print(f"Laziness plot: {plot}")
    hgm_plot = plot_hgm(trainer.state.log_history, os.path.join(output_dir, "hgm.png"),
                        title=f"{training_args.method}: head gradient modification")
    if hgm_plot:
        print(f"HGM plot: {hgm_plot}")


if __name__ == "__main__":
    main(*make_parser().parse_args_into_dataclasses(args=sys.argv[1:]))
