"""Training with peft adapters (LoRA) on the backbones, through MLATrainer: every method, MLA's idle-modality
guarantee, and checkpoints that resume exactly."""

import pytest
import torch
from peft import LoraConfig

from mla_hf.training import TRAINING_METHODS

from test_trainer import make_model, make_trainer


OPTIONS = {"unimodal": {"method_options": {"modality": "audio"}}}


def lora_model(method="mla", seed=0):
    model = make_model(method, seed=seed)
    lora = dict(r=4, target_modules="all-linear", init_lora_weights=False)
    return model.add_backbone_adapters({"audio": LoraConfig(**lora), "image": LoraConfig(**lora)})


def snapshot(model) -> dict:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


@pytest.mark.parametrize("method", sorted(TRAINING_METHODS))
def test_every_method_trains_the_adapters_and_leaves_the_base_weights(tmp_path, data, method):
    model = lora_model(method)
    before = snapshot(model)
    make_trainer(tmp_path, data, method=method, model=model, max_steps=3, **OPTIONS.get(method, {})).train()
    after = snapshot(model)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    trained_modalities = ["audio"] if method == "unimodal" else ["audio", "image"]
    for name in trained_modalities:
        assert any(key.startswith(f"encoders.{name}.") and ".lora_" in key for key in changed), name
    assert not any(key.startswith("encoders.") and ".lora_" not in key for key in changed)  # base frozen
    assert any(key.startswith("projections.") for key in changed) and any(key.startswith("head.") for key in changed)


def test_idle_adapters_stay_bit_identical_through_another_modalitys_step(tmp_path, data):
    model = lora_model()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.1)
    adapters = {name: [p for key, p in model.named_parameters() if key.startswith(f"encoders.{name}.") and ".lora_" in key]
                for name in model.modalities}
    changed, snapshot_before = [], {}

    def before(*_):
        snapshot_before.update({name: [p.detach().clone() for p in params] for name, params in adapters.items()})

    def after(*_):
        changed.append({name for name, params in adapters.items()
                        if any(not torch.equal(p, q) for p, q in zip(params, snapshot_before[name]))})

    optimizer.register_step_pre_hook(before)
    optimizer.register_step_post_hook(after)
    make_trainer(tmp_path, data, model=model, optimizers=(optimizer, None), max_steps=2,
                 lr_scheduler_type="constant").train()
    assert changed == [{"audio"}, {"image"}, set()] * 2  # the Trainer's own step after each batch moves nothing


def test_checkpoints_hold_the_adapters_and_resume_exactly(tmp_path, data):
    common = dict(num_train_epochs=2, save_strategy="steps", save_steps=3)
    full = make_trainer(tmp_path / "full", data, model=lora_model(), **common)
    full.train()
    resumed = make_trainer(tmp_path / "resumed", data, model=lora_model(seed=7), **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "out" / "checkpoint-3"))
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(full.method.projector.P, resumed.method.projector.P)
