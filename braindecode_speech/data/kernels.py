"""Window normalisation fused into one compiled pass (numba, the optional ``fast`` extra).

The batch path of :meth:`~braindecode_speech.data.dataset.WindowDataset.get_batch` normalises
each window with one numpy operation at a time (baseline mean, baseline subtraction, robust
centring, division by the IQR, clamp): five passes over the window, each short enough that
per-call costs dominate. The kernels here do the same float32 operations in the same order for
each element in one compiled pass over the window, straight into its time-major slot of the
batch (contiguous rows: vectorised), all the windows of a run in one call (no per-window
Python work), so the windows are the same bit for bit (tested against
the numpy path). They are compiled without ``fastmath`` (IEEE operations, no reassociation) and
release the GIL, so the threads of :class:`~braindecode_speech.data.batches.BatchLoader` run
them at once.

Hand-written because numpy has no fused elementwise pass and ``torch.compile`` gives no
guarantee on the order of a reduction (the baseline mean), which bit-identity needs.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # the optional ``fast`` extra
    numba = None

__all__ = ["available", "brain_windows", "speech_windows"]


def available() -> bool:
    """Whether numba is installed (``pip install 'braindecode-speech[fast]'``)."""
    return numba is not None


def _brain_window(rows: np.ndarray, out: np.ndarray, first: int, n_times: int,
                  baseline_first: int, baseline: int, center: np.ndarray, scale: np.ndarray,
                  scaled: bool, clamp: float, clamped: bool) -> None:
    """``out [n_times, C_out]`` (time-major, ``C_out >= C``) from ``rows [R, C]`` (float32):
    rows ``first .. first + n_times`` minus the mean of rows ``baseline_first .. + baseline``
    (none when ``baseline`` is 0), minus ``center``, divided by ``scale`` (when ``scaled``),
    clamped to ``±clamp`` (when ``clamped``): :meth:`WindowDataset.brain_window`'s operations
    in its order; columns ``C ..`` of ``out`` (padding sensors) set to 0."""
    n_ch, n_out = rows.shape[1], out.shape[1]
    mean = np.zeros(n_ch, dtype=np.float32)
    if baseline > 0:  # numpy's mean over axis 0: rows summed in order, then divided
        first_row = rows[baseline_first]
        for c in range(n_ch):
            mean[c] = first_row[c]
        for i in range(1, baseline):
            row = rows[baseline_first + i]
            for c in range(n_ch):
                mean[c] += row[c]
        count = np.float32(baseline)
        for c in range(n_ch):
            mean[c] = mean[c] / count
    low, high = np.float32(-clamp), np.float32(clamp)
    for t in range(n_times):
        src, dst = rows[first + t], out[t]
        if baseline > 0:
            for c in range(n_ch):
                dst[c] = src[c] - mean[c]
        else:
            for c in range(n_ch):
                dst[c] = src[c]
        if scaled:
            for c in range(n_ch):
                dst[c] = (dst[c] - center[c]) / scale[c]
        if clamped:  # as np.clip: NaN stays NaN
            for c in range(n_ch):
                x = low if dst[c] < low else dst[c]
                dst[c] = high if x > high else x
        for c in range(n_ch, n_out):
            dst[c] = 0


def _speech_window(rows: np.ndarray, out: np.ndarray, mean: np.ndarray,
                   std: np.ndarray) -> None:
    """``out [T, F]`` = ``(rows - mean) / std`` for ``rows [T, F]`` (float32)."""
    n_times, n_features = rows.shape
    for t in range(n_times):
        src, dst = rows[t], out[t]
        for f in range(n_features):
            dst[f] = (src[f] - mean[f]) / std[f]


def _brain_windows(rows: np.ndarray, offsets: np.ndarray, slots: np.ndarray, out: np.ndarray,
                   first: int, n_times: int, baseline_first: int, baseline: int,
                   center: np.ndarray, scale: np.ndarray, scaled: bool, clamp: float,
                   clamped: bool) -> None:
    """:func:`_brain_window` for every window ``j`` of a run: from ``rows[offsets[j]:]`` into
    ``out[slots[j]]`` (``out [B, n_times, C_out]``, time-major), in one call."""
    for j in range(len(slots)):
        brain_window(rows[offsets[j]:], out[slots[j]], first, n_times, baseline_first,
                     baseline, center, scale, scaled, clamp, clamped)


def _speech_windows(rows: np.ndarray, offsets: np.ndarray, slots: np.ndarray, out: np.ndarray,
                    mean: np.ndarray, std: np.ndarray) -> None:
    """:func:`_speech_window` for every window ``j`` of a run: from
    ``rows[offsets[j]:offsets[j] + T]`` into ``out[slots[j]]`` (``out [B, T, F]``)."""
    n_times = out.shape[1]
    for j in range(len(slots)):
        speech_window(rows[offsets[j]:offsets[j] + n_times], out[slots[j]], mean, std)


if numba is not None:  # IEEE float semantics: no fastmath, division by zero gives inf
    _jit = numba.njit(nogil=True, cache=True, error_model="numpy")
    brain_window, speech_window = _jit(_brain_window), _jit(_speech_window)
    brain_windows, speech_windows = _jit(_brain_windows), _jit(_speech_windows)
else:
    brain_window = speech_window = brain_windows = speech_windows = None
