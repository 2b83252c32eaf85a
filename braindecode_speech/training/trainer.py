"""Training loop: Adam, early stopping on the validation loss, a checkpoint every epoch, exact
resume after interruption.

Determinism: the order of the training windows and the random state of each epoch (spatial
dropout, dropout) derive from ``(seed, epoch)`` alone, and on CPU every operation of the model
and the loss is deterministic (no atomic adds: see ``SpatialAttention.attention_logits``), so two
runs with the same seed, and an interrupted run resumed from its last checkpoint, give the
same weights and history bit for bit, provided they use the same device type, number of
intra-op threads (``torch.get_num_threads()``, which changes how sums are split) and torch
version. The checkpoint records those; resuming under others logs a WARNING. On CUDA, bit-exact
runs need ``OptimConfig.deterministic`` (deterministic cuDNN/cuBLAS kernels).

Several processes (``torchrun``, or several SLURM/submitit tasks; see
:mod:`braindecode_speech.training.distributed`): the trainer joins the process group the environment
describes and trains with :class:`~torch.nn.parallel.DistributedDataParallel`. Every global batch
of ``batch_size`` windows is the one a single process would draw; each process takes a contiguous
``1 / world_size`` share of it, and the contrastive negatives are gathered from the whole global
batch (``OptimConfig.negatives``). Only rank 0 writes files. Batch-norm statistics are computed
per process (as in the paper's 2-GPU runs) and broadcast from rank 0 after every epoch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..config import Config
from ..data.batches import BatchLoader
from . import distributed
from .distributed import Negatives
from .heap import kept_heap
from .steps import ContrastiveStep

__all__ = ["OptimConfig", "Trainer", "CheckpointError", "load_checkpoint", "resolve_device",
           "CHECKPOINT_KEYS"]

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used with this configuration."""


class OptimConfig(Config):
    """Optimisation. Defaults are the paper's."""

    lr: float = Field(3e-4, ge=0)
    """Adam learning rate (0: weights stay at their initial values)"""
    batch_size: int = Field(256, ge=1)
    max_epochs: int = Field(200, ge=0)
    """0: no training, the randomly initialised model is evaluated (a baseline)"""
    batches_per_epoch: int = Field(1200, ge=1)
    """at most this many training batches per epoch"""
    patience: int = Field(10, ge=1)
    """stop after this many epochs without a better validation loss"""
    valid_shuffle: bool = True
    """validation batches drawn in one fixed random order (from ``seed``, the same every
    epoch, every window used), so their negatives are not consecutive, overlapping windows
    (the paper's); False: in window order (ours before)"""
    seed: int = Field(2036, ge=0)
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``..."""
    amp: bool = True
    """bfloat16 autocast on CUDA"""
    cpu_bf16: bool = False
    """bfloat16 autocast on CPU too: about 2x faster on CPUs with AMX or AVX512-BF16 (see
    ``bench/train_step.py``), with gradients within ~4 % of float32's (off by default)"""
    progress: bool = True
    negatives: Negatives = "global"
    """with several processes, contrast each window with the segments of the whole global
    batch (``global``, as one process would) or of its process's share only (``per_process``,
    the paper's per-GPU negatives). No effect in single-process runs."""

    step: Literal["plain", "fast", "lean"] = "plain"
    """how a training step computes the batch's loss and gradients (single process): ``plain``
    (one forward and backward), ``fast`` (layer-synchronous micro-batches) or ``lean``
    (gradient caching, bounded memory); all three give the same loss and gradients, see
    :mod:`braindecode_speech.training.steps`"""
    micro_batch: int = Field(32, ge=1)
    """micro-batch size of the ``fast`` and ``lean`` steps"""
    compile: bool = False
    """run the training forward and backward through ``torch.compile`` (``step=plain`` only;
    the first steps compile, once per process): see the README's GPU figures for what it
    gains there"""
    deterministic: bool = False
    """train under ``torch.use_deterministic_algorithms(True)`` (and deterministic cuDNN and
    cuBLAS on CUDA, slower): an operation without a deterministic implementation is an error
    instead of a source of run-to-run differences. Not needed on CPU, where the model is
    deterministic for a given number of threads (see :mod:`braindecode_speech.training.trainer`)"""

    cudnn_benchmark: bool = True
    """on CUDA, cuDNN times its convolution algorithms on the first batch of each shape and
    keeps the fastest (``torch.backends.cudnn.benchmark``, during ``fit`` only; off under
    ``deterministic``): 19 % more samples per second on an H200 (README, Performance)"""

    cpu_kept_heap: bool = True
    """with ``step=fast`` on CPU, during ``fit``, large tensors come from the heap and stay
    there between steps instead of being mapped afresh by glibc at every step
    (:mod:`braindecode_speech.training.heap`): no page faults, 6 % faster float32 steps and 3 %
    faster bf16 ones at the paper's batch, 3 % more memory (README, Performance), the same
    results. Not for ``plain`` (its heap would grow from 7.9 to 13.8 GiB) nor ``lean`` (whose
    point is bounded memory); no effect off glibc or on CUDA"""

    _exclude_from_signature = ("device", "progress", "step", "micro_batch", "compile",
                               "deterministic", "cudnn_benchmark", "cpu_kept_heap")

    @model_validator(mode="after")
    def _compile_needs_plain(self) -> OptimConfig:
        if self.compile and self.step != "plain":
            raise ValueError(f"optim.compile needs optim.step=plain (step={self.step!r} runs "
                             "the model layer by layer)")
        return self


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def _algorithms(deterministic: bool, cudnn_benchmark: bool) -> Iterator[None]:
    """Inside the block: ``torch.use_deterministic_algorithms(True)`` when ``deterministic``
    (else the caller's setting), and cuDNN's algorithm search (``torch.backends.cudnn.benchmark``)
    when ``cudnn_benchmark`` and not ``deterministic``; the previous settings are restored
    after it."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    if deterministic:
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = cudnn_benchmark and not deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


def _environment(device: torch.device) -> dict[str, Any]:
    """What a run's floating-point results depend on besides its config and seed."""
    return {"device": device.type, "threads": torch.get_num_threads(),
            "torch": str(torch.__version__)}


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


#: entries of ``checkpoint.pt`` (``best.pt`` holds the first three)
CHECKPOINT_KEYS = ("model", "signature", "epoch", "optimizer", "loss", "history", "best_loss",
                   "bad_epochs")


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu",
                    keys: tuple[str, ...] = CHECKPOINT_KEYS[:3]) -> dict[str, Any]:
    """A ``best.pt`` or ``checkpoint.pt`` written by :class:`Trainer`, read with
    ``torch.load(weights_only=True)``: tensors and plain types only (numbers, strings, lists,
    dicts), so a crafted file in a shared run folder cannot run code when it is loaded.

    Raises :class:`CheckpointError` naming the file when it is missing, truncated or damaged,
    holds anything else (a pickled object), or lacks one of ``keys``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # protocol warnings of hand-made pickles
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types on damaged files
        found = re.search(r"Unsupported global: GLOBAL \S+", str(exc))
        if found:
            raise CheckpointError(
                f"{path}: refused, it holds more than tensors and plain types ({found[0]}); "
                "loading it could run code. Use checkpoints written by this package only") \
                from None
        detail = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, pickle.UnpicklingError):  # torch's text suggests unsafe loading
            operand = re.search(r"Unsupported operand \d+", str(exc))
            detail = f"UnpicklingError: {operand[0] if operand else 'unreadable content'}"
        raise CheckpointError(f"{path}: truncated or damaged checkpoint ({detail})") from None
    missing = [k for k in keys if k not in state] if isinstance(state, dict) else list(keys)
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this package (no {missing})")
    return state


class Trainer:
    """Fits ``model`` to pairs of brain/speech windows with ``loss``.

    Parameters
    ----------
    model : maps ``(brain [B, C, T], subject [B], positions [B, C, 2], mask [B, C])`` to
        ``[B, F, T]``.
    loss : maps ``(prediction [B, F, T], speech [B, F, T])`` to a scalar. With several
        processes, a contrastive loss with a ``logits(prediction, candidates)`` method
        (:class:`~braindecode_speech.training.losses.ClipLoss`) is given the candidates of the whole
        global batch (see ``OptimConfig.negatives``).
    config : optimisation settings.
    folder : where ``checkpoint.pt``, ``best.pt`` and ``history.jsonl`` are written.
    signature : signature of the experiment config; a checkpoint with another one is refused.
    """

    def __init__(self, model: nn.Module, loss: nn.Module, config: OptimConfig,
                 folder: str | Path, signature: str) -> None:
        self.process = distributed.init_process_group()
        if self.process.distributed:
            self.device = distributed.rank_device(config.device, self.process.local_rank)
        else:
            self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.loss = loss.to(self.device)
        self.parallel_model: nn.Module = self.model
        if self.process.distributed:
            self.parallel_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if config.negatives == "global" and not hasattr(loss, "from_scores"):
                logger.info("%s has no from_scores(): it is averaged over the processes' "
                            "shares (no negatives to gather)", type(loss).__name__)
        self.config = config
        if config.deterministic:  # read when cuBLAS starts (ignored on CPU)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.signature = signature
        params = list(self.model.parameters()) + list(self.loss.parameters())
        self.optimizer = torch.optim.Adam(params, lr=config.lr)
        if config.step != "plain" and self.process.distributed:
            raise ValueError(f"optim.step={config.step!r} is single-process only; use "
                             "step=plain with several processes")
        self.step = ContrastiveStep(self.parallel_model, self.loss, self.optimizer,
                                    mode=config.step, micro_batch=config.micro_batch,
                                    bf16=self._bf16, negatives=config.negatives,
                                    compile=config.compile)
        self.history: list[dict[str, float]] = []
        self.best_loss = float("inf")
        self.bad_epochs = 0
        self.epoch = 0

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / "checkpoint.pt"

    @property
    def _bf16(self) -> bool:
        """Whether training runs under bfloat16 autocast on this device."""
        if self.device.type == "cuda":
            return self.config.amp
        return self.device.type == "cpu" and self.config.cpu_bf16

    def _global_batches(self, n_windows: int, shuffle_epoch: int | None,
                        n_batches: int | None) -> list[list[int]]:
        """Batches of window indices, the same in every process: shuffled by ``(seed, epoch)``
        for training (incomplete last batch dropped), in order otherwise."""
        if shuffle_epoch is None:
            indices = list(range(n_windows))
        else:
            gen = torch.Generator().manual_seed(self.config.seed * 100_003 + shuffle_epoch)
            indices = torch.randperm(n_windows, generator=gen).tolist()
        size = self.config.batch_size
        if n_batches is not None:
            indices = indices[:n_batches * size]
        batches = [indices[i:i + size] for i in range(0, len(indices), size)]
        if shuffle_epoch is not None and len(indices) >= size and len(batches[-1]) < size:
            batches.pop()
        # every process needs at least one window of each batch
        return [b for b in batches if len(b) >= self.process.world_size]

    def _loader(self, dataset: torch.utils.data.Dataset,
                batches: list[list[int]]) -> BatchLoader:
        """Loads this process's contiguous share of each global batch (``dataset.get_batch``
        where the dataset has it, prepared ahead as its ``data_config`` says)."""
        rank, world_size = self.process.rank, self.process.world_size
        shares = [b[rank * len(b) // world_size:(rank + 1) * len(b) // world_size]
                  for b in batches]
        return BatchLoader.for_dataset(dataset, shares, pin_memory=self.device.type == "cuda")

    def validate(self, dataset: torch.utils.data.Dataset) -> float:
        """Mean loss over the batches of ``dataset`` (eval mode, no gradient); batches in a
        fixed random order when ``valid_shuffle``, in window order otherwise."""
        self.model.eval()
        batches = [b for b in self._global_batches(len(dataset), None, None) if len(b) >= 2]
        if self.config.valid_shuffle:
            gen = torch.Generator().manual_seed(self.config.seed * 100_003 - 1)
            order = torch.randperm(len(dataset), generator=gen).tolist()
            batches = [[order[i] for i in b] for b in batches]
        total = 0.0
        with torch.no_grad():
            for batch, indices in zip(self._loader(dataset, batches), batches):
                share = self.step.batch_loss(batch, len(indices)).item()
                total += share * len(indices) / self.process.world_size
        (total,) = distributed.all_reduce_sum([total], self.device)
        return total / max(sum(len(b) for b in batches), 1)

    def fit(self, train: torch.utils.data.Dataset, valid: torch.utils.data.Dataset) -> \
            list[dict[str, float]]:
        """Train until early stopping or ``max_epochs``; resumes from ``checkpoint.pt``
        (under deterministic algorithms with ``OptimConfig.deterministic``)."""
        kept = (self.device.type == "cpu" and self.config.cpu_kept_heap
                and self.config.step == "fast")
        with _algorithms(self.config.deterministic, self.config.cudnn_benchmark), \
                kept_heap(kept):
            return self._fit(train, valid)

    def _fit(self, train: torch.utils.data.Dataset, valid: torch.utils.data.Dataset) -> \
            list[dict[str, float]]:
        if len(train) < 2 or len(valid) < 2:
            raise ValueError(f"Not enough windows to train: {len(train)} train, "
                             f"{len(valid)} valid (need at least 2 each)")
        self._resume()
        cfg = self.config
        main = self.process.rank == 0
        while self.epoch < cfg.max_epochs and self.bad_epochs < cfg.patience:
            # a different random stream per process (spatial dropout, dropout)
            torch.manual_seed(cfg.seed * 100_003 + self.epoch + 1_000_003 * self.process.rank)
            self.model.train()
            start = time.time()
            losses = []
            batches = self._global_batches(len(train), self.epoch, cfg.batches_per_epoch)
            bar = tqdm(zip(self._loader(train, batches), batches), total=len(batches),
                       desc=f"epoch {self.epoch + 1}", leave=False,
                       disable=not (cfg.progress and main))
            for batch, indices in bar:
                losses.append(self.step(batch, len(indices)))
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            self._broadcast_buffers()
            (train_loss,) = distributed.all_reduce_sum([sum(losses)], self.device)
            valid_loss = self.validate(valid)
            self.epoch += 1
            record = {"epoch": self.epoch,
                      "train_loss": train_loss / self.process.world_size / max(len(losses), 1),
                      "valid_loss": valid_loss, "seconds": round(time.time() - start, 3)}
            self.history.append(record)
            improved = valid_loss < self.best_loss
            if improved:
                self.best_loss, self.bad_epochs = valid_loss, 0
            else:
                self.bad_epochs += 1
            if main:
                self._write_epoch(improved)
            logger.info("epoch %d: train %.4f valid %.4f%s", self.epoch, record["train_loss"],
                        valid_loss, " (best)" if improved else "")
        distributed.barrier()
        self.load_best()
        return self.history

    def _broadcast_buffers(self) -> None:
        """Give every process the batch-norm statistics of rank 0 (those that are saved)."""
        if not self.process.distributed:
            return
        for buffer in self.model.buffers():
            torch.distributed.broadcast(buffer, 0)

    def _write_epoch(self, improved: bool) -> None:
        """Checkpoint, best weights (if ``improved``) and history of the epoch just done."""
        if improved:
            _save_atomic({"model": self.model.state_dict(), "epoch": self.epoch,
                          "signature": self.signature}, self.folder / "best.pt")
        self._checkpoint()
        history = self.folder / "history.jsonl"
        history.with_suffix(".tmp").write_text(
            "".join(json.dumps(r) + "\n" for r in self.history))
        os.replace(history.with_suffix(".tmp"), history)

    def _checkpoint(self) -> None:
        _save_atomic({
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "loss": self.loss.state_dict(), "epoch": self.epoch, "history": self.history,
            "best_loss": self.best_loss, "bad_epochs": self.bad_epochs,
            "signature": self.signature, "environment": _environment(self.device),
        }, self.checkpoint_path)

    def _resume(self) -> None:
        if not self.checkpoint_path.exists():
            return
        state = load_checkpoint(self.checkpoint_path, self.device, CHECKPOINT_KEYS)
        if state["signature"] != self.signature:
            raise CheckpointError(
                f"{self.checkpoint_path} was written by a run with config signature "
                f"{state['signature']}, not {self.signature}: use another output folder or "
                "delete it")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.loss.load_state_dict(state["loss"])
        self.epoch, self.history = state["epoch"], state["history"]
        self.best_loss, self.bad_epochs = state["best_loss"], state["bad_epochs"]
        logger.info("Resumed %s at epoch %d", self.folder, self.epoch)
        before, now = state.get("environment"), _environment(self.device)
        if before != now:
            logger.warning("%s was written with %s, resumed with %s: the run goes on, but not "
                           "bit for bit as it would have without the interruption",
                           self.checkpoint_path, before, now)

    def load_best(self) -> None:
        """Load the weights of the best epoch (lowest validation loss)."""
        best = self.folder / "best.pt"
        if best.exists():
            self.model.load_state_dict(load_checkpoint(best, self.device)["model"])
