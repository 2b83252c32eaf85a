"""Window datasets: brain and speech windows, normalised, as PyTorch tensors.

Brain windows are read from the preprocessing cache (memory maps), baseline-corrected (per
channel, the mean of the brain over the 0.5 s before the anchor, before the brain lag shift: the
paper's ``[a - 0.5, a]`` s), robust-scaled per recording and channel (median / IQR fitted on
training windows) and clamped. Speech windows are read from the block-feature cache and
standard-scaled with statistics fitted on training windows. Each switch is a config field, as
the paper's ablations turn them off.

``dataset[i]`` is the simple per-window path (the reference); :meth:`WindowDataset.get_batch`
gathers a batch at once, bit for bit the same windows (see :mod:`~braindecode_speech.data.batches`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ..config import Config
from . import kernels
from .batches import DataConfig, DeviceStore, read_runs
from .cache import RowReader

__all__ = ["NormConfig", "RobustScaler", "FeatureScaler", "WindowDataset", "Window",
           "fit_robust_scaler", "read_brain_window"]

logger = logging.getLogger(__name__)

#: the fused kernel's centre and scale arguments when a recording is not scaled (unused)
_NO_SCALE = np.zeros(0, dtype=np.float32)
#: the batch entries held time-major in memory (``[B, T, C]`` seen as ``[B, C, T]``)
_TIME_MAJOR = ("brain", "speech")


class NormConfig(Config):
    """Normalisation of brain and speech windows. Defaults are the paper's."""

    baseline: bool = True
    """subtract, per channel, the mean of the brain over the ``-windows.tmin`` s (0.5 s) before
    the anchor"""
    baseline_window: Literal["paper", "shifted"] = "paper"
    """where that interval is taken: brain ``[a - 0.5, a]`` s, before the ``brain_lag`` shift
    (``paper``), or the first 0.5 s of the lag-shifted brain window, brain
    ``[a - 0.5 + lag, a + lag]`` s (``shifted``, ours before)"""
    robust_scale: bool = True
    """per recording and channel: (x - median) / (q75 - q25), fitted on training windows"""
    clamp: float | None = Field(20.0, gt=0)
    """clamp scaled brain values to ± this (None: off)"""
    n_scaling_windows: int = Field(200, ge=1)
    """training windows per recording used to fit the robust scaler"""
    n_feature_scaling_windows: int = Field(2000, ge=1)
    """training windows (a random subset) used to fit the speech-feature scaler"""
    standardize_features: bool = True
    """standard-scale speech features with statistics of the training windows"""


@dataclass
class Window:
    """Where one window's data live: recording index, brain start sample, block-feature index,
    frame of the speech window inside the block, subject index."""

    recording: int
    brain_start: int
    block: int
    speech_start: int
    subject: int


class RobustScaler:
    """Per-channel robust scaling, ``(x - median) / IQR``; flat channels (IQR = 0) map to 0."""

    def __init__(self, center: np.ndarray, scale: np.ndarray) -> None:
        self.center = center.astype(np.float32)
        self.scale = np.where(scale > 0, scale, np.inf).astype(np.float32)

    @classmethod
    def fit(cls, windows: np.ndarray) -> RobustScaler:
        """Fit on ``[N, C, T]`` windows."""
        flat = windows.transpose(1, 0, 2).reshape(windows.shape[1], -1)
        q25, median, q75 = np.percentile(flat, [25, 50, 75], axis=1)
        return cls(median, q75 - q25)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Scale ``[C, T]`` or ``[N, C, T]``."""
        return (x - self.center[:, None]) / self.scale[:, None]


class FeatureScaler:
    """Per-dimension standard scaling of speech features ``[F, T]``."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = mean.astype(np.float32)
        self.std = np.where(std > 0, std, 1.0).astype(np.float32)

    @classmethod
    def fit(cls, windows: list[np.ndarray]) -> FeatureScaler:
        """Fit on a list of ``[F, T]`` windows."""
        x = np.concatenate([w for w in windows], axis=1).astype(np.float64)
        return cls(x.mean(axis=1), x.std(axis=1))

    def __call__(self, y: np.ndarray) -> np.ndarray:
        return (y - self.mean[:, None]) / self.std[:, None]


class WindowDataset(torch.utils.data.Dataset):
    """Normalised brain/speech windows.

    Parameters
    ----------
    brains : per recording, a reader of its ``[T_r, C_r]`` preprocessed samples.
    positions : per recording, ``[C_r, 2]`` sensor layout positions in [0, 1].
    features : per block, a reader of its ``[n_frames, F]`` speech features.
    windows : the windows to serve.
    scalers : per recording, its :class:`RobustScaler` (or None when scaling is off).
    feature_scaler : the :class:`FeatureScaler` (or None).
    n_channels : channels of the padded brain tensor (max over recordings).
    n_times : samples per window.
    baseline_samples : samples averaged for the baseline (0: off).
    clamp : clamp value (None: off).
    baseline_offset : first baseline sample relative to each window's brain start (the paper's
        ``-lag`` samples: the baseline is taken before the brain lag shift; 0: the first
        samples of the brain window).
    data_config : how batches are read (:class:`~braindecode_speech.data.batches.DataConfig`;
        its ``device`` needs ``store``).
    store : the study held on a device (:meth:`device_store`, shared by the splits), or None to
        read the memory maps.

    Items are dicts: ``brain [C, T]``, ``mask [C]`` (True on real sensors), ``positions [C, 2]``,
    ``subject`` (long), ``speech [F, T]``, ``index`` (position in ``windows``).
    """

    def __init__(self, brains: list[RowReader], positions: list[np.ndarray],
                 features: list[RowReader], windows: list[Window],
                 scalers: list[RobustScaler | None], feature_scaler: FeatureScaler | None,
                 n_channels: int, n_times: int, baseline_samples: int,
                 clamp: float | None, baseline_offset: int = 0,
                 data_config: DataConfig | None = None, store: DeviceStore | None = None) -> None:
        self.brains = brains
        self.positions = positions
        self.features = features
        self.windows = windows
        self.scalers = scalers
        self.feature_scaler = feature_scaler
        self.n_channels = n_channels
        self.n_times = n_times
        self.baseline_samples = baseline_samples
        self.baseline_offset = baseline_offset
        self.clamp = clamp
        self.data_config = data_config or DataConfig()
        self.store = store
        self._mask = np.zeros((len(positions), n_channels), dtype=bool)
        self._positions = np.zeros((len(positions), n_channels, 2), dtype=np.float32)
        for r, pos in enumerate(positions):
            self._mask[r, :len(pos)] = True
            self._positions[r, :len(pos)] = pos

    @classmethod
    def device_store(cls, brains: list[RowReader], features: list[RowReader],
                     scalers: list[RobustScaler | None], feature_scaler: FeatureScaler | None,
                     n_channels: int, device: str | torch.device) -> DeviceStore:
        """The study (``brains``, ``features``) and its normalisation held on ``device``."""
        return DeviceStore(
            brains, features, [None if s is None else s.center for s in scalers],
            [None if s is None else s.scale for s in scalers],
            None if feature_scaler is None else feature_scaler.mean,
            None if feature_scaler is None else feature_scaler.std, n_channels, device)

    @property
    def windows(self) -> list[Window]:
        return self._windows

    @windows.setter
    def windows(self, windows: list[Window]) -> None:
        self._windows = windows
        self._table = {name: np.array([getattr(w, name) for w in windows], dtype=np.int64)
                       for name in ("recording", "brain_start", "block", "speech_start",
                                    "subject")}

    def __len__(self) -> int:
        return len(self.windows)

    def brain_window(self, i: int) -> np.ndarray:
        """The normalised ``[C_r, T]`` brain window ``i`` (unpadded)."""
        w = self.windows[i]
        x = read_brain_window(self.brains[w.recording], w.brain_start, self.n_times,
                              self.baseline_samples, self.baseline_offset)
        scaler = self.scalers[w.recording]
        if scaler is not None:
            x = scaler(x)
        if self.clamp is not None:
            np.clip(x, -self.clamp, self.clamp, out=x)
        return x

    def speech_window(self, i: int) -> np.ndarray:
        """The normalised ``[F, T]`` speech window ``i``."""
        w = self.windows[i]
        y = np.ascontiguousarray(
            self.features[w.block].read(w.speech_start, w.speech_start + self.n_times).T)
        return self.feature_scaler(y) if self.feature_scaler is not None else y

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        w = self.windows[i]
        x = self.brain_window(i)
        n_ch = x.shape[0]
        brain = np.zeros((self.n_channels, self.n_times), dtype=np.float32)
        brain[:n_ch] = x
        positions = np.zeros((self.n_channels, 2), dtype=np.float32)
        positions[:n_ch] = self.positions[w.recording]
        mask = np.zeros(self.n_channels, dtype=bool)
        mask[:n_ch] = True
        return {
            "brain": torch.from_numpy(brain),
            "mask": torch.from_numpy(mask),
            "positions": torch.from_numpy(positions),
            "subject": torch.tensor(w.subject, dtype=torch.long),
            "speech": torch.from_numpy(self.speech_window(i)),
            "index": torch.tensor(i, dtype=torch.long),
        }


    def empty_batch(self, n: int, pin_memory: bool = False) -> dict[str, torch.Tensor] | None:
        """Buffers for a batch of ``n`` windows to give :meth:`get_batch` (pinned memory when
        ``pin_memory``); None with a device store, whose batches are made on the device.
        ``brain [n, C, T]`` and ``speech [n, F, T]`` are views of time-major memory
        (``[n, T, C]``, ``[n, T, F]``), the layout windows are stored in."""
        if self.store is not None:
            return None
        n_features = self.features[0].shape[1] if self.features else 0
        shapes = {"brain": ((n, self.n_times, self.n_channels), torch.float32),
                  "mask": ((n, self.n_channels), torch.bool),
                  "positions": ((n, self.n_channels, 2), torch.float32),
                  "subject": ((n,), torch.long),
                  "speech": ((n, self.n_times, n_features), torch.float32),
                  "index": ((n,), torch.long)}
        out = {k: torch.empty(shape, dtype=dtype, pin_memory=pin_memory)
               for k, (shape, dtype) in shapes.items()}
        return {k: v.transpose(1, 2) if k in _TIME_MAJOR else v for k, v in out.items()}

    def get_batch(self, indices: Sequence[int] | np.ndarray,
                  out: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The windows ``indices`` as one batch: ``brain [B, C, T]``, ``mask [B, C]``,
        ``positions [B, C, 2]``, ``subject [B]``, ``speech [B, F, T]``, ``index [B]``, bit for
        bit ``torch.utils.data.default_collate([self[i] for i in indices])``.

        From the memory maps (written into ``out``, buffers of :meth:`empty_batch` for exactly
        ``B`` windows, when given), or gathered on the device of the store (new tensors there).
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"window indices out of range [0, {len(self)})")
        rec, brain_start, block, speech_start, subject = (
            self._table[k][idx] for k in ("recording", "brain_start", "block", "speech_start",
                                          "subject"))
        if self.store is not None:
            store = self.store
            device = store.device
            return {
                "brain": store.brain_windows(rec, brain_start, self.n_times,
                                             self.baseline_samples, self.baseline_offset,
                                             self.clamp),
                "mask": torch.from_numpy(self._mask[rec]).to(device),
                "positions": torch.from_numpy(self._positions[rec]).to(device),
                "subject": torch.from_numpy(subject).to(device),
                "speech": store.speech_windows(block, speech_start, self.n_times),
                "index": torch.from_numpy(idx).to(device),
            }
        out = self.empty_batch(len(idx)) if out is None else out
        self._gather_brain(rec, brain_start, out["brain"].numpy())
        self._gather_speech(block, speech_start, out["speech"].numpy())
        np.take(self._mask, rec, axis=0, out=out["mask"].numpy())
        np.take(self._positions, rec, axis=0, out=out["positions"].numpy())
        out["subject"].numpy()[:] = subject
        out["index"].numpy()[:] = idx
        return out

    def _gather_brain(self, recording: np.ndarray, start: np.ndarray, out: np.ndarray) -> None:
        """Normalised brain windows into ``out [B, C, T]``: the operations of
        :meth:`brain_window` in the same order (elementwise, so the same values in any memory
        layout), each window written straight from the rows read once per run of windows
        (:func:`~braindecode_speech.data.batches.read_runs`) into its slot seen time-major
        (``out[k].T``, contiguous for :meth:`empty_batch`'s buffers)."""
        n_times, baseline, clamp = self.n_times, self.baseline_samples, self.clamp
        lo = min(0, self.baseline_offset) if baseline else 0
        hi = max(n_times, self.baseline_offset + baseline) if baseline else n_times
        first = self.baseline_offset - lo
        slots = np.swapaxes(out, 1, 2)  # [B, T, C]: each window's slot seen time-major
        fused = self.data_config.fused() and _time_major(slots)
        mapped = self.data_config.read == "mmap"
        for r, rows, windows, offsets in read_runs(self.brains, recording, start + lo, hi - lo,
                                                   mapped):
            scaler = self.scalers[r]
            if fused:
                kernels.brain_windows(rows, offsets, windows, slots, -lo,
                                      n_times, first, baseline,
                                      _NO_SCALE if scaler is None else scaler.center,
                                      _NO_SCALE if scaler is None else scaler.scale,
                                      scaler is not None, clamp or 0.0, clamp is not None)
                continue
            n_ch = rows.shape[1]
            for k, offset in zip(windows.tolist(), offsets.tolist()):
                window, slot = rows[offset:offset + hi - lo], slots[k]
                x = slot[:, :n_ch]
                if baseline:
                    np.subtract(window[-lo:n_times - lo],
                                window[first:first + baseline].mean(axis=0), out=x)
                else:
                    np.copyto(x, window[:n_times])
                if scaler is not None:
                    np.subtract(x, scaler.center, out=x)
                    np.divide(x, scaler.scale, out=x)
                if clamp is not None:
                    np.clip(x, -clamp, clamp, out=x)
                slot[:, n_ch:] = 0

    def _gather_speech(self, block: np.ndarray, start: np.ndarray, out: np.ndarray) -> None:
        """Normalised speech windows into ``out [B, F, T]`` (as :meth:`speech_window`), each
        written into its slot seen time-major (``out[k].T``)."""
        scaler = self.feature_scaler
        slots = np.swapaxes(out, 1, 2)  # [B, T, F]
        fused = self.data_config.fused() and _time_major(slots) and scaler is not None
        mapped = self.data_config.read == "mmap"
        for _, rows, windows, offsets in read_runs(self.features, block, start, self.n_times,
                                                   mapped):
            if fused:
                kernels.speech_windows(rows, offsets, windows, slots, scaler.mean, scaler.std)
                continue
            for k, offset in zip(windows.tolist(), offsets.tolist()):
                window, slot = rows[offset:offset + self.n_times], slots[k]
                if scaler is None:
                    np.copyto(slot, window)
                else:
                    np.subtract(window, scaler.mean, out=slot)
                    np.divide(slot, scaler.std, out=slot)


def _time_major(slots: np.ndarray) -> bool:
    """Whether every window slot of ``slots [B, T, X]`` is C-contiguous (the fused kernels'
    output)."""
    return len(slots) == 0 or slots[0].flags.c_contiguous


def read_brain_window(brain: RowReader, start: int, n_times: int, baseline_samples: int,
                      baseline_offset: int = 0) -> np.ndarray:
    """The ``[C, n_times]`` brain samples from sample ``start`` of ``brain`` (``[T, C]``), minus,
    per channel, the mean of the ``baseline_samples`` samples from ``start + baseline_offset``
    (no baseline when ``baseline_samples`` is 0)."""
    lo = min(0, baseline_offset) if baseline_samples else 0
    hi = max(n_times, baseline_offset + baseline_samples) if baseline_samples else n_times
    data = brain.read(start + lo, start + hi).T
    x = np.ascontiguousarray(data[:, -lo:n_times - lo])
    if baseline_samples:
        first = baseline_offset - lo
        x -= data[:, first:first + baseline_samples].mean(axis=1, keepdims=True)
    return x


def fit_robust_scaler(brains: list[tuple[RowReader, np.ndarray]], n_times: int,
                      baseline_samples: int, n_windows: int, rng: np.random.Generator,
                      baseline_offset: int = 0) -> RobustScaler:
    """Fit a :class:`RobustScaler` on up to ``n_windows`` baseline-corrected windows (see
    :func:`read_brain_window`) drawn from ``(reader of [T, C] samples, window start samples)``
    pairs: one recording, or a subject's recordings pooled."""
    pool = [(r, int(s)) for r, starts in brains for s in starts]
    chosen = np.sort(rng.choice(len(pool), size=min(n_windows, len(pool)), replace=False))
    x = np.stack([read_brain_window(pool[k][0], pool[k][1], n_times, baseline_samples,
                                    baseline_offset) for k in chosen])
    return RobustScaler.fit(x)
