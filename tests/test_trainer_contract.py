"""MLATrainer keeps the Trainer's contract: every TrainingArguments option is honoured or refused with a clear error,
method options are typed, and method state follows each run. One test per row of the README's option table."""

import math

import pytest
import torch
from torch import nn
from transformers import TrainerCallback

from mla_hf.training import (
    TRAINING_METHODS,
    MLATrainer,
    MLATrainingArguments,
    NonFiniteTrainingError,
    OGMGEOptions,
)
from mla_hf.training.methods.ogm_ge import modulation_coefficients
from mla_hf.training.methods.qmf import ranking_loss

from test_trainer import make_model, make_trainer


OPTIONS = {"unimodal": {"method_options": {"modality": "audio"}}}


def confident(model):
    """A head of std 0.02 predicts nearly uniformly, where label smoothing changes nothing; widen it."""
    with torch.no_grad():
        model.head.linear.weight.normal_(std=3.0, generator=torch.Generator().manual_seed(0))
    return model


def one_batch(data, size=64):
    return {key: data["train"][:size][key] for key in ("audio_input_values", "image_pixel_values", "labels")}


def logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry]


# --- losses: label smoothing and compute_loss_func reach training ---


def test_mla_training_loss_honours_label_smoothing(tmp_path, data):
    model = confident(make_model())
    batch = one_batch(data)
    with torch.no_grad():
        logits = model(**batch, modality="audio").logits
    expected = nn.functional.cross_entropy(logits, batch["labels"], label_smoothing=0.2)
    trainer = make_trainer(tmp_path, data, model=model, per_device_train_batch_size=64, max_steps=1,
                           label_smoothing_factor=0.2)
    trainer.train()
    assert logged(trainer, "loss_audio")[0] == pytest.approx(float(expected), rel=1e-5)
    unsmoothed = nn.functional.cross_entropy(logits, batch["labels"])
    assert abs(float(expected) - float(unsmoothed)) > 1e-3  # the test can tell the two apart


def test_joint_training_loss_is_the_stock_smoothed_loss(tmp_path, data):
    model = confident(make_model("joint"))
    batch = one_batch(data)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(**batch).logits, batch["labels"], label_smoothing=0.2)
    trainer = make_trainer(tmp_path, data, method="joint", model=model, per_device_train_batch_size=64, max_steps=1,
                           label_smoothing_factor=0.2)
    trainer.train()
    assert logged(trainer, "loss")[0] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("method", sorted(set(TRAINING_METHODS) - {"qmf"}))
def test_compute_loss_func_is_used_in_training(tmp_path, data, method):
    calls = []

    def loss_func(outputs, labels, num_items_in_batch=None):
        calls.append(int((labels != -100).sum()))
        return nn.functional.cross_entropy(outputs.logits, labels, ignore_index=-100)

    trainer = MLATrainer(model=make_model(method), args=make_trainer(tmp_path, data, method=method, max_steps=2,
                                                                     **OPTIONS.get(method, {})).args,
                         train_dataset=data["train"], compute_loss_func=loss_func)
    trainer.train()
    assert len(calls) == (4 if method == "mla" else 2)  # MLA: one loss per modality step


def test_qmf_refuses_a_compute_loss_func(tmp_path, data):
    args = make_trainer(tmp_path, data, method="qmf").args
    with pytest.raises(ValueError, match="cannot take a compute_loss_func"):
        MLATrainer(model=make_model("qmf"), args=args, train_dataset=data["train"],
                   compute_loss_func=lambda outputs, labels, num_items_in_batch=None: outputs.logits.sum())


# --- optimizer-side options MLA applies in its own steps ---


class ScheduleFreeLike(torch.optim.SGD):
    """An optimizer with the train()/eval() switch of schedule-free optimizers, recording the calls."""

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.modes = []

    def train(self):
        self.modes.append("train")

    def eval(self):
        self.modes.append("eval")


@pytest.mark.parametrize("method", ["mla", "joint"])
def test_schedule_free_optimizers_are_switched_to_train_mode(tmp_path, data, method):
    model = make_model(method)
    optimizer = ScheduleFreeLike(model.parameters(), lr=0.01)
    trainer = make_trainer(tmp_path, data, method=method, model=model, optimizers=(optimizer, None), max_steps=3,
                           lr_scheduler_type="constant")
    trainer.train()
    assert optimizer.modes.count("train") >= 3


def test_mla_empties_the_device_cache_every_n_steps(tmp_path, data, monkeypatch):
    calls = []
    monkeypatch.setattr("mla_hf.training.trainer.clear_device_cache", lambda *args, **kwargs: calls.append(1))
    make_trainer(tmp_path, data, max_steps=4, torch_empty_cache_steps=2).train()
    assert len(calls) == 2  # global steps 0 and 2


def norms_at_each_optimizer_step(model, optimizer) -> list[float]:
    """The total gradient norm the optimizer sees at each of its steps (filled as training runs)."""
    norms = []
    optimizer.register_step_pre_hook(lambda *_: norms.append(float(torch.nn.utils.get_total_norm(
        [p.grad for p in model.parameters() if p.grad is not None]))))
    return norms


def test_mla_logs_the_real_gradient_norm_of_each_modality_step(tmp_path, data):
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    norms = norms_at_each_optimizer_step(model, optimizer)
    trainer = make_trainer(tmp_path, data, model=model, optimizers=(optimizer, None), max_steps=1, max_grad_norm=0.0)
    trainer.train()
    assert logged(trainer, "grad_norm_audio")[0] == pytest.approx(norms[0], rel=1e-5)
    assert logged(trainer, "grad_norm_image")[0] == pytest.approx(norms[1], rel=1e-5)
    assert norms[0] != norms[1] and not logged(trainer, "grad_norm")


def test_mla_clips_each_modality_step_to_max_grad_norm(tmp_path, data):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    norms = norms_at_each_optimizer_step(model, optimizer)
    make_trainer(tmp_path, data, model=model, optimizers=(optimizer, None), max_steps=2, max_grad_norm=1e-3).train()
    modality_steps = [norm for norm in norms if norm > 0]  # the Trainer's own step after each batch finds no gradient
    assert len(modality_steps) == 4 and all(norm <= 1e-3 * 1.0001 for norm in modality_steps)


@pytest.mark.parametrize("method", ["joint", "unimodal"])
def test_gradient_accumulation_works_for_single_step_methods(tmp_path, data, method):
    trainer = make_trainer(tmp_path, data, method=method, gradient_accumulation_steps=2, per_device_train_batch_size=8,
                           num_train_epochs=1, **OPTIONS.get(method, {}))
    trainer.train()
    assert trainer.state.global_step == 4  # 64 samples, batches of 8, two per optimizer step


# --- refused options, each with the error that names the supported path ---


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="mla", gradient_accumulation_steps=2), "gradient_accumulation_steps=1"),
        (dict(method="mla", fp16=True), "use bf16=True"),
        (dict(method="joint", fsdp="full_shard"), "does not support DeepSpeed or FSDP.*torchrun"),
        (dict(method="joint", method_options={"hgm": False}), "'hgm' is an option of method 'mla'; method 'joint'"),
        (dict(method="ogm_ge", method_options={"alpha": "high"}), "Option 'alpha' of method 'ogm_ge' must be float"),
        (dict(method="ogm_ge", method_options={"alpha": -5}), "Option 'alpha' of method 'ogm_ge' must be positive"),
        (dict(method="ogm_ge", method_options={"modulation_starts": 3, "modulation_ends": 2}), "greater than"),
        (dict(method="mla", method_options={"hgm": "yes"}), "Option 'hgm' of method 'mla' must be bool"),
        (dict(method="mla", method_options={"modality_order": "random"}), "must be one of"),
        (dict(method="mla", method_options=OGMGEOptions()), "takes MLAOptions, got OGMGEOptions"),
        (dict(method="qmf", method_options={"ranking_weight": -1.0}), "must be >= 0"),
    ],
)
def test_refused_arguments_name_the_problem(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLATrainingArguments(output_dir=str(tmp_path), use_cpu=True, **kwargs)


def test_mla_refuses_data_parallel(tmp_path, data, monkeypatch):
    monkeypatch.setattr(MLATrainingArguments, "n_gpu", property(lambda self: 2))
    with pytest.raises(ValueError, match="DataParallel.*torchrun --nproc_per_node"):
        make_trainer(tmp_path, data)


def test_typed_options_are_converted_and_given_to_the_method(tmp_path, data):
    args = MLATrainingArguments(output_dir=str(tmp_path), method="ogm_ge", method_options={"alpha": 1}, use_cpu=True)
    assert args.method_options == OGMGEOptions(alpha=1.0) and isinstance(args.method_options.alpha, float)
    assert args.to_dict()["method_options"]["alpha"] == 1.0


# --- non-finite steps ---


@pytest.mark.parametrize("method", sorted(TRAINING_METHODS))
def test_a_diverging_run_stops_and_names_the_step(tmp_path, data, method):
    trainer = make_trainer(tmp_path, data, method=method, learning_rate=1e12, max_steps=6, max_grad_norm=0.0,
                           **OPTIONS.get(method, {}))
    with pytest.raises(NonFiniteTrainingError, match=r"Training diverged at step \d+"):
        trainer.train()
    with pytest.raises(NonFiniteTrainingError, match="non-finite weights"):  # even if a step got through
        trainer.accelerator.unwrap_model(trainer.model).encoders["audio"].embeddings.cls_token.data.fill_(float("nan"))
        trainer.save_model(str(tmp_path / "never"))
    assert not (tmp_path / "never" / "model.safetensors").exists()


@pytest.mark.parametrize("method", ["mla", "joint"])
def test_a_nan_sample_is_skipped_and_counted_with_the_option(tmp_path, data, method):
    poisoned = data["train"].map(lambda row, index: {"audio_input_values": row["audio_input_values"] * (
        float("nan") if index == 5 else 1.0)}, with_indices=True)
    trainer = make_trainer(tmp_path, {"train": poisoned, "validation": data["validation"]}, method=method,
                           skip_nonfinite_batches=True, num_train_epochs=2)
    trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert all(torch.isfinite(parameter).all() for parameter in model.parameters())
    assert logged(trainer, "skipped_steps")[-1] == 2  # the poisoned batch, once per epoch
    assert all(math.isfinite(loss) for loss in logged(trainer, "loss"))


# --- state per run ---


class RecordStart(TrainerCallback):
    def __init__(self, trainer):
        self.trainer, self.starts = trainer, []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.starts.append((self.trainer.method.projector.P.clone(), model))


def test_method_state_is_rebuilt_at_every_train(tmp_path, data):
    trainer = make_trainer(tmp_path, data, max_steps=2)
    recorder = RecordStart(trainer)
    trainer.add_callback(recorder)
    trainer.train()
    assert not torch.equal(trainer.method.projector.P, torch.eye(16, dtype=torch.float64))
    trainer.train()
    assert [torch.equal(P, torch.eye(16, dtype=torch.float64)) for P, _ in recorder.starts] == [True, True]


def test_hyperparameter_search_trials_each_start_from_identity(tmp_path, data):
    pytest.importorskip("optuna")
    args = make_trainer(tmp_path, data, max_steps=2, eval_strategy="no").args
    trainer = MLATrainer(model_init=lambda trial: make_model(seed=0), args=args, train_dataset=data["train"],
                         eval_dataset=data["validation"])
    recorder = RecordStart(trainer)
    trainer.add_callback(recorder)
    best = trainer.hyperparameter_search(
        direction="maximize", backend="optuna", n_trials=2,
        hp_space=lambda trial: {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)},
        compute_objective=lambda metrics: metrics.get("eval_accuracy", 0.0))
    assert best is not None and len(recorder.starts) == 2
    assert all(torch.equal(P, torch.eye(16, dtype=torch.float64)) for P, _ in recorder.starts)
    assert recorder.starts[0][1] is not recorder.starts[1][1]  # each trial trains a model of its own


# --- the methods' arithmetic, against hand-computed values ---


def test_ogm_ge_modulation_coefficients():
    scores = torch.tensor([3.0, 1.0])  # audio dominates: ratio 3, image: ratio 1/3
    expected = torch.tensor([1 - math.tanh(0.3 * 3.0), 1.0])
    torch.testing.assert_close(modulation_coefficients(scores, alpha=0.3), expected)
    three = modulation_coefficients(torch.tensor([2.0, 1.0, 1.0]), alpha=0.5)  # ratio 2 / (1 + 1) = 1: no change
    torch.testing.assert_close(three, torch.ones(3))


def test_qmf_ranking_loss():
    confidence = torch.tensor([[1.0], [2.0], [1.5]])
    history = torch.tensor([[0.1], [0.5], [0.2]])  # sample 0 had the lowest past loss, yet the lowest confidence
    valid = torch.ones(3, 1, dtype=torch.bool)
    # Pairs (0, 1), (1, 2), (2, 0); hinge = relu(-sign(h_p - h) * (c - c_p) + |h_p - h|):
    # relu(-(1 - 2) + 0.4) = 1.4, relu((2 - 1.5) + 0.3) = 0.8, relu((1.5 - 1) + 0.1) = 0.6
    expected = (1.4 + 0.8 + 0.6) / 3
    assert float(ranking_loss(confidence, history, valid)) == pytest.approx(expected)
    assert float(ranking_loss(confidence, history, torch.zeros(3, 1, dtype=torch.bool))) == 0.0
