"""Configuration of an MLA model: one backbone per modality, a projection to a common width and one shared head."""

import os

from transformers import AutoConfig, PreTrainedConfig

from .fusion import FUSION_MODES
from .heads import HEADS
from .pooling import POOLING_STRATEGIES, default_pooling


def _pipeline_task_registered(custom_pipelines: dict) -> bool:
    from transformers.pipelines import PIPELINE_REGISTRY

    return all(task in PIPELINE_REGISTRY.get_supported_tasks() for task in custom_pipelines)


class MLAConfig(PreTrainedConfig):
    r"""
    Configuration of an [`MLAModel`].

    Args:
        modalities (`dict[str, PreTrainedConfig | dict | str]`):
            Ordered mapping from modality name to its backbone: a `transformers` config, a dict with a `model_type`
            key, or the path of a local folder holding a pretrained backbone (its config is read here and its weights
            are loaded when the model is built from this config object). Names must be Python identifiers; model
            inputs are named `<modality>_<backbone argument>`, e.g. `audio_input_values` or `text_input_ids`.
        modality_order (`list[str]`, *optional*):
            The order of the modalities; defaults to the order of `modalities`. Stored explicitly because
            `config.json` sorts its keys. It fixes the column order of `modality_mask` and of every per-modality
            output.
        projection_dim (`int`, *optional*, defaults to 128):
            Width of the common feature space that every modality is projected to.
        pooling (`dict[str, str]`, *optional*):
            Per modality, how the backbone output becomes one vector: `"cls"`, `"mean"` or `"pooler"`. Missing
            entries default to `"pooler"` for CNNs, `"cls"` for text encoders and `"mean"` otherwise.
        head_type (`str`, *optional*, defaults to `"shared"`):
            `"shared"`: one linear head applied to each modality's feature (MLA). `"concat"`: one linear head on the
            concatenated features (joint training, OGM-GE). `"per_modality"`: one head per modality (QMF).
        fusion (`str`, *optional*, defaults to `"dynamic"`):
            How per-modality logits are fused at test time: `"dynamic"` (MLA's entropy weights), `"fixed"`
            (`fusion_weights`) or `"energy"` (QMF's energy confidence). Ignored by the `"concat"` head.
        fusion_weights (`dict[str, float]`, *optional*):
            Positive weight per modality for `"fixed"` fusion, renormalised over the modalities present in a sample.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of projections and heads.

    Example:

    ```python
    >>> from transformers import BertConfig, ViTConfig
    >>> from mla_hf import MLAConfig, MLAModel

    >>> config = MLAConfig(
    ...     modalities={"image": ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    ...                                    intermediate_size=64, image_size=32, patch_size=8),
    ...                 "text": BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    ...                                    intermediate_size=64, vocab_size=100)},
    ...     projection_dim=16, num_labels=3)
    >>> model = MLAModel(config)
    ```
    """

    model_type = "mla"

    modalities: dict | None = None
    modality_order: list | None = None
    projection_dim: int = 128
    pooling: dict | None = None
    head_type: str = "shared"
    fusion: str = "dynamic"
    fusion_weights: dict | None = None
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self._pretrained_backbones = {}  # modality -> local folder; in-memory only, never written to config.json
        backbones = {}
        for name, spec in (self.modalities or {}).items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"Modality name {name!r} must be a Python identifier, e.g. 'audio' or 'video_frames'.")
            backbones[name] = self._resolve_backbone(name, spec)

        order = list(self.modality_order) if self.modality_order is not None else list(backbones)
        if sorted(order) != sorted(backbones):
            raise ValueError(f"`modality_order` {order} must list each modality of {sorted(backbones)} exactly once.")
        self.modalities = {name: backbones[name] for name in order}
        self.modality_order = order

        pooling = dict(self.pooling or {})
        self._check_known_modalities("pooling", pooling)
        for name, strategy in pooling.items():
            if strategy not in POOLING_STRATEGIES:
                raise ValueError(f"Unknown pooling '{strategy}' for '{name}'. Choose one of: {', '.join(POOLING_STRATEGIES)}.")
        self.pooling = {name: pooling.get(name) or default_pooling(backbones[name]) for name in order}

        if self.head_type not in HEADS:
            raise ValueError(f"Unknown head_type '{self.head_type}'. Choose one of: {', '.join(HEADS)}.")
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"Unknown fusion '{self.fusion}'. Choose one of: {', '.join(FUSION_MODES)}.")
        if self.fusion_weights is not None:
            self.fusion_weights = self.check_fusion_weights(self.fusion_weights)
        elif self.fusion == "fixed":
            raise ValueError("fusion='fixed' needs `fusion_weights`, one positive weight per modality.")
        if kwargs.get("custom_pipelines") and _pipeline_task_registered(kwargs["custom_pipelines"]):
            # This process already has the pipeline (mla_hf is imported): let `pipeline()` use it instead of
            # insisting on trust_remote_code for the copy saved with the model. Without mla_hf the entry stays.
            kwargs.pop("custom_pipelines")
        super().__post_init__(**kwargs)

    def _resolve_backbone(self, name, spec) -> PreTrainedConfig:
        if isinstance(spec, PreTrainedConfig):
            return spec
        if isinstance(spec, dict):
            spec = {key: value for key, value in spec.items() if key != "transformers_version"}
            if "model_type" not in spec:
                raise ValueError(f"The backbone dict of modality '{name}' needs a 'model_type' key.")
            return AutoConfig.for_model(spec.pop("model_type"), **spec)
        if isinstance(spec, (str, os.PathLike)):
            if not os.path.isdir(spec):
                raise ValueError(f"The backbone of modality '{name}' is not a local folder: {spec}")
            self._pretrained_backbones[name] = os.fspath(spec)
            return AutoConfig.from_pretrained(spec)
        raise ValueError(
            f"The backbone of modality '{name}' must be a transformers config, a dict with 'model_type' or the path of "
            f"a local pretrained folder, not {type(spec).__name__}."
        )

    def _check_known_modalities(self, what: str, mapping: dict):
        unknown = sorted(set(mapping) - set(self.modalities))
        if unknown:
            raise ValueError(f"`{what}` names unknown modalities {unknown} (modalities: {', '.join(self.modalities)}).")

    def check_fusion_weights(self, weights: dict) -> dict:
        """Validate fixed fusion weights: one positive number for each modality, none for anything else."""
        self._check_known_modalities("fusion_weights", weights)
        missing = [name for name in self.modalities if name not in weights]
        if missing:
            raise ValueError(f"`fusion_weights` has no weight for modalities {missing}.")
        if any(not weights[name] > 0 for name in self.modalities):
            raise ValueError(f"`fusion_weights` must all be positive, got {weights}.")
        return {name: float(weights[name]) for name in self.modalities}

    @property
    def modality_names(self) -> list[str]:
        """Modality names in their configured order."""
        return list(self.modality_order)

    def to_dict(self):
        output = super().to_dict()
        output.pop("_pretrained_backbones", None)
        output["modalities"] = {
            name: {key: value for key, value in backbone.to_diff_dict().items() if key != "transformers_version"}
            for name, backbone in self.modalities.items()
        }
        return output


__all__ = ["MLAConfig"]
