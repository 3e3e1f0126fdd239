"""Backbone presets: random-init backbones per modality kind, learned tokenizers, local pretrained folders."""

import os
import sys

import pytest
import torch
from PIL import Image
from transformers import AutoModel, BertConfig, BertModel

from mla_hf import MLAModel, MLAProcessor
from mla_hf.presets import SmallBackboneShape, build_model_and_processor, small_backbone, train_text_tokenizer

from test_data_loaders import write_image, write_rows, write_wav


CORPUS = ["a red apple pie", "green pear salad", "plum cake with cream", "apple and pear tart"] * 5
SHAPE = SmallBackboneShape(image_size=16, patch_size=4, max_text_length=12)


def test_learned_tokenizer_round_trips_and_truncates(tmp_path):
    tokenizer = train_text_tokenizer(CORPUS, vocab_size=60)
    ids = tokenizer("apple pear")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "apple pear"
    _, text = small_backbone("text", hidden_size=32, shape=SHAPE, tokenizer=tokenizer)
    processor = MLAProcessor({"text": text})
    processor.save_pretrained(tmp_path)
    batch = MLAProcessor.from_pretrained(tmp_path)([{"text": "apple " * 40}])
    assert batch["text_input_ids"].shape == (1, 12)


@pytest.mark.parametrize("architecture", ["resnet", "transformer"])
def test_every_kind_builds_a_model_that_runs(architecture):
    config, processor = build_model_and_processor(
        {"speech": "audio", "photo": "image", "caption": "text"}, ["a", "b", "c"], hidden_size=32, num_layers=2,
        shape=SHAPE, architecture=architecture, text_corpus=CORPUS, projection_dim=8)
    model = MLAModel(config).eval()
    batch = processor([{"speech": torch.randn(16000).numpy(), "photo": Image.new("RGB", (20, 20)), "caption": "red pear"},
                       {"caption": "plum cake"}])
    output = model(**batch)
    assert output.logits.shape == (2, 3)
    assert output.modality_mask.tolist() == [[True, True, True], [False, False, True]]
    assert config.id2label == {0: "a", 1: "b", 2: "c"}
    assert (processor.spectrogram_as_image == ["speech"]) == (architecture == "resnet")


def test_pretrained_backbone_from_a_local_folder(tmp_path):
    torch.manual_seed(0)
    bert = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                vocab_size=60, max_position_embeddings=16))
    bert.save_pretrained(tmp_path / "bert")
    tokenizer = train_text_tokenizer(CORPUS, vocab_size=60)
    tokenizer.save_pretrained(tmp_path / "bert")
    config, processor = build_model_and_processor({"image": "image", "text": "text"}, ["x", "y"],
                                                  pretrained={"text": str(tmp_path / "bert")}, hidden_size=16,
                                                  num_layers=2, shape=SHAPE)
    model = MLAModel(config)
    saved = AutoModel.from_pretrained(tmp_path / "bert").state_dict()
    assert all(torch.equal(value, saved[name]) for name, value in model.encoders["text"].state_dict().items())
    assert processor.components["text"]("apple pear")["input_ids"] == tokenizer("apple pear")["input_ids"]


def test_preset_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown modality kind 'smell'"):
        small_backbone("smell")
    with pytest.raises(ValueError, match="needs a tokenizer"):
        small_backbone("text")
    with pytest.raises(ValueError, match="Unknown architecture 'mlp'"):
        small_backbone("image", architecture="mlp")
    with pytest.raises(ValueError, match=r"unknown modalities \['text'\]"):
        build_model_and_processor({"image": "image"}, ["a"], pretrained={"text": "somewhere"})
    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         vocab_size=30)).save_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match="has no text preprocessing component"):
        build_model_and_processor({"text": "text"}, ["a"], pretrained={"text": str(tmp_path / "bare")})


def test_train_script_on_a_manifest_with_text(tmp_path):
    rows = []
    for index in range(24):
        label = ["pie", "salad"][index % 2]
        write_image(tmp_path / "photos" / f"{index}.png", value=10 * index)
        write_wav(tmp_path / "clips" / f"{index}.wav", seconds=0.2)
        rows.append([f"photos/{index}.png", f"clips/{index}.wav", CORPUS[index % 4], label])
    write_rows(tmp_path / "data.csv", rows, header=["image", "audio", "text", "label"])
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    import train

    argv = ["--dataset", "manifest", "--data_dir", str(tmp_path / "data.csv"), "--output_dir", str(tmp_path / "out"),
            "--num_train_epochs", "1", "--hidden_size", "16", "--num_layers", "2", "--projection_dim", "8",
            "--image_size", "16", "--max_text_length", "8", "--use_cpu", "--disable_tqdm", "true", "--compare_joint", "false"]
    metrics = train.main(*train.make_parser().parse_args_into_dataclasses(args=argv))
    assert {"test_image_accuracy", "test_audio_accuracy", "test_text_accuracy"} <= set(metrics)
    processor = MLAProcessor.from_pretrained(tmp_path / "out")
    assert processor.kinds == {"image": "image_processor", "audio": "feature_extractor", "text": "tokenizer"}
