"""Shared fixtures: the ``tiny`` simulated study, generated once per test session."""

from __future__ import annotations

import math
import os
from pathlib import Path


def _usable_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


# One BLAS/OpenMP thread per usable core, for this process and the CLI subprocesses the tests
# start: a container that shows more cores than its quota grants would otherwise oversubscribe
# them many times over (set before torch and numpy are imported).
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, str(_usable_cores()))

import pytest  # noqa: E402

from braindecode_speech.simulation import SimulationConfig, simulate  # noqa: E402


@pytest.fixture(scope="session")
def tiny_meg_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BIDS root of the ``tiny`` MEG study (2 subjects: KIT-208 and CTF-275, 200 Hz)."""
    return simulate(SimulationConfig.preset("tiny", modality="meg"),
                    tmp_path_factory.mktemp("simulated") / "tiny_meg")


@pytest.fixture(scope="session")
def tiny_eeg_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BIDS root of the ``tiny`` EEG study (2 subjects: biosemi128 and easycap-M10)."""
    return simulate(SimulationConfig.preset("tiny", modality="eeg"),
                    tmp_path_factory.mktemp("simulated") / "tiny_eeg")
