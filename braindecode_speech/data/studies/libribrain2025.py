"""LibriBrain (Oxford PNPL, 2025): one person, about 50 h of MEG while listening to the Sherlock
Holmes audiobooks (LibriVox), released already preprocessed, MEGIN/Elekta TRIUX Neo.

Layout (Hugging Face dataset ``pnpl/LibriBrain``)::

    <Task>/derivatives/serialised/sub-0_ses-<S>_task-<Task>_run-<R>_proc-bads+headpos+sss+notch+bp+ds_meg.h5
    <Task>/derivatives/events/sub-0_ses-<S>_task-<Task>_run-<R>_events.tsv
    <Task>/stimuli/audio/ses-<S>_run-<R>.wav        # NOT in the release: the user's (see below)

- Tasks ``Sherlock1``..``Sherlock7`` (one per book), sessions ``1``..``15`` within a book, run
  ``1`` (``2`` for two Sherlock1 sessions). The official validation run is (subject 0, session
  11, Sherlock1, run 2) and the test run (0, 12, Sherlock1, 2) (:data:`FIXED_RUNS`), every other
  run is for training: every event carries that split in ``fixed_split`` (``train`` / ``valid``
  / ``test``), which :mod:`braindecode_speech.data.splits` follows (``splits.study_splits``;
  False: the paper's draw per block). Any subject id in the file names is read (the release has
  subject ``0`` only).
- HDF5 file: dataset ``data`` (306 channels x time, float, T and T/m as written by MNE after
  bad-channel repair, head-position correction, SSS, notch and band-pass filtering and
  downsampling to 250 Hz) and attribute ``sample_frequency``. It is read lazily with ``h5py``
  (:class:`RawHDF5`). Channel names come from a ``channel_names`` attribute when there is one;
  otherwise the rows are taken in the standard MEGIN order (``MEG0113``, ``MEG0112``,
  ``MEG0111``, ``MEG0122``..., that of MNE's ``Vectorview-all`` layout), which places the
  sensors: 204 planar gradiometers (names ending in 2 or 3) and 102 magnetometers (ending in
  1), with the Vectorview/TRIUX coil types, so MNE finds the ``Vectorview-all`` layout.
- ``events.tsv``: one row per word (``kind`` = ``word``, ``segment`` = the word) and per phoneme
  (``phoneme``, ``segment`` = ARPAbet with a position suffix, e.g. ``ah_B``), onset ``timemeg``
  (s on the recording clock), ``duration``, ``sentenceidx``, ``wordidx``. Other kinds and the
  ``sil`` phonemes (silences) are left out; ``oov_S`` (out-of-vocabulary) phonemes are kept.
  ``sequence_id`` = ``<session>:<task>:<run>:<sentenceidx>:<hash of the words>``, ``word_index``
  = position in the sentence (in time order); the columns ``sentenceidx`` and ``wordidx`` are
  kept.
- Audio: the release has none. Retrieval needs the sound each run played: put it at
  ``<Task>/stimuli/audio/ses-<S>_run-<R>.wav`` (:meth:`LibriBrain2025.wav`; ``check`` lists the
  missing ones). Its time axis is the events' ``timechapter`` column (s into the chapter's
  audio) when they have one (the offset is the median of ``timemeg - timechapter``; the column
  is seen in third-party code, UNCONFIRMED); otherwise the wav's time 0 is the recording's time
  0. Without the wav a recording still loads, with word and phoneme events but no sound event
  (enough for speech detection and phoneme classification, not for retrieval).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import mne
import numpy as np
import pandas as pd
from mne.io.constants import FIFF

from ..events import make_events
from ..stimuli import inside_root, sound_duration
from ..study import Recording, StudyError
from ._adapter import StudyAdapter, sentence_uid
from ._readers import read_table

__all__ = ["LibriBrain2025", "FIXED_RUNS", "RawHDF5", "read_hdf5_raw", "read_events",
           "vectorview_info", "PROCESSING"]

logger = logging.getLogger(__name__)

#: processing label of the released HDF5 files
PROCESSING = "bads+headpos+sss+notch+bp+ds"
#: the official validation and test runs of subject 0: (session, task, run) -> split (a run of
#: another subject id, as in the example layouts, is fixed alike)
FIXED_RUNS = {("11", "Sherlock1", "2"): "valid", ("12", "Sherlock1", "2"): "test"}
#: columns every events.tsv must have
EVENT_COLUMNS = ("kind", "segment", "timemeg")
_STEM = re.compile(r"^sub-(?P<subject>[^_]+)_ses-(?P<session>[^_]+)_task-(?P<task>[^_]+)_"
                   r"run-(?P<run>[^_]+)_proc-(?P<proc>[^_]+)_meg\.h5$")


def vectorview_info(sfreq: float, names: Sequence[str] | None = None) -> mne.Info:
    """Measurement info of the 306 MEGIN/Elekta channels (``MEG0113``.., in ``names``' order, or
    the standard one of MNE's ``Vectorview-all`` layout), typed ``grad`` / ``mag`` with the
    Vectorview coil types (planar gradiometer T1, magnetometer T3).

    Raises ``ValueError`` for a name that is not a MEGIN sensor."""
    layout = [n.replace(" ", "") for n in mne.channels.read_layout("Vectorview-all").names]
    names = layout if names is None else [str(n).replace(" ", "") for n in names]
    unknown = [n for n in names if n not in layout]
    if unknown:
        raise ValueError(f"channels {unknown[:5]} are not MEGIN/Elekta sensors")
    types = ["mag" if n.endswith("1") else "grad" for n in names]
    info = mne.create_info(names, sfreq, types)
    with info._unlock():
        for ch in info["chs"]:
            ch["coil_type"] = (FIFF.FIFFV_COIL_VV_MAG_T3 if ch["kind"] == FIFF.FIFFV_MEG_CH
                               and ch["unit"] == FIFF.FIFF_UNIT_T else
                               FIFF.FIFFV_COIL_VV_PLANAR_T1)
    return info


class RawHDF5(mne.io.BaseRaw):
    """A LibriBrain HDF5 file as a lazy MNE raw (samples read with ``h5py`` on demand)."""

    def __init__(self, path: Path, info: mne.Info, n_times: int) -> None:
        super().__init__(info, preload=False, last_samps=[n_times - 1], filenames=[str(path)],
                         verbose="error")

    def _read_segment_file(self, data, idx, fi, start, stop, cals, mult):  # noqa: D401
        import h5py
        from mne._fiff.utils import _mult_cal_one

        with h5py.File(self.filenames[fi], "r") as f:
            block = np.asarray(f["data"][:, start:stop], dtype=np.float64)
        _mult_cal_one(data, block, idx, cals, mult)


def read_hdf5_raw(path: Path) -> RawHDF5:
    """Open a LibriBrain HDF5 file (header only).

    Raises
    ------
    StudyError : naming ``path`` when it is missing, not a readable HDF5 file (e.g.
        truncated), lacks the ``data`` dataset or the ``sample_frequency`` attribute, or
        has channel names that are not MEGIN sensors.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: HDF5 file is missing")
    try:
        with h5py.File(path, "r") as f:
            if "data" not in f:
                raise StudyError(f"{path}: HDF5 file has no 'data' dataset "
                                 f"(found {sorted(f.keys())[:5]})")
            shape = f["data"].shape
            if "sample_frequency" not in f.attrs:
                raise StudyError(f"{path}: HDF5 file has no 'sample_frequency' attribute")
            sfreq = float(np.asarray(f.attrs["sample_frequency"]).ravel()[0])
            names = f.attrs.get("channel_names")
    except OSError as exc:
        raise StudyError(f"{path}: not a readable HDF5 file ({exc})") from None
    if len(shape) != 2 or 0 in shape:
        raise StudyError(f"{path}: 'data' has shape {shape}, expected channels x time")
    if not sfreq > 0:
        raise StudyError(f"{path}: 'sample_frequency' is {sfreq}, expected a positive rate")
    if names is not None:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.ravel(names)]
        if len(names) != shape[0]:
            raise StudyError(f"{path}: {len(names)} channel names for {shape[0]} channels")
    elif shape[0] != 306:
        raise StudyError(f"{path}: {shape[0]} channels and no 'channel_names' attribute; "
                         "expected the 306 MEGIN channels")
    try:
        info = vectorview_info(sfreq, names)
    except ValueError as exc:
        raise StudyError(f"{path}: {exc}") from None
    return RawHDF5(path, info, shape[1])


def _read_table(path: Path) -> pd.DataFrame:
    table = read_table(path, "events table", sep="\t", keep_default_na=False,
                       na_values=["", "n/a", "NaN", "nan"])
    missing = [c for c in EVENT_COLUMNS if c not in table.columns]
    if missing:
        raise StudyError(f"{path}: events table lacks columns {missing} (has "
                         f"{list(table.columns)[:10]})")
    for column in ("timemeg", "duration", "timechapter"):
        if column in table.columns:
            try:
                table[column] = pd.to_numeric(table[column], errors="raise")
            except (TypeError, ValueError) as exc:
                raise StudyError(f"{path}: column {column!r} is not numeric ({exc})") from None
    return table


def sound_offset(table: pd.DataFrame) -> float:
    """MEG time of the chapter audio's time 0, s: the median of ``timemeg - timechapter``
    (0 when the events have no ``timechapter``)."""
    if "timechapter" not in table.columns:
        return 0.0
    both = table[["timemeg", "timechapter"]].dropna()
    return float(np.median(both["timemeg"] - both["timechapter"])) if len(both) else 0.0


def read_events(path: Path, wav: Path | None, key: tuple[str, str, str, str],
                split: str | None = None) -> pd.DataFrame:
    """One ``events.tsv`` in the common schema (a sound event when ``wav`` is given).

    Parameters
    ----------
    key : ``(subject, session, task, run)``, the prefix of the sentence ids.
    split : the split fixed for every event of the run (``fixed_split``), or None.

    Raises
    ------
    StudyError : naming ``path`` (and the line) for a missing column, a non-numeric time, a
        word or phoneme without onset or label.
    """
    table = _read_table(path)
    kinds = table["kind"].astype(str).str.strip().str.lower()
    keep = kinds.isin(["word", "phoneme"])
    bad = keep & (table["timemeg"].isna() | table["segment"].isna())
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise StudyError(f"{path}: line {line}: {kinds[bad].iloc[0]} without 'timemeg' or "
                         f"'segment'")
    silence = keep & (kinds == "phoneme") & (table["segment"].astype(str).str.strip() == "sil")
    lag = sound_offset(table)
    rows = []
    extra = [c for c in ("sentenceidx", "wordidx") if c in table.columns]
    for index in np.flatnonzero((keep & ~silence).to_numpy()):
        row = table.iloc[index]
        kind = kinds.iloc[index]
        onset = float(row["timemeg"])
        duration = float(row["duration"]) if "duration" in table and pd.notna(
            row["duration"]) else 0.0
        event = {"onset": onset, "duration": duration, "kind": kind, "story": key[2],
                 **{c: row[c] for c in extra}}
        if wav is not None:
            event["offset"] = onset - lag
        label = str(row["segment"]).strip()
        event["word" if kind == "word" else "phoneme"] = label
        rows.append(event)
    if wav is not None:
        start = max(lag, 0.0)
        rows.append({"onset": start, "duration": sound_duration(wav) - (start - lag),
                     "kind": "sound", "filepath": str(wav), "offset": start - lag,
                     "story": key[2], "sound_id": wav.stem})
    events = make_events(rows)
    if split is not None:
        events["fixed_split"] = split
    return _add_sentence_ids(events, ":".join(key[1:]))


def _add_sentence_ids(events: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """Common ``sequence_id`` and ``word_index`` of the words: runs of consecutive words (in
    time order) sharing ``sentenceidx`` (every word is its own run without the column)."""
    events = events.sort_values("onset", kind="stable").reset_index(drop=True)
    words = events.index[events["kind"] == "word"]
    if words.empty:
        return events
    if "sentenceidx" in events.columns:
        keys = events.loc[words, "sentenceidx"].map(_index_text)
    else:
        keys = pd.Series(np.arange(len(words)).astype(str), index=words)
    for _, members in keys.groupby((keys != keys.shift()).cumsum()):
        events.loc[members.index, "sequence_id"] = sentence_uid(
            f"{prefix}:{members.iloc[0]}", events.loc[members.index, "word"])
        events.loc[members.index, "word_index"] = np.arange(len(members))
    return events


def _index_text(value: object) -> str:
    """An index read from a table (``3``, ``3.0``, ``"3"``) as ``"3"``; other values as text."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(number)) if number.is_integer() else str(value)


class LibriBrain2025(StudyAdapter):
    """LibriBrain adapter: one recording per HDF5 file (subject, session, book, run).

    Parameters
    ----------
    tasks : books to keep (e.g. ``["Sherlock1"]``; None: every ``Sherlock*`` folder).
    """

    name = "libribrain2025"
    modality = "meg"
    language = "english"
    n_channels = 306
    sfreq = 250.0

    def __init__(self, root: str | Path, subjects: Sequence[str] | None = None,
                 strict: bool = True,
                 raw_reader: Callable[[Path], mne.io.BaseRaw] | None = None,
                 tasks: Sequence[str] | None = None) -> None:
        super().__init__(root, subjects, strict, raw_reader)
        self.tasks = None if tasks is None else [str(t) for t in tasks]

    def wav(self, session: str, task: str, run: str) -> Path:
        """Where the audio of a run is expected (not part of the release)."""
        # a symlink placed there must not lead out of the study folder
        return inside_root(self.root, f"{task}/stimuli/audio/ses-{session}_run-{run}.wav")

    def events_path(self, subject: str, session: str, task: str, run: str) -> Path:
        return (self.root / task / "derivatives" / "events" /
                f"sub-{subject}_ses-{session}_task-{task}_run-{run}_events.tsv")

    def _load_raw(self, path: Path) -> mne.io.BaseRaw:
        raw = self.raw_reader(path) if self.raw_reader is not None else read_hdf5_raw(path)
        picks = mne.pick_types(raw.info, meg=True, ref_meg=False)
        return self.keep_channels(raw, picks, "MEG", path)

    def _runs(self) -> list[tuple[tuple[str, str, str, str], Path]]:
        """``((subject, session, task, run), h5 path)`` of every HDF5 file, sorted."""
        folders = sorted(p for p in self.root.glob("Sherlock*") if p.is_dir())
        if self.tasks is not None:
            folders = [p for p in folders if p.name in self.tasks]
            missing = sorted(set(self.tasks) - {p.name for p in folders})
            for task in missing:
                self.problem(self.root / task, "book folder is missing")
        if not folders:
            raise StudyError(f"{self.root}: no Sherlock* folder (is it the LibriBrain root, "
                             "holding Sherlock1/derivatives/serialised/...?)")
        runs = []
        for folder in folders:
            for path in sorted((folder / "derivatives" / "serialised").glob("*.h5")):
                match = _STEM.match(path.name)
                if match is None or match["task"] != folder.name:
                    self.problem(path, "unexpected file name (expected sub-<s>_ses-<S>_task-"
                                       f"{folder.name}_run-<R>_proc-<steps>_meg.h5)")
                    continue
                if match["proc"] != PROCESSING:
                    logger.info("%s: processing %r, not the released %r", path, match["proc"],
                                PROCESSING)
                key = (match["subject"], match["session"], match["task"], match["run"])
                runs.append((key, path))

        def order(item: tuple[tuple[str, str, str, str], Path]) -> tuple:
            (subject, session, task, run), _ = item
            return (subject, task, int(session) if session.isdigit() else session, run)

        return sorted(runs, key=order)

    def _discover(self) -> Iterator[Recording]:
        for key, path in self._runs():
            subject, session, task, run = key
            if not self.wants(subject):
                continue
            events_path = self.events_path(*key)
            if not events_path.is_file():
                self.problem(events_path, "events file is missing")
                continue
            wav = self.wav(session, task, run)
            wav = wav if wav.is_file() else None
            split = FIXED_RUNS.get((session, task, run), "train")
            yield self.make_recording(
                subject, session, task, run, path,
                load_raw=lambda p=path: self._load_raw(p),
                load_events=lambda e=events_path, w=wav, k=key, s=split: read_events(e, w, k, s),
                events_path=events_path)

    def missing_audio(self) -> list[Path]:
        """The wavs the runs of the local copy expect and that are not there."""
        seen = []
        for (_, session, task, run), _ in self._runs():
            wav = self.wav(session, task, run)
            if not wav.is_file() and wav not in seen:
                seen.append(wav)
        return seen

    def check_notes(self) -> list[str]:
        """Where the audio goes (it is not part of the release), for ``check``."""
        missing = self.missing_audio()
        if not missing:
            return ["audio: every run has its wav (not part of the release; yours)"]
        shown = ", ".join(str(p) for p in missing[:3])
        return [f"audio: {len(missing)} run(s) without their wav, e.g. {shown}. The release "
                "has no audio: retrieval needs the LibriVox recording each run played, at "
                "<root>/<Task>/stimuli/audio/ses-<S>_run-<R>.wav (time 0 = the events' "
                "timechapter 0, or the recording's start without that column); speech "
                "detection and phoneme classification work without it"]
