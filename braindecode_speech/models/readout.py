"""Window-level readout of a per-time-step model, for classifying whole windows."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["WindowClassifier"]


class WindowClassifier(nn.Module):
    """A model giving ``[B, K, T]`` per-time-step scores, read out as one score per class and
    window, ``[B, K, 1]``: a weighted sum over time with learned per-class weights ``[K, T]``
    (initialised to the mean over time).

    Phoneme classification needs the weights: a 0.7 s window holds about nine phonemes, and the
    convolutions treat every time step alike, so the mean of their scores over the window sees
    a bag of phonemes, not which one starts at the anchor (on the simulated study with a
    planted phoneme response the mean readout stays at chance while this one learns).

    Parameters
    ----------
    model : ``model(x [B, C, T], subjects [B], positions, mask) -> [B, K, T]``.
    n_outputs : K.
    n_times : T, the window's samples.
    """

    def __init__(self, model: nn.Module, n_outputs: int, n_times: int) -> None:
        super().__init__()
        self.model = model
        self.time_weights = nn.Parameter(torch.full((n_outputs, n_times), 1.0 / n_times))

    def forward(self, x: Tensor, subjects: Tensor, positions: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        scores = self.model(x, subjects, positions, mask)
        if scores.shape[1:] != self.time_weights.shape:
            raise ValueError(f"the window classifier reads [B, {self.time_weights.shape[0]}, "
                             f"{self.time_weights.shape[1]}] scores, got {tuple(scores.shape)}")
        return torch.einsum("bkt,kt->bk", scores, self.time_weights)[..., None]
