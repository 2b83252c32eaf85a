"""Preprocessing of a recording into a cached, memory-mapped array at the model's rate.

Steps (paper defaults): pick the MEG or EEG data channels, optional band-pass (off by default,
as in the paper), resample to 120 Hz with a polyphase filter (which includes the anti-alias
low-pass). The data are processed a few channels at a time and written straight into a memory
map, so a recording never has to fit in RAM. Channels are kept in the raw's order; bad channels
are kept (and listed), flat channels are listed so that scaling can neutralise them.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import mne
import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from scipy import signal

from ..config import Config, stable_hash
from ..fileio import atomic_npy
from .cache import ArrayCache, RowReader, file_digest
from .study import Recording, StudyError

__all__ = ["ALGORITHM", "PreprocessConfig", "PreprocessedRecording", "preprocess",
           "resample_polyphase", "sensor_positions_2d", "source_files", "Storage",
           "FLOAT16_HEADROOM"]

logger = logging.getLogger(__name__)

#: version of the computation, part of every cache key: bumped when the same recording and
#: config give different samples (2: the resampling ratio is exact, no longer fitted to the
#: recording's length)
ALGORITHM = 2

#: dtype of the cached preprocessed samples
Storage = Literal["float32", "float16"]

#: float16 storage: each channel is divided by the power of two that brings its largest
#: absolute value to at most ``2 ** FLOAT16_HEADROOM`` (float16 holds up to 65504, and values
#: down to ``2 ** -14`` at full precision: 29 octaves below the channel's peak)
FLOAT16_HEADROOM = 15


class PreprocessConfig(Config):
    """Brain-signal preprocessing. Defaults are the paper's."""

    sfreq: float = Field(120.0, gt=0)
    """output sampling rate, Hz"""
    highpass: float | None = Field(None, gt=0)
    """high-pass cut-off, Hz (None: off, as in the paper)"""
    lowpass: float | None = Field(None, gt=0)
    """low-pass cut-off, Hz, applied before resampling (None: only the resampler's anti-alias)"""
    chunk_mb: int = Field(512, ge=1)
    """memory budget of one block of channels processed at once, MB (does not change the
    result; bounds memory for long recordings)"""
    n_jobs: int | None = Field(None, ge=1)
    """threads filtering and resampling groups of channels in parallel (None: as many as
    torch uses, ``torch.get_num_threads()``; does not change the result)"""

    _exclude_from_signature = ("chunk_mb", "n_jobs")

    @model_validator(mode="after")
    def _band(self) -> PreprocessConfig:
        if self.highpass is not None and self.lowpass is not None \
                and self.highpass >= self.lowpass:
            raise ValueError(f"highpass ({self.highpass} Hz) must be below lowpass "
                             f"({self.lowpass} Hz)")
        return self


@dataclass
class PreprocessedRecording:
    """A recording's data channels at ``sfreq``, memory-mapped from the cache.

    ``samples`` is the cached ``[T, C]`` array, stored time-major so that a window is one
    contiguous read: float32 in SI units (T for MEG, V for EEG), or float16 storage (``scale``
    is then the ``[C]`` powers of two that give SI units: ``samples * scale``, see
    :data:`FLOAT16_HEADROOM`). Read it through :meth:`reader`; ``data`` is the ``[C, T]``
    samples in SI units.
    ``positions`` is ``[C, 2]`` sensor positions on the 2D layout, normalised to [0, 1];
    ``events`` is the validated events table (times in s on the recording's clock; sample ``i``
    is at ``i / sfreq`` s).
    """

    recording: Recording
    samples: np.memmap
    sfreq: float
    ch_names: list[str]
    positions: np.ndarray
    bads: list[str]
    events: pd.DataFrame
    scale: np.ndarray | None = None

    def reader(self) -> RowReader:
        """Reader of :attr:`samples` giving float32 rows in SI units."""
        return RowReader(self.samples, self.scale)

    @property
    def uid(self) -> str:
        return self.recording.uid

    @property
    def subject(self) -> str:
        return self.recording.subject

    @property
    def data(self) -> np.ndarray:
        """``[C, T]`` samples in SI units: a view of :attr:`samples` (float32 storage) or a
        decoded float32 copy (float16 storage)."""
        if self.scale is None:
            return self.samples.T
        return (self.samples * self.scale).T

    @property
    def n_times(self) -> int:
        return self.samples.shape[0]

    @property
    def duration(self) -> float:
        """Duration in s."""
        return self.n_times / self.sfreq


def sensor_positions_2d(info: mne.Info) -> np.ndarray:
    """2D layout positions of the channels of ``info``, ``[C, 2]`` normalised to [0, 1].

    Uses MNE's layout machinery (``find_layout`` for MEG, ``make_eeg_layout`` for EEG): the
    channel centres of the layout boxes, then min-max scaled jointly on x and y.
    """
    types = set(info.get_channel_types())
    try:
        if types <= {"eeg"}:
            layout = mne.channels.make_eeg_layout(info, exclude=[])
        else:
            # MEGIN/Elekta systems mix planar gradiometers and magnetometers: their layout
            # holds both (``Vectorview-all``)
            ch_type = "grad" if types == {"grad"} else "mag" if types == {"mag"} else None
            layout = mne.channels.find_layout(info, ch_type=ch_type, exclude=[])
    except (RuntimeError, ValueError) as exc:
        raise StudyError(f"cannot place the sensors on a 2D layout ({exc}); the recording "
                         "needs channel positions (a montage for EEG)") from None
    index = {name: i for i, name in enumerate(layout.names)}
    # CTF sensors are named "MLC11-2622" in data files, "MLC11" in MNE's layout
    index.update({ch: index[ch.split("-")[0]] for ch in info.ch_names
                  if ch not in index and ch.split("-")[0] in index})
    missing = [ch for ch in info.ch_names if ch not in index]
    if missing:
        raise StudyError(f"sensors {missing[:5]} have no 2D layout position ({layout.kind})")
    pos = layout.pos[[index[ch] for ch in info.ch_names]]
    xy = pos[:, :2] + pos[:, 2:4] / 2
    xy = xy - xy.min(axis=0)
    return (xy / max(float(xy.max()), 1e-12)).astype(np.float32)


def _flat_channels(data: np.ndarray, names: list[str]) -> list[str]:
    return [names[i] for i in np.flatnonzero(np.ptp(data, axis=1) == 0)]


def preprocess(
    recording: Recording, config: PreprocessConfig, cache_dir: str | Path,
    storage: Storage = "float32",
) -> PreprocessedRecording:
    """Preprocess ``recording`` (or load it from the cache), stored as ``storage``.

    The cache entry is keyed by the content of the recording's files (:func:`source_files`),
    the configuration's signature and the storage dtype: a file rewritten or replaced gives a
    new entry.

    Raises :class:`StudyError` naming the file when the data contain NaN/inf or have no data
    channels, or when events fall after the end of the recording.
    """
    cache = ArrayCache(cache_dir, "preprocessed")
    path = Path(recording.path)
    identity = {
        "uid": recording.uid,
        "content": [(f.relative_to(path.parent).as_posix(), file_digest(f, cache_dir))
                    for f in source_files(path)],
        "config": config.signature(),
        "algorithm": ALGORITHM,
    }
    if storage != "float32":  # float32 entries keep the keys they had before float16 came
        identity["storage"] = storage
    key = stable_hash(identity, 20)

    def build(folder: Path) -> dict[str, Any]:
        return _build(recording, config, folder, storage)

    data, meta = cache.get_or_create(key, build)
    events = recording.events(duration=meta["duration"])
    return PreprocessedRecording(
        recording=recording,
        samples=data,
        sfreq=meta["sfreq"],
        ch_names=meta["ch_names"],
        positions=np.asarray(meta["positions"], dtype=np.float32),
        bads=meta["bads"],
        events=events,
        scale=None if storage == "float32" else
        np.ldexp(np.float32(1), np.asarray(meta["scale_exponent"])).astype(np.float32),
    )


def source_files(path: Path) -> list[Path]:
    """The files a raw recording ``path`` is read from, sorted: every file of a folder (a CTF
    ``.ds``), or the file and its siblings of the same name (``x.vhdr``: ``x.eeg``, ``x.vmrk``;
    a BIDS sidecar ``x.json``). Empty when ``path`` does not exist (reading it fails later,
    naming it)."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    if not path.is_file():
        return []
    return sorted(p for p in path.parent.iterdir()
                  if p.is_file() and (p == path or p.name.startswith(f"{path.stem}.")))


def resample_polyphase(x: np.ndarray, ratio: Fraction) -> np.ndarray:
    """``x [..., T]`` resampled by ``ratio`` (output rate / input rate) with the filter of
    ``mne.filter.resample(..., method="polyphase")`` (a Kaiser-windowed sinc, beta 5, of ±10
    samples at the lower of the two rates; reflection at the edges) and the exact ratio: output
    sample ``n`` is at ``n / ratio`` input samples. (mne derives the ratio from the output
    length it rounds, so its samples drift off the output clock by up to half a sample over a
    recording, which the causal stream resampler could not reproduce.)"""
    return signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1,
                                window=("kaiser", 5.0), padtype="reflect")


def _filter_and_resample(x: np.ndarray, sfreq: float, ratio: Fraction,
                         config: PreprocessConfig) -> np.ndarray:
    """Band-pass (if configured) and :func:`resample_polyphase` ``x [C, T]`` by ``ratio``,
    channels split over ``config.n_jobs`` threads (numpy and scipy release the GIL)."""

    def run(rows: np.ndarray) -> np.ndarray:
        if config.highpass is not None or config.lowpass is not None:
            rows = mne.filter.filter_data(rows, sfreq, config.highpass, config.lowpass,
                                          verbose=False)
        return resample_polyphase(rows, ratio) if ratio != 1 else rows

    n_jobs = min(config.n_jobs or torch.get_num_threads(), len(x))
    if n_jobs <= 1:
        return run(x)
    with ThreadPoolExecutor(n_jobs) as pool:
        return np.concatenate(list(pool.map(run, np.array_split(x, n_jobs))))


def _build(recording: Recording, config: PreprocessConfig, folder: Path,
           storage: Storage) -> dict[str, Any]:
    raw = recording.raw()
    picks = mne.pick_types(raw.info, meg=True, eeg=True, ref_meg=False, exclude=[])
    if len(picks) == 0:
        raise StudyError(f"{recording.path}: no MEG or EEG data channel in {raw.ch_names[:8]}...")
    info = mne.pick_info(raw.info, picks)
    names = info.ch_names
    positions = sensor_positions_2d(info)
    sfreq_in = raw.info["sfreq"]
    ratio = Fraction(config.sfreq / sfreq_in).limit_denominator(1000)
    n_in = raw.n_times
    n_out = int(round(n_in * config.sfreq / sfreq_in))
    logger.info("Preprocessing %s: %d channels, %.0f -> %.0f Hz, %.1f s",
                recording.uid, len(picks), sfreq_in, config.sfreq, n_in / sfreq_in)
    exponent = np.zeros(len(picks), dtype=np.int64)
    flat: list[str] = []
    per_chunk = max(1, int(config.chunk_mb * 2**20 // (8 * n_in)))
    with atomic_npy(folder / "data.npy", (n_out, len(picks)), np.dtype(storage)) as out:
        for start in range(0, len(picks), per_chunk):
            chunk = picks[start:start + per_chunk]
            x = raw.get_data(picks=chunk)
            if not np.isfinite(x).all():
                bad = [raw.ch_names[chunk[i]]
                       for i in np.flatnonzero(~np.isfinite(x).all(axis=1))]
                raise StudyError(f"{recording.path}: NaN or infinite values in channels "
                                 f"{bad[:5]}")
            flat += _flat_channels(x, [raw.ch_names[c] for c in chunk])
            x = _filter_and_resample(x, sfreq_in, ratio, config)
            if storage == "float16":
                peak = np.abs(x).max(axis=1)
                exp = np.where(peak > 0, np.ceil(np.log2(np.where(peak > 0, peak, 1))), 0)
                exponent[start:start + len(chunk)] = exp.astype(np.int64) - FLOAT16_HEADROOM
                x = np.ldexp(x, -exponent[start:start + len(chunk), None])
            n = min(n_out, x.shape[1])
            out[:n, start:start + len(chunk)] = x[:, :n].T
            if n < n_out:  # resampler rounding: repeat the last sample
                out[n:, start:start + len(chunk)] = x[:, n - 1]
    if flat:
        logger.warning("%s: %d flat channels %s (neutralised by scaling)",
                       recording.path, len(flat), flat[:5])
    return {
        "uid": recording.uid,
        "source": str(recording.path),
        "sfreq": config.sfreq,
        "ch_names": names,
        "ch_types": info.get_channel_types(),
        "positions": positions.tolist(),
        "bads": [b for b in raw.info["bads"] if b in names],
        "flat": flat,
        "duration": n_in / sfreq_in,
        **({"scale_exponent": exponent.tolist()} if storage == "float16" else {}),
    }
