"""What can only be checked on a GPU (run on demand; no test depends on it): attention implementations and bf16 on
CUDA, MLA training steps there, the log-mel front end on the device, and MLA against joint step time.

    python benchmarks/gpu_check.py                           # writes results/gpu_check.json
    python benchmarks/gpu_check.py --checks step_speed      # reruns one check, keeping the others

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


SIZES = {  # ViT-S/16 and BERT-small shapes; --smoke shrinks everything to check the script on a CPU
    "full": dict(vit=dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
                 bert=dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
                 image=224, batch=(8, 32, 64), steps=(5, 12), clip_seconds=10),
    "smoke": dict(vit=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           image_size=32, patch_size=8),
                  bert=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
                  image=32, batch=(2, 4, 4), steps=(3, 4), clip_seconds=1),
}
SIZE = SIZES["full"]


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_memory_mib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def vit_bert(attn_implementation, dtype=None, **config):
    from transformers import BertConfig, ViTConfig

    from mla_hf import MLAConfig, MLAModel

    torch.manual_seed(0)
    vit, bert = ViTConfig(**SIZE["vit"]), BertConfig(**SIZE["bert"])
    mla_config = MLAConfig(modalities={"image": vit, "text": bert}, num_labels=10, projection_dim=256,
                           attn_implementation=attn_implementation, **({"dtype": dtype} if dtype else {}), **config)
    return MLAModel(mla_config)


def inputs(batch, device):
    generator = torch.Generator().manual_seed(0)
    image = SIZE["image"]
    return {"image_pixel_values": torch.randn(batch, 3, image, image, generator=generator).to(device),
            "text_input_ids": torch.randint(0, 30522, (batch, 64), generator=generator).to(device)}


def attention(device) -> dict:
    """Largest logit difference of sdpa (and flash attention, if installed) against eager, fp32 and bf16."""
    results = {}
    batch = inputs(SIZE["batch"][0], device)
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
    if torch.cuda.is_available():
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
            "peak_cuda_mib": peak_memory_mib()}


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

    result = train("mla", "shared", steps=SIZE["steps"][0], batch_size=SIZE["batch"][1], hooks=[watch_text_encoder])
    return {"losses": result["losses"], "text encoder changed at each optimizer step (image, text, Trainer's own)":
            changed}


def log_mel(device) -> dict:
    from mla_hf.feature_extraction_mla import LogMelFeatureExtractor

    front_end = LogMelFeatureExtractor(num_mel_bins=128, max_length=1024)
    rng = np.random.default_rng(0)
    clips = [(0.3 * rng.standard_normal(16000 * SIZE["clip_seconds"])).astype(np.float32) for _ in range(32)]
    cpu = front_end(clips)["input_values"]
    on_device = front_end(clips, device=device)["input_values"]
    synchronize()
    timings = {"cpu": [], str(device): []}
    for _ in range(5):
        for name, target in (("cpu", None), (str(device), device)):
            start = time.perf_counter()
            front_end(clips, device=target)
            synchronize()
            timings[name].append(time.perf_counter() - start)
    return {"max difference device vs cpu": float((on_device.cpu() - cpu).abs().max()),
            "output device": str(on_device.device),
            f"seconds for 32 clips of {SIZE['clip_seconds']} s": {name: statistics.median(values) for name, values in timings.items()}}


def step_speed(device) -> dict:
    """MLA against joint: seconds per training step and peak CUDA memory (ViT-S + BERT-small, batch 64, bf16)."""
    runs = {method: train(method, head, steps=SIZE["steps"][1], batch_size=SIZE["batch"][2])
            for method, head in (("mla", "shared"), ("joint", "concat"))}
    return {"seconds per step": {method: run["seconds_per_step"] for method, run in runs.items()},
            "MLA / joint throughput": runs["joint"]["seconds_per_step"] / runs["mla"]["seconds_per_step"],
            "peak CUDA memory (MiB)": {method: run["peak_cuda_mib"] for method, run in runs.items()},
            "MLA / joint peak memory": runs["mla"]["peak_cuda_mib"] / runs["joint"]["peak_cuda_mib"]
            if torch.cuda.is_available() else None}


CHECKS = {"attention": attention, "training": training, "log_mel": log_mel, "step_speed": step_speed}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--smoke", action="store_true", help="Tiny shapes, on the CPU if there is no GPU.")
    parser.add_argument("--checks", nargs="+", choices=list(CHECKS), default=list(CHECKS),
                        help="Run only these checks (the results file keeps the others' earlier values).")
    args = parser.parse_args()
    global SIZE
    SIZE = SIZES["smoke" if args.smoke else "full"]
    if args.smoke:
        args.output_dir = tempfile.mkdtemp(prefix="gpu-check-smoke-")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    path = os.path.join(args.output_dir, "gpu_check.json")
    report = {}
    if set(args.checks) != set(CHECKS) and os.path.exists(path):
        with open(path) as handle:
            report = json.load(handle)
    report.update(device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu", torch=torch.__version__)
    for name in args.checks:
        check = CHECKS[name]
        try:
            report[name] = check(device)
        except Exception as error:  # one failed check must not hide the others' results
            report[name] = f"failed: {type(error).__name__}: {error}"
        print(name, json.dumps(report[name], default=str)[:2000], flush=True)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(report, handle, indent=2, default=str)
    print(f"Written to {args.output_dir}")


if __name__ == "__main__":
    main()
