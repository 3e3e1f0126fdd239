"""Parameter-efficient fine-tuning of backbones with `peft`: LoRA, or any peft method that
`peft.inject_adapter_in_model` supports, injected into a backbone in place.

In place (not wrapped in a `PeftModel`) so that the backbone keeps its class, its `forward` signature and its
parameter names; the base weights stay as they were and are frozen, only the adapters train.

Part of the flat group of modules shipped as remote code: it imports nothing from mla_hf, and peft only when a model
has adapters (a merged model loads without peft).
"""

from torch import nn


def _peft():
    try:
        import peft
    except ImportError as error:
        raise ImportError(
            "This MLA model has backbone adapters, which need `peft` (pip install peft). A model whose adapters were "
            "merged (MLAModel.merge_backbone_adapters) loads without it."
        ) from error
    return peft


def adapter_config_dict(peft_config) -> dict:
    """A peft config (object or dict) as the JSON-safe dict `MLAConfig.backbone_adapters` stores."""
    if isinstance(peft_config, dict):
        peft_config = _peft().get_peft_config(dict(peft_config))
    saved = peft_config.to_dict()
    return {key: sorted(value) if isinstance(value, set) else value for key, value in saved.items()}


def inject_adapters(backbone: nn.Module, saved_config: dict) -> nn.Module:
    """Inject the adapters described by `saved_config` (see `adapter_config_dict`) into `backbone`, in place; only
    the adapters are left trainable."""
    peft = _peft()
    return peft.inject_adapter_in_model(peft.get_peft_config(dict(saved_config)), backbone)


def merge_adapters(backbone: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer and put the plain base layer back: the backbone is then exactly the
    architecture it was before `inject_adapters`, with merged weights."""
    tuner_layer = _peft().tuners.tuners_utils.BaseTunerLayer
    adapted = [(name, module) for name, module in backbone.named_modules() if isinstance(module, tuner_layer)]
    for name, layer in adapted:
        layer.merge()
        parent_name, _, child_name = name.rpartition(".")
        parent = backbone.get_submodule(parent_name) if parent_name else backbone
        setattr(parent, child_name, layer.get_base_layer())
    for parameter in backbone.parameters():
        parameter.requires_grad_(True)
    return backbone
