"""Pushing a saved MLA folder to the Hugging Face Hub as one commit: model, processor, remote code and card."""

import json
import os

from huggingface_hub import HfApi

from .configuration_mla import MLAConfig
from .model_card import render_model_card, save_model_card
from .processing_mla import PROCESSOR_CONFIG_NAME


REQUIRED_FILES = ("config.json", "model.safetensors", PROCESSOR_CONFIG_NAME, "modeling_mla.py", "pipeline_mla.py")
_SKIPPED_PREFIXES = ("checkpoint-", "runs", ".")
_SKIPPED_FILES = {"training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"}


def hub_files(folder: str) -> list[str]:
    """The files of `folder` (relative paths, sorted) that belong in a Hub repo: everything but training
    checkpoints, optimizer/RNG state, pickled arguments and hidden files. Other runs saved in sub-folders (e.g.
    `joint/`, written by `--compare_joint`) are left out too; only the processor's sub-folders are kept."""
    with open(os.path.join(folder, PROCESSOR_CONFIG_NAME), encoding="utf-8") as handle:
        processor_folders = set(json.load(handle)["modalities"])
    files = []
    for root, directories, names in os.walk(folder):
        relative_root = os.path.relpath(root, folder)
        top = relative_root.split(os.sep)[0]
        if relative_root != "." and (top not in processor_folders or top.startswith(_SKIPPED_PREFIXES)):
            directories.clear()
            continue
        for name in names:
            if name in _SKIPPED_FILES or name.startswith(_SKIPPED_PREFIXES):
                continue
            files.append(os.path.normpath(os.path.join(relative_root, name)))
    return sorted(files)


def check_complete(folder: str) -> None:
    """Raise when `folder` lacks what a usable Hub repo needs (names the missing files)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"'{folder}' is not a folder.")
    missing = [name for name in REQUIRED_FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise FileNotFoundError(f"'{folder}' is not a complete MLA folder: missing {missing}. Save the model with "
                                "MLAModel.save_pretrained and its processor with MLAProcessor.save_pretrained.")


def push_folder_to_hub(folder: str, repo_id: str, private: bool = False, commit_message: str = "Upload MLA model",
                       dataset_name: str | None = None, token: str | None = None, api: HfApi | None = None):
    """Create `repo_id` if needed and upload the folder's Hub files in one commit. A `README.md` is rendered from
    the template first when the folder has none (with the results of `test_results.json` when present)."""
    check_complete(folder)
    if not os.path.isfile(os.path.join(folder, "README.md")):
        results_path = os.path.join(folder, "test_results.json")
        metrics = None
        if os.path.isfile(results_path):
            with open(results_path, encoding="utf-8") as handle:
                metrics = json.load(handle)
        config = MLAConfig.from_pretrained(folder)
        save_model_card(folder, render_model_card(config, metrics, dataset_name=dataset_name, repo_id=repo_id))
    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(repo_id=repo_id, folder_path=folder, allow_patterns=hub_files(folder),
                             commit_message=commit_message, repo_type="model")
