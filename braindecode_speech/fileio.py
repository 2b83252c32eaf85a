"""Permissions of files written atomically.

:func:`tempfile.mkstemp`, :class:`tempfile.NamedTemporaryFile` and :func:`tempfile.mkdtemp`
create their file (folder) with mode 0600 (0700) whatever the umask, and an atomic write renames
that file onto its destination: on a shared cluster colleagues could not read a report or use a
shared cache. :func:`apply_umask` gives the temporary file the mode a plain ``open`` (``mkdir``)
would have given it, ``0o666 & ~umask`` (``0o777 & ~umask``), before it is renamed.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["apply_umask", "umask"]


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
