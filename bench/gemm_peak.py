"""Benchmark ``gemm_peak``: the machine's fp32 matrix-multiply throughput (GFLOP/s).

Times ``torch.mm`` of two square fp32 matrices of side 4096 in a fresh subprocess using
``threads`` threads; the GFLOP/s of the fastest run (the peak; the median run's rate is in
``config.median_gflops``) is the reference against which the encoder's training step efficiency
is expressed (see ``bench/train_step.py``). Side 4096 is the fastest of 1024/2048/4096 here. The bfloat16 rate of the same
product is reported too (``config.bf16_gflops``), for steps run under bfloat16 autocast.

Run on its own: ``python bench/gemm_peak.py --threads 2``.
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

SIZE = 4096  # matrix side: large enough for peak throughput, ~0.5 s per product on 2 cores
REPEATS = 6


def _time_products(dtype) -> list[float]:
    """Seconds of ``REPEATS`` products of two ``SIZE``² matrices of ``dtype`` (after a warm-up)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(SIZE, SIZE, generator=generator).to(dtype)
    b = torch.randn(SIZE, SIZE, generator=generator).to(dtype)
    torch.mm(a, b)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return times


def _measure(threads: int) -> dict:
    """Run in the worker process: float32 products (the result), then bfloat16 ones (for
    reference, in ``config``)."""
    import torch

    torch.set_num_threads(threads)
    times = _time_products(torch.float32)
    median = statistics.median(times)
    bf16_best = min(_time_products(torch.bfloat16))
    return {
        "name": "gemm_peak",
        "seconds": median,
        "seconds_min": min(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gflops": 2 * SIZE**3 / min(times) / 1e9,
        "config": {"size": SIZE, "dtype": "float32", "repeats": REPEATS, "threads": threads,
                   "median_gflops": 2 * SIZE**3 / median / 1e9,
                   "bf16_gflops": 2 * SIZE**3 / bf16_best / 1e9},
    }


def bench(threads: int) -> dict:
    """fp32 GEMM time (median) and peak GFLOP/s with ``threads`` threads (fresh subprocess)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    result = subprocess.run(
        [sys.executable, __file__, "--threads", str(threads), "--worker"],
        env=env, capture_output=True, text=True, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    print(json.dumps(_measure(args.threads) if args.worker else bench(args.threads)))


if __name__ == "__main__":
    main()
