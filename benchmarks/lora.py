"""LoRA against full fine-tuning of the backbones, for MLA on a pretrained-shaped ViT + BERT pair: trainable
parameters, peak memory and step time.

    python benchmarks/lora.py                      # CPU: results/lora.{md,json}
    python benchmarks/lora.py --device cuda --bf16  # on a GPU, peak CUDA memory
    python benchmarks/lora.py --smoke              # seconds: tiny shapes, a scratch folder

The backbones have the shapes of real checkpoints, with random weights (nothing is downloaded): ViT-S/16
(DeiT-small: width 384, 12 layers, 224 px) and BERT-small (google/bert_uncased_L-4_H-512_A-8: width 512, 4 layers).
Each variant trains in its own process (peak RSS never goes down within one); variants are interleaved and repeated,
and medians are reported. Memory is the peak above the floor of a process that builds the model and runs no step
(on a GPU: torch.cuda.max_memory_allocated; the floor is then the model on the GPU). LoRA: rank 8 on every linear layer of both backbones.
"""

import argparse
import json
import os
import shlex
import resource
import statistics
import subprocess
import sys
import tempfile

import torch
from results_files import write_results
from step_timing import Repeated, StepTimer


SHAPES = {
    "full": dict(vit=dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                          image_size=224, patch_size=16),
                 bert=dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048,
                           vocab_size=30522, max_position_embeddings=512)),
    "smoke": dict(vit=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           image_size=32, patch_size=8),
                  bert=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            vocab_size=1000, max_position_embeddings=64)),
}
VARIANTS = ("full fine-tuning", "LoRA r=8")


def build(shape: dict, lora: bool):
    from peft import LoraConfig
    from transformers import BertConfig, ViTConfig

    from mla_hf import MLAConfig, MLAModel

    torch.manual_seed(0)
    model = MLAModel(MLAConfig(modalities={"image": ViTConfig(**shape["vit"]), "text": BertConfig(**shape["bert"])},
                               num_labels=10, projection_dim=256, attn_implementation="sdpa"))
    if lora:
        model.add_backbone_adapters({name: LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")
                                     for name in ("image", "text")})
    return model


def batch(shape: dict, size: int, sequence: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    image = shape["vit"]["image_size"]
    return {"image_pixel_values": torch.randn(size, 3, image, image, generator=generator),
            "text_input_ids": torch.randint(0, shape["bert"]["vocab_size"], (size, sequence), generator=generator),
            "labels": torch.randint(0, 10, (size,), generator=generator)}


def worker(args) -> dict:
    """One measurement in this process: `steps` MLA training steps of a variant (the Trainer's own loop, so bf16
    autocast applies), or (variant None) the floor: the model, and the optimizer state it would have."""
    from mla_hf.training import MLATrainer, MLATrainingArguments

    shape = SHAPES["smoke" if args.smoke else "full"]
    model = build(shape, lora=args.variant == VARIANTS[1])
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    total = sum(parameter.numel() for parameter in model.parameters())
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as scratch:
        training_args = MLATrainingArguments(output_dir=scratch, per_device_train_batch_size=args.batch_size,
                                             max_steps=max(args.steps, 1), learning_rate=1e-4, report_to="none",
                                             save_strategy="no", disable_tqdm=True, bf16=args.bf16,
                                             use_cpu=args.device == "cpu", dataloader_num_workers=0)
        trainer = MLATrainer(model=model, args=training_args, callbacks=[timer],
                             train_dataset=Repeated(batch(shape, args.batch_size, args.sequence), args.batch_size * args.steps))
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        if args.variant:
            trainer.train()
        else:
            model.to(training_args.device)
    peak = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"trainable": trainable, "total": total, "peak_mib": peak,
            "step_seconds": statistics.median(timer.times[1:]) if len(timer.times) > 1 else None}


def run_worker(args, variant) -> dict:
    command = [sys.executable, __file__, "--worker", "--device", args.device, "--batch_size", str(args.batch_size),
               "--sequence", str(args.sequence), "--steps", str(args.steps)]
    command += (["--variant", variant] if variant else []) + (["--smoke"] if args.smoke else []) + \
        (["--bf16"] if args.bf16 else [])
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": str(args.num_threads)})
    if result.returncode != 0:
        raise RuntimeError(f"Worker {variant} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def markdown(saved: dict) -> str:
    args, runs = saved["settings"], saved["runs"]
    floor = statistics.median(run["peak_mib"] for run in runs["floor"])
    lines = [
        "# LoRA against full fine-tuning (MLA, ViT-S/16 + BERT-small shapes)",
        "",
        f"{saved['machine']}; batch {args['batch_size']} ({SHAPES['smoke' if args['smoke'] else 'full']['vit']['image_size']} "
        f"px images, {args['sequence']} tokens), "
        f"{args['steps']} MLA steps per run, {args['repeats']} interleaved repeats, medians"
        f"{', bf16 autocast' if args['bf16'] else ''}, sdpa attention. Memory above the floor of a process holding "
        f"the model ({floor:.0f} MiB). Command: `{saved['command']}`.",
        "",
        "| variant | trainable parameters | share of all | peak memory above the floor (MiB) | step time (s) |",
        "|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        results = runs[variant]
        peak = statistics.median(run["peak_mib"] for run in results) - floor
        step = statistics.median(run["step_seconds"] for run in results)
        lines.append(f"| {variant} | {results[0]['trainable']:,} | {results[0]['trainable'] / results[0]['total']:.2%} "
                     f"| {peak:.0f} | {step:.3f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--sequence", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--output_dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--output_name", default="lora", help="Results file name (lora.md / lora.json).")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.worker:
        torch.set_num_threads(args.num_threads)
        print(json.dumps(worker(args)))
        return
    if args.smoke:
        args.batch_size, args.sequence, args.steps, args.repeats = 2, 8, 2, 1
        args.output_dir = tempfile.mkdtemp(prefix="lora-smoke-")
    runs = {variant: [] for variant in (*VARIANTS, "floor")}
    for _ in range(args.repeats):
        for variant in (*VARIANTS, None):
            runs[variant or "floor"].append(run_worker(args, variant))
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{os.cpu_count()} CPUs, {args.num_threads} threads"
    saved = {"settings": vars(args), "machine": f"{device}, torch {torch.__version__}", "runs": runs,
             "command": "python " + shlex.join(["benchmarks/lora.py", *sys.argv[1:]])}
    print(write_results(saved, markdown, args.output_dir, args.output_name))
    print(f"Written to {args.output_dir}")


if __name__ == "__main__":
    main()
