"""Model cards and push_to_hub, tested up to the network boundary (HfApi is replaced by a recorder)."""

import os
import re
import sys
from types import SimpleNamespace

import pytest
import torch
import yaml
from transformers import ViTImageProcessorPil

from mla_hf import MLAConfig, MLAModel, MLAProcessor
from mla_hf.data import make_synthetic_dataset, tiny_audio_image_config
from mla_hf.hub import hub_files, push_folder_to_hub
from mla_hf.model_card import local_repo_id, render_model_card, save_model_card
from mla_hf.presets import small_backbone
from mla_hf.training import MLATrainer, MLATrainingArguments


class RecordingApi:
    """Stands in for HfApi: records calls and, at upload time, the files the commit would hold."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"user/{repo_id}")

    def upload_folder(self, repo_id, folder_path, **kwargs):
        allowed = kwargs.get("allow_patterns")
        committed = allowed if allowed is not None else sorted(
            os.path.relpath(os.path.join(root, name), folder_path) for root, _, names in os.walk(folder_path)
            for name in names)
        readme = os.path.join(folder_path, "README.md")
        self.calls.append(("upload_folder", repo_id, {**kwargs, "files": committed,
                                                      "readme": open(readme).read() if os.path.exists(readme) else None}))
        return SimpleNamespace(commit_url=f"https://hub.invalid/{repo_id}/commit/0", done=lambda: True)


def metadata(card_text):
    return yaml.safe_load(card_text.split("---")[1])


def assert_no_placeholders(text):
    assert not re.search(r"\{\{|\}\}|\{%|%\}", text), "unfilled template placeholder"


def saved_folder(tmp_path):
    config = tiny_audio_image_config(hidden_size=16, projection_dim=8)
    MLAModel(config).save_pretrained(tmp_path)
    audio_config, audio_extractor = small_backbone("audio", hidden_size=16, num_layers=2)
    image = ViTImageProcessorPil(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    MLAProcessor({"audio": audio_extractor, "image": image}).save_pretrained(tmp_path)
    return tmp_path, config


def test_card_renders_every_section_and_the_model_index(tmp_path):
    _, config = saved_folder(tmp_path)
    metrics = {"test_accuracy": 0.9, "test_macro_f1": 0.88, "test_audio_accuracy": 0.5, "test_image_accuracy": 0.8,
               "test_audio_fusion_weight": 0.3, "test_image_fusion_weight": 0.7, "test_loss": 0.4}
    card = str(render_model_card(config, metrics, {"method": "mla", "learning_rate": 1e-3,
                                                   "method_options": {"hgm": True}},
                                 dataset_name="av_digits", repo_id="me/mla-digits",
                                 selection={"epoch": 7.0, "epochs": 10.0, "metric": "accuracy", "value": 0.91},
                                 hgm={"P: min eigenvalue": 0.01}, plots=["laziness.png"]))
    assert_no_placeholders(card)
    meta = metadata(card)
    # Two modalities: no single-modality task is true, and the Hub has no multimodal-classification one.
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "other"
    assert meta["license"] == "apache-2.0"
    assert {"mla", "multimodal", "audio", "image", "audio-classification", "image-classification"} <= set(meta["tags"])
    assert "datasets" not in meta  # av_digits is no Hub dataset id
    results = meta["model-index"][0]["results"][0]
    assert results["dataset"]["split"] == "test"
    assert [(m["name"], m["value"]) for m in results["metrics"]] == [("accuracy", 0.9), ("audio accuracy", 0.5),
                                                                     ("image accuracy", 0.8)]
    for section in ("## Method", "## Modalities and backbones", "## Training recipe", "## Results",
                    "## How to use", "## Intended use and limitations", "## License and attribution"):
        assert section in card
    assert "| audio | audio-spectrogram-transformer | 16 | mean |" in card
    assert 'pipeline(model="me/mla-digits", trust_remote_code=True)' in card
    assert "| image fusion weight | 0.7000 |" in card and "| learning_rate | 0.001 |" in card
    assert "| mla.hgm | True |" in card and "epoch 7.00 of 10.00 was kept" in card
    assert "![laziness.png](laziness.png)" in card and "P: min eigenvalue" in card
    assert "eSpeak NG" in card and "GPL-3.0-or-later" in card and "CC BY 4.0" in card
    assert "head gradient modification added +0.6 points" in card and "not significant" in card


def test_card_metadata_for_one_modality_and_a_hub_dataset(tmp_path):
    config = MLAConfig(modalities={"image": tiny_audio_image_config().modalities["image"]}, num_labels=2)
    meta = metadata(str(render_model_card(config, {"test_accuracy": 0.5}, dataset_name="org/photos")))
    assert meta["pipeline_tag"] == "image-classification" and meta["datasets"] == ["org/photos"]


def test_card_refuses_non_finite_metrics(tmp_path):
    _, config = saved_folder(tmp_path)
    with pytest.raises(ValueError, match="non-finite"):
        render_model_card(config, {"test_accuracy": float("nan")})


def test_card_without_evaluation_says_so(tmp_path):
    _, config = saved_folder(tmp_path)
    card = str(render_model_card(config))
    assert_no_placeholders(card)
    assert "No evaluation was recorded" in card and "model-index" not in metadata(card)


def test_push_commits_exactly_the_hub_files(tmp_path):
    folder, _ = saved_folder(tmp_path)
    for stray in ("checkpoint-10/model.safetensors", "training_args.bin", "joint/config.json", "runs/events.out",
                  "notes.txt", "optimizer.pt", "eval/test.json"):
        (folder / stray).parent.mkdir(parents=True, exist_ok=True)
        (folder / stray).write_bytes(b"x")
    (folder / "test_results.json").write_text('{"test_accuracy": 0.75, "test_audio_accuracy": 0.5}')
    (folder / "laziness.png").write_bytes(b"png")
    api = RecordingApi()
    push_folder_to_hub(str(folder), "me/mla-digits", private=True, api=api, dataset_name="av_digits")
    (create, repo, options), (upload, upload_repo, commit) = api.calls
    assert (create, repo, options["private"]) == ("create_repo", "me/mla-digits", True)
    assert upload == "upload_folder" and upload_repo == "me/mla-digits"
    assert commit["files"] == sorted([
        "README.md", "config.json", "model.safetensors", "mla_processor_config.json", "laziness.png",
        os.path.join("audio", "preprocessor_config.json"), os.path.join("image", "preprocessor_config.json"),
        "adapters.py", "backbones.py", "configuration_mla.py", "feature_extraction_mla.py", "fusion.py", "heads.py",
        "modeling_mla.py",
        "pipeline_mla.py", "pooling.py", "processing_mla.py",
    ])
    assert metadata(commit["readme"])["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.75
    assert hub_files(str(folder)) == commit["files"]


def test_a_modality_named_like_a_skipped_folder_keeps_its_processor(tmp_path):
    """Nothing is chosen by name prefix: a modality called runs_audio (like TensorBoard's runs/) is kept."""
    audio_config, audio_extractor = small_backbone("audio", hidden_size=16, num_layers=2)
    MLAModel(MLAConfig(modalities={"runs_audio": audio_config}, num_labels=2)).save_pretrained(tmp_path)
    MLAProcessor({"runs_audio": audio_extractor}).save_pretrained(tmp_path)
    assert os.path.join("runs_audio", "preprocessor_config.json") in hub_files(str(tmp_path))


def test_a_card_written_before_the_repo_existed_gets_the_repo_id(tmp_path):
    folder, config = saved_folder(tmp_path / "mla-digits")
    save_model_card(folder, render_model_card(config, repo_id=local_repo_id(folder)))
    assert "your-username/mla-digits" in (folder / "README.md").read_text()
    api = RecordingApi()
    push_folder_to_hub(str(folder), "me/digits", api=api)
    assert 'pipeline(model="me/digits"' in api.calls[-1][2]["readme"]


def test_push_refuses_an_incomplete_folder(tmp_path):
    config = tiny_audio_image_config(hidden_size=16, projection_dim=8)
    MLAModel(config).save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="mla_processor_config.json"):
        push_folder_to_hub(str(tmp_path), "me/x", api=RecordingApi())


def test_push_script_entry_point(tmp_path, monkeypatch, capsys):
    folder, _ = saved_folder(tmp_path)
    api = RecordingApi()
    monkeypatch.setattr("mla_hf.hub.HfApi", lambda token=None: api)
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    import push_to_hub

    push_to_hub.main(push_to_hub.PushArguments(model_dir=str(folder), repo_id="me/mla"))
    assert [call[0] for call in api.calls] == ["create_repo", "upload_folder"]
    assert "Pushed" in capsys.readouterr().out


def test_trainer_push_to_hub_uploads_the_hub_files_and_the_card(tmp_path, monkeypatch):
    api = RecordingApi()
    monkeypatch.setattr("transformers.trainer.hf_api", lambda *args, **kwargs: api)
    monkeypatch.setattr("mla_hf.hub.HfApi", lambda token=None: api)
    data = make_synthetic_dataset(num_samples=48)
    torch.manual_seed(0)
    _, audio_extractor = small_backbone("audio", hidden_size=16, num_layers=2)
    processor = MLAProcessor({"audio": audio_extractor,
                              "image": ViTImageProcessorPil(size={"height": 16, "width": 16})})
    args = MLATrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=16,
                                report_to="none", save_strategy="no", push_to_hub=True, hub_model_id="me/mla-push",
                                hub_token="secret-token", disable_tqdm=True, use_cpu=True)
    trainer = MLATrainer(model=MLAModel(tiny_audio_image_config(hidden_size=16, projection_dim=8)), args=args,
                         train_dataset=data["train"], eval_dataset=data["validation"], processing_class=processor)
    trainer.train()
    trainer.evaluate()
    trainer.push_to_hub(dataset="synthetic")
    upload = [call for call in api.calls if call[0] == "upload_folder"][-1]
    assert upload[2]["files"] == hub_files(str(tmp_path / "out"))
    assert "training_args.bin" not in upload[2]["files"] and (tmp_path / "out" / "training_args.bin").exists()
    for name in upload[2]["files"]:
        content = (tmp_path / "out" / name).read_bytes()
        assert b"secret-token" not in content and str(tmp_path).encode() not in content, name
    card = upload[2]["readme"]
    assert_no_placeholders(card)
    assert metadata(card)["model-index"][0]["results"][0]["dataset"]["split"] == "validation"
    assert "max_steps | 2" in card and 'pipeline(model="me/mla-push"' in card


def test_pushing_checkpoints_is_refused(tmp_path):
    with pytest.raises(ValueError, match="hub_strategy='end'"):
        MLATrainingArguments(output_dir=str(tmp_path), push_to_hub=True, hub_strategy="checkpoint", use_cpu=True)


def test_a_regular_install_ships_the_card_template_and_the_metric(tmp_path):
    """Not only the editable install: `pip install .` puts model_cards/ and the evaluate module into the package."""
    import shutil
    import subprocess

    root = os.path.join(os.path.dirname(__file__), "..")
    source = tmp_path / "source"  # a copy: pip builds in-tree, and a stale build/ must not answer for this one
    source.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(os.path.join(root, name), source / name)
    for name in ("src", "model_cards"):
        shutil.copytree(os.path.join(root, name), source / name, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    target = tmp_path / "installed"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                             "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (target / "mla_hf" / "model_cards" / "mla_model_card.md").is_file()
    assert (target / "mla_hf" / "data" / "av_digits_synthesis.py").is_file()
    assert (target / "mla_hf" / "metrics" / "multimodal_classification" / "multimodal_classification.py").is_file()
