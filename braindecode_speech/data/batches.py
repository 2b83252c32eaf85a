"""Batches of windows: how they are stored, gathered and prepared ahead of the model.

:meth:`~braindecode_speech.data.dataset.WindowDataset.get_batch` gathers a whole batch at once,
bit for bit the windows of the per-window path (``dataset[i]``), in one of two ways:

- **memory maps** (default, ``data.device = None``): the windows are sorted by recording (block
  for speech) and start; each run of overlapping or touching windows is read once
  (:class:`~braindecode_speech.data.cache.RowReader`, one ``preadv``) into a per-thread staging
  buffer that stays in the CPU cache, and each window is normalised from there straight into its
  slot of the batch's output buffers (reused from batch to batch, pinned for a GPU);
- **device store** (``data.device = "cpu"``, ``"cuda"``...): the whole preprocessed study (and
  the speech features) is held as one tensor on that device, and windows are gathered and
  normalised there with vectorised tensor operations (:class:`DeviceStore`).

Either way, ``brain [B, C, T]`` and ``speech [B, F, T]`` are views of *time-major* memory
(``[B, T, C]`` and ``[B, T, F]``, as ``x.transpose(1, 2)`` gives them): the layout the cache
stores samples in, so no window is transposed on the loader's threads (on the CPU that was
half of the loader's time). Like ``torch.channels_last`` for images, the values are the same
and layout-aware operations read them in place (the encoder's first layer, a matrix product
over sensors, does); an operation that needs ``[B, C, T]`` memory makes its own contiguous
copy, which on a GPU costs little. ``.contiguous()`` gives the channel-major layout.

:class:`BatchLoader` prepares the next batches in background threads while the model works on
the current one (file reads and numpy release the GIL).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from ..config import Config
from . import kernels
from .cache import RowReader

__all__ = ["DataConfig", "BatchLoader", "DeviceStore", "read_runs", "BATCH_KEYS"]

#: the entries of a batch, with their per-window shapes: brain ``[C, T]``, mask ``[C]``,
#: positions ``[C, 2]``, subject, speech ``[F, T]``, index (position in the dataset); brain and
#: speech are views of time-major memory (``[T, C]``, ``[T, F]``, see the module documentation)
BATCH_KEYS = ("brain", "mask", "positions", "subject", "speech", "index")

#: a run of windows read at once spans at most this many bytes (more than one window only)
MAX_RUN_BYTES = 8 << 20


class DataConfig(Config):
    """How the preprocessed study is stored and how batches are read. Only ``storage`` changes
    what is computed."""

    storage: Literal["float32", "float16"] = "float32"
    """dtype of the preprocessed cache: ``float16`` halves its size (and the bytes read per
    batch); each channel is stored divided by a power of two (within float16 precision, a
    relative 2**-11, of float32). A different cache entry, and a different experiment"""
    device: str | None = None
    """``None``: windows are read from the memory-mapped cache. ``cpu``, ``cuda``, ``cuda:1``...:
    the whole preprocessed study and its speech features are held as tensors on that device
    (the ``storage`` dtype: MEG-MASC at 120 Hz is ~10 GB in float16) and windows are gathered
    there (bit for bit the same windows)"""
    prefetch: int = Field(2, ge=0)
    """batches prepared ahead in background threads (0: in the loop that uses them)"""
    workers: int = Field(1, ge=1)
    """threads preparing batches at once (at most ``prefetch``)"""
    pin_memory: bool = True
    """pinned batch buffers when the model runs on CUDA (asynchronous host-to-device copies)"""
    read: Literal["pread", "mmap"] = "pread"
    """how memory-mapped windows are read: ``pread``, each run of windows copied by one system
    call into a per-thread buffer (the process's resident memory stays bounded), or ``mmap``,
    normalised straight from a mapping of each cache file (no system call and no copy: about
    twice the windows per second on a page-cached study, for feeding a GPU; the pages touched
    stay mapped, so the resident set grows, in shared file pages the kernel can reclaim, towards
    the size of the cache: mind job schedulers that count them against a memory limit)"""
    kernel: Literal["auto", "numba", "numpy"] = "auto"
    """how memory-mapped windows are normalised: ``numba``, one compiled call per run of windows
    (:mod:`~braindecode_speech.data.kernels`, the optional ``fast`` extra), or ``numpy``, one
    operation at a time; the same bits either way. ``auto``: numba where it is installed"""

    _exclude_from_signature = ("device", "prefetch", "workers", "pin_memory", "read", "kernel")

    @field_validator("kernel")
    @classmethod
    def _kernel_installed(cls, value: str) -> str:
        if value == "numba" and not kernels.available():
            raise ValueError("numba is not installed: pip install 'braindecode-speech[fast]' "
                             "(or data.kernel=auto / numpy)")
        return value

    def fused(self) -> bool:
        """Whether windows are normalised by the compiled kernels."""
        return self.kernel == "numba" or (self.kernel == "auto" and kernels.available())

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                torch.device(value)
            except RuntimeError:
                raise ValueError(f"not a torch device: {value!r} (cpu, cuda, cuda:1...)") \
                    from None
        return value


class _Staging(threading.local):
    """A per-thread float32 buffer runs of rows are read into (grown as needed, reused)."""

    buffer: np.ndarray | None = None

    def rows(self, n_rows: int, n_columns: int) -> np.ndarray:
        size = n_rows * n_columns
        if self.buffer is None or self.buffer.size < size:
            self.buffer = np.empty(max(size, 1), dtype=np.float32)
        return self.buffer[:size].reshape(n_rows, n_columns)


_STAGING = _Staging()


def read_runs(readers: Sequence[RowReader], array: np.ndarray, start: np.ndarray,
              n_rows: int, mapped: bool = False) -> \
        Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Rows ``[start[k], start[k] + n_rows)`` of ``readers[array[k]]`` for every window ``k``,
    as runs: yields ``(a, rows [R, n_columns], windows, offsets)``, window ``windows[j]``
    (of array ``a``) being ``rows[offsets[j]:offsets[j] + n_rows]``, runs in file order.

    Each run of overlapping or touching windows of one array is read once (at most
    :data:`MAX_RUN_BYTES` per read) as float32 (decoded) into a per-thread buffer, valid until
    the next run. With ``mapped`` (:meth:`RowReader.mapped`), an array stored in float32 is
    one run of all its windows, ``rows`` a read-only view of the whole mapped file; one stored
    in float16 is decoded run by run into the buffer."""
    order = np.lexsort((start, array))
    k = 0
    while k < len(order):
        a = int(array[order[k]])
        reader = readers[a]
        stop = k + 1
        if mapped and reader.scale is None:  # every window of this array, from the mapping
            while stop < len(order) and array[order[stop]] == a:
                stop += 1
            windows = order[k:stop]
            yield a, reader.mapped(0, len(reader)), windows, start[windows]
            k = stop
            continue
        first = int(start[order[k]])
        max_rows = max(n_rows, MAX_RUN_BYTES // max(reader.row_bytes, 1))
        last_end = first + n_rows  # the run: windows order[k:stop], rows [first, last_end)
        while stop < len(order) and int(array[order[stop]]) == a:
            s = int(start[order[stop]])
            if s > last_end or s + n_rows - first > max_rows:
                break
            last_end = s + n_rows
            stop += 1
        read = reader.mapped if mapped else reader.read
        rows = read(first, last_end, out=_STAGING.rows(last_end - first, reader.shape[1]))
        windows = order[k:stop]
        yield a, rows, windows, start[windows] - first
        k = stop


class DeviceStore:
    """The whole preprocessed study and its speech features as tensors on ``device``, and the
    normalisation of every recording, to gather batches there.

    Brain samples: one time-major ``[sum of T_r, C]`` tensor of the storage dtype (recordings
    one after the other, channels padded with zeros to ``C``); speech features: one
    ``[sum of n_frames, F]`` float32 tensor (blocks stored once even when several recordings
    share them). Gathering applies, in float32, the operations of the per-window path in the
    same order (decoding, baseline, robust scaling, clamp; standard scaling of the features),
    so the windows are the same bit for bit.
    """

    def __init__(self, brains: Sequence[RowReader], features: Sequence[RowReader],
                 centers: Sequence[np.ndarray | None], scales: Sequence[np.ndarray | None],
                 feature_mean: np.ndarray | None, feature_std: np.ndarray | None,
                 n_channels: int, device: str | torch.device) -> None:
        self.device = torch.device(device)
        stored = {r.stored_dtype for r in brains}
        if len(stored) != 1:
            raise ValueError(f"recordings stored with different dtypes: {sorted(map(str, stored))}")
        dtype = torch.from_numpy(np.empty(0, dtype=stored.pop())).dtype
        lengths = [len(r) for r in brains]
        self.brain_offset = self._tensor(np.r_[0, np.cumsum(lengths)[:-1]], torch.long)
        self.brain = torch.zeros((sum(lengths), n_channels), dtype=dtype, device=self.device)
        for reader, offset in zip(brains, self.brain_offset.tolist()):
            self._load(reader, self.brain, offset)
        self.decode = None
        if any(r.scale is not None for r in brains):
            self.decode = self._table([r.scale for r in brains], n_channels, 1.0)
        self.center = self.scale = None
        if any(c is not None for c in centers):  # identity scaling where a scaler is None
            self.center = self._table(centers, n_channels, 0.0)
            self.scale = self._table(scales, n_channels, np.inf, fill_missing=1.0)
        unique: dict[str, int] = {}  # blocks shared by several recordings are stored once
        for reader in features:
            unique.setdefault(reader.path, len(unique))
        first = {path: i for i, path in reversed(list(enumerate(r.path for r in features)))}
        frames = [len(features[first[path]]) for path in unique]
        starts = np.r_[0, np.cumsum(frames)[:-1]].astype(np.int64)
        self.speech_offset = self._tensor(starts[[unique[r.path] for r in features]], torch.long)
        n_features = features[0].shape[1] if features else 0
        self.speech = torch.empty((sum(frames), n_features), dtype=torch.float32,
                                  device=self.device)
        for path, row in zip(unique, starts.tolist()):
            self._load(features[first[path]], self.speech, row)
        self.feature_mean = None if feature_mean is None else self._tensor(feature_mean)
        self.feature_std = None if feature_std is None else self._tensor(feature_std)

    def _tensor(self, array: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=dtype).to(self.device)

    def _table(self, rows: Sequence[np.ndarray | None], n_channels: int, pad: float,
               fill_missing: float | None = None) -> torch.Tensor:
        """``[R, n_channels]`` float32: each recording's values, padded with ``pad`` (a
        recording without values: ``fill_missing``, default ``pad``)."""
        out = np.full((len(rows), n_channels), pad, dtype=np.float32)
        for i, row in enumerate(rows):
            if row is None:
                out[i] = pad if fill_missing is None else fill_missing
            else:
                out[i, :len(row)] = row
        return self._tensor(out)

    @staticmethod
    def _load(reader: RowReader, target: torch.Tensor, row: int,
              block_bytes: int = 64 << 20) -> None:
        """Copy the stored values of ``reader`` into ``target[row:, :n_columns]``, a block of
        rows at a time (no decoding: the store keeps the storage dtype)."""
        raw = RowReader(np.load(reader.path, mmap_mode="r"))
        step = max(1, block_bytes // max(raw.row_bytes, 1))
        for first in range(0, len(raw), step):
            last = min(first + step, len(raw))
            block = torch.from_numpy(raw.read(first, last))
            target[row + first:row + last, :block.shape[1]].copy_(block)

    def _rows(self, table: torch.Tensor, offset: torch.Tensor, start: np.ndarray,
              n_rows: int) -> torch.Tensor:
        """``[B, n_rows, columns]``: rows ``start[k] ...`` of each window's array."""
        first = offset + torch.as_tensor(start, dtype=torch.long).to(self.device)
        index = first[:, None] + torch.arange(n_rows, device=self.device)
        return table[index]

    def brain_windows(self, recording: np.ndarray, start: np.ndarray, n_times: int,
                      baseline_samples: int, baseline_offset: int,
                      clamp: float | None) -> torch.Tensor:
        """Normalised brain windows ``[B, C, n_times]`` (float32, on the device); see
        :func:`~braindecode_speech.data.dataset.read_brain_window`."""
        lo = min(0, baseline_offset) if baseline_samples else 0
        hi = max(n_times, baseline_offset + baseline_samples) if baseline_samples else n_times
        rec = torch.as_tensor(recording, dtype=torch.long).to(self.device)
        x = self._rows(self.brain, self.brain_offset[rec], start + lo, hi - lo).float()
        if self.decode is not None:
            x = x * self.decode[rec][:, None]
        out = x[:, -lo:n_times - lo]
        if baseline_samples:
            first = baseline_offset - lo
            total = x[:, first]  # in order, as numpy sums the rows of a time-major array
            for j in range(first + 1, first + baseline_samples):
                total = total + x[:, j]
            # divided by a tensor, not a Python number: CUDA multiplies by the reciprocal of
            # a number (one bit off numpy's division)
            count = torch.tensor(float(baseline_samples), device=self.device)
            out = out - (total / count)[:, None]
        if self.center is not None:
            out = (out - self.center[rec][:, None]) / self.scale[rec][:, None]
        if clamp is not None:
            out = out.clamp(-clamp, clamp)
        return out.transpose(1, 2)  # time-major memory, as from the memory maps

    def speech_windows(self, block: np.ndarray, start: np.ndarray, n_times: int) -> torch.Tensor:
        """Normalised speech windows ``[B, F, n_times]`` (float32, on the device)."""
        blk = torch.as_tensor(block, dtype=torch.long).to(self.device)
        y = self._rows(self.speech, self.speech_offset[blk], start, n_times)
        if self.feature_mean is not None:
            y = (y - self.feature_mean) / self.feature_std
        return y.transpose(1, 2)


class BatchLoader:
    """Iterates over the batches of ``dataset`` given as lists of indices, prepared ahead.

    ``dataset.get_batch(indices, out)`` is used when the dataset has it (``out``: a reused set of
    buffers, pinned when ``pin_memory`` and CUDA is available); any other dataset of window
    dicts is read item by item and collated. With ``prefetch > 0``, up to ``prefetch`` batches
    are prepared by ``workers`` background threads while the caller works on the current one.

    Buffers are reused: a batch is valid while the next one is drawn, and overwritten when the
    one after it is drawn (copy what must be kept longer).
    """

    def __init__(self, dataset: Any, batches: Sequence[Sequence[int]], prefetch: int = 0,
                 workers: int = 1, pin_memory: bool = False) -> None:
        self.dataset = dataset
        self.batches = [list(b) for b in batches]
        self.prefetch = prefetch
        self.workers = max(1, min(workers, prefetch)) if prefetch else 1
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self._ring: list[dict[str, torch.Tensor] | None] = [None] * (prefetch + 2)

    @classmethod
    def for_dataset(cls, dataset: Any, batches: Sequence[Sequence[int]],
                    pin_memory: bool = False) -> BatchLoader:
        """A loader with the settings of ``dataset.data_config`` (a :class:`DataConfig`; its
        defaults for datasets without one); buffers pinned if ``pin_memory`` and the config
        allows it."""
        config = getattr(dataset, "data_config", None) or DataConfig()
        return cls(dataset, batches, config.prefetch, config.workers,
                   pin_memory and config.pin_memory)

    def __len__(self) -> int:
        return len(self.batches)

    def _fetch(self, slot: int, indices: list[int]) -> dict[str, torch.Tensor]:
        get_batch: Callable | None = getattr(self.dataset, "get_batch", None)
        if get_batch is None:
            batch = torch.utils.data.default_collate([self.dataset[i] for i in indices])
            return batch if not self.pin_memory else {k: v.pin_memory() for k, v in batch.items()}
        out = self._ring[slot]
        if out is not None and len(out["index"]) < len(indices):
            out = None
        if out is None:
            out = self._ring[slot] = self.dataset.empty_batch(len(indices), self.pin_memory)
        if out is None:  # the dataset allocates its batches itself (a device store)
            return get_batch(indices)
        return get_batch(indices, {k: v[:len(indices)] for k, v in out.items()})

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        n_slots = len(self._ring)
        if not self.prefetch:
            for i, indices in enumerate(self.batches):
                yield self._fetch(i % n_slots, indices)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="batches") as pool:
            pending: deque[Future] = deque()

            def submit(i: int) -> None:
                pending.append(pool.submit(self._fetch, i % n_slots, self.batches[i]))

            for i in range(min(self.prefetch, len(self.batches))):
                submit(i)
            for i in range(len(self.batches)):
                batch = pending.popleft().result()
                if i + self.prefetch < len(self.batches):  # reuses the buffers of batch i - 2
                    submit(i + self.prefetch)
                yield batch
