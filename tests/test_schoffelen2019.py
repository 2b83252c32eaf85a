"""MOUS adapter on the example layout: Presentation log parsing, log-to-MEG clock alignment,
TextGrid words, stimulus ids, exclusions, and bad inputs."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from braindecode_speech.data.studies import get
from braindecode_speech.data.studies.presentation_log import (
    LogError,
    fit_clock,
    read_presentation_log,
)
from braindecode_speech.data.studies.schoffelen2019 import Schoffelen2019, trigger_code
from braindecode_speech.data.study import StudyError

STUDY = "schoffelen2019"  # the example layout of the fixtures root and copy

# the example layout's clocks: MEG time = SLOPE * log time + INTERCEPT (s)
SLOPE = 1 + 2e-5
INTERCEPT = 1.0 - SLOPE * 2.0


def _log(root: Path, subject: str = "A2002") -> Path:
    return root / "sourcedata" / "meg_task" / f"{subject}-2-MEG-MOUS-Aud.log"


def test_reads_the_first_table_of_a_presentation_log(tmp_path):
    path = tmp_path / "A2002-1-MEG-MOUS-Aud.log"
    header = "Subject\tTrial\tEvent Type\tCode\tTime\tTTime\tUncertainty\tDuration\t" \
             "Uncertainty\tReqTime\tReqDur\tStim Type\tPair Index"
    path.write_text(
        "Scenario - MEG-MOUS-Aud\nLogfile written - 03/20/2014 14:42:31\n\n" + header + "\n\n"
        "A2002\t1\tPicture\tZINNEN\t-6500\t3167\t2\t16998\t4\t3000\tnext\tother\t0\n"
        "A2002\t3\tSound\t14 Start File 186.wav\t45904\t0\t2\t\t\t0\t\tother\t0\n"
        "A2002\t3\tNothing\t1 Audio\n onset\t46364\t460\t1\t\t\t460\t\tother\t0\n"
        "A2002\t528\tQuit\t\t24142047\t130009\n\n\n"
        "Event Type\tCode\tType\tResponse\tRT\tRT Uncertainty\tTime\n\nPicture\tZINNEN\n")
    log = read_presentation_log(path)
    assert list(log["code"]) == ["ZINNEN", "14 Start File 186.wav", "1 Audio onset", ""]
    assert list(log["event_type"]) == ["Picture", "Sound", "Nothing", "Quit"]
    assert list(log["time"]) == pytest.approx([-0.65, 4.5904, 4.6364, 2414.2047])
    assert log["duration"][0] == pytest.approx(1.6998)
    assert {"time_uncertainty", "duration_uncertainty", "req_time"} <= set(log.columns)
    with pytest.raises(LogError, match="not a Presentation log"):
        (tmp_path / "bad.log").write_text("hello")
        read_presentation_log(tmp_path / "bad.log")


def test_trigger_codes_of_log_rows():
    assert [trigger_code(c) for c in ("FIX 3516", "ZINNEN", "WOORDEN", "14 Start File 186.wav",
                                      "1 Audio onset", "15 End of file", "2 target", "blank",
                                      "")] == [20, 10, 10, 14, 1, 15, None, None, None]


def test_clock_fit_skips_missing_and_extra_triggers_and_rejects_poor_fits():
    rng = np.random.default_rng(0)
    log_times = np.sort(rng.uniform(0, 600, 60))
    codes = rng.choice([1, 10, 14, 15, 20], 60)
    meg_times = 1.00001 * log_times + 3.0 + rng.uniform(-4e-4, 4e-4, 60)
    keep = np.ones(60, bool)
    keep[[5, 17, 40]] = False  # triggers missing from the MEG
    meg_t = np.insert(meg_times[keep], 10, 99.0)  # and one spurious trigger
    meg_c = np.insert(codes[keep], 10, 14)
    fit = fit_clock(log_times, codes, meg_t, meg_c, source="test")
    assert fit.slope == pytest.approx(1.00001, abs=1e-6)
    assert fit.intercept == pytest.approx(3.0, abs=1e-3)
    assert fit.n_matched >= 55 and fit.max_error < 1e-3
    with pytest.raises(LogError, match="test: poor log-to-MEG alignment"):
        fit_clock(log_times, codes, meg_times + rng.uniform(-1, 1, 60), codes, source="test")
    with pytest.raises(LogError, match="only 0 log events match"):
        fit_clock(log_times, codes, meg_times, codes + 100, source="test")


def test_discovers_auditory_subjects_and_skips_excluded_ones(copy):
    assert [r.subject for r in get("schoffelen2019", copy).recordings()] == ["A2002", "A2003"]
    shutil.copytree(copy / "sub-A2002", copy / "sub-A2011")  # excluded by the paper
    shutil.copytree(copy / "sub-A2002", copy / "sub-V1001")  # visual task: not read
    study = Schoffelen2019(copy)
    assert [r.subject for r in study.recordings()] == ["A2002", "A2003"]
    assert study.excluded == ["A2011"] and study.skipped == []
    study = Schoffelen2019(copy, selection="all", strict=False)
    assert [r.subject for r in study.recordings()] == ["A2002", "A2003"]
    assert [p.name for p, _ in study.skipped] == ["sub-A2011_task-auditory_meg.ds"]


def test_keeps_the_273_axial_gradiometers_at_1200_hz(root):
    raw = get("schoffelen2019", root).recordings()[0].raw()
    assert raw.info["sfreq"] == 1200.0 and len(raw.ch_names) == 273
    assert all(name.endswith("-4304") and name[0] == "M" for name in raw.ch_names)
    assert raw.copy().pick("data").ch_names == raw.ch_names  # refs, EEG, stim dropped
    assert set(raw.get_channel_types()) == {"mag"}


def test_sounds_start_at_the_audio_onset_row_on_the_meg_clock(root):
    log = read_presentation_log(_log(root))
    audio_onsets = log.loc[log["code"] == "1 Audio onset", "time"].to_numpy()
    start_files = log.loc[log["code"].str.startswith("14 Start File"), "code"]
    events = get("schoffelen2019", root).recordings()[0].events()
    sounds = events[events["kind"] == "sound"]
    # hand-computed: the layout's clock line applied to the log's Audio onset times
    np.testing.assert_allclose(sounds["onset"], SLOPE * audio_onsets + INTERCEPT, atol=1e-3)
    assert list(sounds["sequence_id"]) == [c.split()[-1].removesuffix(".wav")
                                           for c in start_files]
    assert all(Path(f).name == f"EQ_Ramp_Int2_Int1LPF{int(s):03d}.wav"
               for f, s in zip(sounds["filepath"], sounds["sequence_id"]))
    conditions = dict(zip(sounds["sequence_id"].astype(int), sounds["condition"]))
    assert {c for uid, c in conditions.items() if uid < 180} == {"sentence"}
    assert {c for uid, c in conditions.items() if uid > 180} == {"word_list"}


def test_words_come_from_the_textgrids(root):
    from praatio import textgrid

    events = get("schoffelen2019", root).recordings()[0].events()
    sound = events[events["kind"] == "sound"].iloc[0]
    uid = int(sound["sequence_id"])
    grid = textgrid.openTextgrid(
        str(root / "derivatives/phonemes" / f"EQ_Ramp_Int2_Int1LPF{uid:03d}.TextGrid"),
        includeEmptyIntervals=False)
    intervals = grid.getTier("ORT-MAU").entries
    words = events[(events["kind"] == "word") & (events["sequence_id"] == str(uid))]
    assert list(words["word"]) == [i.label for i in intervals]
    assert list(words["onset"]) == pytest.approx([sound["onset"] + i.start for i in intervals])
    assert list(words["word_index"]) == list(range(len(intervals)))
    text = dict(line.split(" ", 1) for line in
                (root / "stimuli/stimuli.txt").read_text().splitlines())
    assert " ".join(words["word"]) == text[str(uid)]
    phonemes = events[events["kind"] == "phoneme"]
    assert "<p:>" not in set(phonemes["phoneme"]) and len(phonemes) > len(words)


def test_sentence_ids_are_identical_across_subjects(root):
    tables = []
    for rec in get("schoffelen2019", root).recordings():
        words = rec.events().query("kind == 'word'")
        tables.append({sid: list(p["word"]) for sid, p in words.groupby("sequence_id")})
    assert tables[0] == tables[1] and len(tables[0]) == 4


def test_without_textgrids_only_sounds_and_a_warning(copy, caplog):
    shutil.rmtree(copy / "derivatives")
    with caplog.at_level(logging.WARNING):
        events = get("schoffelen2019", copy).recordings()[0].events()
    assert set(events["kind"]) == {"sound"}
    assert "WebMAUS TextGrids" in caplog.text and "no TextGrid" in caplog.text


def test_poor_alignment_is_an_error_naming_the_files(copy):
    path = _log(copy)
    lines = path.read_text().splitlines()
    rng = np.random.default_rng(0)
    for i, line in enumerate(lines):  # scramble the times of the first table
        fields = line.split("\t")
        if fields[0] == "A2002" and len(fields) > 5 and fields[4].lstrip("-").isdigit():
            fields[4] = str(int(fields[4]) + int(rng.integers(-20000, 20000)))
            lines[i] = "\t".join(fields)
    path.write_text("\n".join(lines) + "\n")
    rec = get("schoffelen2019", copy).recordings()[0]
    with pytest.raises(StudyError, match="MEG-MOUS-Aud.log vs .*_meg.ds: poor log-to-MEG"):
        rec.events()


def test_missing_files_raise_when_strict_and_are_skipped_otherwise(copy):
    wav = copy / "stimuli/audio_files/EQ_Ramp_Int2_Int1LPF001.wav"
    wav.unlink()
    with pytest.raises(StudyError, match="LPF001.wav: sound file is missing"):
        get("schoffelen2019", copy).recordings()
    _log(copy, "A2003").unlink()
    study = Schoffelen2019(copy, strict=False)
    assert study.recordings() == []
    assert study.skipped[0] == (wav, "sound file is missing (played in "
                                     "A2002-2-MEG-MOUS-Aud.log)")
    assert study.skipped[1][1] == "Presentation log is missing"


def test_stimulus_missing_from_the_stimulus_list(copy):
    text = copy / "stimuli" / "stimuli.txt"
    text.write_text("".join(line + "\n" for line in text.read_text().splitlines()
                            if not line.startswith("2 ")))
    with pytest.raises(StudyError, match=r"stimulus ids \[2\] are not in stimuli.txt"):
        get("schoffelen2019", copy).recordings()

