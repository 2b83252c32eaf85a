"""Broderick "Natural Speech" adapter on the example layout: runs, EEG units and reference,
word timings, sentences from the transcript, private audio, and bad inputs."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import scipy.io

from braindecode_speech.data.studies import get
from braindecode_speech.data.studies.broderick2019 import Broderick2019, _sentences_of
from braindecode_speech.data.study import StudyError

STUDY = "broderick2019"  # the example layout of the fixtures root and copy


def test_discovers_subjects_and_runs(root):
    recordings = get("broderick2019", root).recordings()
    assert [(r.subject, r.run) for r in recordings] == [("1", "1"), ("1", "2"), ("2", "1"),
                                                       ("2", "2")]
    assert recordings[0].path == root / "Natural Speech/EEG/Subject1/Subject1_Run1.mat"
    # the folder "Natural Speech" itself is accepted as root too
    assert len(Broderick2019(root / "Natural Speech").recordings()) == 4


def test_eeg_channels_units_and_mastoid_reference(root):
    rec = get("broderick2019", root).recordings()[0]
    mat = scipy.io.loadmat(rec.path)
    raw = rec.raw()
    assert raw.info["sfreq"] == 128.0 and len(raw.ch_names) == 128
    assert raw.ch_names[:2] == ["A1", "A2"] and raw.ch_names[-1] == "D32"
    assert raw.copy().pick("data").ch_names == raw.ch_names
    np.testing.assert_allclose(raw.get_data(), mat["eegData"].T * 1e-6)
    referenced = Broderick2019(root, reference="mastoids").recordings()[0].raw()
    expected = (mat["eegData"] - mat["mastoids"].mean(axis=1, keepdims=True)).T * 1e-6
    np.testing.assert_allclose(referenced.get_data(), expected)
    with pytest.raises(ValueError, match="reference must be"):
        Broderick2019(root, reference="average")


def test_words_follow_the_run_timing_file(root):
    rec = get("broderick2019", root).recordings()[1]
    text = scipy.io.loadmat(root / "Natural Speech/Stimuli/Text/Run2.mat", simplify_cells=True)
    events = rec.events()
    words = events[events["kind"] == "word"]
    assert list(words["word"]) == list(text["wordVec"])
    assert list(words["onset"]) == pytest.approx(text["onset_time"])
    assert list(words["duration"]) == pytest.approx(text["offset_time"] - text["onset_time"])
    sound = events[events["kind"] == "sound"]
    assert list(sound["onset"]) == [0.0] and list(sound["offset"]) == [0.0]
    assert list(sound["filepath"]) == [str(root / "private" / "audio2.wav")]
    phonemes = events[events["kind"] == "phoneme"]
    assert len(phonemes) == sum(len(w) for w in text["wordVec"])  # layout: a phone per letter
    assert phonemes["onset"].min() == pytest.approx(text["onset_time"][0])


def test_sentences_come_from_the_transcript_and_match_across_subjects(root):
    tables = {}
    for rec in get("broderick2019", root).recordings():
        words = rec.events().query("kind == 'word'")
        tables[(rec.subject, rec.run)] = {
            sid: list(p["word"]) for sid, p in words.groupby("sequence_id")}
        assert (words["word_index"] == 0).sum() == 3  # 3 sentences per run in the layout
    assert tables[("1", "1")] == tables[("2", "1")]
    assert tables[("1", "2")] == tables[("2", "2")]
    transcript = (root / "private" / "oldman_run1.txt").read_text()
    first = transcript.split(".")[0].split()
    assert tables[("1", "1")]["run1:0"] == first


def test_sentence_assignment_tolerates_unmatched_words():
    words = ["The", "old", "man", "fished", "He", "slept", "well"]
    transcript = "The old man fished. He then slept well!"
    sentence, position = _sentences_of(words, transcript)
    assert sentence == [0, 0, 0, 0, 1, 1, 1]
    assert position == [0, 1, 2, 3, 0, 1, 2]
    sentence, _ = _sentences_of(["The", "oldd", "man", "He"], "The old man. He.")
    assert sentence == [0, 0, 0, 1]  # "oldd" does not match: it joins the word before


def test_without_private_files(copy, caplog):
    shutil.rmtree(copy / "private")
    with caplog.at_level(logging.WARNING):
        recordings = get("broderick2019", copy).recordings()
        events = recordings[0].events()
    assert "audio of this study is not public" in caplog.text
    assert "no transcript" in caplog.text
    assert set(events["kind"]) == {"word"}
    assert set(events["sequence_id"]) == {"run1"}
    assert list(events["word_index"]) == list(range(len(events)))


def test_missing_run_raises_when_strict_and_is_skipped_otherwise(copy):
    path = copy / "Natural Speech/EEG/Subject2/Subject2_Run2.mat"
    path.unlink()
    with pytest.raises(StudyError, match="Subject2_Run2.mat: file is missing"):
        get("broderick2019", copy).recordings()
    study = Broderick2019(copy, strict=False)
    assert len(study.recordings()) == 3
    assert study.skipped == [(path, "file is missing")]


def test_wrong_channel_count_is_an_error_naming_the_file(copy):
    path = copy / "Natural Speech/EEG/Subject2/Subject2_Run1.mat"
    mat = scipy.io.loadmat(path)
    mat["eegData"] = mat["eegData"][:, :127]
    scipy.io.savemat(path, {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(StudyError, match=r"Subject2_Run1.mat: eegData has shape \(\d+, 127\)"):
        get("broderick2019", copy).recordings()[2].raw()
