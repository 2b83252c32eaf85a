"""The interface every data source implements: a :class:`Study` yields :class:`Recording` s.

A recording knows how to open its raw data lazily (an ``mne.io.BaseRaw``) and how to read its
events table in the common schema of :mod:`braindecode_speech.data.events`. Preprocessing,
feature extraction, segmentation, training and evaluation consume nothing else, so real studies
and the simulated one go through the same code.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import mne
import pandas as pd

from .events import validate_events

__all__ = ["Modality", "Recording", "Study", "StudyError"]

#: modality of a study's data channels
Modality = Literal["meg", "eeg"]

logger = logging.getLogger(__name__)


class StudyError(RuntimeError):
    """A study could not be read; the message names the file and what is wrong."""


@dataclass
class Recording:
    """One continuous M/EEG recording of one subject listening to speech.

    Parameters
    ----------
    study : name of the study (registry name, e.g. ``"gwilliams2022"``).
    subject, session, task, run : identifiers (strings, ``None`` when the study has none).
    path : the raw data file (or CTF ``.ds`` folder); used in messages and cache keys.
    load_raw : callable returning the ``mne.io.BaseRaw`` (not preloaded).
    load_events : callable returning the events table (validated by :meth:`events`).
    events_path : the file the events are read from (``events.tsv``, a log...), named in the
        messages about the events; ``path`` when None.
    """

    study: str
    subject: str
    session: str | None
    task: str | None
    run: str | None
    path: Path
    load_raw: Callable[[], mne.io.BaseRaw] = field(repr=False)
    load_events: Callable[[], pd.DataFrame] = field(repr=False)
    events_path: Path | None = None
    _events: pd.DataFrame | None = field(default=None, repr=False, init=False)

    @property
    def uid(self) -> str:
        """Unique, human-readable id, e.g. ``simulated/sub-01/ses-0/task-story1``."""
        parts = [self.study, f"sub-{self.subject}"]
        for key, value in (("ses", self.session), ("task", self.task), ("run", self.run)):
            if value is not None:
                parts.append(f"{key}-{value}")
        return "/".join(parts)

    def raw(self) -> mne.io.BaseRaw:
        """Open the raw data (lazily: data are read on demand)."""
        try:
            return self.load_raw()
        except StudyError:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised with the file named
            raise StudyError(f"{self.path}: cannot read raw data ({type(exc).__name__}: {exc})") \
                from exc

    def events(self, duration: float | None = None) -> pd.DataFrame:
        """The validated events table (cached on the instance).

        Raises
        ------
        StudyError, EventsError : naming the events file (:attr:`events_path`).
        """
        if self._events is None:
            source = self.events_path or self.path
            try:
                table = self.load_events()
            except StudyError:
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised with the file named
                raise StudyError(f"{source}: cannot read events ({type(exc).__name__}: "
                                 f"{exc})") from exc
            self._events = validate_events(table, source=str(source), duration=duration)
        return self._events.copy()


class Study(ABC):
    """Base class of the data sources. Subclasses implement :meth:`iter_recordings`.

    A problem found while discovering the recordings (a missing events file, raw file or
    wav...) goes through :meth:`problem`: with ``strict=True`` it raises a
    :class:`StudyError` naming the file; with ``strict=False`` the recording is left out and
    ``(file, reason)`` is appended to :attr:`skipped`, which is complete once
    :meth:`recordings` has returned (``check`` lists it; ``train`` writes it to
    ``skipped.csv`` and ``report.json``).

    Parameters
    ----------
    root : folder of the local copy of the study.
    subjects : optional subset of subject ids to keep (others are skipped, and logged).
    strict : raise on a problem found during discovery (True) or skip the recording (False).
    """

    name: str = "study"
    #: modality of the data channels
    modality: Modality = "meg"
    #: spoken language of the stimuli
    language: str = "english"

    #: number of data channels every recording must have; None when the study defines none
    #: (e.g. the simulated study mixes KIT-208 and CTF-275 subjects by design)
    n_channels: int | None = None

    def __init__(self, root: str | Path, subjects: list[str] | None = None,
                 strict: bool = True) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise StudyError(f"{self.root}: study folder of {self.name!r} does not exist")
        self.subjects = None if subjects is None else [str(s) for s in subjects]
        self.strict = strict
        #: recordings left out because of a problem: ``(file, reason)``, filled by
        #: :meth:`recordings`
        self.skipped: list[tuple[Path, str]] = []

    def problem(self, path: Path, reason: str) -> None:
        """Report a problem with ``path``: raise when strict, else log and record a skip."""
        if self.strict:
            raise StudyError(f"{path}: {reason}")
        logger.warning("%s: skipping %s: %s", self.name, path, reason)
        self.skipped.append((Path(path), reason))

    @abstractmethod
    def iter_recordings(self) -> Iterator[Recording]:
        """Yield every recording of the local copy, in a deterministic order."""

    def recordings(self) -> list[Recording]:
        """All recordings, filtered by ``subjects`` when given (:attr:`skipped` lists those
        left out because of a problem)."""
        self.skipped = []
        out = []
        for rec in self.iter_recordings():
            if self.subjects is not None and rec.subject not in self.subjects:
                continue
            out.append(rec)
        if self.subjects is not None:
            found = {r.subject for r in out}
            missing = sorted(set(self.subjects) - found)
            if missing:
                raise StudyError(f"{self.root}: unknown subject ids {missing} for {self.name!r}")
        logger.info("%s: %d recordings in %s", self.name, len(out), self.root)
        if self.skipped:
            logger.warning("%s: %d recordings skipped because of problems", self.name,
                           len(self.skipped))
        return out

    def check_notes(self) -> list[str]:
        """Lines ``braindecode-speech check`` prints about this copy beyond its problems (what
        the release lacks and where to put it, what is unconfirmed about its format)."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r})"
