"""Expected input errors end in one clear message and a non-zero exit, no traceback (issue 11,
class 6): unknown study, missing data folder, window longer than the recordings, NaN in the raw
data, ``evaluate`` on a folder without a usable ``best.pt``... The traceback is shown under
``-vv``; unexpected exceptions keep theirs."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mne
import numpy as np
import pytest

from braindecode_speech.cli import EXIT_INPUT_ERROR, EXPECTED_ERRORS, main
from braindecode_speech.cli import evaluate as evaluate_command
from braindecode_speech.experiments.presets import tiny_config


def _run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """Run the CLI in-process; (exit code, stderr), asserting a one-line-per-problem error
    message and no traceback."""
    code = main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("error: ") or "\nerror: " in err
    return code, err


def test_unknown_study_lists_the_known_names(tmp_path, capsys):
    code, err = _run(capsys, "plot-evoked", "--study", "mous", "--data", str(tmp_path),
                     "--out", str(tmp_path / "evoked.png"))
    assert code == EXIT_INPUT_ERROR
    assert "Unknown study 'mous'" in err and "schoffelen2019" in err and "gwilliams2022" in err


@pytest.mark.parametrize("study, expected", [
    ("bids", "study folder of 'bids' does not exist"),
    ("simulated", "not a complete simulated study"),
    ("gwilliams2022", "does not exist"),
])
def test_missing_data_folder_is_named_and_leaves_no_run_folder(tmp_path, capsys, study,
                                                               expected):
    data, out = tmp_path / "no such folder", tmp_path / "run"
    code, err = _run(capsys, "train", "--study", study, "--data", str(data), "--out", str(out))
    assert code == EXIT_INPUT_ERROR
    assert str(data) in err and expected in err
    assert not out.exists()


def test_unknown_adapter_option_is_named(tmp_path, capsys):
    code, err = _run(capsys, "check-splits", "--study", "bids", "--data", str(tmp_path),
                     "study.options={colour: red}")
    assert code == EXIT_INPUT_ERROR
    assert "study 'bids' takes no option 'colour'" in err and "its options:" in err


@pytest.mark.parametrize("option, exit_code, expected", [
    ("colour=red", 1, "study 'brennan2019' takes no option 'colour'; its options: subjects"),
    ("selection=[all", EXIT_INPUT_ERROR, "--option 'selection=[all': the value is not valid"),
    ("selection", EXIT_INPUT_ERROR, "--option 'selection' is not of the form KEY=VALUE"),
])
def test_check_names_a_bad_adapter_option(example_layouts, capsys, option, exit_code,
                                          expected):
    """An unknown option is a problem found (listed, exit 1); a malformed one is refused."""
    root = example_layouts("brennan2019")
    code = main(["check", "--study", "brennan2019", "--data", str(root), "--no-signal",
                 "--option", option])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert code == exit_code
    assert expected in captured.out + captured.err


def test_window_longer_than_the_recordings_is_refused_before_preprocessing(
        tiny_meg_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    code, err = _run(capsys, "train", "--study", "simulated", "--data", str(tiny_meg_root),
                     "--out", str(tmp_path / "run"), f"cache_dir={cache}", "features.name=mel",
                     "windows.tmax=100")
    assert code == EXIT_INPUT_ERROR
    assert "windows.tmax=100" in err and "a window needs 100.65 s" in err
    assert "sub-01_ses-0_task-0_meg.fif lasts" in err
    assert not cache.exists() or not any(cache.rglob("*.npy")), "preprocessed before refusing"


def test_nan_in_the_raw_data_names_the_file(tiny_meg_root, tmp_path, capsys):
    root = Path(shutil.copytree(tiny_meg_root, tmp_path / "study"))
    fif = root / "sub-01" / "ses-0" / "meg" / "sub-01_ses-0_task-0_meg.fif"
    raw = mne.io.read_raw_fif(fif, preload=True, verbose=False)
    raw._data[mne.pick_types(raw.info, meg=True)[3], 500] = np.nan
    raw.save(fif, overwrite=True, verbose=False)
    code, err = _run(capsys, "train", "--study", "simulated", "--data", str(root),
                     "--out", str(tmp_path / "run"), f"cache_dir={tmp_path / 'cache'}",
                     "features.name=mel", "study.subjects=['01']")
    assert code == EXIT_INPUT_ERROR
    assert str(fif) in err and "NaN" in err


def _run_folder(tmp_path: Path, root: Path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    tiny_config(root, cache_dir=tmp_path / "cache").to_yaml(folder / "config.yaml")
    return folder


def test_evaluate_without_a_run_folder_or_its_config(tmp_path, capsys):
    code, err = _run(capsys, "evaluate", "--run", str(tmp_path / "missing"))
    assert code == EXIT_INPUT_ERROR and f"{tmp_path / 'missing' / 'config.yaml'}" in err
    (tmp_path / "empty").mkdir()
    code, err = _run(capsys, "evaluate", "--run", str(tmp_path / "empty"))
    assert code == EXIT_INPUT_ERROR and "config.yaml: no such config file" in err


def test_evaluate_without_best_checkpoint(tmp_path, tiny_meg_root, capsys):
    folder = _run_folder(tmp_path, tiny_meg_root)
    code, err = _run(capsys, "evaluate", "--run", str(folder))
    assert code == EXIT_INPUT_ERROR and str(folder / "best.pt") in err


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip"])
def test_evaluate_with_truncated_best_checkpoint(tmp_path, tiny_meg_root, capsys, content):
    folder = _run_folder(tmp_path, tiny_meg_root)
    (folder / "best.pt").write_bytes(content)
    code, err = _run(capsys, "evaluate", "--run", str(folder))
    assert code == EXIT_INPUT_ERROR and str(folder / "best.pt") in err


def test_evaluate_with_a_damaged_config(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text("optim:\n  lr: 0.1\n\tbatch_size: 3\n")
    code, err = _run(capsys, "evaluate", "--run", str(folder))
    assert code == EXIT_INPUT_ERROR
    assert f"{folder / 'config.yaml'}: not valid YAML (line 3" in err


def test_missing_grid_file(tmp_path, capsys):
    code, err = _run(capsys, "grid", "status", str(tmp_path / "grid.py"))
    assert code == EXIT_INPUT_ERROR and f"{tmp_path / 'grid.py'}: no such grid file" in err


def test_grid_data_folders_that_contradict_each_other(tmp_path, capsys):
    grid = Path(__file__).parents[1] / "grids" / "simulated.py"
    code, err = _run(capsys, "grid", "run", str(grid), "--root", str(tmp_path), "--dry-run",
                     "--data", str(tmp_path / "a"), "--data", str(tmp_path / "b"))
    assert code == EXIT_INPUT_ERROR and "give either one folder of studies" in err


def test_traceback_only_under_vv(tmp_path, capsys):
    args = ["train", "--study", "bids", "--data", str(tmp_path / "missing")]
    assert main(["-vv", *args]) == EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "StudyError" in err
    assert err.rstrip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("item", EXPECTED_ERRORS)
def test_expected_error_types_exist(item):
    """Each listed type can be found (a renamed class would silently lose its message)."""
    module_name, name = item.split(":")
    assert issubclass(getattr(importlib.import_module(module_name), name), Exception)


def test_unexpected_errors_keep_their_traceback(monkeypatch, tmp_path):
    def broken(args):
        raise ZeroDivisionError("a bug, not bad input")

    monkeypatch.setattr(evaluate_command, "run", broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["evaluate", "--run", str(tmp_path)])


def test_real_entry_point_exits_2_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "braindecode_speech", "train", "--study", "simulated",
         "--data", str(tmp_path), "--out", str(tmp_path / "run"), "optim.batch_size=0"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == EXIT_INPUT_ERROR
    assert done.stderr.startswith("error: Invalid ExperimentConfig in overrides:")
    assert "optim.batch_size: Input should be greater than or equal to 1 (got 0)" in done.stderr
    assert "Traceback" not in done.stderr
