"""Subject-specific layers.

:class:`SubjectLayers` gives every training subject its own channel-mixing matrix (the paper's
"subject layer"); :class:`SubjectEmbedding` instead appends a learned per-subject vector to the
channels (the paper's "subject embedding" ablation).

Unknown subjects (index ``-1``, e.g. a subject never seen in training) use the *mean* of the
learned subject matrices (resp. embeddings), i.e. the subject-average model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SubjectEmbedding", "SubjectLayers", "UNKNOWN_SUBJECT", "check_subjects"]

UNKNOWN_SUBJECT = -1


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
    """One ``C × C`` matrix per subject, initialised to the identity.

    ``forward(x [B, C, T], subjects [B]) -> [B, C, T]`` with ``out_b = W[subjects_b] @ x_b``.
    The batch is grouped by subject, so each group is a single matrix product and no per-sample
    ``[B, C, C]`` weight tensor is ever gathered.
    """

    def __init__(self, n_channels: int, n_subjects: int):
        super().__init__()
        self.n_subjects = n_subjects
        self.weight = nn.Parameter(torch.eye(n_channels).repeat(n_subjects, 1, 1))

    def forward(self, x: Tensor, subjects: Tensor) -> Tensor:
        check_subjects(subjects, x.shape[0], self.n_subjects)
        order = torch.argsort(subjects, stable=True)
        groups, counts = torch.unique_consecutive(subjects[order], return_counts=True)
        chunks = x[order].split(counts.tolist())
        outputs = []
        for subject, chunk in zip(groups.tolist(), chunks):
            weight = self.weight.mean(0) if subject == UNKNOWN_SUBJECT else self.weight[subject]
            outputs.append(torch.matmul(weight, chunk))
        return torch.cat(outputs)[torch.argsort(order)]

    def extra_repr(self) -> str:
        n_subjects, n_channels, _ = self.weight.shape
        return f"n_channels={n_channels}, n_subjects={n_subjects}"


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
        # index -1 picks the last row of `table`: the mean embedding
        vectors = table[subjects]
        return torch.cat([x, vectors[:, :, None].expand(-1, -1, x.shape[-1])], dim=1)
