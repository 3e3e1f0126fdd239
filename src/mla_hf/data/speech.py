"""Offline speech synthesis with eSpeak NG's C library, called in-process through ctypes.

The library comes from the PyPI package `espeakng-loader` (library and voice data, no system package); Debian's
`libespeak-ng1` is the fallback. The two produce different audio, so `Synthesizer.backend` names the one in use and
AV-Digits keys its cache on it. eSpeak NG is GPL-3.0-or-later: it is called at run time, never redistributed here.
"""

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

import numpy as np


_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POSITION_CHARACTER = 1
_PARAMETERS = {"rate": 1, "pitch": 3, "range": 4}
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Voice:
    """An eSpeak NG voice: `language` (e.g. 'en-us'), an optional `variant` (e.g. 'f2'), speaking `rate` in words
    per minute (80-450), `pitch` and pitch `range` (0-100)."""

    language: str
    variant: str | None = None
    rate: int = 175
    pitch: int = 50
    range: int = 50

    @property
    def name(self) -> str:
        return self.language if self.variant is None else f"{self.language}+{self.variant}"


def _locate_library() -> tuple[str, str, str]:
    """(library path, folder holding `espeak-ng-data`, back-end name)."""
    try:
        import espeakng_loader
    except ImportError:
        espeakng_loader = None
    if espeakng_loader is not None:
        from importlib.metadata import version

        data = espeakng_loader.get_data_path()
        return espeakng_loader.get_library_path(), os.path.dirname(data), f"espeakng-loader-{version('espeakng-loader')}"
    library = ctypes.util.find_library("espeak-ng")
    data_parent = "/usr/lib/x86_64-linux-gnu"
    if library is None or not os.path.isdir(os.path.join(data_parent, "espeak-ng-data")):
        raise RuntimeError(
            "No eSpeak NG found. Install it with `pip install espeakng-loader` (or Debian's `espeak-ng`)."
        )
    return library, data_parent, "system-espeak-ng"


def speech_backend() -> str:
    """Name and version of the eSpeak NG build `Synthesizer` uses."""
    return _locate_library()[2]


class Synthesizer:
    """Speech from text with eSpeak NG. The library holds global state, so a process has one: use `get()`."""

    _instance = None

    def __init__(self):
        path, data_parent, self.backend = _locate_library()
        self._library = ctypes.CDLL(path)
        self.sampling_rate = self._library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent.encode(), 0)
        if self.sampling_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise with data in '{data_parent}'.")
        variants_folder = os.path.join(data_parent, "espeak-ng-data", "voices", "!v")
        self.variants = frozenset(os.listdir(variants_folder))
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept referenced: the library calls it later
        self._library.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> "Synthesizer":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _collect(self, samples, count, events):
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0

    def synthesize(self, text: str, voice: Voice, seed: int = 0) -> np.ndarray:
        """`(samples,)` float32 in [-1, 1] at `self.sampling_rate`. Deterministic for a seed: breathy and whisper
        variants otherwise draw their noise from a clock-seeded generator."""
        # An unknown variant silently falls back to the default voice, so check it against the voice data.
        if voice.variant is not None and voice.variant not in self.variants:
            raise ValueError(f"eSpeak NG has no voice variant '{voice.variant}'.")
        if self._library.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice '{voice.name}'.")
        for parameter, value in (("rate", voice.rate), ("pitch", voice.pitch), ("range", voice.range)):
            self._library.espeak_SetParameter(_PARAMETERS[parameter], value, 0)
        self._library.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        self._chunks.clear()
        encoded = text.encode() + b"\0"
        status = self._library.espeak_Synth(encoded, ctypes.c_size_t(len(encoded)), 0, _POSITION_CHARACTER, 0, 0, None, None)
        self._library.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise RuntimeError(f"eSpeak NG could not synthesise {text!r} with voice '{voice.name}' (status {status}).")
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0
