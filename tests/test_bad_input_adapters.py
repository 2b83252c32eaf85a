"""Damaged copies of every study adapter's data (issue 11, classes 3, 4, 5, 7 and 9).

Each case corrupts a copy of the tiny simulated study (read by the ``simulated`` and ``bids``
adapters) or of an example layout (gwilliams2022, schoffelen2019, broderick2019,
brennan2019), runs the CLI in-process and checks the exit code, that the message names the
file and the problem, that no traceback is printed, and, for skips, that the skipped item is
listed with its reason.

- class 3: empty, truncated, missing and too short sound files (``check`` opens every one;
  ``train`` refuses them, naming the file and the recording);
- class 4: paths taken from data files that leave the study folder (``../``, absolute paths,
  symlinks to elsewhere);
- class 5: skipped recordings are listed (``check``, ``prepare_data``), one missing file does
  not stop ``check``, and a ``train`` where every recording fails lists the reasons;
- class 7: events files without ``onset``, empty, not UTF-8, with broken rows, and broken JSON
  sidecars are named, not the raw file;
- class 9: the simulated study (KIT and CTF subjects) passes ``check``; a study that defines a
  channel count has it checked per recording.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import soundfile
from fixtures import PAPER_LAYOUT_STUDIES, copy_layout, rewrite_fif, truncate

from braindecode_speech.cli import EXIT_INPUT_ERROR, main
from braindecode_speech.data.stimuli import wav_truncation
from braindecode_speech.data.studies import get
from braindecode_speech.data.study import StudyError
from braindecode_speech.experiments import prepare_data
from braindecode_speech.experiments.presets import tiny_config
from braindecode_speech.features.audio import AudioError, load_wav

STUDIES = ("simulated", "bids", *PAPER_LAYOUT_STUDIES)
SIMULATED_EVENTS = "sub-01/ses-0/meg/sub-01_ses-0_task-0_events.tsv"
MASC_EVENTS = "sub-01/ses-0/meg/sub-01_ses-0_task-0_events.tsv"


@pytest.fixture
def copy_of(tmp_path, example_layouts, tiny_meg_root):
    """``copy_of(study)``: a modifiable copy of the data read by ``study``."""

    def make(study: str) -> Path:
        if study in ("simulated", "bids"):
            return Path(shutil.copytree(tiny_meg_root, tmp_path / study))
        return copy_layout(example_layouts(study), tmp_path / study)

    return make


def _check(capsys, study: str, root: Path, code: int = 1) -> str:
    """``braindecode-speech check`` (signal scan off); its output, asserting the exit code and
    that no traceback was printed."""
    assert main(["check", "--study", study, "--data", str(root), "--no-signal"]) == code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return captured.out


def _train(capsys, root: Path, tmp_path: Path, *overrides: str) -> str:
    """``braindecode-speech train`` on the simulated study ``root``, expected to be refused;
    the error message."""
    code = main(["train", "--study", "simulated", "--data", str(root), "--out",
                 str(tmp_path / "run"), f"cache_dir={tmp_path / 'cache'}", "features.name=mel",
                 *overrides])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT_ERROR
    assert "Traceback" not in err and err.startswith("error: ")
    return err


def _played_wav(study: str, root: Path) -> Path:
    """The first sound file played in the first recording of ``study`` at ``root``."""
    events = get(study, root).recordings()[0].events()
    return Path(events.loc[events["kind"] == "sound", "filepath"].iloc[0])


def _shorten(path: Path, fraction: float = 0.3) -> None:
    """Rewrite a sound file as a complete one holding the first ``fraction`` of its audio."""
    data, rate = soundfile.read(path)
    soundfile.write(path, data[:int(len(data) * fraction)], rate)


# -- class 3: sound files ----------------------------------------------------------------------

DAMAGES = {
    "empty": (lambda path: path.write_bytes(b""), "sound file is empty (0 bytes)"),
    "truncated": (truncate, "sound file is truncated: the header declares"),
    "missing": (Path.unlink, "is missing"),
    "too_short": (_shorten, "s long, but"),
}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("study", STUDIES)
def test_check_opens_every_sound_file(copy_of, capsys, study, damage):
    root = copy_of(study)
    wav = _played_wav(study, root)
    corrupt, expected = DAMAGES[damage]
    corrupt(wav)
    out = _check(capsys, study, root)
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    assert any(str(wav) in line and expected in line for line in problems), out


def test_too_short_sound_names_the_event_that_needs_it(copy_of, capsys):
    root = copy_of("simulated")
    wav = root / "stimuli" / "audio" / "the_happy_photograph_0.wav"
    _shorten(wav)
    events = pd.read_csv(root / SIMULATED_EVENTS, sep="\t")
    sound = events[events["sound"] == "stimuli/audio/the_happy_photograph_0.wav"].iloc[0]
    out = _check(capsys, "simulated", root)
    assert f"{wav}: sound file is {soundfile.info(wav).duration:.3f} s long, but the sound " \
           f"event at {sound['onset']:.3f} s in simulated/sub-01/ses-0/task-0 needs " \
           f"{sound['duration']:.3f} s of it" in out


@pytest.mark.parametrize("damage", ["truncated", "too_short"])
def test_train_refuses_audio_shorter_than_its_events(copy_of, capsys, tmp_path, damage):
    root = copy_of("simulated")
    wav = root / "stimuli" / "audio" / "the_happy_photograph_0.wav"
    DAMAGES[damage][0](wav)
    err = _train(capsys, root, tmp_path, "study.subjects=['01']")
    assert str(wav) in err and DAMAGES[damage][1] in err
    assert "simulated/sub-01/ses-0/task-0" in err
    assert not (tmp_path / "run" / "report.json").exists()


# -- class 4: paths outside the study ----------------------------------------------------------

def _set_sound(tsv: Path, line: int, value: str) -> None:
    """Set the ``sound`` cell of ``line`` (1 = header) of a BIDS events.tsv."""
    table = pd.read_csv(tsv, sep="\t", keep_default_na=False)
    table.loc[line - 2, "sound"] = value
    table.to_csv(tsv, sep="\t", index=False)


@pytest.mark.parametrize("study", ["simulated", "bids"])
@pytest.mark.parametrize("value", ["../../etc/passwd", "/etc/passwd"])
def test_bids_sound_path_outside_the_study(copy_of, capsys, study, value):
    root = copy_of(study)
    tsv = root / SIMULATED_EVENTS
    _set_sound(tsv, 2, value)
    out = _check(capsys, study, root)
    assert f"{tsv}: line 2: path {value!r} resolves to " in out
    assert f"outside the study folder {root.resolve()}" in out


def test_masc_dict_string_sound_outside_the_study(copy_of, capsys):
    root = copy_of("gwilliams2022")
    tsv = root / MASC_EVENTS
    text = tsv.read_text()
    assert "'sound': 'stimuli/audio/lw1_0.0.wav'" in text
    tsv.write_text(text.replace("'sound': 'stimuli/audio/lw1_0.0.wav'",
                                "'sound': '../../../../etc/lw1_0.wav'", 1))
    out = _check(capsys, "gwilliams2022", root)
    assert f"{tsv}: line 2: bad 'sound' event" in out
    assert "'../../../../etc/lw1_0.wav' resolves to" in out and "outside the study" in out


@pytest.mark.parametrize("study", STUDIES)
def test_symlinked_sound_file_leading_outside_the_study(copy_of, capsys, tmp_path, study):
    root = copy_of(study)
    wav = _played_wav(study, root)
    outside = tmp_path / "elsewhere" / wav.name
    outside.parent.mkdir()
    shutil.move(wav, outside)
    wav.symlink_to(outside)
    out = _check(capsys, study, root)
    assert f"resolves to {outside.resolve()}, outside the study folder {root.resolve()}" in out
    assert wav.name in out


def test_train_refuses_a_path_outside_the_study(copy_of, capsys, tmp_path):
    root = copy_of("simulated")
    tsv = root / SIMULATED_EVENTS
    _set_sound(tsv, 2, "../../etc/passwd")
    err = _train(capsys, root, tmp_path, "study.subjects=['01']")
    assert f"{tsv}: line 2: path '../../etc/passwd'" in err and "outside the study" in err


# -- class 5: skips ----------------------------------------------------------------------------

#: per study: a file needed by one recording, the skip reason, recordings left
SKIPS = {
    "simulated": (SIMULATED_EVENTS, "events file of sub-01_ses-0_task-0_meg.fif is missing", 3),
    "bids": (SIMULATED_EVENTS, "events file of sub-01_ses-0_task-0_meg.fif is missing", 3),
    "gwilliams2022": (MASC_EVENTS, "file is missing", 11),
    "schoffelen2019": ("sourcedata/meg_task/A2002-2-MEG-MOUS-Aud.log",
                       "Presentation log is missing", 1),
    "broderick2019": ("Natural Speech/EEG/Subject1/Subject1_Run1.mat", "file is missing", 3),
    "brennan2019": ("S01.mat", "file is missing", 1),
}


@pytest.mark.parametrize("study", STUDIES)
def test_check_lists_a_skip_and_checks_the_other_recordings(copy_of, capsys, study):
    root = copy_of(study)
    relative, reason, left = SKIPS[study]
    removed = root / relative
    removed.unlink()
    listed = str(removed).replace("A2002-2-MEG-MOUS-Aud", "A2002-<n>-MEG-MOUS-Aud")
    out = _check(capsys, study, root)
    assert f"  - {listed}: {reason}" in out
    assert f"recordings  {left}\n" in out
    if study in ("simulated", "bids"):  # every other recording is still read
        wav = root / "stimuli" / "audio" / "the_famous_wagon_0.wav"
        wav.write_bytes(b"")
        out = _check(capsys, study, root)
        assert f"  - {listed}: {reason}" in out and f"{wav}: sound file is empty" in out


@pytest.mark.parametrize("study", STUDIES)
def test_skipped_is_filled_by_discovery(copy_of, study):
    root = copy_of(study)
    relative, reason, left = SKIPS[study]
    (root / relative).unlink()
    adapter = get(study, root, strict=False)
    assert adapter.skipped == []
    assert len(adapter.recordings()) == left
    assert len(adapter.recordings()) == left  # a second discovery does not list it twice
    assert [r for _, r in adapter.skipped] == [reason]
    with pytest.raises(StudyError, match=reason):
        get(study, root).recordings()


def test_prepare_data_lists_the_skips_of_discovery(copy_of, tmp_path):
    root = copy_of("simulated")
    (root / SIMULATED_EVENTS).unlink()
    config = tiny_config(root, cache_dir=tmp_path / "cache")
    with pytest.raises(StudyError, match="sub-01_ses-0_task-0_events.tsv: events file of"):
        prepare_data(config)
    data = prepare_data(config.with_overrides({"study.on_error": "skip"}))
    assert data.skipped == [{"item": str(root / SIMULATED_EVENTS),
                             "reason": "events file of sub-01_ses-0_task-0_meg.fif is missing"}]
    assert len(data.recordings) == 3


def test_train_lists_the_skips_in_skipped_csv_and_report_json(copy_of, capsys, tmp_path):
    root = copy_of("simulated")
    (root / SIMULATED_EVENTS).unlink()
    config = tmp_path / "tiny.yaml"
    tiny_config(root, cache_dir=tmp_path / "cache").to_yaml(config)
    run = tmp_path / "run"
    assert main(["train", "--study", "simulated", "--data", str(root), "--out", str(run),
                 "--config", str(config), "study.on_error=skip"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    expected = {"item": str(root / SIMULATED_EVENTS),
                "reason": "events file of sub-01_ses-0_task-0_meg.fif is missing"}
    assert pd.read_csv(run / "skipped.csv").to_dict("records") == [expected]
    assert json.loads((run / "report.json").read_text())["skipped"] == [expected]


def test_train_where_every_recording_fails_lists_the_reasons(copy_of, capsys, tmp_path):
    root = copy_of("simulated")
    (root / SIMULATED_EVENTS).unlink()
    for wav in (root / "stimuli" / "audio").glob("*.wav"):
        wav.write_bytes(b"")
    err = _train(capsys, root, tmp_path, "study.on_error=skip")
    assert "no usable recording for 'simulated'; 4 left out:" in err
    assert f"  - {root / SIMULATED_EVENTS}: events file of" in err
    for uid in ("sub-01/ses-0/task-1", "sub-02/ses-0/task-0", "sub-02/ses-0/task-1"):
        assert f"  - simulated/{uid}: " in err and "sound file is empty (0 bytes)" in err


# -- class 7: the file that is wrong is named ----------------------------------------------------

def _no_onset(path: Path) -> None:
    table = pd.read_csv(path, sep="\t", keep_default_na=False)
    table.rename(columns={"onset": "start"}).to_csv(path, sep="\t", index=False)


def _latin1(path: Path) -> None:
    path.write_bytes(path.read_bytes().replace(b"\t", "\t\xe9".encode("latin-1"), 1))


def _negative_onset(path: Path) -> None:
    table = pd.read_csv(path, sep="\t", keep_default_na=False)
    table.loc[1, "onset"] = -1.0
    table.to_csv(path, sep="\t", index=False)


#: damage -> (corrupt, expected problem for the simulated study, for gwilliams2022)
EVENTS_DAMAGES = {
    "no_onset": (_no_onset, "no 'onset' column", "events table lacks columns ['onset']"),
    "empty": (lambda path: path.write_bytes(b""), "events file is empty (0 bytes)",
              "events table is empty (0 bytes)"),
    "not_utf8": (_latin1, "events file is not UTF-8 text (byte 0xe9",
                 "events table is not UTF-8 text (byte 0xe9"),
    "negative_onset": (_negative_onset, "events with a negative onset (rows [1])",
                       "line 3: word onset -1.000 s differs from sound onset + start"),
}


@pytest.mark.parametrize("damage", EVENTS_DAMAGES)
@pytest.mark.parametrize("study", ["simulated", "gwilliams2022"])
def test_broken_events_file_is_named(copy_of, capsys, study, damage):
    root = copy_of(study)
    tsv = root / (SIMULATED_EVENTS if study == "simulated" else MASC_EVENTS)
    corrupt, *expected = EVENTS_DAMAGES[damage]
    corrupt(tsv)
    out = _check(capsys, study, root)
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, out
    assert problems[0].startswith(f"  - {tsv}: {expected[study != 'simulated']}"), out


@pytest.mark.parametrize("sidecar", ["sub-01/ses-0/meg/sub-01_ses-0_task-0_meg.json",
                                     "sub-01/ses-0/meg/sub-01_ses-0_coordsystem.json",
                                     "dataset_description.json"])
def test_broken_json_sidecar_is_named(copy_of, capsys, sidecar):
    root = copy_of("bids")
    (root / sidecar).write_text('{"SamplingFrequency": 200,')
    out = _check(capsys, "bids", root)
    assert f"  - {root / sidecar}: broken JSON sidecar" in out
    assert "_meg.fif:" not in out


def test_broken_word_table_is_named(copy_of, capsys):
    root = copy_of("brennan2019")
    csv = root / "AliceChapterOne-EEG.csv"
    csv.write_bytes(b"")
    out = _check(capsys, "brennan2019", root)
    assert f"  - {csv}: word table is empty (0 bytes)" in out


def test_broken_gentle_alignment_is_named(copy_of, capsys):
    root = copy_of("broderick2019")
    alignment = root / "private" / "align1.json"
    alignment.write_text("{")
    out = _check(capsys, "broderick2019", root)
    assert f"  - {alignment}: cannot read the Gentle alignment" in out


# -- class 9: channel counts -------------------------------------------------------------------

@pytest.mark.parametrize("study", ["simulated", "bids"])
def test_simulated_study_mixing_systems_passes_check(tiny_meg_root, capsys, study):
    out = _check(capsys, study, tiny_meg_root, code=0)
    assert "channels    206, 273" in out and "no problems found" in out


def test_channel_count_is_checked_per_recording_where_the_study_defines_it(copy_of, capsys):
    root = copy_of("gwilliams2022")
    con = root / "sub-02" / "ses-0" / "meg" / "sub-02_ses-0_task-0_meg.con"
    rewrite_fif(con, lambda raw: raw.drop_channels([raw.ch_names[0]]))
    out = _check(capsys, "gwilliams2022", root)
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    assert problems == [f"  - {con}: 207 MEG (without references) channels, expected 208 for "
                        "gwilliams2022"]


def test_a_truncated_wav_is_listed_once_and_refused_when_loaded(copy_of, capsys):
    root = copy_of("simulated")
    wav = root / "stimuli" / "audio" / "the_happy_photograph_0.wav"
    truncate(wav)
    out = _check(capsys, "simulated", root)
    assert out.count(f"{wav}: sound file is truncated") == 1  # played in two recordings
    with pytest.raises(AudioError, match=f"Audio file {wav} is truncated: the header declares"):
        load_wav(wav)
    assert wav_truncation(root / "stimuli" / "audio" / "the_famous_wagon_0.wav") is None
