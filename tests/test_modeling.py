import os
import textwrap

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from mla_hf import MLAConfig, MLAModel

from conftest import random_inputs, run_without_mla_hf, three_modality_config, tiny_bert, tiny_vit
from host_reads import HostReads


def test_output_shapes_and_fusion_weights(model):
    output = model(**random_inputs(5), labels=torch.tensor([0, 1, 2, 0, 1]))
    assert output.logits.shape == (5, 3)
    assert output.modality_logits.shape == (5, 3, 3)
    assert output.modality_weights.shape == (5, 3)
    assert output.modality_features.shape == (5, 3, 16)
    assert output.loss.ndim == 0
    torch.testing.assert_close(output.modality_weights.sum(-1), torch.ones(5))
    fused = (output.modality_weights.unsqueeze(-1) * output.modality_logits).sum(1)
    torch.testing.assert_close(output.logits, fused)


def test_save_load_is_bit_identical_and_uses_safetensors(model, tmp_path):
    inputs = random_inputs(4)
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert "model.safetensors" in files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in files)
    for loader in (MLAModel, AutoModel, AutoModelForSequenceClassification):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert type(loaded) is MLAModel
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)


def test_remote_code_loads_in_a_process_without_mla_hf(model, tmp_path):
    """A saved folder loads with trust_remote_code where mla_hf is not importable, with identical logits."""
    inputs = random_inputs(4)
    model.save_pretrained(tmp_path / "model")
    torch.save(inputs, tmp_path / "inputs.pt")
    torch.save(model(**inputs).logits, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification
        inputs = torch.load({str(tmp_path / 'inputs.pt')!r})
        expected = torch.load({str(tmp_path / 'expected.pt')!r})
        for auto in (AutoModel, AutoModelForSequenceClassification):
            model = auto.from_pretrained({str(tmp_path / 'model')!r}, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            assert torch.equal(model(**inputs).logits, expected)
        print("remote-ok")
        """
    )
    assert "remote-ok" in run_without_mla_hf(script, tmp_path)


def test_absent_modality_has_zero_weight_and_its_input_is_ignored(model):
    inputs = random_inputs(6)
    mask = torch.ones(6, 3, dtype=torch.bool)
    mask[:3, 2] = False  # audio absent for the first three samples
    output = model(**inputs, modality_mask=mask)
    assert (output.modality_weights[:3, 2] == 0).all()
    assert (output.modality_weights[3:, 2] > 0).all()
    torch.testing.assert_close(output.modality_weights.sum(-1), torch.ones(6))

    garbage = dict(inputs)
    garbage["audio_input_values"] = inputs["audio_input_values"].clone()
    garbage["audio_input_values"][:3] = float("nan")
    changed = model(**garbage, modality_mask=mask)
    assert torch.equal(changed.logits[:3], output.logits[:3])
    assert torch.isfinite(changed.logits).all()


def test_modality_without_inputs_is_absent(model):
    output = model(**random_inputs(4, modalities=("image", "text")))
    assert (output.modality_weights[:, 2] == 0).all()
    assert (output.modality_logits[:, 2] == 0).all()


def test_prediction_does_not_depend_on_the_batch(model):
    inputs = random_inputs(64, seed=1)
    mask = torch.rand(64, 3, generator=torch.Generator().manual_seed(0)) > 0.3
    mask[:, 0] |= ~mask.any(-1)
    batched = model(**inputs, modality_mask=mask).logits
    for index in (0, 17, 63):
        alone = model(**{k: v[index : index + 1] for k, v in inputs.items()}, modality_mask=mask[index : index + 1])
        torch.testing.assert_close(alone.logits[0], batched[index], rtol=1e-5, atol=1e-5)
    permutation = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    shuffled = model(**{k: v[permutation] for k, v in inputs.items()}, modality_mask=mask[permutation]).logits
    torch.testing.assert_close(shuffled, batched[permutation], rtol=1e-5, atol=1e-5)


def test_fixed_fusion_is_the_weighted_sum(model):
    model.config.fusion_weights = model.config.check_fusion_weights({"text": 0.2, "image": 0.3, "audio": 0.5})
    output = model(**random_inputs(4), fusion="fixed")
    expected = (torch.tensor([0.2, 0.3, 0.5]).view(1, 3, 1) * output.modality_logits).sum(1)
    torch.testing.assert_close(output.logits, expected)


def test_single_modality_forward_runs_only_that_encoder(model):
    calls = []
    for name, encoder in model.encoders.items():
        encoder.register_forward_hook(lambda module, args, output, name=name: calls.append(name))
    output = model(**random_inputs(4), modality="image", labels=torch.tensor([0, 1, 2, 0]))
    assert calls == ["image"]
    torch.testing.assert_close(output.logits, output.modality_logits[:, 1])
    torch.testing.assert_close(output.loss, torch.nn.functional.cross_entropy(output.logits, torch.tensor([0, 1, 2, 0])))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x: x.update(video_pixel_values=torch.zeros(4, 3, 16, 16)), "names no modality"),
        (lambda x: x.clear(), "No modality present"),
        (lambda x: x.update(image_pixel_values=torch.zeros(3, 16, 16)), r"4-D tensor \(batch, channels"),
        (lambda x: x.update(text_input_ids=torch.zeros(4, 2, 7, dtype=torch.long)), "2-D tensor"),
        (lambda x: x.update(labels=torch.tensor([0, 1, 2, 3])), r"\[0, 3\)"),
        (lambda x: x.update(labels=torch.tensor([0, 1, -1, 2])), r"\[0, 3\)"),
        (lambda x: x.update(audio_input_values=torch.zeros(5, 32, 16)), "batch size"),
        (lambda x: x.update(image_bogus=torch.zeros(4, 3)), "takes no argument 'bogus'"),
        (lambda x: x.update(modality="video"), "Unknown modality 'video'"),
        (lambda x: x.update(modality_mask=torch.ones(4, 2, dtype=torch.bool)), "modality_mask"),
        (lambda x: x.update(modality_mask=torch.zeros(4, 3, dtype=torch.bool)), "(?i)no modality present"),
        (lambda x: x.update(modality_mask=torch.tensor([[False] * 3] + [[True] * 3] * 3)), r"Samples \[0\] have no"),
    ],
)
def test_bad_input_raises_a_clear_value_error(model, change, message):
    inputs = {**random_inputs(4), "labels": torch.tensor([0, 1, 2, 0])}
    change(inputs)
    with pytest.raises(ValueError, match=message):
        model(**inputs)


def test_input_checks_read_the_device_once_per_call(model):
    """On a GPU each host read of a tensor waits for the device: a forward's input checks share one."""
    inputs = {**random_inputs(4), "labels": torch.tensor([0, 1, 2, -100])}
    mask = torch.tensor([[True, True, True], [True, False, True], [False, True, True], [True, True, False]])
    for call in (lambda: model(**inputs, modality_mask=mask), lambda: model(**inputs, modality="image"),
                 lambda: model(**inputs, modality="text", modality_mask=mask),
                 lambda: model.modality_presence(**inputs, modality_mask=mask)):
        with HostReads() as reads:
            call()
        own = [read for read in reads.reads if read[2]]
        assert len(own) == 1, own


def test_labels_ignored_or_unscored_give_a_zero_loss_that_reaches_the_head(model):
    inputs = random_inputs(3)
    output = model(**inputs, labels=torch.full((3,), -100))
    assert output.loss == 0 and output.loss.requires_grad
    mask = torch.tensor([[True, False, True], [True, False, True], [True, True, True]])
    unscored = model(**inputs, modality="image", modality_mask=mask, labels=torch.tensor([0, 1, -100]))
    assert unscored.loss == 0 and unscored.loss.requires_grad


@pytest.mark.parametrize("modality", [None, "image"])
def test_mask_claiming_a_modality_without_inputs_is_an_error(model, modality):
    with pytest.raises(ValueError, match=r"marks modalities \['text', 'audio'\] present, but they have no inputs"):
        model(**random_inputs(2, modalities=("image",)), modality_mask=torch.ones(2, 3, dtype=torch.bool),
              modality=modality)


@pytest.mark.parametrize("head_type", ["concat", "per_modality"])
def test_baseline_heads_save_and_load(head_type, tmp_path):
    model = MLAModel(three_modality_config(head_type=head_type)).eval()
    inputs = random_inputs(3)
    model.save_pretrained(tmp_path)
    assert torch.equal(MLAModel.from_pretrained(tmp_path).eval()(**inputs).logits, model(**inputs).logits)


def test_concat_head_is_the_sum_of_its_slices():
    model = MLAModel(MLAConfig(modalities={"image": tiny_vit(), "text": tiny_bert()}, head_type="concat", num_labels=3)).eval()
    inputs = random_inputs(4, modalities=("image", "text"))
    output = model(**inputs)
    features = output.modality_features  # (batch, modalities, dim), order image, text
    torch.testing.assert_close(output.logits, model.head.linear(features.flatten(1)))


def test_bf16_autocast_with_an_absent_modality(model):
    mask = torch.tensor([[True, True, False], [True, False, True]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(**random_inputs(2), modality_mask=mask, labels=torch.tensor([0, 1]))
    assert torch.isfinite(output.loss)
    assert (output.modality_weights[~mask] == 0).all()


def test_modality_presence_matches_the_forward_mask(model):
    mask = torch.tensor([[True, False, True], [False, True, True]])
    inputs = random_inputs(2)
    presence = model.modality_presence(**inputs, modality_mask=mask, labels=torch.tensor([0, 1]))
    assert torch.equal(presence, model(**inputs, modality_mask=mask).modality_mask)
    assert torch.equal(model.modality_presence(**random_inputs(2, modalities=("image",))),
                       torch.tensor([[False, True, False]] * 2))


def test_a_one_modality_call_without_any_sample_of_it_is_a_zero_that_reaches_its_parameters(model):
    """What a data-parallel process whose batch lacks the active modality contributes: a zero gradient on exactly the
    parameters the other processes train in that step (so the all-reduce matches), and nothing on the others."""
    output = model(**random_inputs(4), modality="audio", labels=torch.tensor([0, 1, 2, 0]),
                   modality_mask=torch.tensor([[True, True, False]] * 4))
    assert output.loss == 0 and not output.modality_mask.any()
    output.loss.backward()
    for name, parameter in model.named_parameters():
        trained = name.startswith(("encoders.audio.", "projections.audio.", "head."))
        assert (parameter.grad is not None and not parameter.grad.any()) if trained else parameter.grad is None, name
