"""scripts/train.py and scripts/evaluate_model.py end to end, on a small AV-Digits and a tiny budget."""

import json
import os
import sys

import pytest
import torch

from mla_hf import MLAModel
from mla_hf.processing_mla import MLAProcessor


sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import evaluate_model as evaluate_script  # noqa: E402
import train  # noqa: E402


TINY = ["--av_digits_max_images", "30", "--hidden_size", "16", "--num_layers", "2", "--projection_dim", "16",
        "--image_size", "16", "--use_cpu", "--disable_tqdm", "true", "--compare_joint", "false"]


def run_train(output_dir, *extra):
    argv = ["--output_dir", str(output_dir), "--num_train_epochs", "1", *TINY, *extra]
    return train.main(*train.make_parser().parse_args_into_dataclasses(args=argv))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    metrics = run_train(folder, "--compare_joint")
    return folder, metrics


def test_train_script_end_to_end(trained, capsys):
    folder, metrics = trained
    assert {"test_accuracy", "test_audio_accuracy", "test_image_accuracy"} <= set(metrics)
    assert json.loads((folder / "test_results.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    assert (folder / "laziness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert MLAModel.from_pretrained(folder).config.head_type == "shared"
    assert MLAModel.from_pretrained(folder / "joint").config.head_type == "concat"
    processor = MLAProcessor.from_pretrained(folder)
    assert processor.modalities == ["audio", "image"] and processor.spectrogram_as_image == ["audio"]
    assert not list(folder.glob("checkpoint-*/pytorch_model.bin"))


def test_train_script_rejects_unknown_method(tmp_path):
    with pytest.raises(ValueError, match="Unknown training method 'nope'"):
        run_train(tmp_path, "--method", "nope")


def test_train_script_needs_data_dir_for_paper_datasets(tmp_path):
    with pytest.raises(ValueError, match="--data_dir is required"):
        run_train(tmp_path, "--dataset", "crema_d")


def test_train_script_is_reproducible_for_a_seed(tmp_path):
    runs = []
    for run in ("a", "b"):
        run_train(tmp_path / run, "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no",
                  "--load_best_model_at_end", "false", "--num_train_epochs", "1")
        runs.append(MLAModel.from_pretrained(tmp_path / run).state_dict())
    assert all(torch.equal(runs[0][name], runs[1][name]) for name in runs[0])


def run_evaluate(*argv):
    return evaluate_script.main(*evaluate_script.make_parser().parse_args_into_dataclasses(args=list(argv)))


def test_evaluate_script_matches_training_and_writes_json(trained, tmp_path):
    folder, metrics = trained
    output = tmp_path / "eval.json"
    results = run_evaluate("--model_dir", str(folder), "--av_digits_max_images", "30", "--output_json", str(output))
    assert results["metrics"]["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert json.loads(output.read_text())["metrics"]["test_accuracy"] == results["metrics"]["test_accuracy"]


def test_evaluate_script_with_a_missing_modality(trained):
    folder, _ = trained
    results = run_evaluate("--model_dir", str(folder), "--av_digits_max_images", "30", "--missing_rates",
                           '{"audio": 1.0}')
    metrics = results["metrics"]
    assert "test_audio_accuracy" not in metrics and metrics["test_image_fusion_weight"] == 1.0
    assert metrics["test_accuracy"] == pytest.approx(metrics["test_image_accuracy"])
    assert (folder / "eval" / "test-missing-audio1-seed0.json").exists()


def test_evaluate_script_errors(trained):
    folder, _ = trained
    with pytest.raises(ValueError, match="No split 'dev'"):
        run_evaluate("--model_dir", str(folder), "--av_digits_max_images", "30", "--split", "dev")
    with pytest.raises(ValueError, match="no weight for modalities"):
        run_evaluate("--model_dir", str(folder), "--av_digits_max_images", "30", "--fusion", "fixed",
                     "--fusion_weights", '{"audio": 1.0}')


def test_evaluate_script_keeps_one_file_per_setting(trained):
    folder, _ = trained
    common = ["--model_dir", str(folder), "--av_digits_max_images", "30"]
    plain = run_evaluate(*common)
    fixed = run_evaluate(*common, "--fusion", "fixed", "--fusion_weights", '{"audio": 0.25, "image": 0.75}')
    missing = run_evaluate(*common, "--missing_rates", '{"image": 0.5}')
    subset = run_evaluate(*common, "--max_eval_samples", "3")
    files = {path.name: json.loads(path.read_text()) for path in (folder / "eval").iterdir()}
    assert files["test-subset3-seed0.json"]["metrics"] == subset["metrics"] and subset["max_eval_samples"] == 3
    assert files["test.json"]["metrics"] == plain["metrics"]
    assert files["test-fusion-fixed.json"]["fusion_weights"] == {"audio": 0.25, "image": 0.75}
    assert fixed["metrics"]["test_image_fusion_weight"] == pytest.approx(0.75, abs=1e-6)
    assert files["test-missing-image0.5-seed0.json"]["metrics"] == missing["metrics"]


def test_train_script_with_lora_saves_a_merged_folder_the_pipeline_loads(tmp_path):
    from transformers import pipeline

    run_train(tmp_path / "lora", "--architecture", "transformer", "--lora_modalities", "all", "--lora_r", "2",
              "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false")
    model = MLAModel.from_pretrained(tmp_path / "lora")
    assert model.config.backbone_adapters == {} and not any("lora_" in key for key in model.state_dict())
    classify = pipeline("mla-classification", model=str(tmp_path / "lora"))
    assert classify({"audio": {"array": [0.0] * 16000, "sampling_rate": 16000}})[0]["label"] in [str(d) for d in range(10)]


def test_an_option_of_another_method_is_refused_on_the_command_line(tmp_path):
    with pytest.raises(ValueError, match=r"--mla.hgm: option\(s\) of method 'mla', but --method is 'joint'"):
        run_train(tmp_path, "--method", "joint", "--mla.hgm", "false")
    with pytest.raises(ValueError, match="Option 'alpha' of method 'ogm_ge' must be positive"):
        run_train(tmp_path, "--method", "ogm_ge", "--ogm_ge.alpha", "-5")
    help_text = train.make_parser().format_help()
    options = help_text[help_text.index("training method:"):]  # after the description and its examples
    assert options.index("--method") < options.index("--ogm_ge.alpha") < options.index("\n  --output_dir")
    assert help_text.startswith("usage:") and "examples:" in help_text and len(help_text.splitlines()) < 300


def test_train_script_fuses_as_asked_and_calibrates_on_validation(tmp_path, capsys):
    folder = tmp_path / "calibrated"
    run_train(folder, "--fusion", "product", "--calibrate_fusion", "--max_steps", "2", "--save_strategy", "no",
              "--load_best_model_at_end", "false")
    config = MLAModel.from_pretrained(folder).config
    assert config.fusion == "product" and set(config.fusion_temperatures) == {"audio", "image"}
    assert all(value > 0 for value in config.fusion_temperatures.values())
    assert "Fusion temperatures fitted on the validation split" in capsys.readouterr().out
    assert "temperature fitted on the validation split" in (folder / "README.md").read_text()
    with pytest.raises(ValueError, match="--calibrate_fusion needs a validation split and a shared or per-modality"):
        run_train(tmp_path / "joint", "--method", "joint", "--calibrate_fusion")
