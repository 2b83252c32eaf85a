"""The speech-features interface and its configuration.

A :class:`SpeechFeatures` turns the audio of one block into ``[F, n_frames]`` float32 frames at
``sfreq`` Hz (120 Hz, the brain's rate). Frame ``i`` describes the audio *centred* on time
``i / sfreq`` s from the first audio sample, and a block of ``n_samples`` samples at ``sfreq_in``
Hz gives ``n_frames = round(n_samples / sfreq_in * sfreq)`` frames. Features are neither cached
nor standard-scaled here: the pipeline caches them per block and fits the scaler on training
data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from ..config import Config

__all__ = ["FeaturesConfig", "MelFeaturesConfig", "SpeechFeatures", "Wav2Vec2FeaturesConfig"]


class SpeechFeatures(ABC):
    """Speech features computed from a mono waveform.

    Subclasses set ``dimension`` (F, number of features) and ``sfreq`` (output rate, Hz) and
    implement :meth:`signature` and :meth:`_compute`.
    """

    dimension: int
    sfreq: float

    @abstractmethod
    def signature(self) -> str:
        """Stable hash of everything that changes the output (model, parameters, rates)."""

    @abstractmethod
    def _compute(self, wav: np.ndarray, sfreq: float) -> np.ndarray:
        """Frames ``[F, m]`` of the ``[n]`` float32 waveform, frame ``i`` centred on
        ``i / self.sfreq`` s, with ``m >= n_frames(n, sfreq)`` (extra frames are cropped)."""

    def n_frames(self, n_samples: int, sfreq: float) -> int:
        """Number of output frames for ``n_samples`` audio samples at ``sfreq`` Hz."""
        return round(n_samples / sfreq * self.sfreq)

    def __call__(self, wav: np.ndarray, sfreq: float) -> np.ndarray:
        """Features ``[F, n_frames]`` float32 of the mono waveform ``wav`` ``[n_samples]``
        sampled at ``sfreq`` Hz."""
        wav = np.asarray(wav)
        if wav.ndim != 1 or wav.size == 0:
            raise ValueError(f"{type(self).__name__} expects a non-empty mono waveform "
                             f"[n_samples], got shape {wav.shape}")
        if not np.isfinite(wav).all():
            raise ValueError(f"{type(self).__name__}: the waveform contains NaN or inf")
        if sfreq <= 0:
            raise ValueError(f"{type(self).__name__}: sampling rate must be positive, got {sfreq}")
        n_frames = self.n_frames(wav.size, sfreq)
        frames = self._compute(wav.astype(np.float32, copy=False), sfreq)
        if frames.shape[0] != self.dimension or frames.shape[1] < n_frames:
            raise RuntimeError(f"{type(self).__name__} computed frames of shape {frames.shape}, "
                               f"expected ({self.dimension}, >= {n_frames})")
        return np.ascontiguousarray(frames[:, :n_frames], dtype=np.float32)


class MelFeaturesConfig(Config):
    """Log-mel spectrogram settings (:class:`~.mel.MelFeatures`): the paper's Mel baseline."""

    n_mels: int = Field(120, gt=0)
    """number of mel bands (F)"""
    n_fft: int = Field(512, gt=0)
    """STFT window and FFT length, samples at 16 kHz"""
    hop_length: int = Field(128, gt=0)
    """STFT hop, samples at 16 kHz (before resampling to the brain's rate)"""
    log_eps: float = Field(1e-5, gt=0)
    """features are ``log10(mel power + log_eps)``"""

    def build(self, sfreq: float) -> SpeechFeatures:
        """The extractor, giving frames at ``sfreq`` Hz."""
        from .mel import MelFeatures

        return MelFeatures(self, sfreq)


class Wav2Vec2FeaturesConfig(Config):
    """wav2vec2 settings (:class:`~.wav2vec2.Wav2Vec2Features`): the paper's features."""

    _exclude_from_signature: ClassVar[tuple[str, ...]] = ("device",)

    model: str = "facebook/wav2vec2-large-xlsr-53"
    """Hugging Face model name (read from the local cache) or local folder"""
    layers: tuple[Annotated[int, Field(ge=0)], ...] = Field((14, 15, 16, 17, 18), min_length=1)
    """hidden states averaged (0 = input of the first transformer layer)"""
    chunk_s: float = Field(30.0, gt=0)
    """audio is run through the model in chunks of this many seconds"""
    context_s: float = Field(5.0, ge=0)
    """extra audio given to each chunk on both sides, s (its frames are dropped)"""
    device: str = "cpu"
    """torch device (``"cpu"``, ``"cuda"``)"""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """precision of the model's weights and activations (outputs are float32)"""

    def build(self, sfreq: float) -> SpeechFeatures:
        """The extractor, giving frames at ``sfreq`` Hz (weights are loaded on first use)."""
        from .wav2vec2 import Wav2Vec2Features

        return Wav2Vec2Features(self, sfreq)


class FeaturesConfig(Config):
    """Which speech features to compute, and each backend's settings; the defaults are the
    paper's wav2vec2 features. The frame rate is not set here: features are computed on the
    brain's clock, ``preprocess.sfreq`` (:meth:`build` takes it).

    Only the section of the backend selected by ``name`` is part of the signature.
    """

    name: Literal["wav2vec2", "mel"] = "wav2vec2"
    """``"wav2vec2"`` (section ``wav2vec2``) or ``"mel"`` (section ``mel``)"""
    wav2vec2: Wav2Vec2FeaturesConfig = Field(default_factory=Wav2Vec2FeaturesConfig)
    mel: MelFeaturesConfig = Field(default_factory=MelFeaturesConfig)

    @model_validator(mode="before")
    @classmethod
    def _no_rate(cls, data: Any) -> Any:
        if isinstance(data, dict) and "sfreq" in data:
            raise ValueError("features.sfreq is gone: speech features are computed at "
                             "preprocess.sfreq, the brain's rate (set that instead)")
        return data

    def signature_dict(self) -> dict[str, Any]:
        return {"name": self.name, self.name: self.backend.signature_dict()}

    @property
    def backend(self) -> Wav2Vec2FeaturesConfig | MelFeaturesConfig:
        """The selected backend's section."""
        return self.wav2vec2 if self.name == "wav2vec2" else self.mel

    def build(self, sfreq: float) -> SpeechFeatures:
        """The selected extractor, giving frames at ``sfreq`` Hz (the brain's rate)."""
        return self.backend.build(sfreq)
