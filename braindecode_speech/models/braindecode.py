"""Models of the `braindecode <https://braindecode.org>`_ library as brain encoders.

braindecode's models are classifiers: ``[B, n_chans, n_times]`` → ``[B, n_outputs]``. The adapter
keeps a model's layers up to its classification head (its ``final_layer``, present in every
braindecode model with the ``n_chans / n_outputs / n_times / sfreq`` signature, braindecode
≥ 0.8) and puts a new head on the feature map the layers leave: the map's time axis (found by
running the layers on two window lengths) becomes the last axis, every other axis becomes a
channel, a 1×1 convolution maps those channels to the F speech features and linear
interpolation brings the time axis back to the T samples of the window: ``[B, F, T]``.
Convolutional models keep such a map (``ShallowFBCSPNet``, ``EEGNetv4``, ``EEGNetv1``;
``Deep4Net`` on windows longer than the paper's 360 samples); a model whose layers flatten time
into features before the head (``EEGInception``) or need a fixed window length
(``EEGConformer``) is refused with a :class:`~braindecode_speech.config.ConfigError` saying so.

Registered as ``model.target=braindecode`` (no ``--trust-model-code`` needed)::

    model={target: braindecode, kwargs: {model: ShallowFBCSPNet, n_times: 360, sfreq: 120}}

``n_times`` (the window's samples, ``(windows.tmax - windows.tmin) * preprocess.sfreq``) and
``sfreq`` are braindecode's arguments, as are the other kwargs (``drop_prob``...). The model
sees the batch's padded sensors as its ``n_chans`` inputs and is subject-agnostic: ``subjects``
and ``positions`` are not used, so in a study with several sensor layouts one input row is a
different sensor in different recordings (the BrainEncoder's spatial attention is what maps
layouts to common channels). Install with ``pip install 'braindecode-speech[braindecode]'``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConfigError

__all__ = ["BraindecodeEncoder"]


class BraindecodeEncoder(nn.Module):
    """A braindecode model's layers up to its head, then a per-time head: ``forward(x [B, C, T],
    subjects, positions, mask)`` → ``[B, n_outputs, T]``.

    Parameters
    ----------
    n_subjects, n_outputs, n_channels : from the data (the factory protocol); ``n_channels`` is
        braindecode's ``n_chans``.
    model : name of a model class of ``braindecode.models`` (``"ShallowFBCSPNet"``,
        ``"Deep4Net"``, ``"EEGNetv4"``...).
    n_times : window length in samples, braindecode's ``n_times``.
    sfreq : sampling frequency, Hz (braindecode's ``sfreq``; needed by some models).
    **model_kwargs : further arguments of the braindecode model.
    """

    def __init__(self, n_subjects: int, n_outputs: int, n_channels: int, model: str,
                 n_times: int, sfreq: float | None = None, **model_kwargs: Any):
        super().__init__()
        cls = _braindecode_model(model)
        given = {**model_kwargs, "sfreq": sfreq}
        if sfreq is not None:
            model_kwargs["sfreq"] = sfreq
        if "add_log_softmax" in inspect.signature(cls).parameters:  # braindecode < 1.0
            model_kwargs.setdefault("add_log_softmax", False)  # part of the replaced head
        try:
            self.backbone = cls(n_chans=n_channels, n_outputs=n_outputs, n_times=n_times,
                                **model_kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model.kwargs: braindecode's {model} cannot be built with "
                              f"n_chans={n_channels}, n_times={n_times} and "
                              f"{given}: {exc}") from None
        if not isinstance(getattr(self.backbone, "final_layer", None), nn.Module):
            raise ConfigError(f"model.kwargs.model={model!r}: the braindecode model has no "
                              "final_layer to replace")
        self.backbone.final_layer = nn.Identity()
        self.time_axis, n_features = _time_axis(self.backbone, model, n_channels, n_times)
        self.head = nn.Conv1d(n_features, n_outputs, 1)

    def forward(self, x: Tensor, subjects: Tensor, positions: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        features = self.backbone(x).movedim(self.time_axis, -1)
        features = features.reshape(len(x), -1, features.shape[-1])  # [B, D, T']
        out = self.head(features)
        if out.shape[-1] != x.shape[-1]:
            out = F.interpolate(out, size=x.shape[-1], mode="linear", align_corners=False)
        return out


def _braindecode_model(name: str) -> type[nn.Module]:
    """The model class ``name`` of ``braindecode.models`` (nothing else can be named)."""
    try:
        models = importlib.import_module("braindecode.models")
    except ImportError as exc:
        raise ConfigError("model.target=braindecode needs the braindecode package "
                          f"(pip install 'braindecode-speech[braindecode]'): {exc}") from None
    cls = getattr(models, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        known = sorted(n for n, c in vars(models).items()
                       if isinstance(c, type) and issubclass(c, nn.Module) and n[:1].isupper())
        raise ConfigError(f"model.kwargs.model={name!r} is not a model of braindecode.models "
                          f"(for example: {', '.join(known[:8])})")
    return cls


def _time_axis(backbone: nn.Module, name: str, n_channels: int, n_times: int) -> tuple[int, int]:
    """The time axis of the backbone's output and the number of values per time step, found by
    running it (eval mode, no gradient) on windows of ``n_times`` and ``2 * n_times`` samples."""
    training = backbone.training
    backbone.eval()
    shapes = []
    try:
        for length in (n_times, 2 * n_times):
            with torch.no_grad():
                shapes.append(tuple(backbone(torch.zeros(2, n_channels, length)).shape))
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"model.kwargs.model={name!r}: the braindecode model's layers do not run on windows "
            f"of {length} samples ({exc}); the adapter runs them on n_times and 2 * n_times "
            "samples to find their time axis: a model that needs longer windows, or one fixed "
            "length, cannot be used") from None
    finally:
        backbone.train(training)
    changed = [axis for axis, (a, b) in enumerate(zip(*shapes)) if a != b]
    if len(shapes[0]) < 3 or len(shapes[0]) != len(shapes[1]) or len(changed) != 1 \
            or changed[0] == 0:
        raise ConfigError(f"model.kwargs.model={name!r}: the braindecode model's features "
                          f"(shape {shapes[0]} for {n_times} samples, {shapes[1]} for "
                          f"{2 * n_times}) have no time axis of their own to map to the "
                          "window (a model whose layers flatten time into features, or need "
                          "a fixed window length, cannot give [B, F, T])")
    axis = changed[0]
    per_step = 1
    for other, size in enumerate(shapes[0][1:], 1):
        if other != axis:
            per_step *= size
    return axis, per_step
