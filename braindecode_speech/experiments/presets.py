"""Ready-made experiment configurations for the simulated study.

- :func:`demo_config`: the README's demo, sized for a laptop CPU (about 5 minutes of training on
  2 cores). It departs from the paper where a CPU forces it: mel spectrograms instead of
  wav2vec2 (no pretrained weights can be fetched offline), a narrower and shallower encoder,
  smaller batches and fewer epochs. Everything else (windows, lag, scaling, clamping, splits,
  CLIP loss, retrieval among all distinct test segments) is the paper's. With
  ``modality="eeg"`` the EEG-sized changes of :data:`EEG_DEMO_OVERRIDES` come on top, and with
  ``task=...`` the task's :data:`TASK_OVERRIDES`.
- :func:`tiny_config`: seconds-long runs for the test suite.

The paper's own configuration is ``ExperimentConfig()`` itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ..data.labels import Task
from .config import ExperimentConfig

__all__ = ["DEMO_OVERRIDES", "EEG_DEMO_OVERRIDES", "TASK_OVERRIDES", "DEMO_TASK_OVERRIDES",
           "demo_config", "tiny_config"]

#: the CPU-sized changes of the demo, as dotted overrides of the paper's configuration
DEMO_OVERRIDES: dict[str, object] = {
    "features.name": "mel",
    "model.n_spatial": 64,
    "model.n_fourier": 16,
    "model.hidden": 64,
    "model.depth": 2,
    "optim.batch_size": 128,
    "optim.max_epochs": 12,
    "optim.batches_per_epoch": 30,
    "optim.patience": 3,
    "optim.lr": 2e-3,
    "evaluation.n_bootstrap": 200,
    "ridge.max_windows": 1000,
}

#: the EEG-sized changes, on top of :data:`DEMO_OVERRIDES`, for the simulated EEG study (60-128
#: electrodes, lower SNR than MEG). With the MEG demo's settings the encoder overfits from epoch 3
#: on (validation loss rises while training loss falls) and early stopping ends the run at epoch
#: 6; fewer spatial-attention outputs (EEG has at most 128 sensors, whose fields overlap more),
#: dropout in the convolutions, a lower learning rate and one more epoch of patience let it train
#: longer. Measured on the demo study (seed 0, AMD EPYC, 2 cores), segment top-10 among all
#: distinct test segments: 30.2 % with the MEG demo settings (best epoch 3 of 6), 31.3 % with
#: these (best epoch 4 of 8); chance 2.6 %.
EEG_DEMO_OVERRIDES: dict[str, object] = {
    "model.n_spatial": 32,
    "model.dropout": 0.2,
    "optim.lr": 1e-3,
    "optim.patience": 4,
    "optim.max_epochs": 15,
}

#: the changes each task beyond retrieval makes (``task.name`` and the window geometry it needs).
#: Speech detection keeps the paper's 3 s windows (a label per time point; every 0.5 s in train
#: and valid, tiling the test blocks). Phoneme classification anchors a window at each phoneme onset: 0.7 s, from
#: 0.2 s before the onset (the baseline interval) to 0.5 s after it (the competition's 0.5 s
#: after the onset), brain 150 ms later as for retrieval.
TASK_OVERRIDES: dict[str, dict[str, object]] = {
    "retrieval": {},
    "speech_detection": {"task.name": "speech_detection"},
    "phoneme_classification": {"task.name": "phoneme_classification", "windows.tmin": -0.2,
                               "windows.tmax": 0.5},
}

#: the demo's changes for a task, on top of its :data:`TASK_OVERRIDES`. Phoneme classification
#: trains 100 batches per epoch: the window classifier's time weights start as the mean over
#: time, which sees no phoneme, and on the simulated study with a planted phoneme response
#: (``--snr 0.1 --phoneme-power 2``) the validation loss only starts falling after about 150
#: steps, so with 30 batches per epoch early stopping ended the run before it did; test windows
#: are also scored averaged 20 at a time (the demo study has too few per phoneme and recording
#: for the competition's 100).
DEMO_TASK_OVERRIDES: dict[str, dict[str, object]] = {
    "retrieval": {},
    "speech_detection": {},
    "phoneme_classification": {"optim.batches_per_epoch": 100, "task.average": 20},
}

#: the changes of the test configuration (shorter blocks and larger valid/test shares, so that
#: the two minutes of speech of the tiny study fill all three splits)
TINY_OVERRIDES: dict[str, object] = {
    "features.name": "mel",
    "splits.min_block_duration": 4.0,
    "splits.test_ratio": 0.25,
    "splits.valid_ratio": 0.2,
    "model.n_spatial": 32,
    "model.n_fourier": 8,
    "model.hidden": 32,
    "model.depth": 2,
    "optim.batch_size": 32,
    "optim.max_epochs": 2,
    "optim.batches_per_epoch": 8,
    "optim.lr": 3e-3,
    "optim.progress": False,
    "evaluation.n_bootstrap": 50,
    "ridge.max_windows": 200,
}


def _config(root: str | Path, overrides: dict[str, object], cache_dir: str | Path | None,
            study: str) -> ExperimentConfig:
    config = ExperimentConfig().with_overrides(overrides)
    return config.with_overrides({"study.name": study, "study.root": str(root),
                                  "cache_dir": None if cache_dir is None else str(cache_dir)})


def demo_config(root: str | Path, cache_dir: str | Path | None = None,
                study: str = "simulated",
                modality: Literal["meg", "eeg"] = "meg",
                task: Task = "retrieval") -> ExperimentConfig:
    """The demo's configuration on the simulated study at ``root`` (``modality="eeg"`` adds
    :data:`EEG_DEMO_OVERRIDES`, ``task`` its :data:`TASK_OVERRIDES` and
    :data:`DEMO_TASK_OVERRIDES`)."""
    overrides = {**DEMO_OVERRIDES, **(EEG_DEMO_OVERRIDES if modality == "eeg" else {}),
                 **TASK_OVERRIDES[task], **DEMO_TASK_OVERRIDES[task]}
    return _config(root, overrides, cache_dir, study)


def tiny_config(root: str | Path, cache_dir: str | Path | None = None,
                study: str = "simulated") -> ExperimentConfig:
    """A seconds-long configuration for tests (any study: pass ``study``)."""
    return _config(root, TINY_OVERRIDES, cache_dir, study)
