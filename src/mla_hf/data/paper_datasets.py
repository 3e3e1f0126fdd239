"""Loaders for the MLA paper's datasets, from local folders in their public layouts. Nothing is downloaded.

Video datasets are read from pre-extracted frames (one folder of JPEG/PNG files per clip); a clip's image is its
middle frame. Each loader returns a `DatasetDict` (train / validation / test) as `build_dataset_dict` describes, and
`PAPER_DATASETS` lists them with their modality kinds.

Expected layouts (`root` is the folder passed in):

- CREMA-D: `AudioWAV/<clip>.wav` (the clip name's third field is the emotion: ANG, DIS, FEA, HAP, NEU, SAD),
  `Image-01-FPS/<clip>/*.jpg` (frames at 1 fps), optional `train.csv` / `test.csv` with rows `<clip>,<label>`
  (the OGM-GE split); without them, a seeded stratified 80/10/10 split.
- Kinetics-Sounds: `audio/<clip>.wav`, `frames/<clip>/*.jpg`, and `train.csv`, `test.csv` (optionally `val.csv`)
  with rows `<clip>,<label>`.
- UPMC Food-101: `images/{train,test}/<class>/<file>` and `texts/{train_titles,test_titles}.csv` with rows
  `<file>,<text>,<class>` (no header), as published.
- MVSA-Single: `data/<id>.jpg`, `data/<id>.txt` and `labelResultAll.txt` (header `ID<TAB>text,image`). A sample's
  label is the text and image label when they agree, the non-neutral one when the other is neutral; samples whose
  labels conflict (positive vs negative) are dropped, as is usual. Seeded stratified 80/10/10 split.
- IEMOCAP, pre-extracted: `labels.csv` with header `utterance,label,session`, `audio/<utterance>.wav`,
  `frames/<utterance>/*.jpg`, `transcripts/<utterance>.txt`. Session `test_session` is the test split,
  `validation_session` the validation split, the others train.
"""

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass

import datasets

from .manifest import build_dataset_dict


CREMA_D_LABELS = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _require_folder(path: str, dataset: str) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{dataset}: expected the folder '{path}', which does not exist (see the layout in "
                                "mla_hf.data.paper_datasets).")
    return path


def _require_file(path: str, dataset: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{dataset}: expected the file '{path}', which does not exist (see the layout in "
                                "mla_hf.data.paper_datasets).")
    return path


def middle_frame(folder: str, dataset: str) -> str:
    """The middle one of a clip's extracted frames (sorted by file name)."""
    _require_folder(folder, dataset)
    frames = sorted(name for name in os.listdir(folder) if name.lower().endswith(_IMAGE_SUFFIXES))
    if not frames:
        raise FileNotFoundError(f"{dataset}: the frame folder '{folder}' holds no image files.")
    return os.path.join(folder, frames[len(frames) // 2])


def _read_text(path: str, dataset: str) -> str:
    _require_file(path, dataset)
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return raw.decode("latin-1").strip()  # MVSA's tweets are partly Latin-1


def _clip_label_rows(path: str, dataset: str) -> list[tuple[str, str]]:
    with open(_require_file(path, dataset), encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    for number, row in enumerate(rows, start=1):
        if len(row) < 2:
            raise ValueError(f"{dataset}: '{path}', row {number}: expected '<clip>,<label>', got {row}.")
    return [(row[0].strip(), row[1].strip()) for row in rows]


def load_crema_d(root: str, seed: int = 0) -> datasets.DatasetDict:
    """CREMA-D: audio (speech) + image (a face frame), 6 emotions."""
    name = "CREMA-D"
    audio_folder = _require_folder(os.path.join(root, "AudioWAV"), name)
    frames_folder = _require_folder(os.path.join(root, "Image-01-FPS"), name)
    split_files = {split: os.path.join(root, f"{split}.csv") for split in ("train", "test")}
    if all(os.path.isfile(path) for path in split_files.values()):
        clips = [(clip, label, split) for split, path in split_files.items() for clip, label in _clip_label_rows(path, name)]
    else:
        clips = []
        for file in sorted(os.listdir(audio_folder)):
            if file.endswith(".wav"):
                fields = file[: -len(".wav")].split("_")
                if len(fields) < 3:
                    raise ValueError(f"{name}: cannot read the emotion from the file name '{file}' (expected e.g. "
                                     "'1001_DFA_ANG_XX.wav').")
                clips.append((file[: -len(".wav")], fields[2], None))
    records = [
        {"id": clip, "label": label, "audio": os.path.join(audio_folder, f"{clip}.wav"),
         "image": middle_frame(os.path.join(frames_folder, clip), name), **({"split": split} if split else {})}
        for clip, label, split in clips
    ]
    return build_dataset_dict(records, {"audio": "audio", "image": "image"}, name, label_names=CREMA_D_LABELS, seed=seed)


def load_kinetics_sounds(root: str, seed: int = 0) -> datasets.DatasetDict:
    """Kinetics-Sounds: audio + image (a video frame)."""
    name = "Kinetics-Sounds"
    audio_folder = _require_folder(os.path.join(root, "audio"), name)
    frames_folder = _require_folder(os.path.join(root, "frames"), name)
    records = []
    for split, file in (("train", "train.csv"), ("validation", "val.csv"), ("test", "test.csv")):
        path = os.path.join(root, file)
        if split == "validation" and not os.path.isfile(path):
            continue
        for clip, label in _clip_label_rows(path, name):
            records.append({"id": clip, "label": label, "split": split, "audio": os.path.join(audio_folder, f"{clip}.wav"),
                            "image": middle_frame(os.path.join(frames_folder, clip), name)})
    return build_dataset_dict(records, {"audio": "audio", "image": "image"}, name, seed=seed)


def load_food101(root: str, seed: int = 0) -> datasets.DatasetDict:
    """UPMC Food-101: image + text (the recipe page's title), 101 dishes."""
    name = "UPMC Food-101"
    records = []
    for split in ("train", "test"):
        texts = _require_file(os.path.join(root, "texts", f"{split}_titles.csv"), name)
        with open(texts, encoding="utf-8", newline="") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                if len(row) < 3:
                    raise ValueError(f"{name}: '{texts}', row {number}: expected '<file>,<text>,<class>', got {row}.")
                file, text, label = row[0], ",".join(row[1:-1]), row[-1]
                records.append({"id": file, "label": label, "split": split, "text": text,
                                "image": os.path.join(root, "images", split, label, file)})
    return build_dataset_dict(records, {"image": "image", "text": "text"}, name, seed=seed)


def _mvsa_label(text_label: str, image_label: str) -> str | None:
    if text_label == image_label:
        return text_label
    if "neutral" in (text_label, image_label):
        return image_label if text_label == "neutral" else text_label
    return None


def load_mvsa_single(root: str, seed: int = 0) -> datasets.DatasetDict:
    """MVSA-Single: image + text (a tweet), positive / neutral / negative."""
    name = "MVSA-Single"
    labels_file = _require_file(os.path.join(root, "labelResultAll.txt"), name)
    data_folder = _require_folder(os.path.join(root, "data"), name)
    records = []
    with open(labels_file, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2 or len(fields[1].split(",")) != 2:
            raise ValueError(f"{name}: '{labels_file}', line {number}: expected '<id>\\t<text label>,<image label>'.")
        sample, (text_label, image_label) = fields[0], fields[1].split(",")
        label = _mvsa_label(text_label.strip(), image_label.strip())
        if label is None:
            continue
        records.append({"id": sample, "label": label, "image": os.path.join(data_folder, f"{sample}.jpg"),
                        "text": _read_text(os.path.join(data_folder, f"{sample}.txt"), name)})
    return build_dataset_dict(records, {"image": "image", "text": "text"}, name,
                              label_names=["negative", "neutral", "positive"], seed=seed)


def load_iemocap(root: str, seed: int = 0, test_session: str = "5", validation_session: str = "4") -> datasets.DatasetDict:
    """IEMOCAP, pre-extracted: audio + image (a face frame) + text (the transcript)."""
    name = "IEMOCAP"
    records = []
    with open(_require_file(os.path.join(root, "labels.csv"), name), encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if not {"utterance", "label", "session"} <= set(row):
                raise ValueError(f"{name}: labels.csv needs the header 'utterance,label,session'.")
            utterance, session = row["utterance"].strip(), str(row["session"]).strip()
            split = {test_session: "test", validation_session: "validation"}.get(session, "train")
            records.append({
                "id": utterance, "label": row["label"].strip(), "split": split,
                "audio": os.path.join(root, "audio", f"{utterance}.wav"),
                "image": middle_frame(os.path.join(root, "frames", utterance), name),
                "text": _read_text(os.path.join(root, "transcripts", f"{utterance}.txt"), name),
            })
    return build_dataset_dict(records, {"audio": "audio", "image": "image", "text": "text"}, name, seed=seed)


@dataclass(frozen=True)
class PaperDataset:
    load: Callable[..., datasets.DatasetDict]
    modality_kinds: dict


PAPER_DATASETS = {
    "crema_d": PaperDataset(load_crema_d, {"audio": "audio", "image": "image"}),
    "kinetics_sounds": PaperDataset(load_kinetics_sounds, {"audio": "audio", "image": "image"}),
    "food101": PaperDataset(load_food101, {"image": "image", "text": "text"}),
    "mvsa_single": PaperDataset(load_mvsa_single, {"image": "image", "text": "text"}),
    "iemocap": PaperDataset(load_iemocap, {"audio": "audio", "image": "image", "text": "text"}),
}
