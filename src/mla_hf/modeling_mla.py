"""MLA model: one `transformers` backbone per modality, a projection per modality and one shared linear head."""

import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from .adapters import adapter_config_dict, inject_adapters, merge_adapters
from .backbones import backbone_model_class, backbone_width, expected_input_layout, forward_arguments, has_attention
from .configuration_mla import MLAConfig
from .fusion import fuse_modalities
from .heads import HEADS
from .pooling import pool


PIPELINE_TASK = "mla-classification"
IGNORE_INDEX = -100  # a label the loss skips, as everywhere in transformers


def _all_backbones_support(flag: str) -> property:
    """A property true when every backbone that has attention declares `flag` (e.g. `_supports_sdpa`)."""
    return property(lambda self: all(getattr(backbone_model_class(backbone), flag, False)
                                     for backbone in self.config.modalities.values() if has_attention(backbone)))


@dataclass
class MLAModelOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
        Cross-entropy of the fused logits, or of the active modality's logits when `modality` is given (over the
        samples where it is present).
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
        Fused logits over the modalities present in each sample; the active modality's logits when `modality` is given.
    modality_logits (`torch.FloatTensor` of shape `(batch_size, num_modalities, num_labels)`):
        Each modality's logits through the head; 0 where the modality is absent or was not run.
    modality_weights (`torch.FloatTensor` of shape `(batch_size, num_modalities)`):
        Fusion weights; exactly 0 where a modality is absent.
    modality_features (`torch.FloatTensor` of shape `(batch_size, num_modalities, projection_dim)`):
        Projected features; 0 where a modality is absent or was not run.
    modality_mask (`torch.BoolTensor` of shape `(batch_size, num_modalities)`):
        True where a modality was present and run.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    modality_logits: torch.FloatTensor | None = None
    modality_weights: torch.FloatTensor | None = None
    modality_features: torch.FloatTensor | None = None
    modality_mask: torch.BoolTensor | None = None


class MLAPreTrainedModel(PreTrainedModel):
    config_class = MLAConfig
    base_model_prefix = "mla"
    supports_gradient_checkpointing = True
    accepts_loss_kwargs = False  # the Trainer would otherwise pass `num_items_in_batch` into **modality_inputs
    main_input_name = "modality_mask"  # there is no single main input; the Trainer only uses it to count tokens

    # MLA itself has no attention: what it supports is what every backbone with attention supports.
    _supports_sdpa = _all_backbones_support("_supports_sdpa")
    _supports_flash_attn = _all_backbones_support("_supports_flash_attn")
    _supports_flex_attn = _all_backbones_support("_supports_flex_attn")
    _supports_attention_backend = _all_backbones_support("_supports_attention_backend")

    def _sdpa_can_dispatch(self, is_init_check: bool = False) -> bool:
        # transformers' own check, but naming the backbone that lacks SDPA rather than MLAModel.
        for name, backbone in self.config.modalities.items():
            model_class = backbone_model_class(backbone)
            if has_attention(backbone) and not getattr(model_class, "_supports_sdpa", False):
                raise ValueError(
                    f"The '{name}' backbone, {getattr(model_class, '__name__', backbone.model_type)}, does not support "
                    "an attention implementation through torch.nn.functional.scaled_dot_product_attention yet. Ask "
                    f"for SDPA per modality instead, e.g. attn_implementation={{'{name}': 'eager'}}."
                )
        return True

    @torch.no_grad()
    def _init_weights(self, module):
        # Backbones keep their own initialisation; this only reaches the projections and heads.
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, strict: a checkpoint that does not hold every weight of the model (a
        corrupt or foreign file, or a config override such as another `head_type` that changes the heads) is an
        error rather than a silently re-initialised layer. Pass `ignore_mismatched_sizes=True` to re-initialise
        layers whose shape changed on purpose (e.g. a new `num_labels`)."""
        wants_info = kwargs.pop("output_loading_info", False)
        reinitialise = kwargs.pop("ignore_mismatched_sizes", False)
        # Mismatches are reported below, with the others, rather than by transformers' generic error.
        model, info = super().from_pretrained(*args, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
        problems = {key: sorted(info.get(key) or []) for key in ("missing_keys", "unexpected_keys")}
        if not reinitialise:
            problems["mismatched_keys"] = sorted(str(entry[0]) if isinstance(entry, tuple) else str(entry)
                                                 for entry in info.get("mismatched_keys") or [])
        problems = {key: values for key, values in problems.items() if values}
        if problems:
            details = "; ".join(f"{key.replace('_', ' ')}: {', '.join(values[:8])}" + (" ..." if len(values) > 8 else "")
                                for key, values in problems.items())
            raise ValueError(
                f"The checkpoint does not match this model ({details}). Loading it would leave these weights randomly "
                "initialised. Check that the folder is an MLA checkpoint and that no config override (head_type, "
                "projection_dim, modalities) changes the architecture."
            )
        return (model, info) if wants_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as a complete remote-code folder: besides the config and weights, the code of the model and of
        `pipeline("mla-classification")`, so that both load with `trust_remote_code=True` without mla_hf."""
        from transformers.dynamic_module_utils import custom_object_save

        from .pipeline_mla import MLAClassificationPipeline

        # A class has a single `_auto_class`; the second Auto class a saved folder answers to is listed by hand.
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map["AutoModelForSequenceClassification"] = f"modeling_mla.{type(self).__name__}"
        self.config.auto_map = auto_map
        if not os.path.isfile(save_directory):
            os.makedirs(save_directory, exist_ok=True)
            custom_object_save(MLAClassificationPipeline, save_directory)
        # Written to config.json only: in memory the entry would make `pipeline()` demand trust_remote_code.
        self.config.custom_pipelines = {
            PIPELINE_TASK: {"impl": f"pipeline_mla.{MLAClassificationPipeline.__name__}", "pt": ["AutoModel"], "tf": [],
                            "type": "multimodal"}
        }
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            del self.config.custom_pipelines


class MLAModel(MLAPreTrainedModel):
    r"""
    Multimodal classifier trained by alternating unimodal adaptation (MLA, Zhang et al., CVPR 2024).

    Inputs are flat keyword arguments named `<modality>_<backbone argument>`, e.g. `image_pixel_values`
    `(batch, channels, height, width)`, `audio_input_values` `(batch, samples)` or `text_input_ids`
    `(batch, sequence)`. A modality with no inputs is absent for every sample; `modality_mask` marks absent
    modalities per sample.
    """

    def __init__(self, config: MLAConfig):
        super().__init__(config)
        if not config.modalities:
            raise ValueError("MLAConfig has no modalities: give at least one, e.g. modalities={'image': ViTConfig()}.")
        dtype = {"dtype": config.dtype} if config.dtype is not None else {}
        # from_config keeps the backbone config object: config.modalities[m] IS self.encoders[m].config, so
        # attn_implementation and dtype set on the MLA config reach the running backbones.
        self.encoders = nn.ModuleDict({name: AutoModel.from_config(cfg, **dtype) for name, cfg in config.modalities.items()})
        self.projections = nn.ModuleDict(
            {name: nn.Linear(backbone_width(cfg), config.projection_dim, **dtype) for name, cfg in config.modalities.items()}
        )
        self.head = HEADS[config.head_type](config.projection_dim, config.num_labels, len(config.modalities), **dtype)
        self._backbone_arguments = {name: forward_arguments(encoder) for name, encoder in self.encoders.items()}
        # post_init only gathers these from direct children; the backbones sit inside a ModuleDict.
        self._no_split_modules = sorted({m for e in self.encoders.values() for m in (e._no_split_modules or [])})
        self.post_init()
        for name, (source, hub_options) in config._pretrained_backbones.items():
            # The concrete class, not AutoModel: with peft installed AutoModel also looks for an adapter config and
            # drops local_files_only/cache_dir doing so (transformers 5.24), which reaches for the network.
            pretrained = type(self.encoders[name]).from_pretrained(source, **hub_options)
            self.encoders[name].load_state_dict(pretrained.state_dict())
        for name, saved in config.backbone_adapters.items():
            inject_adapters(self.encoders[name], saved)

    def add_backbone_adapters(self, adapters: dict) -> "MLAModel":
        """Parameter-efficient fine-tuning: inject `peft` adapters into chosen backbones, e.g.
        `model.add_backbone_adapters({"image": LoraConfig(r=8, target_modules=["q_proj", "v_proj"])})`.

        Those backbones' base weights are frozen and only their adapters train; the other backbones, the
        projections and the head train as before. The adapters are recorded in `config.backbone_adapters`, so
        checkpoints hold them and `from_pretrained` restores them (with `peft` installed).

        Args:
            adapters: `{modality: peft config}`, a `PeftConfig` or its dict, for any peft method that
                `peft.inject_adapter_in_model` supports (LoRA, LoHa, IA3, ...).
        """
        self.config._check_known_modalities("add_backbone_adapters", adapters)
        already = sorted(set(adapters) & set(self.config.backbone_adapters))
        if already:
            raise ValueError(f"Modalities {already} already have adapters; merge them first (merge_backbone_adapters).")
        for name, peft_config in adapters.items():
            saved = adapter_config_dict(peft_config)
            inject_adapters(self.encoders[name], saved)
            self.config.backbone_adapters[name] = saved
        return self

    def merge_backbone_adapters(self) -> "MLAModel":
        """Fold every backbone adapter into its base weights. The model is then a plain MLA model again: saved, it
        loads with `from_pretrained`, the pipeline and `trust_remote_code` without peft."""
        for name in list(self.config.backbone_adapters):
            merge_adapters(self.encoders[name])
            del self.config.backbone_adapters[name]
        return self

    @property
    def modalities(self) -> list[str]:
        return self.config.modality_names

    def forward(
        self,
        labels: torch.LongTensor | None = None,
        modality_mask: torch.BoolTensor | None = None,
        modality: str | None = None,
        fusion: str | None = None,
        return_dict: bool | None = None,
        **modality_inputs,
    ) -> MLAModelOutput | tuple:
        r"""
        Args:
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Class indices in `[0, num_labels)`; -100 marks a sample the loss skips.
            modality_mask (`torch.BoolTensor` of shape `(batch_size, num_modalities)`, *optional*):
                False where a sample lacks a modality (columns in `config.modality_order`). Absent samples never
                reach the backbone and take no part in fusion.
            modality (`str`, *optional*):
                Run only this modality: its encoder, projection and the head. This is MLA's unimodal training step.
            fusion (`str`, *optional*):
                Override `config.fusion` for this call: `"dynamic"`, `"fixed"` or `"energy"`.
            **modality_inputs:
                Backbone inputs named `<modality>_<argument>`, e.g. `image_pixel_values`, `text_attention_mask`.
        """
        inputs = self._group_inputs(modality_inputs)
        given = set(inputs)
        if modality is not None:
            if modality not in self.encoders:
                raise ValueError(f"Unknown modality '{modality}' (modalities: {', '.join(self.modalities)}).")
            if modality not in inputs:
                raise ValueError(f"modality='{modality}' was asked for, but no '{modality}_*' input was given.")
            inputs = {modality: inputs[modality]}
        if not inputs:
            raise ValueError(
                f"No modality present: give inputs named <modality>_<argument> for at least one of {self.modalities}."
            )
        batch_size = self._check_batch_sizes(inputs, labels, modality_mask)
        device = next(iter(next(iter(inputs.values())).values())).device
        present = self._presence(inputs, modality_mask, batch_size, device)
        index = self.modalities.index(modality) if modality is not None else None
        scored = present[:, index] if modality is not None else None  # the samples the loss scores
        if labels is not None:
            self._check_label_type(labels)
        counts = _BatchCounts.read(present, modality_mask, labels, scored)
        self._check_claims(given, counts)
        if modality is not None and counts.present[index] == 0:
            output = self._without_samples(modality, batch_size, device)
            return output if return_dict is not False else output.to_tuple()
        if not any(counts.present):
            raise ValueError("No modality present in any sample of the batch (check `modality_mask`).")
        encoded = {
            name: self._encode(name, inputs[name], present[:, position], all_rows=count == batch_size)
            for position, (name, count) in enumerate(zip(self.modalities, counts.present))
            if count
        }
        reference = next(iter(encoded.values()))  # zeros must match its dtype under autocast
        features = torch.stack([encoded.get(name, torch.zeros_like(reference)) for name in self.modalities], dim=1)
        modality_logits = self.head(features)  # (batch, modalities, labels)
        is_present = present.unsqueeze(-1)
        modality_logits = torch.where(is_present, modality_logits, torch.zeros_like(modality_logits))  # no bias

        if modality is not None:
            weights = present.float()
            logits = modality_logits[:, index]
        else:
            if counts.without_modality:
                missing = torch.nonzero(~present.any(-1)).flatten().tolist()
                raise ValueError(f"Samples {missing} have no modality present (check `modality_mask`).")
            logits, weights = self._fuse(fusion or self.config.fusion, modality_logits, present)

        loss = None
        if labels is not None:
            self._check_label_range(counts)
            targets = labels if scored is None else labels.masked_fill(~scored, IGNORE_INDEX)
            if counts.scored:
                loss = nn.functional.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX)
            else:  # nothing to score: a zero that still reaches every parameter used (no NaN from 0 / 0)
                loss = logits.float().sum() * 0.0

        output = MLAModelOutput(
            loss=loss,
            logits=logits,
            modality_logits=modality_logits,
            modality_weights=weights,
            modality_features=features,
            modality_mask=present,
        )
        return output if return_dict is not False else output.to_tuple()

    def modality_presence(self, labels=None, modality_mask=None, modality=None, fusion=None, return_dict=None,
                          check_mask: bool = True, **modality_inputs) -> torch.BoolTensor:
        """`(batch_size, num_modalities)` bool: which modalities each sample of a batch has, i.e. inputs were given
        and `modality_mask` does not hide them. Takes the same keyword arguments as `forward` and runs no encoder.

        `check_mask=False` skips checking that the mask marks no modality present that has no inputs: the check
        waits for the device, and a caller that already checked this batch need not wait again."""
        inputs = self._group_inputs(modality_inputs)
        if not inputs:
            raise ValueError(f"No modality present: no input named <modality>_<argument> for any of {self.modalities}.")
        batch_size = self._check_batch_sizes(inputs, labels, modality_mask)
        device = next(iter(next(iter(inputs.values())).values())).device
        present = self._presence(inputs, modality_mask, batch_size, device)
        if check_mask:
            self._check_claims(set(inputs), _BatchCounts.read(present, modality_mask, None, None))
        return present

    def _without_samples(self, modality: str, batch_size: int, device) -> MLAModelOutput:
        """A one-modality call on a batch where no sample has the modality: a zero loss that still reaches every
        trainable parameter the modality's step would train, so that a data-parallel step, in which other processes
        do hold the modality, gets a zero gradient from this process instead of missing it."""
        parameters = [*self.encoders[modality].parameters(), *self.projections[modality].parameters(),
                      *self.head.parameters()]
        loss = sum(parameter.sum() for parameter in parameters if parameter.requires_grad) * 0.0
        num_modalities, num_labels = len(self.modalities), self.config.num_labels
        return MLAModelOutput(
            loss=loss.float(),
            logits=torch.zeros(batch_size, num_labels, device=device),
            modality_logits=torch.zeros(batch_size, num_modalities, num_labels, device=device),
            modality_weights=torch.zeros(batch_size, num_modalities, device=device),
            modality_features=torch.zeros(batch_size, num_modalities, self.config.projection_dim, device=device),
            modality_mask=torch.zeros(batch_size, num_modalities, dtype=torch.bool, device=device),
        )

    def _encode(self, name: str, arguments: dict, rows: torch.Tensor, all_rows: bool) -> torch.Tensor:
        """Projected feature `(batch_size, projection_dim)` of one modality, 0 on rows where it is absent."""
        if not all_rows:
            arguments = {key: value[rows] for key, value in arguments.items()}
        output = self.encoders[name](**arguments, return_dict=True)
        pooled = pool(output, self.config.pooling[name], arguments.get("attention_mask"))
        feature = self.projections[name](pooled)  # (present rows, projection_dim)
        if all_rows:
            return feature
        full = feature.new_zeros(rows.shape[0], feature.shape[1])
        return full.index_copy(0, torch.nonzero(rows).flatten(), feature)

    def _fuse(self, mode: str, modality_logits: torch.Tensor, present: torch.Tensor):
        """(fused logits, weights) of fusion `mode`, with the configured temperatures and fixed weights."""
        if self.config.head_type == "concat":  # the concatenation head is the plain sum of its per-modality slices
            weights = present.float()
            return (modality_logits.float() * weights.unsqueeze(-1)).sum(1), weights
        fixed = temperatures = None
        if mode == "fixed":  # the configured weights, or equal ones (the mean of the present modalities' logits)
            weights = self.config.fusion_weights or dict.fromkeys(self.modalities, 1.0)
            fixed = torch.tensor([weights[name] for name in self.modalities], device=present.device)
        if self.config.fusion_temperatures:
            temperatures = torch.tensor([self.config.fusion_temperatures[name] for name in self.modalities])
        return fuse_modalities(mode, modality_logits, present, fixed, temperatures)

    def _group_inputs(self, modality_inputs: dict) -> dict[str, dict[str, torch.Tensor]]:
        """Split `<modality>_<argument>` keyword arguments by modality, checking names and tensor ranks."""
        by_longest_name = sorted(self.modalities, key=len, reverse=True)
        grouped = {}
        for key, value in modality_inputs.items():
            if value is None:
                continue
            name = next((m for m in by_longest_name if key.startswith(m + "_")), None)
            if name is None:
                raise ValueError(
                    f"Input '{key}' names no modality of this model (modalities: {', '.join(self.modalities)}); "
                    "inputs are named <modality>_<backbone argument>, e.g. 'image_pixel_values'."
                )
            argument = key[len(name) + 1 :]
            if argument not in self._backbone_arguments[name]:
                raise ValueError(
                    f"Input '{key}': the '{name}' backbone ({type(self.encoders[name]).__name__}) takes no argument "
                    f"'{argument}'."
                )
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"Input '{key}' must be a torch.Tensor, got {type(value).__name__}.")
            layout = expected_input_layout(self.config.modalities[name], argument)
            if layout is not None and value.dim() != layout[0]:
                raise ValueError(
                    f"Input '{key}' must be a {layout[0]}-D tensor {layout[1]}, got shape {tuple(value.shape)}."
                )
            grouped.setdefault(name, {})[argument] = value
        return grouped

    def _check_batch_sizes(self, inputs, labels, modality_mask) -> int:
        sizes = {f"{name}_{argument}": value.shape[0] for name, args in inputs.items() for argument, value in args.items()}
        if labels is not None:
            sizes["labels"] = labels.shape[0] if labels.dim() else 1
        if modality_mask is not None:
            sizes["modality_mask"] = modality_mask.shape[0]
        if len(set(sizes.values())) > 1:
            raise ValueError(f"Inputs disagree on the batch size: {sizes}.")
        return next(iter(sizes.values()))

    def _presence(self, inputs, modality_mask, batch_size: int, device) -> torch.Tensor:
        """`(batch, modalities)` bool: a modality is present where it has inputs and the mask allows it."""
        present = torch.tensor([name in inputs for name in self.modalities], device=device).expand(batch_size, -1)
        if modality_mask is None:
            return present
        expected = (batch_size, len(self.modalities))
        if modality_mask.dtype != torch.bool or tuple(modality_mask.shape) != expected:
            raise ValueError(
                f"`modality_mask` must be a bool tensor of shape {expected} (columns: {', '.join(self.modalities)}), "
                f"got {modality_mask.dtype} of shape {tuple(modality_mask.shape)}."
            )
        return present & modality_mask.to(device)

    def _check_claims(self, given: set[str], counts: "_BatchCounts"):
        """A mask that marks a modality present where it has no inputs is an error, not a silent absence."""
        if counts.claimed is None:
            return
        lacking = [name for name, claimed in zip(self.modalities, counts.claimed) if claimed and name not in given]
        if lacking:
            raise ValueError(f"`modality_mask` marks modalities {lacking} present, but they have no inputs.")

    @staticmethod
    def _check_label_type(labels: torch.Tensor):
        if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"`labels` must be a 1-D integer tensor (batch,), got {labels.dtype} of shape {tuple(labels.shape)}.")

    def _check_label_range(self, counts: "_BatchCounts"):
        if counts.label_range is None:
            return
        low, high = counts.label_range
        if low < 0 or high >= self.config.num_labels:
            raise ValueError(
                f"`labels` must lie in [0, {self.config.num_labels}) (or be {IGNORE_INDEX}, ignored), got values from "
                f"{low} to {high}."
            )


@dataclass(frozen=True)
class _BatchCounts:
    """What the input checks of one forward need to know about a batch, read from the device in one transfer:
    on a GPU each check on its own would make the host wait for the device, up to 13 times per call."""

    present: list[int]  # samples having each modality
    without_modality: int  # samples having none
    claimed: list[int] | None  # samples the mask marks present, per modality (None: no mask to check)
    label_range: tuple[int, int] | None  # smallest and largest label other than IGNORE_INDEX (None: none)
    scored: int  # labelled samples the loss scores

    @classmethod
    def read(cls, present, modality_mask, labels, scored) -> "_BatchCounts":
        """`scored`: `(batch,)` bool, the samples a one-modality loss scores (None: every sample)."""
        num_modalities = present.shape[1]
        parts = [present.sum(0), (~present.any(-1)).sum().view(1)]
        if modality_mask is not None:
            parts.append(modality_mask.to(present.device).sum(0))
        if labels is not None:
            labels = labels.long()
            valid = labels != IGNORE_INDEX
            sentinel = labels.new_full((1,), 2**62)  # keeps min and max defined on an empty batch
            parts += [torch.cat([labels.masked_fill(~valid, 2**62), sentinel]).min().view(1),
                      torch.cat([labels.masked_fill(~valid, -(2**62)), -sentinel]).max().view(1),
                      (valid if scored is None else valid & scored).sum().view(1)]
        values = torch.cat([part.long() for part in parts]).tolist()
        present_counts, values = values[:num_modalities], values[num_modalities:]
        without_modality, values = values[0], values[1:]
        claimed = None
        if modality_mask is not None:
            claimed, values = values[:num_modalities], values[num_modalities:]
        label_range, scored_count = None, 0
        if labels is not None:
            low, high, scored_count = values
            label_range = (low, high) if low <= high else None
        return cls(present_counts, without_modality, claimed, label_range, scored_count)


__all__ = ["MLAModel", "MLAModelOutput", "MLAPreTrainedModel"]
