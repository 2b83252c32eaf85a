"""The generic BIDS adapter and the simulated study read through it."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import mne
import mne_bids
import numpy as np
import pandas as pd
import pytest
import soundfile

from braindecode_speech.data.studies import get
from braindecode_speech.data.studies.bids import BIDSColumns, BIDSStudy
from braindecode_speech.data.studies.simulated import SimulatedStudy
from braindecode_speech.data.study import StudyError
from braindecode_speech.simulation.sensors import make_info


def test_simulated_study_events_equal_the_generator(tiny_meg_root):
    study = get("simulated", tiny_meg_root)
    assert isinstance(study, SimulatedStudy) and study.modality == "meg"
    recordings = study.recordings()
    assert [r.uid for r in recordings] == [f"simulated/sub-{s}/ses-0/task-{t}"
                                          for s in ("01", "02") for t in ("0", "1")]
    words = pd.read_csv(tiny_meg_root / "stimuli" / "words.tsv", sep="\t",
                        keep_default_na=False)
    sounds = pd.read_csv(tiny_meg_root / "stimuli" / "sounds.tsv", sep="\t")
    stories = list(dict.fromkeys(sounds["story"]))
    by_story = {}
    for recording in recordings:
        events = recording.events(duration=recording.raw().times[-1])
        story = stories[int(recording.task)]
        story_words = words[words["story"] == story]
        heard = events[events["kind"] == "word"].reset_index(drop=True)
        played = events[events["kind"] == "sound"].set_index("sound_id")
        # the generator's onsets: sound onset + the word's offset in its wav
        expected = played.loc[story_words["sound"], "onset"].to_numpy() + story_words[
            "sound_offset"].to_numpy()
        np.testing.assert_allclose(heard["onset"], expected, atol=1e-6)
        assert list(heard["word"]) == list(story_words["word"])
        assert list(heard["word_index"]) == list(story_words["word_index"])
        np.testing.assert_allclose(heard["offset"], story_words["sound_offset"], atol=1e-6)
        assert (played["offset"] == 0).all()
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in played["filepath"])
        blocks = events[events["kind"] == "block"]
        assert len(blocks) == story_words["sequence_index"].nunique()
        assert blocks["sequence_id"].notna().all() and blocks["word"].isna().all()
        assert set(events["story"]) == {story}
        by_story.setdefault(story, []).append(list(heard["sequence_id"]))
    for sequences in by_story.values():  # same sentence ids in every subject
        assert all(s == sequences[0] for s in sequences)


def test_simulated_eeg_study_and_subject_filter(tiny_eeg_root):
    study = get("simulated", tiny_eeg_root, subjects=["02"])
    assert study.modality == "eeg"
    recordings = study.recordings()
    assert {r.subject for r in recordings} == {"02"} and len(recordings) == 2
    raw = recordings[0].raw()
    assert len(raw.ch_names) == 61 and raw.info["sfreq"] == 200.0
    positions = np.array([ch["loc"][:3] for ch in raw.info["chs"]])
    assert np.isfinite(positions).all() and np.linalg.norm(positions, axis=1).min() > 0.05
    with pytest.raises(StudyError, match="unknown subject"):
        get("simulated", tiny_eeg_root, subjects=["07"]).recordings()


def test_missing_wav_names_the_events_file_and_the_wav(tiny_meg_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_meg_root, root)
    wav = sorted((root / "stimuli" / "audio").glob("*.wav"))[0]
    wav.unlink()
    study = BIDSStudy(root, datatype="meg")
    broken = [r for r in study.recordings() if wav.name in (root / _events_of(r)).read_text()]
    assert broken
    with pytest.raises(StudyError) as error:
        broken[0].events()
    assert _events_of(broken[0]).name in str(error.value) and str(wav) in str(error.value)


def _events_of(recording) -> Path:
    return Path(str(recording.path).replace("_meg.fif", "_events.tsv"))


def _write_dataset(root: Path, rows: list[dict], datatype: str = "eeg",
                   subject: str = "01") -> mne_bids.BIDSPath:
    """A one-recording BIDS dataset (mne-bids) with a hand-written events.tsv and a wav."""
    info = make_info("easycap-M10" if datatype == "eeg" else "CTF-275", 100.0)
    raw = mne.io.RawArray(np.zeros((len(info.ch_names), 2000)), info, verbose=False)
    path = mne_bids.BIDSPath(root=root, subject=subject, task="listen", datatype=datatype)
    mne_bids.write_raw_bids(raw, path, format="BrainVision" if datatype == "eeg" else "FIF",
                            allow_preload=True, overwrite=True, verbose="error")
    (root / "sounds").mkdir(exist_ok=True)
    soundfile.write(root / "sounds" / "story.wav", np.zeros(16000), 16000)
    events = path.copy().update(suffix="events", extension=".tsv")
    pd.DataFrame(rows).to_csv(events.fpath, sep="\t", index=False, na_rep="n/a")
    return path


def test_custom_column_mapping(tmp_path, caplog):
    rows = [
        dict(onset=1.0, duration=1.0, type="audio", stim="sounds/story.wav", start="n/a",
             token="n/a", phrase_id="n/a", position="n/a"),
        dict(onset=1.2, duration=0.0, type="phrase", stim="sounds/story.wav", start=0.2,
             token="n/a", phrase_id="p1", position="n/a"),
        dict(onset=1.2, duration=0.3, type="token", stim="sounds/story.wav", start=0.2,
             token="null", phrase_id="p1", position=0),
        dict(onset=1.6, duration=0.3, type="token", stim="sounds/story.wav", start=0.6,
             token="boat", phrase_id="p1", position=1),
        dict(onset=5.0, duration=0.0, type="button", stim="n/a", start="n/a", token="n/a",
             phrase_id="n/a", position="n/a"),
    ]
    _write_dataset(tmp_path, rows)
    columns = BIDSColumns(kind="type", sound_value="audio", word_value="token",
                          sentence_value="phrase", phoneme_value=None, sound="stim",
                          sound_offset="start", word="token", phoneme=None,
                          sequence_id="phrase_id", word_index="position", condition=None,
                          story=None)
    study = BIDSStudy(tmp_path, columns=columns)
    assert study.modality == "eeg"
    (recording,) = study.recordings()
    with caplog.at_level(logging.INFO, logger="braindecode_speech.data.studies.bids"):
        events = recording.events()
    assert "button" in caplog.text  # left out, and said so
    assert list(events["kind"]) == ["sound", "block", "word", "word"]
    words = events[events["kind"] == "word"]
    assert list(words["word"]) == ["null", "boat"]  # "null" is a word, not a missing value
    assert list(words["word_index"]) == [0, 1] and list(words["sequence_id"]) == ["p1", "p1"]
    np.testing.assert_allclose(words["offset"], [0.2, 0.6])
    assert events.loc[0, "filepath"] == str(tmp_path / "sounds" / "story.wav")
    assert events.loc[0, "offset"] == 0.0


def test_events_errors_name_the_file(tmp_path):
    path = _write_dataset(tmp_path, [dict(onset=1.0, duration=0.2, trial_type="word")])
    events = str(path.copy().update(suffix="events", extension=".tsv").fpath)
    (recording,) = BIDSStudy(tmp_path).recordings()
    with pytest.raises(StudyError, match="no 'word' column") as error:
        recording.events()
    assert events in str(error.value)
    pd.DataFrame([dict(onset=1.0, trial_type="word", word="boat")]).to_csv(
        events, sep="\t", index=False)
    with pytest.raises(StudyError, match="no 'duration' column"):
        BIDSStudy(tmp_path).recordings()[0].events()


def test_datatype_must_be_unambiguous(tmp_path):
    row = [dict(onset=1.0, duration=1.0, trial_type="sound", sound="sounds/story.wav")]
    _write_dataset(tmp_path, row, datatype="eeg", subject="01")
    _write_dataset(tmp_path, row, datatype="meg", subject="02")
    with pytest.raises(StudyError, match="exactly one of"):
        BIDSStudy(tmp_path)
    meg = BIDSStudy(tmp_path, datatype="meg")
    assert meg.modality == "meg" and [r.subject for r in meg.recordings()] == ["02"]
    with pytest.raises(StudyError, match="datatype must be one of"):
        BIDSStudy(tmp_path, datatype="ieeg")


def test_not_a_simulated_study(tmp_path):
    _write_dataset(tmp_path, [dict(onset=1.0, duration=1.0, trial_type="sound",
                                   sound="sounds/story.wav")])
    with pytest.raises(StudyError, match="not a complete simulated study"):
        SimulatedStudy(tmp_path)
    with pytest.raises(StudyError, match="does not exist"):
        BIDSStudy(tmp_path / "nowhere")
    assert isinstance(get("bids", tmp_path), BIDSStudy)
