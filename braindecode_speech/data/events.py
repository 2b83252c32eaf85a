"""The common events table: one validated pandas DataFrame per recording.

Every study adapter returns its events in this schema, and every later stage reads only this
schema. Times are in **seconds on the recording's clock**: 0 is the first sample returned by
``raw.get_data()`` (i.e. ``raw.first_samp`` is already subtracted, as in BIDS ``events.tsv``).

Columns (``-`` = not applicable for that kind, stored as NaN / ``None``):

=================  ======  ==========================================================
column             dtype   meaning
=================  ======  ==========================================================
``onset``          float   start, s on the recording clock (required, finite, >= 0)
``duration``       float   duration, s (required, >= 0; 0 when unknown)
``kind``           str     ``sound`` | ``word`` | ``phoneme`` | ``block`` (required)
``filepath``       str     sound: absolute path of the wav file played
``offset``         float   sound: s into the wav file at which ``onset`` falls (usually 0);
                           word/phoneme: s into their sound file at which they start
``word``           str     word: the word as heard (original case, no punctuation)
``phoneme``        str     phoneme: label (e.g. ARPAbet ``t_B``)
``sequence_id``    str     word: identity of the sentence / word list it belongs to,
                           identical across subjects for identical stimuli
``word_index``     int     word: 0-based position of the word in its sequence
``condition``      str     word: ``sentence`` | ``word_list`` | ``pseudo_words``
``story``          str     any: story / stimulus collection name
``sound_id``       str     any: identifier of the sound file within the study
=================  ======  ==========================================================

Adapters may add further columns; they are kept untouched. One of them has a meaning downstream:
``fixed_split`` (``train`` | ``valid`` | ``test``), the split a study fixes for a word's sentence
(LibriBrain's official runs; see :mod:`braindecode_speech.data.splits`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = ["EVENT_KINDS", "EVENT_COLUMNS", "EventsError", "validate_events", "make_events",
           "sentence_words"]

EVENT_KINDS = ("sound", "word", "phoneme", "block")

#: column -> (pandas dtype, kinds for which the column must be filled)
EVENT_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "onset": ("float64", EVENT_KINDS),
    "duration": ("float64", EVENT_KINDS),
    "kind": ("object", EVENT_KINDS),
    "filepath": ("object", ("sound",)),
    "offset": ("float64", ("sound",)),
    "word": ("object", ("word",)),
    "phoneme": ("object", ("phoneme",)),
    "sequence_id": ("object", ("word",)),
    "word_index": ("Int64", ("word",)),
    "condition": ("object", ()),
    "story": ("object", ()),
    "sound_id": ("object", ()),
}


class EventsError(ValueError):
    """An events table does not follow the common schema; the message names its source."""


def make_events(rows: Iterable[dict]) -> pd.DataFrame:
    """Build an events table from dict rows, adding missing schema columns (not validated)."""
    df = pd.DataFrame(list(rows))
    for column in EVENT_COLUMNS:
        if column not in df.columns:
            df[column] = pd.Series([None] * len(df), dtype="object")
    return df


def validate_events(
    events: pd.DataFrame, source: str, duration: float | None = None
) -> pd.DataFrame:
    """Check and normalise an events table; return a copy sorted by onset (stable).

    Parameters
    ----------
    events : the table, in the schema of this module.
    source : what the table was read from (a file path), named in every error.
    duration : the recording's duration in s; events starting after it are an error.

    Raises
    ------
    EventsError : naming ``source``, the column and the offending rows.
    """
    if not isinstance(events, pd.DataFrame):
        raise EventsError(f"{source}: events must be a pandas DataFrame, got {type(events)}")
    df = events.copy()
    for column in ("onset", "duration", "kind"):
        if column not in df.columns:
            raise EventsError(f"{source}: events table has no {column!r} column")
    for column in EVENT_COLUMNS:
        if column not in df.columns:
            df[column] = None
    unknown = sorted(set(df["kind"].dropna()) - set(EVENT_KINDS))
    if unknown or df["kind"].isna().any():
        raise EventsError(
            f"{source}: unknown event kinds {unknown or ['<missing>']}; expected one of {EVENT_KINDS}"
        )
    for column in ("onset", "duration", "offset"):
        try:
            df[column] = pd.to_numeric(df[column], errors="raise").astype("float64")
        except (TypeError, ValueError) as exc:
            raise EventsError(f"{source}: column {column!r} is not numeric ({exc})") from None
    bad = ~np.isfinite(df["onset"].to_numpy())
    if bad.any():
        raise EventsError(f"{source}: {bad.sum()} events have a missing or infinite onset "
                          f"(rows {np.flatnonzero(bad)[:5].tolist()})")
    if (df["onset"] < 0).any():
        rows = np.flatnonzero(df["onset"].to_numpy() < 0)[:5].tolist()
        raise EventsError(f"{source}: events with a negative onset (rows {rows})")
    if (df["duration"].fillna(0) < 0).any():
        raise EventsError(f"{source}: events with a negative duration")
    df["duration"] = df["duration"].fillna(0.0)
    if duration is not None:
        late = df["onset"] > duration
        if late.any():
            raise EventsError(
                f"{source}: {int(late.sum())} events start after the end of the recording "
                f"({duration:.3f} s), first at {df.loc[late, 'onset'].min():.3f} s"
            )
    try:
        df["word_index"] = pd.array(
            [None if pd.isna(v) else int(v) for v in df["word_index"]], dtype="Int64"
        )
    except (TypeError, ValueError) as exc:
        raise EventsError(f"{source}: column 'word_index' is not integer ({exc})") from None
    for column, (_, required_for) in EVENT_COLUMNS.items():
        if column in ("onset", "duration", "kind"):
            continue
        for kind in required_for:
            mask = (df["kind"] == kind) & df[column].isna()
            if mask.any():
                raise EventsError(
                    f"{source}: {int(mask.sum())} {kind!r} events have no {column!r} "
                    f"(first at onset {df.loc[mask, 'onset'].iloc[0]:.3f} s)"
                )
    for column in ("sequence_id", "sound_id", "story", "word", "phoneme", "filepath",
                   "condition"):
        df[column] = df[column].map(lambda v: None if pd.isna(v) else str(v)).astype(object)
    dup = df.duplicated(subset=["onset", "kind", "word", "phoneme", "filepath"], keep=False)
    if dup.any():
        first = df.loc[dup].iloc[0]
        raise EventsError(
            f"{source}: {int(dup.sum())} duplicated events (same onset, kind and label), "
            f"e.g. {first['kind']} at {first['onset']:.3f} s"
        )
    return df.sort_values("onset", kind="stable").reset_index(drop=True)


def sentence_words(events: pd.DataFrame | Iterable[pd.DataFrame]) -> dict[str, list[str]]:
    """The words of every sequence (sentence or word list) heard in ``events`` (one events
    table, or several: e.g. every recording of a study), in ``word_index`` order, by
    ``sequence_id``. A sequence heard several times counts once; sequences come in order of
    first appearance."""
    tables = [events] if isinstance(events, pd.DataFrame) else list(events)
    if not tables:
        return {}
    words = pd.concat([t[t["kind"] == "word"] for t in tables], ignore_index=True)
    distinct = words.drop_duplicates(["sequence_id", "word_index"])
    return {str(sid): part.sort_values("word_index", kind="stable")["word"].astype(str).tolist()
            for sid, part in distinct.groupby("sequence_id", sort=False)}
