"""The kept heap (training/heap.py): freed large blocks are reused without page faults inside
it and glibc's defaults are back after it (fit's use of it: tests/test_training.py)."""

import platform
import resource

import pytest
import torch

from braindecode_speech.training.heap import kept_heap

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
MB = 1 << 20


def _faults_of_a_large_block(size: int) -> int:
    """Page faults of allocating, touching and freeing a float32 tensor of ``size`` bytes."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(size // 4, dtype=torch.float32)
    block.fill_(1.0)
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not GLIBC, reason="the kept heap applies to glibc's malloc only")
def test_freed_large_blocks_are_reused_inside_and_mapped_afresh_after():
    """Blocks above glibc's largest mmap threshold (32 MB). The second block is a little
    smaller than the first: an aligned allocation (PyTorch's) needs a free block of its size
    plus the alignment (see ``steps._roomy_like``)."""
    pages = 63 * MB // resource.getpagesize()
    _faults_of_a_large_block(64 * MB)
    assert _faults_of_a_large_block(63 * MB) > pages // 2  # mapped afresh
    with kept_heap() as kept:
        assert kept
        _faults_of_a_large_block(64 * MB)  # the heap grows once
        assert _faults_of_a_large_block(63 * MB) < pages // 20
    _faults_of_a_large_block(64 * MB)
    assert _faults_of_a_large_block(63 * MB) > pages // 2  # defaults back, free memory given back


def test_disabled_changes_nothing():
    with kept_heap(enabled=False) as kept:
        assert not kept
