"""Sentences → blocks → train/valid/test splits, and the split leak audit.

Protocol (paper, see ``shared/datasets.md`` §7): the speech of a recording is cut into
*sentences* (runs of word events sharing a ``sequence_id``), consecutive sentences are merged into
*blocks* of at least ``min_block_duration`` seconds, and each block is assigned to a split by a
hash of its content, so that an identical sentence lands in the same split for every subject.

One refinement makes the split leak-free by construction: sentences that ever share a block (in
any recording) and sentences with identical text are grouped (union-find), and the hash of the
group decides the split of all its blocks. When every subject hears the same stories in the same
order this is exactly the paper's assignment (a group is a block); when a sentence is repeated in
another context, the two contexts are tied together instead of leaking the sentence.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile
from pydantic import Field, model_validator

from .config import Config

__all__ = ["SplitConfig", "SPLITS", "sentences", "make_blocks", "assign_splits", "audit_splits"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


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

    @model_validator(mode="after")
    def _train_left(self) -> SplitConfig:
        if self.test_ratio + self.valid_ratio >= 1:
            raise ValueError(f"test_ratio + valid_ratio must be below 1 to leave blocks for "
                             f"training, got {self.test_ratio} + {self.valid_ratio}")
        return self


@lru_cache(maxsize=4096)
def _wav_duration(path: str) -> float:
    try:
        return float(soundfile.info(path).duration)
    except (RuntimeError, OSError) as exc:
        raise FileNotFoundError(f"{path}: cannot read the sound file ({exc})") from None


def sound_spans(events: pd.DataFrame) -> pd.DataFrame:
    """Sound events with their end on the recording clock: columns ``start``, ``stop``,
    ``filepath``, ``offset`` (s into the file at ``start``)."""
    sounds = events[events["kind"] == "sound"]
    rows = []
    for _, ev in sounds.iterrows():
        length = _wav_duration(ev["filepath"]) - ev["offset"]
        if ev["duration"] > 0:
            length = min(length, ev["duration"])
        rows.append({"start": ev["onset"], "stop": ev["onset"] + length,
                     "filepath": ev["filepath"], "offset": ev["offset"]})
    return pd.DataFrame(rows, columns=["start", "stop", "filepath", "offset"])


def sentences(events: pd.DataFrame, duration: float) -> pd.DataFrame:
    """Sentence occurrences of one recording, in time order.

    A sentence is a run of consecutive word events with the same ``sequence_id`` (a new run
    also starts when ``word_index`` goes back). It spans from its first word onset to the next
    sentence's onset, cut at the end of the sound that contains it and at ``duration`` (s).

    Returns columns ``start``, ``stop`` (s), ``sequence_id``, ``text`` (lower-cased words joined
    by spaces), ``n_words``.
    """
    words = events[events["kind"] == "word"].sort_values("onset", kind="stable")
    if words.empty:
        return pd.DataFrame(columns=["start", "stop", "sequence_id", "text", "n_words"])
    seq = words["sequence_id"].to_numpy()
    idx = words["word_index"].to_numpy(dtype=float)
    new = np.ones(len(words), dtype=bool)
    new[1:] = (seq[1:] != seq[:-1]) | (idx[1:] <= idx[:-1])
    group = np.cumsum(new)
    sounds = sound_spans(events)
    rows = []
    for _, part in words.groupby(group, sort=True):
        last = part.iloc[-1]
        end = last["onset"] + max(float(last["duration"]), 0.0)
        containing = sounds[(sounds["start"] <= last["onset"]) & (sounds["stop"] > last["onset"])]
        sound_stop = float(containing["stop"].max()) if len(containing) else end
        rows.append({
            "start": float(part["onset"].iloc[0]),
            "stop": min(sound_stop, duration),
            "sequence_id": str(part["sequence_id"].iloc[0]),
            "text": " ".join(str(w).lower() for w in part["word"]),
            "n_words": len(part),
        })
    out = pd.DataFrame(rows)
    nxt = out["start"].shift(-1).to_numpy()
    has_next = ~np.isnan(nxt)
    out.loc[has_next, "stop"] = np.minimum(out.loc[has_next, "stop"], nxt[has_next])
    return out


def make_blocks(sents: pd.DataFrame, config: SplitConfig) -> pd.DataFrame:
    """Merge consecutive, contiguous sentences into blocks of at least ``min_block_duration``.

    Returns columns ``start``, ``stop`` (s), ``sequence_ids`` (list), ``uid`` (comma-joined).
    """
    blocks: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for _, s in sents.iterrows():
        contiguous = current is not None and abs(s["start"] - current["stop"]) < 1e-6
        if current is not None and contiguous and \
                current["stop"] - current["start"] < config.min_block_duration:
            current["stop"] = s["stop"]
            current["sequence_ids"].append(s["sequence_id"])
            current["texts"].append(s["text"])
            continue
        if current is not None:
            blocks.append(current)
        current = {"start": s["start"], "stop": s["stop"], "sequence_ids": [s["sequence_id"]],
                   "texts": [s["text"]]}
    if current is not None:
        blocks.append(current)
    out = pd.DataFrame(blocks, columns=["start", "stop", "sequence_ids", "texts"])
    out["uid"] = [",".join(ids) for ids in out["sequence_ids"]]
    return out


def _split_of(key: str, config: SplitConfig) -> str:
    digest = hashlib.sha256(f"{config.seed}:{key}".encode()).digest()
    score = int.from_bytes(digest[:8], "big") / 2**64
    if score < config.test_ratio:
        return "test"
    if score < config.test_ratio + config.valid_ratio:
        return "valid"
    return "train"


def assign_splits(blocks: dict[str, pd.DataFrame], config: SplitConfig) -> dict[str, pd.DataFrame]:
    """Add a ``split`` column to the blocks of every recording (``{recording uid: blocks}``).

    Sentences sharing a block anywhere, or sharing their text, form a group; a group's split
    is drawn from the hash of its sorted sentence ids (see the module docstring).
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
    members: dict[str, set[str]] = defaultdict(set)
    for node in list(parent):
        if node.startswith("id:"):
            members[find(node)].add(node[3:])
    split_of_root = {root: _split_of(",".join(sorted(ids)), config)
                     for root, ids in members.items()}
    out = {}
    for uid, table in blocks.items():
        table = table.copy()
        table["split"] = [split_of_root[find(f"id:{ids[0]}")] for ids in table["sequence_ids"]]
        out[uid] = table
    return out


def audit_splits(blocks: dict[str, pd.DataFrame],
                 sounds: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Prove that no sentence text and no audio sample is shared between splits.

    Parameters
    ----------
    blocks : ``{recording uid: blocks with split}`` from :func:`assign_splits`.
    sounds : ``{recording uid: sound_spans(events)}``.

    Returns a JSON-able dict: counts per split, the shared sentence texts and sequence ids
    between train and test (and valid), the seconds of audio of a same file region used in two
    splits, and ``ok`` (True when nothing is shared).
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
