"""Shared fixtures, each generated once per test session: the ``tiny`` simulated studies and
the example layouts of the public studies.

Example layouts are read-only; a test that modifies files takes ``copy`` (or copies one with
``fixtures.copy_layout``). A module whose tests are about one study sets ``STUDY = "<name>"``
and takes ``root`` / ``copy``; a test about every study takes ``example_layout``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
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
from fixtures import LAYOUT_STUDIES, PAPER_LAYOUT_STUDIES, copy_layout  # noqa: E402

from braindecode_speech.simulation import SimulationConfig, simulate  # noqa: E402
from braindecode_speech.simulation.layouts import write_example_layout  # noqa: E402


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


@pytest.fixture(scope="session")
def example_layouts(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``example_layouts(study)``: root of the study's example layout (seed 0, 2 subjects),
    written on first use in the session."""
    roots: dict[str, Path] = {}

    def layout(study: str) -> Path:
        if study not in roots:
            roots[study] = write_example_layout(study, tmp_path_factory.mktemp(study))
        return roots[study]

    return layout


@pytest.fixture(scope="session", params=PAPER_LAYOUT_STUDIES)
def example_layout(request: pytest.FixtureRequest,
                   example_layouts: Callable[[str], Path]) -> tuple[str, Path]:
    """``(study, root)`` of each of the paper's studies' example layout, in turn."""
    return request.param, example_layouts(request.param)


@pytest.fixture
def root(request: pytest.FixtureRequest, example_layouts: Callable[[str], Path]) -> Path:
    """Example layout of the test module's ``STUDY``."""
    study = getattr(request.module, "STUDY", None)
    if study not in LAYOUT_STUDIES:
        raise pytest.UsageError(f"{request.module.__name__}: set STUDY to one of "
                                f"{LAYOUT_STUDIES} to use the fixture 'root'")
    return example_layouts(study)


@pytest.fixture
def copy(root: Path, tmp_path: Path) -> Path:
    """A modifiable copy of ``root``."""
    return copy_layout(root, tmp_path / root.name)


@pytest.fixture(scope="session")
def tiny_model(tiny_meg_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny run on the tiny MEG study (ridge off), trained once per session, and its exported
    model folder (read-only: copy before changing): ``config``, ``run``, ``model``, ``cache``,
    ``root``."""
    from braindecode_speech.experiments.presets import tiny_config
    from braindecode_speech.experiments.run import run_experiment
    from braindecode_speech.sharing import export_run

    folder = tmp_path_factory.mktemp("tiny_model")
    config = tiny_config(tiny_meg_root, cache_dir=folder / "cache")
    config = config.with_overrides({"ridge.enabled": False})
    run_experiment(config, folder / "run")
    export_run(folder / "run", folder / "model")
    return {"config": config, "run": folder / "run", "model": folder / "model",
            "cache": folder / "cache", "root": tiny_meg_root}
