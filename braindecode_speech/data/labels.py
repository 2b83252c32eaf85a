"""Targets of the tasks beyond retrieval, from a recording's events, on the brain's clock.

- ``speech_detection``: per time point, speech (1) or silence (0). A frame is speech when a
  word or a phoneme event covers it (``[onset, onset + duration)``); events without a duration
  are refused (the message names the recording).
- ``phoneme_classification``: the class of the phoneme starting at a frame (one of the 39
  ARPAbet phonemes without stress, :data:`ARPABET`), -1 elsewhere. Labels are normalised from
  each study's convention (:func:`phoneme_class`: ``AH0``, ``ah_B``, ``ah``); a label outside
  the 39 classes (silence, out-of-vocabulary, another phone set such as MOUS's Dutch SAMPA)
  gives no class and is counted, never guessed.

For a block ``[start, stop]`` s the target is a ``[round((stop - start) * sfreq), 1]`` float32
track whose frame ``i`` is at ``start + i / sfreq`` s, the layout of the block speech features
(:func:`~braindecode_speech.features.blocks.block_features`), so that windows read their target
exactly as they read speech features. Tracks are cached by content (the block's events, the
task and the rate).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..config import stable_hash
from ..fileio import atomic_npy
from .cache import ArrayCache

__all__ = ["ARPABET", "TASKS", "Task", "LabelError", "phoneme_class", "phoneme_onsets",
           "label_track", "block_labels", "n_outputs"]

logger = logging.getLogger(__name__)

Task = Literal["retrieval", "speech_detection", "phoneme_classification"]
#: the tasks of the pipeline; ``retrieval`` is the paper's (speech features as targets)
TASKS: tuple[str, ...] = ("retrieval", "speech_detection", "phoneme_classification")

#: the 39 ARPAbet phonemes without stress (CMUdict's set), the classes of phoneme classification
ARPABET: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH",
    "UW", "V", "W", "Y", "Z", "ZH")
_CLASS = {p: i for i, p in enumerate(ARPABET)}


class LabelError(ValueError):
    """A recording's events cannot give the targets of the task (the message names it)."""


def phoneme_class(label: Any) -> str | None:
    """The ARPAbet class of a phoneme label, or None when it has none.

    ``AH0`` / ``AH1`` (stress digit), ``ah_B`` / ``ah_I`` / ``ah_E`` / ``ah_S`` (LibriBrain and
    MEG-MASC word-position suffixes) and ``ah`` all give ``AH``; ``sil``, ``sp``, ``oov_S`` and
    labels of other phone sets give None.
    """
    if label is None or (isinstance(label, float) and np.isnan(label)):
        return None
    text = str(label).strip()
    base, sep, suffix = text.rpartition("_")
    if sep and suffix.upper() in ("B", "I", "E", "S"):
        text = base
    text = text.rstrip("012").upper()
    return text if text in _CLASS else None


def n_outputs(task: Task, n_features: int) -> int:
    """Outputs per time step of the model for ``task``: the speech features' dimension
    (retrieval), 1 logit (speech detection) or one logit per ARPAbet class."""
    return {"retrieval": n_features, "speech_detection": 1,
            "phoneme_classification": len(ARPABET)}[task]


def phoneme_onsets(events: pd.DataFrame, sfreq: float) -> pd.DataFrame:
    """The phonemes with an ARPAbet class, one per frame: ``frame`` (``round(onset * sfreq)``
    on the recording clock), ``label`` (class index), ``phoneme`` (class name), ``onset`` (s).
    Two phonemes starting within the same frame (less than one sample apart) keep the later one;
    phonemes without a class are left out (see :func:`phoneme_counts`)."""
    rows = events[events["kind"] == "phoneme"] if "kind" in events else events.iloc[:0]
    labels = rows["phoneme"] if "phoneme" in rows else pd.Series(None, index=rows.index)
    names = labels.map(phoneme_class)
    kept = rows[names.notna()].assign(phoneme=names[names.notna()])
    out = pd.DataFrame({"frame": np.round(kept["onset"].to_numpy(float) * sfreq).astype(np.int64),
                        "phoneme": kept["phoneme"].to_numpy(object),
                        "onset": kept["onset"].to_numpy(float)})
    out["label"] = out["phoneme"].map(_CLASS).astype(np.int64)
    out = out.sort_values("onset", kind="stable").drop_duplicates("frame", keep="last")
    return out.reset_index(drop=True)


def phoneme_counts(events: pd.DataFrame, sfreq: float) -> dict[str, int]:
    """How many phoneme events of ``events`` are used (``used``), have no ARPAbet class
    (``unclassified``) or share their first frame with a later phoneme (``same_frame``)."""
    rows = events[events["kind"] == "phoneme"] if "kind" in events else events.iloc[:0]
    labels = rows["phoneme"] if "phoneme" in rows else pd.Series(None, index=rows.index)
    classified = int(labels.map(phoneme_class).notna().sum())
    used = len(phoneme_onsets(events, sfreq))
    return {"used": used, "unclassified": len(rows) - classified,
            "same_frame": classified - used}


def label_track(task: Task, events: pd.DataFrame, start: float, stop: float, sfreq: float,
                source: str = "the events") -> np.ndarray:
    """The ``[round((stop - start) * sfreq), 1]`` float32 target of ``task`` for the block
    ``[start, stop]`` s of a recording with ``events`` (module docstring); ``source`` names the
    recording in errors."""
    n_frames = int(round((stop - start) * sfreq))
    first = int(round(start * sfreq))
    track = np.zeros((n_frames, 1), dtype=np.float32)
    if task == "speech_detection":
        spoken = events[events["kind"].isin(["word", "phoneme"])]
        duration = pd.to_numeric(spoken["duration"], errors="coerce") if "duration" in spoken \
            else pd.Series(np.nan, index=spoken.index)
        if duration.isna().any() or (duration <= 0).any():
            bad = int((duration.isna() | (duration <= 0)).sum())
            raise LabelError(f"{source}: speech_detection needs the duration of every word and "
                             f"phoneme; {bad} of {len(spoken)} have none (or a non-positive one)")
        onset = spoken["onset"].to_numpy(float)
        lo = np.clip(np.round(onset * sfreq).astype(np.int64) - first, 0, n_frames)
        hi = np.clip(np.round((onset + duration.to_numpy(float)) * sfreq).astype(np.int64)
                     - first, 0, n_frames)
        for a, b in zip(lo, hi):
            track[a:b] = 1.0
    elif task == "phoneme_classification":
        track[:] = -1.0
        onsets = phoneme_onsets(events, sfreq)
        frame = onsets["frame"].to_numpy() - first
        inside = (frame >= 0) & (frame < n_frames)
        track[frame[inside], 0] = onsets["label"].to_numpy()[inside]
    else:
        raise ValueError(f"task {task!r} has no label track (retrieval uses speech features)")
    return track


def block_labels(task: Task, events: pd.DataFrame, start: float, stop: float, sfreq: float,
                 cache_dir: str | Path, source: str = "the events") -> np.ndarray:
    """:func:`label_track` of the block, memory-mapped from the cache (keyed by the block's
    events, the task, the block and the rate)."""
    spoken = events[events["kind"].isin(["word", "phoneme"])]
    columns = [c for c in ("kind", "onset", "duration", "phoneme") if c in spoken]
    inside = spoken[(spoken["onset"] < stop + 1.0) &
                    (spoken["onset"] + spoken["duration"].fillna(0) > start - 1.0)]
    key = stable_hash({"task": task, "sfreq": sfreq, "start": round(start, 9),
                       "stop": round(stop, 9),
                       "events": inside[columns].astype(str).to_numpy().tolist()}, 20)

    def build(folder: Path) -> dict[str, Any]:
        track = label_track(task, events, start, stop, sfreq, source)
        with atomic_npy(folder / "data.npy", track.shape) as out:
            out[:] = track
        return {"task": task, "start": start, "stop": stop}

    data, _ = ArrayCache(cache_dir, "labels").get_or_create(key, build)
    return data
