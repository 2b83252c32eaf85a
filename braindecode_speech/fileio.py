"""Files written atomically: their permissions, and arrays written through a memory map.

:func:`tempfile.mkstemp`, :class:`tempfile.NamedTemporaryFile` and :func:`tempfile.mkdtemp`
create their file (folder) with mode 0600 (0700) whatever the umask, and an atomic write renames
that file onto its destination: on a shared cluster colleagues could not read a report or use a
shared cache. :func:`apply_umask` gives the temporary file the mode a plain ``open`` (``mkdir``)
would have given it, ``0o666 & ~umask`` (``0o777 & ~umask``), before it is renamed.

:func:`atomic_npy` writes a ``.npy`` array too large for memory (preprocessed recordings,
speech features, decoded test windows) through a memory map, so that readers
(``np.load(path, mmap_mode="r")``) see either no file or the whole array.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

__all__ = ["apply_umask", "atomic_npy", "atomic_path", "umask"]


def umask() -> int:
    """The process's umask (read from ``/proc`` on Linux, without changing it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)  # no /proc: read it by setting it, then restore it
    os.umask(current)
    return current


def apply_umask(path: str | Path) -> None:
    """Give ``path`` (a file, or a folder) the mode ``open`` (``mkdir``) gives under the umask."""
    full = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, full & ~umask())


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Write ``path`` atomically: yields a temporary path beside it to write to. On a normal
    exit the temporary file gets the mode the umask gives new files (:func:`apply_umask`) and
    is renamed onto ``path``; on an exception (or a generator closed while writing) it is
    removed and ``path`` is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_npy(path: str | Path, shape: tuple[int, ...],
               dtype: np.dtype | type = np.float32) -> Iterator[np.memmap]:
    """Write the ``.npy`` file ``path`` through a memory map, atomically (:func:`atomic_path`).

    Yields a writable ``np.memmap`` of ``shape`` and ``dtype``; on a normal exit it is flushed
    and the file appears at ``path`` whole, on an exception not at all. Read it back with
    ``np.load(path, mmap_mode="r")``.
    """
    with atomic_path(path) as tmp:
        out = open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
        yield out
        out.flush()
