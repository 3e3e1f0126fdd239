import json

import pytest
from transformers import AutoConfig, AutoModel

from mla_hf import MLAConfig, MLAModel

from conftest import three_modality_config, tiny_bert, tiny_vit


def test_round_trip_keeps_backbones_and_modality_order(tmp_path):
    config = three_modality_config(pooling={"audio": "cls"})
    config.save_pretrained(tmp_path)
    on_disk = json.loads((tmp_path / "config.json").read_text())
    assert on_disk["modality_order"] == ["text", "image", "audio"]

    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, MLAConfig)
    assert loaded.modality_names == ["text", "image", "audio"]
    assert list(loaded.modalities) == ["text", "image", "audio"]
    assert [c.model_type for c in loaded.modalities.values()] == ["bert", "vit", "audio-spectrogram-transformer"]
    assert loaded.pooling == {"text": "cls", "image": "mean", "audio": "cls"}
    assert loaded.to_diff_dict() == config.to_diff_dict()


def test_backbone_given_as_dict():
    config = MLAConfig(modalities={"image": {"model_type": "vit", "hidden_size": 24, "num_attention_heads": 2}})
    assert config.modalities["image"].hidden_size == 24


def test_backbone_from_local_pretrained_folder_loads_its_weights(tmp_path):
    bert = AutoModel.from_config(tiny_bert())
    bert.save_pretrained(tmp_path / "bert")
    config = MLAConfig(modalities={"text": str(tmp_path / "bert"), "image": tiny_vit()}, num_labels=2)
    model = MLAModel(config)
    for name, tensor in bert.state_dict().items():
        assert (model.encoders["text"].state_dict()[name] == tensor).all(), name
    # The folder is not recorded in config.json: a saved MLA model carries the weights itself.
    assert str(tmp_path / "bert") not in json.dumps(config.to_dict())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(modality_order=["image"]), "modality_order"),
        (dict(pooling={"image": "max"}), "Unknown pooling"),
        (dict(pooling={"video": "cls"}), "unknown modalities"),
        (dict(fusion="fixed", fusion_weights={"image": 1.0}), "no weight for modalities"),
        (dict(fusion="fixed", fusion_weights={"image": 1.0, "text": 0.0}), "positive"),
        (dict(fusion="fixed", fusion_weights={"image": 1.0, "text": float("inf")}), "positive finite"),
        (dict(fusion="fixed", fusion_weights={"image": 1.0, "text": float("nan")}), "positive finite"),
        (dict(projection_dim=0), "projection_dim"),
        (dict(num_labels=1), "at least 2 labels"),
        (dict(backbone_adapters={"video": {}}), "unknown modalities"),
        (dict(fusion="average"), "Unknown fusion"),
        (dict(head_type="mlp"), "Unknown head_type"),
    ],
)
def test_invalid_config_names_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLAConfig(modalities={"image": tiny_vit(), "text": tiny_bert()}, **kwargs)


def test_invalid_backbones_name_the_problem(tmp_path):
    with pytest.raises(OSError, match="'image', '.*nowhere', is neither a local folder"):
        MLAConfig(modalities={"image": str(tmp_path / "nowhere")})
    with pytest.raises(ValueError, match="model_type"):
        MLAConfig(modalities={"image": {"hidden_size": 3}})
    with pytest.raises(ValueError, match="identifier"):
        MLAConfig(modalities={"video frames": tiny_vit()})


@pytest.mark.parametrize(
    "names, message",
    [
        (("image", "image_pixel"), "'image' and 'image_pixel' are ambiguous"),
        (("image", "pooling"), "'pooling' is taken by a config attribute"),
        (("image", "dtype"), "'dtype' is taken by a config attribute"),
    ],
)
def test_modality_names_that_would_route_inputs_wrongly_are_refused(names, message):
    with pytest.raises(ValueError, match=message):
        MLAConfig(modalities={name: tiny_vit() for name in names}, num_labels=2)


def test_modalities_are_the_composite_configs_sub_configs():
    config = MLAConfig(modalities={"image": tiny_vit(), "text": tiny_bert()}, num_labels=2)
    assert config.sub_configs == {"image": type(tiny_vit()), "text": type(tiny_bert())}
    assert config.image is config.modalities["image"] and config.text.model_type == "bert"
    with pytest.raises(AttributeError):
        config.video


def test_fixed_fusion_without_weights_is_the_mean_of_the_present_modalities():
    model = MLAModel(MLAConfig(modalities={"image": tiny_vit(), "text": tiny_bert()}, num_labels=3, fusion="fixed"))
    import torch

    inputs = {"image_pixel_values": torch.randn(2, 3, 16, 16), "text_input_ids": torch.randint(0, 60, (2, 5))}
    output = model(**inputs)
    torch.testing.assert_close(output.modality_weights, torch.full((2, 2), 0.5))
    torch.testing.assert_close(output.logits, output.modality_logits.mean(1))


def test_changing_the_head_on_load_is_an_error_not_a_silent_reinitialisation(tmp_path):
    MLAModel(MLAConfig(modalities={"image": tiny_vit(), "text": tiny_bert()}, num_labels=3)).save_pretrained(tmp_path)
    for override in ({"head_type": "concat"}, {"head_type": "per_modality"}, {"projection_dim": 8}):
        with pytest.raises(ValueError, match="does not match this model"):
            MLAModel.from_pretrained(tmp_path, **override)
    (tmp_path / "model.safetensors").write_bytes(b"corrupt")
    with pytest.raises(Exception, match="(?i)safetensors|header|deserializ|invalid"):
        MLAModel.from_pretrained(tmp_path)
