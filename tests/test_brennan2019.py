"""Brennan & Hale adapter on the example layout: subject selection, FieldTrip EEG, word
onsets from 1-based ``trl`` samples, sound placement, and bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import soundfile

from braindecode_speech.data.studies import get
from braindecode_speech.data.studies.brennan2019 import PAPER_SUBJECTS, Brennan2019, read_events
from braindecode_speech.data.study import StudyError

STUDY = "brennan2019"  # the example layout of the fixtures root and copy


def _trl(root: Path, subject: str) -> np.ndarray:
    return scipy.io.loadmat(root / "proc" / f"{subject}.mat", simplify_cells=True)["proc"]["trl"]


def test_paper_selection_is_the_33_subjects_with_all_words():
    assert len(PAPER_SUBJECTS) == 33
    assert {"S02", "S24", "S26", "S27", "S30", "S32", "S34", "S35", "S36"}.isdisjoint(
        PAPER_SUBJECTS)
    assert {"S07", "S09", "S23", "S43"} <= set(PAPER_SUBJECTS)  # low performers are kept


def test_discovery_and_selection(copy):
    assert [r.subject for r in get("brennan2019", copy).recordings()] == ["S01", "S03"]
    shutil.copy(copy / "S01.mat", copy / "S02.mat")  # S02 is not in the paper's selection
    shutil.copy(copy / "proc" / "S01.mat", copy / "proc" / "S02.mat")
    study = Brennan2019(copy)
    assert [r.subject for r in study.recordings()] == ["S01", "S03"]
    assert study.excluded == ["S02"]
    assert [r.subject for r in Brennan2019(copy, selection="all").recordings()] == \
        ["S01", "S02", "S03"]
    assert [r.subject for r in Brennan2019(copy, subjects=["S02"]).recordings()] == ["S02"]


def test_keeps_60_eeg_channels_in_volts(root):
    rec = get("brennan2019", root).recordings()[0]
    raw = rec.raw()
    assert raw.info["sfreq"] == 500.0
    assert raw.ch_names == [str(i) for i in range(1, 62) if i != 29]
    assert raw.copy().pick("data").ch_names == raw.ch_names  # VEOG and Aux5 dropped
    mat = scipy.io.loadmat(rec.path, simplify_cells=True)["raw"]
    labels = list(mat["label"])
    assert labels[-2:] == ["VEOG", "Aux5"]
    expected = mat["trial"][[labels.index(c) for c in raw.ch_names]] * 1e-6  # µV -> V
    np.testing.assert_allclose(raw.get_data(), expected)
    assert raw.get_montage() is not None


def test_subject_without_audio_channel_is_read(root):
    rec = get("brennan2019", root).recordings()[1]
    assert list(scipy.io.loadmat(rec.path, simplify_cells=True)["raw"]["label"])[-1] == "VEOG"
    assert len(rec.raw().ch_names) == 60


def test_word_onset_is_begin_minus_offset_in_one_based_samples(tmp_path):
    # the facts file's S01 example: begin 1736, offset -150 -> sample 1886 -> 3.770 s
    (tmp_path / "proc").mkdir()
    wav = tmp_path / "audio" / "DownTheRabbitHoleFinal_SoundFile1.wav"
    wav.parent.mkdir()
    soundfile.write(wav, np.zeros(16000), 16000)
    scipy.io.savemat(tmp_path / "proc" / "S01.mat", {"proc": {
        "trl": np.array([[1736, 2385, -150, 1, 0.5, 1], [1886, 2535, -150, 1, 0.8, 2]], float),
        "varnames": np.array([["segment"], ["tmin"], ["Order"]], dtype=object)}})
    pd.DataFrame({"Word": ["Alice,", "was"], "Segment": [1, 1], "onset": [0.5, 0.8],
                  "offset": [0.75, 0.95], "Order": [1, 2], "Position": [1, 2],
                  "Sentence": [1, 1]}).to_csv(tmp_path / "AliceChapterOne-EEG.csv", index=False)
    events = read_events(tmp_path / "proc" / "S01.mat", tmp_path)
    words = events[events["kind"] == "word"]
    assert list(words["onset"]) == pytest.approx([3.770, 4.070])
    assert list(words["word"]) == ["Alice", "was"]  # punctuation stripped
    assert list(words["duration"]) == pytest.approx([0.25, 0.15])
    assert list(words["word_index"]) == [0, 1]
    sound = events[events["kind"] == "sound"].iloc[0]
    assert sound["onset"] == pytest.approx(3.270)  # 3.770 - 0.5: the wav starts before
    assert sound["offset"] == 0.0 and sound["filepath"] == str(wav)


def test_events_of_the_example_layout(root):
    study = get("brennan2019", root)
    csv = pd.read_csv(root / "AliceChapterOne-EEG.csv")
    for rec, wav_start in zip(study.recordings(), (0.6, -0.1)):  # EEG time of wav 1 (layout)
        events = rec.events()
        trl = _trl(root, rec.subject)
        words = events[events["kind"] == "word"]
        assert list(words["onset"]) == pytest.approx((trl[:, 0] + 150 - 1) / 500)
        assert list(words["word"]) == list(csv["Word"])
        first = words.iloc[0]
        assert first["onset"] == pytest.approx(wav_start + csv["onset"][0], abs=1e-3)
        sound = events[events["kind"] == "sound"].iloc[0]
        assert sound["onset"] == pytest.approx(max(wav_start, 0.0), abs=1e-3)
        assert sound["offset"] == pytest.approx(max(-wav_start, 0.0), abs=1e-3)
        assert sound["filepath"] == str(root / "audio" / "DownTheRabbitHoleFinal_SoundFile1.wav")


def test_sentence_ids_are_identical_across_subjects(root):
    tables = []
    for rec in get("brennan2019", root).recordings():
        words = rec.events().query("kind == 'word'")
        tables.append({sid: list(p["word"]) for sid, p in words.groupby("sequence_id")})
    assert tables[0] == tables[1]
    csv = pd.read_csv(root / "AliceChapterOne-EEG.csv")
    assert set(tables[0]) == {f"alice:{s}" for s in csv["Sentence"]}


def test_missing_wav_raises_when_strict_and_is_skipped_otherwise(copy):
    wav = copy / "audio" / "DownTheRabbitHoleFinal_SoundFile2.wav"
    wav.unlink()
    with pytest.raises(StudyError, match="SoundFile2.wav: sound file is missing"):
        get("brennan2019", copy).recordings()
    study = Brennan2019(copy, strict=False)
    assert study.recordings() == []
    assert [p for p, _ in study.skipped] == [wav, wav]


def test_missing_raw_file_and_extracted_folders(copy):
    (copy / "S03.mat").unlink()
    study = Brennan2019(copy, strict=False)
    assert [r.subject for r in study.recordings()] == ["S01"]
    assert study.skipped == [(copy / "S03.mat", "file is missing")]
    shutil.rmtree(copy / "proc")
    with pytest.raises(StudyError, match=r"proc: missing \(extract proc.zip\)"):
        Brennan2019(copy).recordings()



def test_missing_channel_is_an_error_naming_the_file(copy):
    path = copy / "S03.mat"
    mat = scipy.io.loadmat(path)
    raw = mat["raw"][0, 0]
    labels = [str(x[0]) for x in raw["label"][:, 0]]
    keep = [i for i, label in enumerate(labels) if label != "5"]
    raw["label"] = raw["label"][keep]
    raw["trial"][0, 0] = raw["trial"][0, 0][keep]
    scipy.io.savemat(path, {"raw": raw})
    rec = get("brennan2019", copy).recordings()[1]
    with pytest.raises(StudyError, match=r"S03.mat: 59 EEG channels, expected 60 .*\['5'\]"):
        rec.raw()


def test_trl_disagreeing_with_the_csv_is_an_error(copy):
    csv = pd.read_csv(copy / "AliceChapterOne-EEG.csv")
    csv.loc[2, "onset"] += 0.2
    csv.to_csv(copy / "AliceChapterOne-EEG.csv", index=False)
    rec = get("brennan2019", copy).recordings()[0]
    with pytest.raises(StudyError, match=r"proc/S01.mat: trl row for Order \d+ .* disagrees"):
        rec.events()
    csv = csv.drop(index=2)
    csv.to_csv(copy / "AliceChapterOne-EEG.csv", index=False)
    rec = get("brennan2019", copy).recordings()[0]
    with pytest.raises(StudyError, match="trl Order values .* are not in AliceChapterOne"):
        rec.events()



def test_options_passed_on_to_the_base_adapter_are_listed(tmp_path):
    with pytest.raises(StudyError, match=r"takes no option 'colour'; its options: subjects, "
                                         r"strict, raw_reader, selection$"):
        get("brennan2019", tmp_path, colour="red")
    with pytest.raises(ValueError, match="selection must be 'paper' or 'all', got 'some'"):
        Brennan2019(tmp_path, selection="some")
