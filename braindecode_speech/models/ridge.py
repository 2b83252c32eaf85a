"""Linear baseline: ridge regression from time-lagged brain channels to speech features.

The speech feature at time ``t`` is predicted from the brain channels at ``t + lag`` for every
lag in ``[tmin, tmax]`` (the brain responds after the sound). The fit is closed-form and works
on sufficient statistics accumulated over chunks of windows, so the data are never copied as a
whole (memory maps work):

1. optional PCA of the brain channels (eigendecomposition of their ``C × C`` covariance) keeps
   the ``n_components`` leading components, so the lagged design has
   ``D = n_components · n_lags`` columns (64 · 37 = 2368 at 120 Hz and 0–300 ms, against
   270 · 37 = 9990 without PCA);
2. the centred ``D × D`` covariance of the lagged design and its ``D × F`` cross-covariance with
   the features are accumulated over the time points whose lags all fall inside the window;
3. one eigendecomposition of the design covariance gives, for every ``alpha`` of the grid at no
   extra cost, the residual sum of squares and the effective degrees of freedom, hence the
   generalised cross-validation score ``GCV(α) = (RSS/n) / (1 − df/n)²``; the ``alpha`` with the
   lowest score (summed over features) is kept.

``alphas`` are relative to the mean eigenvalue of the design covariance, so the grid does not
depend on the scale of the data. At prediction, lags falling outside the window read the
training mean of each channel.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["RidgeDecoder"]

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 64 * 2**20  # size of the lagged design built at once


class RidgeDecoder:
    """Ridge decoder of speech features from time-lagged brain channels.

    Parameters
    ----------
    sfreq : sampling rate of brain and features, Hz.
    tmin, tmax : first and last brain lag, seconds (brain at ``t + lag`` predicts speech at t).
    alphas : grid of regularisations, relative to the mean eigenvalue of the design covariance.
    n_components : brain principal components kept before lagging (None: all channels).
    time_step : fit on every ``time_step``-th time point of each window only (neighbouring
        samples of overlapping windows are nearly redundant; 1: all of them).
    lag_step : spacing of the lags, samples (1: every sample from ``tmin`` to ``tmax``).

    Attributes (after :meth:`fit`)
    ------------------------------
    alpha_ : the chosen relative regularisation; ``gcv_`` : GCV score per alpha;
    coef_ : ``[n_components, n_lags, F]``; ``intercept_ : [F]``; ``mean_ : [C]`` and
    ``components_ : [C, n_components]`` (identity without PCA).
    """

    def __init__(
        self,
        sfreq: float = 120.0,
        tmin: float = 0.0,
        tmax: float = 0.3,
        alphas: Sequence[float] = tuple(np.logspace(-4, 4, 17)),
        n_components: int | None = 64,
        time_step: int = 1,
        lag_step: int = 1,
    ):
        if tmax < tmin:
            raise ValueError(f"tmax ({tmax}) must be >= tmin ({tmin})")
        if len(alphas) == 0 or min(alphas) <= 0:
            raise ValueError(f"alphas must be a non-empty list of positive numbers, got {alphas}")
        self.sfreq = sfreq
        self.tmin = tmin
        self.tmax = tmax
        self.alphas = np.asarray(alphas, dtype=float)
        if time_step < 1 or lag_step < 1:
            raise ValueError(f"time_step and lag_step must be >= 1, got {time_step}, {lag_step}")
        self.n_components = n_components
        self.time_step = time_step
        self.lag_step = lag_step
        self.lags = np.arange(round(tmin * sfreq), round(tmax * sfreq) + 1, lag_step)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, Y: Any) -> RidgeDecoder:
        """Fit on training windows ``X [N, C, T]`` (brain) and ``Y [N, F, T]`` (features).

        ``X`` and ``Y`` are array-likes indexable by window (numpy arrays, memory maps or CPU
        tensors); they are read a chunk of windows at a time.
        """
        n_windows, n_channels, n_times = self._check_pair(X, Y)
        first, stop = self._valid_times(n_times)
        if stop <= first:
            raise ValueError(
                f"windows of {n_times} samples are too short for lags {self.lags[0]}.."
                f"{self.lags[-1]} samples"
            )
        self.mean_, self.components_ = self._fit_pca(X, n_channels, n_times)
        n_design = self.components_.shape[1] * len(self.lags)
        n_features = np.shape(Y)[1]
        design_sum = np.zeros(n_design)
        target_sum = np.zeros(n_features)
        design_gram = np.zeros((n_design, n_design))
        cross = np.zeros((n_design, n_features))
        target_squares = np.zeros(n_features)
        step = self.time_step
        for chunk in self._chunks(n_windows, n_times, n_design):
            design = self._design(np.asarray(X[chunk], dtype=np.float64),
                                  slice(first, stop, step)).reshape(-1, n_design)
            target = np.asarray(Y[chunk], dtype=np.float64)[:, :, first:stop:step]
            target = target.transpose(0, 2, 1).reshape(-1, n_features)
            design_sum += design.sum(0)
            target_sum += target.sum(0)
            design_gram += design.T @ design
            cross += design.T @ target
            target_squares += np.einsum("nf,nf->f", target, target)
        n = n_windows * len(range(first, stop, step))
        design_mean, target_mean = design_sum / n, target_sum / n
        design_gram -= n * np.outer(design_mean, design_mean)
        cross -= n * np.outer(design_mean, target_mean)
        target_squares -= n * target_mean**2

        eigvals, eigvecs = np.linalg.eigh(design_gram)
        eigvals = np.clip(eigvals, 0.0, None)
        projected = eigvecs.T @ cross  # [D, F]
        scale = eigvals.mean()
        self.gcv_ = np.array([
            self._gcv(alpha * scale, eigvals, projected, target_squares.sum(), n)
            for alpha in self.alphas
        ])
        best = int(np.argmin(self.gcv_))
        self.alpha_ = float(self.alphas[best])
        if best in (0, len(self.alphas) - 1):
            logger.warning("RidgeDecoder: the best alpha %g is at the edge of the grid %s",
                           self.alpha_, self.alphas)
        coef = eigvecs @ (projected / (eigvals + self.alpha_ * scale)[:, None])
        self.intercept_ = target_mean - design_mean @ coef
        self.coef_ = coef.reshape(self.components_.shape[1], len(self.lags), n_features)
        return self

    @staticmethod
    def _gcv(alpha: float, eigvals: np.ndarray, projected: np.ndarray, total_squares: float,
             n: int) -> float:
        """GCV score of ridge ``alpha`` from the eigendecomposition of the design covariance."""
        shrink = eigvals + alpha
        explained = (projected**2).sum(1) @ (2 / shrink - eigvals / shrink**2)
        residual = total_squares - explained
        dof = (eigvals / shrink).sum()
        return float(residual / n / (1 - dof / n) ** 2)

    def _fit_pca(self, X: Any, n_channels: int, n_times: int) -> tuple[np.ndarray, np.ndarray]:
        """Channel mean ``[C]`` and leading principal axes ``[C, K]`` (identity without PCA)."""
        total = np.zeros(n_channels)
        gram = np.zeros((n_channels, n_channels))
        count = 0
        for chunk in self._chunks(len(X), n_times, n_channels):
            data = np.asarray(X[chunk], dtype=np.float64).transpose(0, 2, 1).reshape(-1, n_channels)
            total += data.sum(0)
            gram += data.T @ data
            count += len(data)
        mean = total / count
        if self.n_components is None:
            return mean, np.eye(n_channels)
        if not 0 < self.n_components <= n_channels:
            raise ValueError(
                f"n_components must be in 1..{n_channels} (the number of brain channels), "
                f"got {self.n_components}"
            )
        eigvals, eigvecs = np.linalg.eigh(gram - count * np.outer(mean, mean))
        return mean, eigvecs[:, ::-1][:, : self.n_components].copy()

    # --------------------------------------------------------------- prediction
    def predict(self, X: Any) -> np.ndarray:
        """Predicted features ``[N, F, T]`` (float32) for brain windows ``X [N, C, T]``."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("RidgeDecoder.predict called before fit")
        if np.ndim(X) != 3 or np.shape(X)[1] != len(self.mean_):
            raise ValueError(
                f"X must be [N, {len(self.mean_)}, T] brain windows, got shape {np.shape(X)}"
            )
        n_windows, _, n_times = np.shape(X)
        n_features = self.coef_.shape[-1]
        out = np.empty((n_windows, n_features, n_times), dtype=np.float32)
        # the lagged linear map is a (dilated) convolution over time: no design matrix needed
        weight = torch.from_numpy(self.coef_.transpose(2, 0, 1).astype(np.float32))
        for chunk in self._chunks(n_windows, n_times, self.coef_.shape[0]):
            padded, start = self._lag_padded(np.asarray(X[chunk], dtype=np.float64))
            pred = torch.nn.functional.conv1d(
                torch.from_numpy(padded[:, :, start:].astype(np.float32)), weight,
                dilation=self.lag_step)
            out[chunk] = pred[:, :, :n_times].numpy() + self.intercept_[:, None]
        return out

    # ------------------------------------------------------------------ helpers
    def _lag_padded(self, windows: np.ndarray) -> tuple[np.ndarray, int]:
        """Centred component scores ``[n, K, T + pad]`` of brain windows ``[n, C, T]``, zero
        (i.e. the channel means) beyond the window, and the index of time 0 at the first lag."""
        scores = self.components_.T @ (windows - self.mean_[:, None])  # [n, K, T]
        before, after = max(0, -self.lags[0]), max(0, self.lags[-1])
        return np.pad(scores, ((0, 0), (0, 0), (before, after))), int(self.lags[0] + before)

    def _design(self, windows: np.ndarray, times: slice) -> np.ndarray:
        """Lagged design ``[n, len(times), K·L]`` of brain windows ``[n, C, T]`` at the time
        points ``times``, column ``k·L + l`` holding component k at lag ``lags[l]``."""
        padded, start = self._lag_padded(windows)
        n_times = windows.shape[-1]
        span = int(self.lags[-1] - self.lags[0]) + 1
        lagged = sliding_window_view(padded, span, axis=-1)[:, :, start:start + n_times]
        lagged = lagged[:, :, times, ::self.lag_step]
        return lagged.transpose(0, 2, 1, 3).reshape(len(windows), lagged.shape[2], -1)

    def _valid_times(self, n_times: int) -> tuple[int, int]:
        """Time range ``[first, stop)`` whose lags all fall inside a window of ``n_times``."""
        return max(0, -int(self.lags[0])), n_times - max(0, int(self.lags[-1]))

    @staticmethod
    def _chunks(n_windows: int, n_times: int, width: int) -> Iterator[slice]:
        """Slices of windows whose ``[n, T, width]`` float64 design stays near 64 MB."""
        step = max(1, _CHUNK_BYTES // (8 * n_times * width))
        for start in range(0, n_windows, step):
            yield slice(start, min(start + step, n_windows))

    @staticmethod
    def _check_pair(X: Any, Y: Any) -> tuple[int, int, int]:
        x_shape, y_shape = np.shape(X), np.shape(Y)
        if len(x_shape) != 3 or len(y_shape) != 3:
            raise ValueError(
                f"X and Y must be [N, C, T] and [N, F, T], got {x_shape} and {y_shape}"
            )
        if x_shape[0] != y_shape[0] or x_shape[2] != y_shape[2]:
            raise ValueError(
                f"X {x_shape} and Y {y_shape} must have the same number of windows and samples"
            )
        return x_shape
