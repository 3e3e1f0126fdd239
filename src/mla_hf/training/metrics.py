"""`compute_metrics` for MLATrainer, computed by the package's `evaluate` module (see `mla_hf.metrics`)."""

import evaluate
import numpy as np

from ..metrics import MULTIMODAL_CLASSIFICATION


class MultimodalMetrics:
    """Fused accuracy and macro-F1, each modality's accuracy through the head (over the samples where it is present),
    the mean fusion weight of each modality, and the modality imbalance (weakest / strongest unimodal accuracy; 1 is
    balanced), by the `multimodal_classification` evaluate module.

    Expects `eval_pred.predictions` = (logits, modality_logits, modality_weights, modality_mask), the order of
    `MLAModelOutput` with `modality_features` left out (MLATrainer does that).
    """

    def __init__(self, modalities: list[str]):
        self.modalities = list(modalities)
        self.metric = evaluate.load(MULTIMODAL_CLASSIFICATION, modality_names=self.modalities, keep_in_memory=True)

    def __call__(self, eval_pred) -> dict[str, float]:
        logits, modality_logits, modality_weights, modality_mask = (np.asarray(p) for p in eval_pred.predictions)
        modality_predictions = np.where(modality_mask.astype(bool), modality_logits.argmax(-1), -1)
        return self.metric.compute(predictions=logits.argmax(-1), references=np.asarray(eval_pred.label_ids),
                                   modality_predictions=modality_predictions, modality_weights=modality_weights)
