"""Multimodal classification: fused and per-modality accuracy, macro-F1, fusion weights and modality imbalance.

An `evaluate` module shipped inside mla_hf; it loads without the Hub:

    >>> import evaluate
    >>> from mla_hf.metrics import MULTIMODAL_CLASSIFICATION
    >>> metric = evaluate.load(MULTIMODAL_CLASSIFICATION, modality_names=["audio", "image"])
    >>> metric.compute(predictions=[1, 0], references=[1, 1], modality_predictions=[[1, -1], [0, 1]],
    ...                modality_weights=[[1.0, 0.0], [0.4, 0.6]])

It works for any model that outputs per-modality logits: pass their argmax per modality, -1 where a sample lacks
the modality.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score


_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): the fused prediction of each sample.
    references (`list[int]`): the true label of each sample.
    modality_predictions (`list[list[int]]`): per sample, each modality's own prediction (argmax of its logits),
        -1 where the sample lacks the modality.
    modality_weights (`list[list[float]]`, *optional*): per sample, each modality's fusion weight (given to
        `compute`, not to `add_batch`).
Returns:
    accuracy, macro_f1: of the fused predictions.
    <modality>_accuracy: of that modality's predictions, over the samples that have it.
    <modality>_fusion_weight: its mean fusion weight over those samples (when weights are given).
    imbalance: weakest / strongest modality accuracy (1 is balanced), with two or more modalities.
"""


class MultimodalClassification(evaluate.Metric):
    def __init__(self, modality_names=None, **kwargs):
        super().__init__(**kwargs)
        self.modality_names = list(modality_names or [])

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64"),
                                        "modality_predictions": datasets.Sequence(datasets.Value("int64"))}),
        )

    def _compute(self, predictions, references, modality_predictions, modality_weights=None):
        predictions, references = np.asarray(predictions), np.asarray(references)
        modality_predictions = np.asarray(modality_predictions).reshape(len(references), -1)
        names = self.modality_names or [f"modality_{index}" for index in range(modality_predictions.shape[1])]
        if len(names) != modality_predictions.shape[1]:
            raise ValueError(f"{modality_predictions.shape[1]} modality predictions per sample, but modality_names "
                             f"has {len(names)}: {names}.")
        results = {"accuracy": float(accuracy_score(references, predictions)),
                   "macro_f1": float(f1_score(references, predictions, average="macro"))}
        accuracies = []
        for index, name in enumerate(names):
            present = modality_predictions[:, index] >= 0
            if not present.any():
                continue
            results[f"{name}_accuracy"] = float(accuracy_score(references[present], modality_predictions[present, index]))
            accuracies.append(results[f"{name}_accuracy"])
            if modality_weights is not None:
                results[f"{name}_fusion_weight"] = float(np.asarray(modality_weights)[present, index].mean())
        if len(accuracies) > 1:
            results["imbalance"] = min(accuracies) / max(max(accuracies), 1e-12)
        return results
