"""Experiments: the typed :class:`ExperimentConfig` (``config``), the named stages from a config
to the windows (``prepare``), the run from windows to a report (``run``), presets and grids."""

from .config import ExperimentConfig, RidgeConfig, StudyConfig
from .prepare import PreparedData, prepare_data, split_study, study_blocks
from .run import build_model, evaluate_models, evaluate_run, load_weights, run_experiment

__all__ = ["ExperimentConfig", "PreparedData", "RidgeConfig", "StudyConfig", "build_model",
           "evaluate_models", "evaluate_run", "load_weights", "prepare_data", "run_experiment",
           "split_study", "study_blocks"]
