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
