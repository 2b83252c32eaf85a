"""Where the benchmarks keep the data they generate, between runs, and how much is there.

Generated studies, caches and candidate files are kept (regenerating the ``large`` study takes
tens of minutes), under ``$BRAINDECODE_SPEECH_BENCH`` or ``<tmp>/braindecode_speech_bench``. A full
``bench/run.py`` leaves about 45 GB there; ``python bench/run.py --clean`` deletes it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def folder() -> Path:
    """The benchmarks' data folder (not created)."""
    default = Path(tempfile.gettempdir()) / "braindecode_speech_bench"
    return Path(os.environ.get("BRAINDECODE_SPEECH_BENCH", default))


def size_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 where it does not exist)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
