"""On-disk cache of arrays, keyed by a stable hash, written atomically and checksummed.

An entry is a folder ``<root>/<namespace>/<key>/`` holding ``data.npy`` (read back as a
read-only memory map, so nothing has to fit in RAM) and ``meta.json``. Entries are built in a
temporary sibling folder and renamed into place, so a killed process never leaves a half-written
entry behind. ``meta.json`` stores the CRC-32 of ``data.npy``, verified the first time a process
opens the entry (about 30 ms per 100 MB); an entry whose files do not match their metadata
(truncated, overwritten, edited) is rebuilt, with a WARNING line naming it.

Keys are built from the *content* of the input files (:func:`file_digest`, SHA-256), so a file
rewritten in place, even with the same size, or replaced gives a new entry. The digest of a file
is remembered under ``<root>/digests/`` by its fingerprint (path, size, inode, mtime and ctime
in ns): a file is read again only when its fingerprint changes, e.g. once after a copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import shutil
import tempfile
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import apply_umask

__all__ = ["ArrayCache", "CacheError", "RowReader", "default_cache_dir", "file_digest",
           "fingerprint", "CACHE_VERSION"]

logger = logging.getLogger(__name__)

#: bump when the layout or the content of cached arrays changes
CACHE_VERSION = 3

_CHUNK = 1 << 20  # bytes read at a time when hashing
#: pre-fault mapped rows in one system call where the platform allows it (Linux)
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
#: digests of files by fingerprint, and entries verified by this process (by fingerprint)
_DIGESTS: dict[tuple, str] = {}
_VERIFIED: dict[str, tuple] = {}


class CacheError(RuntimeError):
    """A cache entry is unusable; the message names the folder and what to do."""


def default_cache_dir() -> Path:
    """``$BRAINDECODE_SPEECH_CACHE`` or ``~/.cache/braindecode_speech``."""
    env = os.environ.get("BRAINDECODE_SPEECH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "braindecode_speech"


def fingerprint(path: str | Path) -> tuple:
    """``(path, device, inode, size, mtime_ns, ctime_ns)`` of the file ``path`` (resolved).

    Writing to a file changes its mtime and ctime, and ctime cannot be set back by ``touch``.
    """
    path = Path(path).resolve()
    st = path.stat()
    return str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def file_digest(path: str | Path, root: str | Path | None = None) -> str:
    """SHA-256 (hex) of the content of the file ``path`` (about 70 ms per 100 MB).

    Remembered by the file's :func:`fingerprint` in this process, and under ``root/digests/``
    when ``root`` (a cache folder) is given, so that an unchanged file is hashed only once.
    """
    key = fingerprint(path)
    if key in _DIGESTS:
        return _DIGESTS[key]
    memo = None
    if root is not None:
        memo = Path(root) / "digests" / hashlib.sha256(repr(key).encode()).hexdigest()[:32]
        if memo.is_file():
            digest = memo.read_text().strip()
            if len(digest) == 64:
                _DIGESTS[key] = digest
                return digest
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            sha.update(block)
    digest = _DIGESTS[key] = sha.hexdigest()
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(digest)
        os.replace(tmp, memo)
    return digest


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            crc = zlib.crc32(block, crc)
    return crc


class ArrayCache:
    """Cache of ``(array, metadata)`` entries under ``root/namespace``, checksummed.

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
        :func:`braindecode_speech.fileio.atomic_npy`) and return the JSON-able metadata.
        """
        entry = self.path(key)
        if entry.exists():
            try:
                return self._load(entry)
            except CacheError as exc:
                logger.warning("%s; rebuilding it", exc)
                shutil.rmtree(entry, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.folder))
        apply_umask(tmp)  # readable by whoever may read the cache folder, not 0700
        try:
            meta = dict(build(tmp))
            data = np.load(tmp / "data.npy", mmap_mode="r")
            meta["_shape"] = list(data.shape)
            meta["_dtype"] = str(data.dtype)
            meta["_cache_version"] = CACHE_VERSION
            del data
            meta["_crc32"] = _crc32(tmp / "data.npy")
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=_json_default))
            try:
                os.replace(tmp, entry)
                _VERIFIED[str(entry / "data.npy")] = fingerprint(entry / "data.npy")
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
        """The entry's memory map and metadata; its checksum is verified the first time this
        process opens it (and again if ``data.npy`` was written to since)."""
        array = entry / "data.npy"
        try:
            meta = json.loads((entry / "meta.json").read_text())
            data = np.load(array, mmap_mode="r")
            stat = fingerprint(array)
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise CacheError(f"Corrupted cache entry {entry} ({exc})") from None
        if list(data.shape) != meta.get("_shape") or str(data.dtype) != meta.get("_dtype") \
                or meta.get("_cache_version") != CACHE_VERSION:
            raise CacheError(f"Cache entry {entry} does not match its metadata")
        if _VERIFIED.get(str(array)) != stat:
            if _crc32(array) != meta.get("_crc32"):
                raise CacheError(f"Cache entry {entry}: data.npy does not match its checksum "
                                 "(overwritten or damaged)")
            _VERIFIED[str(array)] = stat
        return data, meta


class RowReader:
    """Rows ``[start, stop)`` of a cached C-contiguous array ``[N, *row_shape]`` (a ``.npy``
    file opened by ``np.load(..., mmap_mode="r")``): the one reader of cached arrays.

    - :meth:`read` copies rows with ``os.preadv`` (into ``out`` when given, e.g. a reused
      buffer). Slicing a memory map instead leaves the touched pages mapped, so a process
      sampling windows all over a large study would see its resident memory grow to the size of
      the study; explicit reads keep it bounded (the OS page cache still serves repeated reads).
    - :meth:`view` maps the rows read-only, pre-faulted, without a copy; the mapping lives as long
      as the returned array, so its pages leave the resident set once the caller drops it. The
      rows after them are announced to the kernel (``POSIX_FADV_WILLNEED``) so that reading them
      from disk overlaps with the work on these.
    - :meth:`mapped` gives the rows as a view of one read-only, pre-faulted mapping of the whole
      file, kept for the life of the reader (one per process): no system call, no page fault
      and no copy per read, the
      fastest way to sample windows from a page-cached study, but every page touched stays in
      the process's resident set (as shared file pages, ``RssFile``, which the kernel can
      reclaim; not private memory), up to the size of the file.

    ``scale`` (``[row_shape[-1]]`` float32, powers of two): the array is stored in float16 as
    ``value / scale``; :meth:`read` returns float32 ``stored * scale`` (exact: a float16 is a
    float32, and multiplying by a power of two is exact).
    """

    def __init__(self, array: np.memmap, scale: np.ndarray | None = None) -> None:
        if not isinstance(array, np.memmap) or array.ndim < 1 or not array.flags.c_contiguous \
                or array.filename is None or not array.dtype.isnative \
                or isinstance(array.base, np.ndarray):
            raise TypeError("RowReader needs a whole C-contiguous np.memmap of a file")
        self.path = str(array.filename)
        self.shape = array.shape
        self.row_shape = array.shape[1:]
        self.stored_dtype = array.dtype
        self.offset = int(array.offset)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * array.itemsize
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float32)
        if self.scale is not None and (array.dtype != np.float16 or
                                       self.scale.shape != self.row_shape[-1:]):
            raise ValueError(f"{self.path}: a decoding scale needs a float16 array and one "
                             f"factor per column ({array.dtype}, scale {self.scale.shape})")
        self.dtype = np.dtype(np.float32) if self.scale is not None else array.dtype
        size = os.stat(self.path).st_size
        if size < self.offset + self.shape[0] * self.row_bytes:
            raise CacheError(f"{self.path} holds {size} bytes, fewer than its shape "
                             f"{self.shape} needs: truncated file?")
        self._fd: int | None = None
        self._pid = -1
        self._local = threading.local()
        self._map: tuple[int, np.ndarray] | None = None  # (pid, the whole file mapped)
        self._map_lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # one descriptor per process
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def _check(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= self.shape[0]:
            raise IndexError(f"rows [{start}, {stop}) outside {self.path} of {self.shape[0]} rows")

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` as ``[stop - start, *row_shape]`` (:attr:`dtype`), written into
        ``out`` (C-contiguous, that shape and dtype) when given, else a new array."""
        self._check(start, stop)
        shape = (stop - start, *self.row_shape)
        if out is None:
            out = np.empty(shape, dtype=self.dtype)
        elif out.shape != shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {self.dtype} array of shape {shape}, "
                             f"got {out.dtype} {out.shape}")
        target = out
        if self.scale is not None:  # stored float16 into a per-thread buffer, then decoded
            raw = getattr(self._local, "raw", None)
            if raw is None or raw.size < out.size:
                raw = self._local.raw = np.empty(out.size, dtype=np.float16)
            target = raw[:out.size].reshape(shape)
        size = (stop - start) * self.row_bytes
        if size and os.preadv(self._descriptor(), [memoryview(target).cast("B")],
                              self.offset + start * self.row_bytes) != size:
            raise CacheError(f"{self.path} is shorter than its header says: delete the cache "
                             "entry folder to rebuild it")
        if self.scale is not None:
            np.multiply(target, self.scale, out=out)
        return out

    def mapped(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` as :meth:`read` returns them, from the reader's mapping of the
        whole file: a read-only view of it (no copy) when stored in float32; decoded into
        ``out`` (or a new array) when stored in float16 with a scale."""
        self._check(start, stop)
        with self._map_lock:
            if self._map is None or self._map[0] != os.getpid():
                self._map = (os.getpid(), self._map_file())
        rows = self._map[1][start:stop]
        if self.scale is None:
            return rows
        if out is None:
            out = np.empty(rows.shape, dtype=np.float32)
        return np.multiply(rows, self.scale, out=out)

    def _map_file(self) -> np.ndarray:
        """The whole array, mapped read-only and pre-faulted (``MAP_POPULATE``: its pages are
        mapped in one system call, ~0.1 s per GB from the page cache, instead of faulting in
        a few at a time as windows touch them)."""
        n_bytes = self.offset + self.shape[0] * self.row_bytes
        mapping = mmap.mmap(self._descriptor(), n_bytes, flags=mmap.MAP_SHARED | _MAP_POPULATE,
                            prot=mmap.PROT_READ)
        count = self.shape[0] * (self.row_bytes // self.stored_dtype.itemsize)
        return np.frombuffer(mapping, self.stored_dtype, count, self.offset).reshape(self.shape)

    def view(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as a read-only ``[stop - start, *row_shape]`` array mapping the
        file (stored values: no decoding), without a copy."""
        self._check(start, stop)
        if self.scale is not None:
            raise ValueError(f"{self.path} is stored in float16 with a scale: use read()")
        fd = self._descriptor()
        first = self.offset + start * self.row_bytes
        aligned = first - first % mmap.ALLOCATIONGRANULARITY
        n_bytes = (stop - start) * self.row_bytes
        mapping = mmap.mmap(fd, first - aligned + n_bytes, offset=aligned,
                            flags=mmap.MAP_SHARED | _MAP_POPULATE, prot=mmap.PROT_READ)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, first + n_bytes, n_bytes, os.POSIX_FADV_WILLNEED)
        count = (stop - start) * (self.row_bytes // self.stored_dtype.itemsize)
        rows = np.frombuffer(mapping, self.stored_dtype, count, first - aligned)
        return rows.reshape(stop - start, *self.row_shape)

    def close(self) -> None:
        """Close the file descriptor (reads open it again)."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __getstate__(self) -> dict[str, Any]:  # picklable for DataLoader workers
        return {**self.__dict__, "_fd": None, "_pid": -1, "_local": None, "_map": None,
                "_map_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _local=threading.local(), _map_lock=threading.Lock())

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
