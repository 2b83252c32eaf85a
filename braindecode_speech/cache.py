"""On-disk cache of arrays, keyed by a stable hash, written atomically.

An entry is a folder ``<root>/<namespace>/<key>/`` holding ``data.npy`` (read back as a
read-only memory map, so nothing has to fit in RAM) and ``meta.json``. Entries are built in a
temporary sibling folder and renamed into place, so a killed process never leaves a half-written
entry behind. An entry whose files do not match its metadata (truncated, edited) is reported
and rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ArrayCache", "CacheError", "RowReader", "default_cache_dir", "CACHE_VERSION"]

logger = logging.getLogger(__name__)

#: bump when the layout or the content of cached arrays changes
CACHE_VERSION = 2


class CacheError(RuntimeError):
    """A cache entry is unusable; the message names the folder and what to do."""


def default_cache_dir() -> Path:
    """``$BRAINDECODE_SPEECH_CACHE`` or ``~/.cache/braindecode_speech``."""
    env = os.environ.get("BRAINDECODE_SPEECH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "braindecode_speech"


class ArrayCache:
    """Cache of ``(array, metadata)`` entries under ``root/namespace``.

    Parameters
    ----------
    root : cache folder.
    namespace : sub-folder separating kinds of entries (``"preprocessed"``, ``"features"``).
    """

    def __init__(self, root: str | Path, namespace: str) -> None:
        self.folder = Path(root) / namespace
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.folder / key

    def get_or_create(
        self, key: str, build: Callable[[Path], dict[str, Any]]
    ) -> tuple[np.memmap, dict[str, Any]]:
        """Return the cached entry ``key``, building it first if needed.

        ``build(tmp_folder)`` must write ``tmp_folder / "data.npy"`` (e.g. with
        :func:`numpy.lib.format.open_memmap`) and return the JSON-able metadata.
        """
        entry = self.path(key)
        if entry.exists():
            try:
                return self._load(entry)
            except CacheError as exc:
                logger.warning("%s; rebuilding it", exc)
                shutil.rmtree(entry, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.folder))
        try:
            meta = dict(build(tmp))
            data = np.load(tmp / "data.npy", mmap_mode="r")
            meta["_shape"] = list(data.shape)
            meta["_dtype"] = str(data.dtype)
            meta["_cache_version"] = CACHE_VERSION
            del data
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=_json_default))
            try:
                os.replace(tmp, entry)
            except OSError:  # another process finished the same entry first
                if not entry.exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self._load(entry)

    @staticmethod
    def _load(entry: Path) -> tuple[np.memmap, dict[str, Any]]:
        try:
            meta = json.loads((entry / "meta.json").read_text())
            data = np.load(entry / "data.npy", mmap_mode="r")
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise CacheError(f"Corrupted cache entry {entry} ({exc})") from None
        if list(data.shape) != meta.get("_shape") or str(data.dtype) != meta.get("_dtype") \
                or meta.get("_cache_version") != CACHE_VERSION:
            raise CacheError(f"Cache entry {entry} does not match its metadata")
        return data, meta


class RowReader:
    """Reads rows ``[start, stop)`` of a cached 2D array with ``os.pread``.

    Slicing a memory map leaves the touched pages mapped, so a process sampling windows all over
    a large study would see its resident memory grow to the size of the study. Explicit reads
    of the contiguous rows keep it bounded (the OS page cache still serves repeated reads).
    ``array`` must be a C-contiguous ``np.memmap`` opened by ``np.load(..., mmap_mode="r")``.
    """

    def __init__(self, array: np.memmap) -> None:
        if not isinstance(array, np.memmap) or array.ndim != 2 or not array.flags.c_contiguous:
            raise TypeError("RowReader needs a C-contiguous 2D np.memmap")
        self.path = str(array.filename)
        self.shape = array.shape
        self.dtype = array.dtype
        self.offset = int(array.offset)
        self.row_bytes = int(array.strides[0])
        self._fd: int | None = None
        self._pid = -1

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """A new ``[stop - start, n_columns]`` array."""
        if not 0 <= start <= stop <= self.shape[0]:
            raise IndexError(f"rows [{start}, {stop}) outside {self.path} of {self.shape[0]} rows")
        if self._fd is None or self._pid != os.getpid():  # one descriptor per process
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        out = np.empty((stop - start, self.shape[1]), dtype=self.dtype)
        size = (stop - start) * self.row_bytes
        if os.preadv(self._fd, [memoryview(out).cast("B")],
                     self.offset + start * self.row_bytes) != size:
            raise CacheError(f"{self.path} is shorter than its header says: delete the cache "
                             "entry folder to rebuild it")
        return out

    def __getstate__(self) -> dict[str, Any]:  # picklable for DataLoader workers
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")
