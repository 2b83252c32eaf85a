"""Armeni et al. 2022: 3 people x 10 one-hour sessions of MEG while listening to *The
Adventures of Sherlock Holmes*, CTF MEG (participants wore head casts).

Layout (Radboud Data Repository ``DSC_3011085.05_995_v1``, registration required; BIDS)::

    participants.tsv
    sub-001/ses-001/meg/sub-001_ses-001_task-compr_meg.ds/         # CTF
    sub-001/ses-001/meg/sub-001_ses-001_task-compr_events.tsv
    <audio folder>/<wav named by the wav_onset events>              # see below

The events schema is **UNCONFIRMED**: it comes from a unit-test fixture of the ``pnpl``
library, not from the real files, so this adapter reads it defensively and ``check`` says so:

- ``events.tsv`` columns ``onset`` (s on the recording clock), ``duration``, ``type``, ``value``
  (``sample`` unused). Types: ``wav_onset`` (a sound starts; ``value`` names it),
  ``word_onset_<NN>`` (``value`` = the word) and ``phoneme_onset_<NN>`` (``value`` = ARPAbet with
  a stress digit, e.g. ``AH0``; kept as is); punctuation around a word is left out of
  ``word``. Type names are matched case-insensitively; other
  types are ignored (counted in the log); a word or phoneme before the first ``wav_onset``
  has no sound to place it in and is an error naming the file and line.
- Sounds: a ``wav_onset`` value ending in ``.wav`` is a path relative to ``audio_dir`` (inside
  the study folder), any other value ``v`` means ``<audio_dir>/<v>.wav``. Each word and phoneme
  belongs to the last sound started before it (``offset`` = its onset minus the sound's).
  Without all its wavs a recording still loads, with word and phoneme events but no sound
  event (its speech features would be silence where a wav is missing): enough for detection
  and classification, not for retrieval; ``check`` lists the missing wavs.
- Sentences: the events carry no sentence index (UNCONFIRMED), so a sentence ends at a word
  ending in ``.``, ``?`` or ``!``, at a new sound, or before a pause of at least
  ``sentence_gap`` s between a word's end and the next word's onset. ``sequence_id`` =
  ``<sound id>:<sentence number in the sound>:<hash of the words>``, identical across subjects
  for identical stimuli.
- Channels: the MEG axial gradiometers (typed ``mag`` by MNE; the count is not fixed, as dead
  channels differ) are kept; references, EEG, stimulus and misc channels are dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import mne
import numpy as np
import pandas as pd

from ..events import make_events
from ..stimuli import inside_root, sound_duration
from ..study import Recording, StudyError
from ._adapter import StudyAdapter, sentence_uid
from ._readers import read_table

__all__ = ["Armeni2022", "read_events", "sound_values", "SCHEMA_NOTE"]

logger = logging.getLogger(__name__)

TASK = "compr"
SCHEMA_NOTE = ("events.tsv schema UNCONFIRMED: types wav_onset / word_onset_<NN> / "
               "phoneme_onset_<NN> come from a pnpl unit-test fixture, not from the real "
               "release; sentences are cut at punctuation and pauses (no sentence index)")
_WORD = re.compile(r"^word_onset(_\w+)?$", re.IGNORECASE)
_PHONEME = re.compile(r"^phoneme_onset(_\w+)?$", re.IGNORECASE)
_SOUND = re.compile(r"^wav_onset$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.?!][\"')\]]*$")
_PUNCTUATION = re.compile(r"^[^\w']+|[^\w']+$")


def _read_table(path: Path) -> pd.DataFrame:
    table = read_table(path, "events table", sep="\t", dtype={"type": str, "value": str},
                       keep_default_na=False, na_values=["", "n/a"])
    missing = sorted({"onset", "type", "value"} - set(table.columns))
    if missing:
        raise StudyError(f"{path}: events table lacks columns {missing} (has "
                         f"{list(table.columns)[:10]})")
    try:
        table["onset"] = pd.to_numeric(table["onset"], errors="raise")
        if "duration" in table.columns:
            table["duration"] = pd.to_numeric(table["duration"], errors="raise")
    except (TypeError, ValueError) as exc:
        raise StudyError(f"{path}: column 'onset' or 'duration' is not numeric ({exc})") \
            from None
    table["type"] = table["type"].fillna("").astype(str).str.strip()
    return table


def sound_values(path: Path) -> list[str]:
    """The ``value`` of every ``wav_onset`` row of an events file, in file order."""
    table = _read_table(path)
    return [str(v).strip() for v in table.loc[table["type"].str.match(_SOUND), "value"]]


def read_events(path: Path, wav_of: Callable[[str], Path], sentence_gap: float = 0.3
                ) -> pd.DataFrame:
    """One ``events.tsv`` in the common schema.

    Parameters
    ----------
    wav_of : the wav file of a ``wav_onset`` value (no sound event at all when one of the
        files is missing).
    sentence_gap : a pause this long (s) between two words ends a sentence.

    Raises
    ------
    StudyError : naming ``path`` and the line for a missing onset or value, or a word or
        phoneme before the first ``wav_onset``.
    """
    table = _read_table(path).reset_index(drop=True)
    table = table.assign(_line=np.arange(len(table)) + 2).sort_values("onset", kind="stable")
    rows, sound, ignored, missing = [], None, 0, []
    for _, row in table.iterrows():
        kind = ("sound" if _SOUND.match(row["type"]) else "word" if _WORD.match(row["type"])
                else "phoneme" if _PHONEME.match(row["type"]) else None)
        if kind is None:
            ignored += 1
            continue
        if pd.isna(row["onset"]) or pd.isna(row["value"]) or not str(row["value"]).strip():
            raise StudyError(f"{path}: line {row['_line']}: {row['type']} without onset or value")
        onset, value = float(row["onset"]), str(row["value"]).strip()
        duration = float(row["duration"]) if "duration" in row and pd.notna(
            row["duration"]) else 0.0
        if kind == "sound":
            try:
                wav = wav_of(value)
            except StudyError as exc:
                raise StudyError(f"{path}: line {row['_line']}: {exc}") from None
            sound = {"onset": onset, "sound_id": Path(wav).stem, "wav": wav}
            if wav.is_file():
                rows.append({"onset": onset, "duration": duration or sound_duration(wav),
                             "kind": "sound", "filepath": str(wav), "offset": 0.0,
                             "sound_id": sound["sound_id"]})
            else:
                missing.append(wav)
            continue
        if sound is None:
            raise StudyError(f"{path}: line {row['_line']}: {row['type']} at {onset:.3f} s "
                             "comes before the first wav_onset")
        event = {"onset": onset, "duration": duration, "kind": kind,
                 "offset": onset - sound["onset"], "sound_id": sound["sound_id"]}
        if kind == "word":
            event.update(word=_PUNCTUATION.sub("", value) or value,
                         _ends=bool(_SENTENCE_END.search(value)))
        else:
            event["phoneme"] = value
        rows.append(event)
    if ignored:
        logger.debug("%s: %d rows of other types ignored", path, ignored)
    if missing:
        logger.warning("%s: %d wav(s) missing (e.g. %s): no sound events for this recording",
                       path, len(missing), missing[0])
        rows = [row for row in rows if row["kind"] != "sound"]
    return _add_sentence_ids(make_events(rows), sentence_gap)


def _add_sentence_ids(events: pd.DataFrame, gap: float) -> pd.DataFrame:
    """Cut the words into sentences (module docstring) and set ``sequence_id`` and
    ``word_index``."""
    events = events.sort_values("onset", kind="stable").reset_index(drop=True)
    words = events[events["kind"] == "word"]
    if words.empty:
        return events.drop(columns="_ends", errors="ignore")
    ends = (words["onset"] + words["duration"].fillna(0.0)).to_numpy()
    starts = words["onset"].to_numpy()
    sounds = words["sound_id"].to_numpy()
    new = np.ones(len(words), dtype=bool)
    new[1:] = ((starts[1:] - ends[:-1] >= gap) | (sounds[1:] != sounds[:-1])
               | words["_ends"].fillna(False).astype(bool).to_numpy()[:-1])
    group = np.cumsum(new)
    number: dict[str, int] = {}
    for _, index in pd.Series(words.index, index=words.index).groupby(group, sort=True):
        members = index.to_numpy()
        sound_id = str(events.loc[members[0], "sound_id"])
        k = number[sound_id] = number.get(sound_id, -1) + 1
        events.loc[members, "sequence_id"] = sentence_uid(f"{sound_id}:{k}",
                                                          events.loc[members, "word"])
        events.loc[members, "word_index"] = np.arange(len(members))
    return events.drop(columns="_ends")


class Armeni2022(StudyAdapter):
    """Armeni 2022 adapter: one recording per subject and session.

    Parameters
    ----------
    audio_dir : folder of the wavs, relative to the study folder.
    sentence_gap : a pause this long (s) between two words ends a sentence.
    """

    name = "armeni2022"
    modality = "meg"
    language = "english"
    n_channels = 0  # CTF data channels differ per recording (dead sensors)
    sfreq = 0.0  # not checked: UNCONFIRMED for the release

    def __init__(self, root: str | Path, subjects: Sequence[str] | None = None,
                 strict: bool = True,
                 raw_reader: Callable[[Path], mne.io.BaseRaw] | None = None,
                 audio_dir: str = "stimuli", sentence_gap: float = 0.3) -> None:
        super().__init__(root, subjects, strict, raw_reader)
        if sentence_gap <= 0:
            raise ValueError(f"sentence_gap must be positive, got {sentence_gap}")
        self.audio_dir = audio_dir
        self.sentence_gap = sentence_gap

    def wav(self, value: str) -> Path:
        """The wav of a ``wav_onset`` value; a StudyError if it leaves the study folder."""
        name = value if value.lower().endswith(".wav") else f"{value}.wav"
        return inside_root(self.root, f"{self.audio_dir}/{name}")

    def read_native(self, path: Path) -> mne.io.BaseRaw:
        return mne.io.read_raw_ctf(path, preload=False, verbose="error")

    def _load_raw(self, path: Path) -> mne.io.BaseRaw:
        raw = self.open_raw(path)
        picks = mne.pick_types(raw.info, meg=True, ref_meg=False)
        if len(picks) == 0:
            raise StudyError(f"{path}: no MEG channel")
        return raw.pick(list(picks))

    def _subjects(self) -> list[str]:
        folders = sorted(p.name.removeprefix("sub-") for p in self.root.glob("sub-*")
                         if p.is_dir())
        if not folders:
            raise StudyError(f"{self.root}: no sub-* folder (is it the BIDS root of the "
                             "Armeni 2022 collection?)")
        return folders

    def _sessions(self) -> Iterator[tuple[str, str, Path, Path]]:
        """``(subject, session, raw path, events path)`` of every session folder."""
        for subject in self._subjects():
            if not self.wants(subject):
                continue
            sessions = sorted((self.root / f"sub-{subject}").glob("ses-*"))
            if not sessions:
                self.problem(self.root / f"sub-{subject}", "no ses-* folder")
            for folder in sessions:
                session = folder.name.removeprefix("ses-")
                stem = f"sub-{subject}_ses-{session}_task-{TASK}"
                yield (subject, session, folder / "meg" / f"{stem}_meg.ds",
                       folder / "meg" / f"{stem}_events.tsv")

    def _discover(self) -> Iterator[Recording]:
        for subject, session, raw_path, events_path in self._sessions():
            if not raw_path.is_dir():
                self.problem(raw_path, "CTF folder is missing")
                continue
            if not events_path.is_file():
                self.problem(events_path, "events file is missing")
                continue
            try:
                for value in sound_values(events_path):
                    self.wav(value)
            except StudyError as exc:
                self.problem(events_path, str(exc).removeprefix(f"{events_path}: "))
                continue
            yield self.make_recording(
                subject, session, TASK, None, raw_path,
                load_raw=lambda p=raw_path: self._load_raw(p),
                load_events=lambda e=events_path: read_events(e, self.wav, self.sentence_gap),
                events_path=events_path)

    def check_notes(self) -> list[str]:
        """The unconfirmed schema, and the wavs the events name that are not there."""
        missing: list[Path] = []
        for _, _, _, events_path in self._sessions():
            if not events_path.is_file():
                continue
            try:
                values = sound_values(events_path)
            except StudyError:
                continue  # reported with the recording
            for value in values:
                try:
                    wav = self.wav(value)
                except StudyError:
                    continue
                if not wav.is_file() and wav not in missing:
                    missing.append(wav)
        notes = [SCHEMA_NOTE]
        if missing:
            notes.append(f"audio: {len(missing)} wav(s) named by wav_onset events are missing, "
                         f"e.g. {', '.join(map(str, missing[:3]))}; put the stimulus wavs in "
                         f"<root>/{self.audio_dir}/ (option audio_dir) for retrieval")
        return notes
