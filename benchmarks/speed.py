"""Speed and memory, each figure a ratio measured in one run: audio features and the pipeline, preprocessing, an MLA
step against a joint step (with a profile of where MLA's time goes), threads under a competing load, and the
default job.

    python benchmarks/speed.py            # results/speed.{md,json}; about 15 minutes on 2 cores
    python benchmarks/speed.py --smoke    # seconds: tiny sizes, a scratch folder
    python benchmarks/speed.py --render_only

Method: torch threads are pinned (`--num_threads`, 2 by default, also given to every child process); training
variants run interleaved (mla, joint, floor, mla, ...) in fresh processes, because peak RSS never goes down within a
process; the figures are medians, with the interquartile range of the per-repeat ratios. Memory is the peak RSS
above the floor of a process that builds the model and the AdamW state and runs no forward. "Before" is the code
path this release replaced, rebuilt here: transformers' ASTFeatureExtractor (a per-frame numpy FFT) and one
preprocessing process reading Python lists.
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
import time

import numpy as np
import torch
from results_files import render_again, write_results
from step_timing import StepTimer


MODALITIES = {"audio": "audio", "image": "image"}
HERE = os.path.dirname(os.path.abspath(__file__))


def build(args, method="mla", audio_features="torch"):
    from mla_hf.data.av_digits import LABEL_NAMES
    from mla_hf.presets import SmallBackboneShape, build_model_and_processor
    from mla_hf.training import get_training_method

    spec = get_training_method(method)
    shape = SmallBackboneShape(image_size=args.image_size, num_mel_bins=40, max_frames=100)
    return build_model_and_processor(MODALITIES, LABEL_NAMES, hidden_size=args.hidden_size, num_layers=args.num_layers,
                                     shape=shape, projection_dim=args.projection_dim, head_type=spec.head_type,
                                     fusion=spec.fusion, audio_features=audio_features)


def quartiles(values: list[float]) -> dict:
    low, median, high = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return {"median": statistics.median(values), "q1": low, "q3": high, "values": values}


# --- training steps: throughput and memory ---


class RandomBatches(torch.utils.data.Dataset):
    """Preprocessed-looking random samples in preallocated tensors: no conversion spike to blur peak memory."""

    def __init__(self, num_samples, image_size):
        generator = torch.Generator().manual_seed(0)
        self.audio = torch.randn(num_samples, 1, 40, 100, generator=generator)
        self.image = torch.randn(num_samples, 3, image_size, image_size, generator=generator)
        self.labels = torch.randint(0, 10, (num_samples,), generator=generator)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"audio_pixel_values": self.audio[index], "image_pixel_values": self.image[index],
                "labels": self.labels[index]}


def step_worker(args) -> dict:
    """In this process: `steps` training steps of `args.method` (timed per step, after 2 warm-up steps), or the
    floor (method None). With `--profile`, the torch profiler's time per MLA phase."""
    from mla_hf import MLAModel
    from mla_hf.training import MLATrainer, MLATrainingArguments

    torch.manual_seed(0)
    method = args.method or "mla"
    model = MLAModel(build(args, method)[0])
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as scratch:
        training_args = MLATrainingArguments(
            output_dir=scratch, method=method, per_device_train_batch_size=args.batch_size, max_steps=args.steps + 2,
            learning_rate=1e-3, save_strategy="no", report_to="none", disable_tqdm=True, logging_steps=10_000,
            dataloader_num_workers=0)
        trainer = MLATrainer(model=model, args=training_args, callbacks=[timer],
                             train_dataset=RandomBatches(args.batch_size * (args.steps + 2), args.image_size))
        if args.method is None:  # the floor: model and AdamW state, no forward pass
            trainer.create_optimizer_and_scheduler(num_training_steps=1)
            for parameter in model.parameters():
                parameter.grad = torch.zeros_like(parameter)
            trainer.optimizer.step()
            return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if not args.profile:
            trainer.train()
            return {"samples_per_second": args.batch_size / statistics.median(timer.times[2:]),
                    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        with torch.profiler.profile() as profiler:
            trainer.train()
    phases = {}
    for event in profiler.key_averages():
        if event.key.startswith(("mla.", "Optimizer.step", "aten::", "autograd::")) and event.key.count(".") < 3:
            phases[event.key] = event.cpu_time_total / 1e6 / (args.steps + 2)  # seconds per step
    return {"seconds_per_step": statistics.median(timer.times[2:]), "phases": phases}


def run_worker(args, method=None, extra=(), env=None) -> dict:
    command = [sys.executable, __file__, "--worker", "--hidden_size", str(args.hidden_size), "--num_layers",
               str(args.num_layers), "--projection_dim", str(args.projection_dim), "--batch_size", str(args.batch_size),
               "--steps", str(args.steps), "--image_size", str(args.image_size), "--num_threads",
               str(args.num_threads), *(["--method", method] if method else []), *extra]
    result = subprocess.run(command, capture_output=True, text=True, check=False,
                            env={**os.environ, "OMP_NUM_THREADS": str(args.num_threads), **(env or {})})
    if result.returncode != 0:
        raise RuntimeError(f"Worker {method} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def training_comparison(args) -> dict:
    report = {}
    for allocator, env in (("glibc default", {}), ("memory returned to the OS at free", {"MALLOC_MMAP_THRESHOLD_": "65536"})):
        runs = {"mla": [], "joint": [], "floor": []}
        for _ in range(args.repeats):
            for method in ("mla", "joint", None):
                runs[method or "floor"].append(run_worker(args, method, env=env))
        floor = statistics.median(run["peak_rss_mib"] for run in runs["floor"])
        report[allocator] = {
            "runs": runs, "floor_mib": floor,
            "throughput": quartiles([m["samples_per_second"] / j["samples_per_second"]
                                     for m, j in zip(runs["mla"], runs["joint"])]),
            "memory": quartiles([(m["peak_rss_mib"] - floor) / (j["peak_rss_mib"] - floor)
                                 for m, j in zip(runs["mla"], runs["joint"])]),
        }
    report["saved_activations"] = saved_activations(args)
    report["profile"] = {method: run_worker(args, method, extra=["--profile"]) for method in ("mla", "joint")}
    return report


def saved_activations(args) -> dict:
    """Bytes autograd keeps for backward during one forward (storages counted once): what an MLA step (one
    modality at a time, so the larger of the two) holds against a joint step (both at once). Deterministic."""
    from mla_hf import MLAModel

    torch.manual_seed(0)
    batch = RandomBatches(args.batch_size, args.image_size)[: args.batch_size]
    sizes = {}
    for method in ("mla", "joint"):
        model = MLAModel(build(args, method)[0]).train()
        calls = [{"modality": name} for name in MODALITIES] if method == "mla" else [{}]
        peaks = []
        for extra in calls:
            storages = {}

            def pack(tensor):
                storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
                return tensor

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                model(**batch, **extra)
            peaks.append(sum(storages.values()))
        sizes[method] = max(peaks)
    return {"mla_mib": sizes["mla"] / 2**20, "joint_mib": sizes["joint"] / 2**20, "ratio": sizes["mla"] / sizes["joint"]}


def hgm_share(args, seconds_per_step: float) -> dict:
    """Time of head gradient modification (P update + projection, once per modality) against an MLA step."""
    from mla_hf.training import HeadGradientProjector

    shares = {}
    for dim in args.hgm_dims:
        projector = HeadGradientProjector(dim)
        features, gradient = torch.randn(dim), torch.randn(10, dim)
        timings = []
        for _ in range(args.hgm_repeats):
            start = time.perf_counter()
            for _ in MODALITIES:
                projector.update(features, alpha=0.5)
                projector.project_(gradient)
            timings.append(time.perf_counter() - start)
        shares[dim] = {"seconds": statistics.median(timings), "share": statistics.median(timings) / seconds_per_step}
    return shares


# --- audio features, the pipeline and preprocessing: before (AST numpy, one process) and now ---


def audio_samples(count: int, seconds: float = 1.0):
    from PIL import Image

    rng = np.random.default_rng(0)
    return [{"audio": (0.3 * rng.standard_normal(int(16000 * seconds))).astype(np.float32),
             "image": Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), mode="L")} for _ in range(count)]


def pipeline_speed(args) -> dict:
    from transformers import pipeline

    from mla_hf import MLAModel

    torch.manual_seed(0)
    samples = audio_samples(args.pipeline_samples)
    batches = [samples[i : i + 32] for i in range(0, len(samples), 32)]
    timings = {"before: processor + forward": [], "now: processor + forward": [], "now: pipeline": [],
               "bare forward": []}
    config, processor = build(args)
    _, before = build(args, audio_features="ast")
    model = MLAModel(config).eval()
    classify = pipeline("mla-classification", model=model, processor=processor)
    tensors = [processor(batch) for batch in batches]
    for _ in range(args.repeats):  # interleaved
        with torch.no_grad():
            for name, run in (("before: processor + forward", lambda: [model(**before(batch)) for batch in batches]),
                              ("now: processor + forward", lambda: [model(**processor(batch)) for batch in batches]),
                              ("now: pipeline", lambda: classify(samples, batch_size=32)),
                              ("bare forward", lambda: [model(**batch) for batch in tensors])):
                start = time.perf_counter()
                run()
                timings[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    return {"samples_per_second": {name: len(samples) / seconds for name, seconds in medians.items()},
            "speedup": medians["before: processor + forward"] / medians["now: processor + forward"],
            "pipeline_overhead": medians["now: pipeline"] / medians["now: processor + forward"] - 1}


def preprocessing_speed(args) -> dict:
    """Examples/s over AV-Digits' train split: the previous implementation (AST features, one process, Python
    lists) and the current `preprocess_dataset` (torch features, numpy batches, one process per core)."""
    import datasets

    from mla_hf.data import AVDigitsSettings, load_av_digits, preprocess_dataset

    datasets.disable_progress_bars()
    split = load_av_digits(AVDigitsSettings(max_images=args.preprocess_images))["train"]
    _, old_processor = build(args, audio_features="ast")
    _, processor = build(args)

    def before():
        def encode(batch):
            inputs = {name: batch[name] for name in old_processor.modalities}
            return {name: tensor.numpy() for name, tensor in old_processor(inputs, padding="max_length").items()}

        split.map(encode, batched=True, batch_size=128, remove_columns=[c for c in split.column_names if c != "labels"],
                  load_from_cache_file=False)

    def now():
        preprocess_dataset(split, processor, num_proc=args.num_threads)

    datasets.disable_caching()  # every run redoes the work
    timings = {"before": [], "now": []}
    for _ in range(max(1, args.repeats // 2)):
        for name, run in (("before", before), ("now", now)):
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    rates = {name: len(split) / statistics.median(values) for name, values in timings.items()}
    return {"examples": len(split), "examples_per_second": rates, "speedup": rates["now"] / rates["before"]}


# --- threads and the default job ---


def threads_under_load(args) -> dict:
    """Samples/s of an MLA run while another process keeps one core busy: torch's default (one thread per core)
    against one thread."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        rates = {}
        for threads in (os.cpu_count() or 1, 1):
            runs = [run_worker(argparse.Namespace(**{**vars(args), "num_threads": threads}), "mla")
                    for _ in range(max(1, args.repeats // 2))]
            rates[threads] = statistics.median(run["samples_per_second"] for run in runs)
    finally:
        busy.kill()
    return rates


def default_job(args) -> dict:
    """Wall time of `python scripts/train.py` (its defaults), on a fresh AV-Digits cache and again on the warm one,
    and its test accuracy."""
    times, accuracy = {}, None
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "MLA_HF_CACHE": os.path.join(scratch, "cache"),
               "HF_DATASETS_CACHE": os.path.join(scratch, "datasets")}
        for cache in ("cold", "warm"):
            start = time.perf_counter()
            result = subprocess.run([sys.executable, os.path.join(HERE, "..", "scripts", "train.py"), "--output_dir",
                                     os.path.join(scratch, f"out-{cache}"), "--num_threads", str(args.num_threads),
                                     *args.default_job_args], capture_output=True, text=True, env=env)
            times[cache] = time.perf_counter() - start
            if result.returncode != 0:
                raise RuntimeError(f"The default job failed:\n{result.stderr[-3000:]}")
            with open(os.path.join(scratch, f"out-{cache}", "test_results.json")) as handle:
                accuracy = json.load(handle)["test_accuracy"]
    return {"seconds": times, "test_accuracy": accuracy}


# --- report ---


def markdown(saved: dict) -> str:
    args, training = saved["settings"], saved["training"]
    default_allocator = training["glibc default"]
    returned = training["memory returned to the OS at free"]
    throughput, memory = default_allocator["throughput"], default_allocator["memory"]
    pipe, prep, threads, job = saved["pipeline"], saved["preprocessing"], saved["threads"], saved["default_job"]
    mla_phases = training["profile"]["mla"]["phases"]
    step = training["profile"]["mla"]["seconds_per_step"]

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = [
        "# Speed and memory (CPU)",
        "",
        f"{saved['machine']}, {args['num_threads']} torch threads in every process. Training: two random-init ResNets "
        f"(hidden {args['hidden_size']}, {args['num_layers']} stages; audio 40x100 log-mel, images "
        f"{args['image_size']}x{args['image_size']}), batch {args['batch_size']}, {args['steps']} timed steps per "
        f"run, {args['repeats']} interleaved repeats in fresh processes. Command: `{saved['command']}` "
        f"({saved['wall_seconds'] / 60:.1f} min).",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| processor + forward at batch 32, now / before (torch log-mel vs ASTFeatureExtractor) | "
        f"{pipe['speedup']:.1f}x ({pipe['samples_per_second']['now: processor + forward']:.0f} vs "
        f"{pipe['samples_per_second']['before: processor + forward']:.0f} samples/s) | >= 5x: {met(pipe['speedup'] >= 5)} |",
        f"| pipeline overhead over processor + forward, batch 32 | {100 * pipe['pipeline_overhead']:+.0f}% | <= 15%: "
        f"{met(pipe['pipeline_overhead'] <= 0.15)} |",
        f"| preprocessing, now / before (AV-Digits train, {prep['examples']} examples) | {prep['speedup']:.1f}x "
        f"({prep['examples_per_second']['now']:.0f} vs {prep['examples_per_second']['before']:.0f} examples/s) | "
        f">= 4x: {met(prep['speedup'] >= 4)} |",
        f"| MLA / joint training throughput (samples/s) | {throughput['median']:.3f}x (IQR {throughput['q1']:.3f}-"
        f"{throughput['q3']:.3f}) | >= 1.0x: {met(throughput['median'] >= 1.0)} |",
        f"| MLA / joint peak RSS above the floor ({default_allocator['floor_mib']:.0f} MiB), glibc default | "
        f"{memory['median']:.3f}x (IQR {memory['q1']:.3f}-{memory['q3']:.3f}) | <= 0.6x: {met(memory['median'] <= 0.6)} |",
        f"| same, freed memory returned to the OS (MALLOC_MMAP_THRESHOLD_=65536) | {returned['memory']['median']:.3f}x "
        f"(IQR {returned['memory']['q1']:.3f}-{returned['memory']['q3']:.3f}) | - |",
        f"| MLA / joint activations saved for backward ({training['saved_activations']['mla_mib']:.0f} / "
        f"{training['saved_activations']['joint_mib']:.0f} MiB) | {training['saved_activations']['ratio']:.3f}x | - |",
    ]
    for dim, values in saved["hgm"].items():
        lines.append(f"| HGM (P update + projection, both modalities) at d={dim}: share of an MLA step | "
                     f"{100 * values['share']:.2f}% | {'<= 2%: ' + met(values['share'] <= 0.02) if str(dim) == '768' else '-'} |")
    counts = list(threads)
    lines += [
        f"| training under a competing busy process: {counts[0]} threads / 1 thread | "
        f"{threads[counts[0]] / threads[counts[1]]:.2f}x ({threads[counts[0]]:.0f} vs {threads[counts[1]]:.0f} samples/s) | - |",
        f"| default job (`python scripts/train.py`), warm cache | {job['seconds']['warm']:.0f} s | <= 180 s: "
        f"{met(job['seconds']['warm'] <= 180)} |",
        f"| default job, cold cache (AV-Digits generated and preprocessed first) | {job['seconds']['cold']:.0f} s | - |",
        f"| default job, fused test accuracy | {100 * job['test_accuracy']:.1f}% | - |",
        "",
        f"Where an MLA step's time goes (torch profiler, {step * 1000:.0f} ms per step, one run):",
        "",
        "| phase | ms per step |",
        "|---|---|",
        *[f"| {name} | {1000 * seconds:.1f} |" for name, seconds in sorted(mla_phases.items(), key=lambda item: -item[1])
          if name.startswith(("mla.", "Optimizer.step"))],
        "",
        "Per-repeat ratios (throughput / memory, glibc default): " + ", ".join(
            f"{t:.3f}/{m:.3f}" for t, m in zip(throughput["values"], memory["values"])),
    ]
    return "\n".join(lines) + "\n"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--num_layers", type=int, default=3)
    parser.add_argument("--projection_dim", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--hgm_dims", type=int, nargs="+", default=[64, 768, 2048])
    parser.add_argument("--hgm_repeats", type=int, default=50)
    parser.add_argument("--pipeline_samples", type=int, default=128)
    parser.add_argument("--preprocess_images", type=int, default=None, help="AV-Digits subset for preprocessing.")
    parser.add_argument("--default_job_args", nargs="*", default=[], help="Extra flags of the timed default job.")
    parser.add_argument("--output_dir", default=os.path.join(HERE, "results"))
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes: checks the script runs.")
    parser.add_argument("--render_only", action="store_true", help="Rewrite speed.md from speed.json.")
    args = parser.parse_args()
    if args.smoke:
        args.hidden_size, args.num_layers, args.batch_size, args.steps, args.repeats, args.image_size = 16, 2, 8, 3, 2, 32
        args.hgm_dims, args.hgm_repeats, args.pipeline_samples, args.preprocess_images = [64], 3, 32, 30
        args.default_job_args = ["--av_digits_max_images", "30", "--num_train_epochs", "1", "--hidden_size", "16",
                                 "--num_layers", "2", "--compare_joint", "false"]
        args.output_dir = tempfile.mkdtemp(prefix="speed-smoke-")
    return args


def main():
    args = parse_args()
    torch.set_num_threads(args.num_threads)
    if args.worker:
        print(json.dumps(step_worker(args)))
        return
    if args.render_only:
        render_again(markdown, args.output_dir, "speed")
        return
    import platform

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    started = time.time()
    training = training_comparison(args)
    saved = {"settings": vars(args), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
             "command": "python " + shlex.join(["benchmarks/speed.py", *sys.argv[1:]]), "training": training,
             "hgm": hgm_share(args, training["profile"]["mla"]["seconds_per_step"]),
             "pipeline": pipeline_speed(args), "preprocessing": preprocessing_speed(args),
             "threads": threads_under_load(args), "default_job": default_job(args)}
    saved["wall_seconds"] = time.time() - started
    print(write_results(saved, markdown, args.output_dir, "speed"))
    print(f"Written to {args.output_dir}")


if __name__ == "__main__":
    main()
