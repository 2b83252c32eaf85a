"""Sentences → blocks → train/valid/test splits, and the split leak audit.

Protocol (paper, see ``shared/datasets.md`` §7): the speech of a recording is cut into
*sentences* (runs of word events sharing a ``sequence_id``); a sentence starts at its first word
(or at the onset of a sound file that begins between the previous sentence and that word: MOUS,
where a block is one sound) and runs until the next sentence starts, the last one until 1e-7 s
after the end of the last event (``block_end="next_block"``), so the silence after a sentence
belongs to its block. Consecutive sentences are merged into *blocks* of at least
``min_block_duration`` seconds, except sentences with a study-given ``sequence_uid`` (MOUS:
``stimuli.txt``), which are blocks of their own. Each block has a uid (its words joined by
spaces; merged blocks: the uids joined by commas; or the ``sequence_uid``) and its split is drawn
from it: ``score = random.Random(int(sha256(uid), 16) + seed).random()``, test below
``test_ratio``, valid below ``test_ratio + valid_ratio``, train otherwise
(``assignment="paper"``), so an identical sentence lands in the same split for every subject.

One refinement makes the split leak-free by construction: sentences that ever share a block (in
any recording) and sentences with identical text are grouped (union-find), and all blocks of a
group take one split: the split most of its blocks draw (every occurrence counts; a tie goes to
the earliest block, recordings in study order). When every subject hears the same stories in the
same order a group is one block and this is exactly the paper's assignment; otherwise the blocks
that tying moves away from their own draw are counted (``moved_blocks`` in the audit).

A study may fix the split of some recordings (LibriBrain's official runs: validation, test,
and train for the others): their word events carry it in a ``fixed_split`` column
(:data:`FIXED_SPLIT`: ``train``, ``valid`` or ``test``; empty where the study fixes none). With
``SplitConfig.study_splits`` (default) such a sentence's block takes that split instead of its
draw and is never merged with a block of another fixed split; a group holding fixed blocks takes
the first of test, valid, train among them, so the official test and validation runs stay whole
and a sentence of a training run that also occurs in a test run goes to test (leak-free; counted
in ``moved_blocks``).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from ..config import Config
from .stimuli import sound_duration

__all__ = ["SplitConfig", "SPLITS", "sentences", "make_blocks", "assign_splits", "audit_splits",
           "paper_score", "paper_split"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")

#: a study's own uid of a sentence (MOUS: the ``stimuli.txt`` id), a column of its word events
SEQUENCE_UID = "sequence_uid"

#: the split a study fixes for a word's sentence (``train``/``valid``/``test``), a column of
#: its events
FIXED_SPLIT = "fixed_split"

#: the last block ends this long after the end of the last event, s (the paper's epsilon)
LAST_BLOCK_MARGIN = 1e-7

#: audio shared by two splits in pieces shorter than this (s) is not a leak but the rounding of
#: event times to the recording's samples at block boundaries (2 ms at 500 Hz, 7.8 ms at 128 Hz)
AUDIO_TOLERANCE = 0.01


class SplitConfig(Config):
    """Blocks and split assignment. Defaults are the paper's."""

    min_block_duration: float = Field(6.0, ge=0)
    """consecutive sentences are merged until a block lasts at least this long, s"""
    test_ratio: float = Field(0.2, ge=0, lt=1)
    valid_ratio: float = Field(0.1, ge=0, lt=1)
    seed: int = Field(12, ge=0)
    """salt of the split hash (the paper's value)"""
    block_end: Literal["next_block", "sound_end"] = "next_block"
    """where a sentence (and so a block) ends: where the next one starts, the last one 1e-7 s
    after the last event's end (``next_block``, the paper's), or at the end of the sound of its
    last word, at the latest (``sound_end``, ours before: the silence after a sentence and the
    gaps between sounds belong to no block)"""
    assignment: Literal["paper", "sorted_ids"] = "paper"
    """split of a group of tied blocks: the paper's draw from each block's uid, by majority in
    the group (``paper``), or one draw from ``sha256("<seed>:<sorted sequence ids>")`` of the
    group (``sorted_ids``, ours before)"""
    study_splits: bool = True
    """follow the splits a study fixes (the ``fixed_split`` column of its events: LibriBrain's
    official validation and test runs); False: draw every block"""

    holdout_subjects: list[str] = Field(default_factory=list)
    """subjects held out of the experiment (leave-one-subject-out): their recordings take part
    in the split assignment, so the splits are those of the whole study, but none of their
    windows is trained, validated or tested on (calibrate them afterwards:
    ``braindecode-speech calibrate``)"""

    # a study without fixed splits draws every block with study_splits on or off; on is the
    # default, and no subject held out is the same experiment as before the option existed
    _omit_from_signature_at_default = ("holdout_subjects", "study_splits")

    @model_validator(mode="after")
    def _train_left(self) -> SplitConfig:
        if self.test_ratio + self.valid_ratio >= 1:
            raise ValueError(f"test_ratio + valid_ratio must be below 1 to leave blocks for "
                             f"training, got {self.test_ratio} + {self.valid_ratio}")
        return self


def sound_spans(events: pd.DataFrame) -> pd.DataFrame:
    """Sound events with their end on the recording clock: columns ``start``, ``stop``,
    ``filepath``, ``offset`` (s into the file at ``start``).

    Raises
    ------
    StimulusError : naming a sound file that is missing, empty, unreadable or truncated.
    """
    sounds = events[events["kind"] == "sound"]
    rows = []
    for _, ev in sounds.iterrows():
        length = sound_duration(ev["filepath"]) - ev["offset"]
        if ev["duration"] > 0:
            length = min(length, ev["duration"])
        rows.append({"start": ev["onset"], "stop": ev["onset"] + length,
                     "filepath": ev["filepath"], "offset": ev["offset"]})
    return pd.DataFrame(rows, columns=["start", "stop", "filepath", "offset"])


def sentences(events: pd.DataFrame, duration: float,
              block_end: Literal["next_block", "sound_end"] = "next_block") -> pd.DataFrame:
    """Sentence occurrences of one recording, in time order.

    A sentence is a run of consecutive word events with the same ``sequence_id`` (a new run
    also starts when ``word_index`` goes back). It starts at its first word onset, or, with
    ``block_end="next_block"``, at the onset of a sound that begins after the previous
    sentence's last word and not after this first word (the sound's lead-in belongs to the
    sentence it introduces). It runs until the next sentence's start; the last sentence until
    1e-7 s after the end of the last event (``next_block``) or, with ``sound_end``, every
    sentence stops at the end of the sound that contains its last word, at the latest. All
    are cut at ``duration`` (s).

    Returns columns ``start``, ``stop`` (s), ``sequence_id``, ``text`` (lower-cased words joined
    by spaces), ``uid`` (the paper's block uid: the words joined by spaces, or the study's
    ``sequence_uid``), ``fixed_uid`` (True when the uid is the study's: never merged),
    ``n_words``, ``fixed_split`` (the split the study fixes for the sentence, or None).
    """
    columns = ["start", "stop", "sequence_id", "text", "uid", "fixed_uid", "n_words",
               "fixed_split"]
    words = events[events["kind"] == "word"].sort_values("onset", kind="stable")
    if words.empty:
        return pd.DataFrame(columns=columns)
    seq = words["sequence_id"].to_numpy()
    idx = words["word_index"].to_numpy(dtype=float)
    new = np.ones(len(words), dtype=bool)
    new[1:] = (seq[1:] != seq[:-1]) | (idx[1:] <= idx[:-1])
    group = np.cumsum(new)
    sounds = sound_spans(events)
    rows = []
    previous_last = -np.inf
    for _, part in words.groupby(group, sort=True):
        first, last = part.iloc[0], part.iloc[-1]
        start = float(first["onset"])
        end = last["onset"] + max(float(last["duration"]), 0.0)
        containing = sounds[(sounds["start"] <= last["onset"]) & (sounds["stop"] > last["onset"])]
        sound_stop = float(containing["stop"].max()) if len(containing) else end
        if block_end == "next_block":
            lead_in = sounds["start"][(sounds["start"] > previous_last)
                                      & (sounds["start"] <= start)]
            start = min(start, float(lead_in.min())) if len(lead_in) else start
        previous_last = float(last["onset"])
        study_uids = part[SEQUENCE_UID].dropna().unique() if SEQUENCE_UID in part else []
        pinned = part[FIXED_SPLIT].dropna().unique() if FIXED_SPLIT in part else []
        if len(pinned) > 1:
            raise ValueError(f"sentence {first['sequence_id']!r} has words fixed to several "
                             f"splits {sorted(pinned)}")
        words_text = [str(w) for w in part["word"]]
        rows.append({
            "start": start,
            "stop": min(sound_stop, duration),
            "sequence_id": str(first["sequence_id"]),
            "text": " ".join(w.lower() for w in words_text),
            "uid": str(study_uids[0]) if len(study_uids) == 1 else " ".join(words_text),
            "fixed_uid": len(study_uids) == 1,
            "n_words": len(part),
            "fixed_split": str(pinned[0]) if len(pinned) else None,
        })
    out = pd.DataFrame(rows, columns=columns)
    nxt = out["start"].shift(-1).to_numpy()
    has_next = ~np.isnan(nxt)
    if block_end == "next_block":
        ends = events["onset"] + events["duration"].fillna(0.0).clip(lower=0.0)
        last_end = max(float(ends.max()), float(sounds["stop"].max()) if len(sounds) else 0.0)
        out["stop"] = np.where(has_next, nxt, min(last_end + LAST_BLOCK_MARGIN, duration))
    else:
        out.loc[has_next, "stop"] = np.minimum(out.loc[has_next, "stop"], nxt[has_next])
    return out


def make_blocks(sents: pd.DataFrame, config: SplitConfig) -> pd.DataFrame:
    """Merge consecutive, contiguous sentences into blocks of at least ``min_block_duration``
    (sentences with a study uid stay blocks of their own).

    Sentences with a split fixed by the study (``fixed_split``, followed when
    ``config.study_splits``) are merged only with sentences fixed to the same split.

    Returns columns ``start``, ``stop`` (s), ``sequence_ids`` (list), ``texts`` (list),
    ``uid`` (the sentence uids joined by commas), ``fixed_split`` (or None).
    """
    blocks: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for _, s in sents.iterrows():
        pinned = s.get("fixed_split") if config.study_splits else None
        pinned = None if pd.isna(pinned) else pinned
        mergeable = current is not None and not current["fixed_uid"] and not s["fixed_uid"] \
            and current["fixed_split"] == pinned and abs(s["start"] - current["stop"]) < 1e-6
        if current is not None and mergeable and \
                current["stop"] - current["start"] < config.min_block_duration:
            current["stop"] = s["stop"]
            current["sequence_ids"].append(s["sequence_id"])
            current["texts"].append(s["text"])
            current["uids"].append(s["uid"])
            continue
        if current is not None:
            blocks.append(current)
        current = {"start": s["start"], "stop": s["stop"], "sequence_ids": [s["sequence_id"]],
                   "texts": [s["text"]], "uids": [s["uid"]], "fixed_uid": s["fixed_uid"],
                   "fixed_split": pinned}
    if current is not None:
        blocks.append(current)
    out = pd.DataFrame(blocks, columns=["start", "stop", "sequence_ids", "texts", "uids",
                                        "fixed_split"])
    out["uid"] = [",".join(uids) for uids in out["uids"]]
    return out.drop(columns="uids")


def paper_score(uid: str, seed: int) -> float:
    """The paper's uniform score of a block uid: ``random.Random(sha256(uid) + seed)``."""
    return random.Random(int(hashlib.sha256(uid.encode("utf-8")).hexdigest(), 16) + seed).random()


def _threshold(score: float, config: SplitConfig) -> str:
    if score < config.test_ratio:
        return "test"
    if score < config.test_ratio + config.valid_ratio:
        return "valid"
    return "train"


def paper_split(uid: str, config: SplitConfig) -> str:
    """The paper's split of the block with ``uid``: test, valid or train."""
    return _threshold(paper_score(uid, config.seed), config)


def _sorted_ids_split(key: str, config: SplitConfig) -> str:
    digest = hashlib.sha256(f"{config.seed}:{key}".encode()).digest()
    return _threshold(int.from_bytes(digest[:8], "big") / 2**64, config)


def assign_splits(blocks: dict[str, pd.DataFrame], config: SplitConfig) -> dict[str, pd.DataFrame]:
    """Add ``split`` and ``paper_split`` columns to the blocks of every recording
    (``{recording uid: blocks}``, in study order).

    ``paper_split`` is each block's own draw from its uid (:func:`paper_split`), or the split
    the study fixes for it (``fixed_split``, with ``config.study_splits``). Sentences sharing a
    block anywhere, or sharing their text, form a group, and all blocks of a group take one
    ``split`` (see ``SplitConfig.assignment`` and the module docstring); a group holding fixed
    blocks takes the first of test, valid, train among them.
    """
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        root = node
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for table in blocks.values():
        for ids, texts in zip(table["sequence_ids"], table["texts"]):
            for sid, text in zip(ids, texts):
                union(f"id:{ids[0]}", f"id:{sid}")
                union(f"id:{sid}", f"text:{text}")

    def fixed(table: pd.DataFrame) -> list[str | None]:
        if not config.study_splits or "fixed_split" not in table:
            return [None] * len(table)
        return [None if pd.isna(v) else str(v) for v in table["fixed_split"]]

    pins = {uid: fixed(table) for uid, table in blocks.items()}
    own = {uid: [pin or paper_split(b, config) for b, pin in zip(table["uid"], pins[uid])]
           for uid, table in blocks.items()}
    pinned_draws: dict[str, list[str]] = defaultdict(list)
    for uid, table in blocks.items():
        for ids, pin in zip(table["sequence_ids"], pins[uid]):
            if pin is not None:
                pinned_draws[find(f"id:{ids[0]}")].append(pin)
    if config.assignment == "sorted_ids":
        members: dict[str, set[str]] = defaultdict(set)
        for node in list(parent):
            if node.startswith("id:"):
                members[find(node)].add(node[3:])
        split_of_root = {root: _sorted_ids_split(",".join(sorted(ids)), config)
                         for root, ids in members.items()}
    else:
        draws: dict[str, list[str]] = defaultdict(list)
        for uid, table in blocks.items():
            for ids, split in zip(table["sequence_ids"], own[uid]):
                draws[find(f"id:{ids[0]}")].append(split)
        split_of_root = {root: _majority(splits) for root, splits in draws.items()}
    split_of_root.update({root: next(s for s in ("test", "valid", "train") if s in splits)
                          for root, splits in pinned_draws.items()})
    out = {}
    for uid, table in blocks.items():
        table = table.copy()
        table["split"] = [split_of_root[find(f"id:{ids[0]}")] for ids in table["sequence_ids"]]
        table["paper_split"] = own[uid]
        out[uid] = table
    n_moved = sum(int((t["split"] != t["paper_split"]).sum()) for t in out.values())
    if n_moved:
        logger.info("Tying sentences shared across blocks moved %d of %d blocks away from "
                    "their own draw", n_moved, sum(len(t) for t in out.values()))
    return out


def _majority(splits: list[str]) -> str:
    """The most frequent split of ``splits``; a tie goes to the earliest."""
    counts = {s: splits.count(s) for s in splits}
    best = max(counts.values())
    return next(s for s in splits if counts[s] == best)


def audit_splits(blocks: dict[str, pd.DataFrame],
                 sounds: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Prove that no sentence text and no audio sample is shared between splits.

    Parameters
    ----------
    blocks : ``{recording uid: blocks with split}`` from :func:`assign_splits`.
    sounds : ``{recording uid: sound_spans(events)}``.

    Returns a JSON-able dict: counts per split, ``moved_blocks`` (``count`` and ``fraction``
    of the blocks whose split is not their own paper draw, ``paper_split``: moved by the tying),
    the shared sentence texts and sequence ids between train and test (and valid), the seconds
    of audio of a same file region used in two splits, and ``ok`` (True when nothing is
    shared).
    """
    texts: dict[str, set[str]] = {s: set() for s in SPLITS}
    ids: dict[str, set[str]] = {s: set() for s in SPLITS}
    audio: dict[str, dict[str, list[tuple[float, float]]]] = {s: defaultdict(list) for s in SPLITS}
    seconds = {s: 0.0 for s in SPLITS}
    for uid, table in blocks.items():
        snd = sounds.get(uid, pd.DataFrame(columns=["start", "stop", "filepath", "offset"]))
        for _, b in table.iterrows():
            texts[b["split"]].update(b["texts"])
            ids[b["split"]].update(b["sequence_ids"])
            seconds[b["split"]] += b["stop"] - b["start"]
            for _, s in snd.iterrows():
                lo, hi = max(b["start"], s["start"]), min(b["stop"], s["stop"])
                if hi > lo:
                    file_lo = s["offset"] + lo - s["start"]
                    audio[b["split"]][str(Path(s["filepath"]).resolve())].append(
                        (file_lo, file_lo + hi - lo))
    pairs = [("train", "test"), ("train", "valid"), ("valid", "test")]
    report: dict[str, Any] = {
        "n_sentences": {s: len(ids[s]) for s in SPLITS},
        "hours": {s: round(seconds[s] / 3600, 4) for s in SPLITS},
        "n_blocks": {s: int(sum((t["split"] == s).sum() for t in blocks.values())) for s in SPLITS},
    }
    n_blocks = sum(len(t) for t in blocks.values())
    moved = sum(int((t["split"] != t["paper_split"]).sum()) for t in blocks.values()
                if "paper_split" in t)
    report["moved_blocks"] = {"count": moved, "fraction": round(moved / max(n_blocks, 1), 6)}
    ok = True
    for a, b in pairs:
        shared_text = sorted(texts[a] & texts[b])
        shared_ids = sorted(ids[a] & ids[b])
        pieces = [p for f in set(audio[a]) & set(audio[b]) for p in _overlap(audio[a][f],
                                                                             audio[b][f])]
        report[f"{a}_{b}"] = {"shared_sentences": shared_text[:20],
                              "n_shared_sentences": len(shared_text),
                              "n_shared_sequence_ids": len(shared_ids),
                              "shared_audio_seconds": round(sum(pieces), 6),
                              "longest_shared_audio": round(max(pieces, default=0.0), 6)}
        ok &= not shared_text and not shared_ids and max(pieces, default=0.0) < AUDIO_TOLERANCE
    report["ok"] = bool(ok)
    return report


def _overlap(a: Iterable[tuple[float, float]],
             b: Iterable[tuple[float, float]]) -> list[float]:
    """Lengths of the pieces of the intersection of two unions of intervals, s."""
    a, b = _merge(a), _merge(b)
    pieces, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            pieces.append(hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return pieces


def _merge(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]
