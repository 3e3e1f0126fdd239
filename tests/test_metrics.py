"""The package's evaluate module: loads from a local path without the Hub, hand-computed values, any model."""

import evaluate
import numpy as np
import pytest

from mla_hf.metrics import MULTIMODAL_CLASSIFICATION


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(MULTIMODAL_CLASSIFICATION, modality_names=["audio", "image"], keep_in_memory=True)


def test_hand_computed_values(metric):
    results = metric.compute(predictions=[1, 0, 2, 2], references=[1, 1, 2, 0],
                             modality_predictions=[[1, -1], [0, 1], [2, 2], [-1, 0]],
                             modality_weights=[[1.0, 0.0], [0.4, 0.6], [0.5, 0.5], [0.0, 1.0]])
    assert results["accuracy"] == pytest.approx(2 / 4)
    assert results["audio_accuracy"] == pytest.approx(2 / 3)  # samples 0, 1, 2 have audio
    assert results["image_accuracy"] == pytest.approx(3 / 3)  # samples 1, 2, 3 have images
    assert results["audio_fusion_weight"] == pytest.approx((1.0 + 0.4 + 0.5) / 3)
    assert results["imbalance"] == pytest.approx((2 / 3) / 1.0)
    # macro-F1 over classes 0, 1, 2: F1 = 0, 2/3 (precision 1, recall 1/2), 2/3 (precision 1/2, recall 1)
    assert results["macro_f1"] == pytest.approx((0 + 2 / 3 + 2 / 3) / 3)


def test_any_model_with_per_modality_logits_without_fusion_weights(metric):
    logits = np.random.default_rng(0).normal(size=(20, 2, 3))
    results = metric.compute(predictions=logits.sum(1).argmax(-1), references=np.zeros(20, dtype=int),
                             modality_predictions=logits.argmax(-1))
    assert set(results) == {"accuracy", "macro_f1", "audio_accuracy", "image_accuracy", "imbalance"}


def test_modality_names_must_match_the_predictions(metric):
    with pytest.raises(ValueError, match="3 modality predictions per sample, but modality_names has 2"):
        metric.compute(predictions=[0], references=[0], modality_predictions=[[0, 0, 0]])
