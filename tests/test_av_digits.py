"""AV-Digits: determinism, split sizes, label consistency across modalities, corruption shares, cache."""

import os
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mla_hf.data import AVDigitsSettings, generate_av_digits, load_av_digits
from mla_hf.data.speech import Synthesizer, Voice


SMALL = AVDigitsSettings(max_images=40, clips_per_image=2)


@pytest.fixture(scope="module")
def small():
    return generate_av_digits(SMALL)


def test_deterministic_for_a_seed_whatever_the_worker_count(small):
    again = generate_av_digits(SMALL, num_proc=1)
    assert all(small[split].data.table.equals(again[split].data.table) for split in small)


def test_another_seed_gives_other_data(small):
    other = generate_av_digits(AVDigitsSettings(max_images=40, clips_per_image=2, seed=1))
    assert not np.array_equal(small["train"][0]["audio"]["array"], other["train"][0]["audio"]["array"])


def test_split_sizes_and_split_by_image(small):
    images = {split: set(part["image_index"]) for split, part in small.items()}
    assert sum(len(indices) for indices in images.values()) == 40
    assert not (images["train"] & images["test"]) and not (images["train"] & images["validation"])
    assert not (images["validation"] & images["test"])
    for split, part in small.items():
        assert len(part) == 2 * len(images[split])
    assert len(images["test"]) >= len(images["validation"]) >= 1


def test_labels_agree_with_the_handwritten_digit(small):
    targets = load_digits().target
    for part in small.values():
        assert list(part["labels"]) == [int(targets[index]) for index in part["image_index"]]


def test_every_clip_speaks_its_label(monkeypatch):
    """The worker asks eSpeak NG for the pair's own digit."""
    sys.path.insert(0, os.path.join(os.path.dirname(__import__("mla_hf").__file__), "data"))
    import av_digits_synthesis

    spoken = []

    class RecordingSynthesizer:
        sampling_rate = 22050

        def synthesize(self, text, voice, seed):
            spoken.append(text)
            return np.sin(np.arange(4000) / 10.0).astype(np.float32)

    monkeypatch.setattr(av_digits_synthesis.Synthesizer, "get", classmethod(lambda cls: RecordingSynthesizer()))
    digits = load_digits()
    request = {**SMALL.__dict__, "image_indices": [0, 1, 2]}
    pairs = av_digits_synthesis.synthesize_pairs(request, digits.images[:3], digits.target[:3])
    assert spoken == [str(digit) for digit in digits.target[:3] for _ in range(2)]
    assert pairs["audio"].shape == (6, 16000) and pairs["image"].shape == (6, 8, 8)


def test_sample_format(small):
    sample = small["train"][0]
    assert sample["audio"]["sampling_rate"] == 16000 and len(sample["audio"]["array"]) == 16000
    assert max(abs(value) for value in sample["audio"]["array"]) <= 1.0
    assert sample["image"].size == (8, 8) and sample["image"].mode == "L"
    assert small["train"].features["labels"].names == [str(digit) for digit in range(10)]


def test_corruption_shares_follow_the_settings():
    data = generate_av_digits(AVDigitsSettings(max_images=150, clips_per_image=2, drowned_share=0.5, occlusion_share=0.2))
    drowned = np.mean([flag for part in data.values() for flag in part["audio_drowned"]])
    occluded = np.mean([flag for part in data.values() for flag in part["image_occluded"]])
    assert abs(drowned - 0.5) < 0.1 and abs(occluded - 0.2) < 0.08


def test_cache_is_reused_and_keyed_by_settings(tmp_path, monkeypatch, small):
    import mla_hf.data.av_digits as av_digits

    calls = []
    monkeypatch.setattr(av_digits, "generate_av_digits", lambda settings: calls.append(settings) or small)
    first = load_av_digits(SMALL, cache_dir=str(tmp_path))
    second = load_av_digits(SMALL, cache_dir=str(tmp_path))
    assert len(calls) == 1 and first["train"].data.table.equals(second["train"].data.table)
    load_av_digits(AVDigitsSettings(max_images=40, clips_per_image=2, seed=3), cache_dir=str(tmp_path))
    assert len(calls) == 2
    assert not [name for name in os.listdir(tmp_path / "av_digits") if name.startswith(".staging")]


def test_synthesizer_refuses_unknown_voices():
    synthesizer = Synthesizer.get()
    with pytest.raises(ValueError, match="no voice variant 'nosuch'"):
        synthesizer.synthesize("3", Voice("en", "nosuch"))
    with pytest.raises(ValueError, match="no voice 'xx-nowhere'"):
        synthesizer.synthesize("3", Voice("xx-nowhere"))
    clip = synthesizer.synthesize("3", Voice("en-us", "f2"))
    assert clip.dtype == np.float32 and 0 < np.abs(clip).max() <= 1.0


def test_preprocessing_is_the_same_in_one_process_or_several_and_equals_the_processor(small):
    import torch

    from mla_hf.data import preprocess_dataset
    from mla_hf.data.av_digits import LABEL_NAMES
    from mla_hf.presets import build_model_and_processor

    _, processor = build_model_and_processor({"audio": "audio", "image": "image"}, LABEL_NAMES)
    split = small["train"].select(range(40))
    one, two = preprocess_dataset(split, processor, num_proc=1), preprocess_dataset(split, processor, num_proc=2)
    rows = split[:40]
    direct = processor({"audio": rows["audio"], "image": rows["image"]}, padding="max_length")
    for key, expected in direct.items():
        assert torch.equal(one[key][:], two[key][:]) and torch.equal(one[key][:], expected), key


def test_a_nan_in_a_waveform_is_refused_by_preprocessing(small):
    from mla_hf.data import preprocess_dataset
    from mla_hf.data.av_digits import LABEL_NAMES
    from mla_hf.presets import build_model_and_processor

    _, processor = build_model_and_processor({"audio": "audio", "image": "image"}, LABEL_NAMES)
    split = small["train"].select(range(4)).map(
        lambda row, index: {"audio": {"array": [float("nan")] * 16000, "sampling_rate": 16000} if index == 2
                            else row["audio"]}, with_indices=True)
    with pytest.raises(ValueError, match="NaN or infinite"):
        preprocess_dataset(split, processor, num_proc=1)
