"""Reduce a backbone's output to one vector per sample.

Part of the flat group of modules shipped as remote code: it imports only from that group.
"""

import inspect

import torch

from .backbones import backbone_model_class


POOLING_STRATEGIES = ("cls", "mean", "pooler")


def default_pooling(backbone_config) -> str:
    """A sensible pooling for a backbone: its pooler for CNNs, the first token for text encoders (models that take
    `input_ids`; a wav2vec2 config also has a `vocab_size`, for its CTC head), else the mean."""
    if getattr(backbone_config, "hidden_sizes", None):
        return "pooler"  # ResNet, ConvNeXt, RegNet...: global average pooling of the last stage
    model_class = backbone_model_class(backbone_config)
    if model_class is not None and "input_ids" in inspect.signature(model_class.forward).parameters:
        return "cls"
    return "mean"  # ViT, AST, wav2vec2, CLIP vision...: mean over patches or frames


def pool(backbone_output, strategy: str, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pool a backbone output to shape `(batch_size, width)`.

    Args:
        backbone_output: the backbone's `ModelOutput`; `last_hidden_state` is `(batch, tokens, width)` for
            transformers or `(batch, width, height, width)` for CNNs.
        strategy: one of `POOLING_STRATEGIES`.
        attention_mask: `(batch, tokens)`; padding tokens are left out of the mean when its length matches.
    """
    if strategy == "pooler":
        pooled = getattr(backbone_output, "pooler_output", None)
        if pooled is None:
            raise ValueError("Pooling 'pooler' needs a backbone that returns `pooler_output`; use 'cls' or 'mean'.")
        return pooled.flatten(1)  # CNN poolers return (batch, width, 1, 1)
    hidden = backbone_output.last_hidden_state
    if hidden.dim() == 4:  # CNN feature map (batch, width, height, width)
        return hidden.mean(dim=(2, 3))
    if strategy == "cls":
        return hidden[:, 0]
    if strategy == "mean":
        if attention_mask is not None and attention_mask.shape[1] == hidden.shape[1]:
            weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (batch, tokens, 1)
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        return hidden.mean(1)
    raise ValueError(f"Unknown pooling '{strategy}'. Choose one of: {', '.join(POOLING_STRATEGIES)}.")
