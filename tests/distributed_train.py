"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2`: a tiny MLA training whose final weights and
P each rank writes to OUTPUT_DIR/rank<k>.safetensors."""

import os
import sys

import torch
from safetensors.torch import save_file

from mla_hf import MLAModel
from mla_hf.data import make_synthetic_dataset, tiny_audio_image_config
from mla_hf.training import MLATrainer, MLATrainingArguments


def main(output_dir: str):
    torch.manual_seed(0)
    model = MLAModel(tiny_audio_image_config(hidden_size=16, projection_dim=16))
    data = make_synthetic_dataset(num_samples=96, seed=0, noise=0.5)
    args = MLATrainingArguments(output_dir=output_dir, per_device_train_batch_size=8, max_steps=4, learning_rate=3e-3,
                                report_to="none", save_strategy="no", disable_tqdm=True, use_cpu=True, seed=0)
    trainer = MLATrainer(model=model, args=args, train_dataset=data["train"])
    assert trainer.args.world_size == 2, trainer.args.world_size
    trainer.train()
    state = {name: value.detach().contiguous() for name, value in model.state_dict().items()}
    state["P"] = trainer.method.projector.P
    save_file(state, os.path.join(output_dir, f"rank{trainer.args.process_index}.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
