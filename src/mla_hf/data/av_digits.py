"""AV-Digits: the built-in default dataset, real and fully offline.

Each of scikit-learn's 1,797 handwritten 8x8 digits is paired with `clips_per_image` spoken digits of the same label,
synthesised by eSpeak NG in varied languages, accents, voices, speeds and pitches (16 kHz mono, 1 s). Both
modalities are corrupted, independently per pair, so that each is only partly informative and joint training shows
modality laziness:

- audio: white, pink or brown noise at 5-25 dB SNR, but `drowned_share` of the clips at -30 to -20 dB (no word left);
- image: Gaussian pixel noise (`pixel_noise` on [0, 1]) and, on `occlusion_share` of them, a zeroed square.

The split is by image (stratified, seeded), so no handwritten digit is in two splits. Generation is deterministic
for a seed and eSpeak NG back-end and takes seconds; `load_av_digits` caches the result on disk.
"""

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass

import datasets
import numpy as np
import pyarrow as pa
from PIL import Image
from sklearn.datasets import load_digits

from .manifest import stratified_split
from .speech import speech_backend


logger = logging.getLogger(__name__)
AV_DIGITS_VERSION = "1.1"  # 1.1: the shared stratified split (same full set; tiny subsets differ)
LABEL_NAMES = [str(digit) for digit in range(10)]
SAMPLING_RATE = 16_000
_CHUNK_IMAGES = 150  # images synthesised by one worker process
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "av_digits_synthesis.py")


@dataclass(frozen=True)
class AVDigitsSettings:
    """How AV-Digits is generated; every field enters the cache key."""

    seed: int = 0
    clips_per_image: int = 3
    max_images: int | None = None  # a random subset of the 1,797 images, for quick tests
    validation_share: float = 0.1
    test_share: float = 0.2
    snr_db: tuple[float, float] = (5.0, 25.0)
    drowned_share: float = 0.35
    drowned_snr_db: tuple[float, float] = (-30.0, -20.0)
    pixel_noise: float = 0.25
    occlusion_share: float = 0.5
    occlusion_size: int = 4

    def fingerprint(self, backend: str) -> str:
        key = json.dumps({"version": AV_DIGITS_VERSION, "backend": backend, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]


def _features() -> datasets.Features:
    return datasets.Features(
        {
            "audio": {"array": datasets.Sequence(datasets.Value("float32")), "sampling_rate": datasets.Value("int32")},
            "image": datasets.Image(),
            "labels": datasets.ClassLabel(names=LABEL_NAMES),
            "image_index": datasets.Value("int32"),
            "voice": datasets.Value("string"),
            "audio_drowned": datasets.Value("bool"),
            "image_occluded": datasets.Value("bool"),
        }
    )


def _split_images(labels: np.ndarray, settings: AVDigitsSettings) -> dict[str, np.ndarray]:
    """Stratified and seeded: each digit's images are cut into test and validation shares, the rest is train."""
    shares = {"train": 1 - settings.validation_share - settings.test_share, "test": settings.test_share,
              "validation": settings.validation_share}
    assignment = np.array(stratified_split(list(labels), shares, settings.seed))
    return {split: np.flatnonzero(assignment == split) for split in ("train", "validation", "test")}


def _synthesize_in_fresh_processes(settings: AVDigitsSettings, digits, chunks: list[np.ndarray],
                                   num_proc: int) -> list[dict]:
    """Run `av_digits_synthesis.py` on each chunk of image indices, `num_proc` processes at a time."""
    # Plain subprocesses rather than multiprocessing: "spawn" re-imports the caller's main module, which breaks
    # scripts without an `if __name__ == "__main__"` guard, and "fork" would inherit the caller's eSpeak NG state.
    with tempfile.TemporaryDirectory(prefix="av-digits-") as workspace:
        requests = []
        for number, indices in enumerate(chunks):
            request = {**asdict(settings), "image_indices": indices.tolist(), "images": digits.images[indices].tolist(),
                       "labels": digits.target[indices].tolist(), "output": os.path.join(workspace, f"{number}.npz")}
            requests.append(os.path.join(workspace, f"{number}.json"))
            with open(requests[-1], "w", encoding="utf-8") as handle:
                json.dump(request, handle)
        for start in range(0, len(chunks), num_proc):
            workers = [subprocess.Popen([sys.executable, _WORKER, path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                       for path in requests[start : start + num_proc]]
            for worker in workers:
                _, errors = worker.communicate()
                if worker.returncode != 0:
                    raise RuntimeError(f"AV-Digits synthesis failed in a worker process:\n{errors.decode()[-3000:]}")
        results = []
        for number in range(len(chunks)):
            with np.load(os.path.join(workspace, f"{number}.npz")) as arrays:
                results.append(dict(arrays))
        return results


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _to_dataset(columns: dict[str, np.ndarray]) -> datasets.Dataset:
    """Build the Arrow table from the arrays directly: `Dataset.from_dict` would walk 16,000 floats per clip in Python."""
    clips = columns["audio"]
    offsets = np.arange(len(clips) + 1, dtype=np.int32) * clips.shape[1]
    audio = pa.StructArray.from_arrays(
        [pa.ListArray.from_arrays(offsets, pa.array(clips.ravel())), pa.array(np.full(len(clips), SAMPLING_RATE, np.int32))],
        names=["array", "sampling_rate"],
    )
    image = pa.StructArray.from_arrays(
        [pa.array([_png(pixels) for pixels in columns["image"]], pa.binary()), pa.nulls(len(clips), pa.string())],
        names=["bytes", "path"],
    )
    plain = {name: pa.array(columns[name]) for name in ("labels", "image_index", "voice", "audio_drowned", "image_occluded")}
    table = pa.table({"audio": audio, "image": image, **plain}).cast(_features().arrow_schema)
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=_features()))


def generate_av_digits(settings: AVDigitsSettings = AVDigitsSettings(), num_proc: int | None = None) -> datasets.DatasetDict:
    """Generate AV-Digits in memory: a `DatasetDict` with train, validation and test splits.

    Columns: `audio` (`{"array": (16000,) float32, "sampling_rate": 16000}`), `image` (8x8 grayscale PIL image),
    `labels` (`ClassLabel` '0'-'9'), and for analysis `image_index` (row in scikit-learn's digits), `voice`,
    `audio_drowned`, `image_occluded`. Work is cut into fixed chunks of images, each synthesised in a fresh Python
    process (`num_proc` at a time, by default one per CPU), so the result depends neither on what the calling process
    synthesised before nor on `num_proc`.
    """
    digits = load_digits()
    labels = digits.target
    candidates = np.arange(len(labels))
    if settings.max_images is not None:
        candidates = np.sort(np.random.default_rng(settings.seed).permutation(len(labels))[: settings.max_images])
    image_splits = {split: candidates[rows] for split, rows in _split_images(labels[candidates], settings).items()}
    chunks = [(split, indices[start : start + _CHUNK_IMAGES])
              for split, indices in image_splits.items() for start in range(0, len(indices), _CHUNK_IMAGES)]
    results = _synthesize_in_fresh_processes(settings, digits, [indices for _, indices in chunks],
                                             num_proc or os.cpu_count() or 1)
    splits = {}
    for split, indices in image_splits.items():
        pairs = [result for (chunk_split, _), result in zip(chunks, results) if chunk_split == split]
        columns = {name: np.concatenate([pair[name] for pair in pairs]) for name in pairs[0]}
        columns["labels"] = np.repeat(labels[indices], settings.clips_per_image)
        columns["image_index"] = np.repeat(indices, settings.clips_per_image)
        splits[split] = _to_dataset(columns)
    return datasets.DatasetDict(splits)


def default_cache_dir() -> str:
    return os.environ.get("MLA_HF_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "mla_hf"))


def load_av_digits(settings: AVDigitsSettings = AVDigitsSettings(), cache_dir: str | None = None) -> datasets.DatasetDict:
    """AV-Digits from the cache, generated there first if absent. The cache key covers the settings, the dataset
    version and the eSpeak NG back-end; a half-written cache is never left behind."""
    folder = os.path.join(cache_dir or default_cache_dir(), "av_digits", settings.fingerprint(speech_backend()))
    if not os.path.isdir(folder):
        logger.warning(f"Generating AV-Digits ({settings.clips_per_image} spoken clips for each of "
                       f"{settings.max_images or 1797} digits; about 30 s on 2 cores, once): cached in {folder}")
        dataset = generate_av_digits(settings)
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        staging = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=".staging-")
        try:
            dataset.save_to_disk(staging)
            os.replace(staging, folder)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not os.path.isdir(folder):  # another process may have won the race; anything else is an error
                raise
    return datasets.load_from_disk(folder)
