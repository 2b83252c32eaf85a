"""Blocks, splits, leak audit and windows on hand-built events with real wav files."""

import numpy as np
import pandas as pd
import pytest
import soundfile

from braindecode_speech.data.events import make_events, validate_events
from braindecode_speech.data.splits import (
    SplitConfig,
    assign_splits,
    audit_splits,
    make_blocks,
    paper_split,
    sentences,
    sound_spans,
)
from braindecode_speech.data.stimuli import StimulusError
from braindecode_speech.data.windows import WindowConfig, make_windows


def _story(tmp_path, name, sentence_ids, sound_onset=2.0, sentence_s=4.0, words=4, wav=None):
    """Events of one recording: one wav, sentences of ``words`` words every ``sentence_s``."""
    duration = len(sentence_ids) * sentence_s + 1.0
    wav = tmp_path / f"{wav or name}.wav"
    soundfile.write(wav, np.zeros(int(duration * 16000), dtype=np.float32), 16000)
    rows = [{"onset": sound_onset, "duration": 0.0, "kind": "sound", "filepath": str(wav),
             "offset": 0.0}]
    for i, sid in enumerate(sentence_ids):
        for k in range(words):
            rows.append({"onset": sound_onset + 0.2 + i * sentence_s + k * 0.8,
                         "duration": 0.5, "kind": "word", "word": f"{sid}w{k}",
                         "sequence_id": sid, "word_index": k})
    events = validate_events(make_events(rows), source=name)
    return events, sound_onset + duration + 5.0


def test_sentences_cover_the_speech_contiguously(tmp_path):
    events, duration = _story(tmp_path, "a", ["s1", "s2", "s3"])
    # the sound's lead-in (2.0-2.2 s) belongs to the sentence it introduces
    for block_end, first in (("next_block", 2.0), ("sound_end", 2.2)):
        sents = sentences(events, duration, block_end)
        assert list(sents["sequence_id"]) == ["s1", "s2", "s3"]
        assert np.allclose(sents["start"], [first, 6.2, 10.2])
        assert np.allclose(sents["stop"][:2], [6.2, 10.2])
        assert sents["stop"].iloc[-1] == pytest.approx(2.0 + 13.0)  # end of the wav
        assert sents["text"].iloc[0] == "s1w0 s1w1 s1w2 s1w3"
        assert sents["uid"].iloc[0] == "s1w0 s1w1 s1w2 s1w3"


def test_blocks_merge_to_min_duration(tmp_path):
    events, duration = _story(tmp_path, "a", [f"s{i}" for i in range(7)])
    blocks = make_blocks(sentences(events, duration), SplitConfig(min_block_duration=6.0))
    assert list(map(list, blocks["sequence_ids"])) == [["s0", "s1"], ["s2", "s3"], ["s4", "s5"],
                                                       ["s6"]]
    assert blocks["uid"].iloc[0] == "s0w0 s0w1 s0w2 s0w3,s1w0 s1w1 s1w2 s1w3"
    assert (blocks["stop"] - blocks["start"]).iloc[:-1].min() >= 6.0


def test_identical_stimuli_share_splits_and_repeats_do_not_leak(tmp_path):
    ids = [f"s{i}" for i in range(40)]
    ev_a, dur_a = _story(tmp_path, "a", ids)
    ev_b, dur_b = _story(tmp_path, "b", ids, sound_onset=5.0, wav="a")
    # a third recording repeats s3 in another context
    ev_c, dur_c = _story(tmp_path, "c", ["x1", "s3", "x2", "x3"])
    cfg = SplitConfig()
    recs = {"a": (ev_a, dur_a), "b": (ev_b, dur_b), "c": (ev_c, dur_c)}
    blocks = {k: make_blocks(sentences(e, d), cfg) for k, (e, d) in recs.items()}
    blocks = assign_splits(blocks, cfg)
    assert list(blocks["a"]["split"]) == list(blocks["b"]["split"])
    assert set(blocks["a"]["split"]) == {"train", "valid", "test"}
    split_of_s3 = {t.loc[t["sequence_ids"].map(lambda ids: "s3" in ids), "split"].item()
                   for t in blocks.values()}
    assert len(split_of_s3) == 1
    sounds = {k: sound_spans(e) for k, (e, _) in recs.items()}
    audit = audit_splits(blocks, sounds)
    assert audit["ok"], audit
    assert audit["train_test"]["n_shared_sentences"] == 0
    # forcing one block of b into another split is detected as a leak of text and audio
    original = blocks["b"].loc[0, "split"]
    moved = {"train": "test", "test": "train", "valid": "train"}[original]
    blocks["b"].loc[0, "split"] = moved
    leaky = audit_splits(blocks, sounds)
    assert not leaky["ok"]
    key = "_".join(s for s in ("train", "valid", "test") if s in {original, moved})
    assert leaky[key]["n_shared_sentences"] == 2
    assert leaky[key]["shared_audio_seconds"] > 5.0


def test_windows_stay_inside_blocks_with_brain_lag(tmp_path):
    events, duration = _story(tmp_path, "a", [f"s{i}" for i in range(6)])
    blocks = make_blocks(sentences(events, duration), SplitConfig())
    blocks["split"] = ["train", "test", "valid"]
    cfg = WindowConfig()
    sfreq = 120.0
    windows = make_windows(blocks, events, cfg, sfreq, n_times=int(duration * sfreq))
    assert set(windows["split"]) == {"train", "test", "valid"}
    length, lag = 360, 18
    for _, w in windows.iterrows():
        b = blocks.loc[w["block"]]
        speech0 = w["speech_start"] + int(round(b["start"] * sfreq))
        assert w["brain_start"] - speech0 == lag
        assert speech0 >= round(b["start"] * sfreq) - 1e-9
        assert speech0 + length + lag <= round(b["stop"] * sfreq)
        assert speech0 == round((w["anchor"] - 0.5) * sfreq)
    train = windows[windows["split"] == "train"]
    assert np.allclose(np.diff(train["anchor"]), 0.5)
    test = windows[windows["split"] == "test"]
    words = events[events["kind"] == "word"]
    assert set(test["anchor"]) <= set(words["onset"])
    assert (test["segment"] == test["sequence_id"] + "#" + test["word_index"].astype(str)).all()


def test_missing_sound_file_is_named(tmp_path):
    events, duration = _story(tmp_path, "a", ["s1"])
    events.loc[events["kind"] == "sound", "filepath"] = str(tmp_path / "gone.wav")
    with pytest.raises(StimulusError, match="gone.wav.*missing"):
        sound_spans(events)
    assert isinstance(events, pd.DataFrame)


@pytest.mark.parametrize("shift, ok", [(0.002, True), (0.05, False)])
def test_audit_tolerates_sample_rounding_at_block_boundaries_only(shift, ok):
    """Two recordings of one 20 s wav, cut into a train and a test block at 10 s; in the second
    the boundary is ``shift`` s late (event times rounded to the samples of a 500 Hz recording
    are off by up to 2 ms)."""
    sounds = pd.DataFrame({"start": [0.0], "stop": [20.0], "filepath": ["/data/story.wav"],
                           "offset": [0.0]})

    def blocks(boundary: float) -> pd.DataFrame:
        return pd.DataFrame({"start": [0.0, boundary], "stop": [boundary, 20.0],
                             "sequence_ids": [["s1"], ["s2"]], "texts": [["one"], ["two"]],
                             "split": ["train", "test"]})

    audit = audit_splits({"a": blocks(10.0), "b": blocks(10.0 + shift)},
                         {"a": sounds, "b": sounds})
    assert audit["ok"] is ok
    assert audit["train_test"]["longest_shared_audio"] == pytest.approx(shift)


def test_fixed_splits_are_followed_and_never_merged_across(tmp_path):
    events, duration = _story(tmp_path, "a", [f"s{i}" for i in range(6)])
    words = events["kind"] == "word"
    # s0-s1 fixed to test, s2 to valid, the rest to train
    pins = {"s0": "test", "s1": "test", "s2": "valid"}
    events.loc[words, "fixed_split"] = events.loc[words, "sequence_id"].map(pins).fillna("train")
    config = SplitConfig(min_block_duration=12.0)
    blocks = make_blocks(sentences(events, duration), config)
    assert list(map(list, blocks["sequence_ids"])) == [["s0", "s1"], ["s2"], ["s3", "s4", "s5"]]
    table = assign_splits({"a": blocks}, config)["a"]
    assert list(table["split"]) == ["test", "valid", "train"]
    # a sentence heard again in another recording's training block follows its fixed split
    other, other_duration = _story(tmp_path, "b", ["s2", "t1"], wav="a")
    other_words = other["kind"] == "word"
    other.loc[other_words, "fixed_split"] = "train"
    both = {"a": blocks,
            "b": make_blocks(sentences(other, other_duration), SplitConfig(min_block_duration=0))}
    assigned = assign_splits(both, config)
    assert list(assigned["b"]["split"]) == ["valid", "train"]
    # study_splits=False: the paper's draw, blocks merged regardless of the fixed splits
    free = SplitConfig(min_block_duration=12.0, study_splits=False)
    drawn = make_blocks(sentences(events, duration), free)
    assert list(map(list, drawn["sequence_ids"])) == [["s0", "s1", "s2"], ["s3", "s4", "s5"]]
    assert list(assign_splits({"a": drawn}, free)["a"]["paper_split"]) == [
        paper_split(uid, free) for uid in drawn["uid"]]
