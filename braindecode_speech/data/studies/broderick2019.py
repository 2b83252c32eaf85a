"""Broderick et al. 2018/2019 "Natural Speech": EEG of 19 subjects listening to an audiobook.

Layout (Dryad doi:10.5061/dryad.070jc, ``Natural Speech.zip`` extracted)::

    Natural Speech/EEG/Subject1/Subject1_Run1.mat ... Subject19_Run20.mat
    Natural Speech/Stimuli/Text/Run1.mat ... Run20.mat        # word timings
    private/audio<k>.wav, align<k>.json, oldman_run<k>.txt     # not public (see below)

- EEG ``.mat``: ``eegData`` (T x 128, BioSemi A1..D32, named with MNE's ``biosemi128``
  montage), ``mastoids`` (T x 2), ``fs`` (128 Hz). Values are taken to be µV and converted to
  V. ``reference="mastoids"`` subtracts the mean of the two mastoids; the default (``None``)
  keeps the data as released, as the paper did. Sample 0 is the start of the run's audio.
- Words: ``Stimuli/Text/Run<k>.mat`` (``wordVec``, ``onset_time``, ``offset_time``, s from the
  start of the run). ``sentence_boundaries`` is not read (its meaning is not documented).
- Sentences: the transcript ``private/oldman_run<k>.txt`` is cut at ``.``, ``!`` and ``?``;
  the words are matched to it in order (:class:`difflib.SequenceMatcher`), and a word that
  does not match takes the sentence of the word before it. ``sequence_id`` is
  ``run<k>:<sentence index>``, the same for every subject. Without the transcript the whole
  run is one sequence (``run<k>``) and a warning says so.
- Audio and phonemes: the release has no audio. With ``private/audio<k>.wav`` a sound event
  starts at 0; with ``private/align<k>.json`` (Gentle) phoneme events are added from each
  successfully aligned word's phones. Without a ``private/`` folder the recordings have no
  sound events, which ``braindecode-speech check`` reports; with one, a run whose
  ``audio<k>.wav`` is missing is a problem naming that file (raised, or skipped with
  ``strict=False``).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import mne
import numpy as np
import pandas as pd

from ..events import make_events
from ..stimuli import inside_root, sound_duration
from ..study import Recording, StudyError
from ._adapter import StudyAdapter, choice
from ._readers import as_column, read_mat

__all__ = ["Broderick2019", "read_eeg", "read_events"]

logger = logging.getLogger(__name__)

N_RUNS = 20
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def _clean(word: str) -> str:
    """A word without surrounding punctuation."""
    return re.sub(r"^\W+|\W+$", "", str(word))


def read_eeg(path: Path, reference: Literal["mastoids"] | None = None) -> mne.io.RawArray:
    """Read one run: 128 EEG channels (``biosemi128`` names and positions), in V."""
    choice("reference", reference, (None, "mastoids"))
    mat = read_mat(path, "eegData", "mastoids", "fs")
    sfreq = float(np.asarray(mat["fs"]).ravel()[0])
    eeg = np.asarray(mat["eegData"], dtype=float)
    if eeg.ndim != 2 or eeg.shape[1] != 128:
        raise StudyError(f"{path}: eegData has shape {eeg.shape}, expected (n_times, 128)")
    data = eeg.T
    if reference == "mastoids":
        mastoids = np.asarray(mat["mastoids"], dtype=float)
        if mastoids.shape != (eeg.shape[0], 2):
            raise StudyError(f"{path}: mastoids has shape {mastoids.shape}, expected "
                             f"({eeg.shape[0]}, 2)")
        data = data - mastoids.mean(axis=1)
    montage = mne.channels.make_standard_montage("biosemi128")
    info = mne.create_info(montage.ch_names, sfreq, "eeg")
    raw = mne.io.RawArray(data * 1e-6, info, verbose="error")  # µV -> V
    raw.set_montage(montage)
    return raw


def _sentences_of(words: Sequence[str], transcript: str) -> tuple[list[int], list[int]]:
    """Sentence index and position in the sentence of each word, from the transcript."""
    tokens, sentence_of_token = [], []
    for index, sentence in enumerate(_SENTENCE_END.split(transcript.strip())):
        for token in sentence.split():
            if _clean(token):
                tokens.append(_clean(token).lower())
                sentence_of_token.append(index)
    matcher = difflib.SequenceMatcher(None, [_clean(w).lower() for w in words], tokens,
                                      autojunk=False)
    sentence = [-1] * len(words)
    for block in matcher.get_matching_blocks():
        for i in range(block.size):
            sentence[block.a + i] = sentence_of_token[block.b + i]
    for i in range(len(sentence)):  # unmatched words join the sentence before them
        if sentence[i] < 0:
            sentence[i] = sentence[i - 1] if i else 0
    positions, previous, count = [], None, 0
    for s in sentence:
        count = count + 1 if s == previous else 0
        positions.append(count)
        previous = s
    return sentence, positions


def _phoneme_rows(path: Path) -> list[dict]:
    try:
        alignment = json.loads(path.read_text())
        rows = []
        for entry in alignment["words"]:
            if entry.get("case") != "success" or entry.get("alignedWord") == "<unk>":
                continue
            start = float(entry["start"])
            for phone in entry["phones"]:
                rows.append({"onset": start, "duration": float(phone["duration"]),
                             "kind": "phoneme", "phoneme": str(phone["phone"]),
                             "offset": start})
                start += float(phone["duration"])
        return rows
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StudyError(f"{path}: cannot read the Gentle alignment ({exc})") from None


def read_events(text_path: Path, run: int, private: Path) -> pd.DataFrame:
    """Events of one run (the same for every subject): words, and sound/phonemes when the
    private files are present."""
    mat = read_mat(text_path, "wordVec", "onset_time", "offset_time")
    words = [_clean(w) for w in as_column(np.asarray(mat["wordVec"], dtype=object))]
    onsets = as_column(mat["onset_time"]).astype(float)
    offsets = as_column(mat["offset_time"]).astype(float)
    if not len(words) == len(onsets) == len(offsets):
        raise StudyError(f"{text_path}: wordVec, onset_time and offset_time differ in length "
                         f"({len(words)}, {len(onsets)}, {len(offsets)})")
    transcript = private / f"oldman_run{run}.txt"
    if transcript.is_file():
        sentence, positions = _sentences_of(words, transcript.read_text())
        sequence_ids = [f"run{run}:{s}" for s in sentence]
    else:
        logger.warning("%s: no transcript %s; the whole run is one sequence", text_path,
                       transcript)
        sequence_ids, positions = [f"run{run}"] * len(words), list(range(len(words)))
    rows = [{"onset": t, "duration": u - t, "kind": "word", "word": w, "offset": t,
             "sequence_id": sid, "word_index": p, "condition": "sentence",
             "sound_id": f"audio{run}"}
            for w, t, u, sid, p in zip(words, onsets, offsets, sequence_ids, positions)]
    wav = private / f"audio{run}.wav"
    if wav.is_file():
        rows.append({"onset": 0.0, "duration": sound_duration(wav), "kind": "sound",
                     "filepath": str(wav), "offset": 0.0, "sound_id": f"audio{run}"})
        alignment = private / f"align{run}.json"
        if alignment.is_file():
            rows += _phoneme_rows(alignment)
    return make_events(rows)


class Broderick2019(StudyAdapter):
    """Broderick "Natural Speech" adapter: one recording per subject and run.

    Parameters
    ----------
    reference : ``None`` (default, as the paper) or ``"mastoids"`` (subtract the mean of the
        two mastoid channels).
    """

    name = "broderick2019"
    modality = "eeg"
    language = "english"
    n_channels = 128
    sfreq = 128.0

    def __init__(self, root: str | Path, *, reference: Literal["mastoids"] | None = None,
                 **common: Any) -> None:
        super().__init__(root, **common)
        self.reference = choice("reference", reference, (None, "mastoids"))
        nested = self.root / "Natural Speech"
        self.data_dir = nested if nested.is_dir() else self.root
        self.private_dir = self.root / "private"
        if not self.private_dir.is_dir() and (self.data_dir / "private").is_dir():
            self.private_dir = self.data_dir / "private"

    def read_native(self, path: Path) -> mne.io.BaseRaw:
        return read_eeg(path, self.reference)

    def _load_raw(self, path: Path) -> mne.io.BaseRaw:
        raw = self.open_raw(path)
        return self.keep_channels(raw, mne.pick_types(raw.info, eeg=True), "EEG", path)

    def _discover(self) -> Iterator[Recording]:
        eeg_dir = self.data_dir / "EEG"
        if not eeg_dir.is_dir():
            raise StudyError(f"{eeg_dir}: missing; is {self.root} the folder holding "
                             "'Natural Speech' (extract 'Natural Speech.zip')?")
        if not self.private_dir.is_dir():
            logger.warning("%s: no private/ folder: the audio of this study is not public, "
                           "so recordings have no sound events", self.root)
        text_dir = self.data_dir / "Stimuli" / "Text"
        runs = sorted(int(m[1]) for p in text_dir.glob("Run*.mat")
                      if (m := re.fullmatch(r"Run(\d+)\.mat", p.name)))
        if not runs:
            raise StudyError(f"{text_dir}: no Run<k>.mat word timing files")
        if len(runs) != N_RUNS:
            logger.warning("%s: %d runs with word timings, the full study has %d", text_dir,
                           len(runs), N_RUNS)
        audio = {}
        if self.private_dir.is_dir():
            audio = {run: inside_root(self.root, self.private_dir / f"audio{run}.wav")
                     for run in runs}
        folders = {p.name.removeprefix("Subject"): p for p in eeg_dir.glob("Subject*")
                   if p.is_dir()}
        for subject in sorted(folders, key=lambda s: (len(s), s)):
            if not self.wants(subject):
                continue
            for run in runs:
                raw_path = folders[subject] / f"Subject{subject}_Run{run}.mat"
                if not raw_path.is_file():
                    self.problem(raw_path, "file is missing")
                    continue
                if run in audio and not audio[run].is_file():
                    self.problem(audio[run], f"sound file is missing (the audio of run {run}; "
                                             f"{self.private_dir} holds the private files)")
                    continue
                yield self.make_recording(
                    subject, None, None, str(run), raw_path,
                    load_raw=lambda p=raw_path: self._load_raw(p),
                    load_events=lambda r=run: read_events(text_dir / f"Run{r}.mat", r,
                                                          self.private_dir),
                    events_path=text_dir / f"Run{run}.mat")
