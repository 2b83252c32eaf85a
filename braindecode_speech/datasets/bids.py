"""Generic adapter for BIDS speech-listening datasets (MEG or EEG).

:class:`BIDSStudy` finds every recording with mne-bids, opens raw data lazily with
``mne_bids.read_raw_bids`` and maps each ``events.tsv`` to the common events schema
(:mod:`braindecode_speech.events`) through a configurable column mapping
(:class:`BIDSColumns`):

- the kind column (``trial_type`` by default) and its values for sounds, words, phonemes and
  sentences; sentence rows become ``block`` events (with their ``sequence_id``); rows of
  other kinds are left out (their count is logged);
- the sound column holds wav paths relative to the BIDS root, resolved to absolute
  ``filepath`` s (a missing wav is an error naming the events file and the wav);
- the offset column gives the time of each event inside its wav file (``offset``; 0 for sound
  rows without one);
- word, phoneme, sequence id, word index, condition, story and voice columns are copied.

``n/a`` cells are missing values; no other text is (a word "null" stays a word).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import mne
import mne_bids
import pandas as pd

from ..config import Config
from ..events import make_events
from ..study import Recording, Study, StudyError

__all__ = ["BIDSColumns", "BIDSStudy", "RAW_EXTENSIONS"]

logger = logging.getLogger(__name__)

#: raw data files recognised as recordings
RAW_EXTENSIONS = (".fif", ".vhdr", ".edf", ".bdf", ".set", ".con", ".sqd", ".ds")
_MODALITIES = ("meg", "eeg")


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
    """

    name = "bids"

    def __init__(self, root: str | Path, subjects: list[str] | None = None,
                 datatype: str | None = None, columns: BIDSColumns | None = None) -> None:
        super().__init__(root, subjects)
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
                raise StudyError(f"{events.fpath}: events file of {path.fpath.name} is missing")
            yield Recording(study=self.name, subject=path.subject, session=path.session,
                            task=path.task, run=path.run, path=path.fpath,
                            load_raw=partial(_read_raw, path),
                            load_events=partial(self.read_events, events.fpath))

    def read_events(self, path: str | Path) -> pd.DataFrame:
        """The events of ``path`` (an ``events.tsv``) in the common schema (not validated)."""
        path = Path(path)
        c = self.columns
        try:
            table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)
        except (OSError, pd.errors.ParserError) as exc:
            raise StudyError(f"{path}: cannot read events ({exc})") from exc
        for column in ("onset", "duration", c.kind):
            if column not in table.columns:
                raise StudyError(f"{path}: no {column!r} column (columns: {list(table.columns)})")
        kinds = {c.sound_value: "sound", c.word_value: "word", c.phoneme_value: "phoneme",
                 c.sentence_value: "block"}
        kinds.pop(None, None)
        kind = table[c.kind].map(kinds)
        if kind.isna().any():
            left_out = table.loc[kind.isna(), c.kind].fillna("n/a").value_counts().to_dict()
            logger.info("%s: events of other kinds left out: %s", path, left_out)
        table = table.assign(kind=kind)[kind.notna()].reset_index(drop=True)
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
            out["filepath"] = [None if pd.isna(s) else str(self.root / s)
                               for s in table[c.sound]]
            no_path = sounds & out["filepath"].isna()
            if no_path.any():
                raise StudyError(f"{path}: {int(no_path.sum())} sound events have no "
                                 f"{c.sound!r} path")
            for wav in dict.fromkeys(out.loc[sounds, "filepath"]):
                if not Path(wav).is_file():
                    raise StudyError(f"{path}: sound file {wav} does not exist")
        return make_events(out.to_dict("records"))


def _read_raw(path: mne_bids.BIDSPath) -> mne.io.BaseRaw:
    with warnings.catch_warnings():
        # participants.tsv columns other than age/sex/hand are expected
        warnings.filterwarnings("ignore", message="Unable to map the following column")
        return mne_bids.read_raw_bids(path, verbose=False)
