"""File readers shared by the study adapters.

MNE reads KIT ``.con`` and CTF ``.ds`` recordings but cannot write them, so the example layouts
(:mod:`braindecode_speech.simulation.layouts`) store a FIF file at the real path instead (the
``.con`` file itself, or the ``.meg4`` data file inside the ``.ds`` folder). :func:`read_raw`
dispatches on the file *content*: a FIF file is read with :func:`mne.io.read_raw_fif`, anything
else with the study's native reader. Everything after reading (channel selection, events,
alignment) is the same code for real and example data.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd
import scipy.io

from ..study import StudyError

__all__ = ["FIF_MAGIC", "RawReader", "is_fif", "read_raw", "read_mat", "read_table",
           "fif_path_of", "as_column"]

#: first 4 bytes of every FIF file: the tag kind FIFF_FILE_ID (100), big-endian
FIF_MAGIC = b"\x00\x00\x00\x64"

RawReader = Callable[[Path], mne.io.BaseRaw]


def fif_path_of(path: Path) -> Path:
    """The file whose content decides the reader: ``<x>.ds/<x>.meg4`` for a CTF folder."""
    path = Path(path)
    if path.is_dir() and path.suffix == ".ds":
        return path / f"{path.stem}.meg4"
    return path


def is_fif(path: Path) -> bool:
    """Whether ``path`` (or the data file of a CTF ``.ds`` folder) starts like a FIF file."""
    target = fif_path_of(path)
    if not target.is_file():
        return False
    with open(target, "rb") as fid:
        return fid.read(4) == FIF_MAGIC


def read_raw(path: Path, native: RawReader) -> mne.io.BaseRaw:
    """Open a raw recording (FIF stand-ins are opened lazily, ``preload=False``).

    Parameters
    ----------
    path : the recording (file, or CTF ``.ds`` folder).
    native : reader for the real format (e.g. ``mne.io.read_raw_kit``), used unless the file
        is a FIF stand-in.

    Raises
    ------
    StudyError : the file is missing, or MNE reports a damaged FIF file (e.g. truncated).
    """
    path = Path(path)
    if not path.exists():
        raise StudyError(f"{path}: raw data file is missing")
    if not is_fif(path):
        return native(path)
    target = fif_path_of(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = mne.io.read_raw_fif(target, preload=False, verbose="warning")
    for warning in caught:
        text = str(warning.message)
        if "naming conventions" in text:
            continue
        raise StudyError(f"{path}: damaged FIF file ({text})")
    return raw


def read_mat(path: Path, *variables: str) -> dict[str, Any]:
    """Read MATLAB v5 variables with :func:`scipy.io.loadmat` (structs → dicts, cells → lists).

    Raises
    ------
    StudyError : the file is missing, unreadable (e.g. truncated) or lacks a variable.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: file is missing")
    try:
        mat = scipy.io.loadmat(path, simplify_cells=True, variable_names=variables or None)
    except Exception as exc:  # noqa: BLE001 - scipy raises many types on damaged files
        raise StudyError(f"{path}: cannot read MATLAB file ({type(exc).__name__}: {exc})") \
            from exc
    missing = [v for v in variables if v not in mat]
    if missing:
        raise StudyError(f"{path}: MATLAB file has no variable(s) {missing}")
    return mat


def read_table(path: Path, what: str, **kwargs: Any) -> pd.DataFrame:
    """Read a text table (tab- or comma-separated, ``kwargs`` go to :func:`pandas.read_csv`).

    Raises
    ------
    StudyError : naming ``path`` (``what`` it is, e.g. "events table") when the file is
        missing, empty, not UTF-8 text or not a table.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: {what} is missing")
    if path.stat().st_size == 0:
        raise StudyError(f"{path}: {what} is empty (0 bytes)")
    try:
        return pd.read_csv(path, encoding="utf-8", **kwargs)
    except UnicodeDecodeError as exc:
        raise StudyError(f"{path}: {what} is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                         f"at position {exc.start})") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise StudyError(f"{path}: cannot read the {what} ({exc})") from None


def as_column(values: Any) -> np.ndarray:
    """A MATLAB vector or scalar (any of 1 x N, N x 1, N, scalar) as a flat numpy array."""
    return np.atleast_1d(np.asarray(values)).ravel()
