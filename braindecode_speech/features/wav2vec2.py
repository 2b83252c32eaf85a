"""wav2vec 2.0 speech features: the mean of a few transformer layers' hidden states."""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model
from transformers.utils import logging as hf_logging

from ..config import stable_hash
from .audio import resample
from .base import SpeechFeatures, Wav2Vec2FeaturesConfig

__all__ = ["TimeMajorConvEncoder", "Wav2Vec2Features"]

logger = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".bin")


class Wav2Vec2Features(SpeechFeatures):
    """Mean of wav2vec2 hidden states at ``layers``, ``[hidden_size, n_frames]`` at ``sfreq``.

    The model is read with ``Wav2Vec2Model.from_pretrained(name_or_path)`` (a local folder, or a
    Hugging Face name found in the local cache or downloaded) on first use.

    - **Input**: audio resampled to the checkpoint's rate (16 kHz) and normalised like
      ``Wav2Vec2FeatureExtractor`` (zero mean, unit variance over the whole block, when the
      checkpoint's ``preprocessor_config.json`` says ``do_normalize``; its defaults when the file
      is absent).
    - **Layers**: indices into transformers' ``hidden_states``: 0 is the input of the first
      transformer layer (projected convolutional features plus positional embedding), ``k >= 1``
      the output of transformer layer ``k``. Only layers ``1..max(layers)`` (at least one) are
      loaded and run: the layers above cannot change the states below (exact with
      transformers >= 5.16, which records every state from the layer outputs; earlier releases
      gave the truncated model's last state after the final layer norm). The convolutional
      encoder of layer-norm checkpoints (xlsr-53, large models) runs time-major, in pieces
      (:class:`TimeMajorConvEncoder`: the same frames up to float rounding, about twice as fast
      on CPU).
    - **Alignment**: the normalised audio is padded with ``receptive_field // 2`` zeros on both
      sides (200 samples = 12.5 ms for the standard convolutional encoder, whose frames see 400
      samples every 320), so frame ``k`` of the model (50 Hz) is computed from the samples
      centred on time ``k / 50`` s. Frames are then resampled to ``sfreq`` (band-limited, no
      delay): frame ``i`` is centred on ``i / sfreq`` s, like :class:`MelFeatures`.
    - **Chunking**: the model frames are computed ``chunk_s`` seconds at a time; each chunk's
      input extends ``context_s`` seconds further on both sides (less at the block's edges) and
      the frames of that context are dropped. Audio shorter than ``chunk_s`` is run in one go
      (as in the paper, which runs each block whole).

    Parameters
    ----------
    config : the settings: ``model`` (Hugging Face model name or local folder with
        ``config.json`` + weights), ``layers`` (hidden states to average; the paper uses 14-18
        of the 24 layers), ``chunk_s``/``context_s`` (chunk length and context on each side,
        s), ``device`` and ``dtype`` (``"float32"`` or ``"bfloat16"`` weights and activations;
        outputs are float32).
    sfreq : output frame rate, Hz.
    """

    def __init__(self, config: Wav2Vec2FeaturesConfig, sfreq: float) -> None:
        self.name_or_path = str(config.model)
        layers, chunk_s, context_s = config.layers, config.chunk_s, config.context_s
        device, dtype = config.device, config.dtype
        self.model_config = _load_config(self.name_or_path)
        n_layers = self.model_config.num_hidden_layers
        self.layers = tuple(int(layer) for layer in layers)
        if not all(layer <= n_layers for layer in self.layers):
            raise ValueError(f"layers must be within 0..{n_layers} for {self.name_or_path}, "
                             f"got {self.layers}")
        self.chunk_s = float(chunk_s)
        self.context_s = float(context_s)
        self.sfreq = float(sfreq)
        self.device = torch.device(device)
        self.dtype = dtype
        self.dimension = self.model_config.hidden_size
        self.preprocessor = _load_preprocessor(self.name_or_path)
        self.audio_sfreq = self.preprocessor.sampling_rate
        self.stride = math.prod(self.model_config.conv_stride)
        self.receptive_field = 1 + sum(
            (kernel - 1) * math.prod(self.model_config.conv_stride[:i])
            for i, kernel in enumerate(self.model_config.conv_kernel))
        self.frame_rate = self.audio_sfreq / self.stride
        self._model: Wav2Vec2Model | None = None
        self._signature: str | None = None

    @property
    def model(self) -> Wav2Vec2Model:
        """The model truncated to ``max(layers)`` transformer layers, in eval mode on
        ``device`` (loaded on first access)."""
        if self._model is None:
            n_layers = max(1, *self.layers)  # hidden state 0 is recorded by the first layer
            model = _load_model(self.name_or_path, n_layers, getattr(torch, self.dtype))
            if self.model_config.feat_extract_norm == "layer":
                model.feature_extractor = TimeMajorConvEncoder(
                    model.feature_extractor, self.receptive_field, self.stride)
            self._model = model.to(self.device)
        return self._model

    def signature(self) -> str:
        """Hash of the model (name, configuration and, for a local folder, the weight files'
        contents), layers, chunking, rates, normalisation and dtype."""
        if self._signature is None:
            config = {k: v for k, v in self.model_config.to_dict().items()
                      if not k.startswith("_") and k != "transformers_version"}
            self._signature = stable_hash({
                "class": type(self).__name__, "model": self.name_or_path, "config": config,
                "weights": _weights_digest(self.name_or_path), "layers": self.layers,
                "chunk_s": self.chunk_s, "context_s": self.context_s, "sfreq": self.sfreq,
                "audio_sfreq": self.audio_sfreq, "do_normalize": self.preprocessor.do_normalize,
                "dtype": self.dtype, "alignment": "centred"})
        return self._signature

    def _compute(self, wav: np.ndarray, sfreq: float) -> np.ndarray:
        wav = resample(wav, sfreq, self.audio_sfreq)
        inputs = self.preprocessor(wav, sampling_rate=self.audio_sfreq,
                                   return_tensors="np").input_values[0]
        inputs = np.pad(inputs, self.receptive_field // 2)
        frames = self._model_frames(inputs)  # [n_model_frames, F]
        return resample(frames.T, self.frame_rate, self.sfreq)

    def _model_frames(self, inputs: np.ndarray) -> np.ndarray:
        """Chunked model frames ``[n_model_frames, F]`` of the padded input ``[n]``; frame ``k``
        is computed from ``inputs[k * stride : k * stride + receptive_field]``."""
        n_frames = (inputs.size - self.receptive_field) // self.stride + 1
        chunk = max(1, round(self.chunk_s * self.frame_rate))
        context = round(self.context_s * self.frame_rate)
        out = np.empty((n_frames, self.dimension), dtype=np.float32)
        for start in range(0, n_frames, chunk):
            stop = min(start + chunk, n_frames)
            lo, hi = max(0, start - context), min(n_frames, stop + context)
            segment = inputs[lo * self.stride:(hi - 1) * self.stride + self.receptive_field]
            out[start:stop] = self._layer_mean(segment)[start - lo:stop - lo]
        return out

    @torch.inference_mode()
    def _layer_mean(self, segment: np.ndarray) -> np.ndarray:
        """Mean of the selected hidden states ``[n_model_frames, F]`` for an input ``[n]``."""
        inputs = torch.from_numpy(segment)[None].to(self.device, getattr(torch, self.dtype))
        hidden_states = self.model(inputs, output_hidden_states=True).hidden_states
        mean = torch.stack([hidden_states[layer][0] for layer in self.layers]).float().mean(0)
        return mean.cpu().numpy()


class TimeMajorConvEncoder(torch.nn.Module):
    """The frames of a layer-norm ``Wav2Vec2FeatureEncoder``, computed time-major and in pieces.

    The original runs each strided 1-D convolution on ``[B, C, T]`` activations and transposes
    twice per layer around the layer norm over channels; on CPU this is memory-bound (reorders
    and transposes of ~100 MB activations for 30 s of audio). Here activations stay ``[B, T, C]``:
    a convolution is a matrix product of its weights with the unfolded input (a strided view),
    and the layer norm runs over contiguous channels. The input is processed ``piece_frames``
    output frames at a time so activations stay in cache; pieces are exact because a frame only
    depends on its own ``receptive_field`` input samples.

    Parameters
    ----------
    encoder : the model's ``feature_extractor`` (convolution, layer norm, activation layers).
    receptive_field, stride : input samples seen by one output frame, and between frames.
    piece_frames : output frames computed per piece.
    """

    def __init__(self, encoder: torch.nn.Module, receptive_field: int, stride: int,
                 piece_frames: int = 100) -> None:
        super().__init__()
        self.conv_layers = encoder.conv_layers
        self.receptive_field = receptive_field
        self.stride = stride
        self.piece_frames = piece_frames

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, C, T]`` (a transposed view of ``[B, T, C]``) of audio ``[B, n]``."""
        weights = [  # [C_out, kernel * C_in], matching the unfolded input's layout
            layer.conv.weight.permute(0, 2, 1).reshape(layer.conv.out_channels, -1)
            for layer in self.conv_layers]
        n_frames = (input_values.shape[-1] - self.receptive_field) // self.stride + 1
        pieces = []
        for start in range(0, n_frames, self.piece_frames):
            stop = min(start + self.piece_frames, n_frames)
            piece = input_values[:, start * self.stride:
                                 (stop - 1) * self.stride + self.receptive_field]
            pieces.append(self._frames(piece, weights))
        return torch.cat(pieces, dim=1).transpose(1, 2)

    def _frames(self, audio: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        """``[B, T, C]`` frames of a contiguous-in-time piece of audio ``[B, n]``."""
        hidden = audio[:, :, None]  # [B, n, 1]
        for layer, weight in zip(self.conv_layers, weights):
            (kernel,), (stride,) = layer.conv.kernel_size, layer.conv.stride
            batch, length, channels = hidden.shape
            n_out = (length - kernel) // stride + 1
            unfolded = hidden.as_strided(  # [B, n_out, kernel * C_in], frame t from t * stride
                (batch, n_out, kernel * channels), (hidden.stride(0), stride * channels, 1))
            hidden = layer.activation(layer.layer_norm(F.linear(unfolded, weight, layer.conv.bias)))
        return hidden


def _not_found_message(name_or_path: str, exc: Exception) -> str:
    return (
        f"Cannot load the wav2vec2 model {name_or_path!r}: {exc}\n"
        "Without internet access, either\n"
        f"  - download it once on a machine that has access, e.g. `hf download {name_or_path}` "
        "(Hugging Face cache in $HF_HOME, default ~/.cache/huggingface), copy that cache here "
        "and set HF_HUB_OFFLINE=1, or\n"
        "  - pass a local folder holding config.json, preprocessor_config.json and the weights "
        "(model.safetensors or pytorch_model.bin), e.g. written by "
        "`Wav2Vec2Model.from_pretrained(name).save_pretrained(folder)`, as the model "
        "(FeaturesConfig.model / name_or_path).")


def _load_config(name_or_path: str) -> Wav2Vec2Config:
    try:
        return Wav2Vec2Config.from_pretrained(name_or_path)
    except OSError as exc:
        raise FileNotFoundError(_not_found_message(name_or_path, exc)) from exc


def _load_preprocessor(name_or_path: str) -> Wav2Vec2FeatureExtractor:
    """The checkpoint's input preprocessing, or the library defaults (normalise, 16 kHz)."""
    try:
        return Wav2Vec2FeatureExtractor.from_pretrained(name_or_path)
    except OSError:
        logger.warning("%s has no preprocessor_config.json: normalising the audio to zero mean "
                       "and unit variance at 16 kHz (Wav2Vec2FeatureExtractor defaults)",
                       name_or_path)
        return Wav2Vec2FeatureExtractor()


def _load_model(name_or_path: str, n_layers: int, dtype: torch.dtype) -> Wav2Vec2Model:
    """``Wav2Vec2Model`` with its first ``n_layers`` transformer layers, in eval mode.

    The checkpoint's upper layers (and pre-training heads) are expected to be left unused;
    a parameter of the truncated model missing from the checkpoint is an error.
    """
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report lists every unused upper-layer weight
    try:
        model, info = Wav2Vec2Model.from_pretrained(
            name_or_path, num_hidden_layers=n_layers, dtype=dtype, output_loading_info=True)
    except OSError as exc:
        raise FileNotFoundError(_not_found_message(name_or_path, exc)) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    if info["missing_keys"] or info["mismatched_keys"]:
        raise ValueError(f"Checkpoint {name_or_path!r} does not fit Wav2Vec2Model: missing "
                         f"{sorted(info['missing_keys'])}, mismatched "
                         f"{info['mismatched_keys']}")
    logger.info("Loaded %s with %d transformer layers (%d checkpoint tensors unused)",
                name_or_path, n_layers, len(info["unexpected_keys"]))
    return model.eval()


def _weights_digest(name_or_path: str) -> str | None:
    """SHA-256 of the weight files of a local checkpoint folder; ``None`` for a hub name."""
    folder = Path(name_or_path)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES):
        digest.update(path.name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()
