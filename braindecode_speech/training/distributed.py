"""Multi-process (multi-GPU, multi-node) training: the process group and the batch-shared loss.

Launch modes, all described by environment variables that :func:`init_process_group` reads:

- ``torchrun --nproc_per_node=4 -m braindecode_speech train ...`` (one node, several GPUs):
  ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``;
- several submitit tasks (``braindecode-speech grid run --tasks-per-node 4 --nodes 2``): the
  SLURM (or submitit local) task variables, turned into the above by
  :class:`submitit.helpers.TorchDistributedEnvironment`;
- anything else is a single process, and every function here is then a no-op.

Each process holds ``1 / world_size`` of every global batch. For the contrastive loss the speech
candidates of the whole global batch are gathered, so that every brain window is contrasted with
all the segments of the global batch ("global negatives"), exactly as a single process would do
with the same batch; ``negatives="per_process"`` keeps each process's own share only (the paper's
per-GPU negatives). Brain embeddings are not gathered: the loss term of a window depends on its
own brain embedding and on the candidates only, so each process computes the terms of its own
windows and data-parallel gradient averaging sums them (see :func:`batch_share_loss`).
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["ProcessGroupInfo", "Negatives", "init_process_group", "process_info",
           "is_main_process", "barrier", "all_reduce_sum", "gather_rows", "batch_share_loss",
           "rank_device"]

logger = logging.getLogger(__name__)

Negatives = Literal["global", "per_process"]


@dataclass(frozen=True)
class ProcessGroupInfo:
    """Where this process stands: global rank, number of processes, rank within its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _submitit_task_count() -> int:
    """Number of tasks of the submitit job this process belongs to (1 outside submitit)."""
    if "SUBMITIT_EXECUTOR" not in os.environ:
        return 1
    import submitit

    return submitit.JobEnvironment().num_tasks


def init_process_group(backend: str | None = None,
                       timeout: datetime.timedelta = datetime.timedelta(minutes=30)) \
        -> ProcessGroupInfo:
    """Join the process group described by the environment (see the module docstring).

    Idempotent; returns the single-process info when the environment describes one process.
    ``backend`` defaults to ``nccl`` when CUDA is available, else ``gloo``.
    """
    if dist.is_available() and dist.is_initialized():
        return process_info()
    if "WORLD_SIZE" not in os.environ and _submitit_task_count() > 1:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return ProcessGroupInfo()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, init_method="env://", timeout=timeout)
    info = process_info()
    logger.info("Process %d/%d (local rank %d) joined the %s group at %s:%s", info.rank,
                info.world_size, info.local_rank, backend, os.environ.get("MASTER_ADDR"),
                os.environ.get("MASTER_PORT"))
    return info


def process_info() -> ProcessGroupInfo:
    """Rank, world size and local rank of this process (single process when no group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return ProcessGroupInfo()
    rank = dist.get_rank()
    return ProcessGroupInfo(rank, dist.get_world_size(),
                            int(os.environ.get("LOCAL_RANK", rank)))


def is_main_process() -> bool:
    """True on rank 0 (and in single-process runs): the process that writes files."""
    return process_info().rank == 0


def barrier() -> None:
    """Wait for every process (no-op in single-process runs)."""
    if process_info().distributed:
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    """Sum of ``values`` over the processes (unchanged in single-process runs)."""
    if not process_info().distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def rank_device(name: str, local_rank: int) -> torch.device:
    """The device of the process of ``local_rank``: with several processes, a CUDA device name
    without index (``cuda``, or ``auto`` on a CUDA machine) becomes ``cuda:<local_rank>``
    (modulo the visible devices, so that one visible GPU per task also works)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 with per-process row counts ``sizes``; the gradient of this
    process's rows is the sum, over processes, of the gradients of the gathered tensor."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], offset: int) -> Tensor:  # type: ignore[override]
        padded = x.new_zeros((max(sizes), *x.shape[1:]))
        padded[:len(x)] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        ctx.rows = (offset, len(x))
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        offset, n = ctx.rows
        return grad[offset:offset + n], None, None


def gather_rows(x: Tensor) -> tuple[Tensor, int]:
    """Concatenate ``x [n_r, ...]`` of every process in rank order → ``([sum n_r, ...], offset)``
    where ``offset`` is the first row of this process's ``x``. Differentiable; the identity
    (offset 0) in single-process runs."""
    info = process_info()
    if not info.distributed:
        return x, 0
    count = torch.tensor([len(x)], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(info.world_size)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    offset = sum(sizes[:info.rank])
    return _GatherRows.apply(x, sizes, offset), offset


def batch_share_loss(loss: nn.Module, brain: Tensor, speech: Tensor, global_batch: int,
                     negatives: Negatives = "global") -> Tensor:
    """This process's share of the loss of a global batch.

    ``brain`` and ``speech`` ``[n, F, T]`` are this process's ``n`` windows of a global batch of
    ``global_batch`` windows. ``loss`` is a per-window mean; a contrastive loss exposes
    ``scores(brain [n, F, T], candidates [N, F, T]) -> [n, N]`` and ``from_scores(scores,
    offset)`` (the true candidate of row ``i`` is column ``offset + i``), like
    :class:`~braindecode_speech.training.losses.ClipLoss`. Returns
    ``loss_share * world_size * n / global_batch``, so that the mean over processes (what
    data-parallel training averages, values and gradients alike) equals the loss of the global
    batch: with ``negatives="global"`` exactly the single-process loss of that batch, with
    ``"per_process"`` the mean over processes of their own in-batch losses.
    In single-process runs this is ``loss(brain, speech)``.
    """
    info = process_info()
    if not info.distributed:
        return loss(brain, speech)
    if negatives == "global" and hasattr(loss, "from_scores"):
        candidates, offset = gather_rows(speech)
        share = loss.from_scores(loss.scores(brain, candidates), offset)
    else:
        share = loss(brain, speech)
    return share * (info.world_size * len(brain) / global_batch)
