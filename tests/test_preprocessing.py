"""Preprocessing cache on a small EEG recording written to FIF."""

import logging

import mne
import numpy as np
import pandas as pd
import pytest

from braindecode_speech.data.cache import ArrayCache
from braindecode_speech.data.preprocessing import PreprocessConfig, preprocess, sensor_positions_2d
from braindecode_speech.data.study import Recording, StudyError


def _recording(tmp_path, data=None, sfreq=500.0, seconds=20.0):
    montage = mne.channels.make_standard_montage("biosemi64")
    info = mne.create_info(montage.ch_names, sfreq, "eeg")
    rng = np.random.default_rng(0)
    n = int(seconds * sfreq)
    if data is None:
        t = np.arange(n) / sfreq
        data = 1e-5 * (np.sin(2 * np.pi * 7 * t) + 0.1 * rng.standard_normal((64, n)))
    raw = mne.io.RawArray(data, info, verbose=False)
    raw.set_montage(montage)
    raw.info["bads"] = ["Cz"]
    path = tmp_path / "sub-01_eeg.fif"
    raw.save(path, overwrite=True, verbose=False)
    events = pd.DataFrame({"onset": [1.0], "duration": [0.0], "kind": ["block"]})
    return Recording("test", "01", None, "listen", None, path,
                     load_raw=lambda: mne.io.read_raw_fif(path, verbose=False),
                     load_events=lambda: events), raw


def test_preprocess_resamples_and_caches(tmp_path, caplog):
    rec, raw = _recording(tmp_path)
    cfg = PreprocessConfig()
    out = preprocess(rec, cfg, tmp_path / "cache")
    assert out.data.shape == (64, 20 * 120)
    assert out.data.dtype == np.float32
    assert isinstance(out.data, np.memmap)
    expected = mne.filter.resample(raw.get_data(), up=6, down=25, method="polyphase",
                                   verbose=False)
    assert np.allclose(out.data, expected, atol=1e-9)
    assert out.bads == ["Cz"]
    assert out.positions.shape == (64, 2)
    assert out.positions.min() == 0.0 and out.positions.max() == 1.0
    # neither the memory budget nor the number of threads changes the result
    small = preprocess(rec, PreprocessConfig(chunk_mb=1, n_jobs=1), tmp_path / "other_cache")
    assert np.array_equal(small.data, out.data)
    threads = preprocess(rec, PreprocessConfig(n_jobs=3, highpass=0.5),
                         tmp_path / "threads_cache")
    single = preprocess(rec, PreprocessConfig(n_jobs=1, highpass=0.5),
                        tmp_path / "single_cache")
    assert np.array_equal(threads.data, single.data)
    # the second call reads the cache
    calls = []
    rec.load_raw = lambda: calls.append(1)
    again = preprocess(rec, cfg, tmp_path / "cache")
    assert not calls and np.array_equal(again.data, out.data)
    # another config is another entry; the memory budget is not part of the key
    assert PreprocessConfig(chunk_mb=1, n_jobs=1).signature() == cfg.signature()
    assert PreprocessConfig(highpass=0.5).signature() != cfg.signature()
    entries = [p for p in (tmp_path / "cache" / "preprocessed").iterdir()]
    assert len(entries) == 1 and not entries[0].name.startswith(".")


def test_resampled_samples_are_on_the_output_clock(tmp_path):
    """Output sample n is at n / 120 s for any length: 1000 Hz and 12,347 samples, where mne's
    resample (ratio refitted to the rounded length, 1482 / 12347) drifts by 0.36 sample at the
    end (3 ms, a 0.19 rad error on 10 Hz)."""
    sfreq, n = 1000.0, 12_347
    t = np.arange(n) / sfreq
    data = np.tile(1e-5 * np.sin(2 * np.pi * 10 * t), (64, 1))
    rec, raw = _recording(tmp_path, data=data, sfreq=sfreq)
    out = preprocess(rec, PreprocessConfig(), tmp_path / "cache").data
    assert out.shape == (64, 1482)
    ideal = 1e-5 * np.sin(2 * np.pi * 10 * np.arange(1482) / 120.0)
    inner = slice(20, -20)  # away from the reflected edges
    assert np.abs(out[:, inner] - ideal[inner]).max() < 1e-3 * 1e-5
    mne_out = mne.filter.resample(raw.get_data(picks=[0]), up=3, down=25, method="polyphase",
                                  verbose=False)[0]
    assert np.abs(mne_out[inner] - ideal[inner]).max() > 0.1 * 1e-5  # the drift it fixes


def test_corrupted_cache_entry_is_rebuilt(tmp_path, caplog):
    rec, _ = _recording(tmp_path)
    out = preprocess(rec, PreprocessConfig(), tmp_path / "cache")
    entry = next((tmp_path / "cache" / "preprocessed").iterdir())
    reference = np.array(out.data)
    del out
    with open(entry / "data.npy", "r+b") as f:
        f.truncate(1000)
    with caplog.at_level(logging.WARNING):
        again = preprocess(rec, PreprocessConfig(), tmp_path / "cache")
    assert "rebuilding" in caplog.text and str(entry) in caplog.text
    assert np.array_equal(again.data, reference)


def test_nan_in_signal_names_the_file(tmp_path):
    data = np.zeros((64, 5000))
    data[3, 100] = np.nan
    rec, _ = _recording(tmp_path, data=data)
    name = mne.channels.make_standard_montage("biosemi64").ch_names[3]
    with pytest.raises(StudyError, match=rf"sub-01_eeg.fif: NaN or infinite values.*{name}"):
        preprocess(rec, PreprocessConfig(), tmp_path / "cache")
    assert not any((tmp_path / "cache" / "preprocessed").iterdir())


def test_flat_channels_are_listed(tmp_path, caplog):
    rec, raw = _recording(tmp_path)
    data = raw.get_data()
    data[5] = 0.0
    rec, _ = _recording(tmp_path, data=data)
    with caplog.at_level(logging.WARNING):
        preprocess(rec, PreprocessConfig(), tmp_path / "cache")
    name = mne.channels.make_standard_montage("biosemi64").ch_names[5]
    assert f"1 flat channels ['{name}']" in caplog.text


def test_sensor_positions_need_a_montage():
    info = mne.create_info(["a", "b", "c"], 100.0, "eeg")
    with pytest.raises(StudyError, match="montage"):
        sensor_positions_2d(info)


def test_cache_refuses_mismatched_metadata(tmp_path):
    cache = ArrayCache(tmp_path, "x")

    def build(folder):
        np.save(folder / "data.npy", np.ones((2, 3), dtype=np.float32))
        return {"a": 1}

    data, meta = cache.get_or_create("k", build)
    assert meta["a"] == 1 and data.shape == (2, 3)
    np.save(cache.path("k") / "data.npy", np.ones((4, 3), dtype=np.float32))
    data, _ = cache.get_or_create("k", build)
    assert data.shape == (2, 3)


def test_row_reader_reads_rows_like_slicing(tmp_path):
    import pickle

    from braindecode_speech.data.cache import CacheError, RowReader

    array = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "a.npy", array)
    reader = RowReader(np.load(tmp_path / "a.npy", mmap_mode="r"))
    assert np.array_equal(reader.read(4, 9), array[4:9])
    assert reader.read(4, 9).flags.writeable
    assert np.array_equal(pickle.loads(pickle.dumps(reader)).read(0, 20), array)
    with pytest.raises(IndexError, match="a.npy"):
        reader.read(15, 21)
    with pytest.raises(TypeError):
        RowReader(array)
    with open(tmp_path / "a.npy", "r+b") as f:
        f.truncate(200)
    with pytest.raises(CacheError, match="shorter than its header"):
        pickle.loads(pickle.dumps(reader)).read(10, 20)


def test_float16_storage_round_trips_within_float16_precision(tmp_path):
    rec, _ = _recording(tmp_path)
    single = preprocess(rec, PreprocessConfig(), tmp_path / "cache")
    half = preprocess(rec, PreprocessConfig(), tmp_path / "cache", storage="float16")
    assert len(list((tmp_path / "cache" / "preprocessed").iterdir())) == 2  # its own entry
    assert half.samples.dtype == np.float16 and single.scale is None
    assert half.samples.nbytes * 2 == single.samples.nbytes
    exponent = np.log2(half.scale)
    assert np.array_equal(exponent, np.round(exponent))  # powers of two: decoding is exact
    peak = np.abs(half.samples.astype(np.float32)).max(axis=0)
    assert np.all((peak > 2 ** 14) & (peak <= 2 ** 15))  # each channel uses float16's range
    exact, decoded = single.data.astype(np.float64), half.data.astype(np.float64)
    # half an ulp of float16 (relative 2**-11), float32's own rounding, a subnormal's floor
    bound = np.abs(exact) * (2 ** -11 + 2 ** -23) + half.scale[:, None] * 2 ** -24
    assert np.all(np.abs(decoded - exact) <= bound)
    assert np.abs(decoded - exact).max() > 0  # float16 is not float32
    reader = half.reader()
    assert reader.dtype == np.float32
    assert np.array_equal(reader.read(5, 40), half.data[:, 5:40].T)
