"""The experiment's typed configuration: every section, with the paper's defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import Config
from ..data.batches import DataConfig
from ..data.dataset import NormConfig
from ..data.labels import Task
from ..data.preprocessing import PreprocessConfig
from ..data.splits import (
    SplitConfig,
)
from ..data.studies import names as study_names
from ..data.windows import WindowConfig
from ..evaluation.retrieval import (
    EvaluationConfig,
)
from ..features import FeaturesConfig
from ..models import EncoderConfig
from ..training.losses import LossConfig
from ..training.trainer import OptimConfig

__all__ = ["StudyConfig", "RidgeConfig", "TaskConfig", "ExperimentConfig"]


class StudyConfig(Config):
    """Which study, where, which subjects."""

    name: str = "simulated"
    root: str | None = None
    """local copy of the study (not part of the signature: the data, not their place, matter)"""
    subjects: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    """keyword arguments of the study adapter"""
    on_error: Literal["raise", "skip"] = "raise"
    """a recording that cannot be read: stop with the error, or skip it (listed in the report)"""

    _exclude_from_signature = ("root",)

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in study_names():
            raise ValueError(f"unknown study {value!r}; known studies: {', '.join(study_names())}")
        return value


class RidgeConfig(Config):
    """The linear ridge baseline evaluated beside the brain encoder."""

    enabled: bool = True
    max_windows: int = Field(2000, ge=1)
    """training windows used to fit it (a random subset)"""
    n_components: int = Field(64, ge=1)
    """brain principal components kept before lagging"""
    tmax: float = Field(0.3, ge=0)
    """longest brain lag, s (lags from 0)"""
    lag_step: int = Field(2, ge=1)
    """spacing of the lags, samples (2 at 120 Hz: every 17 ms)"""
    time_step: int = Field(6, ge=1)
    """fit on every n-th time point of the (overlapping) windows"""


class TaskConfig(Config):
    """What is decoded. The default is the paper's: retrieval of speech segments among the
    distinct test segments. ``speech_detection`` (speech or silence at every time point) and
    ``phoneme_classification`` (the phoneme starting at the window's anchor, 39 ARPAbet classes)
    are the LibriBrain 2025 competition's tasks: targets from the events
    (:mod:`~braindecode_speech.data.labels`), the same encoder with one output per class and
    time step, F1-macro and balanced accuracy
    (:mod:`~braindecode_speech.evaluation.classification`). Neither needs the audio: no speech
    features are computed, and ``loss``, ``features`` and ``ridge`` do not apply."""

    name: Task = "retrieval"
    average: int = Field(1, ge=1, le=1000)
    """phoneme_classification: test windows of the same phoneme and recording are averaged this
    many at a time before the model (the competition's signal averaging; 1: off). Windows left
    over once a class's groups are full are not scored (counted in the report)"""
    class_weights: Literal["balanced", "none"] = "balanced"
    """speech_detection and phoneme_classification: weigh each class's loss terms by the
    inverse of its training frequency, so that the classes count equally as in F1-macro
    (``balanced``), or not (``none``)"""


class ExperimentConfig(Config):
    """Everything that defines an experiment. Defaults are the paper's."""

    study: StudyConfig = Field(default_factory=StudyConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    splits: SplitConfig = Field(default_factory=SplitConfig)
    windows: WindowConfig = Field(default_factory=WindowConfig)
    norm: NormConfig = Field(default_factory=NormConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: EncoderConfig = Field(default_factory=EncoderConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    ridge: RidgeConfig = Field(default_factory=RidgeConfig)
    cache_dir: str | None = None
    """cache of preprocessed data and features (default: $BRAINDECODE_SPEECH_CACHE or
    ~/.cache/braindecode_speech)"""

    _exclude_from_signature = ("cache_dir",)
    # data: only float16 storage changes what is computed (its other keys are excluded there);
    # task: added after the paper's configs were hashed
    _omit_from_signature_at_default = ("data", "task")


    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        """Checks across sections, before any data are read."""
        if self.windows.n_times(self.preprocess.sfreq) < 1:
            raise ValueError(f"windows.tmax - windows.tmin ({self.windows.tmax} - "
                             f"{self.windows.tmin} s) is shorter than one sample at "
                             f"preprocess.sfreq={self.preprocess.sfreq} Hz")
        if self.norm.baseline and round(-self.windows.tmin * self.preprocess.sfreq) < 1:
            raise ValueError(f"norm.baseline averages the window before the anchor, but "
                             f"windows.tmin={self.windows.tmin} s leaves no sample there: set "
                             "windows.tmin < 0 or norm.baseline=false")
        task = self.task.name
        if task != "retrieval" and self.optim.step != "plain":
            raise ValueError(f"optim.step={self.optim.step!r} computes the contrastive loss of "
                             f"retrieval; task.name={task!r} needs optim.step=plain")
        if task == "phoneme_classification" and not self.windows.tmin <= 0 < self.windows.tmax:
            raise ValueError(f"task.name=phoneme_classification anchors windows at phoneme "
                             f"onsets, which must lie inside them: windows.tmin "
                             f"({self.windows.tmin} s) <= 0 < windows.tmax ({self.windows.tmax} s)")
        if self.task.average > 1 and task != "phoneme_classification":
            raise ValueError(f"task.average={self.task.average} averages phoneme windows: it "
                             "needs task.name=phoneme_classification")
        return self


