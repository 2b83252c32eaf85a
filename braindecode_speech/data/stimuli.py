"""The sound files of a study: inside the study folder, complete, and long enough.

Three checks shared by every study adapter, ``braindecode-speech check`` and ``train``:

- :func:`inside_root`: a path read from a data file (a ``sound`` column, a MASC dict-string...)
  must resolve, symlinks included, to a file inside the study folder;
- :func:`sound_duration`: a sound file is opened (header only) and refused when it is missing,
  empty (0 bytes), not a sound file, or truncated (a WAV whose ``data`` chunk declares more
  bytes than the file holds: libsndfile would read the part that is there, and the rest would
  become silence);
- :func:`stimulus_problems` / :func:`check_stimuli`: every sound file of an events table is
  long enough for the last event that needs it, within :data:`LENGTH_TOLERANCE`: a sound
  event's ``offset + duration``, and the onset of each word or phoneme placed in the sound
  playing at that time (its onset only: forced alignments may let a last word end a little
  after the end of its file, which is no reason to refuse a recording).
"""

from __future__ import annotations

import os
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

from .study import StudyError

__all__ = ["LENGTH_TOLERANCE", "StimulusError", "inside_root", "wav_truncation",
           "sound_duration", "stimulus_problems", "check_stimuli"]

#: how far, s, an event may end past the end of its sound file (event times are rounded)
LENGTH_TOLERANCE = 0.02


class StimulusError(StudyError):
    """A sound file cannot be used; the message names the file and what is wrong."""


def inside_root(root: str | Path, value: str | Path, source: str | Path | None = None,
                line: int | None = None) -> Path:
    """``root / value``: the path ``value`` (relative to ``root``, or absolute) read from the
    data file ``source``, which must resolve (symlinks included) to a place inside ``root``.

    Raises
    ------
    StudyError : naming ``source`` and its ``line`` (when given) and the path, when the path
        leaves the study folder.
    """
    root = Path(root)
    path = root / value
    resolved, base = path.resolve(), root.resolve()
    if resolved != base and base not in resolved.parents:
        where = "" if source is None else f"{source}: " + (
            "" if line is None else f"line {line}: ")
        raise StudyError(f"{where}path {str(value)!r} resolves to {resolved}, outside the "
                         f"study folder {base}")
    return path


def wav_truncation(path: str | Path) -> str | None:
    """Why a RIFF/WAVE file is truncated (its ``data`` chunk declares more bytes than the
    file holds), or None (complete, or not a WAV file)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fid:
        head = fid.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        position = 12
        while True:
            chunk = fid.read(8)
            if len(chunk) < 8:
                return None  # no data chunk: libsndfile reports it
            name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            position += 8
            if name == b"data":
                held = size - position
                if length != 0xFFFFFFFF and length > held:
                    return (f"truncated: the header declares {length} bytes of audio, the file "
                            f"holds {held} ({held / length:.0%})")
                return None
            position += length + (length % 2)
            fid.seek(position)


@lru_cache(maxsize=4096)
def _duration(path: str, mtime_ns: int, size: int) -> float:
    """Duration, s, of the sound file ``path`` at (``mtime_ns``, ``size``)."""
    if size == 0:
        raise StimulusError(f"{path}: sound file is empty (0 bytes)")
    truncated = wav_truncation(path)
    if truncated:
        raise StimulusError(f"{path}: sound file is {truncated}")
    try:
        info = soundfile.info(path)
    except (RuntimeError, OSError) as exc:
        raise StimulusError(f"{path}: not a readable sound file ({exc})") from None
    if info.frames == 0:
        raise StimulusError(f"{path}: sound file holds no samples")
    return float(info.duration)


def sound_duration(path: str | Path) -> float:
    """Duration of a sound file in s (header only; cached per path, mtime and size).

    Raises
    ------
    StimulusError : naming the file when it is missing, empty, unreadable or truncated.
    """
    try:
        stat = os.stat(path)
    except OSError:
        raise StimulusError(f"{path}: sound file is missing") from None
    return _duration(str(path), stat.st_mtime_ns, stat.st_size)


def _needs(events: pd.DataFrame) -> pd.DataFrame:
    """Per event that needs a sound file: ``filepath``, ``needed`` (s into the file that must
    exist: where a sound event ends, where a word or phoneme starts), ``kind``, ``onset``,
    ``label``."""
    sounds = events[events["kind"] == "sound"].sort_values("onset", kind="stable")
    if sounds.empty:
        return pd.DataFrame(columns=["filepath", "needed", "kind", "onset", "label"])
    duration = sounds["duration"].fillna(0.0).to_numpy(dtype=float)
    offset = sounds["offset"].fillna(0.0).to_numpy(dtype=float)
    start = sounds["onset"].to_numpy(dtype=float)
    rows = [pd.DataFrame({"filepath": sounds["filepath"].to_numpy(), "needed": offset + duration,
                          "kind": "sound", "onset": start, "label": ""})]
    others = events[events["kind"].isin(("word", "phoneme"))]
    if not others.empty:
        onset = others["onset"].to_numpy(dtype=float)
        index = np.searchsorted(start, onset + 1e-6, side="right") - 1
        heard = index >= 0  # words before the first sound have no file to check
        index, onset, others = index[heard], onset[heard], others[heard]
        labels = others["word"].where(others["kind"] == "word", others["phoneme"])
        rows.append(pd.DataFrame({
            "filepath": sounds["filepath"].to_numpy()[index],
            "needed": offset[index] + onset - start[index],
            "kind": others["kind"].to_numpy(), "onset": onset,
            "label": labels.fillna("").astype(str).to_numpy()}))
    return pd.concat(rows, ignore_index=True)


def stimulus_problems(events: pd.DataFrame, source: str) -> list[tuple[str, str]]:
    """Every problem with the sound files of ``events`` (validated, common schema), as
    ``(file, message)``: a file missing, empty, unreadable or truncated (the same message for
    every recording that plays it), or shorter than the last event that needs it (naming the
    event and ``source``, a recording or events file)."""
    problems = []
    needs = _needs(events)
    for path, rows in needs.groupby("filepath", sort=True):
        try:
            length = sound_duration(path)
        except StimulusError as exc:
            problems.append((str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        last = rows.loc[rows["needed"].idxmax()]
        if last["needed"] > length + LENGTH_TOLERANCE:
            what = "the sound event" if last["kind"] == "sound" else \
                f"{last['kind']} {last['label']!r}"
            problems.append((str(path), f"sound file is {length:.3f} s long, but {what} at "
                                        f"{last['onset']:.3f} s in {source} needs "
                                        f"{last['needed']:.3f} s of it"))
    return problems


def check_stimuli(events: pd.DataFrame, source: str) -> None:
    """Raise a :class:`StimulusError` listing every problem of :func:`stimulus_problems`,
    each naming ``source``."""
    problems = stimulus_problems(events, source)
    if problems:
        raise StimulusError("; ".join(
            f"{path}: {message}" + ("" if source in message else f" (played in {source})")
            for path, message in problems))
