"""What every example layout writes the same way: spoken stimuli, simulated recordings, files.

- speech: sentence banks, :func:`speak_to_wav` (eSpeak NG sentences and word lists in one wav,
  with exact word times), pseudo phonemes;
- events: common-schema sound and word rows (:func:`sound_event`, :func:`word_events`), the input
  of the brain simulation;
- recordings: :func:`simulate` (EEG/MEG sensors), :func:`meg_recording` (plus reference, misc
  and stimulus channels), :func:`save_fif` (int16 FIF at any path);
- files: JSON, TSV, text, MATLAB v5 (:func:`savemat`, :func:`cell`) and BIDS root files
  (:func:`write_bids_root`), each creating its folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import scipy.io
import soundfile
from mne.io.constants import FIFF

from ...data.events import make_events

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


@dataclass
class SpokenWav:
    """A written wav file: its samples (float32), sample rate (Hz) and timed sequences."""

    path: Path
    audio: np.ndarray
    sample_rate: int
    sequences: list[SpokenSequence]

    @property
    def duration(self) -> float:
        """Length of the wav, s."""
        return len(self.audio) / self.sample_rate


def speak_to_wav(path: Path, texts: Sequence[tuple[str, str]], voice: str, lead: float = 0.3,
                 pause: float = 0.4) -> SpokenWav:
    """Speak ``(text, condition)`` items one after the other, ``pause`` s apart after ``lead`` s
    of silence, into the 16-bit wav ``path``.

    Word times are rounded to the ms and relative to the start of the wav.
    """
    from ..tts import SAMPLE_RATE, synthesize

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
    audio = np.concatenate(parts)
    write_wav(path, audio, SAMPLE_RATE)
    return SpokenWav(Path(path), audio, SAMPLE_RATE, sequences)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """A 16-bit PCM wav."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), audio, sample_rate, subtype="PCM_16")


#: the ARPAbet phoneme (lower case) each letter stands for in the pseudo phonemes
LETTER_PHONEMES = {
    "a": "ae", "b": "b", "c": "k", "d": "d", "e": "eh", "f": "f", "g": "g", "h": "hh", "i": "ih",
    "j": "jh", "k": "k", "l": "l", "m": "m", "n": "n", "o": "aa", "p": "p", "q": "k", "r": "r",
    "s": "s", "t": "t", "u": "ah", "v": "v", "w": "w", "x": "k", "y": "y", "z": "z"}


def phonemes(word: str, onset: float, offset: float) -> list[tuple[str, float, float]]:
    """Pseudo phonemes of a word, evenly timed: one ARPAbet phoneme per letter
    (:data:`LETTER_PHONEMES`) with LibriBrain's position suffix (``ae_B``, ``t_I``, ``s_E``;
    ``_S`` for a one-letter word)."""
    letters = [c for c in word.lower() if c in LETTER_PHONEMES] or ["u"]
    bounds = np.linspace(onset, offset, len(letters) + 1)
    out = []
    for i, letter in enumerate(letters):
        suffix = "S" if len(letters) == 1 else "B" if i == 0 else "E" if i == len(letters) - 1 \
            else "I"
        out.append((f"{LETTER_PHONEMES[letter]}_{suffix}", round(float(bounds[i]), 4),
                    round(float(bounds[i + 1]), 4)))
    return out


def sentences(rng: np.random.Generator, bank: Sequence[str]) -> Iterator[str]:
    """Endless sentences: the bank in a random order, reshuffled at each pass (so a long
    layout repeats sentences, as real stimuli sometimes do)."""
    while True:
        yield from rng.permutation(list(bank)).tolist()


def word_list(rng: np.random.Generator, sentences: Sequence[str], n: int = 4) -> str:
    """Content words (longer than 3 letters) of ``sentences``, shuffled."""
    words = sorted({w for s in sentences for w in s.split() if len(w) > 3})
    return " ".join(rng.choice(words, size=min(n, len(words)), replace=False))


# ---------------------------------------------------------------------------------------------
# Events (common schema) and simulated recordings


def sound_event(wav: Path, onset: float, duration: float, offset: float = 0.0) -> dict:
    """The event row of a wav played from ``offset`` s at ``onset`` s for ``duration`` s."""
    return {"onset": onset, "duration": duration, "kind": "sound", "filepath": str(wav),
            "offset": offset}


def word_events(sequence: SpokenSequence, onset: float, sequence_id: str,
                decimals: int | None = None) -> list[dict]:
    """The word rows of ``sequence`` in a wav played at ``onset`` s (word onsets rounded to
    ``decimals`` when given)."""
    return [{"onset": onset + start if decimals is None else round(onset + start, decimals),
             "duration": stop - start, "kind": "word", "word": word, "word_index": index,
             "sequence_id": sequence_id}
            for index, (word, start, stop) in enumerate(
                zip(sequence.words, sequence.onsets, sequence.offsets))]


def subject_seed(seed: int, index: int) -> int:
    """Seed of the simulated brain of the ``index``-th subject of a layout of seed ``seed``."""
    return seed * 1000 + index


def eeg_info(montage: str, sfreq: float, exclude: Sequence[str] = ()) -> mne.Info:
    """EEG channels of MNE's standard ``montage`` (minus ``exclude``), with positions."""
    from ..sensors import make_info

    info = make_info(montage, sfreq)
    return mne.pick_info(info, [i for i, n in enumerate(info["ch_names"]) if n not in exclude])


def simulate(info: mne.Info, events: list[dict], n_times: int, subject: int,
             recording: int) -> np.ndarray:
    """Brain signals ``[n_channels, n_times]`` (SI units) of the channels of ``info`` for the
    common-schema event rows; ``subject`` seeds the simulated brain, ``recording`` the noise."""
    from .. import simulate_brain_signals

    return np.asarray(simulate_brain_signals(info, make_events(events), n_times, seed=subject,
                                             recording=recording))


def meg_recording(info: mne.Info, extra: Sequence[tuple[str, str]], events: list[dict],
                  n_times: int, subject: int, recording: int,
                  signals: dict[str, np.ndarray] | None = None) -> mne.io.RawArray:
    """Simulated MEG on the sensors of ``info``, plus the ``extra`` ``(name, type)`` channels:
    small noise on references, the given ``signals`` (e.g. triggers), zeros elsewhere."""
    rng = np.random.default_rng([subject, recording])
    raw = mne.io.RawArray(simulate(info, events, n_times, subject, recording), info,
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


def save_fif(raw: mne.io.BaseRaw, path: Path) -> None:
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


# ---------------------------------------------------------------------------------------------
# Files


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_json(path: Path, content: dict) -> None:
    write_text(path, json.dumps(content, indent=2) + "\n")


def write_tsv(path: Path, table: pd.DataFrame) -> None:
    """A BIDS TSV file (missing values ``n/a``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")


def savemat(path: Path, variables: dict) -> None:
    """A MATLAB v5 file (1-D arrays as columns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, variables, format="5", oned_as="column")


def cell(values: Sequence) -> np.ndarray:
    """A MATLAB cell column (``N x 1``) for :func:`scipy.io.savemat`."""
    out = np.empty((len(values), 1), dtype=object)
    for i, value in enumerate(values):
        out[i, 0] = value
    return out


def write_bids_root(root: Path, name: str, subjects: Sequence[str], **participants) -> None:
    """The BIDS root files: ``dataset_description.json`` and ``participants.tsv`` (one row per
    subject id, ``participants`` as further columns)."""
    write_json(root / "dataset_description.json",
               {"Name": name, "BIDSVersion": "1.6.0", "DatasetType": "raw",
                "GeneratedBy": [{"Name": "braindecode-speech example-layout"}]})
    write_tsv(root / "participants.tsv", pd.DataFrame(
        {"participant_id": [f"sub-{s}" for s in subjects], **participants}))
