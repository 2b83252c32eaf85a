"""Generic adapter for BIDS speech-listening datasets (MEG or EEG).

:class:`BIDSStudy` finds every recording with mne-bids, opens raw data lazily with
``mne_bids.read_raw_bids`` and maps each ``events.tsv`` to the common events schema
(:mod:`braindecode_speech.data.events`) through a configurable column mapping
(:class:`BIDSColumns`):

- the kind column (``trial_type`` by default) and its values for sounds, words, phonemes and
  sentences; sentence rows become ``block`` events (with their ``sequence_id``); rows of
  other kinds are left out (their count is logged);
- the sound column holds wav paths relative to the BIDS root, resolved to absolute
  ``filepath`` s; a path leaving the study folder (``../``, an absolute path, a symlink to
  elsewhere) or a missing wav is an error naming the events file, the line and the wav;
- the offset column gives the time of each event inside its wav file (``offset``; 0 for sound
  rows without one);
- word, phoneme, sequence id, word index, condition, story and voice columns are copied.

``n/a`` cells are missing values; no other text is (a word "null" stays a word).

A recording whose events file is missing is a problem of discovery (raised, or skipped and
listed in ``study.skipped`` with ``strict=False``); an unreadable events file or JSON sidecar
is an error naming that file when the recording is read.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import get_args

import mne
import mne_bids
import pandas as pd

from ...config import Config
from ..events import make_events
from ..stimuli import inside_root
from ..study import Modality, Recording, Study, StudyError
from ._readers import read_table

__all__ = ["BIDSColumns", "BIDSStudy", "RAW_EXTENSIONS"]

logger = logging.getLogger(__name__)

#: raw data files recognised as recordings
RAW_EXTENSIONS = (".fif", ".vhdr", ".edf", ".bdf", ".set", ".con", ".sqd", ".ds")
_MODALITIES: tuple[str, ...] = get_args(Modality)


class BIDSColumns(Config):
    """Where the common events schema is found in a BIDS ``events.tsv``.

    The defaults are the columns of the simulated study. A column set to ``None`` is absent.
    """

    kind: str = "trial_type"
    sound_value: str = "sound"
    word_value: str = "word"
    phoneme_value: str | None = "phoneme"
    sentence_value: str | None = "sentence"
    sound: str = "sound"
    sound_offset: str | None = "sound_offset"
    word: str = "word"
    phoneme: str | None = "phoneme"
    sequence_id: str | None = "sequence_id"
    word_index: str | None = "word_index"
    condition: str | None = "condition"
    story: str | None = "story"
    voice: str | None = "voice"


class BIDSStudy(Study):
    """Every MEG or EEG recording of a BIDS dataset.

    Parameters
    ----------
    root : BIDS root folder.
    subjects : subject labels to keep (without ``sub-``); ``None`` for all.
    datatype : ``"meg"`` or ``"eeg"``; ``None`` for the only one present.
    columns : the events.tsv column mapping.
    strict : raise on a missing events file (True) or skip the recording and list it in
        ``skipped`` (False).
    """

    name = "bids"

    def __init__(self, root: str | Path, subjects: list[str] | None = None,
                 datatype: Modality | None = None, columns: BIDSColumns | None = None,
                 strict: bool = True) -> None:
        super().__init__(root, subjects, strict)
        self.columns = columns if columns is not None else BIDSColumns()
        found = [d for d in mne_bids.get_datatypes(self.root) if d in _MODALITIES]
        if datatype is None:
            if len(found) != 1:
                raise StudyError(f"{self.root}: found data types {found or 'none'}; expected "
                                 f"exactly one of {_MODALITIES} (or pass datatype=)")
            datatype = found[0]
        if datatype not in _MODALITIES:
            raise StudyError(f"{self.root}: datatype must be one of {_MODALITIES}, "
                             f"got {datatype!r}")
        self.datatype = datatype
        self.modality = datatype

    def iter_recordings(self) -> Iterator[Recording]:
        paths = mne_bids.find_matching_paths(self.root, datatypes=self.datatype,
                                             suffixes=self.datatype,
                                             extensions=list(RAW_EXTENSIONS))
        recordings = {}
        for path in paths:
            if path.split not in (None, "01"):
                continue  # later parts of a split FIF file
            path = path.copy().update(split=None)
            recordings[(path.subject, path.session or "", path.task or "", path.run or "")] = path
        if not recordings:
            raise StudyError(f"{self.root}: no {self.datatype} recording found")
        for key in sorted(recordings):
            path = recordings[key]
            events = path.copy().update(suffix="events", extension=".tsv")
            if not events.fpath.is_file():
                self.problem(events.fpath, f"events file of {path.fpath.name} is missing")
                continue
            yield Recording(study=self.name, subject=path.subject, session=path.session,
                            task=path.task, run=path.run, path=path.fpath,
                            load_raw=partial(_read_raw, path, self.root),
                            load_events=partial(self.read_events, events.fpath),
                            events_path=events.fpath)

    def read_events(self, path: str | Path) -> pd.DataFrame:
        """The events of ``path`` (an ``events.tsv``) in the common schema (not validated)."""
        path = Path(path)
        c = self.columns
        table = _read_tsv(path, "events file", ("onset", "duration", c.kind))
        kinds = {c.sound_value: "sound", c.word_value: "word", c.phoneme_value: "phoneme",
                 c.sentence_value: "block"}
        kinds.pop(None, None)
        kind = table[c.kind].map(kinds)
        if kind.isna().any():
            left_out = table.loc[kind.isna(), c.kind].fillna("n/a").value_counts().to_dict()
            logger.info("%s: events of other kinds left out: %s", path, left_out)
        table = table.assign(kind=kind, _line=table.index + 2)[kind.notna()] \
            .reset_index(drop=True)
        needed = {"sound": c.sound, "word": c.word, "phoneme": c.phoneme}
        for kind_name, column in needed.items():
            if (table["kind"] == kind_name).any() and (column is None
                                                       or column not in table.columns):
                raise StudyError(f"{path}: {kind_name} events but no {column!r} column")
        out = pd.DataFrame({"onset": table["onset"], "duration": table["duration"],
                            "kind": table["kind"]})
        for target, column in (("word", c.word), ("phoneme", c.phoneme),
                               ("sequence_id", c.sequence_id), ("word_index", c.word_index),
                               ("condition", c.condition), ("story", c.story),
                               ("voice", c.voice), ("offset", c.sound_offset)):
            if column is not None and column in table.columns:
                out[target] = table[column]
        for kind_name, target in (("word", "word"), ("phoneme", "phoneme")):
            if target in out:
                out.loc[out["kind"] != kind_name, target] = None
        if "offset" not in out:
            out["offset"] = float("nan")
        sounds = out["kind"] == "sound"
        out.loc[sounds, "offset"] = out.loc[sounds, "offset"].fillna(0.0)
        if c.sound in table.columns:
            out["sound_id"] = table[c.sound].where(table[c.sound].notna(), None)
            lines = table["_line"]
            out["filepath"] = [None if pd.isna(s) else str(inside_root(self.root, s, path, line))
                               for s, line in zip(table[c.sound], lines)]
            no_path = sounds & out["filepath"].isna()
            if no_path.any():
                raise StudyError(f"{path}: {int(no_path.sum())} sound events have no "
                                 f"{c.sound!r} path (first on line "
                                 f"{int(lines[no_path].iloc[0])})")
            for wav, line in zip(out.loc[sounds, "filepath"], lines[sounds]):
                if not Path(wav).is_file():
                    raise StudyError(f"{path}: line {line}: sound file {wav} is missing")
        return make_events(out.to_dict("records"))


def _read_tsv(path: Path, what: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """A BIDS tsv file with (at least) ``columns``; a StudyError naming ``path`` else."""
    table = read_table(path, what, sep="\t", na_values=["n/a"], keep_default_na=False)
    for column in columns:
        if column not in table.columns:
            raise StudyError(f"{path}: no {column!r} column (columns: {list(table.columns)})")
    return table


def _check_sidecars(path: mne_bids.BIDSPath, root: Path) -> None:
    """Read the files mne-bids reads with a recording before it does, so that a broken one is
    named: the events and channels tsv files, and the JSON files of the recording's folder and
    the folders above it, up to ``root``. Raises a :class:`StudyError` naming the file."""
    for suffix, columns in (("events", ("onset", "duration")), ("channels", ("name",))):
        tsv = path.copy().update(suffix=suffix, extension=".tsv").fpath
        if tsv.is_file():
            _read_tsv(tsv, f"{suffix} file", columns)
    folder = Path(path.fpath).parent
    candidates = []
    while True:
        candidates += sorted(folder.glob("*.json"))
        if folder == root or root not in folder.parents:
            break
        folder = folder.parent
    for candidate in candidates:
        try:
            json.loads(candidate.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise StudyError(f"{candidate}: broken JSON sidecar ({exc})") from None


def _read_raw(path: mne_bids.BIDSPath, root: Path) -> mne.io.BaseRaw:
    _check_sidecars(path, Path(root))
    with warnings.catch_warnings():
        # participants.tsv columns other than age/sex/hand are expected
        warnings.filterwarnings("ignore", message="Unable to map the following column")
        return mne_bids.read_raw_bids(path, verbose=False)
