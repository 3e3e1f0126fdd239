"""The paper datasets' loaders and the generic manifest, each on a tiny fixture in its public layout."""

import csv
import os
import wave

import numpy as np
import pytest
from PIL import Image

from mla_hf.data import PAPER_DATASETS, DataArguments, load_manifest, load_multimodal_dataset, preprocess_dataset
from mla_hf.data.paper_datasets import CREMA_D_LABELS
from mla_hf.processing_mla import read_wav


def write_wav(path, seconds=0.1, rate=16000, frequency=440.0, width=2):
    """A PCM tone at any sample width (8-bit WAV is unsigned, the others signed little-endian)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    samples = 0.5 * np.sin(2 * np.pi * frequency * np.arange(int(seconds * rate)) / rate)
    scaled = np.round(samples * (2 ** (8 * width - 1) - 1)).astype(np.int64)
    if width == 1:
        raw = (scaled + 128).astype(np.uint8).tobytes()
    else:
        raw = b"".join(int(value).to_bytes(width, "little", signed=True) for value in scaled)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(raw)


def write_image(path, value=128):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (12, 10), (value, 255 - value, 0)).save(path)


def write_frames(folder, count=3):
    for index in range(count):
        write_image(os.path.join(folder, f"{index:03d}.jpg"), value=40 * index)


def write_rows(path, rows, header=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def all_ids(dataset):
    return sorted(sample for split in dataset.values() for sample in split["id"])


def crema_d_fixture(root, with_split_files):
    clips = [f"10{speaker:02d}_DFA_{emotion}_XX" for speaker in range(5) for emotion in CREMA_D_LABELS]
    for clip in clips:
        write_wav(root / "AudioWAV" / f"{clip}.wav")
        write_frames(root / "Image-01-FPS" / clip)
    if with_split_files:
        write_rows(root / "train.csv", [(clip, clip.split("_")[2]) for clip in clips[:24]])
        write_rows(root / "test.csv", [(clip, clip.split("_")[2]) for clip in clips[24:]])
    return clips


@pytest.mark.parametrize("with_split_files", [True, False])
def test_crema_d(tmp_path, with_split_files):
    clips = crema_d_fixture(tmp_path, with_split_files)
    dataset = PAPER_DATASETS["crema_d"].load(str(tmp_path))
    assert set(dataset) == {"train", "validation", "test"}
    assert all_ids(dataset) == sorted(clips)
    if with_split_files:
        assert sorted(dataset["test"]["id"]) == sorted(clips[24:])
    sample = dataset["train"][0]
    assert dataset["train"].features["labels"].names == CREMA_D_LABELS
    assert CREMA_D_LABELS[sample["labels"]] == sample["id"].split("_")[2]
    assert sample["image"].endswith(os.path.join(sample["id"], "001.jpg"))  # the middle of three frames
    assert sample["audio"].endswith(f"{sample['id']}.wav")


def test_crema_d_names_a_missing_frame_folder(tmp_path):
    clips = crema_d_fixture(tmp_path, with_split_files=False)
    for frame in os.listdir(tmp_path / "Image-01-FPS" / clips[3]):
        os.remove(tmp_path / "Image-01-FPS" / clips[3] / frame)
    os.rmdir(tmp_path / "Image-01-FPS" / clips[3])
    with pytest.raises(FileNotFoundError, match=clips[3]):
        PAPER_DATASETS["crema_d"].load(str(tmp_path))


def test_crema_d_rejects_an_unknown_emotion_in_the_split_file(tmp_path):
    clips = crema_d_fixture(tmp_path, with_split_files=True)
    write_rows(tmp_path / "test.csv", [(clips[-1], "BORED")])
    with pytest.raises(ValueError, match="unknown label 'BORED'"):
        PAPER_DATASETS["crema_d"].load(str(tmp_path))


def test_missing_root_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="AudioWAV"):
        PAPER_DATASETS["crema_d"].load(str(tmp_path / "nowhere"))


def test_kinetics_sounds(tmp_path):
    rows = {split: [(f"{split}_{index}", ["playing drums", "dog barking"][index % 2]) for index in range(count)]
            for split, count in (("train", 8), ("val", 2), ("test", 4))}
    for split, clip_rows in rows.items():
        write_rows(tmp_path / f"{split}.csv", clip_rows)
        for clip, _ in clip_rows:
            write_wav(tmp_path / "audio" / f"{clip}.wav")
            write_frames(tmp_path / "frames" / clip, count=2)
    dataset = PAPER_DATASETS["kinetics_sounds"].load(str(tmp_path))
    assert {split: len(part) for split, part in dataset.items()} == {"train": 8, "validation": 2, "test": 4}
    assert dataset["train"].features["labels"].names == ["dog barking", "playing drums"]
    assert sorted(dataset["validation"]["id"]) == ["val_0", "val_1"]


def test_food101(tmp_path):
    classes = ["apple_pie", "sushi"]
    for split, count in (("train", 10), ("test", 4)):
        rows = []
        for index in range(count):
            label = classes[index % 2]
            file = f"{label}_{split}_{index}.jpg"
            write_image(tmp_path / "images" / split / label / file)
            rows.append((file, f"best {label.replace('_', ' ')}, recipe {index}", label))
        write_rows(tmp_path / "texts" / f"{split}_titles.csv", rows)
    dataset = PAPER_DATASETS["food101"].load(str(tmp_path))
    assert len(dataset["test"]) == 4 and len(dataset["train"]) + len(dataset["validation"]) == 10
    sample = dataset["test"][0]
    assert sample["text"].startswith("best ") and ", recipe" in sample["text"]  # commas inside the text survive
    assert os.path.isfile(sample["image"])


def test_food101_names_a_missing_image(tmp_path):
    write_rows(tmp_path / "texts" / "train_titles.csv", [("gone.jpg", "text", "sushi")])
    write_rows(tmp_path / "texts" / "test_titles.csv", [])
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        PAPER_DATASETS["food101"].load(str(tmp_path))


def test_mvsa_single_label_rules(tmp_path):
    pairs = {"1": "positive,positive", "2": "neutral,negative", "3": "positive,negative", "4": "positive,neutral"}
    pairs.update({str(index): ["positive,positive", "negative,negative", "neutral,neutral"][index % 3]
                  for index in range(5, 35)})
    lines = ["ID\ttext,image"] + [f"{sample}\t{labels}" for sample, labels in pairs.items()]
    os.makedirs(tmp_path / "data")
    (tmp_path / "labelResultAll.txt").write_text("\n".join(lines) + "\n")
    for sample in pairs:
        write_image(tmp_path / "data" / f"{sample}.jpg")
        (tmp_path / "data" / f"{sample}.txt").write_bytes(f"tweet {sample} caf\xe9".encode("latin-1"))
    dataset = PAPER_DATASETS["mvsa_single"].load(str(tmp_path))
    rows = {sample: (label, text) for split in dataset.values()
            for sample, label, text in zip(split["id"], split["labels"], split["text"])}
    names = dataset["train"].features["labels"].names
    assert "3" not in rows  # conflicting labels are dropped
    assert names[rows["2"][0]] == "negative" and names[rows["4"][0]] == "positive" and names[rows["1"][0]] == "positive"
    assert rows["1"][1] == "tweet 1 caf\xe9"  # Latin-1 text decoded
    assert len(rows) == 33


def test_iemocap_splits_by_session(tmp_path):
    rows = [(f"Ses0{session}_{index}", ["ang", "hap", "neu", "sad"][index % 4], session)
            for session in range(1, 6) for index in range(4)]
    write_rows(tmp_path / "labels.csv", rows, header=["utterance", "label", "session"])
    for utterance, _, _ in rows:
        write_wav(tmp_path / "audio" / f"{utterance}.wav")
        write_frames(tmp_path / "frames" / utterance, count=1)
        os.makedirs(tmp_path / "transcripts", exist_ok=True)
        (tmp_path / "transcripts" / f"{utterance}.txt").write_text(f"said {utterance}")
    dataset = PAPER_DATASETS["iemocap"].load(str(tmp_path))
    assert all(sample.startswith("Ses05") for sample in dataset["test"]["id"])
    assert all(sample.startswith("Ses04") for sample in dataset["validation"]["id"])
    assert len(dataset["train"]) == 12
    assert dataset["test"][0]["text"] == f"said {dataset['test'][0]['id']}"


def write_manifest(tmp_path, extension=".csv"):
    rows = []
    for index in range(12):
        label = ["cat", "dog", "bird"][index % 3]
        write_wav(tmp_path / "clips" / f"{index}.wav")
        write_image(tmp_path / "photos" / f"{index}.png")
        rows.append({"id": str(index), "audio": f"clips/{index}.wav" if index != 5 else "",
                     "image": f"photos/{index}.png", "text": f"a {label}", "label": label,
                     "split": ["train", "train", "val", "test"][index % 4]})
    path = tmp_path / f"data{extension}"
    if extension == ".csv":
        write_rows(path, [list(row.values()) for row in rows], header=list(rows[0]))
    else:
        import json

        path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


@pytest.mark.parametrize("extension", [".csv", ".jsonl"])
def test_manifest(tmp_path, extension):
    dataset = load_manifest(str(write_manifest(tmp_path, extension)))
    assert {split: len(part) for split, part in dataset.items()} == {"train": 6, "validation": 3, "test": 3}
    row = dataset["train"].filter(lambda sample: sample["id"] == "5")[0]
    assert row["audio"] is None and row["text"] == "a bird"  # an empty cell is a missing modality
    assert dataset["train"].features["labels"].names == ["bird", "cat", "dog"]


def test_manifest_errors(tmp_path):
    path = write_manifest(tmp_path)
    with pytest.raises(ValueError, match="no label column 'category'"):
        load_manifest(str(path), label_column="category")
    with pytest.raises(ValueError, match=r"lacks the modality columns \['video'\]"):
        load_manifest(str(path), modality_kinds={"video": "image"})
    os.remove(tmp_path / "photos" / "7.png")
    with pytest.raises(FileNotFoundError, match="7.png"):
        load_manifest(str(path))
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_manifest(str(tmp_path / "missing.csv"))


def test_unreadable_files_are_named_when_decoded(tmp_path):
    path = write_manifest(tmp_path)
    (tmp_path / "photos" / "4.png").write_bytes(b"not an image")
    dataset = load_manifest(str(path))
    from mla_hf.presets import build_model_and_processor

    _, processor = build_model_and_processor({"audio": "audio", "image": "image"}, ["bird", "cat", "dog"])
    with pytest.raises(ValueError, match="4.png"):
        preprocess_dataset(dataset, processor)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_read_wav_sample_widths(tmp_path, width):
    write_wav(tmp_path / "tone.wav", seconds=0.01, rate=8000, frequency=400, width=width)
    audio, rate = read_wav(tmp_path / "tone.wav")
    assert rate == 8000 and audio.dtype == np.float32
    np.testing.assert_allclose(audio, 0.5 * np.sin(2 * np.pi * 400 * np.arange(80) / 8000), atol=1e-2)


def test_read_wav_names_a_corrupt_file(tmp_path):
    (tmp_path / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(ValueError, match="broken.wav"):
        read_wav(tmp_path / "broken.wav")


def test_manifest_with_a_byte_order_mark_keeps_its_first_column(tmp_path):
    path = write_manifest(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    dataset = load_manifest(str(path))
    assert sorted(int(sample) for split in dataset.values() for sample in split["id"]) == list(range(12))


def test_jsonl_columns_are_the_union_of_all_rows(tmp_path):
    import json

    write_image(tmp_path / "a.png")
    rows = [{"image": "a.png", "label": "x"}, {"image": "a.png", "text": "words", "label": "x"},
            {"text": "more", "label": "y"}, {"image": "a.png", "label": "y"}]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    dataset = load_manifest(str(tmp_path / "data.jsonl"), validation_share=0, test_share=0)
    assert set(dataset["train"].column_names) == {"id", "image", "text", "labels"}
    assert sorted(text for text in dataset["train"]["text"] if text) == ["more", "words"]


def test_only_exact_column_names_become_modalities(tmp_path):
    write_image(tmp_path / "a.png")
    write_rows(tmp_path / "data.csv", [["a.png", "smooth", "x"], ["a.png", "rough", "y"]],
               header=["image", "texture", "label"])
    with pytest.raises(ValueError, match=r"Columns \['texture'\] are not modality kinds.*--modality_kinds"):
        load_manifest(str(tmp_path / "data.csv"))
    dataset = load_manifest(str(tmp_path / "data.csv"), modality_kinds={"image": "image", "texture": "text"},
                            validation_share=0, test_share=0)
    assert sorted(dataset["train"]["texture"]) == ["rough", "smooth"]


def test_a_label_seen_only_outside_train_is_refused(tmp_path):
    write_image(tmp_path / "a.png")
    write_rows(tmp_path / "data.csv", [["a.png", "cat", "train"], ["a.png", "cat", "train"], ["a.png", "dog", "test"]],
               header=["image", "label", "split"])
    with pytest.raises(ValueError, match=r"labels \['dog'\] have no sample in the train split"):
        load_manifest(str(tmp_path / "data.csv"))


@pytest.mark.parametrize("content, message", [
    ("image,label\na.png,caf\xe9\n".encode("latin-1"), r"data.csv', line 2: not UTF-8 text"),
    (b"image,label\na.png,x\na.png,y,extra\n", r"line 3: 2 columns in the header"),
    (b"image,label\na.png\n", r"line 2: 2 columns in the header"),
])
def test_malformed_csv_names_the_file_and_line(tmp_path, content, message):
    (tmp_path / "data.csv").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_manifest(str(tmp_path / "data.csv"))


def test_a_jsonl_row_without_label_names_the_line(tmp_path):
    write_image(tmp_path / "a.png")
    (tmp_path / "data.jsonl").write_text('{"image": "a.png", "label": "x"}\n{"image": "a.png"}\n')
    with pytest.raises(ValueError, match=r"data.jsonl', line 2: no 'label'"):
        load_manifest(str(tmp_path / "data.jsonl"))


def test_row_limits_keep_a_seeded_random_subset(tmp_path):
    path = str(write_manifest(tmp_path))
    arguments = dict(dataset="manifest", data_dir=path, max_train_samples=4, max_eval_samples=2)
    limited, kinds = load_multimodal_dataset(DataArguments(**arguments))
    full, _ = load_multimodal_dataset(DataArguments(dataset="manifest", data_dir=path))
    assert {split: len(part) for split, part in limited.items()} == {"train": 4, "validation": 2, "test": 2}
    assert set(limited["train"]["id"]) < set(full["train"]["id"]) and set(kinds) == {"audio", "image", "text"}
    assert limited["train"]["id"] == load_multimodal_dataset(DataArguments(**arguments))[0]["train"]["id"]
    assert limited["train"]["id"] != full["train"]["id"][:4]  # a random subset, not the file's first rows
    with pytest.raises(ValueError, match="--max_train_samples must be a positive number of rows, got 0"):
        DataArguments(dataset="manifest", data_dir=path, max_train_samples=0)
