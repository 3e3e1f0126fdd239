"""Multimodal datasets from files on disk: the generic manifest format and the builder the paper loaders share.

A loaded dataset is a `datasets.DatasetDict` (train / validation / test) with one column per modality holding a file
path (audio: PCM WAV, image: any format Pillow reads) or the text itself, `None` where a sample lacks the modality,
and `labels` (`ClassLabel`). Files are checked to exist at load time and decoded by `MLAProcessor` later.
"""

import csv
import json
import os
from collections.abc import Iterable

import datasets
import numpy as np


SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
                  "valid": "validation", "dev": "validation", "test": "test", "testing": "test"}
_FILE_KINDS = ("audio", "image")
MODALITY_KINDS = (*_FILE_KINDS, "text")
_LINE = "__line__"  # where a manifest row came from, for error messages


def read_table(path: str) -> list[dict]:
    """Rows of a UTF-8 CSV file (with a header; a byte-order mark is allowed) or a JSONL file, as dicts. A ragged CSV
    row, a JSONL line that is not an object and a file that is not UTF-8 are errors that name the file and line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Manifest '{path}' does not exist.")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            if path.endswith((".jsonl", ".json")):
                return _read_jsonl(handle, path)
            return _read_csv(handle, path)
    except UnicodeDecodeError as error:
        with open(path, "rb") as handle:
            line = next(number for number, raw in enumerate(handle, start=1) if not _is_utf8(raw))
        raise ValueError(f"Manifest '{path}', line {line}: not UTF-8 text ({error.reason}); save the file as "
                         "UTF-8.") from error


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read_jsonl(handle, path: str) -> list[dict]:
    rows = []
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"'{path}', line {number}: not valid JSON ({error}).") from error
        if not isinstance(row, dict):
            raise ValueError(f"'{path}', line {number}: expected a JSON object, got {type(row).__name__}.")
        rows.append({key: value for key, value in row.items()} | {_LINE: number})
    return rows


def _read_csv(handle, path: str) -> list[dict]:
    reader = csv.DictReader(handle)
    rows = []
    for row in reader:
        if None in row or None in row.values():
            raise ValueError(f"'{path}', line {reader.line_num}: {len(reader.fieldnames)} columns in the header "
                             f"({', '.join(reader.fieldnames)}) but a different number in this row.")
        rows.append(row | {_LINE: reader.line_num})
    return rows


def split_name(value: str, source: str) -> str:
    """'train', 'validation' or 'test' from a split column's value (accepts 'val', 'dev', ...)."""
    name = _SPLIT_ALIASES.get(str(value).strip().lower())
    if name is None:
        raise ValueError(f"{source}: unknown split '{value}'; expected one of {sorted(_SPLIT_ALIASES)}.")
    return name


def stratified_split(labels: list[str], shares: dict[str, float], seed: int) -> list[str]:
    """A split name per sample: each label's samples are shuffled (seeded) and cut by `shares`. The first split
    takes the remainder; every other split with a positive share gets at least one sample of each label that has
    more samples than there are splits."""
    rng = np.random.default_rng(seed)
    assignment = [""] * len(labels)
    first, *others = shares
    total = sum(shares.values())
    for label in sorted(set(labels)):
        members = list(rng.permutation([index for index, value in enumerate(labels) if value == label]))
        size = len(members)
        for name in others:
            count = round(shares[name] / total * size)
            if shares[name] > 0 and size > len(shares):
                count = max(1, count)
            for index in members[:count]:
                assignment[index] = name
            members = members[count:]
        for index in members:
            assignment[index] = first
    return assignment


def build_dataset_dict(records: list[dict], modality_kinds: dict[str, str], source: str,
                       label_names: Iterable[str] | None = None, seed: int = 0,
                       validation_share: float = 0.1, test_share: float = 0.1) -> datasets.DatasetDict:
    """The `DatasetDict` of a list of samples.

    Each record has a value per modality (file path for audio/image, text for text, or None), `label`, an optional
    `split` and an optional `id`. Samples without a split are assigned to train / validation / test by a seeded
    stratified split (`validation_share`, `test_share`); when only some splits are given (e.g. train and test), a
    validation split is carved out of train the same way. Unknown labels (with `label_names`), missing files and
    samples with no modality raise errors that name the sample.
    """
    if not records:
        raise ValueError(f"{source}: no samples found.")
    for kind in modality_kinds.values():
        if kind not in (*_FILE_KINDS, "text"):
            raise ValueError(f"Unknown modality kind '{kind}'; expected 'audio', 'image' or 'text'.")
    names = sorted({record["label"] for record in records}) if label_names is None else list(label_names)
    known = set(names)
    for record in records:
        sample = record.get("id", "?")
        if record["label"] not in known:
            raise ValueError(f"{source}: sample '{sample}' has unknown label '{record['label']}' (labels: {names}).")
        if all(record.get(name) in (None, "") for name in modality_kinds):
            raise ValueError(f"{source}: sample '{sample}' has none of the modalities {list(modality_kinds)}.")
        for name, kind in modality_kinds.items():
            value = record.get(name)
            if kind in _FILE_KINDS and value not in (None, "") and not os.path.isfile(value):
                raise FileNotFoundError(f"{source}: {name} file '{value}' of sample '{sample}' does not exist.")

    splits = [record.get("split") for record in records]
    if all(split is None for split in splits):
        splits = stratified_split([record["label"] for record in records],
                                  {"train": 1 - validation_share - test_share, "validation": validation_share,
                                   "test": test_share}, seed)
    elif any(split is None for split in splits):
        raise ValueError(f"{source}: some samples have a split and some do not.")
    elif "validation" not in splits:
        train = [index for index, split in enumerate(splits) if split == "train"]
        carved = stratified_split([records[index]["label"] for index in train],
                                  {"train": 1 - validation_share, "validation": validation_share}, seed)
        for index, split in zip(train, carved):
            splits[index] = split
    trained = {record["label"] for record, split in zip(records, splits) if split == "train"}
    unseen = sorted({record["label"] for record in records} - trained)
    if unseen:
        raise ValueError(f"{source}: labels {unseen} have no sample in the train split, so the model could never "
                         "predict them; add training samples or drop those rows.")

    features = datasets.Features(
        {"id": datasets.Value("string"), **{name: datasets.Value("string") for name in modality_kinds},
         "labels": datasets.ClassLabel(names=names)}
    )
    dataset = {}
    for split in SPLITS:
        chosen = [record for record, assigned in zip(records, splits) if assigned == split]
        if not chosen:
            continue
        columns = {"id": [str(record.get("id", index)) for index, record in enumerate(chosen)],
                   "labels": [record["label"] for record in chosen]}
        for name in modality_kinds:
            columns[name] = [record.get(name) or None for record in chosen]
        dataset[split] = datasets.Dataset.from_dict(columns, features=features)
    return datasets.DatasetDict(dataset)


def infer_modality_kinds(columns: Iterable[str], reserved: Iterable[str] = ()) -> dict[str, str]:
    """Columns named exactly 'audio', 'image' or 'text' are modalities of that kind. Any other column that is not
    `reserved` (label, split, id) is an error: a name is never guessed from a prefix ('texture' is no text)."""
    columns = [column for column in columns if column != _LINE]
    others = [column for column in columns if column not in MODALITY_KINDS and column not in set(reserved)]
    if others:
        raise ValueError(
            f"Columns {others} are not modality kinds: name the modality columns exactly 'audio', 'image' or 'text', "
            f"or give their kinds, e.g. --modality_kinds '{json.dumps({others[0]: 'image'})}' (modality_kinds=...).")
    return {column: column for column in columns if column in MODALITY_KINDS}


def load_manifest(path: str, modality_kinds: dict[str, str] | None = None, label_column: str = "label",
                  split_column: str = "split", id_column: str = "id", seed: int = 0,
                  validation_share: float = 0.1, test_share: float = 0.1) -> datasets.DatasetDict:
    """Any multimodal dataset described by a CSV (with a header) or JSONL manifest.

    One row per sample: a column per modality holding a file path (relative paths are resolved against the
    manifest's folder) or the text itself, empty where the sample lacks it; `label_column`; optionally
    `split_column` (train / validation / test; 'val' and 'dev' are accepted) and `id_column`.

    Args:
        modality_kinds: `{column: "audio" | "image" | "text"}`; by default the columns named exactly audio, image
            or text, and any other column (besides label, split and id) is an error.

    Example manifest (`data.csv`):

        id,audio,image,text,label,split
        0,clips/0.wav,photos/0.jpg,a red apple,apple,train
        1,,photos/1.jpg,green pear,pear,test
    """
    rows = read_table(path)
    if not rows:
        raise ValueError(f"Manifest '{path}' has no rows.")
    columns = list(dict.fromkeys(column for row in rows for column in row if column != _LINE))
    if label_column not in columns:
        raise ValueError(f"Manifest '{path}' has no label column '{label_column}' (columns: {columns}).")
    modality_kinds = dict(modality_kinds or infer_modality_kinds(columns, (label_column, split_column, id_column)))
    if not modality_kinds:
        raise ValueError(f"Manifest '{path}': no modality column among {columns}; name them audio/image/text or "
                         "pass modality_kinds.")
    missing = [name for name in modality_kinds if name not in columns]
    if missing:
        raise ValueError(f"Manifest '{path}' lacks the modality columns {missing} (columns: {columns}).")
    folder = os.path.dirname(os.path.abspath(path))
    records = []
    for number, row in enumerate(rows, start=1):
        where = f"'{path}', line {row[_LINE]}"
        if row.get(label_column) in (None, ""):
            raise ValueError(f"{where}: no '{label_column}'.")
        record = {"id": str(row.get(id_column) or number), "label": str(row[label_column]).strip()}
        if split_column in row and row[split_column] not in (None, ""):
            record["split"] = split_name(row[split_column], where)
        for name, kind in modality_kinds.items():
            value = row.get(name)
            if value in (None, ""):
                continue
            if kind not in MODALITY_KINDS:
                raise ValueError(f"Unknown modality kind '{kind}' for column '{name}'; expected one of {MODALITY_KINDS}.")
            record[name] = os.path.join(folder, str(value)) if kind in _FILE_KINDS else str(value)
        records.append(record)
    return build_dataset_dict(records, modality_kinds, f"Manifest '{path}'", seed=seed,
                              validation_share=validation_share, test_share=test_share)
