"""Ready-made experiment configurations for the simulated study.

- :func:`demo_config`: the README's demo, sized for a laptop CPU (about 5 minutes of training on
  2 cores). It departs from the paper where a CPU forces it: mel spectrograms instead of
  wav2vec2 (no pretrained weights can be fetched offline), a narrower and shallower encoder,
  smaller batches and fewer epochs. Everything else (windows, lag, scaling, clamping, splits,
  CLIP loss, retrieval among all distinct test segments) is the paper's.
- :func:`tiny_config`: seconds-long runs for the test suite.

The paper's own configuration is ``ExperimentConfig()`` itself.
"""

from __future__ import annotations

from pathlib import Path

from .config import ExperimentConfig

__all__ = ["demo_config", "tiny_config"]

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
                study: str = "simulated") -> ExperimentConfig:
    """The demo's configuration on the simulated study at ``root``."""
    return _config(root, DEMO_OVERRIDES, cache_dir, study)


def tiny_config(root: str | Path, cache_dir: str | Path | None = None,
                study: str = "simulated") -> ExperimentConfig:
    """A seconds-long configuration for tests (any study: pass ``study``)."""
    return _config(root, TINY_OVERRIDES, cache_dir, study)
