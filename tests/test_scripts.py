import json
import os
import sys

import pytest
import torch

from mla_hf import MLAModel


sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import train  # noqa: E402


@pytest.mark.parametrize("method", ["mla", "joint"])
def test_train_script_end_to_end_on_a_tiny_budget(tmp_path, method, capsys):
    argv = ["--output_dir", str(tmp_path), "--method", method, "--num_samples", "96", "--num_train_epochs", "1",
            "--hidden_size", "16", "--projection_dim", "16", "--use_cpu", "--disable_tqdm", "true"]
    metrics = train.main(*train.make_parser().parse_args_into_dataclasses(args=argv))
    assert {"test_accuracy", "test_audio_accuracy", "test_image_accuracy"} <= set(metrics)
    assert "Test split, method" in capsys.readouterr().out
    assert json.loads((tmp_path / "test_results.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    model = MLAModel.from_pretrained(tmp_path)
    assert model.config.head_type == ("shared" if method == "mla" else "concat")
    assert not list(tmp_path.glob("checkpoint-*/pytorch_model.bin"))


def test_train_script_rejects_unknown_method(tmp_path):
    argv = ["--output_dir", str(tmp_path), "--method", "nope", "--num_samples", "96"]
    with pytest.raises(ValueError, match="Unknown training method 'nope'"):
        train.main(*train.make_parser().parse_args_into_dataclasses(args=argv))


def test_train_script_is_reproducible_for_a_seed(tmp_path):
    runs = []
    for run in ("a", "b"):
        argv = ["--output_dir", str(tmp_path / run), "--num_samples", "96", "--max_steps", "2", "--hidden_size", "16",
                "--projection_dim", "16", "--use_cpu", "--disable_tqdm", "true", "--eval_strategy", "no",
                "--save_strategy", "no", "--load_best_model_at_end", "false"]
        train.main(*train.make_parser().parse_args_into_dataclasses(args=argv))
        runs.append(MLAModel.from_pretrained(tmp_path / run).state_dict())
    assert all(torch.equal(runs[0][name], runs[1][name]) for name in runs[0])
