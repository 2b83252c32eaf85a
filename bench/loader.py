"""Benchmarks ``loader_large`` and ``loader_throughput``: data-loader throughput and memory.

``loader_large``: the ``large`` simulated study through the whole pipeline.

Simulates the ``large`` preset (160 recordings, 21.3 h of 208-channel MEG; once, cached under
``$BRAINDECODE_SPEECH_BENCH`` or ``/tmp/braindecode_speech_bench``), prepares it with the paper's
data pipeline (preprocessing to 120 Hz and mel features cached as memory maps), then draws
shuffled training batches of 256 windows as the trainer does and reports windows per second.
Compare the throughput with ``train_step_b256`` (the loader must be ≥ 5× faster than training).
It then runs ``--train-steps`` contrastive steps of the paper-sized encoder (``lean`` mode,
bfloat16 where the CPU has it) on those batches; the peak resident memory reported is that of the
whole process: data, model and training.

The raw recordings are simulated at ``--sfreq`` (default 200 Hz, not the preset's 1000 Hz, whose
FIF files would take 82 GB of disk): the pipeline reads only the 120 Hz cache, whose size
(7.7 GB) does not depend on the raw rate.

Run on its own: ``python bench/loader.py --threads 2 [--preset large] [--batches 20]``.

``loader_throughput``: ``--gb`` (default 3) of generated time-major cache (``--recordings``
recordings ``[T, 208]`` float32 and their speech features ``[T, --features]``, written once to
``$BRAINDECODE_SPEECH_BENCH/throughput`` or ``/tmp/braindecode_speech_bench/throughput``, then
read through once so that the page cache holds them), windows of 360 samples every 60 (0.5 s at
120 Hz) with the paper's normalisation (baseline, robust scaling, clamp; standard-scaled
features), drawn in shuffled batches of 256. Each path runs in its own fresh subprocess (its
own peak RSS): ``per_window`` (``dataset[i]`` + collate through a ``torch.utils.data.DataLoader``,
the loader before ``get_batch``) and :class:`BatchLoader` (``get_batch``: runs read once, reused
buffers, ``--workers`` background threads) in three settings: ``data.read=pread`` with the numpy
kernel and, where numba is installed, with the fused kernel (the default settings then), and
``data.read=mmap`` with the fused kernel (windows normalised straight from the mapped cache: the
headline ``windows_per_s``; every setting's figures under ``get_batch``; the one-time mapping of
the cache files, ``map_seconds``, is done before the timed batches, as a training run does it
once in its first batch). The machine's memory bandwidth is measured in
the same run (a 1 GiB numpy copy, one thread; a torch copy with ``threads`` threads): a batch
cannot be produced faster than copying its bytes once (``bound_windows_per_s``).

Run on its own: ``python bench/loader.py --throughput --threads 2 [--gb 3] [--batches 30]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import scratch  # noqa: E402


def _measure(threads: int, preset: str, n_batches: int, sfreq: float, train_steps: int) -> dict:
    import torch

    from braindecode_speech.data.batches import BatchLoader
    from braindecode_speech.experiments import prepare_data
    from braindecode_speech.experiments.presets import demo_config
    from braindecode_speech.simulation import SimulationConfig, simulate

    torch.set_num_threads(threads)
    folder = scratch.folder()
    simulation = SimulationConfig.preset(preset, seed=0, sfreq=sfreq, n_jobs=threads)
    root = simulate(simulation, folder / f"study-{preset}-{sfreq:g}hz")
    config = demo_config(root, cache_dir=folder / "cache").with_overrides(
        {"optim.batch_size": 256, "optim.progress": False})
    start = time.perf_counter()
    data = prepare_data(config)
    prepare_s = time.perf_counter() - start
    train = data.datasets["train"]
    hours = sum(r.duration for r in data.recordings) / 3600
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(train), generator=generator).tolist()
    batches = [order[i:i + 256] for i in range(0, len(order) - 255, 256)]
    loader = BatchLoader.for_dataset(train, batches)
    times = []
    iterator = iter(loader)
    for _ in range(n_batches):
        t = time.perf_counter()
        batch = next(iterator)
        times.append(time.perf_counter() - t)
    assert batch["brain"].shape[0] == 256
    loader_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step_seconds = _train(data, iterator, train_steps) if train_steps else []
    median = statistics.median(times)
    return {
        "name": "loader_large", "seconds": median, "seconds_min": min(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gflops": None, "windows_per_s": round(256 / median, 1),
        "config": {"preset": preset, "sfreq": sfreq, "hours": round(hours, 2),
                   "recordings": len(data.recordings), "cache_gb": round(sum(
                       r.samples.nbytes for r in data.recordings) / 1e9, 2),
                   "train_windows": len(train), "channels": train.n_channels,
                   "batch_size": 256, "batches": n_batches, "threads": threads,
                   "prepare_seconds": round(prepare_s, 1),
                   "loader_peak_rss_mb": round(loader_rss), "train_steps": train_steps,
                   "train_step_seconds": [round(t, 2) for t in step_seconds]},
    }


def _train(data, batches, n_steps: int) -> list[float]:
    """``n_steps`` lean contrastive steps of the paper-sized encoder on the next batches."""
    import torch
    from train_step import native_bf16

    from braindecode_speech.models import EncoderConfig
    from braindecode_speech.training.losses import ClipLoss
    from braindecode_speech.training.steps import ContrastiveStep

    model = EncoderConfig().build(n_subjects=len(data.subjects), n_outputs=data.n_features)
    loss = ClipLoss()
    optimizer = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=3e-4)
    step = ContrastiveStep(model.train(), loss, optimizer, "lean", 32, native_bf16())
    times = []
    for _ in range(n_steps):
        batch = next(batches)
        start = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - start)
    return times


#: geometry of ``loader_throughput``: MEG channels, 3 s windows every 0.5 s at 120 Hz, the
#: paper's 0.5 s baseline taken 0.15 s before the brain window
THROUGHPUT = {"channels": 208, "n_times": 360, "stride": 60, "baseline": 60, "lag": 18}


def _throughput_cache(folder: Path, gb: float, n_recordings: int, n_features: int) -> \
        list[tuple[Path, Path]]:
    """``(brain [T, 208], features [T, F])`` float32 ``.npy`` files of ``gb`` GB of brain
    samples in all (written once, reused while the sizes match), then read through once so that
    the page cache holds them."""
    import numpy as np
    from numpy.lib.format import open_memmap

    channels = THROUGHPUT["channels"]
    n_rows = int(gb * 1e9 / (n_recordings * channels * 4))
    paths = [(folder / f"brain{r}.npy", folder / f"features{r}.npy") for r in range(n_recordings)]
    stamp = folder / "sizes.json"
    sizes = {"rows": n_rows, "recordings": n_recordings, "features": n_features}
    if not stamp.exists() or json.loads(stamp.read_text()) != sizes:
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        block = 1 << 16
        for brain_path, feature_path in paths:
            for path, width in ((brain_path, channels), (feature_path, n_features)):
                out = open_memmap(path, mode="w+", dtype=np.float32, shape=(n_rows, width))
                for start in range(0, n_rows, block):
                    stop = min(start + block, n_rows)
                    out[start:stop] = rng.random((stop - start, width), dtype=np.float32)
                out.flush()
                del out
        stamp.write_text(json.dumps(sizes))
    for pair in paths:
        for path in pair:
            with open(path, "rb") as f:
                while f.read(1 << 26):
                    pass
    return paths


def _throughput_dataset(paths: list[tuple[Path, Path]], n_features: int,
                        read: str = "pread", kernel: str = "auto", device: str | None = None,
                        store=None):
    """The generated study as a :class:`WindowDataset` with the paper's normalisation,
    read by ``read`` (``data.read``), normalised by ``kernel`` (``data.kernel``), or gathered
    on ``device`` from ``store`` (``data.device``, :meth:`WindowDataset.device_store`)."""
    import numpy as np

    from braindecode_speech.data.batches import DataConfig
    from braindecode_speech.data.cache import RowReader
    from braindecode_speech.data.dataset import FeatureScaler, RobustScaler, Window, WindowDataset

    c = THROUGHPUT
    brains = [RowReader(np.load(b, mmap_mode="r")) for b, _ in paths]
    features = [RowReader(np.load(f, mmap_mode="r")) for _, f in paths]
    rng = np.random.default_rng(1)
    windows = [Window(r, s, r, s, r) for r, reader in enumerate(brains)
               for s in range(c["lag"], len(reader) - c["n_times"], c["stride"])]
    scalers = [RobustScaler(rng.random(c["channels"]), rng.random(c["channels"]) + 0.1)
               for _ in brains]
    return WindowDataset(
        brains, [rng.random((c["channels"], 2), dtype=np.float32) for _ in brains], features,
        windows, scalers, FeatureScaler(rng.random(n_features), rng.random(n_features) + 0.1),
        c["channels"], c["n_times"], c["baseline"], 20.0, -c["lag"],
        data_config=DataConfig(read=read, kernel=kernel, device=device), store=store)


def _throughput_worker(args: argparse.Namespace) -> dict:
    """One path (``args.path``) over ``args.batches`` shuffled batches, after one warm-up."""
    import torch

    from braindecode_speech.data.batches import BatchLoader

    torch.set_num_threads(args.threads)
    paths = [(Path(b), Path(f)) for b, f in json.loads(args.paths)]
    dataset = _throughput_dataset(paths, args.features, args.read, args.kernel)
    start = time.perf_counter()
    if args.read == "mmap":  # once per process, as a training run's first batch does
        for reader in [*dataset.brains, *dataset.features]:
            reader.mapped(0, 0)
    map_seconds = time.perf_counter() - start
    size = args.batch_size
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(dataset), generator=generator).tolist()
    batches = [order[i * size:(i + 1) * size] for i in range(args.batches + 1)]
    if args.path == "per_window":
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches)
    else:
        loader = BatchLoader(dataset, batches, prefetch=args.workers + 1, workers=args.workers)
    times, iterator = [], iter(loader)
    batch = next(iterator)  # warm-up: buffers, first thread start
    assert batch["brain"].shape == (size, THROUGHPUT["channels"], THROUGHPUT["n_times"])
    start = time.perf_counter()
    for _ in iterator:
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
    total = sum(times)
    return {"windows_per_s": round(len(times) * size / total, 1),
            "seconds": statistics.median(times), "seconds_min": min(times),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "windows": len(dataset), "map_seconds": round(map_seconds, 3)}


def memory_bandwidth(threads: int, n_bytes: int = 1 << 30) -> dict[str, float]:
    """GB/s of a large copy (bytes copied per second, best of 5): numpy (one thread) and torch
    (``threads`` threads)."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    src = np.ones(n_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    out = {}
    for name, copy in (("numpy_1_thread", lambda: np.copyto(dst, src)),
                       (f"torch_{threads}_threads",
                        lambda: torch.from_numpy(dst).copy_(torch.from_numpy(src)))):
        copy()
        best = min(_timed(copy) for _ in range(5))
        out[name] = round(n_bytes / best / 1e9, 2)
    return out


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_throughput(threads: int, gb: float = 3.0, n_batches: int = 100, n_recordings: int = 8,
                     n_features: int = 80, workers: int = 2, batch_size: int = 256,
                     bandwidth_bytes: int = 1 << 30) -> dict:
    """``loader_throughput``: shuffled batches of 256 windows from the page-cached generated
    cache, per-window path and ``get_batch`` path (each in a fresh subprocess), beside the
    memory-bandwidth bound measured in the same run."""
    from run import cpu_model

    folder = scratch.folder() / "throughput"
    start = time.perf_counter()
    paths = _throughput_cache(folder, gb, n_recordings, n_features)
    cache_s = time.perf_counter() - start
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    from braindecode_speech.data import kernels

    results = {}
    fused = "numba" if kernels.available() else "numpy"
    # (path, batches timed, data.read, data.kernel); get_batch_mmap is the headline
    measured = [("per_window", max(2, n_batches // 6), "pread", "numpy"),
                ("get_batch", n_batches, "pread", "numpy"),
                ("get_batch_mmap", n_batches, "mmap", fused)]
    if kernels.available():
        measured.insert(2, ("get_batch_numba", n_batches, "pread", "numba"))
    for path, batches, read, kernel in measured:
        done = subprocess.run(
            [sys.executable, __file__, "--throughput-worker", "--path", path,
             "--read", read, "--kernel", kernel,
             "--threads", str(threads), "--batches", str(batches), "--workers", str(workers),
             "--features", str(n_features), "--batch-size", str(batch_size),
             "--paths", json.dumps([[str(b), str(f)] for b, f in paths])],
            env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"loader_throughput worker ({path}) failed:\n"
                               f"{done.stderr[-3000:]}")
        results[path] = {**json.loads(done.stdout.strip().splitlines()[-1]),
                         "setting": f"data.read={read} data.kernel={kernel}"}
    bandwidth = memory_bandwidth(threads, bandwidth_bytes)
    c = THROUGHPUT
    window_bytes = (c["channels"] + n_features) * c["n_times"] * 4
    best_bandwidth = max(bandwidth.values())
    new, old = results["get_batch_mmap"], results["per_window"]
    keys = ("windows_per_s", "seconds", "peak_rss_gb", "map_seconds")
    return {
        "name": "loader_throughput", "seconds": new["seconds"], "seconds_min": new["seconds_min"],
        "peak_rss_mb": new["peak_rss_gb"] * 1024, "gflops": None,
        "windows_per_s": new["windows_per_s"], "peak_rss_gb": new["peak_rss_gb"],
        "setting": new["setting"],
        "per_window": {k: old[k] for k in keys},
        "get_batch": {results[path]["setting"]: {k: results[path][k] for k in keys}
                      for path, *_ in measured if path != "per_window"},
        "speedup": round(new["windows_per_s"] / old["windows_per_s"], 2),
        "bandwidth_gb_s": bandwidth,
        "bound_windows_per_s": round(best_bandwidth * 1e9 / window_bytes),
        "bound_batch_seconds": round(batch_size * window_bytes / (best_bandwidth * 1e9), 4),
        "cpu": cpu_model(),
        "config": {"gb": gb, "recordings": n_recordings, "windows": new["windows"],
                   "batch_size": batch_size, "channels": c["channels"],
                   "n_times": c["n_times"], "features": n_features,
                   "batch_mb": round(batch_size * window_bytes / 1e6, 1),
                   "brain_batch_mb": round(batch_size * c["channels"] * c["n_times"] * 4 / 1e6,
                                           1),
                   "batches": n_batches, "threads": threads, "workers": workers,
                   "cache_seconds": round(cache_s, 1)},
    }


def bench(threads: int, preset: str = "large", n_batches: int = 20, sfreq: float = 200.0,
          train_steps: int = 2) -> dict:
    """Median time to draw one shuffled batch of 256 training windows, then ``train_steps``
    training steps on such batches (fresh subprocess)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    result = subprocess.run(
        [sys.executable, __file__, "--threads", str(threads), "--preset", preset,
         "--batches", str(n_batches), "--sfreq", str(sfreq), "--train-steps", str(train_steps),
         "--worker"],
        env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"loader benchmark worker failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--throughput", action="store_true",
                        help="run loader_throughput instead of loader_large")
    parser.add_argument("--gb", type=float, default=3.0,
                        help="loader_throughput: GB of generated brain samples")
    parser.add_argument("--recordings", type=int, default=8)
    parser.add_argument("--features", type=int, default=80)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--throughput-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--read", default="pread", help=argparse.SUPPRESS)
    parser.add_argument("--kernel", default="numpy", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="large")
    parser.add_argument("--batches", type=int, default=20,
                        help="batches timed (loader_throughput: of the get_batch path; the "
                             "per-window path takes a sixth of them)")
    parser.add_argument("--sfreq", type=float, default=200.0,
                        help="sampling rate of the simulated raw recordings, Hz")
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.throughput_worker:
        print(json.dumps(_throughput_worker(args)))
        return
    if args.throughput:
        print(json.dumps(bench_throughput(args.threads, args.gb, args.batches, args.recordings,
                                          args.features, args.workers, args.batch_size)))
        return
    run = _measure if args.worker else bench
    print(json.dumps(run(args.threads, args.preset, args.batches, args.sfreq, args.train_steps)))


if __name__ == "__main__":
    main()
