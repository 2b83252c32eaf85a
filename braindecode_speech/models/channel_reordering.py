"""Signal-based channel reordering: any sensor set → a fixed number of virtual channels.

An alternative to :class:`~braindecode_speech.models.SpatialAttention` in the spirit of CHARM
(channel-agnostic "reordering" of sensors): the attention weights over sensors come from the
signal itself instead of sensor positions, so no layout is needed.

Each sensor's time series is passed through a small bank of learned temporal filters (a 1-channel
``Conv1d`` shared by all sensors); the log of the mean power of each filter output describes the
sensor (its spectral profile), and a linear map turns that description into a key. Each output
channel has a learned query; the weights are ``softmax_i <q_j, k_i> / sqrt(D)`` over the real
sensors of the sample. Processing every sensor identically makes the layer independent of the
sensor order.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .spatial_attention import check_sensor_inputs, masked_channel_softmax

__all__ = ["ChannelReordering"]


class ChannelReordering(nn.Module):
    """Signal-based softmax attention from C sensors to ``n_outputs`` virtual channels.

    Parameters
    ----------
    n_outputs : number of virtual channels.
    embedding_dim : D, number of temporal filters and size of keys and queries.
    kernel_size : length of the temporal filters, in samples (frames are hopped by half of it).
    """

    eps = 1e-8  # added to the filter powers before the log

    def __init__(self, n_outputs: int = 270, embedding_dim: int = 32, kernel_size: int = 24):
        super().__init__()
        self.n_outputs = n_outputs
        self.filters = nn.Conv1d(
            1, embedding_dim, kernel_size, stride=max(1, kernel_size // 2),
            padding=kernel_size // 2, bias=False,
        )
        self.keys = nn.Linear(embedding_dim, embedding_dim)
        self.queries = nn.Parameter(torch.randn(n_outputs, embedding_dim))

    def sensor_keys(self, x: Tensor) -> Tensor:
        """``x [B, C, T]`` → one key per sensor ``[B, C, D]``."""
        batch, channels, length = x.shape
        filtered = self.filters(x.reshape(batch * channels, 1, length))
        log_power = torch.log(filtered.pow(2).mean(dim=-1) + self.eps)
        return self.keys(log_power).view(batch, channels, -1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x [B, C, T]``, ``mask [B, C]`` (True = real sensor) → ``[B, n_outputs, T]``."""
        check_sensor_inputs(x, mask)
        keys = self.sensor_keys(x)
        logits = self.queries @ keys.transpose(1, 2) / math.sqrt(keys.shape[-1])
        return masked_channel_softmax(logits, mask, x)
