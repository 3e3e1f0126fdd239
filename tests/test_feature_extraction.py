"""The torch log-mel front end: shape, dtype, agreement with ASTFeatureExtractor, batch invariance, saving."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from transformers import ASTFeatureExtractor

from mla_hf import MLAProcessor
from mla_hf.feature_extraction_mla import LogMelFeatureExtractor


def waves(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [(0.3 * rng.standard_normal(length) + 0.1 * np.sin(np.arange(length) / 7)).astype(np.float32)
            for length in lengths]


@pytest.mark.parametrize("num_mel_bins, max_length", [(40, 100), (128, 1024), (16, 32)])
def test_agrees_with_ast_feature_extractor(num_mel_bins, max_length):
    reference = ASTFeatureExtractor(num_mel_bins=num_mel_bins, max_length=max_length)
    front_end = LogMelFeatureExtractor.like(reference)
    clips = waves([16000, 8000, 400, 24000, 4321])  # shorter and longer than max_length frames, one frame exactly
    expected = reference(clips, sampling_rate=16000, return_tensors="pt")["input_values"]
    features = front_end(clips, sampling_rate=16000)["input_values"]
    assert features.shape == expected.shape == (5, max_length, num_mel_bins) and features.dtype == torch.float32
    torch.testing.assert_close(features, expected, atol=1e-3, rtol=0)


@settings(max_examples=20, deadline=None)
@given(lengths=st.lists(st.integers(400, 20000), min_size=2, max_size=6), seed=st.integers(0, 1000))
def test_a_clip_gets_the_same_features_whatever_its_batch(lengths, seed):
    front_end = LogMelFeatureExtractor(num_mel_bins=24, max_length=60)
    clips = waves(lengths, seed)
    batched = front_end(clips)["input_values"]
    alone = torch.cat([front_end([clip])["input_values"] for clip in clips])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


def test_errors_and_single_waveforms():
    front_end = LogMelFeatureExtractor(num_mel_bins=8, max_length=10)
    assert front_end(waves([800])[0])["input_values"].shape == (1, 10, 8)
    assert isinstance(front_end(waves([800]), return_tensors="np")["input_values"], np.ndarray)
    with pytest.raises(ValueError, match="takes audio at 16000 Hz, got 8000 Hz"):
        front_end(waves([800]), sampling_rate=8000)
    with pytest.raises(ValueError, match="shorter than one 400-sample frame"):
        front_end(waves([100]))


def test_saved_with_the_processor_and_loaded_back_as_itself(tmp_path):
    processor = MLAProcessor({"audio": LogMelFeatureExtractor(num_mel_bins=20, max_length=50)},
                             spectrogram_as_image=["audio"])
    processor.save_pretrained(tmp_path)
    loaded = MLAProcessor.from_pretrained(tmp_path)
    assert type(loaded.components["audio"]) is LogMelFeatureExtractor
    clips = [{"audio": clip} for clip in waves([16000, 3000])]
    torch.testing.assert_close(loaded(clips)["audio_pixel_values"], processor(clips)["audio_pixel_values"])
    assert processor(clips)["audio_pixel_values"].shape == (2, 1, 20, 50)
    assert processor(clips, device="cpu")["audio_pixel_values"].device.type == "cpu"
