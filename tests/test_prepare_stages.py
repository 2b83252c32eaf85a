"""The named stages of ``prepare_data``: each runs alone, and every check of the config against
the recordings runs before any recording is preprocessed."""

from __future__ import annotations

import numpy as np
import pytest

from braindecode_speech.config import ConfigError
from braindecode_speech.experiments import prepare
from braindecode_speech.experiments.presets import tiny_config


@pytest.fixture()
def no_preprocessing(monkeypatch):
    """Count the recordings preprocessed (none should be, when a check fails)."""
    calls: list[str] = []
    real = prepare.preprocess

    def counting(rec, *args, **kwargs):
        calls.append(rec.uid)
        return real(rec, *args, **kwargs)

    monkeypatch.setattr(prepare, "preprocess", counting)
    return calls


@pytest.mark.parametrize("overrides, message", [
    ({"windows.tmax": 1000.0}, "a window needs 1000.65 s of brain signal"),
    ({"preprocess.lowpass": 150.0}, "preprocess.lowpass=150 Hz is not below the Nyquist"),
])
def test_config_checks_run_before_any_preprocessing(tiny_meg_root, tmp_path, no_preprocessing,
                                                    overrides, message):
    config = tiny_config(tiny_meg_root, tmp_path / "cache").with_overrides(overrides)
    with pytest.raises(ConfigError, match=message):
        prepare.prepare_data(config)
    assert no_preprocessing == []


def test_a_failed_check_is_listed_with_on_error_skip(tiny_meg_root, tmp_path, no_preprocessing):
    config = tiny_config(tiny_meg_root, tmp_path / "cache").with_overrides(
        {"preprocess.lowpass": 150.0, "study.on_error": "skip"})
    with pytest.raises(Exception, match="(?s)no usable recording.*Nyquist"):
        prepare.check_recordings(config, prepare.open_study(config))
    assert no_preprocessing == []


def test_stages_compose_to_prepare_data(tiny_meg_root, tmp_path):
    config = tiny_config(tiny_meg_root, tmp_path / "cache")
    recordings, skipped = prepare.check_recordings(config, prepare.open_study(config))
    assert skipped == [] and len(recordings) == 4  # 2 subjects x 2 stories
    prepared = prepare.preprocess_recordings(config, recordings, tmp_path / "cache", skipped)
    blocks = prepare.split_blocks([(r.uid, r.events, r.duration) for r in prepared],
                                  config.splits)
    assert set(blocks.blocks) == {r.uid for r in prepared}
    assert blocks.audit["ok"]
    features = config.features.build(config.preprocess.sfreq)
    table = prepare.window_table(config, prepared, blocks, features, tmp_path / "cache", skipped)
    assert set(table.windows["split"]) == {"train", "valid", "test"}
    # every window's block holds its speech window
    n_times = config.windows.n_times(config.preprocess.sfreq)
    stops = table.windows["speech_start"] + n_times
    sizes = np.array([len(a) for a in table.block_features])[table.windows["block"]]
    assert (stops <= sizes).all()
    scalers = prepare.fit_scalers(config, table)
    assert len(scalers.brain) == len(table.recordings) and scalers.speech is not None
    datasets = prepare.build_datasets(config, table, scalers)

    whole = prepare.prepare_data(config)
    assert whole.windows.equals(table.windows)
    for split, dataset in datasets.items():
        assert len(dataset) == len(whole.datasets[split])
        for i in (0, len(dataset) - 1):
            for key in ("brain", "speech"):
                assert np.array_equal(dataset[i][key], whole.datasets[split][i][key])
