"""What can only be checked on a GPU (run on demand; no test depends on it): attention implementations and bf16 on
CUDA, MLA training steps there, the log-mel front end on the device, and MLA against joint step time.

    python benchmarks/gpu_check.py --output_dir results/     # writes gpu_check.json and gpu_check.md

The backbones have pretrained shapes with random weights (nothing is downloaded): ViT-S/16 and BERT-small.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch


def vit_bert(attn_implementation, dtype=None, **config):
    from transformers import BertConfig, ViTConfig

    from mla_hf import MLAConfig, MLAModel

    torch.manual_seed(0)
    vit = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536)
    bert = BertConfig(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048)
    mla_config = MLAConfig(modalities={"image": vit, "text": bert}, num_labels=10, projection_dim=256,
                           attn_implementation=attn_implementation, **({"dtype": dtype} if dtype else {}), **config)
    return MLAModel(mla_config)


def inputs(batch, device):
    generator = torch.Generator().manual_seed(0)
    return {"image_pixel_values": torch.randn(batch, 3, 224, 224, generator=generator).to(device),
            "text_input_ids": torch.randint(0, 30522, (batch, 64), generator=generator).to(device)}


def attention(device) -> dict:
    """Largest logit difference of sdpa (and flash attention, if installed) against eager, fp32 and bf16."""
    results = {}
    batch = inputs(8, device)
    for dtype in (torch.float32, torch.bfloat16):
        logits = {}
        for implementation in ("eager", "sdpa", "flash_attention_2"):
            try:
                model = vit_bert(implementation, dtype=dtype).to(device).eval()
            except (ValueError, ImportError) as error:
                results[f"{implementation}, {dtype}"] = f"unavailable: {str(error)[:160]}"
                continue
            with torch.no_grad():
                logits[implementation] = model(**batch).logits.float()
        for implementation, values in logits.items():
            results[f"{implementation} vs eager, {dtype}"] = float((values - logits["eager"]).abs().max())
    return results


def training(device) -> dict:
    """Five MLA steps under bf16 autocast: the losses, and whether the idle encoder stayed bit-identical."""
    from mla_hf.training import MLATrainer, MLATrainingArguments

    model = vit_bert("sdpa").to(device)
    batch = {**inputs(32, device), "labels": torch.randint(0, 10, (32,)).to(device)}
    with tempfile.TemporaryDirectory() as scratch:
        args = MLATrainingArguments(output_dir=scratch, per_device_train_batch_size=32, max_steps=5, bf16=True,
                                    report_to="none", save_strategy="no", disable_tqdm=True, learning_rate=1e-4)
        trainer = MLATrainer(model=model, args=args)
        trainer.create_optimizer_and_scheduler(num_training_steps=5)
        losses, text_changed_in_image_step = [], []
        optimizer = trainer.optimizer
        snapshot = {}

        def before(*_):
            snapshot["text"] = [p.detach().clone() for p in model.encoders["text"].parameters()]

        def after(*_):
            changed = any(not torch.equal(p, q) for p, q in zip(model.encoders["text"].parameters(), snapshot["text"]))
            text_changed_in_image_step.append(changed)

        optimizer.register_step_pre_hook(before)
        optimizer.register_step_post_hook(after)
        for _ in range(5):
            losses.append(float(trainer.training_step(trainer.model, dict(batch))))
    return {"losses": losses, "text encoder changed, per optimizer step (image, text, ...)": text_changed_in_image_step,
            "bf16 autocast": True}


def log_mel(device) -> dict:
    from mla_hf.feature_extraction_mla import LogMelFeatureExtractor

    front_end = LogMelFeatureExtractor(num_mel_bins=128, max_length=1024)
    rng = np.random.default_rng(0)
    clips = [(0.3 * rng.standard_normal(16000 * 10)).astype(np.float32) for _ in range(32)]
    cpu = front_end(clips)["input_values"]
    on_device = front_end(clips, device=device)["input_values"]
    torch.cuda.synchronize()
    timings = {"cpu": [], "cuda": []}
    for _ in range(5):
        for name, target in (("cpu", None), ("cuda", device)):
            start = time.perf_counter()
            front_end(clips, device=target)
            torch.cuda.synchronize()
            timings[name].append(time.perf_counter() - start)
    return {"max difference cuda vs cpu": float((on_device.cpu() - cpu).abs().max()),
            "output device": str(on_device.device),
            "seconds for 32 clips of 10 s": {name: statistics.median(values) for name, values in timings.items()}}


def step_speed(device) -> dict:
    """Median seconds per training step, MLA against joint, interleaved in one process (ViT-S + BERT-small, batch
    64, bf16 autocast)."""
    from mla_hf.training import MLATrainer, MLATrainingArguments

    trainers = {}
    batch = {**inputs(64, device), "labels": torch.randint(0, 10, (64,)).to(device)}
    for method, head in (("mla", "shared"), ("joint", "concat")):
        model = vit_bert("sdpa", head_type=head).to(device)
        scratch = tempfile.mkdtemp()
        args = MLATrainingArguments(output_dir=scratch, method=method, per_device_train_batch_size=64, max_steps=100,
                                    bf16=True, report_to="none", save_strategy="no", disable_tqdm=True)
        trainer = MLATrainer(model=model, args=args)
        trainer.create_optimizer_and_scheduler(num_training_steps=100)
        trainers[method] = trainer
    times = {method: [] for method in trainers}
    for _ in range(12):
        for method, trainer in trainers.items():
            torch.cuda.synchronize()
            start = time.perf_counter()
            trainer.training_step(trainer.model, dict(batch))
            if not trainer.method.owns_optimizer_steps:
                trainer.optimizer.step()
                trainer.optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            times[method].append(time.perf_counter() - start)
    medians = {method: statistics.median(values[2:]) for method, values in times.items()}
    peak = torch.cuda.max_memory_allocated() / 2**20
    return {"seconds per step": medians, "MLA / joint throughput": medians["joint"] / medians["mla"],
            "peak CUDA memory of the process (MiB)": peak}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    device = torch.device("cuda")
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    for name, check in (("attention", attention), ("training", training), ("log_mel", log_mel),
                        ("step_speed", step_speed)):
        try:
            report[name] = check(device)
        except Exception as error:  # one failed check must not hide the others' results
            report[name] = f"failed: {type(error).__name__}: {error}"
        print(name, json.dumps(report[name], default=str)[:2000], flush=True)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "gpu_check.json"), "w") as handle:
        json.dump(report, handle, indent=2, default=str)


if __name__ == "__main__":
    main()
