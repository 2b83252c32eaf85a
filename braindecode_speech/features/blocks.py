"""Speech features of each block, on the brain's clock, cached.

For every block the audio the participant heard is rebuilt at 16 kHz on the recording's clock
(the sound files pasted at their onsets, silence elsewhere, cut at the block's edges so no audio
context crosses a split boundary), the features are computed on it, and the ``[F, n_frames]``
array is cached. The cache key is the audio content (the SHA-256 of each sound file, regions,
placement) and the features' signature, so subjects who heard the same block share one entry
and a replaced sound file gives new features.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import stable_hash
from ..data.cache import ArrayCache, file_digest, fingerprint
from ..fileio import atomic_npy
from . import SpeechFeatures, load_wav

__all__ = ["AUDIO_SFREQ", "block_audio", "block_features"]

logger = logging.getLogger(__name__)

#: rate of the audio given to the feature extractors, Hz
AUDIO_SFREQ = 16000


@lru_cache(maxsize=8)
def _wav(path: str, stat: tuple) -> np.ndarray:
    """The sound file at ``path``, read again when its fingerprint ``stat`` changes."""
    return load_wav(path, sfreq=AUDIO_SFREQ)


def _placements(start: float, stop: float, sounds: pd.DataFrame) -> list[dict[str, Any]]:
    """Regions of sound files audible in ``[start, stop]`` (s on the recording clock)."""
    out = []
    for _, s in sounds.iterrows():
        lo, hi = max(start, s["start"]), min(stop, s["stop"])
        if hi > lo:
            out.append({"file": str(Path(s["filepath"]).resolve()),
                        "file_start": round(float(s["offset"] + lo - s["start"]), 6),
                        "at": round(float(lo - start), 6), "length": round(float(hi - lo), 6)})
    return out


def block_audio(start: float, stop: float, sounds: pd.DataFrame,
                n_samples: int | None = None) -> np.ndarray:
    """The audio heard in ``[start, stop]`` s: ``[n_samples]`` float32 at :data:`AUDIO_SFREQ`
    (default ``round((stop - start) * AUDIO_SFREQ)``; samples after ``stop`` are silent).

    ``sounds`` are the recording's sound spans (:func:`braindecode_speech.data.splits.sound_spans`).
    """
    n = int(round((stop - start) * AUDIO_SFREQ)) if n_samples is None else n_samples
    audio = np.zeros(n, dtype=np.float32)
    for p in _placements(start, stop, sounds):
        wav = _wav(p["file"], fingerprint(p["file"]))
        src = int(round(p["file_start"] * AUDIO_SFREQ))
        dst = int(round(p["at"] * AUDIO_SFREQ))
        count = min(int(round(p["length"] * AUDIO_SFREQ)), n - dst, len(wav) - src)
        if count > 0:
            audio[dst:dst + count] = wav[src:src + count]
    return audio


def block_features(
    start: float, stop: float, sounds: pd.DataFrame, features: SpeechFeatures,
    cache_dir: str | Path,
) -> np.ndarray:
    """Features of the block ``[start, stop]`` s: ``[round((stop - start) * sfreq), F]``
    float32 (time-major, one contiguous read per window) memory-mapped from the cache; frame
    ``i`` is at ``start + i / features.sfreq`` s."""
    n_frames = int(round((stop - start) * features.sfreq))
    # the audio spans exactly n_frames frames: rounding the block to audio samples first could
    # give the features one frame more or less than the brain clock (e.g. 6.21249 s is 745
    # frames at 120 Hz, but its 99,400 audio samples are 745.5 frames, rounded to 746)
    n_samples = int(round(n_frames / features.sfreq * AUDIO_SFREQ))
    audio = [{**p, "file": file_digest(p["file"], cache_dir)}
             for p in _placements(start, stop, sounds)]
    key = stable_hash({"features": features.signature(), "sfreq": AUDIO_SFREQ,
                       "n_frames": n_frames, "n_samples": n_samples, "audio": audio}, 20)

    def build(folder: Path) -> dict[str, Any]:
        feats = features(block_audio(start, stop, sounds, n_samples), AUDIO_SFREQ)
        if feats.shape[1] != n_frames:
            raise RuntimeError(
                f"{type(features).__name__} returned {feats.shape[1]} frames for a "
                f"{stop - start:.3f} s block, expected {n_frames}: feature/brain clock mismatch")
        with atomic_npy(folder / "data.npy", feats.shape[::-1]) as out:
            out[:] = feats.T
        return {"start": start, "stop": stop, "features": features.signature()}

    data, _ = ArrayCache(cache_dir, "features").get_or_create(key, build)
    return data
