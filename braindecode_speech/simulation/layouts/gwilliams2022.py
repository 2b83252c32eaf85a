"""MEG-MASC (gwilliams2022) example layout: BIDS, KIT ``.con`` (FIF stand-in), dict-string
``trial_type`` in ``events.tsv``, story wavs in chunks."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pandas as pd
import soundfile

from . import _core as core

#: KIT reference magnetometers and misc channels, present in MEG-MASC ``.con`` files
KIT_EXTRA = tuple((f"MEG {i:03d}", "ref_meg") for i in range(209, 225)) + tuple(
    (f"MISC {i:03d}", "misc") for i in range(1, 33))


def kit_info(sfreq: float = 1000.0) -> mne.Info:
    """The 208 axial gradiometers ``MEG 001``..``MEG 208`` of MEG-MASC's KIT system (typed
    ``mag``, as MNE reads them), with positions."""
    from ..sensors import make_info

    return make_info("KIT-208", sfreq)


def write_gwilliams2022(out: Path, seed: int = 0, n_subjects: int = 2,
                        n_sentences: int = 1) -> Path:
    """MEG-MASC layout: ``n_subjects`` subjects (``sub-02`` with one session, the others with
    two), 4 stories (tasks) of ``n_sentences`` sentences per wav chunk; lw1 has two chunks,
    the first with a word list, The_Black_Willow has pseudo-words. Returns the BIDS root."""
    from ...data.studies.gwilliams2022 import STORIES

    root = Path(out)
    rng = np.random.default_rng(seed)
    texts = core.sentences(rng, core.ENGLISH_SENTENCES)
    chunks: dict[int, list[core.SpokenWav]] = {}
    for task, story in enumerate(STORIES):
        chunks[task] = []
        story_texts = []
        for k in range(2 if task == 0 else 1):
            sentences = [next(texts) for _ in range(n_sentences)]
            items = [(s, "sentence") for s in sentences]
            if task == k == 0:
                items.append((core.word_list(rng, sentences), "word_list"))
            if task == 3:
                items.append((" ".join(rng.choice(core.PSEUDO_WORDS, 3, replace=False)),
                              "pseudo_words"))
            spoken = core.speak_to_wav(root / "stimuli" / "audio" / f"{story.lower()}_{k}.wav",
                                       items, voice="en-us")
            chunks[task].append(spoken)
            story_texts.append(". ".join(sentences) + ".")
            core.write_text(root / "stimuli" / "text_with_wordlists" /
                            f"{story}_produced_{k}.txt",
                            "\n".join(" ".join(s.words) for s in spoken.sequences) + "\n")
        core.write_text(root / "stimuli" / "text" / f"{story}.txt", " ".join(story_texts) + "\n")
    full = [soundfile.read(str(chunk.path))[0] for chunk in chunks[0]]
    core.write_wav(root / "stimuli" / "audio" / "lw1.wav", np.concatenate(full),
                   chunks[0][0].sample_rate)

    subjects = [f"{i:02d}" for i in range(1, n_subjects + 1)]
    sessions = {s: ["0"] if s == "02" else ["0", "1"] for s in subjects}
    core.write_bids_root(
        root, "MEG-MASC (braindecode-speech example layout)", subjects,
        age=rng.integers(20, 40, len(subjects)),
        sex=["F", "M"] * (len(subjects) // 2) + ["F"] * (len(subjects) % 2), hand="R",
        task_order=[str([int(t) for t in rng.permutation(4)]) for _ in subjects],
        n_sessions=[len(sessions[s]) for s in subjects], mri="no", native_english_speaker="yes")
    core.write_json(root / "participants.json", {"task_order": {
        "Description": "order in which the stories (task indices) were presented"}})
    (root / "README").write_text("MEG-MASC example layout written by braindecode-speech.\n")
    info = kit_info()
    for i, subject in enumerate(subjects):
        for session in sessions[subject]:
            folder = root / f"sub-{subject}" / f"ses-{session}"
            scans = []
            for task, story in enumerate(STORIES):
                stem = f"sub-{subject}_ses-{session}_task-{task}"
                n_times = _write_recording(folder / "meg", stem, story, task, chunks[task], info,
                                           core.subject_seed(seed, i), 4 * int(session) + task)
                scans.append({"filename": f"meg/{stem}_meg.con",
                              "acq_time": f"2019-0{1 + i % 9}-1{session}T10:0{task}:00"})
                core.write_json(folder / "meg" / f"{stem}_meg.json", {
                    "TaskName": str(task), "SamplingFrequency": info["sfreq"],
                    "Manufacturer": "KIT/Yokogawa", "PowerLineFrequency": 50.0,
                    "MEGChannelCount": 208, "MEGREFChannelCount": 16,
                    "MiscChannelCount": 32, "TriggerChannelCount": 0,
                    "RecordingDuration": n_times / info["sfreq"], "RecordingType": "continuous"})
                core.write_tsv(folder / "meg" / f"{stem}_channels.tsv", _channels(info))
            core.write_tsv(folder / f"sub-{subject}_ses-{session}_scans.tsv",
                           pd.DataFrame(scans))
            core.write_json(folder / "meg" / f"sub-{subject}_ses-{session}_coordsystem.json",
                            {"MEGCoordinateSystem": "KitYokogawa", "MEGCoordinateUnits": "m"})
    return root


def _channels(info: mne.Info) -> pd.DataFrame:
    """The ``channels.tsv`` table: the gradiometers of ``info``, then :data:`KIT_EXTRA`."""
    kinds = {"mag": ("MEGGRADAXIAL", "T"), "ref_meg": ("MEGREFMAG", "T"), "misc": ("MISC", "V")}
    rows = []
    channels = [(name, "mag") for name in info["ch_names"]] + list(KIT_EXTRA)
    for name, ch_type in channels:
        kind, unit = kinds[ch_type]
        rows.append({"name": name, "type": kind, "units": unit, "low_cutoff": 0.03,
                     "high_cutoff": 200.0, "description": "n/a",
                     "sampling_frequency": info["sfreq"], "status": "good",
                     "status_description": "n/a"})
    return pd.DataFrame(rows)


def _write_recording(folder: Path, stem: str, story: str, task: int,
                     chunks: list[core.SpokenWav], info: mne.Info, subject: int,
                     recording: int) -> int:
    """Write one MEG-MASC recording (raw + events.tsv); return its number of samples."""
    sfreq = info["sfreq"]
    tsv, events = [], []
    onset, sequence = 0.5, 0
    for k, chunk in enumerate(chunks):
        base = {"story": story, "story_uid": task}
        tsv.append((onset, 0.0, {**base, "sound_id": float(k), "kind": "sound", "start": 0.0,
                                 "sound": f"stimuli/audio/{story}_{k}.0.wav"}))
        events.append(core.sound_event(chunk.path, onset, chunk.duration))
        for spoken in chunk.sequences:
            for index, (word, start, stop) in enumerate(
                    zip(spoken.words, spoken.onsets, spoken.offsets)):
                word_base = {**base, "sound_id": k, "start": start,
                             "sound": f"stimuli/audio/{story}_{k}.wav"}
                tsv.append((round(onset + start, 3), round(stop - start, 3), {
                    **word_base, "kind": "word", "word": word, "sequence_id": sequence,
                    "condition": spoken.condition, "word_index": index, "speech_rate": 205.0,
                    "voice": "Ava", "pronounced": 1.0}))
                for phoneme, p_start, p_stop in core.phonemes(word, start, stop):
                    tsv.append((round(onset + p_start, 3), round(p_stop - p_start, 3), {
                        **word_base, "kind": "phoneme", "start": p_start, "phoneme": phoneme,
                        "sequence_id": sequence, "condition": spoken.condition,
                        "word_index": index, "pronounced": 1.0}))
            events += core.word_events(spoken, onset, f"{story}:{sequence}", decimals=3)
            sequence += 1
        onset = round(onset + chunk.duration + 0.5, 3)
    n_times = int((onset + 0.5) * sfreq)
    raw = core.meg_recording(info, KIT_EXTRA, events, n_times, subject, recording)
    core.save_fif(raw, folder / f"{stem}_meg.con")
    descriptions = [repr(d) for _, _, d in tsv]
    ids = {d: i + 1 for i, d in enumerate(dict.fromkeys(descriptions))}
    core.write_tsv(folder / f"{stem}_events.tsv", pd.DataFrame({
        "onset": [o for o, _, _ in tsv], "duration": [d for _, d, _ in tsv],
        "trial_type": descriptions, "value": [ids[d] for d in descriptions],
        "sample": [int(round(o * sfreq)) for o, _, _ in tsv]}))
    return n_times
