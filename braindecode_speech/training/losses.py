"""Training objectives: the CLIP-style contrastive loss of the paper and an MSE baseline for
retrieval; the losses of speech detection and phoneme classification
(:mod:`braindecode_speech.data.labels`).

Contrastive score (paper): with brain predictions ``Z [B, F, T]`` and speech features
``Y [N, F, T]``, ``S_ij = <Z_i, Y_j> / ||Y_j||`` where the inner product and the L2 norm run
over channels and time. The loss is the cross-entropy of each row of ``S`` (a softmax over the
speech candidates of the batch) with the matching segment (the diagonal) as target. The same
score ranks candidates at evaluation: :func:`clip_scores` is the one implementation, used by
the loss, the ``plain`` training step, the multi-process loss (:mod:`.distributed`) and the
streamed retrieval (:mod:`braindecode_speech.evaluation.retrieval`); the ``fast`` and ``lean``
steps compute the same product over slices of bf16 predictions, with a backward that writes
their gradient in bf16 (``_SlicedScores`` in :mod:`.steps`), or through the encoder's last 1×1
convolution without computing the predictions (``_ScoresThroughLinear``), both tested against
it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from ..config import Config

__all__ = ["ClipLoss", "DetectionLoss", "LossConfig", "MSELoss", "PhonemeLoss", "clip_norms",
           "clip_scores"]


def _check_pair(brain: Tensor, speech: Tensor) -> None:
    if brain.dim() < 2 or brain.dim() != speech.dim() or brain.shape[1:] != speech.shape[1:]:
        raise ValueError(
            f"brain [B, F, T] and speech [N, F, T] (or flattened [B, D] and [N, D]) must agree "
            f"in F and T, got {tuple(brain.shape)} and {tuple(speech.shape)}"
        )


def clip_norms(speech: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``speech [N, F, T]`` (or ``[N, D]``) → ``[N]`` norms ``||Y_j||`` over channels and time,
    accumulated in ``dtype`` (default: the dtype of ``speech``)."""
    return torch.linalg.vector_norm(speech.flatten(1), dim=1, dtype=dtype)


def clip_scores(brain: Tensor, speech: Tensor, speech_norms: Tensor | None = None) -> Tensor:
    """``brain [B, F, T]``, ``speech [N, F, T]`` → ``[B, N]`` scores ``<Z_i, Y_j> / ||Y_j||``.

    Computed as one ``[B, F·T] @ [F·T, N]`` product divided by the candidate norms, so no
    normalised copy of ``speech`` is made; already flattened ``[B, D]`` and ``[N, D]`` inputs
    are accepted too. ``speech_norms [N]``: the norms ``||Y_j||`` (:func:`clip_norms`) when
    already known (e.g. when scoring pieces of a batch against the same candidates); the result
    has the dtype of the product promoted with that of the norms.
    """
    _check_pair(brain, speech)
    flat_speech = speech.flatten(1)
    inner = brain.flatten(1) @ flat_speech.T
    return inner / (clip_norms(flat_speech) if speech_norms is None else speech_norms)


class ClipLoss(nn.Module):
    """In-batch contrastive cross-entropy: ``forward(brain [B, F, T], speech [B, F, T])`` → scalar.

    Parameters
    ----------
    temperature : divide the scores by this value (None: no temperature, as in the paper).
    learn_temperature : make the (log) temperature a trainable parameter starting at
        ``temperature``.
    """

    def __init__(self, temperature: float | None = None, learn_temperature: bool = False):
        super().__init__()
        if temperature is not None and temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if learn_temperature and temperature is None:
            raise ValueError("learn_temperature needs an initial temperature")
        self.log_temperature: Tensor | None
        if temperature is None:
            self.log_temperature = None
        elif learn_temperature:
            self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        else:
            self.register_buffer("log_temperature", torch.tensor(math.log(temperature)))

    def scores(self, brain: Tensor, speech: Tensor) -> Tensor:
        """``[B, N]`` scores of every brain prediction against every speech candidate (without
        temperature; ranking does not depend on it)."""
        return clip_scores(brain, speech)

    def logits(self, brain: Tensor, speech: Tensor) -> Tensor:
        """Scores divided by the temperature, ``[B, N]``."""
        return self._with_temperature(clip_scores(brain, speech))

    def from_scores(self, scores: Tensor, offset: int = 0) -> Tensor:
        """The loss from the ``[B, N]`` scores of ``B`` brain windows against ``N >= offset + B``
        speech candidates: the match of row ``i`` is column ``offset + i`` (the diagonal of a
        ``[B, B]`` batch; a process's own rows among gathered candidates in multi-process
        training)."""
        if scores.dim() != 2 or offset < 0 or scores.shape[1] < offset + scores.shape[0]:
            raise ValueError(f"scores must be a [B, N] matrix with N >= offset + B, got "
                             f"{tuple(scores.shape)} and offset {offset}")
        logits = self._with_temperature(scores)
        targets = torch.arange(offset, offset + len(logits), device=logits.device)
        return F.cross_entropy(logits, targets)

    def _with_temperature(self, scores: Tensor) -> Tensor:
        if self.log_temperature is None:
            return scores
        return scores / self.log_temperature.exp()

    def forward(self, brain: Tensor, speech: Tensor) -> Tensor:
        if brain.shape != speech.shape:
            raise ValueError(
                f"brain and speech must be matching [B, F, T] batches, got {tuple(brain.shape)} "
                f"and {tuple(speech.shape)}"
            )
        return self.from_scores(clip_scores(brain, speech))


class MSELoss(nn.Module):
    """Regression baseline: mean squared error between ``brain`` and ``speech`` ``[B, F, T]``."""

    def forward(self, brain: Tensor, speech: Tensor) -> Tensor:
        if brain.shape != speech.shape:
            raise ValueError(
                f"brain and speech must have the same shape, got {tuple(brain.shape)} and "
                f"{tuple(speech.shape)}"
            )
        return F.mse_loss(brain, speech)


class DetectionLoss(nn.Module):
    """Speech detection: binary cross-entropy of the per-time-step logits ``prediction [B, 1, T]``
    with the speech (1) / silence (0) track ``target [B, 1, T]``; ``pos_weight`` multiplies the
    speech frames' terms (``n_silence / n_speech`` of training makes both classes count
    equally)."""

    def __init__(self, pos_weight: float = 1.0) -> None:
        super().__init__()
        if pos_weight <= 0:
            raise ValueError(f"pos_weight must be positive, got {pos_weight}")
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)))

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        if prediction.dim() != 3 or prediction.shape[1] != 1 or target.shape != prediction.shape:
            raise ValueError(f"speech detection needs prediction and target [B, 1, T], got "
                             f"{tuple(prediction.shape)} and {tuple(target.shape)}")
        return F.binary_cross_entropy_with_logits(prediction, target,
                                                  pos_weight=self.pos_weight)


class PhonemeLoss(nn.Module):
    """Phoneme classification: cross-entropy of the window logits of ``prediction [B, K, T]``
    (:meth:`logits`; the phoneme model's :class:`~braindecode_speech.models.WindowClassifier`
    gives T = 1) with each window's class, read from its target track ``target [B, 1, T]`` at
    ``index`` (the anchor sample, where the phoneme starts). ``weight [K]``: per-class weights
    (None: equal)."""

    def __init__(self, index: int, weight: Tensor | None = None) -> None:
        super().__init__()
        self.index = int(index)
        self.register_buffer("weight", None if weight is None else weight.float())

    @staticmethod
    def logits(prediction: Tensor) -> Tensor:
        """``[B, K, T]`` logits → ``[B, K]`` window logits (mean over time)."""
        return prediction.mean(-1)

    def labels(self, target: Tensor) -> Tensor:
        """``[B]`` class indices of ``target [B, 1, T]``."""
        return target[:, 0, self.index].long()

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        if prediction.dim() != 3 or target.dim() != 3 or len(target) != len(prediction) \
                or not 0 <= self.index < target.shape[-1]:
            raise ValueError(f"phoneme classification needs prediction [B, K, T] and target "
                             f"[B, 1, T] with the anchor sample {self.index} inside, got "
                             f"{tuple(prediction.shape)} and {tuple(target.shape)}")
        labels = self.labels(target)
        if (labels < 0).any():
            raise ValueError("a phoneme window has no class at its anchor sample")
        return F.cross_entropy(self.logits(prediction), labels, weight=self.weight)


class LossConfig(Config):
    """Training objective of retrieval. Defaults are the paper's (CLIP loss, no temperature).
    The other tasks have their own loss (:class:`DetectionLoss`, :class:`PhonemeLoss`)."""

    name: Literal["clip", "mse"] = "clip"
    temperature: float | None = Field(None, gt=0)
    """CLIP only: divide the scores by this temperature (None: none, as in the paper)"""
    learn_temperature: bool = False
    """CLIP only: learn the temperature, starting from ``temperature``"""

    @model_validator(mode="after")
    def _check_temperature(self) -> LossConfig:
        if self.learn_temperature and self.temperature is None:
            raise ValueError("learn_temperature=True needs an initial temperature")
        if self.name == "mse" and (self.temperature is not None or self.learn_temperature):
            raise ValueError("temperature settings apply to the clip loss only")
        return self

    def build(self) -> ClipLoss | MSELoss:
        if self.name == "clip":
            return ClipLoss(self.temperature, self.learn_temperature)
        return MSELoss()
