"""Evaluation metrics of a multimodal classifier, computed with scikit-learn (evaluate's metrics need the Hub)."""

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


class MultimodalMetrics:
    """`compute_metrics` for `MLATrainer`: fused accuracy and macro-F1, each modality's accuracy through the head
    (over the samples where it is present), the mean fusion weight of each modality, and the modality imbalance
    (weakest / strongest unimodal accuracy; 1 is balanced).

    Expects `eval_pred.predictions` = (logits, modality_logits, modality_weights, modality_mask), the order of
    `MLAModelOutput` with `modality_features` left out (MLATrainer does that).
    """

    def __init__(self, modalities: list[str]):
        self.modalities = list(modalities)

    def __call__(self, eval_pred) -> dict[str, float]:
        logits, modality_logits, modality_weights, modality_mask = (np.asarray(p) for p in eval_pred.predictions)
        labels = np.asarray(eval_pred.label_ids)
        predictions = logits.argmax(-1)
        metrics = {
            "accuracy": accuracy_score(labels, predictions),
            "macro_f1": f1_score(labels, predictions, average="macro"),
        }
        modality_accuracies = []
        for index, name in enumerate(self.modalities):
            present = modality_mask[:, index].astype(bool)
            if not present.any():
                continue
            accuracy = accuracy_score(labels[present], modality_logits[present, index].argmax(-1))
            metrics[f"{name}_accuracy"] = accuracy
            metrics[f"{name}_fusion_weight"] = float(modality_weights[present, index].mean())
            modality_accuracies.append(accuracy)
        if len(modality_accuracies) > 1:
            metrics["imbalance"] = min(modality_accuracies) / max(max(modality_accuracies), 1e-12)
        return {key: float(value) for key, value in metrics.items()}
