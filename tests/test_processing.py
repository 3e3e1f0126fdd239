"""MLAProcessor: batching with missing modalities, decoding, resampling, truncation, save/load, errors."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ASTFeatureExtractor, BertTokenizer, ViTImageProcessorPil

from mla_hf.processing_mla import MLAProcessor, load_audio


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "green", "apple", "pear"]


@pytest.fixture
def processor():
    return MLAProcessor(
        {
            "audio": ASTFeatureExtractor(num_mel_bins=16, max_length=32),
            "image": ViTImageProcessorPil(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3),
            "text": BertTokenizer(vocab={word: index for index, word in enumerate(VOCAB)}, model_max_length=6),
        }
    )


def tone(seconds=0.2, rate=16000, frequency=440.0):
    return (0.3 * np.sin(2 * np.pi * frequency * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def picture(seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (10, 12), dtype=np.uint8), mode="L")


def test_missing_modalities_are_masked_and_filled(processor):
    batch = processor([{"audio": tone(), "image": picture()}, {"text": "red apple"}, {"image": picture(1), "text": "pear"}])
    assert batch["modality_mask"].tolist() == [[True, True, False], [False, False, True], [False, True, True]]
    assert batch["audio_input_values"].shape == (3, 32, 16)
    assert batch["image_pixel_values"].shape == (3, 3, 16, 16)  # grayscale became RGB
    assert torch.all(batch["audio_input_values"][1:] == 0) and torch.all(batch["image_pixel_values"][1] == 0)
    assert batch["text_input_ids"].shape[0] == 3


def test_a_modality_no_sample_has_is_left_out(processor):
    batch = processor([{"text": "red"}, {"image": picture()}])
    assert not any(key.startswith("audio_") for key in batch)


def test_rows_do_not_depend_on_the_batch(processor):
    samples = [{"audio": tone(frequency=300), "text": "red apple"}, {"image": picture(), "text": "green pear apple"}]
    together = processor(samples)
    for row, sample in enumerate(samples):
        alone = processor([sample])
        for key, value in alone.items():
            if key.startswith("text_"):  # padding differs; the real tokens do not
                length = value.shape[1]
                assert torch.equal(together[key][row, :length], value[0])
            else:
                assert torch.equal(together[key][row], value[0])


def test_column_input_equals_sample_input(processor):
    by_sample = processor([{"audio": tone(), "text": "red"}, {"text": "pear"}])
    by_column = processor({"audio": [tone(), None], "text": ["red", "pear"]})
    assert all(torch.equal(by_sample[key], by_column[key]) for key in by_sample)


def test_audio_is_resampled_and_read_from_wav(processor, tmp_path):
    import wave

    clip = tone(seconds=0.5, rate=44100)
    path = tmp_path / "clip.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(44100)
        handle.writeframes((clip * 32767).astype("<i2").tobytes())
    resampled = load_audio({"array": clip, "sampling_rate": 44100}, 16000)
    assert resampled.shape == (8000,)
    np.testing.assert_allclose(resampled[1000:7000], tone(seconds=0.5)[1000:7000], atol=2e-3)
    np.testing.assert_allclose(load_audio(str(path), 16000), resampled, atol=1e-3)
    assert processor([{"audio": str(path)}])["audio_input_values"].shape == (1, 32, 16)


def test_long_text_is_truncated_to_the_limit(processor):
    batch = processor([{"text": " ".join(["red"] * 50)}])
    assert batch["text_input_ids"].shape == (1, 6)
    assert batch["text_input_ids"][0, -1].item() == VOCAB.index("[SEP]")
    assert processor([{"text": "red"}], padding="max_length")["text_input_ids"].shape == (1, 6)


def test_spectrogram_as_image():
    processor = MLAProcessor({"audio": ASTFeatureExtractor(num_mel_bins=16, max_length=32)}, spectrogram_as_image=["audio"])
    batch = processor([{"audio": tone()}])
    plain = MLAProcessor({"audio": ASTFeatureExtractor(num_mel_bins=16, max_length=32)})([{"audio": tone()}])
    assert batch["audio_pixel_values"].shape == (1, 1, 16, 32)
    assert torch.equal(batch["audio_pixel_values"][0, 0], plain["audio_input_values"][0].T)


def test_save_and_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["audio", "image", "mla_processor_config.json", "text"]
    loaded = MLAProcessor.from_pretrained(tmp_path)
    samples = [{"audio": tone(), "image": picture(), "text": "green apple"}]
    assert all(torch.equal(processor(samples)[key], loaded(samples)[key]) for key in processor(samples))
    assert loaded.kinds == processor.kinds


def test_bad_input_errors(processor, tmp_path):
    with pytest.raises(ValueError, match=r"unknown modalities \['video'\]"):
        processor([{"video": picture()}])
    with pytest.raises(ValueError, match="Sample 1 is empty"):
        processor([{"text": "red"}, {}])
    with pytest.raises(ValueError, match="mono waveform"):
        processor([{"audio": np.zeros((2, 100))}])
    (tmp_path / "broken.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="broken.png"):
        processor([{"image": str(tmp_path / "broken.png")}])
    with pytest.raises(ValueError, match="'array' and 'sampling_rate'"):
        processor([{"audio": {"array": tone()}}])
    with pytest.raises(OSError, match="not an MLAProcessor folder"):
        MLAProcessor.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not text modalities"):
        MLAProcessor(processor.components, max_length={"audio": 3})
