"""Benchmark ``loader_large``: data-loader throughput and memory on the ``large`` simulated study.

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


def _measure(threads: int, preset: str, n_batches: int, sfreq: float, train_steps: int) -> dict:
    import torch

    from braindecode_speech.experiments import prepare_data
    from braindecode_speech.experiments.presets import demo_config
    from braindecode_speech.simulation import SimulationConfig, simulate

    torch.set_num_threads(threads)
    folder = _folder()
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
    loader = torch.utils.data.DataLoader(train, batch_size=256, shuffle=True,
                                         generator=generator, drop_last=True)
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

    from braindecode_speech.models import EncoderConfig
    from braindecode_speech.training.losses import ClipLoss
    from braindecode_speech.training.steps import ContrastiveStep

    sys.path.insert(0, str(Path(__file__).parent))
    from train_step import native_bf16

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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="large")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--sfreq", type=float, default=200.0,
                        help="sampling rate of the simulated raw recordings, Hz")
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    run = _measure if args.worker else bench
    print(json.dumps(run(args.threads, args.preset, args.batches, args.sfreq, args.train_steps)))


if __name__ == "__main__":
    main()
