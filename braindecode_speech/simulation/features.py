"""Stimulus features that drive the simulated brain, on the recording's clock.

From an events table in the common schema (sound rows with ``filepath`` and ``offset``, word
rows with ``word``), build at :data:`MODEL_SFREQ`:

- ``envelope`` ``[T]``: broadband loudness (compressed amplitude envelope);
- ``edges`` ``[T]``: acoustic edges, the half-wave rectified derivative of the envelope;
- ``bands`` ``[N_BANDS, T]``: spectro-temporal envelopes in log-spaced bands (100-7000 Hz);
- ``word_onsets`` ``[T]``: a unit impulse at each word onset;
- ``lexical`` ``[LEXICAL_DIM, T]``: at each word onset, an impulse scaled by the word's lexical
  vector, a hashed embedding of the lower-cased word (different words, different vectors; the
  same word always gets the same vector);
- ``phonemes`` ``[N_PHONEMES, T]``: a unit impulse in the row of the phoneme's ARPAbet class
  (:data:`~braindecode_speech.data.labels.ARPABET`) at each phoneme onset (phoneme rows with a
  label of another phone set add nothing);
- ``playing`` ``[T]`` (bool): whether a sound is playing.

Impulses at fractional sample positions are split linearly between the two nearest samples, so
onsets keep sub-sample timing.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
from scipy.signal import stft

from ..data.labels import ARPABET, phoneme_class

__all__ = ["MODEL_SFREQ", "N_BANDS", "LEXICAL_DIM", "N_PHONEMES", "StimulusFeatures", "stimulus_features",
           "audio_features", "lexical_vector"]

#: sampling rate of the stimulus features and of the source activity, Hz
MODEL_SFREQ = 100.0
N_BANDS = 8
LEXICAL_DIM = 16
N_PHONEMES = len(ARPABET)
_BAND_EDGES_HZ = np.geomspace(100.0, 7000.0, N_BANDS + 1)
_COMPRESSION = 0.3  # amplitude ** 0.3, a loudness-like compression


@dataclass
class StimulusFeatures:
    """Features on the recording's clock at :data:`MODEL_SFREQ` (see module docstring)."""

    envelope: np.ndarray
    edges: np.ndarray
    bands: np.ndarray
    word_onsets: np.ndarray
    lexical: np.ndarray
    phonemes: np.ndarray
    playing: np.ndarray

    @property
    def n_times(self) -> int:
        return len(self.envelope)


def lexical_vector(word: str) -> np.ndarray:
    """The hashed lexical embedding of ``word``: ``[LEXICAL_DIM]``, unit variance entries."""
    digest = hashlib.sha256(word.lower().encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return rng.standard_normal(LEXICAL_DIM)


def audio_features(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Envelope ``[T]``, edges ``[T]`` and band envelopes ``[N_BANDS, T]`` of a wav file at
    :data:`MODEL_SFREQ` (frame ``t`` covers the 25 ms centred on ``t / MODEL_SFREQ`` s).

    Results are cached per file version (path, size and modification time)."""
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read sound file {path}: {exc}") from exc
    return _audio_features(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _audio_features(path: str, size: int, mtime_ns: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        audio, rate = soundfile.read(path, dtype="float64", always_2d=True)
    except (RuntimeError, OSError) as exc:  # soundfile raises LibsndfileError(RuntimeError)
        raise FileNotFoundError(f"cannot read sound file {path}: {exc}") from exc
    audio = audio.mean(axis=1)
    hop = rate / MODEL_SFREQ
    if hop != int(hop):
        raise ValueError(f"{path}: sample rate {rate} Hz is not a multiple of {MODEL_SFREQ} Hz")
    window = int(round(0.025 * rate))
    freqs, _, spec = stft(audio, fs=rate, nperseg=window, noverlap=window - int(hop),
                          boundary="even", padded=True)
    power = np.abs(spec) ** 2
    n_frames = int(np.ceil(len(audio) / hop))
    bands = np.stack([
        power[(freqs >= lo) & (freqs < hi)].sum(axis=0)
        for lo, hi in zip(_BAND_EDGES_HZ[:-1], _BAND_EDGES_HZ[1:])
    ])[:, :n_frames]
    envelope = bands.sum(axis=0) ** (_COMPRESSION / 2)
    bands = bands ** (_COMPRESSION / 2)
    edges = np.maximum(np.diff(envelope, prepend=envelope[:1]), 0.0)
    return envelope, edges, bands


def stimulus_features(events: pd.DataFrame, n_times: int) -> StimulusFeatures:
    """Features of the stimuli in ``events`` over a recording of ``n_times`` model samples.

    Sound rows play their file from ``offset`` s for ``duration`` s (to the end of the file
    when ``duration`` is 0 or missing); word and phoneme rows add impulses at their onsets.
    """
    envelope = np.zeros(n_times)
    edges = np.zeros(n_times)
    bands = np.zeros((N_BANDS, n_times))
    playing = np.zeros(n_times, dtype=bool)
    for row in events[events["kind"] == "sound"].itertuples():
        env, edg, bnd = audio_features(row.filepath)
        first = int(round((0.0 if pd.isna(row.offset) else row.offset) * MODEL_SFREQ))
        length = len(env) - first
        if not pd.isna(row.duration) and row.duration > 0:
            length = min(length, int(round(row.duration * MODEL_SFREQ)))
        start = int(round(row.onset * MODEL_SFREQ))
        length = max(0, min(length, n_times - start))
        envelope[start:start + length] += env[first:first + length]
        edges[start:start + length] += edg[first:first + length]
        bands[:, start:start + length] += bnd[:, first:first + length]
        playing[start:start + length] = True
    words = events[events["kind"] == "word"]
    word_onsets = np.zeros(n_times)
    lexical = np.zeros((LEXICAL_DIM, n_times))
    for onset, word in zip(words["onset"], words["word"]):
        position = onset * MODEL_SFREQ
        _add_impulse(word_onsets[None], position, np.ones(1))
        _add_impulse(lexical, position, lexical_vector(word))
    phonemes = np.zeros((N_PHONEMES, n_times))
    if "phoneme" in events:
        rows = events[events["kind"] == "phoneme"]
        for onset, label in zip(rows["onset"], rows["phoneme"]):
            name = phoneme_class(label)
            if name is not None:
                one_hot = np.zeros(N_PHONEMES)
                one_hot[ARPABET.index(name)] = 1.0
                _add_impulse(phonemes, onset * MODEL_SFREQ, one_hot)
    return StimulusFeatures(envelope, edges, bands, word_onsets, lexical, phonemes, playing)


def _add_impulse(target: np.ndarray, position: float, weights: np.ndarray) -> None:
    """Add ``weights`` ``[C]`` at fractional time index ``position`` of ``target [C, T]``."""
    left = int(np.floor(position))
    frac = position - left
    if 0 <= left < target.shape[1]:
        target[:, left] += weights * (1 - frac)
    if 0 <= left + 1 < target.shape[1]:
        target[:, left + 1] += weights * frac
