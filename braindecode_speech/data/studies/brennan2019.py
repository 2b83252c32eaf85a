"""Brennan & Hale 2019: EEG of 49 subjects listening to chapter 1 of Alice in Wonderland.

Layout (Deep Blue ``bg257f92t``, zips extracted)::

    S01.mat ... S49.mat                 # FieldTrip struct `raw`, 500 Hz, µV
    proc/S01.mat ...                    # struct `proc`: `trl` = one row per word (42 subjects)
    audio/DownTheRabbitHoleFinal_SoundFile<k>.wav     # 12 segments
    AliceChapterOne-EEG.csv             # one row per word: Word, Segment, onset, Order, ...

- Channels: labels ``1``..``61`` without ``29`` (the reference) are the 60 EEG channels
  (easyCAP M10 positions); ``VEOG`` and the audio copy ``Aux5`` are dropped; µV → V.
- Word onsets: ``proc.trl`` columns are begin, end, offset (-150 samples: epochs start 0.3 s
  before the word), segment, tmin, Order, in FieldTrip's **1-based** samples. The word onset
  sample is ``begin - offset``, i.e. time ``(begin - offset - 1) / 500`` s on the recording
  clock (sample 1 is time 0). Rows are joined to the csv by ``Order`` (the csv onset must
  equal ``tmin``). The reference code used ``begin / 500``, 0.3 s too early; not here.
- Sound placement: segment ``k``'s wav starts at (EEG time of its first word) - (that word's
  onset in the wav). A wav starting before the recording gets onset 0 and a positive
  ``offset`` (s into the wav).
- Sentences: ``sequence_id`` = ``alice:<Sentence>``, ``word_index`` = ``Position - 1``.
- Subjects: by default the paper's 33 (:data:`PAPER_SUBJECTS`: the subjects whose ``proc``
  has all 2129 words); ``selection="all"`` keeps every subject with a ``proc`` file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import mne
import numpy as np
import pandas as pd

from ..events import make_events
from ..stimuli import inside_root, sound_duration
from ..study import Recording, StudyError
from ._adapter import StudyAdapter, choice
from ._readers import as_column, read_mat, read_table

__all__ = ["Brennan2019", "PAPER_SUBJECTS", "read_events", "read_eeg"]

logger = logging.getLogger(__name__)

#: the paper's 33 subjects: those of the 42 with a ``proc`` file whose ``trl`` has 2129 words
PAPER_SUBJECTS = tuple(f"S{i:02d}" for i in [1, *range(3, 24), 25, *range(37, 46), 48])
SFREQ = 500.0
CSV_NAME = "AliceChapterOne-EEG.csv"
#: largest accepted difference between ``trl`` tmin and the csv onset of the same word, s
TMIN_TOLERANCE = 1e-3
#: spread of the wav start implied by the words of a segment above which a warning is logged, s
PLACEMENT_TOLERANCE = 0.02
_EEG_LABELS = tuple(str(i) for i in range(1, 62) if i != 29)


def wav_path(root: Path, segment: int) -> Path:
    """The wav of ``segment``; a StudyError if it resolves outside the study folder."""
    return inside_root(root, f"audio/DownTheRabbitHoleFinal_SoundFile{int(segment)}.wav")


def read_eeg(path: Path) -> mne.io.RawArray:
    """Read a FieldTrip ``raw`` struct into an MNE raw with the 60 EEG channels, in V."""
    raw_struct = read_mat(path, "raw")["raw"]
    try:
        labels = [str(label) for label in raw_struct["label"]]
        sfreq = float(raw_struct["fsample"])
        data = raw_struct["trial"]
    except (KeyError, TypeError) as exc:
        raise StudyError(f"{path}: 'raw' is not a FieldTrip raw struct ({exc})") from None
    if isinstance(data, (list, np.ndarray)) and np.asarray(data, dtype=object).ndim == 1:
        if len(data) != 1:
            raise StudyError(f"{path}: {len(data)} trials, expected one continuous trial")
        data = data[0]
    data = np.asarray(data, dtype=float)
    if sfreq != SFREQ:
        raise StudyError(f"{path}: sampling frequency {sfreq} Hz, expected {SFREQ} Hz")
    if data.shape[0] != len(labels):
        raise StudyError(f"{path}: {data.shape[0]} channels of data for {len(labels)} labels")
    picks = [labels.index(name) for name in _EEG_LABELS if name in labels]
    if len(picks) != len(_EEG_LABELS):
        missing = sorted(set(_EEG_LABELS) - set(labels), key=int)
        raise StudyError(f"{path}: {len(picks)} EEG channels, expected {len(_EEG_LABELS)} "
                         f"(missing labels {missing})")
    info = mne.create_info(list(_EEG_LABELS), sfreq, "eeg")
    raw = mne.io.RawArray(data[picks] * 1e-6, info, verbose="error")  # µV -> V
    raw.set_montage("easycap-M10")
    return raw


def _read_trl(path: Path) -> pd.DataFrame:
    proc = read_mat(path, "proc")["proc"]
    try:
        trl = np.atleast_2d(np.asarray(proc["trl"], dtype=float))
        varnames = [str(v) for v in as_column(proc["varnames"])]
    except (KeyError, TypeError, ValueError) as exc:
        raise StudyError(f"{path}: 'proc' has no usable 'trl'/'varnames' ({exc})") from None
    columns = ["begin", "end", "epoch_offset"] + varnames
    if trl.shape[1] != len(columns) or not {"segment", "tmin", "Order"} <= set(varnames):
        raise StudyError(f"{path}: proc.trl has {trl.shape[1]} columns, expected "
                         f"begin, end, offset, segment, tmin, Order")
    return pd.DataFrame(trl, columns=columns)


def read_words_csv(path: Path) -> pd.DataFrame:
    """The word table ``AliceChapterOne-EEG.csv``."""
    table = read_table(path, "word table")
    missing = {"Word", "Segment", "onset", "offset", "Order", "Position", "Sentence"} - \
        set(table.columns)
    if missing:
        raise StudyError(f"{path}: word table lacks columns {sorted(missing)}")
    if table["Order"].duplicated().any():
        raise StudyError(f"{path}: duplicated Order values "
                         f"{sorted(table.loc[table['Order'].duplicated(), 'Order'])[:5]}")
    return table


def read_events(proc_path: Path, root: Path) -> pd.DataFrame:
    """Word and sound events of one subject (common schema), from ``proc.trl`` + the csv."""
    root = Path(root)
    trl = _read_trl(proc_path)
    words_csv = read_words_csv(root / CSV_NAME)
    words = trl.merge(words_csv, on="Order", how="left", validate="one_to_one",
                      indicator=True)
    unknown = words["_merge"] == "left_only"
    if unknown.any():
        raise StudyError(f"{proc_path}: trl Order values {list(words.loc[unknown, 'Order'])[:5]}"
                         f" are not in {CSV_NAME}")
    bad = (words["segment"] != words["Segment"]) | \
        ((words["tmin"] - words["onset"]).abs() > TMIN_TOLERANCE)
    if bad.any():
        first = words.loc[bad].iloc[0]
        raise StudyError(f"{proc_path}: trl row for Order {int(first['Order'])} (segment "
                         f"{int(first['segment'])}, tmin {first['tmin']:.3f}) disagrees with "
                         f"{CSV_NAME} (segment {int(first['Segment'])}, onset "
                         f"{first['onset']:.3f})")
    time = (words["begin"] - words["epoch_offset"] - 1) / SFREQ  # 1-based samples -> s from sample 1
    rows = []
    for segment, part in words.assign(time=time).groupby("Segment", sort=True):
        implied = part["time"] - part["onset"]  # EEG time of the wav start, per word
        start = float(implied.iloc[0])
        if implied.max() - implied.min() > PLACEMENT_TOLERANCE:
            logger.warning("%s: the words of segment %d imply wav starts spread over %.3f s",
                           proc_path, segment, implied.max() - implied.min())
        wav = wav_path(root, segment)
        rows.append({"onset": max(start, 0.0), "offset": max(-start, 0.0), "kind": "sound",
                     "filepath": str(wav), "duration": sound_duration(wav) - max(-start, 0.0),
                     "sound_id": wav.stem, "story": "alice"})
        for word in part.itertuples():
            rows.append({"onset": word.time, "duration": word.offset - word.onset,
                         "kind": "word", "word": re.sub(r"^\W+|\W+$", "", str(word.Word)),
                         "offset": word.onset, "sequence_id": f"alice:{int(word.Sentence)}",
                         "word_index": int(word.Position) - 1, "condition": "sentence",
                         "sound_id": wav.stem, "story": "alice"})
    return make_events(rows)


class Brennan2019(StudyAdapter):
    """Brennan & Hale adapter: one recording per subject.

    Parameters
    ----------
    selection : ``"paper"`` (default; the 33 subjects of :data:`PAPER_SUBJECTS`) or ``"all"``
        (every subject with a ``proc`` file). Ignored when ``subjects`` is given.
    """

    name = "brennan2019"
    modality = "eeg"
    language = "english"
    n_channels = 60
    sfreq = SFREQ

    def __init__(self, root: str | Path, *, selection: Literal["paper", "all"] = "paper",
                 **common: Any) -> None:
        super().__init__(root, **common)
        self.selection = choice("selection", selection, ("paper", "all"))

    def read_native(self, path: Path) -> mne.io.BaseRaw:
        return read_eeg(path)

    def _load_raw(self, path: Path) -> mne.io.BaseRaw:
        raw = self.open_raw(path)
        return self.keep_channels(raw, mne.pick_types(raw.info, eeg=True), "EEG", path)

    def _discover(self) -> Iterator[Recording]:
        for name, hint in ((CSV_NAME, ""), ("proc", " (extract proc.zip)"),
                           ("audio", " (extract audio.zip)")):
            if not (self.root / name).exists():
                raise StudyError(f"{self.root / name}: missing{hint}; is {self.root} the "
                                 "Brennan & Hale download folder?")
        csv = read_words_csv(self.root / CSV_NAME)
        try:
            wavs = [wav_path(self.root, s) for s in sorted(csv["Segment"].unique())]
        except (TypeError, ValueError, StudyError) as exc:
            raise StudyError(f"{self.root / CSV_NAME}: column 'Segment': {exc}") from None
        missing_wavs = [w for w in wavs if not w.is_file()]
        subjects = sorted(p.stem for p in (self.root / "proc").glob("S*.mat"))
        without_proc = sorted({p.stem for p in self.root.glob("S*.mat")} - set(subjects))
        if without_proc:
            logger.info("%s: %d subjects have no proc/ file (no word timings) and are not "
                        "used: %s", self.root, len(without_proc), ", ".join(without_proc))
        for subject in subjects:
            if not self.wants(subject):
                continue
            if self.subjects is None and self.selection == "paper" and \
                    subject not in PAPER_SUBJECTS:
                self.excluded.append(subject)
                continue
            raw_path, proc_path = self.root / f"{subject}.mat", self.root / "proc" / \
                f"{subject}.mat"
            if not raw_path.is_file():
                self.problem(raw_path, "file is missing")
                continue
            if missing_wavs:
                self.problem(missing_wavs[0], "sound file is missing")
                continue
            yield self.make_recording(
                subject, None, None, None, raw_path,
                load_raw=lambda p=raw_path: self._load_raw(p),
                load_events=lambda p=proc_path: read_events(p, self.root),
                events_path=proc_path)
