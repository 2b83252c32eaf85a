"""Speech features: audio loading, resampling, log-mel, wav2vec2 (tiny random checkpoints)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from braindecode_speech.config import ConfigError
from braindecode_speech.features import (
    AudioError,
    FeaturesConfig,
    MelFeatures,
    MelFeaturesConfig,
    Wav2Vec2Features,
    Wav2Vec2FeaturesConfig,
    load_wav,
    resample,
)
from braindecode_speech.features.wav2vec2 import TimeMajorConvEncoder

SFREQ = 16000
#: output frame rate of the features, Hz (the brain's rate)
FRAME_RATE = 120.0


def _tiny_config(**overrides) -> Wav2Vec2Config:
    """The xlsr-53 layout (layer-norm conv encoder, 400-sample frames every 320 samples,
    stable layer norm) at toy width and depth."""
    kwargs = dict(hidden_size=32, num_hidden_layers=5, num_attention_heads=2,
                  intermediate_size=64, conv_dim=(8,) * 7, num_conv_pos_embeddings=16,
                  num_conv_pos_embedding_groups=2, do_stable_layer_norm=True,
                  feat_extract_norm="layer", conv_bias=True)
    return Wav2Vec2Config(**{**kwargs, **overrides})


def _save_checkpoint(folder, seed: int = 0, preprocessor: bool = True, **overrides):
    torch.manual_seed(seed)
    Wav2Vec2Model(_tiny_config(**overrides)).save_pretrained(folder)
    if preprocessor:
        Wav2Vec2FeatureExtractor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _save_checkpoint(tmp_path_factory.mktemp("tiny_wav2vec2"))


def _noise(seconds: float, sfreq: int = SFREQ, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(round(seconds * sfreq)).astype(np.float32)


# --- audio -----------------------------------------------------------------------------------

def test_load_wav_mixes_stereo_and_resamples(tmp_path):
    sfreq = 22050
    t = np.arange(int(1.5 * sfreq)) / sfreq
    left, right = np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "tone.wav"
    soundfile.write(path, np.stack([left, right], axis=1), sfreq, subtype="FLOAT")

    wav = load_wav(path, sfreq=SFREQ)

    assert wav.dtype == np.float32 and wav.ndim == 1
    assert wav.size == int(np.ceil(t.size * SFREQ / sfreq))
    expected = 0.75 * np.sin(2 * np.pi * 440 * np.arange(wav.size) / SFREQ)
    np.testing.assert_allclose(wav[800:-800], expected[800:-800], atol=2e-3)


@pytest.mark.parametrize("content, match", [
    (None, "not found"),
    (b"RIFF\x00\x00\x00\x00WAVEgarbage", "Cannot read"),
    (b"", "Cannot read"),
])
def test_load_wav_errors_name_the_file(tmp_path, content, match):
    path = tmp_path / "broken.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=match) as err:
        load_wav(path)
    assert str(path) in str(err.value)


def test_load_wav_rejects_empty_and_nan(tmp_path):
    empty, nan = tmp_path / "empty.wav", tmp_path / "nan.wav"
    soundfile.write(empty, np.zeros(0), SFREQ)
    soundfile.write(nan, np.array([0.0, np.nan, 0.1]), SFREQ, subtype="FLOAT")
    with pytest.raises(AudioError, match=f"{empty}.*no samples"):
        load_wav(empty)
    with pytest.raises(AudioError, match=f"{nan}.*NaN"):
        load_wav(nan)


def test_resample_keeps_time_origin_and_constants():
    # a 7 Hz sine sampled at 50 Hz resampled to 120 Hz matches the sine sampled at 120 Hz
    x = np.sin(2 * np.pi * 7 * np.arange(200) / 50) + 3.0
    y = resample(x, 50, 120)
    assert y.size == 480
    expected = np.sin(2 * np.pi * 7 * np.arange(480) / 120) + 3.0
    np.testing.assert_allclose(y[30:-30], expected[30:-30], atol=1e-2)
    # constants (e.g. an empty mel band) stay exactly constant, rows independent
    frames = np.stack([np.full(50, -5.0), np.linspace(0, 1, 50)])
    out = resample(frames, 125, 120)
    assert out.shape == (2, 48) and np.ptp(out[0]) == 0 and out[0, 0] == -5.0
    with pytest.raises(ValueError, match="simple fraction"):
        resample(x, 50, 120 * np.pi)


# --- contract shared by both backends --------------------------------------------------------

@pytest.mark.parametrize("n_samples, sfreq", [
    (1, SFREQ), (100, SFREQ), (12345, SFREQ), (2 * SFREQ + 1, SFREQ), (33333, 22050),
    (44101, 44100),
])
def test_frame_counts(checkpoint, n_samples, sfreq):
    wav = _noise(n_samples / sfreq, sfreq)
    for features in (MelFeaturesConfig().build(FRAME_RATE), Wav2Vec2FeaturesConfig(model=str(checkpoint), layers=(1, 2)).build(FRAME_RATE)):
        out = features(wav, sfreq)
        assert out.dtype == np.float32
        assert out.shape == (features.dimension, round(n_samples / sfreq * 120))
        assert np.isfinite(out).all()


def test_bad_waveforms_are_rejected():
    mel = MelFeaturesConfig().build(FRAME_RATE)
    with pytest.raises(ValueError, match="mono"):
        mel(np.zeros((2, 100), np.float32), SFREQ)
    with pytest.raises(ValueError, match="non-empty"):
        mel(np.zeros(0, np.float32), SFREQ)
    with pytest.raises(ValueError, match="NaN"):
        mel(np.array([0.0, np.nan], np.float32), SFREQ)


def _click_train(times: list[float], seconds: float) -> np.ndarray:
    wav = np.zeros(round(seconds * SFREQ), np.float32)
    wav[[round(t * SFREQ) for t in times]] = 1.0
    return wav


def _response_centre(frames: np.ndarray, time: float, sfreq: float = 120.0) -> float:
    """Energy centroid, in s, of the frames' deviation from silence within 60 ms of ``time``."""
    deviation = np.linalg.norm(frames - np.median(frames, axis=1, keepdims=True), axis=0) ** 2
    idx = np.arange(round((time - 0.06) * sfreq), round((time + 0.06) * sfreq) + 1)
    return float(np.sum(idx / sfreq * deviation[idx]) / np.sum(deviation[idx]))


def test_mel_and_wav2vec2_frames_are_centred_on_the_audio_they_describe(checkpoint,
                                                                       monkeypatch):
    clicks = [1.0, 1.5, 2.04]  # on the 20 ms wav2vec2 grid; 2.04 s is between 120 Hz frames
    wav = _click_train(clicks, 3.0)
    mel = MelFeaturesConfig().build(FRAME_RATE)(wav, SFREQ)
    wav2vec2 = Wav2Vec2FeaturesConfig(model=str(checkpoint), layers=(0,)).build(FRAME_RATE)
    # without positional convolution, hidden state 0 is a per-frame function of the audio
    monkeypatch.setattr(wav2vec2.model.encoder.pos_conv_embed, "forward", torch.zeros_like)
    w2v = wav2vec2(wav, SFREQ)
    for click in clicks:
        assert _response_centre(mel, click) == pytest.approx(click, abs=1e-3)
        assert _response_centre(w2v, click) == pytest.approx(click, abs=1e-3)


# --- mel -------------------------------------------------------------------------------------

def _htk_band_of(frequency: float, n_mels: int = 120, fmax: float = 8000.0) -> int:
    mel = 2595 * np.log10(1 + np.array([frequency, fmax]) / 700)
    centres = np.linspace(0, mel[1], n_mels + 2)[1:-1]
    return int(np.argmin(np.abs(centres - mel[0])))


@pytest.mark.parametrize("frequency", [440.0, 1000.0, 3000.0])
def test_mel_of_a_pure_tone_peaks_in_its_band(frequency):
    t = np.arange(2 * SFREQ) / SFREQ
    out = MelFeaturesConfig().build(FRAME_RATE)(np.sin(2 * np.pi * frequency * t).astype(np.float32), SFREQ)
    assert out.shape == (120, 240)
    assert int(np.argmax(out[:, 10:-10].mean(axis=1))) == _htk_band_of(frequency)


def test_mel_does_not_depend_on_input_rate_or_scale():
    t44 = np.arange(44100) / 44100
    t16 = np.arange(SFREQ) / SFREQ
    chirp = lambda t: np.sin(2 * np.pi * (300 + 1500 * t) * t).astype(np.float32)  # noqa: E731
    mel = MelFeaturesConfig(n_mels=40).build(FRAME_RATE)
    a, b = mel(0.1 * chirp(t44), 44100), mel(chirp(t16), SFREQ)
    assert a.shape == b.shape == (40, 120)
    np.testing.assert_allclose(a[1:, 5:-5], b[1:, 5:-5], atol=0.05)


# --- wav2vec2 --------------------------------------------------------------------------------

def test_wav2vec2_runs_only_the_needed_layers_with_identical_outputs(checkpoint):
    features = Wav2Vec2FeaturesConfig(model=str(checkpoint), layers=(1, 3)).build(FRAME_RATE)
    full = Wav2Vec2Model.from_pretrained(checkpoint).eval()
    assert len(features.model.encoder.layers) == 3 and len(full.encoder.layers) == 5
    segment = _noise(1.3)
    with torch.no_grad():
        states = full(torch.from_numpy(segment)[None], output_hidden_states=True).hidden_states
    expected = ((states[1] + states[3]) / 2)[0].numpy()
    np.testing.assert_allclose(features._layer_mean(segment), expected, atol=1e-5)


def test_wav2vec2_default_layers_equal_the_full_models_hidden_states(tmp_path):
    """xlsr-53 depth (24 layers, stable layer norm) at toy width: the extractor truncated to 18
    layers gives the full model's ``hidden_states[14..18]``, each one (transformers < 5.16
    recorded the final layer norm's output as the truncated model's last state, 18)."""
    folder = _save_checkpoint(tmp_path / "deep", num_hidden_layers=24)
    features = Wav2Vec2FeaturesConfig(model=str(folder)).build(FRAME_RATE)
    assert features.layers == (14, 15, 16, 17, 18)
    full = Wav2Vec2Model.from_pretrained(folder).eval()
    inputs = torch.from_numpy(_noise(0.6))[None]
    with torch.no_grad():
        states = full(inputs, output_hidden_states=True).hidden_states
        truncated = features.model(inputs, output_hidden_states=True).hidden_states
    assert len(features.model.encoder.layers) == 18 and len(truncated) == 19
    for layer in features.layers:
        torch.testing.assert_close(truncated[layer], states[layer], atol=1e-5, rtol=1e-5)
        # neighbouring states differ: an off-by-one index would not pass
        assert (states[layer] - states[layer - 1]).abs().max() > 1e-2
    expected = torch.stack(states[14:19]).mean(0)[0].numpy()
    np.testing.assert_allclose(features._layer_mean(_noise(0.6)), expected, atol=1e-5)


@pytest.mark.parametrize("n_samples", [400, 719, 720, 16000 * 3 + 17])
def test_time_major_conv_encoder_gives_the_original_frames(checkpoint, n_samples):
    original = Wav2Vec2Model.from_pretrained(checkpoint).eval().feature_extractor
    fast = TimeMajorConvEncoder(original, receptive_field=400, stride=320, piece_frames=7)
    audio = torch.from_numpy(_noise(n_samples / SFREQ)).reshape(1, -1)
    with torch.no_grad():
        expected = original(torch.cat([audio, -audio]))  # [2, C, T]
        frames = fast(torch.cat([audio, -audio]))
    assert frames.shape == (2, 8, (n_samples - 400) // 320 + 1)
    torch.testing.assert_close(frames, expected, atol=1e-5, rtol=1e-5)


def test_group_norm_encoders_are_left_as_they_are(tmp_path):
    folder = _save_checkpoint(tmp_path / "base", feat_extract_norm="group",
                              do_stable_layer_norm=False)
    features = Wav2Vec2FeaturesConfig(model=str(folder), layers=(1,)).build(FRAME_RATE)
    assert not isinstance(features.model.feature_extractor, TimeMajorConvEncoder)
    assert features(_noise(0.5), SFREQ).shape == (32, 60)


def test_wav2vec2_chunks_match_the_whole_block_given_context(checkpoint):
    wav = _noise(3.07)
    # hidden state 0 sees +-8 model frames (positional convolution): 0.2 s of context suffices
    whole = Wav2Vec2FeaturesConfig(model=str(checkpoint), layers=(0,), chunk_s=100).build(FRAME_RATE)(wav, SFREQ)
    chunked = Wav2Vec2FeaturesConfig(model=str(checkpoint), layers=(0,), chunk_s=0.5, context_s=0.2).build(FRAME_RATE)(wav, SFREQ)
    no_context = Wav2Vec2FeaturesConfig(model=str(checkpoint), layers=(0,), chunk_s=0.5, context_s=0).build(FRAME_RATE)(wav, SFREQ)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    assert np.abs(no_context - whole).max() > 1e-2
    # deeper layers attend to everything: equal when the context covers the whole block
    whole = Wav2Vec2FeaturesConfig(model=str(checkpoint), layers=(2, 4), chunk_s=100).build(FRAME_RATE)(wav, SFREQ)
    chunked = Wav2Vec2FeaturesConfig(model=str(checkpoint), layers=(2, 4), chunk_s=0.7, context_s=5).build(FRAME_RATE)(wav, SFREQ)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_wav2vec2_bfloat16_is_close_to_float32(checkpoint):
    wav = _noise(1.0)
    fp32 = Wav2Vec2FeaturesConfig(model=str(checkpoint), layers=(3,)).build(FRAME_RATE)(wav, SFREQ)
    bf16 = Wav2Vec2FeaturesConfig(model=str(checkpoint), layers=(3,), dtype="bfloat16").build(FRAME_RATE)(wav, SFREQ)
    assert bf16.dtype == np.float32
    assert 0 < np.abs(bf16 - fp32).max() < 0.1 * np.abs(fp32).max()


def test_wav2vec2_signature(checkpoint, tmp_path):
    def sig(path=checkpoint, sfreq=FRAME_RATE, **kwargs):
        config = Wav2Vec2FeaturesConfig(model=str(path), **{"layers": (2, 3), **kwargs})
        return config.build(sfreq).signature()

    assert sig() == sig(device="cpu")
    assert len({sig(), sig(layers=(1,)), sig(chunk_s=10), sig(context_s=1), sig(sfreq=100),
                sig(dtype="bfloat16")}) == 6
    # same configuration, other weights
    other = _save_checkpoint(tmp_path / "other", seed=1)
    assert sig(other) != sig()


def test_missing_model_gives_instructions(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="local folder") as err:
        Wav2Vec2FeaturesConfig(model=str(missing)).build(FRAME_RATE)
    assert str(missing) in str(err.value)
    config_only = tmp_path / "config_only"
    _tiny_config().save_pretrained(config_only)
    features = Wav2Vec2FeaturesConfig(model=str(config_only), layers=(1,)).build(FRAME_RATE)  # weights are read on first use
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        features(_noise(0.5), SFREQ)


def test_checkpoint_that_does_not_fit_the_model_is_rejected(tmp_path):
    folder = _save_checkpoint(tmp_path / "group_norm", feat_extract_norm="group",
                              do_stable_layer_norm=False)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "feat_extract_norm": "layer"}))
    with pytest.raises(ValueError, match="missing.*feature_extractor.conv_layers.1"):
        Wav2Vec2FeaturesConfig(model=str(folder), layers=(1,)).build(FRAME_RATE)(_noise(0.5), SFREQ)


def test_wav2vec2_without_preprocessor_config_uses_defaults(tmp_path, caplog):
    folder = _save_checkpoint(tmp_path / "bare", preprocessor=False)
    with caplog.at_level(logging.WARNING):
        features = Wav2Vec2FeaturesConfig(model=str(folder), layers=(1,)).build(FRAME_RATE)
    assert "preprocessor_config.json" in caplog.text
    assert features.audio_sfreq == SFREQ and features.preprocessor.do_normalize
    assert features(_noise(0.5), SFREQ).shape == (32, 60)


def test_wav2vec2_rejects_bad_layers(checkpoint):
    with pytest.raises(ValueError, match=r"within 0\.\.5"):
        Wav2Vec2FeaturesConfig(model=str(checkpoint), layers=(6,)).build(FRAME_RATE)
    with pytest.raises(ConfigError, match="wav2vec2.layers: Tuple should have at least 1"):
        FeaturesConfig.from_dict({"wav2vec2": {"model": str(checkpoint), "layers": []}})


# --- configuration ---------------------------------------------------------------------------

def test_features_config_defaults_are_the_papers():
    config = FeaturesConfig()
    assert config.name == "wav2vec2"
    assert config.wav2vec2.model == "facebook/wav2vec2-large-xlsr-53"
    assert config.wav2vec2.layers == (14, 15, 16, 17, 18)
    assert config.mel.n_mels == 120 and config.mel.n_fft == 512 and config.mel.hop_length == 128


def test_features_config_builds_both_backends(checkpoint):
    mel = FeaturesConfig(name="mel", mel=MelFeaturesConfig(n_mels=40)).build(100.0)
    assert isinstance(mel, MelFeatures) and mel.dimension == 40 and mel.sfreq == 100
    w2v = FeaturesConfig(wav2vec2=Wav2Vec2FeaturesConfig(
        model=str(checkpoint), layers=(2,), chunk_s=4, context_s=1)).build(FRAME_RATE)
    assert isinstance(w2v, Wav2Vec2Features)
    assert (w2v.dimension, w2v.layers, w2v.chunk_s, w2v.context_s) == (32, (2,), 4.0, 1.0)


def test_features_follow_the_brains_rate():
    with pytest.raises(ConfigError, match="features.sfreq is gone.*preprocess.sfreq"):
        FeaturesConfig.from_dict({"name": "mel", "sfreq": 100})


def test_features_config_signature_ignores_the_other_backend():
    mel, w2v = FeaturesConfig(name="mel"), FeaturesConfig()
    assert mel.with_overrides({"wav2vec2.layers": [1]}).signature() == mel.signature()
    assert mel.with_overrides({"mel.n_mels": 40}).signature() != mel.signature()
    assert w2v.with_overrides({"mel.n_mels": 40}).signature() == w2v.signature()
    assert w2v.with_overrides({"wav2vec2.device": "cuda"}).signature() == w2v.signature()
    assert w2v.with_overrides({"wav2vec2.dtype": "bfloat16"}).signature() != w2v.signature()


def test_features_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="name"):
        FeaturesConfig.from_dict({"name": "mfcc"})
    with pytest.raises(ConfigError, match="layers"):
        FeaturesConfig.from_dict({"layers": [-1]})
    with pytest.raises(ConfigError, match="chunk_s"):
        FeaturesConfig.from_dict({"chunk_s": 0})


@pytest.mark.parametrize("duration", [6.21249, 6.2125, 6.212, 3.0041666])
def test_block_features_have_the_brain_clocks_frame_count(tmp_path, duration):
    """Blocks whose length in audio samples rounds to another frame count than the block's
    length in frames (6.21249 s: 745 frames at 120 Hz, but 99,400 samples = 745.5 frames)."""
    from braindecode_speech.data.splits import sound_spans
    from braindecode_speech.features.blocks import AUDIO_SFREQ, block_features

    wav = tmp_path / "speech.wav"
    soundfile.write(wav, _noise(8.0, AUDIO_SFREQ), AUDIO_SFREQ, subtype="FLOAT")
    events = pd.DataFrame({"onset": [0.5], "duration": [8.0], "kind": ["sound"],
                           "filepath": [str(wav)], "offset": [0.0]})
    features = MelFeaturesConfig().build(FRAME_RATE)
    frames = block_features(1.0, 1.0 + duration, sound_spans(events), features, tmp_path)
    assert frames.shape == (round(duration * features.sfreq), features.dimension)
    assert np.isfinite(frames).all()
