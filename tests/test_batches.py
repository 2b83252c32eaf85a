"""Batch gathering: bit for bit the per-window path, from memory maps and from a device store."""

import numpy as np
import pytest
import torch

from braindecode_speech.data import batches as batches_module
from braindecode_speech.data.batches import BatchLoader, DataConfig, read_runs
from braindecode_speech.data.cache import RowReader
from braindecode_speech.data.dataset import FeatureScaler, RobustScaler, Window, WindowDataset

N_TIMES = 30
LAG = 3  # baseline taken LAG samples before the brain window, as the paper's (offset -LAG)
BASELINE = 7  # not a power of two: a division by it is not a multiplication by its inverse
CHANNELS = (7, 5, 7)  # recordings with different channel counts: padding
LENGTHS = (300, 200, 250)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _save(folder, name, array):
    np.save(folder / f"{name}.npy", array)
    return np.load(folder / f"{name}.npy", mmap_mode="r")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Three recordings ``[T_r, C_r]`` (float32, and the same stored in float16 with a scale
    per channel), two speech-feature blocks ``[n_frames, 4]``, scalers that move the values."""
    folder = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    brains, brains16 = [], []
    for r, (n_ch, length) in enumerate(zip(CHANNELS, LENGTHS)):
        x = (rng.standard_normal((length, n_ch)) * 3e-12 + 1e-12).astype(np.float32)
        brains.append(RowReader(_save(folder, f"brain{r}", x)))
        exponent = np.ceil(np.log2(np.abs(x).max(axis=0))).astype(int) - 15
        stored = np.ldexp(x, -exponent).astype(np.float16)
        brains16.append(RowReader(_save(folder, f"brain16_{r}", stored),
                                  np.ldexp(np.float32(1), exponent).astype(np.float32)))
    features = [RowReader(_save(folder, f"speech{b}",
                                rng.standard_normal((n, 4)).astype(np.float32) + 2))
                for b, n in enumerate((310, 260))]
    scalers = [RobustScaler(rng.standard_normal(n) * 1e-13, rng.random(n) * 1e-12 + 1e-12)
               for n in CHANNELS]
    scalers[1].scale[2] = np.inf  # a flat channel
    feature_scaler = FeatureScaler(rng.standard_normal(4), rng.random(4) + 0.5)
    windows = []
    for r, length in enumerate(LENGTHS):  # every start, from the first to the last possible
        block = r % 2
        for s in range(LAG, length - N_TIMES + 1, 7):
            windows.append(Window(r, s, block, s % (250 - N_TIMES), r))
        windows.append(Window(r, length - N_TIMES, block, 0, r))  # the recording's last one
    return {"brains": brains, "brains16": brains16, "features": features, "scalers": scalers,
            "feature_scaler": feature_scaler, "windows": windows}


def _dataset(study, float16=False, baseline=True, scaled=True, clamp=2.5, store=None,
             kernel="auto", read="pread"):
    brains = study["brains16" if float16 else "brains"]
    positions = [np.random.default_rng(n).random((n, 2), dtype=np.float32) for n in CHANNELS]
    scalers = study["scalers"] if scaled else [None] * len(CHANNELS)
    feature_scaler = study["feature_scaler"] if scaled else None
    dataset = WindowDataset(brains, positions, study["features"], study["windows"], scalers,
                            feature_scaler, max(CHANNELS), N_TIMES,
                            BASELINE if baseline else 0, clamp, -LAG if baseline else 0,
                            data_config=DataConfig(read=read, kernel=kernel))
    if store is not None:
        dataset.store = WindowDataset.device_store(brains, study["features"], scalers,
                                                   feature_scaler, max(CHANNELS), store)
    return dataset


def _reference(dataset, indices):
    return torch.utils.data.default_collate([dataset[int(i)] for i in indices])


def _assert_identical(batch, reference):
    assert set(batch) == set(reference)
    for key, value in reference.items():
        got = batch[key]
        assert got.dtype == value.dtype and got.shape == value.shape, key
        # bit for bit: same values and no NaN on either side
        assert torch.equal(got.cpu(), value), f"{key} differs"


@pytest.mark.parametrize("store, read, kernel", [
    (None, "pread", "numpy"), (None, "pread", "numba"), (None, "mmap", "numpy"),
    (None, "mmap", "numba"), ("cpu", "pread", "auto"),
    pytest.param("cuda", "pread", "auto", marks=CUDA)])
@pytest.mark.parametrize("float16", [False, True])
@pytest.mark.parametrize("options", [{}, {"baseline": False, "scaled": False, "clamp": None},
                                     {"baseline": False}, {"clamp": None}])
def test_batches_are_bit_identical_to_the_per_window_path(study, store, read, kernel, float16,
                                                          options):
    if kernel == "numba":
        pytest.importorskip("numba")
    dataset = _dataset(study, float16=float16, store=store, kernel=kernel, read=read, **options)
    rng = np.random.default_rng(1)
    n = len(dataset)
    shuffled = rng.permutation(n)[:40]
    in_order = np.arange(n)[:25]  # overlapping windows of one recording: read as one run
    edges = [i for i, w in enumerate(dataset.windows)  # first and last of each recording
             if w.brain_start in (LAG, LENGTHS[w.recording] - N_TIMES)]
    assert {(dataset.windows[i].recording, dataset.windows[i].brain_start == LAG)
            for i in edges} == {(r, f) for r in range(len(LENGTHS)) for f in (True, False)}
    for indices in (shuffled, in_order, edges, [edges[-1]] * 3 + [0]):
        _assert_identical(dataset.get_batch(indices), _reference(dataset, indices))
    clamped = dataset.get_batch(shuffled)["brain"]
    if options.get("clamp", 2.5) is not None:
        assert clamped.abs().max() == 2.5  # the clamp bites: its path is exercised
    assert not clamped[:, 7:].any() and (clamped[:, 5:7] == 0).any()


@pytest.mark.parametrize("store", [None, "cpu", pytest.param("cuda", marks=CUDA)])
def test_batches_are_time_major_views(study, store):
    """brain [B, C, T] and speech [B, F, T] are views of [B, T, C] / [B, T, F] memory, from the
    memory maps and from a device store; .contiguous() gives the same values channel-major."""
    dataset = _dataset(study, store=store)
    batch = dataset.get_batch(np.arange(12))
    for key in ("brain", "speech"):
        value = batch[key]
        assert not value.is_contiguous() and value.transpose(1, 2).is_contiguous(), key
        assert torch.equal(value.contiguous(), value)
    if store is None:
        out = dataset.empty_batch(4)
        assert out["brain"].shape == (4, max(CHANNELS), N_TIMES)
        assert out["brain"].stride() == (N_TIMES * max(CHANNELS), 1, max(CHANNELS))


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_channel_major_out_buffers_are_filled_too(study, kernel):
    """get_batch writes into any [B, C, T] buffers, channel-major ones included (the fused
    kernel needs time-major slots, so these take the numpy path): the same windows."""
    if kernel == "numba":
        pytest.importorskip("numba")
    dataset = _dataset(study, kernel=kernel)
    indices = np.random.default_rng(3).choice(len(dataset), 10, replace=False)
    out = {k: v.contiguous() for k, v in dataset.empty_batch(10).items()}
    got = dataset.get_batch(indices, out)
    assert got["brain"].is_contiguous() and got["brain"].data_ptr() == out["brain"].data_ptr()
    _assert_identical(got, _reference(dataset, indices))


def test_mapped_rows_are_the_read_rows_without_a_copy(study):
    """RowReader.mapped: float32 rows are a read-only view of one mapping of the file kept by
    the reader (not copied, not remapped per read); float16 rows are decoded as read() does;
    a pickled reader (DataLoader workers) does not carry the mapping."""
    import pickle

    reader = study["brains"][0]
    first, second = reader.mapped(10, 40), reader.mapped(50, 60)
    np.testing.assert_array_equal(first, reader.read(10, 40))
    assert not first.flags.writeable and not first.flags.owndata
    assert np.shares_memory(first, reader.mapped(0, LENGTHS[0]))
    assert second.__array_interface__["data"][0] - first.__array_interface__["data"][0] == \
        40 * reader.row_bytes
    scaled = study["brains16"][1]
    out = np.empty((20, CHANNELS[1]), dtype=np.float32)
    assert scaled.mapped(5, 25, out=out) is out
    np.testing.assert_array_equal(out, scaled.read(5, 25))
    assert pickle.loads(pickle.dumps(reader))._map is None
    with pytest.raises(IndexError, match="outside"):
        reader.mapped(0, LENGTHS[0] + 1)


def test_reused_buffers_give_the_same_batches(study):
    dataset = _dataset(study)
    out = dataset.empty_batch(16)
    rng = np.random.default_rng(2)
    for _ in range(3):
        indices = rng.choice(len(dataset), 16, replace=False)
        got = dataset.get_batch(indices, out)
        assert got["brain"].data_ptr() == out["brain"].data_ptr()
        _assert_identical(got, _reference(dataset, indices))


def test_overlapping_windows_are_read_once_per_run(study, monkeypatch):
    reads = []
    original = RowReader.read

    def counting(self, start, stop, out=None):
        reads.append((self.path, start, stop))
        return original(self, start, stop, out)

    monkeypatch.setattr(RowReader, "read", counting)
    brains = study["brains"]
    starts = np.array([200, 10, 12, 11, 12 + N_TIMES, 100, 150])
    got = {k: rows[offset:offset + N_TIMES].copy()
           for _, rows, windows, offsets in read_runs(brains, np.zeros(7, int), starts, N_TIMES)
           for k, offset in zip(windows, offsets)}
    # 10, 11 and 12 overlap, 12 + T touches them (starts where 12's window ends): one run;
    # 100, 150 and 200 are apart
    assert sorted((s, e) for _, s, e in reads) == [
        (10, 12 + 2 * N_TIMES), (100, 100 + N_TIMES), (150, 150 + N_TIMES), (200, 200 + N_TIMES)]
    whole = np.load(brains[0].path)
    for k, s in enumerate(starts):
        assert np.array_equal(got[k], whole[s:s + N_TIMES])
    reads.clear()
    monkeypatch.setattr(batches_module, "MAX_RUN_BYTES", 2 * N_TIMES * brains[0].row_bytes)
    list(read_runs(brains, np.zeros(5, int), np.arange(5) * 10, N_TIMES))
    assert all(stop - start <= 2 * N_TIMES for _, start, stop in reads) and len(reads) == 2


def test_mapped_runs_are_whole_files_for_float32_and_decoded_runs_for_float16(study):
    """With mapped reads, the windows of a float32 array come as one run over the whole mapped
    file (offsets = starts); a float16 array is decoded run by run, as read() does."""
    starts = np.array([120, 3, 60, 3 + N_TIMES + 5])
    arrays = np.array([0, 0, 2, 0])
    runs = list(read_runs(study["brains"], arrays, starts, N_TIMES, mapped=True))
    assert [(a, list(w), list(o)) for a, _, w, o in runs] == [
        (0, [1, 3, 0], [3, 3 + N_TIMES + 5, 120]), (2, [2], [60])]
    assert all(len(rows) == LENGTHS[a] and not rows.flags.writeable for a, rows, *_ in runs)
    for reader_set in ("brains", "brains16"):
        readers = study[reader_set]
        for a, rows, windows, offsets in read_runs(readers, arrays, starts, N_TIMES,
                                                   mapped=True):
            for k, offset in zip(windows, offsets):
                np.testing.assert_array_equal(rows[offset:offset + N_TIMES],
                                              readers[a].read(starts[k], starts[k] + N_TIMES))


def test_batch_loader_prefetches_the_same_batches(study):
    dataset = _dataset(study)
    rng = np.random.default_rng(3)
    order = rng.permutation(len(dataset)).tolist()
    lists = [order[i:i + 12] for i in range(0, len(order), 12)]
    for prefetch, workers in ((0, 1), (2, 1), (3, 2)):
        loader = BatchLoader(dataset, lists, prefetch=prefetch, workers=workers)
        for batch, indices in zip(loader, lists, strict=True):
            _assert_identical(batch, _reference(dataset, indices))
    items = [{"brain": torch.full((2, 3), float(i)), "index": torch.tensor(i)} for i in range(7)]
    loader = BatchLoader.for_dataset(items, [[0, 1, 2], [5, 6]])
    assert [b["index"].tolist() for b in loader] == [[0, 1, 2], [5, 6]]


def test_data_config_options_outside_the_signature_do_not_change_it():
    base = DataConfig()
    assert DataConfig(device="cpu", prefetch=0, workers=3, pin_memory=False,
                      read="mmap", kernel="numpy").signature() == base.signature()
    assert DataConfig(storage="float16").signature() != base.signature()
    with pytest.raises(ValueError, match="not a torch device"):
        DataConfig(device="gpu0")


def test_the_numba_kernel_is_chosen_where_installed_and_refused_where_not(monkeypatch):
    from braindecode_speech.data import kernels

    assert not DataConfig(kernel="numpy").fused()
    assert DataConfig().fused() == kernels.available()
    monkeypatch.setattr(kernels, "numba", None)
    assert not DataConfig().fused()
    with pytest.raises(ValueError, match=r"numba is not installed: pip install "
                                         r"'braindecode-speech\[fast\]'"):
        DataConfig(kernel="numba")


@pytest.mark.parametrize("overrides", [{"data.device": "cpu"}, {"data.storage": "float16"}])
def test_pipeline_batches_match_items(tiny_meg_root, tmp_path, overrides):
    from braindecode_speech.experiments import prepare_data
    from braindecode_speech.experiments.presets import tiny_config

    config = tiny_config(tiny_meg_root, tmp_path / "cache").with_overrides(overrides)
    data = prepare_data(config)
    for dataset in data.datasets.values():
        assert (dataset.store is not None) == ("data.device" in overrides)
        indices = np.random.default_rng(0).permutation(len(dataset))[:20]
        _assert_identical(dataset.get_batch(indices), _reference(dataset, indices))
    assert data.datasets["train"].store is data.datasets["test"].store
    stored = {r.samples.dtype for r in data.recordings}
    assert stored == {np.dtype(config.data.storage)}


def test_training_and_evaluation_read_batches_not_items(tiny_meg_root, tmp_path, monkeypatch):
    """The trainer, the evaluation and the ridge baseline go through ``get_batch`` only."""
    from braindecode_speech.experiments import run_experiment
    from braindecode_speech.experiments.presets import tiny_config

    def refused(self, i):
        raise AssertionError("a window was read on its own")

    monkeypatch.setattr(WindowDataset, "__getitem__", refused)
    config = tiny_config(tiny_meg_root, tmp_path / "cache").with_overrides(
        {"optim.max_epochs": 1, "optim.batches_per_epoch": 2, "data.prefetch": 1})
    out = run_experiment(config, tmp_path / "run")
    assert {"model", "ridge"} <= set(out["results"])


def test_loader_throughput_benchmark_runs_on_tiny_shapes(tmp_path, monkeypatch):
    """bench/loader.py's loader_throughput, as bench/run.py calls it, on a tiny generated
    cache: both paths measured in their own worker, the bandwidth bound beside them."""
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("BRAINDECODE_SPEECH_BENCH", str(tmp_path))
    spec = importlib.util.spec_from_file_location(
        "bench_loader", Path(__file__).parents[1] / "bench" / "loader.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.bench_throughput(1, gb=0.004, n_batches=3, n_recordings=2, n_features=3,
                                    workers=1, batch_size=8, bandwidth_bytes=1 << 22)
    assert result["name"] == "loader_throughput"
    assert result["windows_per_s"] > 0 and result["per_window"]["windows_per_s"] > 0
    assert result["speedup"] == pytest.approx(
        result["windows_per_s"] / result["per_window"]["windows_per_s"], rel=0.01)
    assert result["peak_rss_gb"] > 0 and result["per_window"]["peak_rss_gb"] > 0
    assert min(result["bandwidth_gb_s"].values()) > 0
    window_bytes = (208 + 3) * 360 * 4
    assert result["bound_windows_per_s"] == round(
        max(result["bandwidth_gb_s"].values()) * 1e9 / window_bytes)
    assert result["cpu"] and result["config"]["windows"] > 3 * 8
    assert (tmp_path / "throughput" / "brain1.npy").exists()
