"""Parameters of the simulated speech-listening study, and its presets.

``SimulationConfig.preset(name, **overrides)`` gives the ``tiny`` (unit tests), ``demo``
(default, the README's demo) or ``large`` (scale tests: over 20 h of 208-channel MEG at
1000 Hz) study. Every field is validated; ``signature()`` keys the generated folder.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from ..config import Config, ConfigError
from ..data.study import Modality
from .brain import DEFAULT_SNR
from .sensors import EEG_LAYOUTS, MEG_LAYOUTS
from .tts import TTSError, check_voice

__all__ = ["SimulationConfig", "PRESETS", "DEFAULT_VOICES"]

#: eSpeak NG voices (language + variant) read by the simulated narrators
DEFAULT_VOICES = ("en-us+f3", "en-us+m3", "en-gb-x-rp+f2", "en+m1", "en-us+f4",
                  "en-gb-scotland+m4")

PresetName = Literal["tiny", "demo", "large"]
MegLayout = Literal["KIT-208", "CTF-275"]
EegLayout = Literal["biosemi128", "easycap-M10"]

#: preset -> field values (the other fields keep their defaults)
PRESETS: dict[str, dict[str, Any]] = {
    # tiny: two minutes of data per subject, so the SNR is raised 20-fold for effects to show
    "tiny": dict(n_subjects=2, n_sessions=1, n_stories=2, story_duration=45.0,
                 chunk_duration=20.0, sfreq=200.0, snr=0.1, artifacts_per_minute=1.0),
    "demo": dict(n_subjects=5, n_sessions=1, n_stories=4, story_duration=180.0,
                 chunk_duration=60.0, sfreq=200.0),
    "large": dict(n_subjects=20, n_sessions=2, n_stories=4, story_duration=480.0,
                  chunk_duration=180.0, sfreq=1000.0, meg_layouts=("KIT-208",)),
}


class SimulationConfig(Config):
    """A simulated MEG/EEG study of people listening to synthesised stories.

    Every subject hears every story once per session (one recording per story, BIDS task =
    story index), in a subject-specific order.
    """

    _exclude_from_signature: ClassVar[tuple[str, ...]] = ("n_jobs",)
    _omit_from_signature_at_default: ClassVar[tuple[str, ...]] = ("phoneme_power",)

    preset: PresetName = Field("demo", description="the preset these values come from (a label)")
    seed: int = Field(0, ge=0, description="seed of everything: stories, voices, subjects, noise")
    modality: Modality = "meg"
    meg_layouts: tuple[MegLayout, ...] = Field(
        MEG_LAYOUTS, min_length=1, description="MEG sensor sets, assigned to subjects in turn")
    eeg_layouts: tuple[EegLayout, ...] = Field(
        EEG_LAYOUTS, min_length=1, description="EEG sensor sets, assigned to subjects in turn")

    n_subjects: int = Field(5, ge=1)
    n_sessions: int = Field(1, ge=1)
    n_stories: int = Field(4, ge=1)
    story_duration: float = Field(180.0, gt=0, description="speech per story, s")
    chunk_duration: float = Field(60.0, gt=0, description="target length of a wav file, s")
    sfreq: float = Field(200.0, ge=100.0, description="sampling rate of the recordings, Hz")

    speech_rate: tuple[int, int] = Field((145, 205), description="range of words per minute")
    voices: tuple[str, ...] = Field(DEFAULT_VOICES, min_length=1)
    sentence_gap: tuple[float, float] = Field((0.3, 1.0), description="silence between "
                                              "sequences of a wav file, s")
    word_list_rate: float = Field(0.1, ge=0, le=1, description="probability that a sequence "
                                  "is a word list")
    repeat_rate: float = Field(0.08, ge=0, le=1, description="probability that a sentence "
                               "comes from the pool shared by all stories")

    snr: float = Field(DEFAULT_SNR, ge=0, description="signal-to-noise power ratio, "
                       "see braindecode_speech.simulation.brain")
    phoneme_power: float = Field(0.0, ge=0, description="power of an opt-in phoneme-specific "
                                 "response relative to the other stimulus-driven activity (0: "
                                 "none), see braindecode_speech.simulation.responses")
    subject_snr_spread: float = Field(0.35, ge=0, description="std of the log of each "
                                      "subject's SNR factor")
    n_bad_channels: int = Field(2, ge=0, description="bad channels per recording")
    artifacts_per_minute: float = Field(0.5, ge=0)
    n_jobs: int = Field(1, ge=1, description="recordings simulated in parallel")

    @model_validator(mode="after")
    def _check(self) -> SimulationConfig:
        for lo, hi, name in ((*self.speech_rate, "speech_rate"),
                             (*self.sentence_gap, "sentence_gap")):
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be an increasing (min, max) pair, got {lo, hi}")
        if not (80 <= self.speech_rate[0] and self.speech_rate[1] <= 450):
            raise ValueError(f"speech_rate must lie within eSpeak's 80-450 wpm, got "
                             f"{self.speech_rate}")
        for voice in self.voices:
            try:
                check_voice(voice)
            except TTSError as exc:
                raise ValueError(str(exc)) from None
        if self.chunk_duration > self.story_duration:
            raise ValueError(f"chunk_duration ({self.chunk_duration} s) exceeds story_duration "
                             f"({self.story_duration} s)")
        return self

    @property
    def layouts(self) -> tuple[str, ...]:
        """Sensor sets of the configured modality."""
        return self.meg_layouts if self.modality == "meg" else self.eeg_layouts



class _PresetConstructor:
    """``SimulationConfig.preset(name, **overrides)``: the preset ``name`` (``tiny``, ``demo``
    or ``large``) with ``overrides``.

    A non-data descriptor: on the class it is this constructor, on an instance the ``preset``
    field's value (kept in the instance ``__dict__``) takes precedence.
    """

    def __get__(self, instance: object, owner: type[SimulationConfig]):
        def preset(name: str, **overrides: Any) -> SimulationConfig:
            if name not in PRESETS:
                raise ConfigError(f"Unknown simulation preset {name!r}; known presets: "
                                  f"{', '.join(PRESETS)}")
            return owner.from_dict({**PRESETS[name], "preset": name, **overrides},
                                   source=f"preset {name!r}")

        preset.__doc__ = _PresetConstructor.__doc__
        return preset


# pydantic reserves field names in the class body, so the constructor is attached afterwards
type.__setattr__(SimulationConfig, "preset", _PresetConstructor())
