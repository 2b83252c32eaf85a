"""Reading speech audio and resampling signals (audio or feature frames) between rates.

Resampling is band-limited and polyphase (:func:`scipy.signal.resample_poly`): sample ``j`` of
the output is at time ``j / sfreq_out`` when sample ``i`` of the input is at ``i / sfreq_in``
(no delay), and the output has ``ceil(n * sfreq_out / sfreq_in)`` samples.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import resample_poly

from ..data.stimuli import wav_truncation

__all__ = ["AudioError", "load_wav", "resample"]

logger = logging.getLogger(__name__)


class AudioError(ValueError):
    """An audio file cannot be used; the message names the file and what is wrong."""


def resample(x: np.ndarray, sfreq_in: float, sfreq_out: float, axis: int = -1) -> np.ndarray:
    """Resample ``x`` along ``axis`` from ``sfreq_in`` to ``sfreq_out`` Hz.

    The mean along ``axis`` is taken out before filtering and added back, and the signal is
    extended by repeating its edge values, so a constant stays exactly constant and the first and
    last samples are not pulled towards zero. The ratio of the two rates must be a fraction with
    a denominator below 10,000 (e.g. 16000/44100 = 160/441).
    """
    if sfreq_in <= 0 or sfreq_out <= 0:
        raise ValueError(f"Sampling rates must be positive, got {sfreq_in} -> {sfreq_out} Hz")
    ratio = Fraction(sfreq_out / sfreq_in).limit_denominator(10_000)
    if abs(float(ratio) - sfreq_out / sfreq_in) > 1e-9 * sfreq_out / sfreq_in:
        raise ValueError(f"Cannot resample {sfreq_in} -> {sfreq_out} Hz: the ratio is not a "
                         "simple fraction")
    if ratio == 1:
        return x
    mean = x.mean(axis=axis, keepdims=True)
    out = resample_poly(x - mean, ratio.numerator, ratio.denominator, axis=axis, padtype="edge")
    return (out + mean).astype(x.dtype, copy=False)


def load_wav(path: str | Path, sfreq: int = 16000) -> np.ndarray:
    """Read an audio file as a mono ``[n_samples]`` float32 array at ``sfreq`` Hz.

    Channels are averaged; the signal is resampled with :func:`resample` when the file's rate
    differs. Raises :class:`AudioError` (naming the file) when the file is missing, unreadable,
    empty, truncated (a WAV holding less audio than its header declares: the rest would be
    silence) or contains non-finite samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"Audio file not found: {path}")
    truncated = wav_truncation(path)
    if truncated:
        raise AudioError(f"Audio file {path} is {truncated}")
    try:
        data, file_sfreq = soundfile.read(path, dtype="float32", always_2d=True)
    except soundfile.SoundFileError as exc:
        raise AudioError(f"Cannot read audio file {path}: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioError(f"Audio file {path} contains no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"Audio file {path} contains NaN or infinite samples")
    wav = data.mean(axis=1)
    if file_sfreq != sfreq:
        logger.debug("Resampling %s from %d to %d Hz", path, file_sfreq, sfreq)
        wav = resample(wav, file_sfreq, sfreq)
    return np.ascontiguousarray(wav, dtype=np.float32)
