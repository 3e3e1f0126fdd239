import math

import pytest
import torch
from safetensors.torch import load_file

from mla_hf import MLAModel
from mla_hf.data import tiny_audio_image_config
from mla_hf.training import TRAINING_METHODS, MLATrainer, MLATrainingArguments

from host_reads import HostReads


HEADS = {"mla": "shared", "unimodal": "shared", "joint": "concat", "ogm_ge": "concat", "qmf": "per_modality"}


def make_model(method="mla", seed=0, **config):
    torch.manual_seed(seed)
    config.setdefault("head_type", HEADS.get(method, "shared"))
    config.setdefault("fusion", "energy" if method == "qmf" else "dynamic")
    return MLAModel(tiny_audio_image_config(hidden_size=16, projection_dim=16, **config))


def make_trainer(tmp_path, data, method="mla", model=None, optimizers=(None, None), **kwargs):
    defaults = dict(output_dir=str(tmp_path / "out"), method=method, per_device_train_batch_size=16,
                    num_train_epochs=1, learning_rate=3e-3, report_to="none", save_strategy="no",
                    disable_tqdm=True, use_cpu=True, seed=0, logging_steps=1)
    args = MLATrainingArguments(**{**defaults, **kwargs})
    return MLATrainer(model=model or make_model(method), args=args, train_dataset=data["train"],
                      eval_dataset=data["validation"], optimizers=optimizers)


def parameter_groups(model):
    groups = {f"encoders.{name}": list(model.encoders[name].parameters()) + list(model.projections[name].parameters())
              for name in model.modalities}
    groups["head"] = list(model.head.parameters())
    return groups


@pytest.mark.parametrize("optimizer", ["adamw", "sgd_momentum_weight_decay"])
def test_idle_encoders_stay_bit_identical_through_another_modalitys_step(tmp_path, data, optimizer):
    model = make_model()
    if optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=3e-2, momentum=0.9, weight_decay=0.1)
    changed_per_step, snapshot = [], {}

    def before(*_):
        snapshot.update({k: [p.detach().clone() for p in ps] for k, ps in parameter_groups(model).items()})

    def after(*_):
        changed_per_step.append({k for k, ps in parameter_groups(model).items()
                                 if any(not torch.equal(p, q) for p, q in zip(ps, snapshot[k]))})

    opt.register_step_pre_hook(before)
    opt.register_step_post_hook(after)
    trainer = make_trainer(tmp_path, data, model=model, optimizers=(opt, None), lr_scheduler_type="constant",
                           max_steps=3)
    trainer.train()
    # Per batch: the audio step, the image step, then the Trainer's own step, which finds no gradient.
    expected = [{"encoders.audio", "head"}, {"encoders.image", "head"}, set()] * 3
    assert changed_per_step == expected


@pytest.mark.parametrize("hgm", [True, False])
def test_head_gradient_is_projected_only_with_hgm(tmp_path, data, hgm):
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    raw, used = [], []
    model.head.linear.weight.register_hook(lambda grad: raw.append(grad.detach().clone()))

    def record_used(*_):
        if model.head.linear.weight.grad is not None:
            used.append(model.head.linear.weight.grad.detach().clone())

    opt.register_step_pre_hook(record_used)
    trainer = make_trainer(tmp_path, data, model=model, optimizers=(opt, None), method_options={"hgm": hgm}, max_steps=2,
                           max_grad_norm=0.0)  # clipping would rescale the gradient too
    trainer.train()
    assert len(raw) == len(used) == 4
    assert torch.equal(raw[0], used[0])  # P = I at the first step
    for step in range(1, 4):
        assert torch.equal(raw[step], used[step]) is (not hgm)
    state = trainer.method.state_dict()
    if hgm:
        assert not torch.equal(state["head_projection.P"], torch.eye(16, dtype=torch.float64))
    else:
        assert "head_projection.P" not in state


@pytest.mark.parametrize("method", sorted(TRAINING_METHODS))
def test_every_method_lowers_its_training_loss(tmp_path, data, method):
    kwargs = {"method_options": {"modality": "audio"}} if method == "unimodal" else {}
    model = make_model(method)
    untouched = {k: v.clone() for k, v in model.encoders["image"].state_dict().items()}
    trainer = make_trainer(tmp_path, data, method=method, model=model, num_train_epochs=6, **kwargs)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert sum(losses[-4:]) / 4 < 0.95 * sum(losses[:4]) / 4, losses
    if method == "unimodal":
        assert all(torch.equal(v, untouched[k]) for k, v in model.encoders["image"].state_dict().items())
    metrics = trainer.evaluate()
    assert {"eval_accuracy", "eval_macro_f1", "eval_audio_accuracy", "eval_image_accuracy"} <= set(metrics)


def test_mla_logs_per_modality_losses_and_no_meaningless_grad_norm(tmp_path, data):
    trainer = make_trainer(tmp_path, data, max_steps=2)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert all({"loss_audio", "loss_image"} <= set(log) and "grad_norm" not in log for log in logs)
    joint = make_trainer(tmp_path / "joint", data, method="joint", max_steps=2)
    joint.train()
    assert all("grad_norm" in log for log in joint.state.log_history if "loss" in log)


def test_an_mla_step_waits_for_the_device_only_where_it_must(tmp_path, data):
    """On a GPU each host read of a tensor waits for the device. Per step MLA reads the batch's modality counts, and
    per modality its forward's input checks and its gradient norm (to refuse a non-finite step): 1 + 2 x 2 reads for
    two modalities."""
    steps = 3
    trainer = make_trainer(tmp_path, data, max_steps=steps, logging_steps=100)
    with HostReads() as reads:
        trainer.train()
    per_step = [read for read in reads.reads if read[2] and read[0] in ("modeling_mla.py", "mla.py")]
    assert len(per_step) == steps * (1 + 2 * 2), per_step


def test_resume_mid_epoch_is_bit_identical(tmp_path, data):
    common = dict(num_train_epochs=2, save_strategy="steps", save_steps=3, method_options={"modality_order": "shuffled"})
    full = make_trainer(tmp_path / "full", data, **common)
    full.train()

    resumed = make_trainer(tmp_path / "resumed", data, model=make_model(seed=123), **common)
    checkpoint = tmp_path / "full" / "out" / "checkpoint-3"  # mid first epoch (4 batches per epoch)
    assert load_file(checkpoint / "training_method_state.safetensors")["head_projection.P"].shape == (16, 16)
    resumed.train(resume_from_checkpoint=str(checkpoint))

    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(full.method.projector.P, resumed.method.projector.P)


def test_missing_modality_evaluation_masks_the_dropped_share(tmp_path, data):
    trainer = make_trainer(tmp_path, data, max_steps=1)
    full = trainer.evaluate()
    missing = trainer.evaluate_missing({"audio": 1.0}, metric_key_prefix="missing")
    assert "missing_audio_accuracy" not in missing  # audio is gone from every sample
    assert missing["missing_image_fusion_weight"] == pytest.approx(1.0)
    assert full["eval_image_fusion_weight"] < 1.0
    with pytest.raises(ValueError, match="must lie in"):
        trainer.evaluate_missing({"audio": 1.5})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="mla_v2"), "Unknown training method 'mla_v2'. Registered: joint, mla, ogm_ge, qmf, unimodal"),
        (dict(method="unimodal", method_options={"modality": "text"}), "lacks"),
        (dict(method="unimodal"), "needs the modality"),
        (dict(method="joint"), "head_type='concat'"),
        (dict(method="mla", method_options={"beta": 1}), "Unknown option 'beta'; method 'mla' takes"),
    ],
)
def test_trainer_configuration_errors(tmp_path, data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path, data, model=make_model("mla"), **kwargs)


def test_gradient_accumulation_is_refused(tmp_path):
    with pytest.raises(ValueError, match="gradient_accumulation_steps=1"):
        MLATrainingArguments(output_dir=str(tmp_path), gradient_accumulation_steps=2)


def test_resume_with_another_methods_checkpoint_is_refused(tmp_path, data):
    joint = make_trainer(tmp_path / "joint", data, method="joint", max_steps=1, save_strategy="steps", save_steps=1)
    joint.train()
    mla = make_trainer(tmp_path / "mla", data, max_steps=2)
    with pytest.raises(ValueError, match="trained with method 'joint'"):
        mla.train(resume_from_checkpoint=str(tmp_path / "joint" / "out" / "checkpoint-1"))


def test_mla_trains_under_bf16_autocast_with_warmup_and_clipping(tmp_path, data):
    trainer = make_trainer(tmp_path, data, bf16=True, max_steps=3, warmup_steps=2, max_grad_norm=0.5)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    learning_rates = [log["learning_rate"] for log in trainer.state.log_history if "learning_rate" in log]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert learning_rates[0] < learning_rates[1]  # warmup


def test_mla_step_on_a_batch_with_every_modality_masked_out_is_an_error(tmp_path, data):
    trainer = make_trainer(tmp_path, data, max_steps=1)
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    batch = {key: data["train"][:4][key] for key in ("audio_input_values", "image_pixel_values", "labels")}
    batch["modality_mask"] = torch.zeros(4, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="no modality present"):
        trainer.training_step(trainer.model, batch)


def test_mla_step_on_a_mask_claiming_a_modality_without_inputs_is_an_error(tmp_path, data):
    trainer = make_trainer(tmp_path, data, max_steps=1)
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    batch = {key: data["train"][:4][key] for key in ("image_pixel_values", "labels")}
    batch["modality_mask"] = torch.ones(4, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"marks modalities \['audio'\] present, but they have no inputs"):
        trainer.training_step(trainer.model, batch)
