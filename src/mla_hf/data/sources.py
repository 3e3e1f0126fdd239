"""One entry point for every dataset the scripts can train and evaluate on, with its command-line arguments."""

import json
from dataclasses import dataclass, field

import datasets

from .av_digits import AVDigitsSettings, load_av_digits
from .manifest import infer_modality_kinds, load_manifest
from .paper_datasets import PAPER_DATASETS


DATASET_NAMES = ("av_digits", "manifest", *PAPER_DATASETS)


@dataclass
class DataArguments:
    _argument_group_name = "data"

    dataset: str = field(default="av_digits", metadata={"help": f"One of {', '.join(DATASET_NAMES)}."})
    data_dir: str | None = field(
        default=None, metadata={"help": "Root folder of a paper dataset, or the manifest file for 'manifest'."}
    )
    modality_kinds: str | None = field(
        default=None,
        metadata={"help": "Manifest only, JSON {column: 'audio' | 'image' | 'text'}; needed unless the modality "
                          "columns are named exactly audio, image and text."},
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of AV-Digits' generation and of seeded splits."})
    av_digits_settings: str | None = field(
        default=None, metadata={"help": "AV-Digits variant, JSON of AVDigitsSettings fields, e.g. "
                                        "'{\"drowned_share\": 0.7}' (a data variant to check a finding on)."})
    av_digits_max_images: int | None = field(
        default=None, metadata={"help": "AV-Digits from a random subset of the 1,797 images (quick runs)."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "AV-Digits cache (default $MLA_HF_CACHE or ~/.cache/mla_hf)."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep a random subset of this many training rows (seeded by split_seed)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "The same for the validation and test splits, each."}
    )

    def __post_init__(self):
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be a positive number of rows, got {value}.")


def load_multimodal_dataset(args: DataArguments) -> tuple[datasets.DatasetDict, dict[str, str]]:
    """The raw `DatasetDict` (train / validation / test) and its `{modality: kind}`, limited to
    `max_train_samples` / `max_eval_samples` rows per split when they are set."""
    dataset, modality_kinds = _load_full_dataset(args)
    for split, part in dataset.items():
        limit = args.max_train_samples if split == "train" else args.max_eval_samples
        if limit is not None and limit < len(part):
            # Shuffled first: a manifest's rows may be sorted by label, and its first rows one class.
            dataset[split] = part.shuffle(seed=args.split_seed).select(range(limit)).flatten_indices()
    return dataset, modality_kinds


def _load_full_dataset(args: DataArguments) -> tuple[datasets.DatasetDict, dict[str, str]]:
    if args.dataset == "av_digits":
        variant = json.loads(args.av_digits_settings) if args.av_digits_settings else {}
        unknown = sorted(set(variant) - set(AVDigitsSettings.__dataclass_fields__))
        if unknown:
            raise ValueError(f"Unknown AV-Digits settings {unknown}; see AVDigitsSettings.")
        variant = {key: tuple(value) if isinstance(value, list) else value for key, value in variant.items()}
        settings = AVDigitsSettings(**{"seed": args.split_seed, "max_images": args.av_digits_max_images, **variant})
        return load_av_digits(settings, cache_dir=args.cache_dir), {"audio": "audio", "image": "image"}
    if args.data_dir is None:
        raise ValueError(f"--data_dir is required for the dataset '{args.dataset}'.")
    if args.dataset == "manifest":
        kinds = json.loads(args.modality_kinds) if args.modality_kinds else None
        dataset = load_manifest(args.data_dir, modality_kinds=kinds, seed=args.split_seed)
        return dataset, kinds or infer_modality_kinds(next(iter(dataset.values())).column_names, ("id", "labels"))
    if args.dataset not in PAPER_DATASETS:
        raise ValueError(f"Unknown dataset '{args.dataset}'; choose one of {', '.join(DATASET_NAMES)}.")
    source = PAPER_DATASETS[args.dataset]
    return source.load(args.data_dir, seed=args.split_seed), dict(source.modality_kinds)


def label_names(dataset: datasets.DatasetDict) -> list[str]:
    return list(next(iter(dataset.values())).features["labels"].names)
