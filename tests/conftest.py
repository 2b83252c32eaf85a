"""Shared fixtures: the ``tiny`` simulated study, generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from braindecode_speech.simulation import SimulationConfig, simulate


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
