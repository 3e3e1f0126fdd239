"""AV-Digits worker: synthesises and corrupts the pairs of some images. Run as a script by `av_digits.py`, never
imported by the package.

It runs in a fresh process because eSpeak NG keeps a pitch-flutter phase in a static variable that no call resets
(not even re-initialising the library): a clip depends on everything synthesised before it in the same process. It
imports only numpy, scipy and the sibling `speech.py`, so starting it costs a fraction of a second.

    python av_digits_synthesis.py request.json    # request: settings, images, labels, image_indices, output (.npz)
"""

import json
import sys

import numpy as np
from scipy.signal import resample_poly

from speech import Synthesizer, Voice


SAMPLING_RATE = 16_000
# Two thirds English accents; the rest read the numeral in their own language.
_ENGLISH = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc"]
_OTHER_LANGUAGES = ["de", "fr", "es", "it", "nl"]
_VARIANTS = [None, "f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "croak", "klatt",
             "klatt2", "klatt3", "whisper", "Andy", "Annie", "anika", "belinda", "boris", "david", "edward", "grandma",
             "iven", "john", "linda", "max", "michel", "norbert", "aunty", "ian", "caleb", "Alicia", "Mr serious"]
_NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def draw_voice(rng: np.random.Generator) -> Voice:
    languages = _ENGLISH if rng.random() < 2 / 3 else _OTHER_LANGUAGES
    return Voice(
        language=str(rng.choice(languages)),
        variant=_VARIANTS[rng.integers(len(_VARIANTS))],
        rate=int(rng.integers(110, 251)),
        pitch=int(rng.integers(15, 86)),
        range=int(rng.integers(10, 91)),
    )


def colored_noise(rng: np.random.Generator, length: int, exponent: float) -> np.ndarray:
    """Unit-power noise whose power spectrum falls as 1 / f**exponent."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.fft.rfftfreq(length)
    frequencies[0] = frequencies[1]
    noise = np.fft.irfft(spectrum / frequencies ** (exponent / 2), n=length)
    return noise / np.sqrt(np.mean(noise**2))


def spoken_digit(synthesizer: Synthesizer, digit: int, rng: np.random.Generator, settings: dict):
    """A 1 s noisy clip of `digit`: (clip, voice name, whether the speech is drowned)."""
    voice = draw_voice(rng)
    speech = synthesizer.synthesize(str(digit), voice, seed=int(rng.integers(2**31)))
    speech = resample_poly(speech, SAMPLING_RATE, synthesizer.sampling_rate)
    loud = np.flatnonzero(np.abs(speech) > 0.02 * np.abs(speech).max())
    speech = speech[loud[0] : loud[-1] + 1][:SAMPLING_RATE]
    speech *= rng.uniform(0.3, 0.9) / np.abs(speech).max()
    clip = np.zeros(SAMPLING_RATE)
    start = int(rng.integers(SAMPLING_RATE - len(speech) + 1))
    clip[start : start + len(speech)] = speech
    drowned = bool(rng.random() < settings["drowned_share"])
    snr_db = rng.uniform(*(settings["drowned_snr_db"] if drowned else settings["snr_db"]))
    exponent = _NOISE_EXPONENTS[str(rng.choice(list(_NOISE_EXPONENTS)))]
    noise = colored_noise(rng, SAMPLING_RATE, exponent) * np.sqrt(np.mean(speech**2) / 10 ** (snr_db / 10))
    mixture = clip + noise
    mixture /= max(1.0, np.abs(mixture).max())
    return mixture.astype(np.float32), voice.name, drowned


def corrupted_image(image: np.ndarray, rng: np.random.Generator, settings: dict):
    """An 8x8 digit (values 0-16) with pixel noise and maybe an occluding square: (uint8 image, occluded)."""
    pixels = image / 16.0 + rng.normal(0.0, settings["pixel_noise"], size=image.shape)
    occluded = bool(rng.random() < settings["occlusion_share"])
    if occluded:
        size = settings["occlusion_size"]
        top, left = rng.integers(0, image.shape[0] - size + 1, size=2)
        pixels[top : top + size, left : left + size] = 0.0
    return np.round(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8), occluded


def synthesize_pairs(settings: dict, images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """`clips_per_image` pairs per image, each drawn from its own generator seeded by (seed, image, clip)."""
    synthesizer = Synthesizer.get()
    columns = {"audio": [], "image": [], "voice": [], "audio_drowned": [], "image_occluded": []}
    for image_index, image, label in zip(settings["image_indices"], images, labels):
        for clip in range(settings["clips_per_image"]):
            rng = np.random.default_rng([settings["seed"], image_index, clip])
            audio, voice, drowned = spoken_digit(synthesizer, int(label), rng, settings)
            pixels, occluded = corrupted_image(image, rng, settings)
            for name, value in zip(columns, (audio, pixels, voice, drowned, occluded)):
                columns[name].append(value)
    return {name: np.array(values) for name, values in columns.items()}


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        request = json.load(handle)
    pairs = synthesize_pairs(request, np.array(request["images"]), np.array(request["labels"]))
    np.savez(request["output"], **pairs)
