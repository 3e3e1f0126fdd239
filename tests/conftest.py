import os
import subprocess
import sys

# Before anything imports huggingface_hub (it reads the variable once): tests never reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The benchmarks' measuring helpers (host_reads.HostReads) serve the tests too.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import ASTConfig, BertConfig, ViTConfig  # noqa: E402

from mla_hf import MLAConfig  # noqa: E402


WIDTH = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


def tiny_vit(**kwargs):
    return ViTConfig(**WIDTH, image_size=16, patch_size=8, num_channels=3, **kwargs)


def tiny_bert(**kwargs):
    return BertConfig(**WIDTH, vocab_size=60, max_position_embeddings=32, **kwargs)


def tiny_ast(**kwargs):
    return ASTConfig(**WIDTH, max_length=32, num_mel_bins=16, patch_size=8, frequency_stride=8, time_stride=8, **kwargs)


def three_modality_config(**kwargs) -> MLAConfig:
    """Image (ViT), text (BERT) and audio (AST), deliberately not in alphabetical order."""
    kwargs.setdefault("num_labels", 3)
    return MLAConfig(modalities={"text": tiny_bert(), "image": tiny_vit(), "audio": tiny_ast()}, projection_dim=16, **kwargs)


def random_inputs(batch_size: int, seed: int = 0, modalities=("text", "image", "audio")) -> dict:
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        "text_input_ids": torch.randint(0, 60, (batch_size, 7), generator=generator),
        "text_attention_mask": torch.ones(batch_size, 7, dtype=torch.long),
        "image_pixel_values": torch.randn(batch_size, 3, 16, 16, generator=generator),
        "audio_input_values": torch.randn(batch_size, 32, 16, generator=generator),
    }
    return {key: value for key, value in inputs.items() if key.split("_")[0] in modalities}


@pytest.fixture(scope="session")
def data():
    """A small synthetic audio + image problem: 64 train, 16 validation and 16 test samples."""
    from mla_hf.data import make_synthetic_dataset

    return make_synthetic_dataset(num_samples=96, seed=0, noise=0.5)


@pytest.fixture
def model():
    from mla_hf import MLAModel

    torch.manual_seed(0)
    model = MLAModel(three_modality_config()).eval()
    with torch.no_grad():  # a head of std 0.02 gives near-uniform predictions; make the fusion weights differ
        model.head.linear.weight.normal_(std=1.0)
    return model


@pytest.fixture(autouse=True, scope="session")
def av_digits_cache(tmp_path_factory):
    """One AV-Digits cache for the whole session, outside the user's home."""
    import os

    folder = str(tmp_path_factory.mktemp("mla_hf_cache"))
    previous = os.environ.get("MLA_HF_CACHE")
    os.environ["MLA_HF_CACHE"] = folder
    yield folder
    if previous is None:
        os.environ.pop("MLA_HF_CACHE")
    else:
        os.environ["MLA_HF_CACHE"] = previous


def run_without_mla_hf(script: str, tmp_path) -> str:
    """Run a Python script in a fresh offline process where mla_hf cannot be imported; returns its stdout."""
    hide = tmp_path / "hide"
    hide.mkdir(exist_ok=True)
    # A module named mla_hf earlier on the path shadows the editable install and refuses to import.
    (hide / "mla_hf.py").write_text("raise ImportError('hidden for this test')\n")
    guard = "try:\n    import mla_hf\n    raise SystemExit('mla_hf must not be importable here')\nexcept ImportError:\n    pass\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": str(hide)}
    result = subprocess.run([sys.executable, "-c", guard + script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
