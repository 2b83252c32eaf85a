"""Common base of the public-study adapters: strictness, skipped files, injectable raw reader.

A study adapter discovers the recordings of a local copy and checks, before yielding each one,
that every file it needs exists. What happens on a problem depends on ``strict``:

- ``strict=True`` (default): a :class:`~braindecode_speech.data.study.StudyError` naming the file;
- ``strict=False``: the recording is skipped, logged, and listed in ``study.skipped`` as
  ``(path, reason)`` (see :class:`~braindecode_speech.data.study.Study`).

Problems found only when reading a recording (a damaged raw file, events past its end...)
raise ``StudyError`` naming the file when the recording is read; ``braindecode-speech check``
reads everything and reports them all.
"""

from __future__ import annotations

import hashlib
import logging
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import mne
import pandas as pd

from ..study import Recording, Study, StudyError
from ._readers import RawReader, read_raw

__all__ = ["StudyAdapter", "sentence_uid", "choice"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class StudyAdapter(Study):
    """Base class of the adapters of the paper's public studies.

    Parameters
    ----------
    root : folder of the local copy.
    subjects : subject ids to keep (``None``: all those the paper uses).
    strict : raise on a missing file (True) or skip the recording and record it in
        :attr:`skipped` (False).
    raw_reader : optional ``callable(path) -> mne.io.BaseRaw`` replacing the default reader
        (the native MNE reader, or the FIF reader for the FIF stand-ins of example layouts).

    A subclass with options of its own takes them keyword-only and passes these on::

        def __init__(self, root, *, reference=None, **common):
            super().__init__(root, **common)
    """

    #: number of data channels the paper keeps (checked for every recording)
    n_channels: int = 0
    #: sampling frequency of the released data, Hz
    sfreq: float = 0.0

    def __init__(self, root: str | Path, subjects: Sequence[str] | None = None,
                 strict: bool = True, raw_reader: RawReader | None = None) -> None:
        super().__init__(root, None if subjects is None else list(subjects), strict)
        self.raw_reader = raw_reader
        #: subjects left out by the paper's protocol (not problems)
        self.excluded: list[str] = []

    def iter_recordings(self) -> Iterator[Recording]:
        self.excluded = []
        yield from self._discover()
        if self.excluded:
            logger.info("%s: %d subjects excluded as in the paper: %s", self.name,
                        len(self.excluded), ", ".join(self.excluded))

    @abstractmethod
    def _discover(self) -> Iterator[Recording]:
        """Yield the recordings whose files are all present (calling :meth:`problem` else)."""

    def wants(self, subject: str) -> bool:
        """Whether ``subject`` was asked for (all subjects when ``subjects`` is None)."""
        return self.subjects is None or subject in self.subjects

    def open_raw(self, path: Path) -> mne.io.BaseRaw:
        """Open ``path`` with the injected reader, else with :meth:`read_native` (or as FIF)."""
        if self.raw_reader is not None:
            return self.raw_reader(Path(path))
        return read_raw(Path(path), self.read_native)

    def read_native(self, path: Path) -> mne.io.BaseRaw:
        """Read the study's real file format (overridden by MEG studies)."""
        raise StudyError(f"{path}: not a FIF file, and {self.name} has no native raw reader")

    def keep_channels(self, raw: mne.io.BaseRaw, picks: Sequence[int], what: str,
                      path: Path) -> mne.io.BaseRaw:
        """Keep only ``picks`` (the paper's data channels); their count must be
        :attr:`n_channels`, else a ``StudyError`` naming ``path``."""
        if len(picks) != self.n_channels:
            raise StudyError(f"{path}: {len(picks)} {what} channels, expected "
                             f"{self.n_channels} for {self.name}")
        return raw.pick(list(picks))

    def make_recording(self, subject: str, session: str | None, task: str | None,
                       run: str | None, path: Path,
                       load_raw: Callable[[], mne.io.BaseRaw],
                       load_events: Callable[[], pd.DataFrame],
                       events_path: Path | None = None) -> Recording:
        """A :class:`Recording` of this study (``events_path``: the file its events come
        from, named in messages about them)."""
        return Recording(study=self.name, subject=subject, session=session, task=task,
                         run=run, path=Path(path), load_raw=load_raw, load_events=load_events,
                         events_path=None if events_path is None else Path(events_path))


def sentence_uid(prefix: str, words: Sequence[str]) -> str:
    """Identity of a word sequence, stable across subjects: ``<prefix>:<hash of the words>``.

    The hash (8 hex digits of SHA-1 of the lower-cased words joined by spaces) tells apart two
    sequences that share a prefix but differ in their words.
    """
    text = " ".join(str(w).lower() for w in words)
    return f"{prefix}:{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def choice(option: str, value: T, allowed: Sequence[T]) -> T:
    """``value`` of an adapter's ``option`` if it is one of ``allowed``, else a ``ValueError``
    naming the option and the allowed values."""
    if value not in allowed:
        raise ValueError(f"{option} must be {' or '.join(map(repr, allowed))}, got {value!r}")
    return value
