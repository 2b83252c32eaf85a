"""The whole method end to end on the tiny simulated study, and its bad-input behaviour."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from braindecode_speech.cli import main
from braindecode_speech.config import ConfigError
from braindecode_speech.data.study import StudyError
from braindecode_speech.experiments import (
    ExperimentConfig,
    analysis,
    evaluate_run,
    prepare_data,
    run_experiment,
    split_study,
)
from braindecode_speech.experiments.presets import tiny_config


@pytest.fixture(scope="module")
def tiny_run(tiny_meg_root, tmp_path_factory):
    """A tiny experiment trained once for this module."""
    folder = tmp_path_factory.mktemp("run")
    config = tiny_config(tiny_meg_root, cache_dir=folder / "cache")
    config = config.with_overrides({"optim.max_epochs": 4, "optim.batches_per_epoch": 12})
    result = run_experiment(config, folder / "run")
    return config, folder / "run", result


@pytest.mark.slow
def test_tiny_experiment_beats_chance(tiny_run):
    config, folder, _ = tiny_run
    report = json.loads((folder / "report.json").read_text())
    assert report["n_candidates"] > 20
    model = report["metrics"]["model"]["segment"]
    chance = report["chance"]["model"]["segment"]["top10"]
    assert chance == pytest.approx(10 / report["n_candidates"])
    assert model["top10"] > 1.5 * chance
    assert 0 <= report["metrics"]["ridge"]["segment"]["top10"] <= 1
    assert report["split_audit"]["ok"] is True
    for name in ("config.yaml", "history.jsonl", "checkpoint.pt", "best.pt", "per_subject.csv",
                 "skipped.csv", "table.txt"):
        assert (folder / name).exists(), name
    assert ExperimentConfig.from_yaml(folder / "config.yaml").signature() == config.signature()
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    assert len(history) == 4


@pytest.mark.slow
def test_rerun_resumes_and_evaluate_reproduces(tiny_run):
    config, folder, result = tiny_run
    before = json.loads((folder / "report.json").read_text())
    again = run_experiment(config, folder)  # finished: nothing to train, same evaluation
    assert again["table"] == result["table"]
    evaluate_run(folder)
    after = json.loads((folder / "report.json").read_text())
    assert after["metrics"] == before["metrics"]


@pytest.mark.slow
def test_predictions_are_written_only_on_request(tiny_run):
    """By default a run keeps per-window results only; with evaluation.save_predictions the
    decoded windows and candidates are written, and scoring them as stored gives the ranks and
    metrics that were computed batch by batch as the model produced them."""
    from braindecode_speech.evaluation.retrieval import RetrievalEvaluator

    config, folder, _ = tiny_run
    assert not list(folder.glob("predictions*.npy")) and not (folder / "candidates.npy").exists()
    streamed = json.loads((folder / "report.json").read_text())
    per_window = pd.read_csv(folder / "per_window_model.csv", keep_default_na=False)
    saving = config.with_overrides({"evaluation.save_predictions": True})
    assert saving.signature() == config.signature()
    run_experiment(saving, folder)  # finished: evaluates again, writing the predictions
    names = {p.name for p in folder.glob("*.npy")}
    assert names == {"predictions.npy", "predictions_ridge.npy", "predictions_surrogate.npy",
                     "candidates.npy"}
    stored = json.loads((folder / "report.json").read_text())
    assert stored["metrics"] == streamed["metrics"] and stored["ci"] == streamed["ci"]
    assert stored["controls"] == streamed["controls"]
    predictions = np.load(folder / "predictions.npy")
    candidates = np.load(folder / "candidates.npy")
    assert predictions.shape[0] == len(per_window) and candidates.shape[1:] == \
        predictions.shape[1:]
    words = per_window.groupby("target").head(1).sort_values("target")["target_word"]
    dense = RetrievalEvaluator(config.evaluation).evaluate(
        predictions, candidates, per_window["target"].to_numpy(), [str(w) for w in words],
        per_window[["subject", "recording_uid"]])
    for column in ("segment_rank", "word_rank", "best_1", "best_5", "within_recording_rank"):
        np.testing.assert_array_equal(dense.per_window[column], per_window[column])
    # with the stored predictions, the analyses list more candidates than the run kept
    run = analysis.load_run(folder)
    rows = np.arange(min(len(per_window), 30))
    best = analysis.retrieve(run, rows, k=8)
    np.testing.assert_array_equal(best[:, :5], per_window.loc[rows, [f"best_{j}"
                                                                      for j in range(1, 6)]])


def test_windows_and_splits_of_the_tiny_study(tiny_meg_root, tmp_path):
    config = tiny_config(tiny_meg_root, cache_dir=tmp_path / "cache")
    data = prepare_data(config)
    windows = data.windows
    assert set(windows["split"]) == {"train", "valid", "test"}
    assert data.audit["ok"]
    test = windows[windows["split"] == "test"]
    assert test["segment"].notna().all() and windows.loc[windows["split"] == "train",
                                                         "segment"].isna().all()
    # identical sentences get the same split in every subject
    per_sentence = test.groupby("sequence_id")["subject"].nunique()
    assert per_sentence.max() >= 1
    item = data.datasets["train"][0]
    assert item["brain"].shape == (data.datasets["train"].n_channels, 360)
    assert item["speech"].shape == (data.n_features, 360)
    assert float(item["brain"].abs().max()) <= config.norm.clamp
    # robust scaling: the scaled training windows have median ~0 and IQR ~1 per channel
    train = data.datasets["train"]
    x = np.stack([train[i]["brain"].numpy() for i in range(0, len(train), 2)])
    n_real = int(item["mask"].sum())
    q25, q75 = np.percentile(x[:, :n_real], [25, 75], axis=(0, 2))
    assert np.median(q75 - q25) == pytest.approx(1.0, abs=0.3)


def test_check_splits_command(tiny_meg_root, tmp_path, capsys):
    code = main(["check-splits", "--study", "simulated", "--data", str(tiny_meg_root),
                 "--json", str(tmp_path / "audit.json")])
    out = capsys.readouterr().out
    assert code == 0 and "OK: no leak between splits" in out
    audit = json.loads((tmp_path / "audit.json").read_text())
    assert audit["train_test"]["n_shared_sentences"] == 0
    moved = audit["moved_blocks"]
    assert f"{moved['count']} blocks ({moved['fraction']:.1%}) moved away" in out


def test_bad_inputs_are_clear_errors(tiny_meg_root, tmp_path):
    base = tiny_config(tiny_meg_root, cache_dir=tmp_path / "cache")
    with pytest.raises(ConfigError, match="optim.lr"):
        ExperimentConfig.from_dict({"optim": {"lr": "fast"}}, source="exp.yaml")
    with pytest.raises(ConfigError, match="Unknown config key 'optim.learning_rate'"):
        base.with_overrides({"optim.learning_rate": 1.0})
    with pytest.raises(StudyError, match="no test window after splitting"):
        prepare_data(base.with_overrides({"splits.test_ratio": 0.0}))
    with pytest.raises(ConfigError, match=r"Unknown config key 'features\.sfreq'.*"
                                          "known keys here: name, wav2vec2, mel"):
        base.with_overrides({"features.sfreq": 100.0})  # features follow preprocess.sfreq
    with pytest.raises(ConfigError, match="study.root is not set"):
        split_study(ExperimentConfig())


def test_unusable_recordings_are_skipped_and_listed(tiny_meg_root, tmp_path):
    """A recording with NaNs (on_error=skip) and one too short for any window are left out,
    each listed with its reason; the others are used."""
    import shutil

    import mne

    root = tmp_path / "study"
    shutil.copytree(tiny_meg_root, root)
    fifs = sorted(root.glob("sub-*/ses-*/meg/*_meg.fif"))
    nan_fif, short_fif = fifs[0], fifs[1]
    raw = mne.io.read_raw_fif(nan_fif, preload=True, verbose=False)
    raw._data[0, 100] = np.nan
    raw.save(nan_fif, overwrite=True, verbose=False)
    raw = mne.io.read_raw_fif(short_fif, preload=True, verbose=False)
    raw.crop(tmax=2.0).save(short_fif, overwrite=True, verbose=False)
    events_tsv = Path(str(short_fif).replace("_meg.fif", "_events.tsv"))
    events = pd.read_csv(events_tsv, sep="\t")
    events[events["onset"] < 1.0].to_csv(events_tsv, sep="\t", index=False, na_rep="n/a")

    config = tiny_config(root, cache_dir=tmp_path / "cache")
    # the header check of every recording comes before any preprocessing
    with pytest.raises(ConfigError, match="a window needs 3.15 s"):
        prepare_data(config)
    data = prepare_data(config.with_overrides({"study.on_error": "skip"}))
    skipped = {item["item"]: item["reason"] for item in data.skipped}
    assert len(skipped) == 2
    reasons = " ".join(skipped.values())
    assert str(nan_fif) in reasons and "NaN" in reasons
    assert f"a window needs 3.15 s of brain signal but {short_fif} lasts 2 s" in reasons
    assert len(data.recordings) == len(fifs) - 2
