"""Caches never give stale or garbage data: keyed by file content, checksummed, rebuilt with a
WARNING line naming the entry."""

import logging
import shutil

import mne
import numpy as np
import pandas as pd
import pytest
import soundfile

from braindecode_speech.data import cache as cache_module
from braindecode_speech.data.cache import ArrayCache, file_digest
from braindecode_speech.data.preprocessing import PreprocessConfig, preprocess, source_files
from braindecode_speech.data.splits import sound_spans
from braindecode_speech.data.study import Recording
from braindecode_speech.features import MelFeaturesConfig
from braindecode_speech.features.blocks import AUDIO_SFREQ, block_features


def _write_raw(path, seed, n_channels=16, sfreq=200.0, seconds=10.0):
    """An EEG recording with random data (the same file size for every seed)."""
    montage = mne.channels.make_standard_montage("biosemi64")
    info = mne.create_info(montage.ch_names[:n_channels], sfreq, "eeg")
    data = 1e-5 * np.random.default_rng(seed).standard_normal((n_channels, int(seconds * sfreq)))
    raw = mne.io.RawArray(data, info, verbose=False)
    raw.set_montage(montage)
    raw.save(path, overwrite=True, verbose=False)
    return raw


def _recording(path, calls=None):
    events = pd.DataFrame({"onset": [1.0], "duration": [0.0], "kind": ["block"]})

    def load_raw():
        if calls is not None:
            calls.append(path)
        return mne.io.read_raw_fif(path, verbose=False)

    return Recording("test", "01", None, "listen", None, path, load_raw=load_raw,
                     load_events=lambda: events)


def _resampled(raw):
    return mne.filter.resample(raw.get_data(), up=3, down=5, method="polyphase", verbose=False)


def _overwrite_with_garbage(array_path):
    """Same header, same shape, random values: only the checksum can tell."""
    data = np.load(array_path, mmap_mode="r")
    offset, nbytes = data.offset, data.nbytes
    del data
    garbage = np.random.default_rng(1).standard_normal(nbytes // 4).astype(np.float32)
    with open(array_path, "r+b") as f:
        f.seek(offset)
        f.write(garbage.tobytes())


def test_raw_rewritten_in_place_with_the_same_size_gives_new_data(tmp_path):
    path = tmp_path / "sub-01_eeg.fif"
    _write_raw(path, seed=0)
    size, inode = path.stat().st_size, path.stat().st_ino
    first = np.array(preprocess(_recording(path), PreprocessConfig(), tmp_path / "cache").data)
    new_raw = _write_raw(path, seed=1)  # same file, same size, new values
    assert path.stat().st_size == size and path.stat().st_ino == inode
    second = preprocess(_recording(path), PreprocessConfig(), tmp_path / "cache")
    assert not np.allclose(second.data, first)
    np.testing.assert_allclose(second.data, _resampled(new_raw), atol=1e-9)


def test_unchanged_content_is_reused_after_a_copy_and_hashed_once(tmp_path):
    path = tmp_path / "a" / "sub-01_eeg.fif"
    path.parent.mkdir()
    _write_raw(path, seed=0)
    cache_dir = tmp_path / "cache"
    first = np.array(preprocess(_recording(path), PreprocessConfig(), cache_dir).data)
    copy = tmp_path / "b" / "sub-01_eeg.fif"
    copy.parent.mkdir()
    shutil.copy(path, copy)  # another path and inode, the same content: the same entry
    calls = []
    again = preprocess(_recording(copy, calls), PreprocessConfig(), cache_dir)
    assert not calls and np.array_equal(again.data, first)
    # digests are remembered on disk by file fingerprint: a new process does not re-read
    cache_module._DIGESTS.clear()
    assert len(list((cache_dir / "digests").iterdir())) == 2
    reads = []
    real_open = open

    def counting_open(file, *args, **kwargs):
        reads.append(str(file))
        return real_open(file, *args, **kwargs)

    cache_module.open = counting_open  # module-level name shadows the builtin
    try:
        assert file_digest(copy, cache_dir) == file_digest(path, cache_dir)
    finally:
        del cache_module.open
    assert str(copy) not in reads and str(path) not in reads


def test_sibling_files_of_a_recording_are_part_of_its_content(tmp_path):
    (tmp_path / "sub-01_eeg.vhdr").write_text("header")
    (tmp_path / "sub-01_eeg.eeg").write_bytes(b"\0" * 8)
    (tmp_path / "sub-01_eeg.vmrk").write_text("markers")
    (tmp_path / "sub-01_events.tsv").write_text("onset\n")
    (tmp_path / "sub-011_eeg.eeg").write_bytes(b"\1")
    ds = tmp_path / "rec.ds"
    ds.mkdir()
    (ds / "rec.meg4").write_bytes(b"\2")
    (ds / "rec.res4").write_bytes(b"\3")
    assert [p.name for p in source_files(tmp_path / "sub-01_eeg.vhdr")] == \
        ["sub-01_eeg.eeg", "sub-01_eeg.vhdr", "sub-01_eeg.vmrk"]
    assert [p.name for p in source_files(ds)] == ["rec.meg4", "rec.res4"]
    assert source_files(tmp_path / "missing.fif") == []


def test_garbage_in_a_preprocessed_entry_is_detected_and_rebuilt(tmp_path, caplog):
    path = tmp_path / "sub-01_eeg.fif"
    raw = _write_raw(path, seed=0)
    cache_dir = tmp_path / "cache"
    out = preprocess(_recording(path), PreprocessConfig(), cache_dir)
    entry = next((cache_dir / "preprocessed").iterdir())
    del out
    _overwrite_with_garbage(entry / "data.npy")
    with caplog.at_level(logging.WARNING):
        again = preprocess(_recording(path), PreprocessConfig(), cache_dir)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(entry) in warnings[0].message and "checksum" in warnings[0].message
    assert "rebuilding" in warnings[0].message
    np.testing.assert_allclose(again.data, _resampled(raw), atol=1e-9)


def _wav(path, seed, seconds=4.0):
    audio = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * AUDIO_SFREQ))
    soundfile.write(path, audio.astype(np.float32), AUDIO_SFREQ, subtype="FLOAT")


def _block(wav, cache_dir):
    events = pd.DataFrame({"onset": [0.5], "duration": [4.0], "kind": ["sound"],
                           "filepath": [str(wav)], "offset": [0.0]})
    return np.array(block_features(1.0, 3.0, sound_spans(events), MelFeaturesConfig().build(120.0), cache_dir))


def test_replaced_wav_gives_new_features(tmp_path):
    wav = tmp_path / "story.wav"
    _wav(wav, seed=0)
    first = _block(wav, tmp_path / "cache")
    _wav(tmp_path / "other.wav", seed=1)
    (tmp_path / "other.wav").replace(wav)  # same name, same size, other audio
    second = _block(wav, tmp_path / "cache")
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(second, _block(wav, tmp_path / "fresh_cache"))


def test_garbage_in_a_feature_entry_is_detected_and_rebuilt(tmp_path, caplog):
    wav = tmp_path / "story.wav"
    _wav(wav, seed=0)
    reference = _block(wav, tmp_path / "cache")
    (entry,) = (tmp_path / "cache" / "features").iterdir()
    _overwrite_with_garbage(entry / "data.npy")
    with caplog.at_level(logging.WARNING):
        again = _block(wav, tmp_path / "cache")
    assert f"Cache entry {entry}: data.npy does not match its checksum" in caplog.text
    np.testing.assert_array_equal(again, reference)


@pytest.mark.parametrize("damage", ["no_checksum", "wrong_checksum", "older_version"])
def test_entry_metadata_without_a_valid_checksum_is_rebuilt(tmp_path, caplog, damage):
    import json

    cache = ArrayCache(tmp_path, "x")
    builds = []

    def build(folder):
        builds.append(folder)
        np.save(folder / "data.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
        return {}

    cache.get_or_create("k", build)
    meta_path = cache.path("k") / "meta.json"
    meta = json.loads(meta_path.read_text())
    if damage == "no_checksum":
        del meta["_crc32"]
    elif damage == "wrong_checksum":
        meta["_crc32"] += 1
    else:
        meta["_cache_version"] -= 1
    meta_path.write_text(json.dumps(meta))
    cache_module._VERIFIED.clear()  # a new process
    with caplog.at_level(logging.WARNING):
        data, _ = cache.get_or_create("k", build)
    assert len(builds) == 2 and str(cache.path("k")) in caplog.text
    assert np.array_equal(data, np.arange(6).reshape(2, 3))
    # a verified entry is not read again by the same process
    cache.get_or_create("k", build)
    assert len(builds) == 2
