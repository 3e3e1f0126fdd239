"""Run by tests/test_distributed.py under torchrun: tiny MLA trainings whose final weights and P each rank writes to
OUTPUT_DIR/<scenario>-rank<k>.safetensors. `python distributed_train.py OUTPUT_DIR SCENARIO [...]` also runs a
scenario in one process, with the global batch, as the reference a multi-process run must match.

Scenarios:
    baseline       the synthetic data, every modality in every sample.
    missing        audio absent from whole per-process batches and image from others: a process whose batch lacks
                   the active modality takes part with a zero contribution.
    checkpointing  baseline with gradient checkpointing in every backbone that supports it.
"""

import os
import sys

import torch
from safetensors.torch import save_file

from mla_hf import MLAModel
from mla_hf.data import make_synthetic_dataset, tiny_audio_image_config
from mla_hf.training import MLATrainer, MLATrainingArguments


PER_PROCESS_BATCH = 4


def dataset(scenario: str):
    data = make_synthetic_dataset(num_samples=96, seed=0, noise=0.5)["train"]
    if scenario != "missing":
        return data

    def mask(row, index):
        block = index // PER_PROCESS_BATCH  # the per-process batch the sample lands in (sequential sampling)
        return {"modality_mask": [block % 2 == 0 or block % 3 == 0, block % 4 != 2]}

    return data.map(mask, with_indices=True).with_format("torch")


def run(output_dir: str, scenario: str) -> str:
    torch.manual_seed(0)
    model = MLAModel(tiny_audio_image_config(hidden_size=16, projection_dim=16))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    args = MLATrainingArguments(
        output_dir=os.path.join(output_dir, scenario), per_device_train_batch_size=PER_PROCESS_BATCH * (3 - world_size),
        max_steps=6, learning_rate=0.05, optim="sgd", report_to="none", save_strategy="no", disable_tqdm=True, use_cpu=True,
        seed=0, train_sampling_strategy="sequential", activation_checkpointing=scenario == "checkpointing")
    trainer = MLATrainer(model=model, args=args, train_dataset=dataset(scenario))
    trainer.train()
    checkpointed = {module.gradient_checkpointing for module in model.modules() if hasattr(module, "gradient_checkpointing")}
    assert checkpointed == {scenario == "checkpointing"}, checkpointed
    state = {name: value.detach().contiguous() for name, value in model.state_dict().items()}
    state["P"] = trainer.method.projector.P
    path = os.path.join(output_dir, f"{scenario}-{'rank' + str(trainer.args.process_index) if world_size > 1 else 'single'}.safetensors")
    save_file(state, path)
    return path


if __name__ == "__main__":
    for name in sys.argv[2:]:
        run(sys.argv[1], name)
