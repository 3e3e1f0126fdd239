"""pipeline("mla-classification"): inputs with missing modalities, batching, outputs, fusion, errors, remote code."""

import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BertTokenizer, ViTImageProcessorPil, pipeline

from mla_hf import MLAConfig, MLAModel, MLAProcessor
from mla_hf.presets import small_backbone

from conftest import run_without_mla_hf, tiny_bert, tiny_vit


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "green", "apple", "pear", "ripe"]


def build(tmp_path, **config_kwargs):
    audio_config, audio_extractor = small_backbone("audio", hidden_size=16, num_layers=2)
    config = MLAConfig(
        modalities={"image": tiny_vit(), "audio": audio_config, "text": tiny_bert()},
        projection_dim=16, id2label={0: "apple", 1: "pear", 2: "plum"}, label2id={"apple": 0, "pear": 1, "plum": 2},
        **config_kwargs,
    )
    torch.manual_seed(0)
    model = MLAModel(config).eval()
    with torch.no_grad():
        model.head.linear.weight.normal_(std=3.0)
    processor = MLAProcessor(
        {
            "image": ViTImageProcessorPil(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3),
            "audio": audio_extractor,
            "text": BertTokenizer(vocab={word: index for index, word in enumerate(VOCAB)}, model_max_length=8),
        },
        spectrogram_as_image=["audio"],
    )
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def samples():
    rng = np.random.default_rng(0)
    image = lambda: Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))  # noqa: E731
    audio = lambda: (0.3 * rng.standard_normal(8000)).astype(np.float32)  # noqa: E731
    return [
        {"image": image(), "audio": audio(), "text": "red apple"},
        {"image": image(), "text": "green pear"},
        {"audio": audio()},
        {"text": "ripe ripe apple"},
        {"image": image(), "audio": {"array": audio(), "sampling_rate": 16000}},
        {"audio": audio(), "text": "pear"},
        {"image": image()},
    ]


@pytest.fixture
def folder(tmp_path):
    return build(tmp_path)


def test_batched_equals_one_at_a_time(folder):
    classify = pipeline("mla-classification", model=str(folder))
    inputs = samples()
    alone = [classify(sample, top_k=3, return_modality_scores=True) for sample in inputs]
    batched = classify(inputs, batch_size=3, top_k=3, return_modality_scores=True)
    assert len(batched) == len(inputs)
    for one, many in zip(alone, batched):
        assert [p["label"] for p in one["predictions"]] == [p["label"] for p in many["predictions"]]
        np.testing.assert_allclose([p["score"] for p in one["predictions"]], [p["score"] for p in many["predictions"]],
                                   atol=1e-5)
        assert one["modalities"].keys() == many["modalities"].keys()


def test_output_format(folder):
    classify = pipeline("mla-classification", model=str(folder))
    top = classify(samples()[0], top_k=3)
    assert [sorted(entry) for entry in top] == [["label", "score"]] * 3
    assert [entry["score"] for entry in top] == sorted((entry["score"] for entry in top), reverse=True)
    assert sum(entry["score"] for entry in top) == pytest.approx(1.0, abs=1e-5)
    assert len(classify(samples()[0])) == 1
    detailed = classify(samples()[1], return_modality_scores=True)
    assert set(detailed["modalities"]) == {"image", "text"}  # only the modalities the sample has
    assert sum(m["fusion_weight"] for m in detailed["modalities"].values()) == pytest.approx(1.0, abs=1e-5)
    only_audio = classify(samples()[2], return_modality_scores=True)
    assert only_audio["modalities"]["audio"]["fusion_weight"] == pytest.approx(1.0)
    assert only_audio["predictions"][0]["label"] == only_audio["modalities"]["audio"]["label"]


def test_fusion_is_switchable_per_call(tmp_path):
    folder = build(tmp_path, fusion_weights={"image": 3.0, "audio": 1.0, "text": 1.0})
    classify = pipeline("mla-classification", model=str(folder))
    fixed = classify(samples()[0], fusion="fixed", return_modality_scores=True)
    assert [m["fusion_weight"] for m in fixed["modalities"].values()] == pytest.approx([0.6, 0.2, 0.2])
    dynamic = classify(samples()[0], return_modality_scores=True)
    assert [m["fusion_weight"] for m in dynamic["modalities"].values()] != pytest.approx([0.6, 0.2, 0.2])


def test_audio_at_another_rate_is_resampled(folder):
    classify = pipeline("mla-classification", model=str(folder))
    t = np.arange(16000) / 16000
    at_16k = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    at_8k = at_16k[::2]
    a = classify({"audio": {"array": at_16k, "sampling_rate": 16000}}, top_k=3)
    b = classify({"audio": {"array": at_8k, "sampling_rate": 8000}}, top_k=3)
    np.testing.assert_allclose([p["score"] for p in a], [p["score"] for p in b], atol=0.05)


def test_text_over_the_limit_is_truncated(folder):
    classify = pipeline("mla-classification", model=str(folder))
    long = classify({"text": "red apple " + "pear " * 200}, top_k=3)
    cut = classify({"text": "red apple pear pear pear pear"}, top_k=3)  # [CLS] + 6 tokens + [SEP] = the limit, 8
    np.testing.assert_allclose([p["score"] for p in long], [p["score"] for p in cut], atol=1e-6)


def test_bad_inputs(folder, tmp_path):
    classify = pipeline("mla-classification", model=str(folder))
    with pytest.raises(ValueError, match=r"Unknown modalities \['video'\]"):
        classify({"video": "clip.mp4"})
    with pytest.raises(ValueError, match="no modality"):
        classify({})
    with pytest.raises(ValueError, match="must be a dict"):
        classify("just text")
    (tmp_path / "broken.jpg").write_bytes(b"junk")
    with pytest.raises(ValueError, match="broken.jpg"):
        classify({"image": str(tmp_path / "broken.jpg")})
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        classify(samples()[0], top_k=0)
    with pytest.raises(ValueError, match=r"Unknown argument\(s\) \['topk'\]"):
        classify(samples()[0], topk=3)
    for frames, name in ((0, "empty.wav"), (1, "one.wav")):
        write_wav(tmp_path / name, frames)
        with pytest.raises(ValueError, match=f"{name}' holds {frames} samples"):
            classify({"audio": str(tmp_path / name)})
    with pytest.raises(ValueError, match=r"is empty \(size \(0, 0\)\)"):
        classify({"image": Image.new("RGB", (0, 0))})
    with pytest.raises(ValueError, match="NaN or infinite"):
        classify({"audio": np.full(8000, np.nan, dtype=np.float32)})


def write_wav(path, frames: int, rate: int = 16000):
    import wave

    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(np.zeros(frames, dtype=np.int16).tobytes())


def test_an_empty_list_gives_no_predictions_and_fixed_fusion_defaults_to_equal_weights(folder):
    classify = pipeline("mla-classification", model=str(folder))
    assert classify([]) == []
    scored = classify(samples()[0], fusion="fixed", return_modality_scores=True)
    assert {round(scores["fusion_weight"], 6) for scores in scored["modalities"].values()} == {round(1 / 3, 6)}


def test_a_long_wav_is_read_only_as_far_as_the_features_look(folder, tmp_path, monkeypatch):
    """A 10-minute file: the AST-style extractor uses its first second, and only that much is decoded."""
    import wave

    write_wav(tmp_path / "long.wav", 16000 * 600)
    read = []
    original = wave.Wave_read.readframes
    monkeypatch.setattr(wave.Wave_read, "readframes", lambda self, count: read.append(count) or original(self, count))
    classify = pipeline("mla-classification", model=str(folder))
    classify({"audio": str(tmp_path / "long.wav")})
    assert read and max(read) < 16000 * 2


def test_an_in_memory_model_needs_a_processor(folder):
    model = MLAModel.from_pretrained(folder)
    model.name_or_path = ""
    with pytest.raises(ValueError, match="Pass processor="):
        pipeline("mla-classification", model=model)
    classify = pipeline("mla-classification", model=model, processor=MLAProcessor.from_pretrained(folder))
    assert classify({"text": "red"})[0]["label"] in {"apple", "pear", "plum"}


def test_saved_folder_is_complete_and_runs_without_mla_hf(folder, tmp_path):
    names = {path.name for path in folder.iterdir()}
    assert {"config.json", "model.safetensors", "mla_processor_config.json", "modeling_mla.py", "pipeline_mla.py",
            "processing_mla.py", "configuration_mla.py", "image", "audio", "text"} <= names
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"]["mla-classification"]["impl"] == "pipeline_mla.MLAClassificationPipeline"
    inputs = samples()
    expected = pipeline("mla-classification", model=str(folder))(inputs, batch_size=2, top_k=3, return_modality_scores=True)
    torch.save({"inputs": inputs, "expected": expected}, tmp_path / "case.pt")
    script = textwrap.dedent(
        f"""
        import torch, numpy as np
        from transformers import pipeline
        case = torch.load({str(tmp_path / 'case.pt')!r}, weights_only=False)
        classify = pipeline(model={str(folder)!r}, trust_remote_code=True)
        assert type(classify).__module__.startswith("transformers_modules"), type(classify).__module__
        got = classify(case["inputs"], batch_size=2, top_k=3, return_modality_scores=True)
        for a, b in zip(got, case["expected"]):
            assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
            np.testing.assert_allclose([p["score"] for p in a["predictions"]], [p["score"] for p in b["predictions"]], atol=1e-6)
            assert a["modalities"].keys() == b["modalities"].keys()
        print("pipeline-remote-ok")
        """
    )
    assert "pipeline-remote-ok" in run_without_mla_hf(script, tmp_path)
