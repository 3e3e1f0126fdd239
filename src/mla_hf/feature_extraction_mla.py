"""A batched torch log-mel front end: the features of `ASTFeatureExtractor` (Kaldi-style filter banks), computed
for a whole batch at once with `torch.stft`-style framing and `torch.fft.rfft`, on any device.

Part of the flat group of modules shipped as remote code: it imports nothing from mla_hf.

Feature definition (that of transformers' ASTFeatureExtractor, which follows torchaudio.compliance.kaldi.fbank):
frames of 25 ms every 10 ms without centring; per frame, the mean is removed, pre-emphasis 0.97 is applied and a
symmetric Hann window; a 512-point power spectrum goes through `num_mel_bins` triangular filters on Kaldi's mel
scale (20 Hz to Nyquist), floored at float32's epsilon and log-compressed; `max_length` frames are kept (shorter
clips are padded with zeros), then normalised as (x - mean) / (2 std). It agrees with ASTFeatureExtractor to 1e-3
(float32 against its float64 numpy path).
"""

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.audio_utils import mel_filter_bank


class LogMelFeatureExtractor(SequenceFeatureExtractor):
    """Log-mel filter banks `(batch, max_length, num_mel_bins)` under `input_values`, as ASTFeatureExtractor gives
    them, for a whole batch in torch.

    Args:
        sampling_rate (`int`, defaults to 16000): the rate audio must be given at.
        num_mel_bins (`int`, defaults to 128): mel filters.
        max_length (`int`, defaults to 1024): frames kept (10 ms each); longer audio is cut, shorter padded.
        mean, std (`float`): normalisation, (x - mean) / (2 std); AudioSet's by default, as AST.
        frame_length, hop_length, fft_length (`int`): in samples at 16 kHz: 400 (25 ms), 160 (10 ms), 512.
    """

    model_input_names = ["input_values"]

    def __init__(self, feature_size=1, sampling_rate=16000, num_mel_bins=128, max_length=1024, padding_value=0.0,
                 mean=-4.2677393, std=4.5689974, frame_length=400, hop_length=160, fft_length=512, **kwargs):
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        self.num_mel_bins, self.max_length = num_mel_bins, max_length
        self.mean, self.std = mean, std
        self.frame_length, self.hop_length, self.fft_length = frame_length, hop_length, fft_length
        filters = mel_filter_bank(num_frequency_bins=fft_length // 2 + 1, num_mel_filters=num_mel_bins,
                                  min_frequency=20, max_frequency=sampling_rate // 2, sampling_rate=sampling_rate,
                                  norm=None, mel_scale="kaldi", triangularize_in_mel_space=True)
        self._filters = torch.from_numpy(filters.astype(np.float32))  # (frequencies, mel bins)
        self._window = torch.hann_window(frame_length, periodic=False)

    @classmethod
    def like(cls, feature_extractor) -> "LogMelFeatureExtractor":
        """The torch front end with the settings of an ASTFeatureExtractor (same features, batched and faster)."""
        return cls(sampling_rate=feature_extractor.sampling_rate, num_mel_bins=feature_extractor.num_mel_bins,
                   max_length=feature_extractor.max_length, mean=feature_extractor.mean, std=feature_extractor.std)

    def to_dict(self):
        output = super().to_dict()
        for private in ("_filters", "_window"):
            output.pop(private, None)
        return output

    def __call__(self, raw_speech, sampling_rate: int | None = None, return_tensors: str = "pt",
                 device: torch.device | str | None = None, **kwargs) -> BatchFeature:
        """Featurise one waveform `(samples,)` or a batch (a list of 1-D arrays, possibly of different lengths).

        Returns `input_values` `(batch, max_length, num_mel_bins)` float32, on `device` (the CPU by default).
        """
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(f"{type(self).__name__} takes audio at {self.sampling_rate} Hz, got {sampling_rate} Hz: "
                             "resample it first.")
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}.")
        if isinstance(raw_speech, (np.ndarray, torch.Tensor)) and raw_speech.ndim == 1 or (
                isinstance(raw_speech, list) and raw_speech and np.isscalar(raw_speech[0])):
            raw_speech = [raw_speech]
        features = self.log_mel([torch.from_numpy(np.array(wave, dtype=np.float32)) for wave in raw_speech], device)
        return BatchFeature({"input_values": features if return_tensors == "pt" else features.cpu().numpy()})

    def log_mel(self, waveforms: list[torch.Tensor], device=None) -> torch.Tensor:
        """`(batch, max_length, num_mel_bins)` normalised log-mel features of 1-D waveforms."""
        if any(wave.ndim != 1 for wave in waveforms):
            raise ValueError("Each waveform must be 1-D (mono samples).")
        keep = (self.max_length - 1) * self.hop_length + self.frame_length  # samples the kept frames need
        lengths = torch.tensor([min(len(wave), keep) for wave in waveforms])
        if (lengths < self.frame_length).any():
            raise ValueError(f"A waveform is shorter than one {self.frame_length}-sample frame.")
        batch = torch.zeros(len(waveforms), int(lengths.max()), device=device)
        for row, wave in enumerate(waveforms):
            batch[row, : lengths[row]] = wave[: lengths[row]].to(device)
        frames = batch.unfold(1, self.frame_length, self.hop_length)  # (batch, frames, frame_length), a view
        # Mean removal then pre-emphasis, in one pass: x'_0 = 0.03 (x_0 - m), x'_i = x_i - 0.97 x_(i-1) - 0.03 m.
        emphasised = torch.empty_like(frames)
        torch.sub(frames[..., 1:], frames[..., :-1], alpha=0.97, out=emphasised[..., 1:])
        torch.mul(frames[..., :1], 1 - 0.97, out=emphasised[..., :1])
        emphasised -= (1 - 0.97) * frames.mean(-1, keepdim=True)
        emphasised *= self._window.to(frames.device)
        spectrum = torch.fft.rfft(emphasised, n=self.fft_length)
        power = torch.addcmul(spectrum.real.square(), spectrum.imag, spectrum.imag)  # |X|^2: no sqrt, no strided sum
        mel = torch.log(torch.clamp(power @ self._filters.to(power.device), min=torch.finfo(torch.float32).eps))
        counts = (lengths - self.frame_length) // self.hop_length + 1  # frames each waveform really has
        mel = mel[:, : self.max_length]
        real_frames = torch.arange(mel.shape[1], device=mel.device)[None, :] < counts.to(mel.device)[:, None]
        mel = mel.masked_fill(~real_frames[..., None], 0.0)  # frames of the zero padding
        if mel.shape[1] < self.max_length:
            mel = torch.nn.functional.pad(mel, (0, 0, 0, self.max_length - mel.shape[1]))
        return (mel - self.mean) / (2 * self.std)


__all__ = ["LogMelFeatureExtractor"]
