"""The experiment's typed configuration: every section, with the paper's defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import Config
from ..data.batches import DataConfig
from ..data.dataset import NormConfig
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

__all__ = ["StudyConfig", "RidgeConfig", "ExperimentConfig"]


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


class ExperimentConfig(Config):
    """Everything that defines an experiment. Defaults are the paper's."""

    study: StudyConfig = Field(default_factory=StudyConfig)
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
    # data: only float16 storage changes what is computed (its other keys are excluded there)
    _omit_from_signature_at_default = ("data",)


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
        return self


