"""MOUS (Schoffelen et al. 2019), auditory task: Dutch sentences and word lists, CTF MEG.

Layout (Donders repository ``DSC_3011020.09_236_v1``, registration required)::

    sub-A2002/meg/sub-A2002_task-auditory_meg.ds/        # CTF, 1200 Hz
    sourcedata/meg_task/A2002-<n>-MEG-MOUS-Aud.log      # Presentation log
    stimuli/stimuli.txt                                  # "<id> <text>" per stimulus
    stimuli/audio_files/EQ_Ramp_Int2_Int1LPF<id:03d>.wav
    derivatives/phonemes/EQ_Ramp_Int2_Int1LPF<id:03d>.TextGrid   # WebMAUS, optional

- Subjects ``A*`` did the auditory task (``V*`` the visual one, ignored). The paper leaves
  out :data:`EXCLUDED` (split or incomplete recordings); ``selection="all"`` keeps them.
- Timing: the log (0.1 ms units, stimulus-computer clock) is aligned to the triggers of the
  ``UPPT001`` channel (:func:`mne.find_events`): block starts (``ZINNEN``/``WOORDEN``, code
  10), fixations (``FIX``, 20) and the sound rows whose code starts with their trigger value
  (``14 Start File <id>.wav``, ``1 Audio onset``, ``15 End of file``) are matched in order
  and a clock line is fitted (:func:`~braindecode_speech.data.studies.presentation_log.fit_clock`;
  a poor fit is an error). The wav's time 0 is the **Audio onset** row (~46 ms after Start
  File). Sounds starting after the last sample of the recording are dropped with a warning.
- Identity: ``sequence_id`` = the stimulus id (``<id>.wav``, a line of ``stimuli.txt``),
  identical across subjects, also in ``sequence_uid``: the paper's block uid (one block per
  sound, never merged; see :mod:`braindecode_speech.data.splits`); ``condition`` = ``sentence`` in ``ZINNEN`` blocks, ``word_list``
  in ``WOORDEN`` blocks.
- Words and phonemes come from the WebMAUS TextGrids (tiers ``ORT-MAU`` and ``MAU``; ``""``
  and ``<p:>`` intervals are pauses), which are not part of the official release. Without a
  TextGrid the sound has no word events and a warning names the missing file (words are
  never guessed); ``braindecode-speech check`` reports recordings without words.
- Channels: the 273 axial gradiometers (typed ``mag`` by MNE) are kept; references, EEG,
  stimulus and misc channels are dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import mne
import pandas as pd

from ..events import make_events
from ..stimuli import inside_root, sound_duration
from ..study import Recording, StudyError
from ._adapter import StudyAdapter, choice
from .presentation_log import LogError, fit_clock, read_presentation_log

__all__ = ["Schoffelen2019", "EXCLUDED", "read_stimuli", "trigger_code"]

logger = logging.getLogger(__name__)

#: auditory subjects left out by the paper (two separate MEG runs or incomplete data)
EXCLUDED = ("A2011", "A2036", "A2062", "A2063", "A2076", "A2084")
TRIGGER_CHANNEL = "UPPT001"
_BLOCKS = {"ZINNEN": "sentence", "WOORDEN": "word_list"}
_SOUND_CODE = re.compile(r"^(?P<trigger>\d+) (Start File (?P<file>\d+)\.wav|Audio onset|"
                         r"End of file)\s*$")


def trigger_code(code: str) -> int | None:
    """The ``UPPT001`` value sent with a log row, or None for rows without a trigger."""
    code = str(code).strip()
    if code.startswith("FIX"):
        return 20
    if code in _BLOCKS:
        return 10
    match = _SOUND_CODE.match(code)
    return int(match["trigger"]) if match else None


def read_stimuli(path: Path) -> dict[int, str]:
    """``stimuli.txt``: ``{stimulus id: text}`` (lines ``<id> <text>``)."""
    if not path.is_file():
        raise StudyError(f"{path}: stimulus list is missing")
    stimuli = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        uid, _, text = line.strip().partition(" ")
        if not uid.isdigit() or int(uid) == 0:
            raise StudyError(f"{path}: line {number}: expected '<id> <text>', got {line!r}")
        stimuli[int(uid)] = text.strip()
    return stimuli


def _played_stimuli(log: pd.DataFrame) -> list[int]:
    matches = log["code"].astype(str).str.extract(_SOUND_CODE)["file"].dropna()
    return [int(uid) for uid in matches]


def _textgrid_rows(path: Path, onset: float) -> list[dict]:
    """Word (``ORT-MAU``) and phoneme (``MAU``) rows of a WebMAUS TextGrid, shifted by
    ``onset`` s; pauses (``""``, ``<p:>``) are skipped."""
    from praatio import textgrid

    try:
        grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=False)
        words, phones = grid.getTier("ORT-MAU").entries, grid.getTier("MAU").entries
    except Exception as exc:  # noqa: BLE001 - praatio raises many types on bad files
        raise StudyError(f"{path}: cannot read tiers ORT-MAU and MAU ({exc})") from None
    rows = []
    words = [w for w in words if w.label.strip() not in ("", "<p:>")]
    for index, word in enumerate(words):
        rows.append({"onset": onset + word.start, "duration": word.end - word.start,
                     "kind": "word", "word": word.label.strip(), "word_index": index,
                     "offset": word.start})
    for phone in phones:
        if phone.label.strip() not in ("", "<p:>"):
            rows.append({"onset": onset + phone.start, "duration": phone.end - phone.start,
                         "kind": "phoneme", "phoneme": phone.label.strip(),
                         "offset": phone.start})
    return rows


class Schoffelen2019(StudyAdapter):
    """MOUS auditory-task adapter: one recording per subject.

    Parameters
    ----------
    selection : ``"paper"`` (default: leave out :data:`EXCLUDED`) or ``"all"``. Ignored
        when ``subjects`` is given.
    alignment_tolerance : largest distance, s, of a matched trigger from the fitted clock line.
    """

    name = "schoffelen2019"
    modality = "meg"
    language = "dutch"
    n_channels = 273
    sfreq = 1200.0

    def __init__(self, root: str | Path, *, selection: Literal["paper", "all"] = "paper",
                 alignment_tolerance: float = 0.005, **common: Any) -> None:
        super().__init__(root, **common)
        self.selection = choice("selection", selection, ("paper", "all"))
        self.alignment_tolerance = alignment_tolerance

    def wav(self, uid: int) -> Path:
        """The wav of stimulus ``uid``; a StudyError if it resolves outside the study."""
        return inside_root(self.root, f"stimuli/audio_files/EQ_Ramp_Int2_Int1LPF{uid:03d}.wav")

    def textgrid(self, uid: int) -> Path:
        return self.root / "derivatives" / "phonemes" / f"EQ_Ramp_Int2_Int1LPF{uid:03d}.TextGrid"

    def read_native(self, path: Path) -> mne.io.BaseRaw:
        return mne.io.read_raw_ctf(path, preload=False, verbose="error")

    def _load_raw(self, path: Path) -> mne.io.BaseRaw:
        raw = self.open_raw(path)
        picks = mne.pick_types(raw.info, meg=True, ref_meg=False)
        return self.keep_channels(raw, picks, "MEG (without references)", path)

    def _log_of(self, subject: str) -> Path | None:
        logs = sorted((self.root / "sourcedata" / "meg_task").glob(
            f"{subject}-*-MEG-MOUS-Aud.log"))
        if len(logs) > 1:
            logger.warning("%s: %d logs for %s; using %s", self.root, len(logs), subject,
                           logs[-1].name)
        return logs[-1] if logs else None

    def _discover(self) -> Iterator[Recording]:
        stimuli = read_stimuli(self.root / "stimuli" / "stimuli.txt")
        if not (self.root / "derivatives" / "phonemes").is_dir():
            logger.warning("%s: no derivatives/phonemes/ (WebMAUS TextGrids, not part of the "
                           "official release): recordings will have sound events only",
                           self.root)
        for folder in sorted(self.root.glob("sub-A*")):
            subject = folder.name.removeprefix("sub-")
            if not self.wants(subject):
                continue
            if self.subjects is None and self.selection == "paper" and subject in EXCLUDED:
                self.excluded.append(subject)
                continue
            raw_path = folder / "meg" / f"sub-{subject}_task-auditory_meg.ds"
            if not raw_path.is_dir():
                others = sorted(p.name for p in (folder / "meg").glob("*task-auditory*.ds"))
                self.problem(raw_path, "CTF folder is missing" + (
                    f" (found {others}: split runs are not supported)" if others else ""))
                continue
            log_path = self._log_of(subject)
            if log_path is None:
                self.problem(self.root / "sourcedata" / "meg_task" /
                             f"{subject}-<n>-MEG-MOUS-Aud.log", "Presentation log is missing")
                continue
            try:
                played = _played_stimuli(read_presentation_log(log_path))
            except LogError as exc:
                self.problem(log_path, str(exc).removeprefix(f"{log_path}: "))
                continue
            unknown = [uid for uid in played if uid not in stimuli]
            try:
                missing = [self.wav(uid) for uid in played if not self.wav(uid).is_file()]
            except StudyError as exc:
                self.problem(log_path, str(exc))
                continue
            if not played:
                self.problem(log_path, "no 'Start File <id>.wav' rows: not an auditory log")
            elif unknown:
                self.problem(log_path, f"stimulus ids {unknown[:5]} are not in stimuli.txt")
            elif missing:
                self.problem(missing[0], f"sound file is missing (played in {log_path.name})")
            else:
                yield self.make_recording(
                    subject, None, "auditory", None, raw_path,
                    load_raw=lambda p=raw_path: self._load_raw(p),
                    load_events=lambda p=raw_path, g=log_path: self.read_events(p, g),
                    events_path=log_path)

    def read_events(self, raw_path: Path, log_path: Path) -> pd.DataFrame:
        """Sound, word and phoneme events of one subject, on the MEG clock."""
        log = read_presentation_log(log_path)
        raw = self.open_raw(raw_path)
        if TRIGGER_CHANNEL not in raw.ch_names:
            raise StudyError(f"{raw_path}: no trigger channel {TRIGGER_CHANNEL}")
        found = mne.find_events(raw, stim_channel=TRIGGER_CHANNEL, shortest_event=1,
                                consecutive=True, verbose="error")
        sfreq = raw.info["sfreq"]
        codes = log["code"].map(trigger_code)
        sent = codes.notna() & log["time"].notna()
        try:
            clock = fit_clock(log.loc[sent, "time"].to_numpy(), codes[sent].to_numpy(),
                              (found[:, 0] - raw.first_samp) / sfreq, found[:, 2],
                              source=f"{log_path} vs {raw_path}",
                              tolerance=self.alignment_tolerance)
        except LogError as exc:
            raise StudyError(str(exc)) from None
        end = raw.n_times / sfreq
        rows, no_grid, condition, uid, late = [], [], None, None, 0
        for code, time in zip(log["code"].astype(str).str.strip(), log["time"]):
            if code in _BLOCKS:
                condition = _BLOCKS[code]
            match = _SOUND_CODE.match(code)
            if match and match["file"]:
                uid = int(match["file"])
            if not (match and code.endswith("Audio onset")) or uid is None:
                continue
            onset = float(clock(time))
            if onset > end:
                late += 1
                continue
            wav = self.wav(uid)
            common = {"sequence_id": str(uid), "sequence_uid": str(uid), "condition": condition,
                      "sound_id": wav.stem}
            rows.append({**common, "onset": onset, "duration": sound_duration(wav),
                         "kind": "sound", "filepath": str(wav), "offset": 0.0})
            grid = self.textgrid(uid)
            if grid.is_file():
                rows += [{**common, **row} for row in _textgrid_rows(grid, onset)]
            else:
                no_grid.append(grid)
            uid = None
        if no_grid:
            logger.warning("%s: no TextGrid for %d sounds (e.g. %s): no word events for them",
                           log_path, len(no_grid), no_grid[0])
        if late:
            logger.warning("%s: %d sounds start after the end of %s (%.1f s) and are dropped",
                           log_path, late, raw_path, end)
        logger.debug("%s: clock fit slope %.7f, intercept %.4f s, %d triggers, max error "
                     "%.2f ms", log_path, clock.slope, clock.intercept, clock.n_matched,
                     clock.max_error * 1e3)
        return make_events(rows)

