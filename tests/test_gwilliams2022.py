"""MEG-MASC adapter on the example layout: discovery, channels, events.tsv parsing, sentence
ids, and bad inputs."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures import rewrite_fif

from braindecode_speech.data.events import EventsError
from braindecode_speech.data.studies import get
from braindecode_speech.data.studies.gwilliams2022 import STORIES, Gwilliams2022, sound_file
from braindecode_speech.data.study import StudyError

STUDY = "gwilliams2022"  # the example layout of the fixtures root and copy


def _events_tsv(root: Path, subject="01", session="0", task=0) -> Path:
    return (root / f"sub-{subject}" / f"ses-{session}" / "meg" /
            f"sub-{subject}_ses-{session}_task-{task}_events.tsv")


def _recording(study, subject="01", session="0", task="0"):
    return next(r for r in study.recordings()
                if (r.subject, r.session, r.task) == (subject, session, task))


def test_discovers_every_subject_session_and_story(root):
    recordings = get("gwilliams2022", root).recordings()
    found = sorted((r.subject, r.session, r.task) for r in recordings)
    expected = sorted([("01", s, str(t)) for s in "01" for t in range(4)] +
                      [("02", "0", str(t)) for t in range(4)])  # sub-02 has one session
    assert found == expected
    assert all(r.path.name.endswith("_meg.con") for r in recordings)


def test_keeps_the_208_axial_gradiometers_at_1000_hz(root):
    raw = _recording(get("gwilliams2022", root)).raw()
    assert raw.info["sfreq"] == 1000.0
    assert raw.ch_names == [f"MEG {i:03d}" for i in range(1, 209)]
    assert raw.copy().pick("data").ch_names == raw.ch_names  # refs and misc dropped
    assert set(raw.get_channel_types()) == {"mag"}
    assert 1e-14 < np.std(raw.get_data()) < 1e-10  # T


def test_sound_paths_are_mapped_to_the_real_file_names(tmp_path):
    assert sound_file(tmp_path, "stimuli/audio/The_Black_Willow_0.0.wav") == \
        tmp_path / "stimuli/audio/the_black_willow_0.wav"
    assert sound_file(tmp_path, "stimuli/audio/lw1_12.wav") == tmp_path / "stimuli/audio/lw1_12.wav"
    with pytest.raises(ValueError, match="unexpected sound path"):
        sound_file(tmp_path, "stimuli/audio/lw1.mp3")


def test_events_follow_the_tsv_with_word_onset_sound_onset_plus_start(root):
    study = get("gwilliams2022", root)
    tsv = pd.read_csv(_events_tsv(root, task=0), sep="\t")
    infos = [ast.literal_eval(t) for t in tsv["trial_type"]]
    # hand-computed from the layout: the first wav chunk starts 0.5 s into the recording,
    # and its first word 0.3 s into the wav
    assert infos[0]["kind"] == "sound" and tsv["onset"][0] == 0.5
    assert infos[0]["sound"] == "stimuli/audio/lw1_0.0.wav"
    assert infos[1]["kind"] == "word" and infos[1]["start"] == 0.3 and tsv["onset"][1] == 0.8
    events = _recording(study).events()
    sounds = events[events["kind"] == "sound"]
    assert list(sounds["filepath"]) == [str(root / "stimuli/audio/lw1_0.wav"),
                                        str(root / "stimuli/audio/lw1_1.wav")]
    assert list(sounds["offset"]) == [0.0, 0.0]
    first_word = events[events["kind"] == "word"].iloc[0]
    assert first_word["onset"] == pytest.approx(0.8)
    assert first_word["offset"] == pytest.approx(0.3)
    assert first_word["word"] == infos[1]["word"] and first_word["word_index"] == 0
    words = events[events["kind"] == "word"]
    assert len(words) == sum(i["kind"] == "word" for i in infos)
    assert (events["kind"] == "phoneme").sum() == sum(i["kind"] == "phoneme" for i in infos)
    for _, word in words.iterrows():  # every word lies in its own sound
        sound = sounds[sounds["sound_id"] == word["sound_id"]].iloc[0]
        assert word["onset"] == pytest.approx(sound["onset"] + word["offset"], abs=1e-6)


def test_stories_and_conditions(root):
    study = get("gwilliams2022", root)
    for task, story in enumerate(STORIES):
        events = _recording(study, task=str(task)).events()
        assert set(events["story"]) == {story}
        sound = events[events["kind"] == "sound"].iloc[0]
        assert Path(sound["filepath"]).name == f"{story.lower()}_0.wav"
    conditions = _recording(study, task="0").events()["condition"].dropna()
    assert set(conditions) == {"sentence", "word_list"}
    conditions = _recording(study, task="3").events()["condition"].dropna()
    assert set(conditions) == {"sentence", "pseudo_words"}


def test_sentence_ids_are_identical_across_subjects_and_sessions(root):
    study = get("gwilliams2022", root)

    def sentences(rec):
        words = rec.events().query("kind == 'word'")
        return {sid: list(part["word"]) for sid, part in words.groupby("sequence_id")}

    for task in "0123":
        tables = [sentences(r) for r in study.recordings() if r.task == task]
        assert len(tables) == 3
        assert tables[0] == tables[1] == tables[2]
        assert all(sid.startswith(STORIES[int(task)] + ":") for sid in tables[0])
    all_ids = [set(sentences(r)) for r in study.recordings() if r.session == "0" and
               r.subject == "01"]
    assert sum(len(ids) for ids in all_ids) == len(set().union(*all_ids))  # unique per story


def test_trial_type_is_parsed_as_a_literal_never_evaluated(copy):
    path = _events_tsv(copy)
    tsv = pd.read_csv(path, sep="\t")
    tsv.loc[1, "trial_type"] = "__import__('os').remove('x')"
    tsv.to_csv(path, sep="\t", index=False)
    with pytest.raises(StudyError, match=r"events.tsv: line 3: trial_type is not a dict"):
        _recording(get("gwilliams2022", copy, strict=False)).events()


def test_word_onset_disagreeing_with_its_sound_is_an_error(copy):
    path = _events_tsv(copy)
    tsv = pd.read_csv(path, sep="\t")
    tsv.loc[1, "onset"] += 0.05
    tsv.to_csv(path, sep="\t", index=False)
    with pytest.raises(StudyError, match="line 3: word onset .* differs from sound onset"):
        _recording(get("gwilliams2022", copy)).events()


def test_missing_wav_raises_when_strict_and_is_skipped_otherwise(copy):
    wav = copy / "stimuli" / "audio" / "easy_money_0.wav"
    wav.unlink()
    with pytest.raises(StudyError, match="easy_money_0.wav: sound file is missing"):
        get("gwilliams2022", copy).recordings()
    study = Gwilliams2022(copy, strict=False)
    recordings = study.recordings()
    assert len(recordings) == 9 and all(r.task != "2" for r in recordings)
    assert [path for path, _ in study.skipped] == [wav] * 3


def test_missing_raw_file_is_skipped_and_named(copy):
    raw = copy / "sub-02" / "ses-0" / "meg" / "sub-02_ses-0_task-1_meg.con"
    raw.unlink()
    study = Gwilliams2022(copy, strict=False)
    assert len(study.recordings()) == 11
    assert study.skipped == [(raw, "file is missing")]



def test_events_past_the_end_and_duplicates_are_errors(copy):
    path = _events_tsv(copy, task=1)
    tsv = pd.read_csv(path, sep="\t")
    tsv = pd.concat([tsv, tsv.iloc[[1]]], ignore_index=True)  # a duplicated word
    tsv.to_csv(path, sep="\t", index=False)
    rec = _recording(get("gwilliams2022", copy), task="1")
    with pytest.raises(EventsError, match="task-1_events.tsv: 2 duplicated events"):
        rec.events()
    tsv = tsv.iloc[:-1]
    tsv.loc[0, "onset"] = 500.0  # the sound (and so its words) after the end
    tsv.loc[tsv.index[1:], "onset"] += 499.5
    tsv.to_csv(path, sep="\t", index=False)
    rec = _recording(get("gwilliams2022", copy), task="1")
    raw = rec.raw()
    with pytest.raises(EventsError, match="events start after the end of the recording"):
        rec.events(duration=raw.n_times / raw.info["sfreq"])


def test_a_different_channel_count_is_an_error_naming_the_file(copy):
    path = copy / "sub-02" / "ses-0" / "meg" / "sub-02_ses-0_task-0_meg.con"
    rewrite_fif(path, lambda raw: raw.drop_channels(["MEG 007"]))
    rec = _recording(get("gwilliams2022", copy), subject="02")
    with pytest.raises(StudyError, match="task-0_meg.con: 207 MEG .* channels, expected 208"):
        rec.raw()


def test_unlisted_subjects(copy):
    assert {r.subject for r in get("gwilliams2022", copy, subjects=["02"]).recordings()} == \
        {"02"}
    (copy / "sub-03").mkdir()
    with pytest.raises(StudyError, match="sub-03: subject folder not listed"):
        get("gwilliams2022", copy).recordings()


def test_injected_raw_reader_is_used(root):
    seen = []

    def reader(path):
        seen.append(path)
        from braindecode_speech.data.studies._readers import read_raw
        return read_raw(path, native=lambda p: pytest.fail("not a FIF file"))

    rec = _recording(Gwilliams2022(root, raw_reader=reader))
    assert len(rec.raw().ch_names) == 208
    assert seen == [rec.path]
