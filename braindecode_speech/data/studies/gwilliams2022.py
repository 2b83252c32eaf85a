"""MEG-MASC (Gwilliams et al. 2023): 27 subjects listening to 4 English stories, KIT MEG.

Layout (BIDS, OSF projects ag3kj + h2tzn + u5327 merged into one folder)::

    participants.tsv
    stimuli/audio/{lw1,cable_spool_fort,easy_money,the_black_willow}_<k>.wav
    sub-01/ses-0/meg/sub-01_ses-0_task-0_meg.con       # KIT, 1000 Hz
    sub-01/ses-0/meg/sub-01_ses-0_task-0_events.tsv

- The task index is the story, fixed across subjects: 0 = lw1, 1 = cable_spool_fort,
  2 = easy_money, 3 = The_Black_Willow. Sessions ``0`` and ``1`` are identical; 5 subjects
  have one session only.
- ``events.tsv``: ``trial_type`` is a Python dict literal (``{'kind': 'word', 'word': ...}``),
  parsed with :func:`ast.literal_eval`. Kinds: ``sound`` (one wav chunk), ``word`` and
  ``phoneme``; ``start`` is the time in the wav chunk, so word onset = sound onset + start
  (checked to within :data:`ONSET_TOLERANCE`).
- Sound paths in the events (``stimuli/audio/The_Black_Willow_0.0.wav``) differ from the real
  files (``the_black_willow_0.wav``): lower case, integer sound id. A path that leaves the
  study folder (``../``, absolute, a symlink to elsewhere) is an error naming the events file
  and line.
- Sentences: word ``sequence_id`` values are positions within the story; the common
  ``sequence_id`` is ``<story>:<sequence>:<hash of the words>``, identical across subjects.
  Word lists and pseudo-words keep their ``condition`` (``word_list``, ``pseudo_words``).
- Channels: the 208 axial gradiometers (``MEG 001``..``MEG 208``, typed ``mag`` by MNE) are
  kept; the 16 reference magnetometers and 32 misc channels are dropped.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import mne
import pandas as pd

from ..events import make_events
from ..stimuli import inside_root, sound_duration
from ..study import Recording, StudyError
from ._adapter import StudyAdapter, sentence_uid
from ._readers import read_table

__all__ = ["Gwilliams2022", "STORIES", "read_events", "sound_file", "sound_files"]

logger = logging.getLogger(__name__)

#: story of each task index (the BIDS ``task`` entity)
STORIES = ("lw1", "cable_spool_fort", "easy_money", "The_Black_Willow")
#: largest accepted difference between a word's onset and its sound onset + ``start``, s
ONSET_TOLERANCE = 0.005
_SOUND_PATH = re.compile(r"^(?P<folder>.*/)?(?P<story>[^/]+)_(?P<index>\d+)(\.0+)?\.wav$")


def sound_file(root: Path, sound: str) -> Path:
    """The wav file named by an events ``sound`` entry, e.g.
    ``stimuli/audio/The_Black_Willow_0.0.wav`` → ``<root>/stimuli/audio/the_black_willow_0.wav``.

    Raises ``ValueError`` for an unexpected name and :class:`StudyError` for a path outside
    ``root`` (:func:`~braindecode_speech.data.stimuli.inside_root`)."""
    match = _SOUND_PATH.match(str(sound))
    if match is None:
        raise ValueError(f"unexpected sound path {sound!r}")
    folder = match["folder"] or "stimuli/audio/"
    return inside_root(root, f"{folder}{match['story'].lower()}_{int(match['index'])}.wav")


def _parse_trial_types(table: pd.DataFrame, path: Path) -> list[dict]:
    infos = []
    for index, text in table["trial_type"].items():
        try:
            info = ast.literal_eval(str(text))
        except (ValueError, SyntaxError):
            info = None
        if not isinstance(info, dict) or "kind" not in info:
            raise StudyError(f"{path}: line {index + 2}: trial_type is not a dict literal "
                             f"with a 'kind' key: {str(text)[:80]!r}")
        infos.append(info)
    return infos


def _read_table(path: Path) -> pd.DataFrame:
    table = read_table(path, "events table", sep="\t", dtype={"trial_type": str})
    missing = {"onset", "duration", "trial_type"} - set(table.columns)
    if missing:
        raise StudyError(f"{path}: events table lacks columns {sorted(missing)}")
    return table


def sound_files(path: Path, root: Path) -> list[Path]:
    """The wav files played in a recording (from the ``sound`` rows of its events.tsv)."""
    table = _read_table(path)
    is_sound = table["trial_type"].str.contains("'kind': 'sound'", regex=False, na=False)
    infos = _parse_trial_types(table[is_sound], path)
    files = set()
    for index, info in zip(table.index[is_sound], infos):
        try:
            files.add(sound_file(root, info["sound"]))
        except (KeyError, ValueError, StudyError) as exc:
            raise StudyError(f"{path}: line {index + 2}: bad 'sound' event "
                             f"({type(exc).__name__}: {exc})") from None
    return sorted(files)


def _event_row(info: dict, onset: float, duration: float, root: Path,
               sounds: dict[str, float]) -> dict:
    """One common-schema row from a parsed ``trial_type``; a sound's onset is recorded in
    ``sounds`` (by sound id)."""
    kind = info["kind"]
    if kind not in ("sound", "word", "phoneme"):
        raise StudyError(f"unknown event kind {kind!r}")
    wav = sound_file(root, info["sound"])
    duration = float(duration) if pd.notna(duration) else 0.0
    row = {"onset": onset, "duration": duration, "kind": kind, "story": info.get("story"),
           "sound_id": wav.stem, "voice": info.get("voice")}
    if kind == "sound":
        if not wav.is_file():
            raise StudyError(f"sound file {wav} is missing")
        sounds[wav.stem] = onset
        row.update(filepath=str(wav), offset=0.0, duration=duration or sound_duration(wav))
    elif kind == "word":
        row.update(offset=float(info["start"]), word=str(info["word"]),
                   word_index=int(info["word_index"]), condition=info.get("condition"),
                   _sequence=info.get("sequence_id"))
    else:
        row.update(offset=float(info["start"]), phoneme=str(info["phoneme"]))
    return row


def read_events(path: Path, root: Path) -> pd.DataFrame:
    """Read one ``events.tsv`` into the common events schema.

    Raises
    ------
    StudyError : naming ``path`` (and the line) for unparsable rows, unknown kinds, words
        whose sound has no event, words whose onset disagrees with sound onset + ``start``,
        and missing wav files.
    """
    table = _read_table(path)
    infos = _parse_trial_types(table, path)
    sounds: dict[str, float] = {}
    rows = []
    for line, (onset, duration, info) in enumerate(
            zip(table["onset"], table["duration"], infos), start=2):
        try:
            rows.append((line, _event_row(info, float(onset), duration, root, sounds)))
        except (KeyError, TypeError, ValueError) as exc:
            raise StudyError(f"{path}: line {line}: bad {info['kind']!r} event "
                             f"({type(exc).__name__}: {exc})") from None
        except StudyError as exc:
            raise StudyError(f"{path}: line {line}: {exc}") from None
    for line, row in rows:
        if row["kind"] == "sound":
            continue
        if row["sound_id"] not in sounds:
            raise StudyError(f"{path}: line {line}: {row['kind']} refers to sound "
                             f"{row['sound_id']!r}, which has no sound event")
        expected = sounds[row["sound_id"]] + row["offset"]
        if abs(row["onset"] - expected) > ONSET_TOLERANCE:
            raise StudyError(f"{path}: line {line}: {row['kind']} onset {row['onset']:.3f} s "
                             f"differs from sound onset + start = {expected:.3f} s")
    events = make_events([row for _, row in rows])
    return _add_sentence_ids(events)


def _sequence_number(value: object) -> str:
    """The events' ``sequence_id`` (a float or int) as an integer string, ``"none"`` if absent."""
    try:
        return str(int(float(value)))
    except (TypeError, ValueError):
        return "none"


def _add_sentence_ids(events: pd.DataFrame) -> pd.DataFrame:
    """Common ``sequence_id`` of the words: ``<story>:<sequence>:<hash of the words>`` for each
    run of consecutive words (in time order) sharing the story's sequence number."""
    events = events.sort_values("onset", kind="stable").reset_index(drop=True)
    words = events.index[events["kind"] == "word"]
    if words.empty:
        return events.drop(columns="_sequence", errors="ignore")
    keys = events.loc[words, "story"].astype(str) + ":" + \
        events.loc[words, "_sequence"].map(_sequence_number)
    for _, members in keys.groupby((keys != keys.shift()).cumsum()):
        events.loc[members.index, "sequence_id"] = sentence_uid(
            members.iloc[0], events.loc[members.index, "word"])
    return events.drop(columns="_sequence", errors="ignore")


class Gwilliams2022(StudyAdapter):
    """MEG-MASC adapter: one recording per subject, session and story (task)."""

    name = "gwilliams2022"
    modality = "meg"
    language = "english"
    n_channels = 208
    sfreq = 1000.0

    def read_native(self, path: Path) -> mne.io.BaseRaw:
        return mne.io.read_raw_kit(path, stim=None, preload=False, verbose="error")

    def _load_raw(self, path: Path) -> mne.io.BaseRaw:
        raw = self.open_raw(path)
        picks = mne.pick_types(raw.info, meg=True, ref_meg=False)
        return self.keep_channels(raw, picks, "MEG (without references)", path)

    def _participants(self) -> list[str]:
        path = self.root / "participants.tsv"
        if not path.is_file():
            raise StudyError(f"{path}: participants.tsv is missing (is {self.root} the BIDS "
                             "root of MEG-MASC?)")
        table = pd.read_csv(path, sep="\t", dtype=str)
        if "participant_id" not in table.columns:
            raise StudyError(f"{path}: no 'participant_id' column")
        subjects = [p.removeprefix("sub-") for p in table["participant_id"]]
        for folder in sorted(self.root.glob("sub-*")):
            if folder.name.removeprefix("sub-") not in subjects:
                self.problem(folder, "subject folder not listed in participants.tsv")
        return subjects

    def _discover(self) -> Iterator[Recording]:
        for subject in self._participants():
            if not self.wants(subject):
                continue
            sessions = sorted(p.name.removeprefix("ses-")
                              for p in (self.root / f"sub-{subject}").glob("ses-*"))
            if not sessions:
                self.problem(self.root / f"sub-{subject}", "no ses-* folder")
            for session in sessions:
                for task in range(len(STORIES)):
                    recording = self._recording(subject, session, str(task))
                    if recording is not None:
                        yield recording

    def _recording(self, subject: str, session: str, task: str) -> Recording | None:
        folder = self.root / f"sub-{subject}" / f"ses-{session}" / "meg"
        stem = f"sub-{subject}_ses-{session}_task-{task}"
        raw_path, events_path = folder / f"{stem}_meg.con", folder / f"{stem}_events.tsv"
        for needed in (raw_path, events_path):
            if not needed.is_file():
                self.problem(needed, "file is missing")
                return None
        try:
            missing = [wav for wav in sound_files(events_path, self.root) if not wav.is_file()]
        except StudyError as exc:
            self.problem(events_path, str(exc).removeprefix(f"{events_path}: "))
            return None
        if missing:
            self.problem(missing[0], f"sound file is missing (played in {events_path.name})")
            return None
        return self.make_recording(
            subject, session, task, None, raw_path,
            load_raw=lambda: self._load_raw(raw_path),
            load_events=lambda: read_events(events_path, self.root), events_path=events_path)

