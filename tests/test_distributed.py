"""Multi-process training on CPU (gloo): 2 processes on one node, and 2 nodes of 1 process each on this machine."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file


SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_train.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def assert_same(a: dict, b: dict, exact: bool = True):
    assert a.keys() == b.keys()
    for name in a:
        if exact:
            assert torch.equal(a[name], b[name]), name
        else:
            torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=1e-4, msg=name)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One torchrun launch (2 processes) running every scenario, and the same scenarios in one process."""
    folder = tmp_path_factory.mktemp("ddp")
    scenarios = ["baseline", "missing", "checkpointing"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               SCRIPT, str(folder), *scenarios]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, result.stderr[-4000:]
    single = subprocess.run([sys.executable, SCRIPT, str(folder), "baseline", "missing"], capture_output=True,
                            text=True, timeout=600, env=ENV)
    assert single.returncode == 0, single.stderr[-4000:]
    return folder


def load(folder, name):
    return load_file(folder / f"{name}.safetensors")


def test_two_cpu_ranks_end_with_identical_weights_and_p(two_processes):
    rank0, rank1 = load(two_processes, "baseline-rank0"), load(two_processes, "baseline-rank1")
    assert_same(rank0, rank1)
    assert not torch.equal(rank0["P"], torch.eye(rank0["P"].shape[0], dtype=rank0["P"].dtype))
    assert_same(rank0, load(two_processes, "baseline-single"), exact=False)  # = one process with the global batch


def test_a_process_without_the_active_modality_contributes_zero(two_processes):
    """Whole per-process batches lack audio or image: the run equals one process training on the union batches."""
    rank0, rank1 = load(two_processes, "missing-rank0"), load(two_processes, "missing-rank1")
    assert_same(rank0, rank1)
    assert_same(rank0, load(two_processes, "missing-single"), exact=False)


def test_gradient_checkpointing_under_ddp_with_unused_encoders(two_processes):
    """Every backbone that supports it recomputes activations; MLA's idle encoders stay unused parameters of DDP."""
    assert_same(load(two_processes, "checkpointing-rank0"), load(two_processes, "checkpointing-rank1"))
    assert_same(load(two_processes, "checkpointing-rank0"), load(two_processes, "baseline-rank0"), exact=False)


def test_two_nodes_of_one_process_each(tmp_path):
    """The multi-node invocation, as 2 nodes on this machine rendezvousing on localhost."""
    launches = [
        subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                          "--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", "29519", SCRIPT,
                          str(tmp_path), "baseline"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        for node in (0, 1)
    ]
    for launch in launches:
        _, stderr = launch.communicate(timeout=600)
        assert launch.returncode == 0, stderr[-4000:]
    assert_same(load(tmp_path, "baseline-rank0"), load(tmp_path, "baseline-rank1"))


def test_train_script_under_torchrun(tmp_path):
    """scripts/train.py with two ranks: one generates and caches the data, both train, rank 0 writes the results."""
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "train.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518", script,
               "--output_dir", str(tmp_path / "out"), "--av_digits_max_images", "30", "--num_train_epochs", "1",
               "--hidden_size", "16", "--num_layers", "2", "--projection_dim", "16", "--image_size", "16",
               "--disable_tqdm", "true", "--per_device_train_batch_size", "16", "--compare_joint", "false"]
    env = {**ENV, "MLA_HF_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.count("Test split (av_digits)") == 1  # only rank 0 reports
    assert (tmp_path / "out" / "model.safetensors").exists() and (tmp_path / "out" / "README.md").exists()
    assert len(os.listdir(tmp_path / "cache" / "av_digits")) == 1
