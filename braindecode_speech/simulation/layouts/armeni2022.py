"""Armeni 2022 (armeni2022) example layout: BIDS, CTF ``.ds`` (FIF stand-in), ``events.tsv``
with ``wav_onset`` / ``word_onset_<NN>`` / ``phoneme_onset_<NN>`` rows (the UNCONFIRMED schema
the adapter reads) and the story wavs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import _core as core
from .schoffelen2019 import CTF_EXTRA, ctf_info

#: CTF sampling frequency of the example recordings, Hz
SFREQ = 1200.0
_VOWELS = {"aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh",
           "uw"}


def write_armeni2022(out: Path, seed: int = 0, n_subjects: int = 2, n_sessions: int = 2,
                     n_wavs: int = 2, n_sentences: int = 2) -> Path:
    """Armeni 2022 layout: subjects ``001``.. each hear the same ``n_sessions`` sessions
    (``001``..), each playing ``n_wavs`` wavs of ``n_sentences`` English sentences
    (``stimuli/sherlock<session>_<k>.wav``, named by the ``wav_onset`` values).

    Per subject and session: ``sub-<s>/ses-<S>/meg/sub-<s>_ses-<S>_task-compr_meg.ds`` (FIF
    stand-in in the ``.ds`` folder, with reference, EEG and stimulus channels) and its
    ``events.tsv``: words end their sentence with a full stop, phonemes are ARPAbet
    labels with a stress digit on vowels (``AH1``). Returns the BIDS root.
    """
    root = Path(out)
    rng = np.random.default_rng(seed)
    texts = core.sentences(rng, core.ENGLISH_SENTENCES)
    sessions: dict[str, list[tuple[str, core.SpokenWav]]] = {}
    for s in range(1, n_sessions + 1):
        session = f"{s:03d}"
        sessions[session] = []
        for k in range(1, n_wavs + 1):
            value = f"sherlock{session}_{k}.wav"
            items = [(next(texts), "sentence") for _ in range(n_sentences)]
            sessions[session].append(
                (value, core.speak_to_wav(root / "stimuli" / value, items, voice="en-us")))
    subjects = [f"{i:03d}" for i in range(1, n_subjects + 1)]
    core.write_bids_root(root, "Armeni 2022 (braindecode-speech example layout)", subjects,
                         age=rng.integers(20, 40, n_subjects), sex="F")
    info = ctf_info(SFREQ)
    for i, subject in enumerate(subjects):
        for number, (session, wavs) in enumerate(sessions.items()):
            _write_session(root, subject, session, wavs, info, core.subject_seed(seed, i),
                           number)
    return root


def _write_session(root: Path, subject: str, session: str,
                   wavs: list[tuple[str, core.SpokenWav]], info, seed: int,
                   number: int) -> None:
    """One CTF recording and its ``events.tsv``."""
    rows, events = [], []
    onset = 2.0
    for k, (value, spoken) in enumerate(wavs, start=1):
        rows.append(_row(onset, spoken.duration, "wav_onset", value))
        events.append(core.sound_event(spoken.path, onset, spoken.duration))
        for j, sequence in enumerate(spoken.sequences):
            events += core.word_events(sequence, onset, f"{value}:{j}")
            last = len(sequence.words) - 1
            for index, (word, start, stop) in enumerate(
                    zip(sequence.words, sequence.onsets, sequence.offsets)):
                text = f"{word}." if index == last else word
                rows.append(_row(onset + start, stop - start, f"word_onset_{k:02d}", text))
                rows += [_row(onset + a, b - a, f"phoneme_onset_{k:02d}", _arpabet(label))
                         for label, a, b in core.phonemes(word, start, stop)]
        onset += spoken.duration + 1.0
    n_times = int((onset + 1.0) * SFREQ)
    raw = core.meg_recording(info, CTF_EXTRA, events, n_times, seed, number)
    meg = root / f"sub-{subject}" / f"ses-{session}" / "meg"
    ds = meg / f"sub-{subject}_ses-{session}_task-compr_meg.ds"
    core.save_fif(raw, ds / f"{ds.stem}.meg4")
    table = pd.DataFrame(rows).sort_values("onset", kind="stable")
    table["sample"] = (table["onset"] * SFREQ).round().astype(int)
    core.write_tsv(meg / f"sub-{subject}_ses-{session}_task-compr_events.tsv",
                   table[["onset", "duration", "sample", "type", "value"]])


def _row(onset: float, duration: float, kind: str, value: str) -> dict:
    return {"onset": round(onset, 4), "duration": round(duration, 4), "type": kind,
            "value": value}


def _arpabet(label: str) -> str:
    """A pseudo phoneme (``ae_B``) as an ARPAbet label with a stress digit on vowels (``AE1``)."""
    phoneme = label.split("_")[0]
    return phoneme.upper() + ("1" if phoneme in _VOWELS else "")
