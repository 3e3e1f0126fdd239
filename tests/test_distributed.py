import os
import subprocess
import sys

import torch
from safetensors.torch import load_file


def test_two_cpu_ranks_end_with_identical_weights_and_p(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "distributed_train.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               script, str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    rank0, rank1 = (load_file(tmp_path / f"rank{rank}.safetensors") for rank in (0, 1))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert not torch.equal(rank0["P"], torch.eye(rank0["P"].shape[0], dtype=rank0["P"].dtype))


def test_train_script_under_torchrun(tmp_path):
    """scripts/train.py with two ranks: one generates and caches the data, both train, rank 0 writes the results."""
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "train.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518", script,
               "--output_dir", str(tmp_path / "out"), "--av_digits_max_images", "30", "--num_train_epochs", "1",
               "--hidden_size", "16", "--num_layers", "2", "--projection_dim", "16", "--image_size", "16",
               "--disable_tqdm", "true", "--per_device_train_batch_size", "16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLA_HF_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.count("Test split (av_digits)") == 1  # only rank 0 reports
    assert (tmp_path / "out" / "model.safetensors").exists() and (tmp_path / "out" / "README.md").exists()
    assert len(os.listdir(tmp_path / "cache" / "av_digits")) == 1
