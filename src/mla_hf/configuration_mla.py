"""Configuration of an MLA model: one backbone per modality, a projection to a common width and one shared head."""

import math
import os

from transformers import AutoConfig, PreTrainedConfig

from .backbones import has_attention
from .fusion import FUSION_MODES
from .heads import HEADS
from .pooling import POOLING_STRATEGIES, default_pooling


# Options of `from_pretrained` that say where a Hub id is resolved; each may be one value or a {modality: value} dict.
HUB_OPTIONS = ("revision", "cache_dir", "local_files_only", "token")


def _pipeline_task_registered(custom_pipelines: dict) -> bool:
    from transformers.pipelines import PIPELINE_REGISTRY

    return all(task in PIPELINE_REGISTRY.get_supported_tasks() for task in custom_pipelines)


def hub_options_for(hub_options: dict, modality: str) -> dict:
    """One modality's Hub options: each option is one value for all modalities or a `{modality: value}` dict."""
    chosen = {key: value.get(modality) if isinstance(value, dict) else value for key, value in hub_options.items()}
    return {key: value for key, value in chosen.items() if value is not None}


class MLAConfig(PreTrainedConfig):
    r"""
    Configuration of an [`MLAModel`]: a composite config whose sub-configs are the backbones, one per modality (as
    CLIP's are its vision and text models).

    Args:
        modalities (`dict[str, PreTrainedConfig | dict | str]`):
            Ordered mapping from modality name to its backbone: a `transformers` config (random initialisation), a
            dict with a `model_type` key, or a pretrained backbone given by its Hub id (`"google/vit-base-patch16-224"`)
            or local folder, resolved as `AutoModel.from_pretrained` resolves it. A pretrained backbone's config is
            read here and its weights are loaded when the model is built from this config object; only the config is
            ever saved, so a saved MLA folder never depends on the id or path. Names must be Python identifiers that
            no config attribute uses, and none may be a prefix of another followed by `_`: inputs are named
            `<modality>_<backbone argument>`, e.g. `audio_input_values` or `text_input_ids`.
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
            (`fusion_weights`, equal by default), `"product"` (a product of experts: the sum of the modalities'
            log-probabilities) or `"energy"` (QMF's energy confidence). Ignored by the `"concat"` head.
        fusion_weights (`dict[str, float]`, *optional*):
            Positive finite weight per modality for `"fixed"` fusion, renormalised over the modalities present in a
            sample. Without it, fixed fusion weighs the present modalities equally (the mean of their logits).
        fusion_temperatures (`dict[str, float]`, *optional*):
            Per modality, a temperature its logits are divided by before fusion (calibration, fitted on a validation
            split by `MLATrainer.calibrate_fusion`); none by default.
        backbone_adapters (`dict[str, dict]`, *optional*):
            Per modality, the `peft` config (as its `to_dict()`) of adapters injected into that backbone, e.g. LoRA.
            Set by [`MLAModel.add_backbone_adapters`]; a model built from this config injects them again.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of projections and heads.
        attn_implementation (`str` or `dict[str, str]`, *optional*):
            The backbones' attention: one implementation (`"eager"`, `"sdpa"`, `"flash_attention_2"`...) for every
            backbone that has attention, or a `{modality: implementation}` dict. Saved with the config.
        revision, cache_dir, local_files_only, token (*optional*):
            Where pretrained backbones given by id are resolved, as in `from_pretrained`; one value, or a
            `{modality: value}` dict. Never saved.

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
    fusion_temperatures: dict | None = None
    backbone_adapters: dict | None = None
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        hub_options = {option: kwargs.pop(option) for option in HUB_OPTIONS if option in kwargs}
        self._pretrained_backbones = {}  # modality -> (id or folder, hub options); in memory only, never saved
        self._requested_attn_implementation = {}  # modality -> what the user asked for; saved
        backbones = {}
        for name, spec in (self.modalities or {}).items():
            self._check_modality_name(name)
            backbones[name] = self._resolve_backbone(name, spec, hub_options)
        self._check_no_prefix_collision(list(backbones))

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

        if not isinstance(self.projection_dim, int) or self.projection_dim < 1:
            raise ValueError(f"`projection_dim` must be a positive integer, got {self.projection_dim!r}.")
        if self.head_type not in HEADS:
            raise ValueError(f"Unknown head_type '{self.head_type}'. Choose one of: {', '.join(HEADS)}.")
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"Unknown fusion '{self.fusion}'. Choose one of: {', '.join(FUSION_MODES)}.")
        if self.fusion_weights is not None:
            self.fusion_weights = self.check_fusion_weights(self.fusion_weights)
        if self.fusion_temperatures is not None:
            self.fusion_temperatures = self.check_fusion_weights(self.fusion_temperatures, "fusion_temperatures")
        self.backbone_adapters = dict(self.backbone_adapters or {})
        self._check_known_modalities("backbone_adapters", self.backbone_adapters)
        if kwargs.get("custom_pipelines") and _pipeline_task_registered(kwargs["custom_pipelines"]):
            # This process already has the pipeline (mla_hf is imported): let `pipeline()` use it instead of
            # insisting on trust_remote_code for the copy saved with the model. Without mla_hf the entry stays.
            kwargs.pop("custom_pipelines")
        super().__post_init__(**kwargs)
        if self.num_labels is not None and self.num_labels < 2 and self.modalities:
            raise ValueError(f"An MLA classifier needs at least 2 labels, got num_labels={self.num_labels}: with one "
                             "class the cross-entropy is always 0 and nothing is learned.")

    # --- sub-configs: the backbones, addressable as `config.<modality>` like CLIP's `config.vision_config` ---

    @property
    def sub_configs(self) -> dict[str, type]:
        """`{modality: backbone config class}`: what transformers walks to dispatch `attn_implementation` and `dtype`
        to every backbone."""
        return {name: type(backbone) for name, backbone in (self.__dict__.get("modalities") or {}).items()}

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: `config.image` is the image backbone's config.
        modalities = self.__dict__.get("modalities") or {}
        if name in modalities:
            return modalities[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    @property
    def _attn_implementation(self):
        return self.__dict__.get("_attn_implementation_internal")

    @_attn_implementation.setter
    def _attn_implementation(self, value: str | dict | None):
        """One implementation goes to every backbone that has attention (a ResNet has none and transformers would
        refuse "sdpa" for it); a dict sets the modalities it names ("" is MLA's own entry, as in transformers)."""
        modalities = self.__dict__.get("modalities") or {}
        if isinstance(value, dict):
            self._check_known_modalities("attn_implementation", {key: None for key in value if key != ""})
            self._attn_implementation_internal = value.get("", self._attn_implementation)
            per_modality = {name: value[name] for name in modalities if name in value}
        else:
            self._attn_implementation_internal = value
            per_modality = {} if value is None else {name: value for name, backbone in modalities.items()
                                                     if has_attention(backbone)}
        for name, implementation in per_modality.items():
            modalities[name]._attn_implementation = implementation
            self._requested_attn_implementation[name] = implementation

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        # from_pretrained(..., attn_implementation={"image": "sdpa"}) replaces the saved entry wholesale; a dict asks
        # for the modalities it names and keeps the saved choice of the others.
        requested, saved = kwargs.get("attn_implementation"), config_dict.get("attn_implementation")
        if isinstance(requested, dict) and isinstance(saved, dict):
            kwargs["attn_implementation"] = {**saved, **requested}
        return super().from_dict(config_dict, **kwargs)

    # --- validation ---

    def _check_modality_name(self, name):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"Modality name {name!r} must be a Python identifier, e.g. 'audio' or 'video_frames'.")
        if hasattr(type(self), name) or name in PreTrainedConfig.__dataclass_fields__ or name.startswith("_"):
            raise ValueError(f"Modality name '{name}' is taken by a config attribute; choose another name.")

    @staticmethod
    def _check_no_prefix_collision(names: list[str]):
        for name in names:
            for other in names:
                if other != name and other.startswith(name + "_"):
                    raise ValueError(
                        f"Modality names '{name}' and '{other}' are ambiguous: an input named '{other}_...' could "
                        f"belong to either (inputs are named <modality>_<argument>). Rename one of them."
                    )

    def _resolve_backbone(self, name, spec, hub_options: dict) -> PreTrainedConfig:
        if isinstance(spec, PreTrainedConfig):
            return spec
        if isinstance(spec, dict):
            spec = {key: value for key, value in spec.items() if key != "transformers_version"}
            if "model_type" not in spec:
                raise ValueError(f"The backbone dict of modality '{name}' needs a 'model_type' key.")
            return AutoConfig.for_model(spec.pop("model_type"), **spec)
        if isinstance(spec, (str, os.PathLike)):
            options = hub_options_for(hub_options, name)
            source = os.fspath(spec)
            try:
                backbone = AutoConfig.from_pretrained(source, **options)
            except (OSError, ValueError) as error:
                raise OSError(
                    f"The backbone of modality '{name}', '{source}', is neither a local folder holding a model nor a "
                    "Hub model id that could be resolved. Check the spelling; for a private or gated repository log "
                    "in (`hf auth login`) or pass token=...; offline (HF_HUB_OFFLINE=1), download it first or pass "
                    f"the folder it was saved to. ({type(error).__name__}: {error})"
                ) from error
            self._pretrained_backbones[name] = (source, options)
            return backbone
        raise ValueError(
            f"The backbone of modality '{name}' must be a transformers config, a dict with 'model_type', a Hub model "
            f"id or the path of a local pretrained folder, not {type(spec).__name__}."
        )

    def _check_known_modalities(self, what: str, mapping: dict):
        unknown = sorted(set(mapping) - set(self.__dict__.get("modalities") or {}))
        if unknown:
            raise ValueError(f"`{what}` names unknown modalities {unknown} (modalities: {', '.join(self.modalities)}).")

    def check_fusion_weights(self, weights: dict, what: str = "fusion_weights") -> dict:
        """Validate per-modality fusion numbers (weights or temperatures): one positive finite number for each
        modality, none for anything else."""
        self._check_known_modalities(what, weights)
        missing = [name for name in self.modalities if name not in weights]
        if missing:
            raise ValueError(f"`{what}` has no weight for modalities {missing}.")
        for name in self.modalities:
            value = weights[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"`{what}` must all be positive finite numbers, got {weights}.")
        return {name: float(weights[name]) for name in self.modalities}

    @property
    def modality_names(self) -> list[str]:
        """Modality names in their configured order."""
        return list(self.modality_order)

    def to_dict(self):
        output = super().to_dict()
        for private in ("_pretrained_backbones", "_requested_attn_implementation"):
            output.pop(private, None)
        output["modalities"] = {
            name: {key: value for key, value in backbone.to_diff_dict().items() if key != "transformers_version"}
            for name, backbone in self.modalities.items()
        }
        if self._requested_attn_implementation:
            output["attn_implementation"] = dict(self._requested_attn_implementation)
        return output


__all__ = ["MLAConfig"]
