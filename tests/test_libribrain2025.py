"""LibriBrain adapter on the example layout: HDF5 recordings read lazily, word and phoneme events
in the common schema, the official validation and test runs fixed, the missing audio named,
bad HDF5 files named, and the Hugging Face download (mocked: no network)."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from fixtures import copy_layout, truncate

from braindecode_speech.cli import main
from braindecode_speech.data.preprocessing import sensor_positions_2d
from braindecode_speech.data.splits import SplitConfig
from braindecode_speech.data.studies import download as download_module
from braindecode_speech.data.studies import get
from braindecode_speech.data.studies.check import check
from braindecode_speech.data.studies.libribrain2025 import PROCESSING
from braindecode_speech.data.study import StudyError
from braindecode_speech.experiments import study_blocks
from braindecode_speech.experiments.presets import tiny_config
from braindecode_speech.simulation.layouts import write_example_layout
from braindecode_speech.simulation.layouts.libribrain2025 import AUDIO_LAG, RUNS


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_example_layout("libribrain2025", tmp_path_factory.mktemp("libribrain"),
                                n_subjects=1, n_sentences=2)


@pytest.fixture
def copy(root, tmp_path) -> Path:
    return copy_layout(root, tmp_path / "libribrain")


def _h5(root: Path, session: str = "1", task: str = "Sherlock1", run: str = "1") -> Path:
    return (root / task / "derivatives" / "serialised" /
            f"sub-0_ses-{session}_task-{task}_run-{run}_proc-{PROCESSING}_meg.h5")


def _tsv(root: Path, session: str = "1", task: str = "Sherlock1", run: str = "1") -> Path:
    return (root / task / "derivatives" / "events" /
            f"sub-0_ses-{session}_task-{task}_run-{run}_events.tsv")


def test_recordings_are_the_runs_and_read_lazily(root):
    recordings = get("libribrain2025", root).recordings()
    assert [(r.session, r.task, r.run) for r in recordings] == [
        ("1", "Sherlock1", "1"), ("2", "Sherlock1", "1"), ("11", "Sherlock1", "2"),
        ("12", "Sherlock1", "2"), ("1", "Sherlock2", "1")]
    assert {r.subject for r in recordings} == {"0"} and len(RUNS) == len(recordings)
    raw = recordings[0].raw()
    assert not raw.preload and raw.info["sfreq"] == 250.0 and len(raw.ch_names) == 306
    assert raw.ch_names[:3] == ["MEG0113", "MEG0112", "MEG0111"]
    types = raw.get_channel_types()
    assert types.count("grad") == 204 and types.count("mag") == 102
    with h5py.File(_h5(root), "r") as f:
        stored = np.asarray(f["data"][:, 100:350], dtype=np.float64)
    assert np.array_equal(raw.get_data(start=100, stop=350), stored)
    np.testing.assert_array_equal(raw.get_data(picks=[5, 2], start=100, stop=102),
                                  stored[[5, 2], :2])
    positions = sensor_positions_2d(raw.info)  # the MEGIN layout places all 306 channels
    assert positions.shape == (306, 2) and len(np.unique(positions, axis=0)) == 306


def test_events_follow_the_common_schema(root):
    rec = get("libribrain2025", root).recordings()[0]
    events = rec.events()
    table = pd.read_csv(_tsv(root), sep="\t")
    words, phonemes = events[events["kind"] == "word"], events[events["kind"] == "phoneme"]
    sounds = events[events["kind"] == "sound"]
    assert len(words) == (table["kind"] == "word").sum()
    # the sil phonemes of the pauses are left out, every other phoneme is kept
    real = table[(table["kind"] == "phoneme") & (table["segment"] != "sil")]
    assert (table["segment"] == "sil").any() and len(phonemes) == len(real)
    assert set(phonemes["phoneme"]) <= set(real["segment"])
    assert all("_" in p for p in phonemes["phoneme"])
    np.testing.assert_allclose(words["onset"], table.loc[table["kind"] == "word", "timemeg"])
    assert list(words["word"]) == list(table.loc[table["kind"] == "word", "segment"])
    # one sound: the run's wav, placed by timechapter (offset = the recording's lead)
    assert len(sounds) == 1 and sounds["onset"].iloc[0] == pytest.approx(AUDIO_LAG)
    assert Path(sounds["filepath"].iloc[0]).name == "ses-1_run-1.wav"
    np.testing.assert_allclose(words["offset"], table.loc[table["kind"] == "word", "timechapter"],
                               atol=1e-6)
    # two sentences, each with its own id and word positions from 0
    assert words["sequence_id"].nunique() == 2
    for _, sentence in words.groupby("sequence_id"):
        assert list(sentence["word_index"]) == list(range(len(sentence)))
    assert words["sequence_id"].iloc[0].startswith("1:Sherlock1:1:0:")
    assert set(events["fixed_split"]) == {"train"}


def test_official_validation_and_test_runs_are_fixed(root):
    blocks, audit = study_blocks(tiny_config(root, study="libribrain2025"))
    assert audit["ok"], audit
    split_of = {uid: set(table["split"]) for uid, table in blocks.items()}
    assert split_of["libribrain2025/sub-0/ses-11/task-Sherlock1/run-2"] == {"valid"}
    assert split_of["libribrain2025/sub-0/ses-12/task-Sherlock1/run-2"] == {"test"}
    others = [s for uid, s in split_of.items() if "run-2" not in uid]
    assert others and all(s == {"train"} for s in others)
    # without the study's splits, every block is drawn as in the paper
    assert SplitConfig().study_splits
    drawn, _ = study_blocks(tiny_config(root, study="libribrain2025").with_overrides(
        {"splits.study_splits": False}))
    assert any(set(t["split"]) != split_of[u] for u, t in drawn.items())


def test_sentences_of_a_training_run_heard_in_the_test_run_go_to_test(copy):
    # the training run ses-1 and the test run get the same sentences (the shorter run's events
    # copied to the other)
    shutil.rmtree(copy / "Sherlock1" / "stimuli")
    lengths = {}
    for session, run in (("1", "1"), ("12", "2")):
        with h5py.File(_h5(copy, session, run=run), "r") as f:
            lengths[session] = f["data"].shape[1]
    short, long = ("1", "12") if lengths["1"] <= lengths["12"] else ("12", "1")
    runs = {"1": "1", "12": "2"}
    shutil.copy(_tsv(copy, short, run=runs[short]), _tsv(copy, long, run=runs[long]))
    blocks, audit = study_blocks(tiny_config(copy, study="libribrain2025"))
    assert audit["ok"] and audit["moved_blocks"]["count"] >= 1
    assert set(blocks["libribrain2025/sub-0/ses-12/task-Sherlock1/run-2"]["split"]) == {"test"}
    assert set(blocks["libribrain2025/sub-0/ses-1/task-Sherlock1/run-1"]["split"]) == {"test"}
    assert set(blocks["libribrain2025/sub-0/ses-2/task-Sherlock1/run-1"]["split"]) == {"train"}


def test_missing_audio_still_loads_and_check_says_where_to_put_it(copy, capsys):
    shutil.rmtree(copy / "Sherlock1" / "stimuli")
    recordings = get("libribrain2025", copy).recordings()  # strict: no error
    events = recordings[0].events()
    assert set(events["kind"]) == {"word", "phoneme"}
    assert main(["check", "--study", "libribrain2025", "--data", str(copy), "--no-signal"]) == 1
    out = capsys.readouterr().out
    assert "audio: 4 run(s) without their wav" in out
    assert str(copy / "Sherlock1" / "stimuli" / "audio" / "ses-1_run-1.wav") in out
    assert "<root>/<Task>/stimuli/audio/ses-<S>_run-<R>.wav" in out
    assert "no sound events" in out


def test_hdf5_without_sample_frequency_is_named(copy, capsys):
    with h5py.File(_h5(copy), "r+") as f:
        del f.attrs["sample_frequency"]
    rec = get("libribrain2025", copy).recordings()[0]
    with pytest.raises(StudyError, match="has no 'sample_frequency' attribute") as info:
        rec.raw()
    assert str(_h5(copy)) in str(info.value)
    assert main(["check", "--study", "libribrain2025", "--data", str(copy), "--no-signal"]) == 1
    out = capsys.readouterr().out
    assert f"{_h5(copy)}: HDF5 file has no 'sample_frequency' attribute" in out
    assert "Traceback" not in out


def test_truncated_hdf5_is_named(copy, capsys):
    truncate(_h5(copy, "2"))
    assert main(["check", "--study", "libribrain2025", "--data", str(copy), "--no-signal"]) == 1
    out = capsys.readouterr().out
    assert f"{_h5(copy, '2')}: not a readable HDF5 file" in out
    report = check("libribrain2025", copy, scan_signal=False)
    assert report.n_recordings == 5 and len(report.problems) == 1


def test_events_without_timemeg_are_named(copy):
    table = pd.read_csv(_tsv(copy), sep="\t").drop(columns="timemeg")
    table.to_csv(_tsv(copy), sep="\t", index=False)
    rec = get("libribrain2025", copy).recordings()[0]
    with pytest.raises(StudyError, match=r"lacks columns \['timemeg'\]"):
        rec.events()


def test_channel_names_attribute_orders_the_channels(copy):
    with h5py.File(_h5(copy), "r+") as f:
        names = [f"MEG {n[3:]}" for n in get("libribrain2025", copy).recordings()[0]
                 .raw().ch_names]
        f.attrs["channel_names"] = np.array(names[::-1], dtype="S")
    raw = get("libribrain2025", copy).recordings()[0].raw()
    assert raw.ch_names[0] == "MEG2641" and raw.get_channel_types()[0] == "mag"
    with h5py.File(_h5(copy), "r+") as f:
        f.attrs["channel_names"] = np.array(["EEG001"] * 306, dtype="S")
    with pytest.raises(StudyError, match="not MEGIN/Elekta sensors"):
        get("libribrain2025", copy).recordings()[0].raw()


def test_download_fetches_recordings_and_events_from_hugging_face(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    calls = []

    def fake(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        if repo_id == "pnpl/LibriBrain":
            # an instance without running the hub's constructor (it needs an HTTP response)
            raise RepositoryNotFoundError.__new__(RepositoryNotFoundError)
        Path(kwargs["local_dir"], "Sherlock1").mkdir()
        return str(kwargs["local_dir"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    folder = download_module.download("libribrain2025", tmp_path / "lb", progress=False)
    assert folder == tmp_path / "lb" and (folder / "Sherlock1").is_dir()
    assert [repo for repo, _ in calls] == ["pnpl/LibriBrain", "pnpl/LibriBrain-Competition-2025"]
    kwargs = calls[-1][1]
    assert kwargs["repo_type"] == "dataset" and Path(kwargs["local_dir"]) == folder
    assert kwargs["allow_patterns"] == ["*/derivatives/serialised/*.h5",
                                        "*/derivatives/events/*_events.tsv"]
    download_module.download_libribrain(tmp_path / "one", tasks=["Sherlock1"])
    assert calls[-1][1]["allow_patterns"][0] == "Sherlock1/derivatives/serialised/*.h5"


def test_download_failure_is_one_message(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    def offline(repo_id, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    assert main(["download", "--study", "libribrain2025", "--to", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "huggingface.co/datasets/pnpl/LibriBrain: OSError: Network is unreachable" in out
    assert "run again to resume" in out and "Traceback" not in out


def test_cli_example_layout_then_check(tmp_path, capsys):
    assert main(["example-layout", "--study", "libribrain2025", "--out", str(tmp_path)]) == 0
    assert main(["check", "--study", "libribrain2025", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "subjects    1 (0)" in out and "recordings  5" in out and "channels    306" in out
    assert "no problems found" in out


def test_a_wav_symlinked_out_of_the_study_is_refused(copy, tmp_path, capsys):
    wav = sorted(copy.rglob("*.wav"))[0]
    outside = tmp_path / "elsewhere.wav"
    shutil.copy(wav, outside)
    wav.unlink()
    wav.symlink_to(outside)
    assert main(["check", "--study", "libribrain2025", "--data", str(copy), "--no-signal"]) == 1
    out = capsys.readouterr().out
    assert "outside" in out and "Traceback" not in out
