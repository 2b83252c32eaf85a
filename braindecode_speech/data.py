"""Window datasets: brain and speech windows, normalised, as PyTorch tensors.

Brain windows are read from the preprocessing cache (memory maps), baseline-corrected (mean of
the part before the anchor), robust-scaled per recording and channel (median / IQR fitted on
training windows) and clamped. Speech windows are read from the block-feature cache and
standard-scaled with statistics fitted on training windows. Each switch is a config field, as
the paper's ablations turn them off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field

from .cache import RowReader
from .config import Config

__all__ = ["NormConfig", "RobustScaler", "FeatureScaler", "WindowDataset", "Window",
           "fit_robust_scaler"]

logger = logging.getLogger(__name__)


class NormConfig(Config):
    """Normalisation of brain and speech windows. Defaults are the paper's."""

    baseline: bool = True
    """subtract, per channel, the mean of the brain window before the anchor"""
    robust_scale: bool = True
    """per recording and channel: (x - median) / (q75 - q25), fitted on training windows"""
    clamp: float | None = Field(20.0, gt=0)
    """clamp scaled brain values to ± this (None: off)"""
    n_scaling_windows: int = Field(200, ge=1)
    """training windows per recording used to fit the robust scaler"""
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

    Items are dicts: ``brain [C, T]``, ``mask [C]`` (True on real sensors), ``positions [C, 2]``,
    ``subject`` (long), ``speech [F, T]``, ``index`` (position in ``windows``).
    """

    def __init__(self, brains: list[RowReader], positions: list[np.ndarray],
                 features: list[RowReader], windows: list[Window],
                 scalers: list[RobustScaler | None], feature_scaler: FeatureScaler | None,
                 n_channels: int, n_times: int, baseline_samples: int,
                 clamp: float | None) -> None:
        self.brains = brains
        self.positions = positions
        self.features = features
        self.windows = windows
        self.scalers = scalers
        self.feature_scaler = feature_scaler
        self.n_channels = n_channels
        self.n_times = n_times
        self.baseline_samples = baseline_samples
        self.clamp = clamp

    def __len__(self) -> int:
        return len(self.windows)

    def brain_window(self, i: int) -> np.ndarray:
        """The normalised ``[C_r, T]`` brain window ``i`` (unpadded)."""
        w = self.windows[i]
        x = np.ascontiguousarray(
            self.brains[w.recording].read(w.brain_start, w.brain_start + self.n_times).T)
        if self.baseline_samples:
            x -= x[:, :self.baseline_samples].mean(axis=1, keepdims=True)
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


def fit_robust_scaler(brain: RowReader, starts: np.ndarray, n_times: int,
                      baseline_samples: int, n_windows: int,
                      rng: np.random.Generator) -> RobustScaler:
    """Fit a :class:`RobustScaler` on up to ``n_windows`` baseline-corrected windows of the
    ``[T, C]`` samples of ``brain`` starting at the samples ``starts``."""
    chosen = np.sort(rng.choice(starts, size=min(n_windows, len(starts)), replace=False))
    x = np.stack([brain.read(s, s + n_times).T for s in chosen])
    if baseline_samples:
        x -= x[:, :, :baseline_samples].mean(axis=2, keepdims=True)
    return RobustScaler.fit(x)
