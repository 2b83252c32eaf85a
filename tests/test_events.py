import numpy as np
import pandas as pd
import pytest

from braindecode_speech.data.events import EventsError, make_events, validate_events


def _rows():
    return [
        {"onset": 1.0, "duration": 0.0, "kind": "sound", "filepath": "/a.wav", "offset": 0.0},
        {"onset": 1.5, "duration": 0.3, "kind": "word", "word": "hello", "sequence_id": "s1",
         "word_index": 1},
        {"onset": 1.2, "duration": 0.3, "kind": "word", "word": "say", "sequence_id": "s1",
         "word_index": 0},
    ]


def test_valid_events_are_sorted_and_typed():
    ev = validate_events(make_events(_rows()), source="x.tsv")
    assert list(ev["onset"]) == [1.0, 1.2, 1.5]
    assert ev["word_index"].dtype == "Int64"
    assert ev.loc[1, "word"] == "say"


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r[0].update(kind="beep"), "unknown event kinds"),
    (lambda r: r[1].update(onset=np.nan), "missing or infinite onset"),
    (lambda r: r[1].update(onset=-1.0), "negative onset"),
    (lambda r: r[1].pop("word"), "no 'word'"),
    (lambda r: r[0].pop("filepath"), "no 'filepath'"),
    (lambda r: r.append(dict(r[1])), "duplicated events"),
])
def test_bad_events_name_the_source(mutate, message):
    rows = _rows()
    mutate(rows)
    with pytest.raises(EventsError, match=f"x.tsv: .*{message}"):
        validate_events(make_events(rows), source="x.tsv")


def test_events_after_the_end_are_an_error():
    with pytest.raises(EventsError, match="after the end of the recording"):
        validate_events(make_events(_rows()), source="x.tsv", duration=1.4)


def test_missing_required_column():
    with pytest.raises(EventsError, match="no 'onset' column"):
        validate_events(pd.DataFrame({"kind": ["word"]}), source="x.tsv")
