"""Large CPU tensors kept in the process's heap between training steps (glibc's ``malloc``).

glibc serves every block above its mmap threshold (which adapts, up to 32 MB at most) with a
fresh ``mmap`` and unmaps it when it is freed. A paper-sized training step allocates and frees
such blocks many times (the batch's speech projected through the last layer is 118 MB in bf16,
a loader batch 77 MB): the kernel maps, zero-fills and page-faults them again at every step,
130 k faults per bf16 ``fast`` step and 520 k per float32 one. :func:`kept_heap` makes
``malloc`` serve them from the heap and keep freed memory there (``mallopt``: no mmap, a 2 GB
trim threshold), so a step reuses the pages of the one before; afterwards it restores glibc's
default settings and hands the free memory back (``malloc_trim``). The trainer applies it
during ``fit`` with the ``fast`` step on CPU (``OptimConfig.cpu_kept_heap``), whose allocations
are laid out to reuse freed blocks (``steps._roomy_like``); ``plain``'s are not (its heap would
grow from 7.9 to 13.8 GiB at the paper's batch). ``bench/train_step.py`` measures steps with
and without it.

Where the C library is not glibc (macOS, musl), nothing changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import platform
from collections.abc import Iterator

__all__ = ["kept_heap"]

logger = logging.getLogger(__name__)

# mallopt parameters and glibc's defaults (malloc.h, malloc/malloc.c)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
#: free memory at the top of the heap above which glibc gives it back to the system (mallopt
#: takes an int): more than the free memory a paper-sized step leaves at its end
_KEPT_TRIM_THRESHOLD = 2**31 - 1


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextlib.contextmanager
def kept_heap(enabled: bool = True) -> Iterator[bool]:
    """Inside the block, large blocks come from the heap and freed memory stays there (glibc
    only); yields whether that applies. Afterwards glibc's default mmap and trim settings
    are set again (not its adaptive threshold, which any ``mallopt`` call turns off) and the
    heap's free memory is given back to the system."""
    libc = _glibc() if enabled else None
    if libc is None:
        if enabled:
            logger.debug("kept heap: not glibc (%s), malloc left as it is", platform.libc_ver())
        yield False
        return
    applied = bool(libc.mallopt(_M_MMAP_MAX, 0)
                   and libc.mallopt(_M_TRIM_THRESHOLD, _KEPT_TRIM_THRESHOLD))
    if applied:
        logger.debug("kept heap: large blocks from the heap, trimmed above %d bytes",
                     _KEPT_TRIM_THRESHOLD)
    else:
        logger.warning("kept heap: glibc's mallopt refused the settings; malloc's defaults kept")
    try:
        yield applied
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
