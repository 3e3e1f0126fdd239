"""The benchmarks' smoke modes: both scripts run end to end and write their results files."""

import json
import os
import re
import subprocess
import sys

import pytest


BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")


@pytest.mark.parametrize("script, columns", [
    ("accuracy.py", ["late fusion, calibrated product", "fused, 50% lose audio", "mla, no HGM, entropy (paper)",
                     "unimodal image", "mla (SGD), product of experts", "fused, each modality lost by 30%"]),
    ("speed.py", ["MLA / joint training throughput", "HGM (P update + projection", "processor + forward at batch 32",
                  "preprocessing, now / before", "default job", "Where an MLA step's time goes"]),
    ("lora.py", ["full fine-tuning", "LoRA r=8", "trainable parameters"]),
    ("host_reads.py", ["by mla_hf", "by the libraries", "| mla |", "| joint |"]),
    ("gpu_check.py", None),
])
def test_smoke_mode_writes_results(script, columns):
    result = subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), "--smoke"], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = re.search(r"Written to (\S+)", result.stdout).group(1)
    name = script.removesuffix(".py")
    report = json.load(open(os.path.join(folder, f"{name}.json")))
    if columns is None:  # a JSON report only: every check ran
        assert not any(str(value).startswith("failed") for value in report.values()), report
        return
    table = open(os.path.join(folder, f"{name}.md")).read()
    assert all(column in table for column in columns)
