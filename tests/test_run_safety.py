"""No run is ever lost: resume, an interrupted checkpoint, divergence, missing splits and the Hub folder, through
scripts/train.py as a user runs it."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mla_hf.hub import hub_files
from mla_hf.training import NonFiniteTrainingError

from test_data_loaders import write_image, write_rows, write_wav
from test_scripts import TINY, evaluate_script, train  # noqa: F401


SCRIPTS = os.path.join(os.path.dirname(__file__), "..", "scripts")
STEPS = ["--num_train_epochs", "2", "--per_device_train_batch_size", "16", "--save_strategy", "steps",
         "--save_steps", "2", "--eval_strategy", "no", "--load_best_model_at_end", "false"]


def run_train(*argv):
    return train.main(*train.make_parser().parse_args_into_dataclasses(args=[*TINY, *argv]))


def run_process(*argv, kill_at=None, cache=None):
    """scripts/train.py in a fresh process (killed while saving checkpoint-`kill_at`); returns the result."""
    entry = [os.path.join(os.path.dirname(__file__), "kill_during_save.py"), str(kill_at)] if kill_at else \
        [os.path.join(SCRIPTS, "train.py")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLA_HF_CACHE": cache}
    return subprocess.run([sys.executable, *entry, *TINY, *argv], capture_output=True, text=True, timeout=600, env=env)


def final_state(folder):
    checkpoint = folder / "checkpoint-8"
    return load_file(checkpoint / "model.safetensors"), load_file(checkpoint / "training_method_state.safetensors")


def test_a_run_killed_while_saving_a_checkpoint_resumes_to_the_same_weights(tmp_path, av_digits_cache):
    full = run_process("--output_dir", str(tmp_path / "full"), *STEPS, cache=av_digits_cache)
    assert full.returncode == 0, full.stderr[-3000:]

    killed = run_process("--output_dir", str(tmp_path / "run"), *STEPS, kill_at=6, cache=av_digits_cache)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "run" / "checkpoint-6" / "model.safetensors").exists()  # a partial checkpoint is left
    resumed = run_process("--output_dir", str(tmp_path / "run"), *STEPS, "--resume_from_checkpoint", "latest",
                          cache=av_digits_cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Skipping" in resumed.stderr and "checkpoint-6" in resumed.stderr and "cut short" in resumed.stderr

    (weights, method), (expected_weights, expected_method) = final_state(tmp_path / "run"), final_state(tmp_path / "full")
    assert weights.keys() == expected_weights.keys()
    assert all(torch.equal(weights[name], expected_weights[name]) for name in weights)
    assert torch.equal(method["head_projection.P"], expected_method["head_projection.P"])


def test_resume_continues_from_the_checkpoint_and_a_wrong_path_is_an_error(tmp_path, monkeypatch):
    from mla_hf.training import MLATrainer

    run_train("--output_dir", str(tmp_path / "run"), *STEPS)
    steps = []
    original = MLATrainer.training_step
    monkeypatch.setattr(MLATrainer, "training_step",
                        lambda self, *args, **kwargs: steps.append(self.state.global_step) or original(self, *args, **kwargs))
    run_train("--output_dir", str(tmp_path / "run"), *STEPS, "--num_train_epochs", "3",
              "--resume_from_checkpoint", str(tmp_path / "run" / "checkpoint-8"))
    assert steps == [8, 9, 10, 11]  # only the third epoch's 4 batches; a restart would run 12
    assert json.loads((tmp_path / "run" / "checkpoint-12" / "trainer_state.json").read_text())["global_step"] == 12
    with pytest.raises(ValueError, match="Cannot resume from '.*nowhere': no such folder"):
        run_train("--output_dir", str(tmp_path / "other"), "--resume_from_checkpoint", str(tmp_path / "nowhere"))


def test_a_diverging_run_fails_and_saves_nothing(tmp_path):
    with pytest.raises(NonFiniteTrainingError, match="Training diverged at step"):
        run_train("--output_dir", str(tmp_path / "out"), "--learning_rate", "1e6", "--max_grad_norm", "0",
                  "--num_train_epochs", "3", "--eval_strategy", "no", "--save_strategy", "no",
                  "--load_best_model_at_end", "false")
    assert not (tmp_path / "out" / "model.safetensors").exists() and not (tmp_path / "out" / "README.md").exists()


def manifest(tmp_path, splits, rows_per_label=4):
    rows = []
    for index in range(rows_per_label * 2):
        write_image(tmp_path / "photos" / f"{index}.png", value=20 * index)
        write_wav(tmp_path / "clips" / f"{index}.wav", seconds=0.1)
        rows.append([f"photos/{index}.png", f"clips/{index}.wav", ["pie", "salad"][index % 2],
                     *([splits[index % len(splits)]] if splits else [])])
    write_rows(tmp_path / "data.csv", rows, header=["image", "audio", "label", *(["split"] if splits else [])])
    return str(tmp_path / "data.csv")


@pytest.mark.parametrize("splits, rows_per_label", [
    (["train", "train", "validation", "validation"], 4),  # no test split
    (["train", "train", "test", "test"], 2),  # no validation split (too few samples to carve one)
    (None, 1),  # a tiny manifest: everything is train
])
def test_a_missing_split_never_loses_the_model(tmp_path, capsys, splits, rows_per_label):
    path = manifest(tmp_path, splits, rows_per_label)
    metrics = run_train("--dataset", "manifest", "--data_dir", path, "--output_dir", str(tmp_path / "out"))
    assert (tmp_path / "out" / "model.safetensors").exists() and (tmp_path / "out" / "README.md").exists()
    output = capsys.readouterr().out
    if splits != ["train", "train", "test", "test"]:
        assert metrics is None and "No test split: the model is saved untested." in output
    if splits != ["train", "train", "validation", "validation"]:
        assert "No validation split" in output


def test_train_script_pushes_exactly_the_hub_files_with_no_path_token_or_pickle(tmp_path, monkeypatch):
    from test_hub import RecordingApi

    api = RecordingApi()
    monkeypatch.setattr("mla_hf.hub.HfApi", lambda token=None: api)
    run_train("--output_dir", str(tmp_path / "out"), "--push_to_hub", "--hub_model_id", "me/digits",
              "--hub_token", "secret-token", "--compare_joint")
    folder = tmp_path / "out"
    upload = [call for call in api.calls if call[0] == "upload_folder"][-1]
    files = upload[2]["files"]
    assert files == hub_files(str(folder)) and {"README.md", "laziness.png", "model.safetensors"} <= set(files)
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) or name.startswith(("checkpoint-", "joint"))
                   for name in files)
    for name in files:
        content = (folder / name).read_bytes()
        assert str(tmp_path).encode() not in content and b"secret-token" not in content, name
    assert 'pipeline(model="me/digits"' in upload[2]["readme"]
