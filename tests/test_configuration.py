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
        (dict(fusion="fixed"), "fusion_weights"),
        (dict(fusion="fixed", fusion_weights={"image": 1.0}), "no weight for modalities"),
        (dict(fusion="fixed", fusion_weights={"image": 1.0, "text": 0.0}), "positive"),
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
