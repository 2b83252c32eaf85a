"""Window datasets: brain and speech windows, normalised, as PyTorch tensors.

Brain windows are read from the preprocessing cache (memory maps), baseline-corrected (per
channel, the mean of the brain over the 0.5 s before the anchor, before the brain lag shift: the
paper's ``[a - 0.5, a]`` s), robust-scaled per recording and channel (median / IQR fitted on
training windows) and clamped. Speech windows are read from the block-feature cache and
standard-scaled with statistics fitted on training windows. Each switch is a config field, as
the paper's ablations turn them off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ..config import Config
from .cache import RowReader

__all__ = ["NormConfig", "RobustScaler", "FeatureScaler", "WindowDataset", "Window",
           "fit_robust_scaler", "read_brain_window"]

logger = logging.getLogger(__name__)


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

    Items are dicts: ``brain [C, T]``, ``mask [C]`` (True on real sensors), ``positions [C, 2]``,
    ``subject`` (long), ``speech [F, T]``, ``index`` (position in ``windows``).
    """

    def __init__(self, brains: list[RowReader], positions: list[np.ndarray],
                 features: list[RowReader], windows: list[Window],
                 scalers: list[RobustScaler | None], feature_scaler: FeatureScaler | None,
                 n_channels: int, n_times: int, baseline_samples: int,
                 clamp: float | None, baseline_offset: int = 0) -> None:
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
