"""Model cards for MLA checkpoints, rendered from `model_cards/mla_model_card.md` (Jinja, via huggingface_hub)."""

import os
from importlib.resources import files
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .backbones import backbone_width
from .configuration_mla import MLAConfig
from .pooling import default_pooling


def _template_path() -> Path:
    """The template: package data of an installed mla_hf, or `model_cards/` of the source tree."""
    try:
        installed = Path(str(files("mla_hf.model_cards") / "mla_model_card.md"))
        if installed.is_file():
            return installed
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "model_cards" / "mla_model_card.md"


TEMPLATE = _template_path()
_METHODS = {
    "mla": ("MLA (alternating unimodal adaptation)",
            "Training alternates between modalities: each step updates one modality's encoder and the shared head on "
            "that modality alone, so no modality can lean on another (modality laziness). Head gradient modification "
            "projects each head update away from the feature directions earlier modalities used, so the shared head "
            "does not forget them."),
    "joint": ("joint training (baseline)", "All modalities are trained together on the loss of the fused prediction."),
    "ogm_ge": ("OGM-GE (baseline)", "Joint training whose dominant modality's gradients are slowed down on-the-fly, "
               "with Gaussian generalization noise (Peng et al., CVPR 2022)."),
    "qmf": ("QMF (baseline)", "Per-modality heads fused by energy-based confidence, trained with a ranking "
            "regulariser that ties confidence to past losses (Zhang et al., ICML 2023)."),
    "unimodal": ("unimodal training (baseline)", "One modality's encoder and the head are trained alone."),
}
_HEADS = {
    "shared": "One linear head is shared by all modalities.",
    "concat": "One linear head reads the concatenated features; each modality's logits are its slice of the head.",
    "per_modality": "Each modality has its own linear head.",
}
_TASKS = {"audio": "audio-classification", "image": "image-classification", "text": "text-classification"}
_EXAMPLES = {"audio": '"clip.wav"', "image": '"photo.jpg"', "text": '"a sentence"'}


def pipeline_tag(config: MLAConfig) -> str:
    """The Hub has no multimodal-classification task; the card is filed under its first modality's classification
    task when the modality is named audio, image or text, else under "other"."""
    return next((_TASKS[name] for name in config.modality_names if name in _TASKS), "other")


def _format(value, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render_model_card(config: MLAConfig, metrics: dict | None = None, training: dict | None = None,
                      dataset_name: str | None = None, repo_id: str = "path/to/this/folder",
                      model_name: str | None = None) -> ModelCard:
    """A complete model card: YAML metadata (library, pipeline tag, tags, datasets, metrics, model-index with
    `metrics`) and sections on the method, modalities, recipe, results, use and limitations.

    Args:
        metrics: the last evaluation, e.g. `{"test_accuracy": 0.9, "test_audio_accuracy": 0.5, ...}` (any prefix).
        training: the recipe, e.g. `MLATrainingArguments.to_dict()`; `method` selects the method description.
    """
    if not TEMPLATE.is_file():
        raise FileNotFoundError(f"The model card template '{TEMPLATE}' is missing: reinstall mla_hf.")
    training = dict(training or {})
    metrics = dict(metrics or {})
    method = training.get("method", "mla")
    method_title, method_description = _METHODS.get(method, (method, "A training method registered with mla_hf."))
    modalities = config.modality_names
    prefix = next((key[: -len("_accuracy")] for key in metrics if key.endswith("_accuracy")
                   and key.count("_") == 1), None)
    split = (prefix or "").replace("eval", "validation")
    named = {key.removeprefix(f"{prefix}_"): value for key, value in metrics.items() if prefix and key.startswith(prefix)}
    shown = ["accuracy", "macro_f1", *(f"{m}_{kind}" for m in modalities for kind in ("accuracy", "fusion_weight"))]
    result_rows = [(name.replace("_", " "), _format(named[name])) for name in shown if name in named]
    task = pipeline_tag(config)
    eval_results = [
        EvalResult(task_type=task, dataset_type=dataset_name or "custom", dataset_name=dataset_name or "custom",
                   dataset_split=split or None, metric_type="accuracy",
                   metric_name=name.replace("_", " "), metric_value=float(named[name]))
        for name in ("accuracy", *(f"{m}_accuracy" for m in modalities)) if name in named
    ]
    name = model_name or repo_id.rstrip("/").split("/")[-1]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=task,
        tags=["mla", "mla_hf", "multimodal", "balanced-multimodal-learning", *modalities, method],
        datasets=[dataset_name] if dataset_name else None,
        metrics=["accuracy", "f1"],
        model_name=name,
        eval_results=eval_results or None,
    )
    recipe_keys = ["method", "method_kwargs", "num_train_epochs", "max_steps", "learning_rate", "weight_decay",
                   "per_device_train_batch_size", "modality_order", "hgm", "hgm_alpha_schedule", "seed"]
    recipe_rows = [(key, f"{training[key]:g}" if isinstance(training[key], float) else str(training[key])) for key in recipe_keys if key in training and training[key] not in (None, {}, -1)]
    fusion_detail = {"dynamic": " (weights from each prediction's entropy: confident modalities count more)",
                     "fixed": f" (weights {config.fusion_weights})", "energy": " (weights from each prediction's energy)"}
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=name,
        repo_id=repo_id,
        modality_list=", ".join(modalities),
        method_title=method_title,
        method_description=method_description,
        projection_dim=config.projection_dim,
        head_description=_HEADS[config.head_type],
        fusion=config.fusion if config.head_type != "concat" else "concatenation",
        fusion_detail=fusion_detail.get(config.fusion, "") if config.head_type != "concat" else "",
        backbone_rows=[{"modality": m, "backbone": config.modalities[m].model_type,
                        "width": backbone_width(config.modalities[m]),
                        "pooling": (config.pooling or {}).get(m) or default_pooling(config.modalities[m])} for m in modalities],
        num_labels=config.num_labels,
        label_list=", ".join(str(config.id2label[index]) for index in range(config.num_labels)),
        recipe_rows=recipe_rows or [("recipe", "not recorded")],
        results_intro=(f"On the {split} split of {dataset_name or 'the evaluation data'}:" if result_rows
                       else "No evaluation was recorded for this checkpoint."),
        result_rows=result_rows or [("accuracy", "not evaluated")],
        example_input="{" + ", ".join(f'"{m}": {_EXAMPLES.get(m, "...")}' for m in modalities) + "}",
        dataset_clause=f" ({dataset_name})" if dataset_name else "",
    )
    return card


def save_model_card(folder: str | os.PathLike, card: ModelCard) -> str:
    path = os.path.join(folder, "README.md")
    card.save(path)
    return path
