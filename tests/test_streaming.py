"""Decoding a live stream (issue 14, part 3): the StreamDecoder keeps its state across chunks,
gives the offline windows and ranks when its preprocessing is the offline one, and reads a Lab
Streaming Layer stream played on this machine by ``mne_lsl.player.PlayerLSL``."""

from __future__ import annotations

import os
import uuid
from fractions import Fraction
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest

from braindecode_speech.cli import EXIT_INPUT_ERROR, main
from braindecode_speech.data.preprocessing import resample_polyphase
from braindecode_speech.data.studies import get as get_study
from braindecode_speech.sharing import BrainDecoder, SharingError
from braindecode_speech.sharing.stream import StreamDecoder, StreamResampler

# LSL only on this machine: streams are resolved on the loopback interface, never the network
_LSL_CONFIG = Path(__file__).parent / "fixtures" / "lsl_api.cfg"
os.environ.setdefault("LSLAPICFG", str(_LSL_CONFIG))


@pytest.fixture(scope="module")
def model(tiny_model):
    """The session's tiny run exported to a model folder (tests/conftest.py)."""
    return {"folder": tiny_model["model"], "cache": tiny_model["cache"],
            "root": tiny_model["root"]}


@pytest.fixture(autouse=True)
def _cache(model, monkeypatch):
    monkeypatch.setenv("BRAINDECODE_SPEECH_CACHE", str(model["cache"]))


@pytest.fixture(scope="module")
def decoder(model):
    return BrainDecoder.from_pretrained(model["folder"])


@pytest.fixture(scope="module")
def candidates(decoder, model):
    return decoder.study_candidates(model["root"])


def _recording(model, uid: str = "simulated/sub-01/ses-0/task-0"):
    """A recording of the tiny study whose length is a multiple of 5 samples, so that the
    offline resampler (``mne.filter.resample`` derives its ratio from the lengths) uses 3/5."""
    return next(r for r in get_study("simulated", model["root"]).recordings() if r.uid == uid)


def _feed(stream: StreamDecoder, data: np.ndarray, sizes: list[int]) -> pd.DataFrame:
    edges = np.cumsum([0, *sizes])
    parts = [stream.feed(data[:, a:b]) for a, b in zip(edges[:-1], edges[1:])]
    return pd.concat([p for p in parts if len(p)], ignore_index=True)


def _random_sizes(n: int, rng: np.random.Generator) -> list[int]:
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(1, 90)))
    sizes[-1] -= sum(sizes) - n
    return sizes


@pytest.mark.parametrize("phase", ["minimum", "zero"])
def test_resampler_keeps_its_state_across_chunks(phase):
    rng = np.random.default_rng(0)
    n = 2003  # not a multiple of 5: the ratio of the lengths is not exactly 3 / 5
    x = rng.standard_normal((3, n))
    whole = StreamResampler(200.0, 120.0, 3, phase)(x)
    chunked = StreamResampler(200.0, 120.0, 3, phase)
    edges = np.cumsum([0, *_random_sizes(n, rng)])
    parts = np.concatenate([chunked(x[:, a:b]) for a, b in zip(edges[:-1], edges[1:])], axis=1)
    np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=1e-12)
    offline = resample_polyphase(x, Fraction(3, 5))
    assert offline.shape[1] == 1202
    edge = 10  # output samples where the offline filter pads the signal by reflection
    if phase == "zero":  # the offline filter, emitted 10 / 120 s late
        assert whole.shape[1] == 1202 - edge
        np.testing.assert_allclose(whole[:, edge:], offline[:, edge:whole.shape[1]], atol=1e-12)
    else:  # as soon as the input reaches it: below 20 Hz, the offline signal 1-2 samples late
        assert whole.shape[1] == 1202

        def low(a: np.ndarray, sfreq: float) -> np.ndarray:
            return mne.filter.filter_data(a, sfreq, None, 20.0, verbose=False)

        reference = resample_polyphase(low(x, 200.0), Fraction(3, 5))[:, 100:1100]
        streamed = low(whole, 120.0)
        r = [np.corrcoef(streamed[:, 100 + d:1100 + d].ravel(), reference.ravel())[0, 1]
             for d in range(4)]
        assert np.argmax(r) in (1, 2) and max(r) > 0.9


@pytest.mark.parametrize("phase", ["minimum", "zero"])
def test_chunks_of_any_size_give_the_windows_of_one_chunk(decoder, candidates, model, phase):
    raw = _recording(model).raw().crop(0, 12)
    data = raw.get_data()
    rng = np.random.default_rng(1)
    kwargs = dict(subject="01", hop=0.25, top_k=3, phase=phase)
    whole = StreamDecoder(decoder, raw.ch_names, raw.info["sfreq"], candidates, **kwargs)
    one = whole.feed(data)
    chunked = _feed(StreamDecoder(decoder, raw.ch_names, raw.info["sfreq"], candidates,
                                  **kwargs), data, _random_sizes(data.shape[1], rng))
    assert len(one) == len(chunked) > 30
    np.testing.assert_allclose(np.diff(one["anchor"]), 0.25)
    assert one["anchor"].iloc[0] == 0.5  # -tmin: the first anchor whose window fits
    for column in ("anchor", "window_start", "window_end", "time"):
        np.testing.assert_array_equal(chunked[column], one[column])
    for j in (1, 2, 3):
        np.testing.assert_array_equal(chunked[f"top{j}_id"], one[f"top{j}_id"])
        np.testing.assert_allclose(chunked[f"top{j}_score"], one[f"top{j}_score"], rtol=1e-5,
                                   atol=1e-6)
    assert (one["latency_ms"] > 0).all()


def test_streamed_ranks_equal_offline_ranks_with_the_same_preprocessing(decoder, candidates,
                                                                        model):
    """The zero-phase stream of a training recording, scaled with its training scaler, gives the
    windows of ``decode(..., step=hop)`` at the same anchors: the same best candidates and
    scores (away from the recording's first 10 output samples, which offline pads)."""
    recording = _recording(model)
    offline = decoder.decode(recording, None, candidates, top_k=5, step=0.25)
    raw = recording.raw()
    stream = StreamDecoder(decoder, raw.ch_names, raw.info["sfreq"], candidates,
                           recording=recording.uid, hop=0.25, top_k=5, phase="zero")
    streamed = _feed(stream, raw.get_data(), [int(raw.info["sfreq"] * 0.1)] * 700)
    both = offline.merge(streamed, on="anchor", suffixes=("_offline", "_stream"))
    both = both[both["window_start_offline"] >= 0.5]  # the first window starts at 0.15 s
    assert len(both) > 100 and len(both) >= len(offline) - 3
    np.testing.assert_allclose(both["window_start_stream"], both["window_start_offline"])
    for j in range(1, 6):
        np.testing.assert_array_equal(both[f"top{j}_id_stream"], both[f"top{j}_id_offline"])
        np.testing.assert_allclose(both[f"top{j}_score_stream"], both[f"top{j}_score_offline"],
                                   rtol=1e-4, atol=1e-5)


def test_bad_stream_input_is_refused(decoder, candidates, model):
    raw = _recording(model).raw()
    with pytest.raises(SharingError, match=r"do not include the sensors .* 208, 8 of them "
                                           r"missing"):
        StreamDecoder(decoder, raw.ch_names[8:], 200.0, candidates, subject="01")
    with pytest.raises(SharingError, match="recording 'x' is not one the model was trained"):
        StreamDecoder(decoder, raw.ch_names, 200.0, candidates, recording="x")
    stream = StreamDecoder(decoder, raw.ch_names, 200.0, candidates, subject="01")
    with pytest.raises(SharingError, match="NaN or infinite"):
        stream.feed(np.full((len(raw.ch_names), 4), np.nan))


# ----------------------------------------------------------------------------------------------
# Lab Streaming Layer, on this machine


def _fif(model, tmp_path: Path, seconds: float, rename: bool = False) -> Path:
    raw = _recording(model).raw().crop(0, seconds, include_tmax=False)
    if rename:
        raw.rename_channels({c: f"X{i:03d}" for i, c in enumerate(raw.ch_names)})
    path = tmp_path / "recording_raw.fif"
    raw.save(path, overwrite=True, verbose=False)
    return path


def _stream(model) -> list[str]:
    return ["stream", "--model", str(model["folder"]), "--data", str(model["root"])]


def test_cli_replays_a_recording_through_lsl(model, tmp_path, capsys):
    path = _fif(model, tmp_path, 8.0)
    out = tmp_path / "stream.csv"
    code = main([*_stream(model), "--replay", str(path),
                 "--speed", "4", "--subject", "01", "--top-k", "3", "--out", str(out)])
    assert code == 0
    table = pd.read_csv(out)
    assert len(table) >= 12  # 8 s of which the first may be lost to connecting, 4 windows/s
    np.testing.assert_allclose(np.diff(table["anchor"]), 0.25)
    assert (np.diff(table["time"]) > 0).all() and table["time"].iloc[0] > 0
    assert {"top1_id", "top3_score", "latency_ms"} <= set(table.columns)
    assert "latency" in capsys.readouterr().out


def test_cli_reads_a_named_lsl_stream(model, tmp_path):
    from mne_lsl.player import PlayerLSL

    name = f"bds-{uuid.uuid4().hex[:12]}"
    raw = mne.io.read_raw_fif(_fif(model, tmp_path, 20.0), preload=True, verbose=False)
    player = PlayerLSL(raw, chunk_size=20, n_repeat=1, name=name, source_id=name).start()
    try:
        out = tmp_path / "live.csv"
        code = main([*_stream(model), "--lsl", name,
                     "--subject", "01", "--max-seconds", "6", "--out", str(out)])
    finally:
        player.stop()
    assert code == 0
    table = pd.read_csv(out)
    assert 8 <= len(table) <= 4 * 6


def test_cli_refuses_an_unknown_stream_and_other_sensors(model, tmp_path, capsys):
    name = f"bds-{uuid.uuid4().hex[:12]}"
    code = main([*_stream(model), "--lsl", name, "--timeout", "1"])
    error = capsys.readouterr().err
    assert code == EXIT_INPUT_ERROR and "Traceback" not in error
    assert error.strip() == (f"error: no LSL stream named {name!r} found on this machine's "
                             "network within 1 s")
    code = main([*_stream(model), "--replay",
                 str(_fif(model, tmp_path, 3.0, rename=True)), "--subject", "01"])
    error = capsys.readouterr().err
    assert code == EXIT_INPUT_ERROR and "Traceback" not in error
    assert "do not include the sensors" in error and "X000" in error


def test_causal_stream_against_offline_windows(decoder, candidates, model):
    """The difference the causal (minimum-phase) resampler makes, against the offline windows at
    the same anchors (a training recording, its training scaler): the windows stay highly
    correlated and most best candidates are the same."""
    recording = _recording(model)
    offline = decoder.decode(recording, None, candidates, top_k=10, step=0.25)
    raw = recording.raw()
    stream = StreamDecoder(decoder, raw.ch_names, raw.info["sfreq"], candidates,
                           recording=recording.uid, hop=0.25, top_k=10)
    both = offline.merge(stream.feed(raw.get_data()), on="anchor", suffixes=("", "_stream"))
    top1 = (both["top1_id"] == both["top1_id_stream"]).mean()
    top = [f"top{j}_id" for j in range(1, 11)]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in
                       zip(both[top].to_numpy(), both[[t + "_stream" for t in top]].to_numpy())])
    print(f"causal vs offline: {len(both)} windows, top-1 agreement {top1:.3f}, "
          f"top-10 overlap {overlap:.3f}")
    assert len(both) == len(offline) and top1 > 0.5 and overlap > 0.7
