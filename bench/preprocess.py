"""Benchmark ``preprocess_10min``: preprocessing of 10 min of 208-channel MEG at 1000 Hz.

Writes a 10-minute KIT-208 recording (simulated sensor geometry, random data) to FIF once, then
times :func:`braindecode_speech.data.preprocessing.preprocess` into a fresh cache (read, pick, resample
to 120 Hz, write the memory map) in a fresh subprocess. The reference figure is 0.55 s per recorded
minute (MNE: resample to 120 Hz then filter, on this machine kind).

Run on its own: ``python bench/preprocess.py --threads 2``.
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

sys.path.insert(0, str(Path(__file__).parent))
import scratch  # noqa: E402

MINUTES = 10
SFREQ = 1000.0
REPEATS = 3


def _recording(folder: Path):
    import mne
    import numpy as np
    import pandas as pd

    from braindecode_speech.data.study import Recording
    from braindecode_speech.simulation.sensors import make_info

    path = folder / "bench_meg.fif"
    if not path.exists():
        info = make_info("KIT-208", SFREQ)
        n = int(MINUTES * 60 * SFREQ)
        data = np.random.default_rng(0).standard_normal((len(info.ch_names), n),
                                                        dtype=np.float32) * 1e-13
        mne.io.RawArray(data, info, verbose=False).save(path, verbose=False)
    events = pd.DataFrame({"onset": [0.0], "duration": [0.0], "kind": ["block"]})
    return Recording("bench", "01", None, None, None, path,
                     load_raw=lambda: mne.io.read_raw_fif(path, verbose=False),
                     load_events=lambda: events)


def _measure(threads: int, folder: Path) -> dict:
    import torch

    from braindecode_speech.data.preprocessing import PreprocessConfig, preprocess

    torch.set_num_threads(threads)
    recording = _recording(folder)
    times = []
    for _ in range(REPEATS):
        with tempfile.TemporaryDirectory(dir=folder) as cache:
            start = time.perf_counter()
            out = preprocess(recording, PreprocessConfig(), cache)
            times.append(time.perf_counter() - start)
            assert out.samples.shape == (MINUTES * 60 * 120, 208)
            del out
    median = statistics.median(times)
    return {
        "name": "preprocess_10min", "seconds": median, "seconds_min": min(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gflops": None, "seconds_per_minute": round(median / MINUTES, 4),
        "config": {"minutes": MINUTES, "channels": 208, "sfreq_in": SFREQ, "sfreq_out": 120.0,
                   "threads": threads, "reference_s_per_min": 0.55},
    }


def bench(threads: int) -> dict:
    """Median time of preprocessing 10 min of 208-channel MEG (fresh subprocess)."""
    folder = scratch.folder()
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    result = subprocess.run(
        [sys.executable, __file__, "--threads", str(threads), "--worker", str(folder)],
        env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    result = _measure(args.threads, Path(args.worker)) if args.worker else bench(args.threads)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
