"""MOUS (schoffelen2019) example layout: BIDS, CTF ``.ds`` (FIF stand-in) with triggers,
Presentation logs on a drifting clock, ``stimuli.txt`` and WebMAUS TextGrids."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pandas as pd

from . import _core as core

#: two CTF-275 sensors absent from the 273 of the example MOUS layout (which two are dead in
#: the real MOUS recordings is not documented; any two exercise the same code)
CTF_ABSENT = ("MRF66", "MLT37")

#: non-MEG channels of a MOUS CTF recording: stimulus channels (``UPPT001`` carries the
#: triggers), misc, 28 reference magnetometers and 8 EEG channels
CTF_EXTRA = (("UDIO001", "stim"), ("UPPT001", "stim"), ("UPPT002", "stim"),
             ("SCLK01-177", "misc"), ("HLC0011-4304", "misc")) + tuple(
    (f"{p}{i}-4304", "ref_meg") for p in ("BG", "BP", "BR") for i in (1, 2, 3)) + tuple(
    (f"{p}{i}-4304", "ref_meg") for p in ("G", "P", "Q") for i in (11, 12, 13, 22, 23)) + tuple(
    (f"R{i}-4304", "ref_meg") for i in (11, 12, 13, 22)) + tuple(
    (f"EEG{i:03d}-4304", "eeg") for i in range(57, 65))

#: MOUS trigger codes on ``UPPT001`` of the log rows the example layout writes
TRIGGERS = {"block": 10, "fix": 20, "start": 14, "onset": 1, "end": 15}


def ctf_info(sfreq: float = 1200.0) -> mne.Info:
    """The 273 axial gradiometers of a MOUS CTF recording (``mag``, named like
    ``MLC11-4304``, as MNE reads them), with positions."""
    from ..sensors import make_info

    info = make_info("CTF-275", sfreq)
    keep = [i for i, name in enumerate(info["ch_names"]) if name.split("-")[0] not in CTF_ABSENT]
    info = mne.pick_info(info, keep)
    mne.rename_channels(info, {name: f"{name.split('-')[0]}-4304" for name in info["ch_names"]})
    return info


def write_schoffelen2019(out: Path, seed: int = 0, n_subjects: int = 2,
                         n_sentences: int = 2) -> Path:
    """MOUS auditory layout: subjects ``A2002``, ``A2003``... (skipping those the paper
    excludes) each hear ``n_sentences`` sentences and as many word lists (Dutch), in a
    subject-specific order, in one sentence block (``ZINNEN``) and one word-list block
    (``WOORDEN``).

    Per subject: the CTF recording (FIF stand-in in the ``.ds`` folder) with triggers on
    ``UPPT001``, its ``events.tsv``, and the Presentation log ``sourcedata/meg_task/<id>-2-
    MEG-MOUS-Aud.log``; shared: ``stimuli/stimuli.txt``, the wavs and the WebMAUS TextGrids in
    ``derivatives/phonemes``. The MEG clock runs 20 ppm faster than the log clock, and the
    MEG lacks the trigger of the first "End of file" (as real recordings sometimes do).
    Returns the root.
    """
    from ...data.studies.schoffelen2019 import EXCLUDED

    root = Path(out)
    rng = np.random.default_rng(seed)
    texts = core.sentences(rng, core.DUTCH_SENTENCES)
    sentences = [next(texts) for _ in range(n_sentences)]
    stimuli = {i + 1: (text, "sentence") for i, text in enumerate(sentences)}
    for i in range(n_sentences):
        stimuli[180 + i + 1] = (core.word_list(rng, sentences[i:i + 1], n=5), "word_list")
    core.write_text(root / "stimuli" / "stimuli.txt",
                    "".join(f"{uid} {text}\n" for uid, (text, _) in stimuli.items()))
    spoken: dict[int, core.SpokenWav] = {}
    for uid, (text, condition) in stimuli.items():
        name = f"EQ_Ramp_Int2_Int1LPF{uid:03d}"
        spoken[uid] = core.speak_to_wav(root / "stimuli" / "audio_files" / f"{name}.wav",
                                        [(text, condition)], voice="nl", lead=0.1, pause=0.2)
        _write_textgrid(root / "derivatives" / "phonemes" / f"{name}.TextGrid",
                        spoken[uid].sequences[0], _duration(spoken[uid]))

    ids = (f"A{number}" for number in range(2002, 2126))
    subjects = [s for s in ids if s not in EXCLUDED][:n_subjects]
    core.write_bids_root(root, "MOUS (braindecode-speech example layout)", subjects,
                         age=rng.integers(18, 33, n_subjects), sex="F")
    info = ctf_info()
    for i, subject in enumerate(subjects):
        order = [list(rng.permutation([u for u, (_, c) in stimuli.items() if c == condition]))
                 for condition in ("sentence", "word_list")]
        blocks = [("ZINNEN", order[0]), ("WOORDEN", order[1])]
        if i % 2:
            blocks.reverse()
        _write_subject(root, subject, blocks, spoken, info, core.subject_seed(seed, i))
    return root


def _duration(spoken: core.SpokenWav) -> float:
    """Length of a stimulus wav as MOUS lists it, s (0.1 ms resolution)."""
    return round(spoken.duration, 4)


#: the pseudo phonemes (ARPAbet) as Dutch SAMPA symbols, as WebMAUS labels MOUS's phonemes
_SAMPA = {"ae": "A", "eh": "E", "ih": "I", "aa": "O", "ah": "Y", "hh": "h", "jh": "j"}


def _write_textgrid(path: Path, sequence: core.SpokenSequence, duration: float) -> None:
    """A WebMAUS TextGrid: tiers ``ORT-MAU`` (words), ``KAN-MAU`` and ``MAU`` (phonemes, Dutch
    SAMPA)."""
    from praatio import textgrid
    from praatio.utilities.constants import Interval

    words = [Interval(0.0, sequence.onsets[0], "")]
    phones = [Interval(0.0, sequence.onsets[0], "<p:>")]
    kan = [Interval(0.0, sequence.onsets[0], "")]
    for word, start, stop in zip(sequence.words, sequence.onsets, sequence.offsets):
        words.append(Interval(start, stop, word))
        letters = [(_SAMPA.get(p.split("_")[0], p.split("_")[0]), a, b)
                   for p, a, b in core.phonemes(word, start, stop)]
        kan.append(Interval(start, stop, " ".join(p for p, _, _ in letters)))
        phones += [Interval(a, b, p) for p, a, b in letters]
    grid = textgrid.Textgrid()
    for name, entries in (("ORT-MAU", words), ("KAN-MAU", kan), ("MAU", phones)):
        grid.addTier(textgrid.IntervalTier(name, entries, 0.0, duration))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(str(path), format="long_textgrid", includeBlankSpaces=True)


def _write_subject(root: Path, subject: str, blocks: list[tuple[str, list[int]]],
                   spoken: dict[int, core.SpokenWav], info: mne.Info, seed: int) -> None:
    """One subject's recording, ``events.tsv`` and Presentation log for ``blocks`` of
    ``(block code, stimulus ids)``."""
    sfreq = info["sfreq"]
    log: list[dict] = []  # rows of the log's first table, times in s on the log clock
    t, trial = 2.0, 1

    def add(event_type: str, code: str, time: float, trigger: int | None = None,
            duration: float | None = None) -> None:
        log.append({"trial": trial, "event_type": event_type, "code": code,
                    "time": round(time, 4), "duration": duration, "trigger": trigger})

    for block_code, uids in blocks:
        add("Picture", block_code, t, TRIGGERS["block"], 1.7)
        add("Picture", "blank", t + 1.7, duration=0.3)
        t += 2.0
        for uid in uids:
            trial += 1
            add("Picture", f"FIX {3500 + trial}", t, TRIGGERS["fix"], 0.6)
            trial += 1
            add("Sound", f"14 Start File {uid}.wav", t + 0.6, TRIGGERS["start"])
            audio_onset = t + 0.6 + 0.046
            add("Nothing", "1 Audio onset", audio_onset, TRIGGERS["onset"])
            end = audio_onset + _duration(spoken[uid])
            add("Nothing", "15 End of file", end, TRIGGERS["end"])
            trial += 1
            add("Picture", "blank", end + 0.05, duration=0.5)
            t = end + 0.8
    trial += 1
    add("Quit", "", t)

    slope, intercept = 1 + 2e-5, 1.0 - (1 + 2e-5) * 2.0  # MEG time of a log time
    meg_time = {id(row): slope * row["time"] + intercept for row in log}
    first_end = next(row for row in log if row["trigger"] == TRIGGERS["end"])
    triggers = [(int(round(meg_time[id(row)] * sfreq)), row["trigger"]) for row in log
                if row["trigger"] is not None and row is not first_end]
    events, sound_uid = [], None
    for row in log:
        if row["code"].startswith("14 Start File"):
            sound_uid = int(row["code"].split()[-1].removesuffix(".wav"))
        if row["code"] == "1 Audio onset":
            onset = meg_time[id(row)]
            events.append(core.sound_event(spoken[sound_uid].path, onset,
                                           _duration(spoken[sound_uid])))
            events += core.word_events(spoken[sound_uid].sequences[0], onset, str(sound_uid))
    n_times = int((max(meg_time.values()) + 1.0) * sfreq)
    stim = np.zeros(n_times)
    for sample, value in triggers:
        stim[sample:sample + int(0.02 * sfreq)] = value
    raw = core.meg_recording(info, CTF_EXTRA, events, n_times, seed, 0,
                             signals={"UPPT001": stim})
    meg = root / f"sub-{subject}" / "meg"
    ds = meg / f"sub-{subject}_task-auditory_meg.ds"
    core.save_fif(raw, ds / f"{ds.stem}.meg4")

    tsv = [{"onset": s / sfreq, "duration": None, "sample": s + 1, "type": "UPPT001",
            "value": str(v)} for s, v in triggers]
    tsv += [{"onset": round(meg_time[id(row)], 4), "duration": None,
             "sample": int(round(meg_time[id(row)] * sfreq)) + 1, "type": row["event_type"],
             "value": row["code"]} for row in log if row["event_type"] != "Quit"]
    core.write_tsv(meg / f"sub-{subject}_task-auditory_events.tsv",
                   pd.DataFrame(tsv).sort_values("onset", kind="stable"))
    core.write_text(root / "sourcedata" / "meg_task" / f"{subject}-2-MEG-MOUS-Aud.log",
                    _presentation_log(subject, log))


def _presentation_log(subject: str, log: list[dict]) -> str:
    """A Presentation log file: header, then the two tab-separated tables (times in 0.1 ms)."""

    def ticks(seconds: float | None) -> str:
        return "" if seconds is None else str(int(round(seconds * 1e4)))

    lines = ["Scenario - MEG-MOUS-Aud", "Logfile written - 03/20/2014 14:42:31", "",
             "\t".join(["Subject", "Trial", "Event Type", "Code", "Time", "TTime", "Uncertainty",
                        "Duration", "Uncertainty", "ReqTime", "ReqDur", "Stim Type",
                        "Pair Index"]), ""]
    trial_start: dict[int, float] = {}
    for row in log:
        start = trial_start.setdefault(row["trial"], row["time"])
        if row["event_type"] == "Quit":
            lines.append("\t".join([subject, str(row["trial"]), "Quit", "", ticks(row["time"]),
                                    ticks(row["time"] - start)]))
            continue
        picture = row["duration"] is not None
        lines.append("\t".join([
            subject, str(row["trial"]), row["event_type"], row["code"], ticks(row["time"]),
            ticks(row["time"] - start), "2" if picture else "1", ticks(row["duration"]),
            "3" if picture else "", ticks(row["time"] - start), "next" if picture else "",
            "other", "0"]))
    lines += ["", "", "\t".join(["Event Type", "Code", "Type", "Response", "RT",
                                 "RT Uncertainty", "Time", "Uncertainty", "Duration",
                                 "Uncertainty", "ReqTime", "ReqDur"]), ""]
    for row in log:
        if row["event_type"] == "Quit":
            continue
        picture = row["duration"] is not None
        start = trial_start[row["trial"]]
        lines.append("\t".join([
            row["event_type"], row["code"], "other", "", "", "", ticks(row["time"]),
            "2" if picture else "1", ticks(row["duration"]), "3" if picture else "",
            ticks(row["time"] - start), "next" if picture else ""]))
    return "\n".join(lines) + "\n"
