"""The files of a Hub repo of an MLA model, and pushing a saved folder to the Hub as one commit.

A Hub repo holds exactly what `from_pretrained`, the processor, `pipeline("mla-classification")` and
`trust_remote_code` need, plus the model card and its plots: never a training checkpoint, optimizer state, pickled
training arguments (they hold the Hub token) or a file this list does not name.
"""

import json
import os
from pathlib import Path

from huggingface_hub import HfApi
from transformers.dynamic_module_utils import get_relative_import_files

from . import modeling_mla, pipeline_mla
from .configuration_mla import MLAConfig
from .model_card import local_repo_id, plots_in, render_model_card, save_model_card
from .processing_mla import PROCESSOR_CONFIG_NAME


def remote_code_files() -> list[str]:
    """The modules `trust_remote_code` loads: the modelling and pipeline files and what they import (flat group)."""
    modules = [modeling_mla.__file__, pipeline_mla.__file__]
    found = {path for module in modules for path in [module, *get_relative_import_files(module)]}
    return sorted(os.path.basename(path) for path in found)


WEIGHTS_INDEX_NAME = "model.safetensors.index.json"


def weight_shards(folder: str) -> list[str]:
    """The safetensors files that hold a saved model's weights: the shards its index names, or model.safetensors."""
    index = os.path.join(folder, WEIGHTS_INDEX_NAME)
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as handle:
            return sorted(set(json.load(handle)["weight_map"].values()))
    return ["model.safetensors"]


def weight_files(folder: str) -> list[str]:
    """The weight files of a saved model: its safetensors shards, and their index when sharded."""
    shards = weight_shards(folder)
    return [WEIGHTS_INDEX_NAME, *shards] if os.path.isfile(os.path.join(folder, WEIGHTS_INDEX_NAME)) else shards


def required_files(folder: str) -> list[str]:
    """What a usable Hub repo cannot do without: config, processor config, safetensors weights, remote code."""
    return ["config.json", PROCESSOR_CONFIG_NAME, *weight_files(folder), *remote_code_files()]


def hub_files(folder: str) -> list[str]:
    """The files of `folder` (relative paths, sorted) that make its Hub repo, and nothing else: config, safetensors
    weights, remote code, the processor (its config and one sub-folder per modality), the card and its plots."""
    check_complete(folder)
    with open(os.path.join(folder, PROCESSOR_CONFIG_NAME), encoding="utf-8") as handle:
        processor_folders = list(json.load(handle)["modalities"])
    files = required_files(folder)
    for modality in processor_folders:
        root = Path(folder, modality)
        files += [str(path.relative_to(folder)) for path in root.rglob("*") if path.is_file()]
    files += plots_in(folder) + (["README.md"] if os.path.isfile(os.path.join(folder, "README.md")) else [])
    return sorted(set(files))


def check_complete(folder: str) -> None:
    """Raise when `folder` lacks what a usable Hub repo needs (names the missing files)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"'{folder}' is not a folder.")
    missing = [name for name in required_files(folder) if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise FileNotFoundError(f"'{folder}' is not a complete MLA folder: missing {missing}. Save the model with "
                                "MLAModel.save_pretrained and its processor with MLAProcessor.save_pretrained.")


def push_folder_to_hub(folder: str, repo_id: str, private: bool = False, commit_message: str = "Upload MLA model",
                       dataset_name: str | None = None, token: str | None = None, revision: str | None = None,
                       api: HfApi | None = None):
    """Create `repo_id` if needed and upload the folder's Hub files (`hub_files`) in one commit.

    The card (`README.md`) is rendered first when the folder has none, with the results of `test_results.json` when
    present; a card written before the repo id was known has its placeholder id replaced by `repo_id`."""
    check_complete(folder)
    card_path = os.path.join(folder, "README.md")
    if not os.path.isfile(card_path):
        results_path = os.path.join(folder, "test_results.json")
        metrics = None
        if os.path.isfile(results_path):
            with open(results_path, encoding="utf-8") as handle:
                metrics = json.load(handle)
        config = MLAConfig.from_pretrained(folder)
        save_model_card(folder, render_model_card(config, metrics, dataset_name=dataset_name, repo_id=repo_id,
                                                  plots=plots_in(folder)))
    else:
        with open(card_path, encoding="utf-8") as handle:
            card = handle.read()
        placeholder = local_repo_id(folder)
        if placeholder in card:
            with open(card_path, "w", encoding="utf-8") as handle:
                handle.write(card.replace(placeholder, repo_id))
    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(repo_id=repo_id, folder_path=folder, allow_patterns=hub_files(folder),
                             commit_message=commit_message, repo_type="model", revision=revision)
