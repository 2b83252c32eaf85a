"""The brain encoder of Défossez et al. 2023 and its configuration.

Pipeline (paper defaults)::

    x [B, C, T] ─ spatial attention (positions → 270 virtual channels, spatial dropout)
                ─ 1×1 conv 270 → 270
                ─ subject layer (one 270×270 matrix per subject)
                ─ 5 blocks × (2 residual dilated convs 320 + GLU conv), first conv 270 → 320
                ─ 1×1 conv 320 → 640, GELU, 1×1 conv 640 → F           → [B, F, T]

Every part can be switched off or replaced through :class:`EncoderConfig`, which covers every
model ablation of the paper's Table 4 (see :data:`TABLE4_ABLATIONS`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from ..config import Config, ConfigError
from .channel_reordering import ChannelReordering
from .conv import Activation, DilatedConvStack, make_activation
from .factory import FACTORY_ARGUMENTS, build_from_target
from .spatial_attention import FourierLayout, SpatialAttention
from .subject_layers import SubjectEmbedding, SubjectInit, SubjectLayers

__all__ = ["TABLE4_ABLATIONS", "BrainEncoder", "EncoderConfig", "brain_encoder"]

#: ``package.module:attribute`` or a registered name
_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*|[\w.-]+")


class EncoderConfig(Config):
    """Architecture of :class:`BrainEncoder`. Defaults are the paper's ("clip_conv")."""

    spatial_attention: bool = True
    """map the sensors to ``n_spatial`` virtual channels first (off: use the C inputs as is)"""
    merger: Literal["positions", "signal"] = "positions"
    """how sensors are merged: Fourier functions of position (paper) or CHARM-like keys from the
    signal (:class:`ChannelReordering`)"""
    n_spatial: int = Field(270, gt=0)
    """number of virtual channels produced by the merger"""
    n_fourier: int = Field(32, gt=0)
    """frequencies per axis of the positional Fourier series (positions merger)"""
    dropout_radius: float = Field(0.2, ge=0)
    """radius of the spatial dropout disc, normalised position units; 0 disables it"""
    fourier_layout: FourierLayout = "paper"
    """where the sensors sit in the period of the positional Fourier series: ``"paper"`` scales
    each layout axis to [0, 1] separately and evaluates the series with a 0.2 margin (period
    1.4), so opposite edges of the layout do not alias; ``"wrapped"`` (departure, earlier runs)
    keeps the jointly scaled positions with period 1, which gives the left and right edges the
    same functions (:mod:`~braindecode_speech.models.spatial_attention`)"""
    signal_embedding_dim: int = Field(32, gt=0)
    """size of the per-sensor keys (signal merger)"""
    signal_kernel_size: int = Field(24, gt=0)
    """temporal filter length of the per-sensor keys, samples (signal merger)"""
    initial_linear: bool = True
    """1×1 conv after the merger (same number of channels)"""
    subject_layers: bool = True
    """one channel-mixing matrix per subject"""
    subject_init: SubjectInit = "random"
    """start of the subject matrices: ``"random"`` (paper: ``randn(C, C) / sqrt(C)`` each) or
    ``"identity"`` (departure: every subject starts as a pass-through)"""
    subject_embedding: bool = False
    """append a learned per-subject vector to the channels (ablation)"""
    subject_embedding_dim: int = Field(64, gt=0)
    """size of that vector"""
    hidden: int = Field(320, gt=0)
    """channels of the convolution stack"""
    depth: int = Field(5, gt=0)
    """blocks of the stack, each with two dilated convs"""
    kernel_size: int = Field(3, gt=0)
    """temporal kernel of the convs (odd), samples"""
    dilation_growth: int = Field(2, gt=0)
    """dilation of conv i is growth^(i mod dilation_period)"""
    dilation_period: int = Field(5, gt=0)
    skip: bool = True
    """residual connections around the dilated convs"""
    glu: bool = True
    """non-residual GLU conv at the end of each block"""
    activation: Activation = "gelu"
    batch_norm: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)
    """dropout after each dilated conv's activation"""
    final_convs: bool = True
    """two 1×1 convs hidden → 2·hidden → F at the end (off: a single 1×1 conv hidden → F)"""
    target: str | None = None
    """another model instead of :class:`BrainEncoder`: ``"package.module:factory"`` or the name
    of a registered model (see :mod:`~braindecode_speech.models.factory`), called with
    ``n_subjects``, ``n_outputs``, ``n_channels`` and ``kwargs``. The fields above are the
    BrainEncoder's and must keep their defaults then (replace the whole section:
    ``model={target: ..., kwargs: {...}}``). None: the BrainEncoder"""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """keyword arguments of ``target`` (plain values: numbers, strings, lists, mappings)"""

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the time length, got {value}")
        return value

    @field_validator("target")
    @classmethod
    def _target_syntax(cls, value: str | None) -> str | None:
        if value is not None and not _TARGET.fullmatch(value):
            raise ValueError("expected 'package.module:factory' or the name of a registered "
                             "model")
        return value

    @model_validator(mode="after")
    def _target_alone(self) -> EncoderConfig:
        if self.target is None:
            if self.kwargs:
                raise ValueError("model.kwargs are the arguments of model.target, which is not "
                                 "set")
            return self
        reserved = sorted(set(self.kwargs) & set(FACTORY_ARGUMENTS))
        if reserved:
            raise ValueError(f"model.kwargs cannot set {', '.join(reserved)}: model.target "
                             "is given those by the data")
        changed = [name for name, field in type(self).model_fields.items()
                   if name not in ("target", "kwargs") and getattr(self, name) != field.default]
        if changed:
            raise ValueError(f"{', '.join(f'model.{n}' for n in changed)} set: the fields "
                             "besides target and kwargs are the BrainEncoder's and do not apply "
                             "with model.target set; give the model's settings in model.kwargs "
                             "(replace the whole section: model={target: ..., kwargs: {...}})")
        return self

    def signature_dict(self) -> dict[str, Any]:
        """The BrainEncoder's fields without ``target`` (so a default config keeps its
        signature), or ``target`` and ``kwargs`` alone."""
        if self.target is None:
            out = super().signature_dict()
            del out["target"], out["kwargs"]
            return out
        return {"target": self.target, "kwargs": self.kwargs}

    def build(self, n_subjects: int, n_outputs: int, n_channels: int | None = None,
              trust_model_code: bool = False, source: str = "the config") -> nn.Module:
        """The encoder for ``n_subjects`` training subjects and ``n_outputs`` speech features:
        a :class:`BrainEncoder`, or the model of ``target``.

        ``n_channels`` (the padded sensor count) is required only without spatial attention,
        where the first layer sees the sensors directly. ``trust_model_code``: allow a
        ``target`` that is not registered (see :mod:`~braindecode_speech.models.factory`);
        ``source``: where the config was read, for error messages.
        """
        if self.target is None:
            return BrainEncoder(self, n_subjects, n_outputs, n_channels)
        return build_from_target(self.target, self.kwargs, n_subjects, n_outputs, n_channels,
                                 trust_model_code, source)


def brain_encoder(n_subjects: int, n_outputs: int, n_channels: int | None = None,
                  **settings: Any) -> BrainEncoder:
    """The :class:`BrainEncoder` as a registered factory (``model.target=brain_encoder``):
    ``settings`` are :class:`EncoderConfig` fields."""
    config = EncoderConfig.from_dict(settings, source="model.kwargs")
    if config.target is not None:
        raise ConfigError("model.kwargs of brain_encoder cannot set another target")
    return BrainEncoder(config, n_subjects, n_outputs, n_channels)


#: The model ablations of the paper's Table 4 as ``EncoderConfig`` overrides. (The clamping
#: ablations are preprocessing settings and live with the data configuration.)
TABLE4_ABLATIONS: dict[str, dict[str, Any]] = {
    "subject embedding instead of subject layer": {
        "subject_layers": False, "subject_embedding": True,
    },
    "w/o spatial-attention dropout": {"dropout_radius": 0.0},
    "GELU -> ReLU": {"activation": "relu"},
    "w/o skip connections": {"skip": False},
    "w/o final convs": {"final_convs": False},
    "w/o initial 1x1 conv": {"initial_linear": False},
    "w/o spatial attention": {"spatial_attention": False},
    "w/o non-residual GLU conv": {"glu": False},
    "w/o subject-specific layer": {"subject_layers": False},
}


class BrainEncoder(nn.Module):
    """Brain windows → speech-feature space.

    ``forward(x, subjects, positions, mask)`` with

    - ``x [B, C, T]`` float: brain windows, zero-padded to the batch's max sensor count C;
    - ``subjects [B]`` long: index into the training subjects, ``-1`` for an unknown subject
      (uses the mean subject layer / embedding);
    - ``positions [B, C, 2]``: sensor layout positions in [0, 1] (positions merger only; see
      ``EncoderConfig.fourier_layout`` for how the merger rescales them);
    - ``mask [B, C]`` bool: True for real sensors (default: all real);

    returns ``[B, n_outputs, T]`` (any T).
    """

    def __init__(
        self,
        config: EncoderConfig,
        n_subjects: int,
        n_outputs: int,
        n_channels: int | None = None,
    ):
        super().__init__()
        self.config = config
        self.n_subjects = n_subjects
        self.n_channels = n_channels
        self.merger: SpatialAttention | ChannelReordering | None = None
        if config.spatial_attention:
            if config.merger == "positions":
                self.merger = SpatialAttention(
                    config.n_spatial, config.n_fourier, config.dropout_radius,
                    config.fourier_layout,
                )
            else:
                self.merger = ChannelReordering(
                    config.n_spatial, config.signal_embedding_dim, config.signal_kernel_size
                )
            channels = config.n_spatial
        elif n_channels is None:
            raise ConfigError("EncoderConfig(spatial_attention=False) needs n_channels to build")
        else:
            channels = n_channels
        self.initial_linear = nn.Conv1d(channels, channels, 1) if config.initial_linear else None
        self.subject_layers = (
            SubjectLayers(channels, n_subjects, config.subject_init)
            if config.subject_layers else None
        )
        self.subject_embedding = None
        if config.subject_embedding:
            self.subject_embedding = SubjectEmbedding(config.subject_embedding_dim, n_subjects)
            channels += config.subject_embedding_dim
        self.convs = DilatedConvStack(
            channels, config.hidden, config.depth, config.kernel_size, config.dilation_growth,
            config.dilation_period, config.skip, config.glu, config.batch_norm,
            config.activation, config.dropout,
        )
        if config.final_convs:
            self.final = nn.Sequential(
                nn.Conv1d(config.hidden, 2 * config.hidden, 1),
                make_activation(config.activation),
                nn.Conv1d(2 * config.hidden, n_outputs, 1),
            )
        else:
            self.final = nn.Conv1d(config.hidden, n_outputs, 1)

    @property
    def blocks(self) -> nn.ModuleList:
        """The convolution blocks, ``[B, channels, T]`` → ``[B, hidden, T]`` (the staged
        interface of the ``fast`` and ``lean`` training steps)."""
        return self.convs.blocks

    def spatial_dropout(self, positions: Tensor | None, mask: Tensor | None) -> Tensor | None:
        """Draw the spatial dropout of a whole batch, ``[B, C]`` bool (True = dropped), or
        None when there is none (eval mode, radius 0, no positions merger).

        Passing it to :meth:`embed_sensors` of pieces of the batch reproduces the dropout of
        one full-batch forward (same random draw).
        """
        merger = self.merger
        if not (isinstance(merger, SpatialAttention) and merger.training
                and merger.dropout_radius > 0):
            return None
        if positions is None or mask is None:
            raise ValueError("spatial dropout needs sensor positions [B, C, 2] and mask [B, C]")
        return merger.dropped_sensors(merger.clean_positions(positions, mask), mask)

    def embed_sensors(
        self,
        x: Tensor,
        subjects: Tensor,
        positions: Tensor | None = None,
        mask: Tensor | None = None,
        dropped: Tensor | None = None,
    ) -> Tensor:
        """The part before the convolution stack (merger, 1×1 conv, subject layer/embedding):
        ``x [B, C, T]`` → ``[B, channels, T]``. Each sample is processed independently.
        ``dropped``: spatial dropout drawn beforehand by :meth:`spatial_dropout`."""
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if isinstance(self.merger, SpatialAttention):
            if positions is None:
                raise ValueError("the positions merger needs sensor positions [B, C, 2]")
            h = self.merger(x, positions, mask, dropped)
        elif isinstance(self.merger, ChannelReordering):
            h = self.merger(x, mask)
        elif x.shape[1] != self.n_channels:
            raise ValueError(
                f"without spatial attention the encoder expects {self.n_channels} channels, "
                f"got {x.shape[1]}"
            )
        else:
            h = x if bool(mask.all()) else x.masked_fill(~mask[:, :, None], 0.0)
        if self.initial_linear is not None:
            h = self.initial_linear(h)
        if self.subject_layers is not None:
            h = self.subject_layers(h, subjects)
        if self.subject_embedding is not None:
            h = self.subject_embedding(h, subjects)
        return h

    def forward(
        self,
        x: Tensor,
        subjects: Tensor,
        positions: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        return self.final(self.convs(self.embed_sensors(x, subjects, positions, mask)))
