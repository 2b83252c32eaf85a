"""Files written atomically get the mode the umask gives new files, not tempfile's 0600/0700."""

import os
import stat

import numpy as np
import pandas as pd
import pytest
from torch import nn

from braindecode_speech.data.cache import ArrayCache
from braindecode_speech.evaluation.report import write_report
from braindecode_speech.evaluation.retrieval import EvaluationConfig, RetrievalEvaluator
from braindecode_speech.fileio import apply_umask, atomic_npy, umask
from braindecode_speech.simulation.writer import _write_json_atomic
from braindecode_speech.training.trainer import OptimConfig, Trainer


@pytest.fixture(params=[0o022, 0o002, 0o077])
def process_umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def _results():
    rng = np.random.default_rng(0)
    candidates = rng.standard_normal((6, 4, 10)).astype(np.float32)
    targets = np.arange(6) % 6
    windows = pd.DataFrame({"subject": ["s0", "s1"] * 3})
    evaluator = RetrievalEvaluator(EvaluationConfig(n_bootstrap=10))
    return {"model": evaluator.evaluate(candidates[targets], candidates, targets,
                                        list("abcdef"), windows)}


def test_umask_is_read_without_changing_it(process_umask):
    assert umask() == process_umask
    assert umask() == process_umask


def test_report_files_and_figures_follow_the_umask(tmp_path, process_umask):
    path = write_report(tmp_path, _results())
    written = [path, tmp_path / "per_subject.csv", tmp_path / "per_window_model.csv",
               tmp_path / "accuracy_per_subject.png"]
    for file in written:
        assert _mode(file) == 0o666 & ~process_umask, file
    if process_umask == 0o022:
        assert _mode(path) == 0o644


def test_run_folder_and_cache_entries_follow_the_umask(tmp_path, process_umask):
    trainer = Trainer(nn.Conv1d(2, 2, 1), nn.MSELoss(), OptimConfig(progress=False),
                      tmp_path / "run", "sig")
    trainer.history = [{"epoch": 1, "train_loss": 1.0, "valid_loss": 1.0, "seconds": 0.1}]
    trainer._write_epoch(improved=True)
    for name in ("checkpoint.pt", "best.pt", "history.jsonl"):
        assert _mode(tmp_path / "run" / name) == 0o666 & ~process_umask, name
    cache = ArrayCache(tmp_path / "cache", "x")
    cache.get_or_create("k", lambda folder: np.save(folder / "data.npy", np.ones(3)) or {})
    assert _mode(cache.path("k")) == 0o777 & ~process_umask
    for name in ("data.npy", "meta.json"):
        assert _mode(cache.path("k") / name) == 0o666 & ~process_umask, name
    _write_json_atomic(tmp_path / "study" / "complete.json", {"a": 1})
    assert _mode(tmp_path / "study" / "complete.json") == 0o666 & ~process_umask


def test_apply_umask_on_a_private_temporary_file(tmp_path):
    previous = os.umask(0o022)
    try:
        path = tmp_path / "f"
        path.write_text("x")
        os.chmod(path, 0o600)
        apply_umask(path)
        assert _mode(path) == 0o644
    finally:
        os.umask(previous)


def test_atomic_npy_writes_whole_arrays_or_nothing(tmp_path, process_umask):
    """The array appears whole (with the umask's mode) on success; on an error, or a generator
    closed while writing, neither it nor a temporary file is left."""
    path = tmp_path / "x.npy"
    with atomic_npy(path, (3, 4)) as out:
        out[:] = np.arange(12).reshape(3, 4)
        assert not path.exists()  # nothing visible before the end
    np.testing.assert_array_equal(np.load(path, mmap_mode="r"), np.arange(12).reshape(3, 4))
    assert np.load(path).dtype == np.float32
    assert _mode(path) == 0o666 & ~process_umask

    with pytest.raises(RuntimeError, match="half way"), atomic_npy(path, (5,)) as out:
        out[:2] = 7
        raise RuntimeError("half way")
    assert np.load(path).shape == (3, 4)  # the previous file is untouched

    def batches():
        with atomic_npy(tmp_path / "g.npy", (4,)) as out:
            for i in range(4):
                out[i] = i
                yield i

    stream = batches()
    next(stream)
    stream.close()  # abandoned half way
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
