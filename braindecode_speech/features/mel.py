"""Log-mel spectrogram: the paper's "Mel" baseline speech features."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from ..config import stable_hash
from .audio import resample
from .base import MelFeaturesConfig, SpeechFeatures

__all__ = ["MelFeatures"]

logger = logging.getLogger(__name__)


class MelFeatures(SpeechFeatures):
    """``log10(mel power + log_eps)`` of the standardised audio, ``[n_mels, n_frames]``.

    The settings follow the paper's mel features: audio at 16 kHz scaled to zero mean and unit
    variance, periodic Hann window of ``n_fft`` samples normalised to unit energy, power
    spectrum, HTK mel filters from 0 Hz to Nyquist without area normalisation (with 120 bands
    and a 512-point FFT the lowest band covers no FFT bin and stays at ``log10(log_eps)``).
    STFT frames are centred on multiples of ``hop_length`` (the audio is reflect-padded by
    ``n_fft // 2``), so STFT frame ``t`` is at ``t * hop_length / audio_sfreq`` s; they are then
    resampled to ``sfreq`` (band-limited, no delay), so frame ``i`` is centred on ``i / sfreq`` s.

    Parameters
    ----------
    config : the settings (``n_mels``, ``n_fft``, ``hop_length``, ``log_eps``).
    sfreq : output frame rate, Hz.
    audio_sfreq : rate the audio is resampled to before the STFT, Hz.
    """

    def __init__(self, config: MelFeaturesConfig, sfreq: float, audio_sfreq: int = 16000) -> None:
        n_mels, n_fft = config.n_mels, config.n_fft
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.hop_length = config.hop_length
        self.log_eps = config.log_eps
        self.audio_sfreq = audio_sfreq
        self.sfreq = sfreq
        self.dimension = n_mels
        with warnings.catch_warnings():  # empty bands are reported below, with their indices
            warnings.filterwarnings("ignore", "At least one mel filter has all zero values")
            self.filters = mel_filter_bank(  # [n_fft // 2 + 1, n_mels]
                num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                max_frequency=audio_sfreq / 2, sampling_rate=audio_sfreq, norm=None,
                mel_scale="htk")
        empty = np.flatnonzero(self.filters.max(axis=0) == 0)
        if empty.size:
            logger.info("Mel bands %s cover no FFT bin (n_fft=%d, n_mels=%d): they stay at "
                        "log10(log_eps)", empty.tolist(), n_fft, n_mels)
        window = window_function(n_fft, "hann", periodic=True)
        self.window = window / np.sqrt(np.sum(window**2))

    def signature(self) -> str:
        return stable_hash({"class": type(self).__name__, "n_mels": self.n_mels,
                            "n_fft": self.n_fft, "hop_length": self.hop_length,
                            "log_eps": self.log_eps, "audio_sfreq": self.audio_sfreq,
                            "sfreq": self.sfreq, "mel_scale": "htk", "window": "hann"})

    def _compute(self, wav: np.ndarray, sfreq: float) -> np.ndarray:
        wav = resample(wav, sfreq, self.audio_sfreq).astype(np.float64)
        wav = (wav - wav.mean()) / (wav.std() + 1e-8)
        mel_power = spectrogram(  # [n_mels, 1 + n // hop_length]
            wav, self.window, frame_length=self.n_fft, hop_length=self.hop_length, power=2.0,
            center=True, pad_mode="reflect", mel_filters=self.filters, mel_floor=0.0,
            dtype=np.float64)
        log_mel = np.log10(mel_power + self.log_eps)
        return resample(log_mel, self.audio_sfreq / self.hop_length, self.sfreq)
