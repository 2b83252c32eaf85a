"""Training loop: Adam, early stopping on the validation loss, a checkpoint every epoch, exact
resume after interruption.

Determinism: the order of the training windows and the random state of each epoch (spatial
dropout, dropout) derive from ``(seed, epoch)`` alone, so an interrupted run resumed from its
last checkpoint reproduces the uninterrupted run exactly (on the same device).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from .config import Config

__all__ = ["OptimConfig", "Trainer", "CheckpointError", "resolve_device"]

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used with this configuration."""


class OptimConfig(Config):
    """Optimisation. Defaults are the paper's."""

    lr: float = 3e-4
    batch_size: int = 256
    max_epochs: int = 200
    batches_per_epoch: int = 1200
    """at most this many training batches per epoch"""
    patience: int = 10
    """stop after this many epochs without a better validation loss"""
    seed: int = 2036
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``..."""
    amp: bool = True
    """bfloat16 autocast on CUDA (ignored on CPU)"""
    num_workers: int = 0
    progress: bool = True

    _exclude_from_signature = ("device", "num_workers", "progress")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Trainer:
    """Fits ``model`` to pairs of brain/speech windows with ``loss``.

    Parameters
    ----------
    model : maps ``(brain [B, C, T], subject [B], positions [B, C, 2], mask [B, C])`` to
        ``[B, F, T]``.
    loss : maps ``(prediction [B, F, T], speech [B, F, T])`` to a scalar.
    config : optimisation settings.
    folder : where ``checkpoint.pt``, ``best.pt`` and ``history.jsonl`` are written.
    signature : signature of the experiment config; a checkpoint with another one is refused.
    """

    def __init__(self, model: nn.Module, loss: nn.Module, config: OptimConfig,
                 folder: str | Path, signature: str) -> None:
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.loss = loss.to(self.device)
        self.config = config
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.signature = signature
        params = list(self.model.parameters()) + list(self.loss.parameters())
        self.optimizer = torch.optim.Adam(params, lr=config.lr)
        self.history: list[dict[str, float]] = []
        self.best_loss = float("inf")
        self.bad_epochs = 0
        self.epoch = 0

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / "checkpoint.pt"

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        with self._autocast():
            out = self.model(batch["brain"], batch["subject"], batch["positions"], batch["mask"])
        return self.loss(out.float(), batch["speech"])

    def _loader(self, dataset: torch.utils.data.Dataset, shuffle_epoch: int | None,
                n_batches: int | None) -> torch.utils.data.DataLoader:
        if shuffle_epoch is None:
            indices = list(range(len(dataset)))
        else:
            gen = torch.Generator().manual_seed(self.config.seed * 100_003 + shuffle_epoch)
            indices = torch.randperm(len(dataset), generator=gen).tolist()
        if n_batches is not None:
            indices = indices[:n_batches * self.config.batch_size]
        return torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, indices), batch_size=self.config.batch_size,
            shuffle=False,
            drop_last=shuffle_epoch is not None and len(indices) >= self.config.batch_size,
            num_workers=self.config.num_workers)

    def validate(self, dataset: torch.utils.data.Dataset) -> float:
        """Mean loss over the batches of ``dataset`` (eval mode, no gradient)."""
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self._loader(dataset, None, None):
                if len(batch["index"]) < 2:
                    continue
                total += self._forward(batch).item() * len(batch["index"])
                count += len(batch["index"])
        return total / max(count, 1)

    def fit(self, train: torch.utils.data.Dataset, valid: torch.utils.data.Dataset) -> \
            list[dict[str, float]]:
        """Train until early stopping or ``max_epochs``; resumes from ``checkpoint.pt``."""
        if len(train) < 2 or len(valid) < 2:
            raise ValueError(f"Not enough windows to train: {len(train)} train, "
                             f"{len(valid)} valid (need at least 2 each)")
        self._resume()
        cfg = self.config
        while self.epoch < cfg.max_epochs and self.bad_epochs < cfg.patience:
            torch.manual_seed(cfg.seed * 100_003 + self.epoch)
            self.model.train()
            start = time.time()
            losses = []
            loader = self._loader(train, self.epoch, cfg.batches_per_epoch)
            bar = tqdm(loader, desc=f"epoch {self.epoch + 1}", leave=False,
                       disable=not cfg.progress)
            for batch in bar:
                self.optimizer.zero_grad(set_to_none=True)
                loss = self._forward(batch)
                loss.backward()
                self.optimizer.step()
                losses.append(loss.item())
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            valid_loss = self.validate(valid)
            self.epoch += 1
            record = {"epoch": self.epoch, "train_loss": sum(losses) / max(len(losses), 1),
                      "valid_loss": valid_loss, "seconds": round(time.time() - start, 3)}
            self.history.append(record)
            improved = valid_loss < self.best_loss
            if improved:
                self.best_loss, self.bad_epochs = valid_loss, 0
                _save_atomic({"model": self.model.state_dict(), "epoch": self.epoch,
                              "signature": self.signature}, self.folder / "best.pt")
            else:
                self.bad_epochs += 1
            self._checkpoint()
            history = self.folder / "history.jsonl"
            history.with_suffix(".tmp").write_text(
                "".join(json.dumps(r) + "\n" for r in self.history))
            os.replace(history.with_suffix(".tmp"), history)
            logger.info("epoch %d: train %.4f valid %.4f%s", self.epoch, record["train_loss"],
                        valid_loss, " (best)" if improved else "")
        self.load_best()
        return self.history

    def _checkpoint(self) -> None:
        _save_atomic({
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "loss": self.loss.state_dict(), "epoch": self.epoch, "history": self.history,
            "best_loss": self.best_loss, "bad_epochs": self.bad_epochs,
            "signature": self.signature,
        }, self.checkpoint_path)

    def _resume(self) -> None:
        if not self.checkpoint_path.exists():
            return
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        if state.get("signature") != self.signature:
            raise CheckpointError(
                f"{self.checkpoint_path} was written by a run with config signature "
                f"{state.get('signature')}, not {self.signature}: use another output folder or "
                "delete it")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.loss.load_state_dict(state["loss"])
        self.epoch, self.history = state["epoch"], state["history"]
        self.best_loss, self.bad_epochs = state["best_loss"], state["bad_epochs"]
        logger.info("Resumed %s at epoch %d", self.folder, self.epoch)

    def load_best(self) -> None:
        """Load the weights of the best epoch (lowest validation loss)."""
        best = self.folder / "best.pt"
        if best.exists():
            state = torch.load(best, map_location=self.device, weights_only=False)
            self.model.load_state_dict(state["model"])
