"""Head gradient modification inside real MLATrainer runs: tests that fail on the defects known in public code
(G (I + P) instead of G P, P updated from the wrong modality, a wrong alpha schedule) and that check the invariant
HGM exists for, ΔW r_prev ≈ 0, at the paper's alpha range."""

import statistics

import pytest
import torch

from mla_hf.training import HeadGradientProjector, MLATrainer, authors_alpha

from test_trainer import make_model, make_trainer


class Spy:
    """Records, per modality step, the P the head gradient was projected with and the alpha of each P update."""

    def __init__(self, monkeypatch):
        self.projections, self.updates = [], []
        project, update = HeadGradientProjector.project_, HeadGradientProjector.update

        def spy_project(projector, grad):
            self.projections.append((grad.detach().clone(), projector.P.clone()))
            return project(projector, grad)

        def spy_update(projector, feature, alpha):
            self.updates.append((feature.detach().clone(), alpha))
            return update(projector, feature, alpha)

        monkeypatch.setattr(HeadGradientProjector, "project_", spy_project)
        monkeypatch.setattr(HeadGradientProjector, "update", spy_update)


def full_batch_features(model, data):
    """Mean projected feature of each modality over the whole training split (one batch of all 64 samples)."""
    batch = {key: data["train"][:][key] for key in ("audio_input_values", "image_pixel_values")}
    with torch.no_grad():
        output = model(**batch)
    return {name: output.modality_features[:, index].double().mean(0) for index, name in enumerate(model.modalities)}


def test_the_head_gradient_is_replaced_by_g_p_not_g_i_plus_p(tmp_path, data, monkeypatch):
    spy = Spy(monkeypatch)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    used = []
    optimizer.register_step_pre_hook(lambda *_: used.append(model.head.linear.weight.grad.clone())
                                     if model.head.linear.weight.grad is not None else None)
    make_trainer(tmp_path, data, model=model, optimizers=(optimizer, None), max_steps=3, max_grad_norm=0.0).train()
    assert len(spy.projections) == len(used) == 6
    for (raw, P), applied in zip(spy.projections, used):
        torch.testing.assert_close(applied, raw @ P.float())
    raw, P = spy.projections[-1]
    assert not torch.allclose(used[-1], raw + raw @ P.float())  # BalanceMM's G (I + P) is something else


def test_p_is_updated_with_the_modality_just_trained(tmp_path, data, monkeypatch):
    spy = Spy(monkeypatch)
    model = make_model()
    features = full_batch_features(model, data)  # encoders and projections change only in their own step
    make_trainer(tmp_path, data, model=model, per_device_train_batch_size=64, max_steps=1, optim="sgd",
                 learning_rate=0.05, max_grad_norm=0.0).train()
    after_audio = HeadGradientProjector(16)
    after_audio.update(features["audio"], authors_alpha(0.0))
    # The audio step (first) is projected with P = I; the image step with P updated by audio's mean feature.
    assert torch.equal(spy.projections[0][1], torch.eye(16, dtype=torch.float64))
    torch.testing.assert_close(spy.projections[1][1], after_audio.P)
    torch.testing.assert_close(spy.updates[0][0], features["audio"])
    torch.testing.assert_close(spy.updates[1][0], features["image"])


def test_the_alpha_schedule_runs_over_each_epoch(tmp_path, data, monkeypatch):
    spy = Spy(monkeypatch)
    make_trainer(tmp_path, data, num_train_epochs=2).train()  # 4 batches per epoch, 2 modality steps each
    expected = [0.1 ** (1 + batch / 4) for _ in range(2) for batch in range(4) for _ in ("audio", "image")]
    assert [alpha for _, alpha in spy.updates] == pytest.approx(expected)


def drift(tmp_path, data, optim, **options):
    """Median relative change of the head's output on the previous modality's mean feature, per step."""
    trainer = make_trainer(tmp_path, data, optim=optim, learning_rate=0.05 if optim == "sgd" else 3e-3,
                           max_grad_norm=0.0, num_train_epochs=3,
                           method_options={"hgm_alpha_schedule": "constant", **options})
    trainer.train()
    return statistics.median(value for entry in trainer.state.log_history for key, value in entry.items()
                             if key.startswith("hgm_drift"))


@pytest.mark.parametrize("alpha", [0.01, 0.1])
def test_hgm_keeps_the_head_output_on_the_previous_modality_with_sgd(tmp_path, data, alpha):
    unprojected = drift(tmp_path / "off", data, "sgd", hgm=False)
    assert drift(tmp_path / "on", data, "sgd", hgm=True, hgm_alpha=alpha, hgm_feature_scale="unit") < 0.1 * unprojected


@pytest.mark.parametrize("alpha", [0.01, 0.1])
def test_under_adam_only_the_update_projection_keeps_the_invariant(tmp_path, data, alpha):
    unprojected = drift(tmp_path / "off", data, "adamw_torch", hgm=False)
    gradient = drift(tmp_path / "gradient", data, "adamw_torch", hgm_alpha=alpha, hgm_feature_scale="unit")
    update = drift(tmp_path / "update", data, "adamw_torch", hgm_alpha=alpha, hgm_feature_scale="unit",
                   hgm_target="update")
    assert update < 0.1 * unprojected and update < 0.25 * gradient


def test_the_authors_recipe(tmp_path, data):
    trainer = make_trainer(tmp_path, data, recipe="authors_sgd", num_train_epochs=5, learning_rate=0.5,
                           max_grad_norm=3.0)
    assert (trainer.args.optim, trainer.args.learning_rate, trainer.args.weight_decay, trainer.args.max_grad_norm) == \
        ("sgd", 1e-3, 1e-4, 0.0)
    trainer.train()
    assert type(trainer.optimizer.optimizer).__name__ == "SGD"
    assert trainer.optimizer.param_groups[0]["momentum"] == 0.9
    rates = [entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry]
    assert rates[:14] == [1e-3] * 14 and rates[14:] == pytest.approx([1e-4] * 6)  # 20 steps: x0.1 after 70 %


def test_calibration_fits_a_temperature_per_modality_on_validation(tmp_path, data):
    trainer = make_trainer(tmp_path, data, num_train_epochs=3)
    trainer.train()
    temperatures = trainer.calibrate_fusion()
    assert set(temperatures) == {"audio", "image"} and all(0.05 <= value <= 20 for value in temperatures.values())
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert model.config.fusion_temperatures == temperatures
    model.save_pretrained(tmp_path / "saved")
    assert type(model).from_pretrained(tmp_path / "saved").config.fusion_temperatures == pytest.approx(temperatures)
    with pytest.raises(ValueError, match="needs a validation split"):
        MLATrainer(model=make_model(), args=trainer.args, train_dataset=data["train"]).calibrate_fusion()
