"""How often a training step reads a tensor's value on the host, per method. On a GPU each such read (`.item()`,
`.tolist()`, `bool(tensor)`, ...) waits until the device has finished all queued work, so the host cannot queue the
next kernels ahead: at small and medium batch sizes these waits, not the kernels, set the step time.

    python benchmarks/host_reads.py          # results/host_reads.{md,json}; seconds on a CPU
    python benchmarks/host_reads.py --smoke  # a scratch folder

Counted on the CPU by wrapping the reading methods of `torch.Tensor`: a read counts the same on any device. Each read
is attributed to the file that made it, mla_hf's own or the libraries' (transformers, accelerate, torch).
"""

import argparse
import os
import platform
import shlex
import sys
import tempfile

import torch
from results_files import write_results


HERE = os.path.dirname(os.path.abspath(__file__))
READING_METHODS = ("__bool__", "item", "tolist", "__int__", "__float__")


class HostReads:
    """While active, records each host read of a tensor's value as `(file, line, by_mla_hf)` of the code that made it
    (`reads`). Also used by the tests, which pin how often mla_hf's own code waits for the device."""

    def __init__(self):
        import mla_hf

        self.package = os.path.dirname(mla_hf.__file__)
        self.reads = []
        self._originals = {}

    def __enter__(self):
        for method in READING_METHODS:
            original = self._originals[method] = getattr(torch.Tensor, method)

            def counting(tensor, *args, _original=original):
                caller = sys._getframe(1)
                filename = caller.f_code.co_filename
                self.reads.append((os.path.basename(filename), caller.f_lineno, filename.startswith(self.package)))
                return _original(tensor, *args)

            setattr(torch.Tensor, method, counting)
        return self

    def __exit__(self, *exc):
        for method, original in self._originals.items():
            setattr(torch.Tensor, method, original)


def reads_per_step(method: str, steps: int) -> dict:
    from mla_hf import MLAModel
    from mla_hf.data import make_synthetic_dataset, tiny_audio_image_config
    from mla_hf.training import MLATrainer, MLATrainingArguments, get_training_method

    torch.manual_seed(0)
    spec = get_training_method(method)
    model = MLAModel(tiny_audio_image_config(num_labels=4, head_type=spec.head_type, fusion=spec.fusion))
    data = make_synthetic_dataset(num_samples=6 * 16 * steps // 4, seed=0)
    with tempfile.TemporaryDirectory() as scratch:
        args = MLATrainingArguments(output_dir=scratch, method=method, per_device_train_batch_size=16, max_steps=steps,
                                    save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
                                    logging_steps=10_000, use_cpu=True)
        trainer = MLATrainer(model=model, args=args, train_dataset=data["train"])
        with HostReads() as reads:
            trainer.train()
    own = sum(by_mla_hf for _, _, by_mla_hf in reads.reads)
    return {"mla_hf": own / steps, "libraries": (len(reads.reads) - own) / steps}


def markdown(saved: dict) -> str:
    lines = ["# Host reads per training step", "", f"{saved['machine']}; {saved['settings']['steps']} steps of batch "
             f"16 on the tiny audio + image model, counted over the whole `train()` (its start and end amortised). "
             f"Command: `{saved['command']}`.", "", "| method | by mla_hf | by the libraries | total |", "|---|---|---|---|"]
    for method, reads in saved["reads_per_step"].items():
        own, libraries = reads.get("mla_hf", 0.0), reads.get("libraries", 0.0)
        lines.append(f"| {method} | {own:.1f} | {libraries:.1f} | {own + libraries:.1f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=["mla", "joint", "ogm_ge", "qmf"])
    parser.add_argument("--output_dir", default=os.path.join(HERE, "results"))
    parser.add_argument("--smoke", action="store_true", help="Two steps of two methods, a scratch folder.")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.methods, args.output_dir = 2, ["mla", "joint"], tempfile.mkdtemp(prefix="host-reads-smoke-")
    torch.set_num_threads(1)
    saved = {"settings": vars(args), "machine": f"{platform.machine()}, torch {torch.__version__}",
             "command": "python " + shlex.join(["benchmarks/host_reads.py", *sys.argv[1:]]),
             "reads_per_step": {method: reads_per_step(method, args.steps) for method in args.methods}}
    print(write_results(saved, markdown, args.output_dir, "host_reads"))
    print(f"Written to {args.output_dir}")


if __name__ == "__main__":
    main()
