"""Benchmark ``loader_large``: data-loader throughput and memory on the ``large`` simulated study.

Simulates the ``large`` preset (once; cached under ``$BRAINDECODE_SPEECH_BENCH`` or
``/tmp/braindecode_speech_bench``), prepares it with the paper's data pipeline (preprocessing and
mel features cached as memory maps), then draws shuffled training batches of 256 windows as the
trainer does and reports windows per second and the peak resident memory of the whole process.
Compare the throughput with ``train_step_b256`` (the loader must be ≥ 5× faster than training).

Run on its own: ``python bench/loader.py --threads 2 [--preset large] [--batches 20]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _folder() -> Path:
    default = Path(tempfile.gettempdir()) / "braindecode_speech_bench"
    return Path(os.environ.get("BRAINDECODE_SPEECH_BENCH", default))


def _measure(threads: int, preset: str, n_batches: int) -> dict:
    import torch

    from braindecode_speech.experiment import prepare_data
    from braindecode_speech.presets import demo_config
    from braindecode_speech.simulation import SimulationConfig, simulate

    torch.set_num_threads(threads)
    folder = _folder()
    root = simulate(SimulationConfig.preset(preset, seed=0), folder / f"study-{preset}")
    config = demo_config(root, cache_dir=folder / "cache").with_overrides(
        {"optim.batch_size": 256, "optim.progress": False})
    start = time.perf_counter()
    data = prepare_data(config)
    prepare_s = time.perf_counter() - start
    train = data.datasets["train"]
    hours = sum(r.duration for r in data.recordings) / 3600
    generator = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(train, batch_size=256, shuffle=True,
                                         generator=generator, drop_last=True)
    times = []
    iterator = iter(loader)
    for _ in range(n_batches):
        t = time.perf_counter()
        batch = next(iterator)
        times.append(time.perf_counter() - t)
    assert batch["brain"].shape[0] == 256
    median = statistics.median(times)
    return {
        "name": "loader_large", "seconds": median, "seconds_min": min(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gflops": None, "windows_per_s": round(256 / median, 1),
        "config": {"preset": preset, "hours": round(hours, 2), "recordings": len(data.recordings),
                   "train_windows": len(train), "channels": train.n_channels,
                   "batch_size": 256, "batches": n_batches, "threads": threads,
                   "prepare_seconds": round(prepare_s, 1)},
    }


def bench(threads: int, preset: str = "large", n_batches: int = 20) -> dict:
    """Median time to draw one shuffled batch of 256 training windows (fresh subprocess)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    result = subprocess.run(
        [sys.executable, __file__, "--threads", str(threads), "--preset", preset,
         "--batches", str(n_batches), "--worker"],
        env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="large")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    run = _measure if args.worker else bench
    print(json.dumps(run(args.threads, args.preset, args.batches)))


if __name__ == "__main__":
    main()
