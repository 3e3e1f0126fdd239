"""The README's code runs: each Python block in a fresh process (at tiny sizes, by the substitutions listed here,
each of which must still apply), and every `python scripts/...` command it shows parses with that script's parser."""

import os
import re
import shlex
import subprocess
import sys
import wave

import numpy as np
import pytest
from PIL import Image

from hub_cache import publish


ROOT = os.path.join(os.path.dirname(__file__), "..")
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
# (a line of the block that identifies it) -> [(text in the README, what the test runs instead)]
TINY = {
    "load_av_digits(AVDigitsSettings())": [("AVDigitsSettings()", "AVDigitsSettings(max_images=30)"),
                                           ("num_train_epochs=10", "max_steps=2")],
}


def block(marker: str) -> str:
    found = [code for code in BLOCKS if marker in code]
    assert len(found) == 1, f"one README block should contain {marker!r}, found {len(found)}"
    code = found[0]
    for marker_line, substitutions in TINY.items():
        if marker_line in code:
            for text, tiny in substitutions:
                assert text in code, f"the README block changed: {text!r} is gone; update tests/test_readme.py"
                code = code.replace(text, tiny)
    return code


def run(code: str, cwd, **env) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def test_every_python_block_is_tested():
    markers = ["pipeline(\"mla-classification\"", "from transformers import ASTConfig, ViTConfig",
               "load_av_digits(AVDigitsSettings())", "from peft import LoraConfig"]
    assert len(BLOCKS) == len(markers) and all(any(marker in code for code in BLOCKS) for marker in markers)


def test_api_tour(tmp_path):
    run(block("from transformers import ASTConfig, ViTConfig"), tmp_path)


def test_training_with_mla_trainer(tmp_path, av_digits_cache):
    output = run(block("load_av_digits(AVDigitsSettings())"), tmp_path, MLA_HF_CACHE=av_digits_cache)
    assert "test_accuracy" in output and "eval_missing_accuracy" in output
    assert (tmp_path / "out" / "model.safetensors").exists() and not list((tmp_path / "out").glob("checkpoint-*"))


def test_classify_with_a_trained_model(tmp_path, av_digits_cache):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import train

    argv = ["--output_dir", str(tmp_path / "outputs" / "mla-av-digits"), "--av_digits_max_images", "30",
            "--num_train_epochs", "1", "--hidden_size", "16", "--num_layers", "2", "--projection_dim", "16",
            "--image_size", "16", "--compare_joint", "false", "--disable_tqdm", "true"]
    train.main(*train.make_parser().parse_args_into_dataclasses(args=argv))
    rng = np.random.default_rng(0)
    for name in ("seven.wav",):
        with wave.open(str(tmp_path / name), "wb") as handle:
            handle.setnchannels(1), handle.setsampwidth(2), handle.setframerate(16000)
            handle.writeframes((3000 * rng.standard_normal(16000)).astype(np.int16).tobytes())
    for name in ("seven.png", "three.png"):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), mode="L").save(tmp_path / name)
    run(block('pipeline("mla-classification"'), tmp_path)


def test_start_from_pretrained_backbones(tmp_path):
    """The README uses real Hub ids; here they resolve to tiny models in a local Hub cache, offline."""
    from transformers import AutoModel, ViTImageProcessorPil

    from conftest import tiny_bert, tiny_vit
    from test_pretrained_backbones import tiny_tokenizer

    cache = tmp_path / "hub"
    publish(cache, "google/vit-base-patch16-224", AutoModel.from_config(tiny_vit()),
            ViTImageProcessorPil(size={"height": 16, "width": 16}))
    publish(cache, "google-bert/bert-base-uncased", AutoModel.from_config(tiny_bert()),
            tiny_tokenizer(str(tmp_path / "vocab")))
    output = run(block("from peft import LoraConfig"), tmp_path, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache),
                 HF_HOME=str(tmp_path / "home"))
    assert "torch.Size([2, 3])" in output
    from mla_hf import MLAModel

    merged = MLAModel.from_pretrained(tmp_path / "my-mla-lora")
    assert merged.config.backbone_adapters == {} and not any("lora" in key for key in merged.state_dict())


def script_commands() -> list[list[str]]:
    """Every `scripts/<script>.py ...` command of the README, in bash blocks and inline code alike."""
    texts = [line for code in re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL)
             for line in code.splitlines() if "scripts/" in line]
    texts += re.findall(r"`(python scripts/[^`]*)`", README)  # inline code may wrap over lines
    commands = []
    for text in texts:
        words = shlex.split(text.replace("\n", " ").split(" #")[0])
        start = next(index for index, word in enumerate(words) if word.startswith("scripts/"))
        end = words.index("&&", start) if "&&" in words[start:] else len(words)
        if not {"--help", "--help_all"} & set(words):
            commands.append(words[start:end])
    return commands


@pytest.mark.parametrize("command", script_commands(), ids=lambda command: " ".join(command)[:60])
def test_every_script_command_parses(command):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    module = __import__(os.path.basename(command[0]).removesuffix(".py"))
    parser = module.make_parser() if hasattr(module, "make_parser") else None
    if parser is None:
        from transformers import HfArgumentParser

        parser = HfArgumentParser(module.PushArguments)
    assert parser.parse_args_into_dataclasses(args=command[1:])

