"""``braindecode-speech check`` and ``example-layout``: a clean example layout passes, a damaged
copy reports every problem at once and exits non-zero."""

from __future__ import annotations

import shutil
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import scipy.io
from fixtures import copy_layout, truncate

from braindecode_speech.cli import main
from braindecode_speech.data.events import make_events
from braindecode_speech.data.studies.check import check, check_study
from braindecode_speech.data.study import Recording, Study


def test_example_layouts_pass(example_layout):
    study, root = example_layout
    report = check(study, root)
    assert report.ok, report.format()
    assert len(report.subjects) == 2
    assert report.n_recordings == {"brennan2019": 2, "broderick2019": 4, "gwilliams2022": 12,
                                   "schoffelen2019": 2}[study]
    assert report.n_words > 0 and len(report.sentences) > 1 and report.hours > 0
    assert report.channels == {s: {n} for s, n in zip(report.subjects, [{
        "brennan2019": 60, "broderick2019": 128, "gwilliams2022": 208,
        "schoffelen2019": 273}[study]] * 2)}


def test_the_simulated_study_passes(tiny_meg_root, capsys):
    """Its events.tsv carry phoneme rows (ARPAbet) besides sounds, sentences and words."""
    report = check("simulated", tiny_meg_root)
    assert report.ok, report.format()
    assert report.n_recordings == 4 and report.n_words > 0
    assert main(["check", "--study", "simulated", "--data", str(tiny_meg_root)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_cli_example_layout_then_check(tmp_path, capsys):
    assert main(["example-layout", "--study", "brennan2019", "--out", str(tmp_path)]) == 0
    assert main(["check", "--study", "brennan2019", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "subjects    2 (S01, S03)" in out and "recordings  2" in out
    assert "no problems found" in out


def test_damaged_copy_reports_every_problem_at_once(example_layouts, tmp_path, capsys):
    root = copy_layout(example_layouts("broderick2019"), tmp_path / "b")
    eeg = root / "Natural Speech" / "EEG"
    truncate(eeg / "Subject1" / "Subject1_Run1.mat")
    mat = scipy.io.loadmat(eeg / "Subject1" / "Subject1_Run2.mat")
    mat["eegData"][100:110, 3] = np.nan
    scipy.io.savemat(eeg / "Subject1" / "Subject1_Run2.mat",
                     {k: v for k, v in mat.items() if not k.startswith("__")})
    mat = scipy.io.loadmat(eeg / "Subject2" / "Subject2_Run1.mat")
    mat["eegData"] = mat["eegData"][:, :127]
    scipy.io.savemat(eeg / "Subject2" / "Subject2_Run1.mat",
                     {k: v for k, v in mat.items() if not k.startswith("__")})
    (eeg / "Subject2" / "Subject2_Run2.mat").unlink()
    (root / "private" / "audio2.wav").write_bytes(b"")

    assert main(["check", "--study", "broderick2019", "--data", str(root)]) == 1
    out = capsys.readouterr().out
    expected = [
        "Subject2_Run2.mat: file is missing",
        "Subject1_Run1.mat: cannot read MATLAB file",
        "Subject1_Run2.mat: NaN in the signal (10 values",
        "channel A4 at 0.781 s",
        "Subject2_Run1.mat: eegData has shape",
        "private/audio2.wav: sound file is empty (0 bytes)",
        "5 problem(s):",
    ]
    for text in expected:
        assert text in out, (text, out)


def test_events_problems_are_reported(example_layouts, tmp_path):
    root = copy_layout(example_layouts("gwilliams2022"), tmp_path / "g")
    meg = root / "sub-01" / "ses-0" / "meg"
    path = meg / "sub-01_ses-0_task-1_events.tsv"
    tsv = pd.read_csv(path, sep="\t")
    pd.concat([tsv, tsv.iloc[[2]]]).to_csv(path, sep="\t", index=False)  # a duplicate
    path = meg / "sub-01_ses-0_task-2_events.tsv"
    tsv = pd.read_csv(path, sep="\t")
    tsv["onset"] += 100.0  # every event after the end of the recording
    tsv.to_csv(path, sep="\t", index=False)
    (root / "stimuli" / "audio" / "the_black_willow_0.wav").unlink()
    report = check("gwilliams2022", root, scan_signal=False)
    messages = [str(p) for p in report.problems]
    assert len(messages) == 5, report.format()
    assert sum("the_black_willow_0.wav: sound file is missing" in m for m in messages) == 3
    # the events file is blamed, not the raw file
    assert any("task-1_events.tsv: " in m and "duplicated events" in m for m in messages)
    assert any("task-2_events.tsv: " in m and "after the end of the recording" in m
               for m in messages)
    assert report.n_recordings == 9


def test_unknown_subject_and_missing_folder(example_layouts, tmp_path):
    root = example_layouts("brennan2019")
    report = check("brennan2019", root, subjects=["S01", "S99"])
    assert [str(p) for p in report.problems] == [f"{root}: unknown subject ids ['S99'] for "
                                                 "'brennan2019'"]
    report = check("brennan2019", tmp_path / "nowhere")
    assert not report.ok and "does not exist" in str(report.problems[0])


class _TwoSystems(Study):
    """A study whose subjects were recorded with different channel counts."""

    name = "two-systems"

    def iter_recordings(self):
        for subject, n_channels in (("a", 4), ("b", 5)):
            info = mne.create_info(n_channels, 100.0, "eeg")
            raw = mne.io.RawArray(np.ones((n_channels, 500)) * 1e-6, info, verbose="error")
            events = make_events([{"onset": 1.0, "duration": 1.0, "kind": "sound",
                                   "filepath": str(self.root / "x.wav"), "offset": 0.0},
                                  {"onset": 1.0, "duration": 0.5, "kind": "word",
                                   "word": "hi", "sequence_id": "s", "word_index": 0}])
            yield Recording(self.name, subject, None, None, None, self.root / subject,
                            load_raw=lambda r=raw: r, load_events=lambda e=events: e)


def test_channel_counts_may_differ_when_the_study_defines_none(tmp_path):
    report = check_study(_TwoSystems(tmp_path))
    messages = [str(p) for p in report.problems]
    assert report.channels == {"a": {4}, "b": {5}}
    assert messages == [f"{tmp_path / 'x.wav'}: sound file is missing"]  # listed once


def test_missing_extracted_folder_is_reported(example_layouts, tmp_path):
    root = copy_layout(example_layouts("brennan2019"), tmp_path / "b")
    shutil.rmtree(root / "audio")
    report = check("brennan2019", root)
    assert [str(p) for p in report.problems] == [
        f"{root / 'audio'}: missing (extract audio.zip); is {root} the Brennan & Hale "
        "download folder?"]
    assert Path(report.root) == root


def test_cli_names_a_deleted_wav_and_a_truncated_raw_file(example_layouts, tmp_path, capsys):
    root = copy_layout(example_layouts("gwilliams2022"), tmp_path / "g")
    wav = root / "stimuli" / "audio" / "cable_spool_fort_0.wav"
    wav.unlink()
    raw = root / "sub-02" / "ses-0" / "meg" / "sub-02_ses-0_task-3_meg.con"
    truncate(raw, fraction=0.8)
    assert main(["check", "--study", "gwilliams2022", "--data", str(root), "--no-signal"]) == 1
    out = capsys.readouterr().out
    assert f"{wav}: sound file is missing (played in sub-01_ses-0_task-1_events.tsv)" in out
    assert f"{raw}: damaged FIF file" in out
