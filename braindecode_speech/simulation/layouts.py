"""Example layouts: tiny synthetic copies of the four public studies, file for file.

``write_example_layout(study, out)`` writes a few seconds of data for two subjects at the real
paths, in the real formats: BIDS sidecars, ``events.tsv`` with dict-string ``trial_type``
(MEG-MASC), Presentation logs and WebMAUS TextGrids (MOUS), MATLAB v5 files with the real
variable and field names (Broderick, Brennan), CSVs and wavs. The adapters read them with the
same code as the real data; the tests and ``braindecode-speech example-layout`` use them.

Content:

- speech: English / Dutch sentences spoken by eSpeak NG
  (:mod:`braindecode_speech.simulation.tts`), so word onsets are exact; word lists and
  pseudo-words are spoken the same way. Phoneme labels are letters with ARPAbet-style
  position suffixes (``t_B``), timed by splitting each word evenly.
- brain signals: the simulated-study forward model
  (:func:`braindecode_speech.simulation.simulate_brain_signals`) on sensor positions of the
  real systems (KIT-AD and CTF-275 layouts projected on a helmet, MNE's ``easycap-M10`` and
  ``biosemi128`` montages). Reference, misc and stimulus channels are written too, so that the
  adapters' channel selection is exercised.
- KIT ``.con`` and CTF ``.ds`` cannot be written by MNE: a FIF file is written at the ``.con``
  path, and as ``<name>.meg4`` inside the ``.ds`` folder; the adapters recognise FIF content
  (:mod:`braindecode_speech.data.studies._readers`). KIT marker/head-shape files and the CTF
  ``.res4``/``.hc`` files are not written (the adapters do not read them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import scipy.io
import scipy.signal
import soundfile
from mne.io.constants import FIFF

from ..data.events import make_events

__all__ = ["LAYOUTS", "write_example_layout", "write_gwilliams2022", "write_schoffelen2019",
           "write_broderick2019", "write_brennan2019"]

# ---------------------------------------------------------------------------------------------
# Speech

ENGLISH_SENTENCES = (
    "The old man looked at the sea",
    "A small boat waited near the shore",
    "She opened the door and smiled",
    "The children ran across the green field",
    "Rain fell softly over quiet streets",
    "He carried the heavy box upstairs",
    "The white rabbit checked his watch",
    "Birds sang among tall oak trees",
    "My sister painted the kitchen blue",
    "The train left the station at noon",
    "A cold wind blew over the hills",
    "They shared bread and cheese for lunch",
    "The baker sold warm loaves every morning",
    "A young fox slept under the bridge",
    "Her grandfather told stories by the fire",
    "The river flooded the lower meadow",
    "We waited for the bus in the snow",
    "The queen wore a crown of silver",
    "Two dogs chased a ball along the beach",
    "The lamp flickered during the storm",
    "His letter arrived late on Friday",
    "The garden smelled of roses and mint",
    "A tired horse pulled the cart home",
    "The students laughed at the old joke",
    "Snow covered the roofs of the village",
    "The captain steered the ship through fog",
    "She found a key beneath the stairs",
    "The market was crowded with farmers",
    "An owl called from the dark forest",
    "The doctor listened to his slow heart",
    "We painted the fence before the summer",
    "The clock in the hall struck nine",
    "A girl in red boots jumped in puddles",
    "The cook burned the soup again",
    "Leaves drifted slowly down the stream",
    "The mayor opened the new library",
)
# MOUS sentences are 9-15 words long (3-5 s of speech)
DUTCH_SENTENCES = (
    "De man liep langzaam naar het oude huis aan het einde van de straat",
    "Het meisje gaf de hond van de buren een rode bal om mee te spelen",
    "Mijn broer las gisteren een dik boek in de tuin achter het huis",
    "De bakker opent zijn winkel elke ochtend vroeg voor de mensen uit het dorp",
    "Een grijze kat sliep de hele middag op de warme stoel bij het raam",
    "Wij fietsen op zaterdag samen met onze vrienden naar de markt in de stad",
    "De leraar schreef een lange zin op het bord voordat de les begon",
    "Het water in de brede rivier was veel te koud om in te zwemmen",
    "De boer bracht de koeien in de avond terug naar de grote stal",
    "Mijn oma bakte een appeltaart voor het feest van haar kleinzoon",
    "De trein naar Amsterdam vertrok met een uur vertraging van het station",
    "Zij zocht haar sleutels overal maar vond ze uiteindelijk in haar jas",
    "De kinderen bouwden een hoge toren van zand op het strand",
    "Na het concert liepen de muzikanten moe maar blij naar hun hotel",
    "De dokter zei dat de jongen een week in bed moest blijven",
    "In de winter bevriest het meer achter de kerk bijna elk jaar",
)
PSEUDO_WORDS = ("blicket", "frampel", "tovish", "gladder", "morpet", "snarve")


@dataclass
class SpokenSequence:
    """A sentence or word list inside a wav file: words with onsets/offsets in s."""

    words: list[str]
    onsets: list[float]
    offsets: list[float]
    condition: str = "sentence"


def _speak(texts: Sequence[tuple[str, str]], voice: str, lead: float = 0.3,
           pause: float = 0.4) -> tuple[np.ndarray, int, list[SpokenSequence]]:
    """Speak ``(text, condition)`` items one after the other into one waveform.

    Returns the waveform (float32, 16 kHz), its sample rate and the timed sequences (times
    rounded to the ms, relative to the start of the waveform).
    """
    from .tts import SAMPLE_RATE, synthesize

    parts = [np.zeros(int(lead * SAMPLE_RATE), np.float32)]
    position = lead
    sequences = []
    for text, condition in texts:
        spoken = synthesize(text, voice=voice)
        onsets = [round(position + float(t), 3) for t in spoken.onsets]
        offsets = onsets[1:] + [round(position + spoken.duration, 3)]
        sequences.append(SpokenSequence(list(spoken.words), onsets, offsets, condition))
        parts += [spoken.audio.astype(np.float32), np.zeros(int(pause * SAMPLE_RATE), np.float32)]
        position += spoken.duration + pause
    return np.concatenate(parts), SAMPLE_RATE, sequences


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), audio, sample_rate, subtype="PCM_16")


def _phonemes(word: str, onset: float, offset: float) -> list[tuple[str, float, float]]:
    """Pseudo phonemes of a word: its letters with position suffixes, evenly timed."""
    letters = [c for c in word.lower() if c.isalpha()] or ["ah"]
    bounds = np.linspace(onset, offset, len(letters) + 1)
    out = []
    for i, letter in enumerate(letters):
        suffix = "S" if len(letters) == 1 else "B" if i == 0 else "E" if i == len(letters) - 1 \
            else "I"
        out.append((f"{letter}_{suffix}", round(float(bounds[i]), 4),
                    round(float(bounds[i + 1]), 4)))
    return out


def _sentences(rng: np.random.Generator, bank: Sequence[str]) -> Iterator[str]:
    """Endless sentences: the bank in a random order, reshuffled at each pass (so a long
    layout repeats sentences, as real stimuli sometimes do)."""
    while True:
        yield from rng.permutation(list(bank)).tolist()


def _word_list(rng: np.random.Generator, sentences: Sequence[str], n: int = 4) -> str:
    """Content words (longer than 3 letters) of ``sentences``, shuffled."""
    words = sorted({w for s in sentences for w in s.split() if len(w) > 3})
    return " ".join(rng.choice(words, size=min(n, len(words)), replace=False))


# ---------------------------------------------------------------------------------------------
# Sensors and raw files


def kit_info(sfreq: float = 1000.0) -> mne.Info:
    """The 208 axial gradiometers ``MEG 001``..``MEG 208`` of MEG-MASC's KIT system (typed
    ``mag``, as MNE reads them), with positions."""
    from .sensors import make_info

    return make_info("KIT-208", sfreq)


#: KIT reference magnetometers and misc channels, present in MEG-MASC ``.con`` files
KIT_EXTRA = tuple((f"MEG {i:03d}", "ref_meg") for i in range(209, 225)) + tuple(
    (f"MISC {i:03d}", "misc") for i in range(1, 33))

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


def ctf_info(sfreq: float = 1200.0) -> mne.Info:
    """The 273 axial gradiometers of a MOUS CTF recording (``mag``, named like
    ``MLC11-4304``, as MNE reads them), with positions."""
    from .sensors import make_info

    info = make_info("CTF-275", sfreq)
    keep = [i for i, name in enumerate(info["ch_names"]) if name.split("-")[0] not in CTF_ABSENT]
    info = mne.pick_info(info, keep)
    mne.rename_channels(info, {name: f"{name.split('-')[0]}-4304" for name in info["ch_names"]})
    return info


def eeg_info(montage: str, sfreq: float, exclude: Sequence[str] = ()) -> mne.Info:
    """EEG channels of MNE's standard ``montage`` (minus ``exclude``), with positions."""
    from .sensors import make_info

    info = make_info(montage, sfreq)
    return mne.pick_info(info, [i for i, n in enumerate(info["ch_names"]) if n not in exclude])


def _simulate(info: mne.Info, events: list[dict], n_times: int, subject: int,
              recording: int) -> np.ndarray:
    """Brain signals ``[n_channels, n_times]`` (SI units) of the channels of ``info`` for the
    common-schema event rows; ``subject`` seeds the simulated brain, ``recording`` the noise."""
    from . import simulate_brain_signals

    return np.asarray(simulate_brain_signals(info, make_events(events), n_times, seed=subject,
                                             recording=recording))


def _meg_recording(info: mne.Info, extra: Sequence[tuple[str, str]], events: list[dict],
                   n_times: int, subject: int, recording: int,
                   signals: dict[str, np.ndarray] | None = None) -> mne.io.RawArray:
    """Simulated MEG on the sensors of ``info``, plus the ``extra`` ``(name, type)`` channels:
    small noise on references, the given ``signals`` (e.g. triggers), zeros elsewhere."""
    rng = np.random.default_rng([subject, recording])
    raw = mne.io.RawArray(_simulate(info, events, n_times, subject, recording), info,
                          verbose="error")
    data = np.zeros((len(extra), n_times))
    for i, (name, ch_type) in enumerate(extra):
        if signals and name in signals:
            data[i] = signals[name]
        elif ch_type == "ref_meg":
            data[i] = 1e-13 * rng.standard_normal(n_times)
    extra_info = mne.create_info([n for n, _ in extra], info["sfreq"], [t for _, t in extra])
    raw.add_channels([mne.io.RawArray(data, extra_info, verbose="error")],
                     force_update_info=True)
    return raw


def _save_fif(raw: mne.io.BaseRaw, path: Path) -> None:
    """Save ``raw`` as FIF at ``path`` (any name) with 16-bit integer samples, as the real
    systems store integers: each channel's calibration makes its peak use the int16 range."""
    raw = raw.copy()
    peak = np.abs(raw.get_data()).max(axis=1)
    for ch, value in zip(raw.info["chs"], peak):
        if ch["kind"] != FIFF.FIFFV_STIM_CH:
            ch["cal"], ch["range"] = (value / 32000 if value > 0 else 1.0), 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp_raw.fif")
    raw.save(tmp, fmt="short", overwrite=True, verbose="error")
    os.replace(tmp, path)


def _write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")


def _write_tsv(path: Path, table: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")


def _savemat(path: Path, variables: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, variables, format="5", oned_as="column")


def _cell(values: Sequence) -> np.ndarray:
    """A MATLAB cell column (``N x 1``) for :func:`scipy.io.savemat`."""
    cell = np.empty((len(values), 1), dtype=object)
    for i, value in enumerate(values):
        cell[i, 0] = value
    return cell


def _dataset_description(root: Path, name: str) -> None:
    _write_json(root / "dataset_description.json",
                {"Name": name, "BIDSVersion": "1.6.0", "DatasetType": "raw",
                 "GeneratedBy": [{"Name": "braindecode-speech example-layout"}]})


# ---------------------------------------------------------------------------------------------
# MEG-MASC (gwilliams2022)


def write_gwilliams2022(out: Path, seed: int = 0, n_subjects: int = 2,
                        n_sentences: int = 1) -> Path:
    """MEG-MASC layout: ``n_subjects`` subjects (``sub-02`` with one session, the others with
    two), 4 stories (tasks) of ``n_sentences`` sentences per wav chunk; lw1 has two chunks,
    the first with a word list, The_Black_Willow has pseudo-words. Returns the BIDS root."""
    from ..data.studies.gwilliams2022 import STORIES

    root = Path(out)
    rng = np.random.default_rng(seed)
    texts = _sentences(rng, ENGLISH_SENTENCES)
    chunks: dict[int, list[tuple[Path, float, list[SpokenSequence]]]] = {}
    for task, story in enumerate(STORIES):
        chunks[task] = []
        story_texts = []
        for k in range(2 if task == 0 else 1):
            sentences = [next(texts) for _ in range(n_sentences)]
            items = [(s, "sentence") for s in sentences]
            if task == k == 0:
                items.append((_word_list(rng, sentences), "word_list"))
            if task == 3:
                items.append((" ".join(rng.choice(PSEUDO_WORDS, 3, replace=False)),
                              "pseudo_words"))
            audio, sample_rate, sequences = _speak(items, voice="en-us")
            wav = root / "stimuli" / "audio" / f"{story.lower()}_{k}.wav"
            _write_wav(wav, audio, sample_rate)
            chunks[task].append((wav, len(audio) / sample_rate, sequences))
            story_texts.append(". ".join(sentences) + ".")
            (root / "stimuli" / "text_with_wordlists").mkdir(parents=True, exist_ok=True)
            (root / "stimuli" / "text_with_wordlists" / f"{story}_produced_{k}.txt").write_text(
                "\n".join(" ".join(s.words) for s in sequences) + "\n")
        (root / "stimuli" / "text").mkdir(parents=True, exist_ok=True)
        (root / "stimuli" / "text" / f"{story}.txt").write_text(" ".join(story_texts) + "\n")
    full = [soundfile.read(str(wav))[0] for wav, _, _ in chunks[0]]
    _write_wav(root / "stimuli" / "audio" / "lw1.wav", np.concatenate(full), sample_rate)

    _dataset_description(root, "MEG-MASC (braindecode-speech example layout)")
    subjects = [f"{i:02d}" for i in range(1, n_subjects + 1)]
    sessions = {s: ["0"] if s == "02" else ["0", "1"] for s in subjects}
    _write_tsv(root / "participants.tsv", pd.DataFrame({
        "participant_id": [f"sub-{s}" for s in subjects],
        "age": rng.integers(20, 40, len(subjects)),
        "sex": ["F", "M"] * (len(subjects) // 2) + ["F"] * (len(subjects) % 2),
        "hand": "R",
        "task_order": [str([int(t) for t in rng.permutation(4)]) for _ in subjects],
        "n_sessions": [len(sessions[s]) for s in subjects],
        "mri": "no", "native_english_speaker": "yes"}))
    _write_json(root / "participants.json", {"task_order": {
        "Description": "order in which the stories (task indices) were presented"}})
    (root / "README").write_text("MEG-MASC example layout written by braindecode-speech.\n")
    info = kit_info()
    for i, subject in enumerate(subjects):
        for session in sessions[subject]:
            folder = root / f"sub-{subject}" / f"ses-{session}"
            scans = []
            for task, story in enumerate(STORIES):
                stem = f"sub-{subject}_ses-{session}_task-{task}"
                n_times = _write_masc_recording(folder / "meg", stem, story, task,
                                                chunks[task], info, seed * 1000 + i,
                                                4 * int(session) + task)
                scans.append({"filename": f"meg/{stem}_meg.con",
                              "acq_time": f"2019-0{1 + i % 9}-1{session}T10:0{task}:00"})
                _write_json(folder / "meg" / f"{stem}_meg.json", {
                    "TaskName": str(task), "SamplingFrequency": info["sfreq"],
                    "Manufacturer": "KIT/Yokogawa", "PowerLineFrequency": 50.0,
                    "MEGChannelCount": 208, "MEGREFChannelCount": 16,
                    "MiscChannelCount": 32, "TriggerChannelCount": 0,
                    "RecordingDuration": n_times / info["sfreq"], "RecordingType": "continuous"})
                _write_tsv(folder / "meg" / f"{stem}_channels.tsv", _masc_channels(info))
            _write_tsv(folder / f"sub-{subject}_ses-{session}_scans.tsv", pd.DataFrame(scans))
            _write_json(folder / "meg" / f"sub-{subject}_ses-{session}_coordsystem.json",
                        {"MEGCoordinateSystem": "KitYokogawa", "MEGCoordinateUnits": "m"})
    return root


def _masc_channels(info: mne.Info) -> pd.DataFrame:
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


def _write_masc_recording(folder: Path, stem: str, story: str, task: int,
                          chunks: list[tuple[Path, float, list[SpokenSequence]]],
                          info: mne.Info, subject: int, recording: int) -> int:
    """Write one MEG-MASC recording (raw + events.tsv); return its number of samples."""
    sfreq = info["sfreq"]
    tsv, events = [], []
    onset, sequence = 0.5, 0
    for k, (wav, duration, sequences) in enumerate(chunks):
        base = {"story": story, "story_uid": task}
        tsv.append((onset, 0.0, {**base, "sound_id": float(k), "kind": "sound", "start": 0.0,
                                 "sound": f"stimuli/audio/{story}_{k}.0.wav"}))
        events.append({"onset": onset, "duration": duration, "kind": "sound",
                       "filepath": str(wav), "offset": 0.0})
        for spoken in sequences:
            for index, (word, start, stop) in enumerate(
                    zip(spoken.words, spoken.onsets, spoken.offsets)):
                word_base = {**base, "sound_id": k, "start": start,
                             "sound": f"stimuli/audio/{story}_{k}.wav"}
                tsv.append((round(onset + start, 3), round(stop - start, 3), {
                    **word_base, "kind": "word", "word": word, "sequence_id": sequence,
                    "condition": spoken.condition, "word_index": index, "speech_rate": 205.0,
                    "voice": "Ava", "pronounced": 1.0}))
                for phoneme, p_start, p_stop in _phonemes(word, start, stop):
                    tsv.append((round(onset + p_start, 3), round(p_stop - p_start, 3), {
                        **word_base, "kind": "phoneme", "start": p_start, "phoneme": phoneme,
                        "sequence_id": sequence, "condition": spoken.condition,
                        "word_index": index, "pronounced": 1.0}))
                events.append({"onset": round(onset + start, 3), "duration": stop - start,
                               "kind": "word", "word": word, "word_index": index,
                               "sequence_id": f"{story}:{sequence}"})
            sequence += 1
        onset = round(onset + duration + 0.5, 3)
    n_times = int((onset + 0.5) * sfreq)
    raw = _meg_recording(info, KIT_EXTRA, events, n_times, subject, recording)
    _save_fif(raw, folder / f"{stem}_meg.con")
    descriptions = [repr(d) for _, _, d in tsv]
    ids = {d: i + 1 for i, d in enumerate(dict.fromkeys(descriptions))}
    _write_tsv(folder / f"{stem}_events.tsv", pd.DataFrame({
        "onset": [o for o, _, _ in tsv], "duration": [d for _, d, _ in tsv],
        "trial_type": descriptions, "value": [ids[d] for d in descriptions],
        "sample": [int(round(o * sfreq)) for o, _, _ in tsv]}))
    return n_times


# ---------------------------------------------------------------------------------------------
# MOUS (schoffelen2019)

#: MOUS trigger codes on ``UPPT001`` of the log rows the example layout writes
_MOUS_TRIGGERS = {"block": 10, "fix": 20, "start": 14, "onset": 1, "end": 15}


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
    from praatio import textgrid
    from praatio.utilities.constants import Interval

    from ..data.studies.schoffelen2019 import EXCLUDED

    root = Path(out)
    rng = np.random.default_rng(seed)
    texts = _sentences(rng, DUTCH_SENTENCES)
    sentences = [next(texts) for _ in range(n_sentences)]
    stimuli = {i + 1: (text, "sentence") for i, text in enumerate(sentences)}
    for i in range(n_sentences):
        stimuli[180 + i + 1] = (_word_list(rng, sentences[i:i + 1], n=5), "word_list")
    (root / "stimuli").mkdir(parents=True, exist_ok=True)
    (root / "stimuli" / "stimuli.txt").write_text(
        "".join(f"{uid} {text}\n" for uid, (text, _) in stimuli.items()))
    spoken: dict[int, tuple[Path, float, SpokenSequence]] = {}
    for uid, (text, condition) in stimuli.items():
        audio, sample_rate, (sequence,) = _speak([(text, condition)], voice="nl", lead=0.1,
                                                 pause=0.2)
        wav = root / "stimuli" / "audio_files" / f"EQ_Ramp_Int2_Int1LPF{uid:03d}.wav"
        _write_wav(wav, audio, sample_rate)
        duration = round(len(audio) / sample_rate, 4)
        spoken[uid] = (wav, duration, sequence)
        words = [Interval(0.0, sequence.onsets[0], "")]
        phones = [Interval(0.0, sequence.onsets[0], "<p:>")]
        kan = [Interval(0.0, sequence.onsets[0], "")]
        for word, start, stop in zip(sequence.words, sequence.onsets, sequence.offsets):
            words.append(Interval(start, stop, word))
            letters = _phonemes(word, start, stop)
            kan.append(Interval(start, stop, " ".join(p.split("_")[0] for p, _, _ in letters)))
            phones += [Interval(a, b, p.split("_")[0]) for p, a, b in letters]
        grid = textgrid.Textgrid()
        for name, entries in (("ORT-MAU", words), ("KAN-MAU", kan), ("MAU", phones)):
            grid.addTier(textgrid.IntervalTier(name, entries, 0.0, duration))
        path = root / "derivatives" / "phonemes" / f"EQ_Ramp_Int2_Int1LPF{uid:03d}.TextGrid"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(str(path), format="long_textgrid", includeBlankSpaces=True)

    _dataset_description(root, "MOUS (braindecode-speech example layout)")
    ids = (f"A{number}" for number in range(2002, 2126))
    subjects = [s for s in ids if s not in EXCLUDED][:n_subjects]
    _write_tsv(root / "participants.tsv", pd.DataFrame({
        "participant_id": [f"sub-{s}" for s in subjects],
        "age": rng.integers(18, 33, n_subjects), "sex": "F"}))
    info = ctf_info()
    for i, subject in enumerate(subjects):
        order = [list(rng.permutation([u for u, (_, c) in stimuli.items() if c == condition]))
                 for condition in ("sentence", "word_list")]
        blocks = [("ZINNEN", order[0]), ("WOORDEN", order[1])]
        if i % 2:
            blocks.reverse()
        _write_mous_subject(root, subject, blocks, spoken, info, seed * 1000 + i)
    return root


def _write_mous_subject(root: Path, subject: str, blocks: list[tuple[str, list[int]]],
                        spoken: dict[int, tuple[Path, float, SpokenSequence]],
                        info: mne.Info, seed: int) -> None:
    sfreq = info["sfreq"]
    log: list[dict] = []  # rows of the log's first table, times in s on the log clock
    t, trial = 2.0, 1

    def add(event_type: str, code: str, time: float, trigger: int | None = None,
            duration: float | None = None) -> None:
        log.append({"trial": trial, "event_type": event_type, "code": code,
                    "time": round(time, 4), "duration": duration, "trigger": trigger})

    for block_code, uids in blocks:
        add("Picture", block_code, t, _MOUS_TRIGGERS["block"], 1.7)
        add("Picture", "blank", t + 1.7, duration=0.3)
        t += 2.0
        for uid in uids:
            trial += 1
            add("Picture", f"FIX {3500 + trial}", t, _MOUS_TRIGGERS["fix"], 0.6)
            trial += 1
            add("Sound", f"14 Start File {uid}.wav", t + 0.6, _MOUS_TRIGGERS["start"])
            audio_onset = t + 0.6 + 0.046
            add("Nothing", "1 Audio onset", audio_onset, _MOUS_TRIGGERS["onset"])
            end = audio_onset + spoken[uid][1]
            add("Nothing", "15 End of file", end, _MOUS_TRIGGERS["end"])
            trial += 1
            add("Picture", "blank", end + 0.05, duration=0.5)
            t = end + 0.8
    trial += 1
    add("Quit", "", t)

    slope, intercept = 1 + 2e-5, 1.0 - (1 + 2e-5) * 2.0  # MEG time of a log time
    meg_time = {id(row): slope * row["time"] + intercept for row in log}
    first_end = next(row for row in log if row["trigger"] == _MOUS_TRIGGERS["end"])
    triggers = [(int(round(meg_time[id(row)] * sfreq)), row["trigger"]) for row in log
                if row["trigger"] is not None and row is not first_end]
    events, sound_uid = [], None
    for row in log:
        if row["code"].startswith("14 Start File"):
            sound_uid = int(row["code"].split()[-1].removesuffix(".wav"))
        if row["code"] == "1 Audio onset":
            wav, duration, sequence = spoken[sound_uid]
            onset = meg_time[id(row)]
            events.append({"onset": onset, "duration": duration, "kind": "sound",
                           "filepath": str(wav), "offset": 0.0})
            events += [{"onset": onset + start, "duration": stop - start, "kind": "word",
                        "word": word, "word_index": index, "sequence_id": str(sound_uid)}
                       for index, (word, start, stop) in enumerate(
                           zip(sequence.words, sequence.onsets, sequence.offsets))]
    n_times = int((max(meg_time.values()) + 1.0) * sfreq)
    stim = np.zeros(n_times)
    for sample, value in triggers:
        stim[sample:sample + int(0.02 * sfreq)] = value
    raw = _meg_recording(info, CTF_EXTRA, events, n_times, seed, 0, signals={"UPPT001": stim})
    meg = root / f"sub-{subject}" / "meg"
    ds = meg / f"sub-{subject}_task-auditory_meg.ds"
    _save_fif(raw, ds / f"{ds.stem}.meg4")

    tsv = [{"onset": s / sfreq, "duration": None, "sample": s + 1, "type": "UPPT001",
            "value": str(v)} for s, v in triggers]
    tsv += [{"onset": round(meg_time[id(row)], 4), "duration": None,
             "sample": int(round(meg_time[id(row)] * sfreq)) + 1, "type": row["event_type"],
             "value": row["code"]} for row in log if row["event_type"] != "Quit"]
    _write_tsv(meg / f"sub-{subject}_task-auditory_events.tsv",
               pd.DataFrame(tsv).sort_values("onset", kind="stable"))
    path = root / "sourcedata" / "meg_task" / f"{subject}-2-MEG-MOUS-Aud.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_presentation_log(subject, log))


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


# ---------------------------------------------------------------------------------------------
# Broderick et al. (broderick2019)


def write_broderick2019(out: Path, seed: int = 0, n_subjects: int = 2, n_runs: int = 2,
                        n_sentences: int = 3) -> Path:
    """Broderick "Natural Speech" layout: ``Natural Speech/EEG/Subject<s>/Subject<s>_Run<k>.mat``
    (``eegData`` T x 128 in µV, ``mastoids`` T x 2, ``fs`` = 128), ``Stimuli/Text/Run<k>.mat``
    (``wordVec``, ``onset_time``, ``offset_time``, ``sentence_boundaries``: sentence end
    times), ``Stimuli/Envelopes/audio<k>_128Hz.mat`` (``env``), and the non-public
    ``private/audio<k>.wav``, ``align<k>.json`` (Gentle) and ``oldman_run<k>.txt``. EEG sample
    0 is the start of the run's audio. Returns the root (the folder holding
    ``Natural Speech`` and ``private``)."""
    root = Path(out)
    data_dir = root / "Natural Speech"
    rng = np.random.default_rng(seed)
    texts = _sentences(rng, ENGLISH_SENTENCES)
    sfreq = 128.0
    info = eeg_info("biosemi128", sfreq)
    runs = []
    for k in range(1, n_runs + 1):
        sentences = [next(texts) for _ in range(n_sentences)]
        audio, sample_rate, sequences = _speak([(s, "sentence") for s in sentences],
                                               voice="en-us")
        wav = root / "private" / f"audio{k}.wav"
        _write_wav(wav, audio, sample_rate)
        (root / "private" / f"oldman_run{k}.txt").write_text(
            " ".join(f"{s}." for s in sentences) + "\n")
        words = [w for s in sequences for w in s.words]
        onsets = [t for s in sequences for t in s.onsets]
        offsets = [t for s in sequences for t in s.offsets]
        _write_json(root / "private" / f"align{k}.json", _gentle_alignment(
            " ".join(f"{s}." for s in sentences), words, onsets, offsets))
        _savemat(data_dir / "Stimuli" / "Text" / f"Run{k}.mat", {
            "wordVec": _cell(words), "onset_time": np.array(onsets)[:, None],
            "offset_time": np.array(offsets)[:, None],
            "sentence_boundaries": np.array([s.offsets[-1] for s in sequences])[:, None]})
        envelope = np.abs(scipy.signal.hilbert(audio))
        n_env = int(len(audio) / sample_rate * sfreq)
        _savemat(data_dir / "Stimuli" / "Envelopes" / f"audio{k}_128Hz.mat",
                 {"env": scipy.signal.resample(envelope, n_env)[:, None]})
        events = [{"onset": 0.0, "duration": len(audio) / sample_rate, "kind": "sound",
                   "filepath": str(wav), "offset": 0.0}]
        events += [{"onset": t, "duration": u - t, "kind": "word", "word": w, "word_index": i,
                    "sequence_id": f"run{k}:{j}"} for j, s in enumerate(sequences)
                   for i, (w, t, u) in enumerate(zip(s.words, s.onsets, s.offsets))]
        runs.append((k, events, n_env + 3))  # EEG runs are a few samples longer
    for s in range(1, n_subjects + 1):
        for k, events, n_times in runs:
            eeg = _simulate(info, events, n_times, seed * 1000 + s, k)
            mastoids = 5e-6 * rng.standard_normal((2, n_times))
            _savemat(data_dir / "EEG" / f"Subject{s}" / f"Subject{s}_Run{k}.mat", {
                "eegData": (eeg * 1e6).T, "mastoids": (mastoids * 1e6).T,
                "fs": np.array([[sfreq]])})
    return root


def _gentle_alignment(transcript: str, words: Sequence[str], onsets: Sequence[float],
                      offsets: Sequence[float]) -> dict:
    """A Gentle forced-alignment result (``words`` with ``phones``) for timed words."""
    entries, position = [], 0
    for word, start, end in zip(words, onsets, offsets):
        position = transcript.find(word, position)
        phones = [{"phone": p, "duration": round(b - a, 4)} for p, a, b in
                  _phonemes(word, start, end)]
        entries.append({"alignedWord": word.lower(), "case": "success", "end": end,
                        "endOffset": position + len(word), "phones": phones, "start": start,
                        "startOffset": position, "word": word})
        position += len(word)
    return {"transcript": transcript, "words": entries}


# ---------------------------------------------------------------------------------------------
# Brennan & Hale (brennan2019)

_CSV_COLUMNS = ("Word", "Trigger", "Segment", "onset", "offset", "Order", "LogFreq",
                "LogFreq_Prev", "LogFreq_Next", "SndPower", "Length", "Position", "Sentence",
                "IsLexical", "NGRAM", "RNN", "CFG")


def write_brennan2019(out: Path, seed: int = 0, n_subjects: int = 2, n_segments: int = 2,
                      n_sentences: int = 2) -> Path:
    """Brennan & Hale layout: ``S<XX>.mat`` (FieldTrip ``raw`` struct, 500 Hz, µV, labels
    ``1``..``61`` without ``29``, ``VEOG``, ``Aux5``; the second subject lacks ``Aux5`` as
    some real ones do), ``proc/S<XX>.mat`` (``proc.trl``: begin, end, offset = -150 samples,
    segment, tmin, Order; 1-based samples), ``audio/DownTheRabbitHoleFinal_SoundFile<k>.wav``,
    ``AliceChapterOne-EEG.csv`` and ``datasets.mat``. Subjects are the first ``n_subjects`` of
    the paper's selection; the second one's EEG starts 0.1 s after its first wav (a wav that
    starts before the recording, as in the real data). Returns the root."""
    from ..data.studies.brennan2019 import PAPER_SUBJECTS

    root = Path(out)
    rng = np.random.default_rng(seed)
    texts = _sentences(rng, ENGLISH_SENTENCES)
    sfreq = 500.0
    rows, durations, order, sentence = [], {}, 1, 1
    for segment in range(1, n_segments + 1):
        items = [(next(texts), "sentence") for _ in range(n_sentences)]
        audio, sample_rate, sequences = _speak(items, voice="en-us", lead=0.5)
        wav = root / "audio" / f"DownTheRabbitHoleFinal_SoundFile{segment}.wav"
        _write_wav(wav, audio, sample_rate)
        durations[segment] = (wav, len(audio) / sample_rate)
        for spoken in sequences:
            for position, (word, start, stop) in enumerate(
                    zip(spoken.words, spoken.onsets, spoken.offsets), start=1):
                rows.append({"Word": word, "Trigger": 1, "Segment": segment, "onset": start,
                             "offset": stop, "Order": order, "LogFreq": rng.uniform(2, 8),
                             "LogFreq_Prev": 0.0, "LogFreq_Next": 0.0,
                             "SndPower": rng.uniform(0, 1), "Length": len(word),
                             "Position": position, "Sentence": sentence,
                             "IsLexical": int(len(word) > 3), "NGRAM": rng.uniform(0, 10),
                             "RNN": rng.uniform(0, 10), "CFG": int(rng.integers(1, 6))})
                order += 2 if order == 3 else 1  # Order numbers have gaps in the real file
            sentence += 1
    words = pd.DataFrame(rows, columns=list(_CSV_COLUMNS))
    words["LogFreq_Prev"] = words["LogFreq"].shift(1, fill_value=0.0)
    words["LogFreq_Next"] = words["LogFreq"].shift(-1, fill_value=0.0)
    words.to_csv(root / "AliceChapterOne-EEG.csv", index=False)

    subjects = list(PAPER_SUBJECTS[:n_subjects])
    _savemat(root / "datasets.mat", {"use": _cell(subjects), "low_perf": _cell([]),
                                     "high_noise": _cell([])})
    info = eeg_info("easycap-M10", sfreq, exclude=("29",))
    labels = info["ch_names"]
    for i, subject in enumerate(subjects):
        first_start = 0.6 if i % 2 == 0 else -0.1  # EEG time of the start of wav 1
        starts, t = {}, first_start
        for segment, (_, duration) in durations.items():
            starts[segment] = t
            t += duration + 1.0
        n_times = int((t + 0.5) * sfreq)
        events = [{"onset": max(start, 0.0), "duration": durations[seg][1],
                   "kind": "sound", "filepath": str(durations[seg][0]),
                   "offset": max(-start, 0.0)} for seg, start in starts.items()]
        events += [{"onset": starts[w.Segment] + w.onset, "duration": w.offset - w.onset,
                    "kind": "word", "word": w.Word, "word_index": w.Position - 1,
                    "sequence_id": f"alice:{w.Sentence}"} for w in words.itertuples()]
        eeg = _simulate(info, events, n_times, seed * 1000 + i, 0)
        _write_brennan_raw(root / f"{subject}.mat", eeg, labels, sfreq,
                           with_audio_channel=i % 2 == 0, rng=rng)
        onset_samples = np.array([int(round((starts[w.Segment] + w.onset) * sfreq)) + 1
                                  for w in words.itertuples()])
        trl = np.column_stack([onset_samples - 150, onset_samples + 499,
                               np.full(len(words), -150), words["Segment"], words["onset"],
                               words["Order"]]).astype(float)
        _savemat(root / "proc" / f"{subject}.mat", {"proc": {
            "implicitref": "29", "refchannels": _cell(["25", "29"]), "subject": subject,
            "dataset": f"{subject}.mat", "trl": trl,
            "varnames": _cell(["segment", "tmin", "Order"]), "tot_trials": len(words),
            "tot_chans": 61,
            "impedence": {"bads": _cell([]), "imps": np.zeros((61, 1)), "labels": _cell(
                labels + ["VEOG"])},
            "rejections": {"numtrialrej": 0, "badchans": _cell([])}, "rank": 60}})
    return root


def _write_brennan_raw(path: Path, eeg: np.ndarray, labels: list[str], sfreq: float,
                       with_audio_channel: bool, rng: np.random.Generator) -> None:
    """A FieldTrip ``raw`` struct with one continuous trial, in µV."""
    n_times = eeg.shape[1]
    names = labels + ["VEOG"] + (["Aux5"] if with_audio_channel else [])
    extra = 20.0 * rng.standard_normal((len(names) - len(labels), n_times))
    data = np.concatenate([eeg * 1e6, extra])
    trial, time = np.empty((1, 1), dtype=object), np.empty((1, 1), dtype=object)
    trial[0, 0], time[0, 0] = data, (np.arange(n_times) / sfreq)[None, :]
    _savemat(path, {"raw": {
        "hdr": {"Fs": sfreq, "nChans": len(names), "nSamples": n_times, "nSamplesPre": 0,
                "nTrials": 1, "label": _cell(names), "chantype": _cell(["eeg"] * len(names)),
                "chanunit": _cell(["uV"] * len(names))},
        "label": _cell(names), "fsample": sfreq, "trial": trial, "time": time,
        "sampleinfo": np.array([[1, n_times]])}})


# ---------------------------------------------------------------------------------------------

#: study name → writer ``(out, seed, n_subjects, **kwargs) -> root``
LAYOUTS: dict[str, Callable[..., Path]] = {
    "gwilliams2022": write_gwilliams2022,
    "schoffelen2019": write_schoffelen2019,
    "broderick2019": write_broderick2019,
    "brennan2019": write_brennan2019,
}


def write_example_layout(study: str, out: str | Path, seed: int = 0, n_subjects: int = 2,
                         **kwargs) -> Path:
    """Write a tiny synthetic copy of ``study``'s real layout under ``out``; return the root
    to give to the study adapter (``braindecode_speech.data.studies.get(study, root)``).

    ``kwargs`` go to the study's writer (e.g. ``n_sentences``; see :data:`LAYOUTS`).
    """
    if study not in LAYOUTS:
        raise KeyError(f"No example layout for {study!r}; available: {', '.join(LAYOUTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return LAYOUTS[study](out, seed=seed, n_subjects=n_subjects, **kwargs)
