"""What MLA needs to know about an arbitrary `transformers` backbone: its output width and the inputs it takes.

Part of the flat group of modules shipped as remote code: it imports nothing from mla_hf.
"""

import inspect

import torch
from transformers import AutoModel


# Rank (number of dimensions, batch included) and layout of the common backbone inputs. Audio inputs differ per family:
# raw waveforms are (batch, samples); spectrogram models take (batch, frames, mel bins) or (batch, mel bins, frames).
_INPUT_LAYOUTS = {
    "pixel_values": (4, "(batch, channels, height, width)"),
    "input_ids": (2, "(batch, sequence)"),
    "attention_mask": (2, "(batch, sequence)"),
    "token_type_ids": (2, "(batch, sequence)"),
    "position_ids": (2, "(batch, sequence)"),
    "input_features": (3, "(batch, features, frames)"),
}
_SPECTROGRAM_INPUT_VALUES = {"audio-spectrogram-transformer": (3, "(batch, frames, mel_bins)")}
_WAVEFORM_INPUT_VALUES = (2, "(batch, samples)")


def backbone_width(backbone_config) -> int:
    """Width of the feature a backbone's pooled output has (`hidden_size`, or the last stage of a CNN)."""
    if getattr(backbone_config, "hidden_sizes", None):
        return int(backbone_config.hidden_sizes[-1])
    if getattr(backbone_config, "hidden_size", None):
        return int(backbone_config.hidden_size)
    raise ValueError(
        f"Cannot tell the output width of a '{backbone_config.model_type}' backbone: its config has neither "
        "`hidden_size` nor `hidden_sizes`."
    )


def backbone_model_class(backbone_config) -> type | None:
    """The `AutoModel` class a backbone config builds, or None for a config AutoModel does not know."""
    return AutoModel._model_mapping.get(type(backbone_config), None)


def has_attention(backbone_config) -> bool:
    """Whether a backbone has attention layers, i.e. an `attn_implementation` means something to it (a ResNet has
    none, and transformers refuses "sdpa" for it)."""
    return any(getattr(backbone_config, key, None) for key in ("num_attention_heads", "encoder_attention_heads"))


def expected_input_layout(backbone_config, argument: str) -> tuple[int, str] | None:
    """(rank, layout) expected for a backbone input, or None when the argument is not one we know the shape of."""
    if argument == "input_values":
        return _SPECTROGRAM_INPUT_VALUES.get(backbone_config.model_type, _WAVEFORM_INPUT_VALUES)
    return _INPUT_LAYOUTS.get(argument)


def forward_arguments(backbone: torch.nn.Module) -> frozenset[str]:
    """Names a backbone's `forward` accepts."""
    return frozenset(inspect.signature(backbone.forward).parameters) - {"self", "kwargs", "args"}
