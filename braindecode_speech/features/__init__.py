"""Speech features of the heard audio: wav2vec2 hidden states (the paper's) or log-mel, on the
brain's clock.

>>> features = FeaturesConfig(name="mel").build(sfreq=120.0)
>>> frames = features(load_wav("sentence.wav"), 16000)  # [120, n_frames] at 120 Hz
"""

from .audio import AudioError, load_wav, resample
from .base import FeaturesConfig, MelFeaturesConfig, SpeechFeatures, Wav2Vec2FeaturesConfig
from .mel import MelFeatures
from .wav2vec2 import Wav2Vec2Features

__all__ = ["AudioError", "FeaturesConfig", "MelFeatures", "MelFeaturesConfig", "SpeechFeatures",
           "Wav2Vec2Features", "Wav2Vec2FeaturesConfig", "load_wav", "resample"]
