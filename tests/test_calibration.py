"""A new subject in minutes (issue 14, part 2): calibrate a model folder's subject layer to a
subject held out of training, on the first minutes of its training blocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from braindecode_speech.cli import EXIT_INPUT_ERROR, main
from braindecode_speech.experiments.grid import load_grid, resolve_runs
from braindecode_speech.experiments.prepare import prepare_data, window_table
from braindecode_speech.experiments.presets import tiny_config
from braindecode_speech.experiments.run import run_experiment
from braindecode_speech.sharing import (
    BrainDecoder,
    SharingError,
    calibrate,
    calibration,
    export_run,
)
from braindecode_speech.sharing.calibration import (
    calibration_curve,
    plot_calibration_curve,
    subject_data,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def held_out(tiny_meg_root, tmp_path_factory):
    """A tiny run trained without subject 02 (splits.holdout_subjects), exported once."""
    folder = tmp_path_factory.mktemp("calibration")
    config = tiny_config(tiny_meg_root, cache_dir=folder / "cache").with_overrides(
        {"ridge.enabled": False, "evaluation.controls": False, "splits.holdout_subjects": ["02"]})
    run_experiment(config, folder / "run")
    export_run(folder / "run", folder / "model")
    return {"config": config, "model": folder / "model", "cache": folder / "cache",
            "root": tiny_meg_root}


@pytest.fixture(autouse=True)
def _cache(held_out, monkeypatch):
    monkeypatch.setenv("BRAINDECODE_SPEECH_CACHE", str(held_out["cache"]))


@pytest.fixture(scope="module")
def decoder(held_out):
    return BrainDecoder.from_pretrained(held_out["model"])


def test_holdout_subjects_keep_the_splits_of_the_whole_study(held_out):
    config = held_out["config"]
    data = prepare_data(config)
    whole = prepare_data(config.with_overrides({"splits.holdout_subjects": []}))
    assert data.subjects == ["01"] and whole.subjects == ["01", "02"]
    assert set(data.windows["subject"]) == {"01"}
    assert {s["item"] for s in data.skipped} >= {r.uid for r in whole.recordings
                                                 if r.subject == "02"}
    columns = ["recording_uid", "anchor", "split"]
    ours = whole.windows[whole.windows["subject"] == "01"][columns].reset_index(drop=True)
    assert ours.equals(data.windows[columns].reset_index(drop=True))
    with pytest.raises(Exception, match="splits.holdout_subjects: no recording of subject"):
        prepare_data(config.with_overrides({"splits.holdout_subjects": ["07"]}))


def test_minutes_select_the_first_minutes_of_the_training_blocks(decoder, held_out):
    data = subject_data(decoder, held_out["root"], "simulated", "02")
    train = data.rows[data.rows["split"] == "train"]
    assert np.isfinite(train["train_time"]).all()
    assert data.rows.loc[data.rows["split"] != "train", "train_time"].isna().all()
    first = data.calibration_rows(0.25)
    assert 0 < len(first) < len(train)
    assert first["train_time"].max() <= 15 + 1e-9
    # the first minutes: every training window ending earlier is in, and they come first in
    # the recordings' order and in time
    assert set(first.index) == set(train.index[train["train_time"] <= 15 + 1e-9])
    order = train.sort_values(["recording", "anchor"])
    assert list(order.index[:len(first)]) == sorted(first.index, key=list(order.index).index)
    assert len(data.calibration_rows(None)) == len(train)
    block = data.train_blocks.iloc[0]
    assert train["train_time"].min() <= block["duration"]
    for bad in (0, -1):
        with pytest.raises(SharingError, match="minutes must be positive"):
            data.calibration_rows(bad)
    with pytest.raises(SharingError, match="hold no complete window"):
        data.calibration_rows(0.001)


def test_a_subject_without_training_data_is_refused(decoder, held_out, monkeypatch):
    with pytest.raises(SharingError, match="no recording of subject '09'"):
        subject_data(decoder, held_out["root"], "simulated", "09")
    with pytest.raises(SharingError, match="one of the model's training subjects"):
        calibrate(decoder, held_out["root"], "simulated", "01", 1.0)

    def no_training_blocks_for_02(*args, **kwargs):  # all of 02's blocks valid or test
        table = window_table(*args, **kwargs)
        rows = (table.windows["subject"] == "02") & (table.windows["split"] == "train")
        table.windows.loc[rows, "split"] = "valid"
        return table

    monkeypatch.setattr(calibration, "window_table", no_training_blocks_for_02)
    with pytest.raises(SharingError, match="subject 02 has no training window"):
        subject_data(decoder, held_out["root"], "simulated", "02")


def test_only_the_new_subject_layer_changes_and_the_loss_falls(decoder, held_out):
    calibrated, result = calibrate(decoder, held_out["root"], "simulated", "02", 0.5, steps=20)
    before, after = decoder.encoder.state_dict(), calibrated.encoder.state_dict()
    assert set(before) == set(after)
    for key in before:
        if key == "subject_layers.weight":
            old, new = before[key], after[key]
            assert new.shape == (2, *old.shape[1:])
            assert torch.equal(new[0], old[0])  # the training subject's layer, bit-identical
            assert not torch.allclose(new[1], old.mean(0))  # the new one moved from the mean
        else:
            assert torch.equal(before[key], after[key]), key
    assert result.loss_after < result.loss_before
    assert result.n_windows > 0 and 0 < result.seconds <= 30
    assert calibrated.subjects == ["01", "02"]
    assert result.after["n_windows"] == result.before["n_windows"] > 0
    assert result.after["n_candidates"] == result.before["n_candidates"]


def test_spatial_flag_also_fits_the_spatial_attention(decoder, held_out):
    calibrated, _ = calibrate(decoder, held_out["root"], "simulated", "02", 0.5, steps=3,
                              spatial=True)
    before, after = decoder.encoder.state_dict(), calibrated.encoder.state_dict()
    assert not torch.equal(before["merger.weight"], after["merger.weight"])
    assert torch.equal(before["final.0.weight"], after["final.0.weight"])


def test_cli_calibrate_writes_a_folder_that_loads(held_out, tmp_path, capsys):
    out = tmp_path / "calibrated"
    code = main(["calibrate", "--model", str(held_out["model"]), "--data",
                 str(held_out["root"]), "--study", "simulated", "--subject", "02",
                 "--minutes", "0.5", "--steps", "5", "--out", str(out)])
    assert code == 0
    assert "segment top-10" in capsys.readouterr().out
    loaded = BrainDecoder.from_pretrained(out)
    assert loaded.subjects == ["01", "02"]
    assert {lay.subject for lay in loaded.layouts} == {"01", "02"}
    summary = json.loads((out / "calibration.json").read_text())
    assert summary["subject"] == "02" and summary["minutes"] == 0.5 and summary["steps"] == 5
    assert loaded.metadata["calibration"][0]["after.segment.top10"] == \
        summary["after.segment.top10"]
    card = (out / "README.md").read_text()
    assert "Training subjects (1): 01;" in card and "Calibrated subject 02" in card
    # the subject now decodes through its own layer and its calibrated scalers
    table = loaded.decode_study(held_out["root"], "simulated", "02",
                                loaded.study_candidates(held_out["root"]))
    assert len(table) and table["rank"].notna().any()
    code = main(["calibrate", "--model", str(held_out["model"]), "--data",
                 str(held_out["root"]), "--study", "simulated", "--subject", "02",
                 "--minutes", "0", "--out", str(tmp_path / "zero")])
    assert code == EXIT_INPUT_ERROR
    assert "minutes must be positive" in capsys.readouterr().err


def test_calibration_curve_and_its_figure(decoder, held_out, tmp_path):
    curve = calibration_curve(decoder, held_out["root"], "simulated", "02", minutes=(0, 0.5),
                              steps=3, scratch_steps=2)
    assert list(curve["method"]) == ["calibrated", "calibrated", "scratch"]
    assert curve.loc[0, "n_windows"] == 0 and curve.loc[1, "n_windows"] > 0
    assert curve["n_test_windows"].nunique() == 1
    assert curve["segment.top10"].between(0, 1).all()
    figure = plot_calibration_curve(curve, reference={"02": 0.5}, chance=0.1, target=0.8)
    absolute, relative = figure.axes
    line = relative.lines[0]   # the calibrated curve as a fraction of "part of training"
    assert line.get_ydata() == pytest.approx(list(100 * curve["segment.top10"][:2] / 0.5))
    assert [100.0, 80.0] == [h.get_ydata()[0] for h in relative.lines[-2:]]
    assert len(plot_calibration_curve(curve).axes) == 1
    figure.savefig(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_the_calibration_grid_resolves(tmp_path):
    grid = load_grid(REPO / "grids" / "calibration.py")
    runs = resolve_runs(grid, tmp_path, "/data/sim")
    held = [r.config.splits.holdout_subjects for r in runs]
    assert [] in held and ["01"] in held and len(runs) == 6


def test_holdout_subjects_change_the_signature_only_when_set():
    """Configs without held-out subjects keep the signature they had before the option."""
    config = tiny_config("/data")
    assert "holdout_subjects" not in config.splits.signature_dict()
    held = config.with_overrides({"splits.holdout_subjects": ["02"]})
    assert held.splits.signature_dict()["holdout_subjects"] == ["02"]
    assert held.signature() != config.signature()
