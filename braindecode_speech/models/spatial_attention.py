"""Spatial attention: any sensor layout → a fixed number of virtual channels.

Each output channel ``j`` owns a smooth function of the 2D sensor position, written as a
truncated Fourier series

    z_j(x, y) = Σ_{k,l<K} Re(a_jkl) cos(2π(kx + ly)/P) + Im(a_jkl) sin(2π(kx + ly)/P),

and mixes the input sensors with the weights ``softmax_i z_j(x_i, y_i)``, the softmax running
over the *real* sensors of each sample (padding sensors get a ``-inf`` logit). Because the
weights depend only on positions, recordings with different sensor counts and layouts can share
the layer and even the same batch.

The series is P-periodic in x and y, so where the sensors sit inside a period matters
(``layout``):

- ``"paper"`` (default, the paper's): each axis of a sample's layout is min–max scaled to
  ``[0, 1]`` separately (over its real sensors), then shifted by ``MARGIN = 0.2`` and the period
  is ``P = 1 + 2·MARGIN = 1.4``: the sensors span ``[0.2, 1.2]`` of a period, so sensors on
  opposite edges of the layout stay 0.4 apart on the series' torus instead of meeting.
- ``"wrapped"``: positions used as given (``[0, 1]``, scaled jointly on x and y by
  :func:`~braindecode_speech.data.preprocessing.sensor_positions_2d`), no margin, ``P = 1``: the
  left and right edges of the layout (x = 0 and x = 1) get the same functions, so left and right
  temporal sensors cannot be told apart by a smooth map. Kept to reproduce earlier runs.

Spatial dropout (training only): for each sample a centre is drawn uniformly in ``[0, 1]²`` and
the sensors closer than ``dropout_radius`` to it are removed from the softmax. Distances are
measured on the positions the series sees before the margin (per-axis scaled for ``"paper"``,
as in the paper's code; as given for ``"wrapped"``). If that would remove every sensor of a
sample, that sample keeps all its sensors.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "FourierLayout", "SpatialAttention", "check_sensor_inputs", "masked_channel_softmax",
]

#: how sensor positions are placed in the period of the Fourier series (see the module doc)
FourierLayout = Literal["paper", "wrapped"]


def check_sensor_inputs(x: Tensor, mask: Tensor, positions: Tensor | None = None) -> None:
    """Raise ``ValueError`` unless ``x [B, C, T]``, ``mask [B, C]`` (bool) and ``positions
    [B, C, 2]`` agree and every sample has at least one real sensor."""
    if x.dim() != 3:
        raise ValueError(f"brain input must be [B, C, T], got shape {tuple(x.shape)}")
    batch, channels, _ = x.shape
    if mask.shape != (batch, channels) or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a bool tensor of shape {(batch, channels)}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    if positions is not None and positions.shape != (batch, channels, 2):
        raise ValueError(
            f"positions must have shape {(batch, channels, 2)}, got {tuple(positions.shape)}"
        )
    empty = ~mask.any(dim=1)
    if empty.any():
        raise ValueError(f"samples {empty.nonzero().flatten().tolist()} have no real sensor")


def masked_channel_softmax(logits: Tensor, keep: Tensor, x: Tensor) -> Tensor:
    """Mix sensors with attention weights.

    ``logits [B, O, C]``, ``keep [B, C]`` (False → excluded), ``x [B, C, T]`` → ``[B, O, T]``.
    """
    logits = logits.masked_fill(~keep[:, None, :], -math.inf)
    return torch.bmm(torch.softmax(logits, dim=-1), x)


class SpatialAttention(nn.Module):
    """Position-based softmax attention from C sensors to ``n_outputs`` virtual channels.

    Parameters
    ----------
    n_outputs : number of virtual channels (270 in the paper).
    n_fourier : K, number of frequencies per axis (32 → 2·32² = 2048 coefficients per output).
    dropout_radius : radius of the spatial dropout disc in normalised units (0 disables it).
    layout : ``"paper"`` (per-axis scaling, margin 0.2, period 1.4) or ``"wrapped"`` (positions
        as given, period 1); see the module documentation.
    """

    MARGIN = 0.2  # margin on each side of the layout in the period of the series ("paper")

    def __init__(self, n_outputs: int = 270, n_fourier: int = 32, dropout_radius: float = 0.2,
                 layout: FourierLayout = "paper"):
        super().__init__()
        if layout not in ("paper", "wrapped"):
            raise ValueError(f"layout must be 'paper' or 'wrapped', got {layout!r}")
        self.n_outputs = n_outputs
        self.n_fourier = n_fourier
        self.dropout_radius = dropout_radius
        self.layout = layout
        self.margin = self.MARGIN if layout == "paper" else 0.0
        n_features = 2 * n_fourier**2
        # Fourier coefficients [n_outputs, 2K²]: cosine (real) parts, then sine (imaginary) parts
        self.weight = nn.Parameter(torch.randn(n_outputs, n_features) / math.sqrt(n_features))

    def fourier_features(self, positions: Tensor) -> Tensor:
        """``positions [..., 2]`` in [0, 1] (as returned by :meth:`clean_positions`) →
        ``[..., 2K²]``: cos then sin of 2π(k(x + m) + l(y + m))/(1 + 2m), m the margin."""
        freqs = torch.arange(self.n_fourier, dtype=positions.dtype, device=positions.device)
        freqs = freqs / (1 + 2 * self.margin)
        shifted = positions + self.margin
        x, y = shifted[..., 0, None, None], shifted[..., 1, None, None]
        phase = 2 * math.pi * (x * freqs[:, None] + y * freqs[None, :])
        phase = phase.flatten(-2)
        return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)

    def attention_logits(self, positions: Tensor) -> Tensor:
        """``positions [B, C, 2]`` from :meth:`clean_positions` → logits ``[B, n_outputs, C]``.

        The Fourier series is evaluated once per distinct layout in the batch (usually one or
        a few), not once per sample.
        """
        batch, channels, _ = positions.shape
        layouts, layout_of_sample = torch.unique(
            positions.flatten(1), dim=0, return_inverse=True
        )
        features = self.fourier_features(layouts.view(-1, channels, 2))
        logits = (features @ self.weight.T).transpose(1, 2)
        # index_select, not logits[layout_of_sample]: the backward of advanced indexing sums
        # the gradients of repeated indices with atomic adds on multi-threaded CPUs, in an
        # order that changes from run to run; index_select's backward is deterministic
        return logits.index_select(0, layout_of_sample)

    def dropped_sensors(self, positions: Tensor, mask: Tensor) -> Tensor:
        """Random spatial dropout ``[B, C]`` bool: True for the real sensors within
        ``dropout_radius`` of a per-sample uniform centre (all False for a sample whose every
        sensor would be dropped)."""
        centre = torch.rand(positions.shape[0], 1, 2, device=positions.device)
        dropped = ((positions - centre).norm(dim=-1) < self.dropout_radius) & mask
        nothing_left = ~(mask & ~dropped).any(dim=1)
        return dropped & ~nothing_left[:, None]

    def forward(
        self, x: Tensor, positions: Tensor, mask: Tensor, dropped: Tensor | None = None
    ) -> Tensor:
        """``x [B, C, T]``, ``positions [B, C, 2]``, ``mask [B, C]`` → ``[B, n_outputs, T]``.

        Padding sensors (mask False) get zero weight; their data and positions are ignored
        (their data must be finite). ``dropped [B, C]``, if given, replaces the random spatial
        dropout (so that a batch processed in pieces can use dropout drawn for the whole batch).
        """
        check_sensor_inputs(x, mask, positions)
        positions = self.clean_positions(positions, mask)
        if dropped is None and self.training and self.dropout_radius > 0:
            dropped = self.dropped_sensors(positions, mask)
        keep = mask if dropped is None else mask & ~dropped
        logits = self.attention_logits(positions)
        return masked_channel_softmax(logits, keep, x)

    def clean_positions(self, positions: Tensor, mask: Tensor) -> Tensor:
        """The positions the series and the dropout see, ``[B, C, 2]`` in the weights' dtype:
        for ``"paper"`` each axis min–max scaled to [0, 1] over the real sensors of each sample
        (an axis along which all sensors coincide maps to 0), as given for ``"wrapped"``;
        padding sensors moved to (0, 0)."""
        padding = ~mask[..., None]
        positions = positions.to(self.weight.dtype).masked_fill(padding, 0.0)
        if self.layout == "paper":
            low = positions.masked_fill(padding, math.inf).amin(dim=1, keepdim=True)
            high = positions.masked_fill(padding, -math.inf).amax(dim=1, keepdim=True)
            extent = (high - low).clamp_min(1e-12)
            positions = ((positions - low) / extent).masked_fill(padding, 0.0)
        return positions

    def extra_repr(self) -> str:
        return (
            f"n_outputs={self.n_outputs}, n_fourier={self.n_fourier}, "
            f"dropout_radius={self.dropout_radius}, layout={self.layout!r}"
        )
