"""Subject-specific layers.

:class:`SubjectLayers` gives every training subject its own channel-mixing matrix (the paper's
"subject layer"); :class:`SubjectEmbedding` instead appends a learned per-subject vector to the
channels (the paper's "subject embedding" ablation).

Unknown subjects (index ``-1``, e.g. a subject never seen in training) use the *mean* of the
learned subject matrices (resp. embeddings), i.e. the subject-average model. With the paper's
random start, the mean of S untrained matrices is small (entries of std 1/√(SC)); it becomes
the subject-average model as the matrices learn what the subjects share.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["SubjectEmbedding", "SubjectInit", "SubjectLayers", "UNKNOWN_SUBJECT",
           "check_subjects"]

UNKNOWN_SUBJECT = -1

#: start of the subject matrices: ``randn(C, C) / sqrt(C)`` each (paper) or the identity
SubjectInit = Literal["random", "identity"]


def check_subjects(subjects: Tensor, batch: int, n_subjects: int) -> None:
    """Raise ``ValueError`` unless ``subjects`` is an integer ``[batch]`` tensor with values in
    ``[-1, n_subjects)``."""
    if subjects.shape != (batch,) or subjects.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"subjects must be an integer tensor of shape ({batch},), "
            f"got {subjects.dtype} {tuple(subjects.shape)}"
        )
    bad = (subjects < UNKNOWN_SUBJECT) | (subjects >= n_subjects)
    if bad.any():
        raise ValueError(
            f"subject indices {sorted(set(subjects[bad].tolist()))} are out of range: "
            f"expected -1 (unknown) or 0..{n_subjects - 1}"
        )


class SubjectLayers(nn.Module):
    """One ``C × C`` matrix per subject.

    ``forward(x [B, C, T], subjects [B]) -> [B, C, T]`` with ``out_b = W[subjects_b] @ x_b``.
    The batch is grouped by subject, so each group is a single matrix product and no per-sample
    ``[B, C, C]`` weight tensor is ever gathered.

    ``init="random"`` (the paper's) draws each matrix ``randn(C, C) / sqrt(C)`` (entries of std
    1/√C, so the output keeps the input's scale); ``init="identity"`` starts every subject at the
    identity (the layer passes its input through until trained).
    """

    def __init__(self, n_channels: int, n_subjects: int, init: SubjectInit = "random"):
        super().__init__()
        if init not in ("random", "identity"):
            raise ValueError(f"init must be 'random' or 'identity', got {init!r}")
        self.n_subjects = n_subjects
        self.init = init
        if init == "random":
            weight = torch.randn(n_subjects, n_channels, n_channels) / math.sqrt(n_channels)
        else:
            weight = torch.eye(n_channels).repeat(n_subjects, 1, 1)
        self.weight = nn.Parameter(weight)

    def forward(self, x: Tensor, subjects: Tensor) -> Tensor:
        check_subjects(subjects, x.shape[0], self.n_subjects)
        order = torch.argsort(subjects, stable=True)
        groups, counts = torch.unique_consecutive(subjects[order], return_counts=True)
        # index_select, not x[order]: its gradient is a parallel index_add, where that of
        # advanced indexing is a serial accumulating index_put (4x slower on a batch of 32)
        chunks = x.index_select(0, order).split(counts.tolist())
        # the matrices of the batch's subjects in one gather, whose gradient is one index_add
        # (self.weight[subject] for each would add one zero-padded [S, C, C] gradient each)
        known = groups[groups != UNKNOWN_SUBJECT]
        weights = dict(zip(known.tolist(), self.weight.index_select(0, known).unbind(0)))
        outputs = []
        for subject, chunk in zip(groups.tolist(), chunks):
            weight = self.weight.mean(0) if subject == UNKNOWN_SUBJECT else weights[subject]
            outputs.append(torch.matmul(weight, chunk))
        return torch.cat(outputs).index_select(0, torch.argsort(order))

    def extra_repr(self) -> str:
        n_subjects, n_channels, _ = self.weight.shape
        return f"n_channels={n_channels}, n_subjects={n_subjects}, init={self.init!r}"


class SubjectEmbedding(nn.Module):
    """Append a learned per-subject vector (constant over time) to the channels.

    ``forward(x [B, C, T], subjects [B]) -> [B, C + dim, T]``.
    """

    def __init__(self, dim: int, n_subjects: int):
        super().__init__()
        self.n_subjects = n_subjects
        self.embedding = nn.Embedding(n_subjects, dim)

    def forward(self, x: Tensor, subjects: Tensor) -> Tensor:
        check_subjects(subjects, x.shape[0], self.n_subjects)
        table = torch.cat([self.embedding.weight, self.embedding.weight.mean(0, keepdim=True)])
        # index -1 picks the last row of `table`: the mean embedding (index_select: a
        # deterministic backward on multi-threaded CPUs, see SpatialAttention.attention_logits)
        vectors = table.index_select(0, subjects.remainder(len(table)))
        return torch.cat([x, vectors[:, :, None].expand(-1, -1, x.shape[-1])], dim=1)
