"""Windows (segments) of brain and speech, anchored in blocks of one split.

A window around an anchor time ``a`` covers the speech in ``[a + tmin, a + tmax]`` and the brain
in the same span shifted by ``brain_lag`` (the brain responds after the sound). Train and valid
anchors are placed every ``stride`` seconds; test anchors at every word onset. The tasks beyond
retrieval (:mod:`braindecode_speech.data.labels`): ``speech_detection`` every ``stride`` seconds in
train and valid blocks and, in test blocks, every window length (test windows tile the blocks, so
each time point is scored once); ``phoneme_classification`` at every classified phoneme onset
in every split (on the frame grid: the window's target is at its frame ``round(-tmin * sfreq)``). A window is kept
only when both its speech and brain spans lie inside one block of its split (and so does the
paper's baseline, brain ``[a + tmin, a]`` s before the lag shift: a part of the speech span).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from ..config import Config
from .labels import Task, phoneme_onsets

__all__ = ["WindowConfig", "make_windows"]

logger = logging.getLogger(__name__)


class WindowConfig(Config):
    """Window geometry. Defaults are the paper's."""

    tmin: float = -0.5
    """window start relative to the anchor, s"""
    tmax: float = 2.5
    """window end relative to the anchor, s"""
    stride: float = Field(0.5, gt=0)
    """spacing of train/valid anchors, s"""
    brain_lag: float = 0.15
    """the brain window is this much later than the speech window, s (any sign: a negative
    lag, the brain before the sound, is a control)"""
    test_anchor: Literal["word", "stride"] = "word"
    """test anchors: ``word`` onsets (paper) or ``stride`` (like train)"""

    @model_validator(mode="after")
    def _ordered(self) -> WindowConfig:
        if self.tmin >= self.tmax:
            raise ValueError(f"tmin ({self.tmin} s) must be below tmax ({self.tmax} s)")
        return self

    def n_times(self, sfreq: float) -> int:
        """Number of samples of a window at ``sfreq``."""
        return int(round((self.tmax - self.tmin) * sfreq))

    def target_index(self, sfreq: float) -> int:
        """The sample of a window at its anchor (``round(-tmin * sfreq)``): where a
        phoneme-onset window's class is read from its target track."""
        return int(round(-self.tmin * sfreq))


def make_windows(
    blocks: pd.DataFrame, events: pd.DataFrame, config: WindowConfig, sfreq: float,
    n_times: int, task: Task = "retrieval",
) -> pd.DataFrame:
    """All windows of one recording.

    Parameters
    ----------
    blocks : blocks with ``split`` (:func:`braindecode_speech.data.splits.assign_splits`).
    events : the recording's events (word rows are used for test anchors).
    config : window geometry.
    sfreq : brain and feature rate, Hz.
    n_times : number of brain samples of the recording.
    task : how windows are anchored (module docstring).

    Returns one row per window: ``split``, ``block`` (row index in ``blocks``), ``anchor`` (s),
    ``brain_start`` (sample of the brain window start), ``speech_start`` (frame of the speech
    window start relative to the block start), for word anchors ``word``, ``sequence_id``,
    ``word_index``, ``segment`` (``"<sequence_id>#<word_index>"``: the segment identity shared by
    every subject), and for phoneme anchors ``phoneme`` (ARPAbet class) and ``label`` (its
    index in :data:`~braindecode_speech.data.labels.ARPABET`).
    """
    length = config.n_times(sfreq)
    lag = int(round(config.brain_lag * sfreq))
    words = events[events["kind"] == "word"]
    phonemes = phoneme_onsets(events, sfreq) if task == "phoneme_classification" else None
    rows = []
    for b, block in blocks.iterrows():
        start_frame = int(round(block["start"] * sfreq))
        stop_frame = int(round(block["stop"] * sfreq))
        if phonemes is not None:
            inside = phonemes[(phonemes["frame"] >= start_frame) &
                              (phonemes["frame"] < stop_frame)]
            # on the frame grid: the phoneme starts at the window's target_index exactly
            anchors = [(f / sfreq, int(f) - config.target_index(sfreq),
                        {"phoneme": p, "label": int(k)})
                       for f, p, k in zip(inside["frame"], inside["phoneme"], inside["label"])]
        elif block["split"] == "test" and config.test_anchor == "word" and task == "retrieval":
            inside = words[(words["onset"] >= block["start"]) & (words["onset"] < block["stop"])]
            anchors = [(float(w["onset"]), None, {
                "word": str(w["word"]), "sequence_id": str(w["sequence_id"]),
                "word_index": int(w["word_index"]),
                "segment": f"{w['sequence_id']}#{int(w['word_index'])}"})
                for _, w in inside.iterrows()]
        else:
            first = block["start"] - config.tmin
            step = config.tmax - config.tmin if task == "speech_detection" and \
                block["split"] == "test" else config.stride
            anchors = [(float(a), None, None) for a in np.arange(first, block["stop"], step)]
        for anchor, speech0, label in anchors:
            if speech0 is None:
                speech0 = int(round((anchor + config.tmin) * sfreq))
            brain0 = speech0 + lag
            if min(speech0, brain0) < start_frame or \
                    max(speech0, brain0) + length > stop_frame:
                continue
            if brain0 < 0 or brain0 + length > n_times:
                continue
            row = {"split": block["split"], "block": b, "anchor": anchor,
                   "brain_start": brain0, "speech_start": speech0 - start_frame}
            if label is not None:
                row.update(label)
            rows.append(row)
    columns = ["split", "block", "anchor", "brain_start", "speech_start", "word", "sequence_id",
               "word_index", "segment"]
    if phonemes is not None:
        columns += ["phoneme", "label"]
    out = pd.DataFrame(rows, columns=columns)
    out["word_index"] = out["word_index"].astype("Int64")
    return out
