"""MLAProcessor: one Hugging Face preprocessing component per modality, saved and loaded as one object.

Part of the flat group of modules shipped as remote code: it imports nothing from mla_hf.

A component is whatever the modality's backbone expects: an image processor (images), a feature extractor (audio)
or a tokenizer (text). Each is saved in its own sub-folder `<save_directory>/<modality>/`, so an image processor and
an audio feature extractor no longer overwrite each other's `preprocessor_config.json`; `mla_processor_config.json`
lists the modalities and the kind of each component.
"""

import json
import os
import wave
from collections.abc import Mapping, Sequence
from math import ceil, gcd

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from transformers import (
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoTokenizer,
    BatchFeature,
    FeatureExtractionMixin,
    PreTrainedTokenizerBase,
)
from transformers.image_processing_utils import BaseImageProcessor
from transformers.utils import PushToHubMixin

from .feature_extraction_mla import LogMelFeatureExtractor


PROCESSOR_CONFIG_NAME = "mla_processor_config.json"
_AUTO_CLASSES = {"image_processor": AutoImageProcessor, "feature_extractor": AutoFeatureExtractor, "tokenizer": AutoTokenizer}
_OWN_CLASSES = {LogMelFeatureExtractor.__name__: LogMelFeatureExtractor}  # shipped with this code, no Auto class
_WAV_SAMPLE_TYPES = {1: np.uint8, 2: np.int16, 4: np.int32}


def component_kind(component) -> str:
    """'image_processor', 'feature_extractor' or 'tokenizer'."""
    if isinstance(component, BaseImageProcessor):
        return "image_processor"
    if isinstance(component, PreTrainedTokenizerBase):
        return "tokenizer"
    if isinstance(component, FeatureExtractionMixin):
        return "feature_extractor"
    raise TypeError(
        f"{type(component).__name__} is not an image processor, an audio feature extractor or a tokenizer."
    )


MIN_AUDIO_SECONDS = 0.025  # one 25 ms analysis window: less gives the feature extractors no frame at all


def read_wav(path: str | os.PathLike, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode a PCM WAV file with the standard library (no FFmpeg): `(samples,)` float32 in [-1, 1] (channels are
    averaged) and its sampling rate. With `max_seconds`, only that much is read from the start of the file."""
    try:
        with wave.open(os.fspath(path), "rb") as handle:
            width, channels, rate = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
            count = handle.getnframes() if max_seconds is None else min(handle.getnframes(), ceil(max_seconds * rate))
            frames = handle.readframes(count)
    except (OSError, EOFError, wave.Error) as error:
        raise ValueError(f"Cannot read audio file '{path}': {error} (PCM WAV files are supported).") from error
    if width == 3:  # 24-bit: widen each sample to 32 bits
        raw = np.frombuffer(frames, np.uint8).reshape(-1, 3)
        samples = (np.pad(raw, ((0, 0), (1, 0))).view("<i4")[:, 0]).astype(np.float64) / 2**31
    elif width in _WAV_SAMPLE_TYPES:
        samples = np.frombuffer(frames, _WAV_SAMPLE_TYPES[width]).astype(np.float64)
        samples = (samples - 128) / 128 if width == 1 else samples / 2 ** (8 * width - 1)
    else:
        raise ValueError(f"Cannot read audio file '{path}': {8 * width}-bit samples are not supported.")
    return samples.reshape(-1, channels).mean(axis=1).astype(np.float32), rate


def load_audio(source, sampling_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """A mono waveform at `sampling_rate` from a WAV path, `{"array", "sampling_rate"}` or an array (taken to be
    at `sampling_rate` already). Other rates are resampled (polyphase filter). A WAV file is read only up to
    `max_seconds`, what the feature extractor uses. Empty, too short (under 25 ms) or non-finite audio is an error
    that names the file."""
    what = f"Audio file '{source}'" if isinstance(source, (str, os.PathLike)) else "An audio input"
    if isinstance(source, (str, os.PathLike)):
        array, rate = read_wav(source, max_seconds)
    elif isinstance(source, Mapping):
        if "array" not in source or "sampling_rate" not in source:
            raise ValueError(f"An audio dict needs 'array' and 'sampling_rate' keys, got {sorted(source)}.")
        array, rate = np.asarray(source["array"], dtype=np.float32), int(source["sampling_rate"])
    else:
        array, rate = np.asarray(source, dtype=np.float32), sampling_rate
    if array.ndim != 1:
        raise ValueError(f"{what} must be a mono waveform of shape (samples,), got shape {array.shape}.")
    if array.shape[0] < MIN_AUDIO_SECONDS * rate:
        raise ValueError(f"{what} holds {array.shape[0]} samples at {rate} Hz; at least {MIN_AUDIO_SECONDS * 1000:.0f} "
                         f"ms ({ceil(MIN_AUDIO_SECONDS * rate)} samples) are needed.")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or infinite samples.")
    if rate != sampling_rate:
        from scipy.signal import resample_poly

        divisor = gcd(rate, sampling_rate)
        array = resample_poly(array, sampling_rate // divisor, rate // divisor).astype(np.float32)
    return array


def load_image(source) -> Image.Image | np.ndarray | torch.Tensor:
    """An RGB PIL image from a path or a PIL image of any mode; a 2-D array (grayscale) becomes `(height, width, 3)`;
    other arrays and tensors are passed through. An empty image (a side of 0 pixels) is an error that names the
    file."""
    what = f"Image file '{source}'" if isinstance(source, (str, os.PathLike)) else "An image input"
    if isinstance(source, (str, os.PathLike)):
        try:
            with Image.open(source) as image:
                image = image.convert("RGB")
        except (OSError, UnidentifiedImageError) as error:
            raise ValueError(f"Cannot read image file '{source}': {error}") from error
    elif isinstance(source, Image.Image):
        image = source if source.mode == "RGB" else source.convert("RGB")  # decoded once already by the pipeline
    elif isinstance(source, np.ndarray) and source.ndim == 2:  # grayscale (height, width), as PIL's "L" to "RGB"
        image = np.repeat(source[..., None], 3, axis=-1)
    elif isinstance(source, (np.ndarray, torch.Tensor)):
        image = source
    else:
        raise ValueError(f"An image must be a path, a PIL image, an array or a tensor, got {type(source).__name__}.")
    size = image.size if isinstance(image, Image.Image) else tuple(image.shape)
    if 0 in size:
        raise ValueError(f"{what} is empty (size {size}).")
    return image


def audio_seconds_used(feature_extractor) -> float | None:
    """How much audio from the start of a clip a feature extractor looks at (None: all of it): AST-style extractors
    make `max_length` frames of 10 ms, Whisper-style ones `n_samples` samples."""
    if getattr(feature_extractor, "n_samples", None):
        return feature_extractor.n_samples / feature_extractor.sampling_rate
    if getattr(feature_extractor, "max_length", None) and getattr(feature_extractor, "num_mel_bins", None):
        return feature_extractor.max_length * 0.010 + MIN_AUDIO_SECONDS
    return None


def _as_image(name: str, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A spectrogram as a 1-channel image `(batch, 1, mel_bins, frames)` under `pixel_values`."""
    if "input_values" in features:  # AST layout (batch, frames, mel_bins)
        spectrogram = features["input_values"].transpose(1, 2)
    elif "input_features" in features:  # Whisper / CLAP layout (batch, mel_bins, frames)
        spectrogram = features["input_features"]
    else:
        raise ValueError(f"'{name}': the feature extractor gives {sorted(features)}, not a spectrogram.")
    if spectrogram.dim() != 3:
        raise ValueError(f"'{name}': expected a (batch, mel_bins, frames) spectrogram, got shape {tuple(spectrogram.shape)}.")
    return {"pixel_values": spectrogram.unsqueeze(1).contiguous()}


class MLAProcessor(PushToHubMixin):
    """Turns raw multimodal samples into `MLAModel` inputs.

    Args:
        components (`dict[str, component]`): per modality, an image processor, an audio feature extractor or a
            tokenizer, in the model's modality order.
        max_length (`dict[str, int]`, *optional*): token limit per text modality; longer texts are truncated. By
            default the tokenizer's `model_max_length` (when it has a real one).
        spectrogram_as_image (`list[str]`, *optional*): audio modalities whose spectrogram feeds an image backbone
            (e.g. a ResNet): it is given as `pixel_values` of shape `(batch, 1, mel_bins, frames)`.

    Calling it on a batch gives a `BatchFeature` with `<modality>_<argument>` tensors and a `(batch, modalities)`
    bool `modality_mask`. A sample may lack any modality (`None`); its rows are zero filler the model never encodes,
    and a modality no sample has is left out.
    """

    def __init__(self, components: Mapping, max_length: Mapping[str, int] | None = None,
                 spectrogram_as_image: Sequence[str] = ()):
        if not components:
            raise ValueError("MLAProcessor needs at least one modality component.")
        self.components = dict(components)
        self.kinds = {name: component_kind(component) for name, component in self.components.items()}
        self.max_length = dict(max_length or {})
        unknown = set(self.max_length) - {name for name, kind in self.kinds.items() if kind == "tokenizer"}
        if unknown:
            raise ValueError(f"max_length is given for {sorted(unknown)}, which are not text modalities.")
        self.spectrogram_as_image = list(spectrogram_as_image)
        not_audio = [name for name in self.spectrogram_as_image if self.kinds.get(name) != "feature_extractor"]
        if not_audio:
            raise ValueError(f"spectrogram_as_image names {not_audio}, which have no audio feature extractor.")

    @property
    def modalities(self) -> list[str]:
        return list(self.components)

    def __repr__(self):
        parts = ", ".join(f"{name}={type(component).__name__}" for name, component in self.components.items())
        return f"MLAProcessor({parts})"

    def __call__(self, samples, padding: str = "longest", return_tensors: str = "pt", device=None) -> BatchFeature:
        """Preprocess a batch.

        Args:
            samples: a list of dicts `{modality: raw input}` (one per sample; missing keys mean missing modalities),
                or a dict of columns `{modality: list of raw inputs or None}` as `datasets.Dataset.map(batched=True)`
                gives. Raw inputs: images as paths, PIL images or arrays; audio as WAV paths, `{"array",
                "sampling_rate"}` dicts or arrays at the feature extractor's rate; text as strings.
            padding: texts are padded to the longest in the batch (`"longest"`) or to the token limit
                (`"max_length"`, fixed shapes for datasets); texts over the limit are truncated.
            device: where torch components (the log-mel front end) compute; the model's device in the pipeline.
        """
        if return_tensors != "pt":
            raise ValueError("MLAProcessor returns PyTorch tensors only (return_tensors='pt').")
        columns = self._to_columns(samples)
        batch_size = len(next(iter(columns.values())))
        encoded, mask = {}, torch.zeros(batch_size, len(self.components), dtype=torch.bool)
        for position, (name, component) in enumerate(self.components.items()):
            column = columns.get(name) or [None] * batch_size
            present = [row for row, value in enumerate(column) if value is not None]
            if not present:
                continue
            features = self._encode(name, component, [column[row] for row in present], padding, device)
            rows = torch.tensor(present)
            for argument, values in features.items():
                filled = values.new_zeros((batch_size, *values.shape[1:]))
                filled[rows.to(values.device)] = values
                encoded[f"{name}_{argument}"] = filled
            mask[rows, position] = True
        if not mask.any(dim=1).all():
            empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"Samples {empty} have no modality: give at least one of {self.modalities}.")
        return BatchFeature({**encoded, "modality_mask": mask})

    def _to_columns(self, samples) -> dict[str, list]:
        if isinstance(samples, Mapping):
            columns = {name: list(values) for name, values in samples.items() if name in self.components and values is not None}
            lengths = {len(values) for values in columns.values()}
            if len(lengths) > 1:
                raise ValueError(f"Modality columns have different lengths: {sorted(lengths)}.")
            if not columns:
                raise ValueError(f"No modality column among {sorted(samples)}; expected any of {self.modalities}.")
            return columns
        if isinstance(samples, Sequence) and samples and all(isinstance(sample, Mapping) for sample in samples):
            for index, sample in enumerate(samples):
                unknown = set(sample) - set(self.components)
                if unknown:
                    raise ValueError(f"Sample {index} has unknown modalities {sorted(unknown)}; expected any of {self.modalities}.")
                if not any(value is not None for value in sample.values()):
                    raise ValueError(f"Sample {index} is empty: give at least one of {self.modalities}.")
            return {name: [sample.get(name) for sample in samples] for name in self.components}
        raise ValueError("Expected a non-empty list of {modality: input} dicts or a dict of modality columns.")

    def decode(self, name: str, value):
        """One raw input of modality `name`, ready for its component: an RGB image, a waveform at the feature
        extractor's rate, or the text itself."""
        kind = self.kinds[name]
        if kind == "image_processor":
            return load_image(value)
        if kind == "feature_extractor":
            component = self.components[name]
            return load_audio(value, component.sampling_rate, audio_seconds_used(component))
        if not isinstance(value, str):
            raise ValueError(f"'{name}' inputs must be strings.")
        return value

    def _encode(self, name: str, component, values: list, padding: str, device=None) -> dict[str, torch.Tensor]:
        values = [self.decode(name, value) for value in values]
        kind = self.kinds[name]
        if kind == "image_processor":
            return dict(component(values, return_tensors="pt"))
        if kind == "feature_extractor":
            on_device = {"device": device} if isinstance(component, LogMelFeatureExtractor) else {}
            features = dict(component(values, sampling_rate=component.sampling_rate, return_tensors="pt", **on_device))
            return _as_image(name, features) if name in self.spectrogram_as_image else features
        limit = self.max_length.get(name, component.model_max_length)
        limit = limit if limit < 1_000_000 else None  # tokenizers without a limit report a huge sentinel
        if padding == "max_length" and limit is None:
            raise ValueError(f"Padding '{name}' to a fixed length needs a token limit: pass max_length={{'{name}': ...}}.")
        return dict(component(values, padding=padding, truncation=limit is not None, max_length=limit, return_tensors="pt"))

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs) -> list[str]:
        """Save every component in `<save_directory>/<modality>/` plus `mla_processor_config.json`."""
        if os.path.isfile(save_directory):
            raise ValueError(f"Provided path ({save_directory}) should be a directory, not a file.")
        if push_to_hub:
            commit_message = kwargs.pop("commit_message", None)
            repo_id = kwargs.pop("repo_id", os.fspath(save_directory).split(os.path.sep)[-1])
            repo_id = self._create_repo(repo_id, **kwargs)
            files_timestamps = self._get_files_timestamps(save_directory)
        os.makedirs(save_directory, exist_ok=True)
        written = []
        for name, component in self.components.items():
            written += list(component.save_pretrained(os.path.join(save_directory, name)) or [])
        config_path = os.path.join(save_directory, PROCESSOR_CONFIG_NAME)
        with open(config_path, "w", encoding="utf-8") as handle:
            json.dump({"processor_class": type(self).__name__, "modalities": self.kinds,
                       "classes": {name: type(component).__name__ for name, component in self.components.items()},
                       "max_length": self.max_length,
                       "spectrogram_as_image": self.spectrogram_as_image}, handle, indent=2)
        written.append(config_path)
        if push_to_hub:
            self._upload_modified_files(save_directory, repo_id, files_timestamps, commit_message=commit_message,
                                        token=kwargs.get("token"))
        return written

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> "MLAProcessor":
        """Load from a folder written by `save_pretrained` (or a Hub repo holding one)."""
        config_path = os.path.join(pretrained_model_name_or_path, PROCESSOR_CONFIG_NAME)
        if not os.path.isdir(pretrained_model_name_or_path):
            from huggingface_hub import hf_hub_download

            config_path = hf_hub_download(pretrained_model_name_or_path, PROCESSOR_CONFIG_NAME, **kwargs)
        try:
            with open(config_path, encoding="utf-8") as handle:
                saved = json.load(handle)
        except FileNotFoundError as error:
            raise OSError(f"No {PROCESSOR_CONFIG_NAME} in '{pretrained_model_name_or_path}': not an MLAProcessor folder.") from error
        except json.JSONDecodeError as error:
            raise OSError(f"'{config_path}' is not valid JSON: {error}") from error
        components = {}
        for name, kind in saved["modalities"].items():
            if kind not in _AUTO_CLASSES:
                raise OSError(f"'{config_path}' names an unknown component kind '{kind}' for modality '{name}'.")
            loader = _OWN_CLASSES.get(saved.get("classes", {}).get(name), _AUTO_CLASSES[kind])
            components[name] = loader.from_pretrained(pretrained_model_name_or_path, subfolder=name, **kwargs)
        return cls(components, max_length=saved.get("max_length"), spectrogram_as_image=saved.get("spectrogram_as_image", ()))
