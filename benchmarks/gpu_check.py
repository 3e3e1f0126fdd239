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
from step_timing import Repeated, StepTimer


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
            except Exception as error:  # flash attention is often not installed
                results[f"{implementation}, {dtype}"] = f"unavailable: {type(error).__name__}: {str(error)[:160]}"
                continue
            with torch.no_grad():
                logits[implementation] = model(**batch).logits.float()
        for implementation, values in logits.items():
            results[f"{implementation} vs eager, {dtype}"] = float((values - logits["eager"]).abs().max())
    return results


def train(method: str, head: str, steps: int, batch_size: int, hooks=None) -> dict:
    """`steps` training steps on CUDA under bf16 autocast (the Trainer's own, through accelerate); returns the
    median seconds per step after 2 warm-up steps, the logged losses and the peak CUDA memory."""
    from mla_hf.training import MLATrainer, MLATrainingArguments

    model = vit_bert("sdpa", head_type=head)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for hook in hooks or []:
        hook(model, optimizer)
    timer = StepTimer()
    batch = {**inputs(batch_size, "cpu"), "labels": torch.randint(0, 10, (batch_size,))}
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as scratch:
        args = MLATrainingArguments(output_dir=scratch, method=method, per_device_train_batch_size=batch_size,
                                    max_steps=steps, bf16=True, report_to="none", save_strategy="no",
                                    disable_tqdm=True, logging_steps=1, lr_scheduler_type="constant")
        trainer = MLATrainer(model=model, args=args, train_dataset=Repeated(batch, batch_size * steps),
                             optimizers=(optimizer, None), callbacks=[timer])
        trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"seconds_per_step": statistics.median(timer.times[2:]), "losses": losses,
            "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20}


def training(device) -> dict:
    """MLA steps under bf16 autocast on CUDA: finite losses, and the idle encoder bit-identical through the other
    modality's optimizer step."""
    changed = []

    def watch_text_encoder(model, optimizer):
        snapshot = {}
        optimizer.register_step_pre_hook(lambda *_: snapshot.update(
            text=[p.detach().clone() for p in model.encoders["text"].parameters()]))
        optimizer.register_step_post_hook(lambda *_: changed.append(any(
            not torch.equal(p, q) for p, q in zip(model.encoders["text"].parameters(), snapshot["text"]))))

    result = train("mla", "shared", steps=5, batch_size=32, hooks=[watch_text_encoder])
    return {"losses": result["losses"], "text encoder changed at each optimizer step (image, text, Trainer's own)":
            changed}


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
    """MLA against joint: seconds per training step and peak CUDA memory (ViT-S + BERT-small, batch 64, bf16)."""
    runs = {method: train(method, head, steps=12, batch_size=64) for method, head in (("mla", "shared"),
                                                                                       ("joint", "concat"))}
    return {"seconds per step": {method: run["seconds_per_step"] for method, run in runs.items()},
            "MLA / joint throughput": runs["joint"]["seconds_per_step"] / runs["mla"]["seconds_per_step"],
            "peak CUDA memory (MiB)": {method: run["peak_cuda_mib"] for method, run in runs.items()},
            "MLA / joint peak memory": runs["mla"]["peak_cuda_mib"] / runs["joint"]["peak_cuda_mib"]}


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
