"""Validate a local copy of a study: what is there, and every problem at once.

:func:`check` builds the study adapter with ``strict=False`` (missing files become skips
instead of errors) and :func:`check_study` opens every recording and reads its events and
signal. It collects, without stopping at the first one:

- files the adapter had to skip (missing raw files, events files, logs, wavs...; the
  study's ``skipped`` list) and unknown subject ids;
- unreadable or damaged raw files (e.g. truncated), and failures while reading the signal;
- unreadable events files (empty, not UTF-8, without ``onset``...) and JSON sidecars, named
  as such, and events that break the common schema: events past the end of the recording,
  duplicated events, missing columns (:func:`braindecode_speech.data.events.validate_events`);
- every sound file the events play, opened (:mod:`braindecode_speech.data.stimuli`): missing,
  empty, unreadable or truncated files, and files shorter than the last event that needs
  them; paths that leave the study folder; recordings without sound or without word events
  (the pipeline needs both);
- NaNs in the signal (scanned in chunks, unless ``scan_signal=False``);
- the study's own notes (:meth:`~braindecode_speech.data.study.Study.check_notes`: audio a
  release lacks and where to put it, an unconfirmed file format), printed before the problems;
- per recording, a data-channel count or sampling frequency other than the study's
  (``study.n_channels``, ``study.sfreq``; a study that defines none, such as the simulated
  one mixing KIT and CTF subjects, may mix counts).

A problem found several times (a truncated wav played in every recording) is listed once.

The :class:`CheckReport` sums up subjects, recordings, hours, words and sentences.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mne
import numpy as np
from tqdm import tqdm

from ..events import EventsError
from ..stimuli import stimulus_problems
from ..study import Recording, Study, StudyError
from . import get

__all__ = ["Problem", "CheckReport", "check", "check_study", "check_recording"]

logger = logging.getLogger(__name__)

#: length of the signal chunks scanned for NaNs, s
SCAN_CHUNK = 60.0


@dataclass(frozen=True)
class Problem:
    """Something wrong with a file (or the study folder)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class CheckReport:
    """Summary of a local copy of a study and its problems."""

    study: str
    root: Path
    subjects: list[str] = field(default_factory=list)
    n_recordings: int = 0
    hours: float = 0.0
    n_words: int = 0
    sentences: set[str] = field(default_factory=set)
    channels: dict[str, set[int]] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """the study's own remarks (:meth:`~braindecode_speech.data.study.Study.check_notes`)"""

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        """A human-readable report."""
        counts = sorted({n for ns in self.channels.values() for n in ns})
        lines = [
            f"{self.study} at {self.root}",
            f"  subjects    {len(self.subjects)}"
            + (f" ({', '.join(self.subjects[:8])}{' ...' if len(self.subjects) > 8 else ''})"
               if self.subjects else ""),
            f"  recordings  {self.n_recordings}",
            f"  hours       {self.hours:.2f}",
            f"  words       {self.n_words}",
            f"  sentences   {len(self.sentences)}",
            f"  channels    {', '.join(map(str, counts)) or '-'}",
        ]
        if self.excluded:
            lines.append(f"  excluded    {len(self.excluded)} subjects, as in the paper "
                         f"({', '.join(self.excluded)})")
        lines += [f"  note: {note}" for note in self.notes]
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  - {p}" for p in self.problems]
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def _build(name: str, root: Path, subjects: list[str] | None, options: dict[str, Any]) -> Study:
    """The study adapter, non-strict (a bad recording is listed, not raised); an unknown study
    or option is a :class:`StudyError`."""
    kwargs = {"strict": False, **options}
    if subjects is not None:
        kwargs["subjects"] = subjects
    return get(name, root, **kwargs)


def check_recording(rec: Recording, expected_channels: int | None,
                    expected_sfreq: float | None, scan_signal: bool = True
                    ) -> tuple[list[Problem], dict[str, Any]]:
    """Open one recording, read its events and (optionally) scan its signal.

    Returns the problems and a summary ``{"hours", "n_channels", "n_words", "sentences"}``
    (empty when the raw file cannot be opened).
    """
    problems: list[Problem] = []
    try:
        raw = rec.raw()
    except (StudyError, OSError, ValueError) as exc:
        return [_problem(str(exc), rec.path)], {}
    n_channels = len(mne.pick_types(raw.info, meg=True, eeg=True, ref_meg=False))
    duration = raw.n_times / raw.info["sfreq"]
    summary: dict[str, Any] = {"hours": duration / 3600, "n_channels": n_channels,
                               "n_words": 0, "sentences": set()}
    if expected_channels and n_channels != expected_channels:
        problems.append(Problem(str(rec.path), f"{n_channels} data channels, expected "
                                               f"{expected_channels}"))
    if expected_sfreq and abs(raw.info["sfreq"] - expected_sfreq) > 1e-6:
        problems.append(Problem(str(rec.path), f"sampling frequency {raw.info['sfreq']} Hz, "
                                               f"expected {expected_sfreq} Hz"))
    try:
        events = rec.events(duration=duration)
    except (StudyError, EventsError, OSError, ValueError) as exc:
        problems.append(_problem(str(exc), rec.path, prefix="events: "))
        events = None
    if events is not None:
        sounds, words = events[events["kind"] == "sound"], events[events["kind"] == "word"]
        problems += [Problem(path, message)
                     for path, message in stimulus_problems(events, rec.uid)]
        if sounds.empty:
            problems.append(Problem(str(rec.path), "no sound events: speech features cannot "
                                                   "be computed for this recording"))
        if words.empty:
            problems.append(Problem(str(rec.path), "no word events: no sentences, so no "
                                                   "splits and no test segments"))
        summary["n_words"] = len(words)
        summary["sentences"] = set(words["sequence_id"])
    if scan_signal:
        problems += _scan_signal(raw, rec.path)
    return problems, summary


def _scan_signal(raw: mne.io.BaseRaw, path: Path) -> list[Problem]:
    step = max(1, int(SCAN_CHUNK * raw.info["sfreq"]))
    for start in range(0, raw.n_times, step):
        try:
            data = raw.get_data(start=start, stop=min(start + step, raw.n_times))
        except Exception as exc:  # noqa: BLE001 - any reader failure is reported
            return [Problem(str(path), f"cannot read the signal after "
                                       f"{start / raw.info['sfreq']:.1f} s "
                                       f"({type(exc).__name__}: {exc})")]
        bad = np.isnan(data)
        if bad.any():
            channel, sample = np.argwhere(bad)[0]
            return [Problem(str(path), f"NaN in the signal ({int(bad.sum())} values in this "
                                       f"{SCAN_CHUNK:.0f} s chunk; first in channel "
                                       f"{raw.ch_names[channel]} at "
                                       f"{(start + sample) / raw.info['sfreq']:.3f} s)")]
    return []


def _problem(message: str, path: Path, prefix: str = "") -> Problem:
    """A problem from an error message ``"<file>: <what>"`` (or about ``path`` when the
    message names no file); ``prefix`` goes before what is said about ``path`` itself."""
    head, sep, tail = message.partition(": ")
    if sep and "/" in head:
        return Problem(head, (prefix if head == str(path) else "") + tail)
    return Problem(str(path), prefix + message)


def check(name: str, root: str | Path, subjects: list[str] | None = None,
          scan_signal: bool = True, progress: bool = False, **options: Any) -> CheckReport:
    """Validate the local copy of the registered study ``name`` at ``root``; never raises for
    data problems.

    Parameters
    ----------
    subjects : subject ids to check (unknown ids are reported).
    scan_signal : read the whole signal to look for NaNs and unreadable data.
    progress : show a progress bar over recordings.
    options : further adapter arguments (e.g. ``selection="all"``).
    """
    root = Path(root)
    try:
        study = _build(name, root, subjects, options)
    except (StudyError, OSError, ValueError) as exc:
        return CheckReport(study=name, root=root, problems=[_problem(str(exc), root)])
    return check_study(study, scan_signal=scan_signal, progress=progress)


def check_study(study: Study, scan_signal: bool = True, progress: bool = False) -> CheckReport:
    """Validate every recording of ``study`` (see the module docstring)."""
    report = CheckReport(study=study.name, root=study.root)
    try:
        recordings = study.recordings()
    except (StudyError, OSError, ValueError) as exc:
        report.problems.append(_problem(str(exc), study.root))
        recordings = []
    report.problems += [Problem(str(p), r) for p, r in study.skipped]
    report.excluded = list(getattr(study, "excluded", []))
    try:
        report.notes = study.check_notes()
    except (StudyError, OSError, ValueError) as exc:
        report.problems.append(_problem(str(exc), study.root))
    expected_channels = getattr(study, "n_channels", None) or None
    expected_sfreq = getattr(study, "sfreq", None) or None
    per_subject: dict[str, set[int]] = defaultdict(set)
    for rec in tqdm(recordings, desc=f"check {study.name}", disable=not progress):
        problems, summary = check_recording(rec, expected_channels, expected_sfreq,
                                            scan_signal)
        report.problems += problems
        report.n_recordings += 1
        if rec.subject not in report.subjects:
            report.subjects.append(rec.subject)
        if summary:
            report.hours += summary["hours"]
            report.n_words += summary["n_words"]
            report.sentences |= summary["sentences"]
            per_subject[rec.subject].add(summary["n_channels"])
    report.channels = dict(per_subject)
    report.problems = list(dict.fromkeys(report.problems))
    return report
