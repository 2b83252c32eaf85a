"""Run folders are data, not code: crafted or damaged checkpoints are refused, naming the file.

A checkpoint holding a pickled object whose ``__reduce__`` opens (creates) a marker file stands
for any code an attacker could run: the marker must never appear.
"""

from pathlib import Path

import pytest
import torch
from torch import nn

from braindecode_speech.cli import main
from braindecode_speech.experiments import load_weights
from braindecode_speech.experiments.presets import tiny_config
from braindecode_speech.training.trainer import (
    CHECKPOINT_KEYS,
    CheckpointError,
    OptimConfig,
    Trainer,
    load_checkpoint,
)


class Payload:
    """Unpickling this object creates the file ``marker`` (as any code could be run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _payload_checkpoint(path: Path, marker: Path, signature: str = "sig") -> None:
    torch.save({"model": {"w": torch.zeros(2)}, "signature": signature, "epoch": 1,
                "extra": Payload(marker)}, path)


def _truncated_checkpoint(path: Path) -> None:
    torch.save({"model": {"w": torch.zeros(1000)}, "signature": "sig", "epoch": 1}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _trainer(folder: Path, signature: str = "sig") -> Trainer:
    config = OptimConfig(batch_size=2, max_epochs=1, batches_per_epoch=1, progress=False)
    return Trainer(nn.Conv1d(2, 2, 1), nn.MSELoss(), config, folder, signature)


def _run_folder(root: Path, folder: Path) -> Path:
    """A run folder with a valid ``config.yaml`` (no data are read before ``best.pt``)."""
    folder.mkdir(parents=True)
    tiny_config(root, cache_dir=folder / "cache").to_yaml(folder / "config.yaml")
    return folder


def test_payload_in_best_pt_is_refused_without_running(tmp_path):
    marker = tmp_path / "marker"
    _payload_checkpoint(tmp_path / "best.pt", marker)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "best.pt")
    message = str(info.value)
    assert str(tmp_path / "best.pt") in message
    assert "refused" in message and "open" in message
    assert not marker.exists()


def test_payload_in_checkpoint_pt_is_refused_on_resume(tmp_path):
    marker = tmp_path / "marker"
    _payload_checkpoint(tmp_path / "checkpoint.pt", marker)
    trainer = _trainer(tmp_path)
    with pytest.raises(CheckpointError, match="refused") as info:
        trainer.fit([0, 1], [0, 1])  # the checkpoint is read before any window
    assert str(tmp_path / "checkpoint.pt") in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "text", "not_a_dict", "no_optimizer"])
def test_damaged_checkpoint_pt_is_a_clear_error_on_resume(tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    if damage == "truncated":
        _truncated_checkpoint(path)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "text":
        path.write_text("not a checkpoint\n")
    elif damage == "not_a_dict":
        torch.save([torch.zeros(2)], path)
    else:  # a best.pt copied over checkpoint.pt
        torch.save({"model": {}, "signature": "sig", "epoch": 1}, path)
    with pytest.raises(CheckpointError) as info:
        _trainer(tmp_path).fit([0, 1], [0, 1])
    message = str(info.value)
    assert message.startswith(str(path))
    expected = "not a checkpoint of this package" if damage in ("not_a_dict", "no_optimizer") \
        else "truncated or damaged"
    assert expected in message


def test_checkpoints_written_by_the_trainer_load_with_weights_only(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.history = [{"epoch": 1, "train_loss": 1.0, "valid_loss": 2.0, "seconds": 0.1}]
    trainer.epoch, trainer.best_loss = 1, 2.0
    trainer._write_epoch(improved=True)
    state = load_checkpoint(tmp_path / "checkpoint.pt", keys=CHECKPOINT_KEYS)
    assert state["history"] == trainer.history and state["epoch"] == 1
    assert load_checkpoint(tmp_path / "best.pt")["signature"] == "sig"
    resumed = _trainer(tmp_path)
    resumed._resume()
    assert resumed.epoch == 1 and resumed.history == trainer.history


def test_evaluate_refuses_a_payload_in_best_pt(tiny_meg_root, tmp_path, capsys):
    folder = _run_folder(tiny_meg_root, tmp_path / "run")
    marker = tmp_path / "marker"
    _payload_checkpoint(folder / "best.pt", marker)
    with pytest.raises(CheckpointError, match="refused"):
        load_weights(folder)
    code = main(["evaluate", "--run", str(folder)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(folder / "best.pt") in err and "refused" in err
    assert "Traceback" not in err
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_evaluate_on_a_damaged_or_missing_best_pt(tiny_meg_root, tmp_path, capsys, damage):
    folder = _run_folder(tiny_meg_root, tmp_path / "run")
    if damage == "truncated":
        _truncated_checkpoint(folder / "best.pt")
    code = main(["evaluate", "--run", str(folder)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(folder / "best.pt") in err
    assert ("truncated or damaged" if damage == "truncated" else "no trained model") in err
    assert "Traceback" not in err


def test_train_resuming_in_a_folder_with_a_payload_refuses_it(tiny_meg_root, tmp_path, capsys):
    folder = _run_folder(tiny_meg_root, tmp_path / "run")
    marker = tmp_path / "marker"
    config = tiny_config(tiny_meg_root, cache_dir=tmp_path / "cache")
    _payload_checkpoint(folder / "checkpoint.pt", marker, config.signature())
    code = main(["train", "--study", "simulated", "--data", str(tiny_meg_root), "--out",
                 str(folder), "--config", str(folder / "config.yaml"),
                 f"cache_dir={tmp_path / 'cache'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(folder / "checkpoint.pt") in err and "refused" in err
    assert "Traceback" not in err
    assert not marker.exists()
