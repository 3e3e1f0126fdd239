"""Ready-made backbones per modality kind (audio, image, text), each with its preprocessing component.

`build_model_and_processor` is what `scripts/train.py` uses: for every modality it takes either a local pretrained
folder (any `AutoModel` with its processor, feature extractor or tokenizer) or a small random-init backbone, so that
everything runs offline: a ResNet (audio log-mel spectrograms as 1-channel images, images) or a transformer (AST
for audio, ViT for images); BERT for text.

Small random-init transformers barely learn from a few thousand samples (on AV-Digits a 2-layer AST stayed at chance
for 6 epochs where a 2-stage ResNet reached 62 %), hence ResNets by default.
"""

from dataclasses import dataclass

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoTokenizer,
    BertConfig,
    PreTrainedTokenizerFast,
    ResNetConfig,
    ViTConfig,
    ViTImageProcessorPil,
)
from transformers.utils import cached_file

from .configuration_mla import MLAConfig, hub_options_for
from .feature_extraction_mla import LogMelFeatureExtractor
from .processing_mla import MLAProcessor


MODALITY_KINDS = ("audio", "image", "text")
ARCHITECTURES = ("resnet", "transformer")
AUDIO_FEATURES = ("torch", "ast")
_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
_COMPONENT_FILES = {
    "audio": _PROCESSOR_FILES,
    "image": _PROCESSOR_FILES,
    "text": ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model"),
}


@dataclass
class SmallBackboneShape:
    """Input sizes of the small random-init backbones: images are resized to `image_size` and cut into
    `patch_size` patches; audio becomes `num_mel_bins` x `max_frames` (10 ms hop) log-mel spectrograms cut into
    `audio_patch_size` patches; text is truncated to `max_text_length` tokens."""

    image_size: int = 32
    patch_size: int = 4
    num_mel_bins: int = 64
    max_frames: int = 100
    audio_patch_size: int = 8
    max_text_length: int = 64


def train_text_tokenizer(texts, vocab_size: int = 8000) -> PreTrainedTokenizerFast:
    """A lower-cased WordPiece tokenizer learned from `texts`, for random-init text backbones (no Hub needed)."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=_SPECIAL_TOKENS))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def small_backbone(kind: str, hidden_size: int = 64, num_layers: int = 2, shape: SmallBackboneShape | None = None,
                   tokenizer=None, architecture: str = "resnet", audio_features: str = "torch"):
    """(backbone config, preprocessing component) of a small random-init backbone for a modality kind.

    `architecture` "resnet": a ResNet with `num_layers` basic stages widening to `hidden_size`; audio is fed as a
    log-mel spectrogram image (see `MLAProcessor(spectrogram_as_image=...)`). "transformer": AST (audio) or ViT
    (image) of width `hidden_size` and `num_layers` layers. Text is always BERT and needs its `tokenizer` (see
    `train_text_tokenizer`). Audio features come from the batched torch front end (`audio_features="torch"`,
    `LogMelFeatureExtractor`) or transformers' ASTFeatureExtractor (`"ast"`); both compute the same log-mels.
    """
    if audio_features not in AUDIO_FEATURES:
        raise ValueError(f"Unknown audio_features '{audio_features}'; expected one of {AUDIO_FEATURES}.")
    shape = shape or SmallBackboneShape()
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture '{architecture}'; expected one of {ARCHITECTURES}.")
    width = dict(hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=max(1, hidden_size // 32),
                 intermediate_size=2 * hidden_size)
    resnet = dict(embedding_size=hidden_size // 2, layer_type="basic", downsample_in_first_stage=False,
                  depths=[1] * num_layers, hidden_sizes=[hidden_size // 2 ** (num_layers - 1 - stage) for stage in range(num_layers)])
    if kind == "audio":
        extractor = ASTFeatureExtractor(num_mel_bins=shape.num_mel_bins, max_length=shape.max_frames)
        if audio_features == "torch":
            extractor = LogMelFeatureExtractor.like(extractor)  # the same features, batched in torch
        if architecture == "resnet":
            return ResNetConfig(num_channels=1, **resnet), extractor
        config = ASTConfig(**width, max_length=shape.max_frames, num_mel_bins=shape.num_mel_bins,
                           patch_size=shape.audio_patch_size, frequency_stride=shape.audio_patch_size,
                           time_stride=shape.audio_patch_size)
        return config, extractor
    if kind == "image":
        size = {"height": shape.image_size, "width": shape.image_size}
        processor = ViTImageProcessorPil(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3)
        if architecture == "resnet":
            return ResNetConfig(num_channels=3, **resnet), processor
        return ViTConfig(**width, image_size=shape.image_size, patch_size=shape.patch_size, num_channels=3), processor
    if kind == "text":
        if tokenizer is None:
            raise ValueError("A random-init text backbone needs a tokenizer: pass `tokenizer=train_text_tokenizer(texts)`.")
        tokenizer.model_max_length = shape.max_text_length
        config = BertConfig(**width, vocab_size=len(tokenizer), max_position_embeddings=shape.max_text_length,
                            pad_token_id=tokenizer.pad_token_id)
        return config, tokenizer
    raise ValueError(f"Unknown modality kind '{kind}'; expected one of {MODALITY_KINDS}.")


def pretrained_backbone(source: str, kind: str, **hub_options):
    """(source, preprocessing component) of a pretrained backbone: a Hub id (`"google/vit-base-patch16-224"`) or a
    local folder, resolved as `from_pretrained` resolves it (`revision`, `cache_dir`, `local_files_only`, `token`;
    `HF_HUB_OFFLINE` and `HF_HUB_CACHE` are honoured). The component (image processor, feature extractor or
    tokenizer) comes from the same repository as the weights."""
    loaders = {"audio": AutoFeatureExtractor, "image": AutoImageProcessor, "text": AutoTokenizer}
    if kind not in loaders:
        raise ValueError(f"Unknown modality kind '{kind}'; expected one of {MODALITY_KINDS}.")
    # AutoTokenizer builds a 5-token tokenizer from a bare model config instead of failing: every word would be
    # [UNK]. Require the component's own files.
    try:
        found = [name for name in _COMPONENT_FILES[kind]
                 if cached_file(source, name, _raise_exceptions_for_missing_entries=False, **hub_options)]
    except OSError as error:
        raise OSError(f"Cannot resolve the pretrained backbone '{source}' ({kind}): {error}") from error
    if not found:
        raise ValueError(f"The backbone '{source}' has no {kind} preprocessing component (none of "
                         f"{list(_COMPONENT_FILES[kind])}): save its tokenizer or processor next to the model.")
    try:
        return source, loaders[kind].from_pretrained(source, **hub_options)
    except (OSError, ValueError) as error:
        raise ValueError(f"The backbone '{source}' has no usable {kind} preprocessing component: {error}") from error


def build_model_and_processor(modality_kinds: dict[str, str], label_names: list[str], pretrained: dict | None = None,
                              hidden_size: int = 64, num_layers: int = 2, shape: SmallBackboneShape | None = None,
                              architecture: str = "resnet", text_corpus=None, hub_options: dict | None = None,
                              audio_features: str = "torch", **config_kwargs) -> tuple[MLAConfig, MLAProcessor]:
    """An `MLAConfig` and the matching `MLAProcessor` for modalities of the given kinds.

    Args:
        modality_kinds: `{modality: "audio" | "image" | "text"}`, in model order.
        label_names: class names; `id2label`/`label2id` follow their order.
        pretrained: `{modality: Hub id or local folder}` for the modalities that start from a pretrained backbone.
        hidden_size, num_layers, shape, architecture, audio_features: the random-init backbones and their audio
            front end (see `small_backbone`).
        text_corpus: training texts, to learn a tokenizer for random-init text backbones.
        hub_options: `revision`, `cache_dir`, `local_files_only`, `token` for the pretrained backbones, each one value
            or a `{modality: value}` dict.
        config_kwargs: other `MLAConfig` arguments (`projection_dim`, `head_type`, `fusion`, `attn_implementation`,
            `dtype`, ...).
    """
    pretrained, hub_options = dict(pretrained or {}), dict(hub_options or {})
    unknown = set(pretrained) - set(modality_kinds)
    if unknown:
        raise ValueError(f"Pretrained backbones given for unknown modalities {sorted(unknown)}; modalities: {list(modality_kinds)}.")
    backbones, components, spectrogram_images = {}, {}, []
    for name, kind in modality_kinds.items():
        if name in pretrained:
            backbones[name], components[name] = pretrained_backbone(pretrained[name], kind,
                                                                    **hub_options_for(hub_options, name))
            continue
        tokenizer = train_text_tokenizer(text_corpus) if kind == "text" and text_corpus is not None else None
        backbones[name], components[name] = small_backbone(kind, hidden_size, num_layers, shape, tokenizer, architecture,
                                                           audio_features)
        if kind == "audio" and architecture == "resnet":
            spectrogram_images.append(name)
    config = MLAConfig(
        modalities=backbones,
        id2label=dict(enumerate(label_names)),
        label2id={label: index for index, label in enumerate(label_names)},
        **hub_options,
        **config_kwargs,
    )
    return config, MLAProcessor(components, spectrogram_as_image=spectrogram_images)


def lora_adapters(modalities: list[str], r: int = 8, alpha: int = 16, dropout: float = 0.0,
                  target_modules: str | list[str] = "all-linear") -> dict:
    """`{modality: LoraConfig}` for `MLAModel.add_backbone_adapters`: the same LoRA on each named backbone."""
    from peft import LoraConfig

    return {name: LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules)
            for name in modalities}
