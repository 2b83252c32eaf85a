"""Armeni 2022 adapter on the example layout: the (UNCONFIRMED) wav_onset / word_onset_<NN> /
phoneme_onset_<NN> events in the common schema, sentences cut at punctuation and pauses,
missing wavs, bad events files, the unconfirmed-schema line of ``check`` and the access
steps of ``download``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fixtures import copy_layout

from braindecode_speech.cli import main
from braindecode_speech.data.studies import get
from braindecode_speech.data.studies.armeni2022 import SCHEMA_NOTE
from braindecode_speech.data.study import StudyError
from braindecode_speech.simulation.layouts import write_example_layout


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_example_layout("armeni2022", tmp_path_factory.mktemp("armeni"), n_subjects=2,
                                n_sessions=2, n_wavs=2, n_sentences=2)


@pytest.fixture
def copy(root, tmp_path) -> Path:
    return copy_layout(root, tmp_path / "armeni")


def _tsv(root: Path, subject: str = "001", session: str = "001") -> Path:
    return (root / f"sub-{subject}" / f"ses-{session}" / "meg" /
            f"sub-{subject}_ses-{session}_task-compr_events.tsv")


def test_recordings_are_the_sessions(root):
    recordings = get("armeni2022", root).recordings()
    assert [(r.subject, r.session, r.task) for r in recordings] == [
        ("001", "001", "compr"), ("001", "002", "compr"), ("002", "001", "compr"),
        ("002", "002", "compr")]
    raw = recordings[0].raw()
    assert set(raw.get_channel_types()) == {"mag"} and len(raw.ch_names) == 273
    assert recordings[0].path.suffix == ".ds"


def test_events_follow_the_common_schema(root):
    events = get("armeni2022", root).recordings()[0].events()
    table = pd.read_csv(_tsv(root), sep="\t")
    sounds = events[events["kind"] == "sound"]
    words, phonemes = events[events["kind"] == "word"], events[events["kind"] == "phoneme"]
    assert list(sounds["sound_id"]) == ["sherlock001_1", "sherlock001_2"]
    assert list(sounds["onset"]) == list(table.loc[table["type"] == "wav_onset", "onset"])
    assert len(words) == table["type"].str.startswith("word_onset_").sum()
    assert len(phonemes) == table["type"].str.startswith("phoneme_onset_").sum()
    # ARPAbet values kept with their stress digit; words without their full stop
    assert any(p.endswith("1") for p in phonemes["phoneme"])
    assert not any(w.endswith(".") for w in words["word"])
    # each word is placed in the sound playing at its onset
    for _, word in words.iterrows():
        sound = sounds[sounds["onset"] <= word["onset"]].iloc[-1]
        assert word["sound_id"] == sound["sound_id"]
        assert word["offset"] == pytest.approx(word["onset"] - sound["onset"])
    # 2 wavs x 2 sentences, each sentence's words numbered from 0
    assert words["sequence_id"].nunique() == 4
    for _, sentence in words.groupby("sequence_id", sort=False):
        assert list(sentence["word_index"]) == list(range(len(sentence)))
    # the same stimuli give the same sentence ids for another subject
    other = get("armeni2022", root, subjects=["002"]).recordings()[0].events()
    assert set(other.loc[other["kind"] == "word", "sequence_id"]) == set(words["sequence_id"])


def test_sentences_are_cut_at_pauses_without_punctuation(copy):
    table = pd.read_csv(_tsv(copy), sep="\t")
    words = table["type"].str.startswith("word_onset_")
    table.loc[words, "value"] = table.loc[words, "value"].str.rstrip(".")
    table.to_csv(_tsv(copy), sep="\t", index=False, na_rep="n/a")
    events = get("armeni2022", copy).recordings()[0].events()
    assert events.loc[events["kind"] == "word", "sequence_id"].nunique() == 4
    # without pauses either, sentences end at the end of their sound only
    study = get("armeni2022", copy, sentence_gap=10.0)
    events = study.recordings()[0].events()
    assert events.loc[events["kind"] == "word", "sequence_id"].nunique() == 2


def test_check_says_the_schema_is_unconfirmed(root, capsys):
    assert main(["check", "--study", "armeni2022", "--data", str(root), "--no-signal"]) == 0
    out = capsys.readouterr().out
    assert f"note: {SCHEMA_NOTE}" in out and "UNCONFIRMED" in out
    assert "no problems found" in out


def test_missing_wav_still_loads_and_check_names_it(copy, capsys):
    wav = copy / "stimuli" / "sherlock001_2.wav"
    wav.unlink()
    recordings = get("armeni2022", copy).recordings()  # strict: no error
    events = recordings[0].events()
    # no sound at all (speech features would be silence where the wav is missing)
    assert set(events["kind"]) == {"word", "phoneme"}
    assert (events.loc[events["kind"] == "word", "sound_id"] == "sherlock001_2").any()
    assert "sound" in set(recordings[1].events()["kind"])  # session 002 has its wavs
    assert main(["check", "--study", "armeni2022", "--data", str(copy), "--no-signal"]) == 1
    out = capsys.readouterr().out
    assert f"audio: 1 wav(s) named by wav_onset events are missing, e.g. {wav}" in out
    assert out.count("no sound events") == 2  # session 001 of both subjects


def test_words_before_the_first_sound_are_named(copy):
    table = pd.read_csv(_tsv(copy), sep="\t")
    table.loc[table["type"] == "wav_onset", "onset"] += 100.0
    table.to_csv(_tsv(copy), sep="\t", index=False, na_rep="n/a")
    with pytest.raises(StudyError, match=r"line \d+: word_onset_01 at .* before the first "
                                         r"wav_onset") as info:
        get("armeni2022", copy).recordings()[0].events()
    assert str(_tsv(copy)) in str(info.value)


def test_events_without_type_column_are_named(copy, capsys):
    table = pd.read_csv(_tsv(copy), sep="\t").rename(columns={"type": "trial_type"})
    table.to_csv(_tsv(copy), sep="\t", index=False, na_rep="n/a")
    assert main(["check", "--study", "armeni2022", "--data", str(copy), "--no-signal"]) == 1
    out = capsys.readouterr().out
    assert f"{_tsv(copy)}: events table lacks columns ['type']" in out
    assert "Traceback" not in out


def test_sound_outside_the_study_is_refused(copy, capsys):
    table = pd.read_csv(_tsv(copy), sep="\t")
    table.loc[table["type"] == "wav_onset", "value"] = "../../../etc/passwd.wav"
    table.to_csv(_tsv(copy), sep="\t", index=False, na_rep="n/a")
    with pytest.raises(StudyError, match="outside the study folder"):
        get("armeni2022", copy).recordings()
    assert main(["check", "--study", "armeni2022", "--data", str(copy), "--no-signal"]) == 1
    assert "outside the study folder" in capsys.readouterr().out


def test_download_prints_the_access_steps(tmp_path, capsys):
    assert main(["download", "--study", "armeni2022", "--to", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "DSC_3011085.05_995_v1" in out and "UNCONFIRMED" in out
    assert "braindecode-speech check --study armeni2022" in out


def test_cli_example_layout_then_check(tmp_path, capsys):
    assert main(["example-layout", "--study", "armeni2022", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "sub-002" / "ses-002" / "meg" / "sub-002_ses-002_task-compr_meg.ds").is_dir()
    assert main(["check", "--study", "armeni2022", "--data", str(tmp_path)]) == 0
    assert "no problems found" in capsys.readouterr().out
