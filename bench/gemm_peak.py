"""Benchmark ``gemm_peak``: the machine's fp32 matrix-multiply throughput (GFLOP/s).

Times ``torch.mm`` of two square fp32 matrices of side ``size`` (default 4096) in a fresh
subprocess using ``threads`` threads; the GFLOP/s of the fastest run (the peak; the median run's rate is in
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


def _time_products(dtype, size: int) -> list[float]:
    """Seconds of ``REPEATS`` products of two ``size``² matrices of ``dtype`` (after a warm-up)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    torch.mm(a, b)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return times


def _measure(threads: int, size: int = SIZE, bf16: bool = True) -> dict:
    """Run in the worker process: float32 products (the result), then, with ``bf16``, bfloat16
    ones (for reference, in ``config``; a CPU without native bf16 takes minutes for them)."""
    import torch

    torch.set_num_threads(threads)
    times = _time_products(torch.float32, size)
    median = statistics.median(times)
    flops = 2 * size**3
    bf16_gflops = flops / min(_time_products(torch.bfloat16, size)) / 1e9 if bf16 else None
    return {
        "name": "gemm_peak",
        "seconds": median,
        "seconds_min": min(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gflops": flops / min(times) / 1e9,
        "config": {"size": size, "dtype": "float32", "repeats": REPEATS, "threads": threads,
                   "median_gflops": flops / median / 1e9, "bf16_gflops": bf16_gflops},
    }


def bench(threads: int, size: int = SIZE, bf16: bool = True) -> dict:
    """fp32 GEMM time (median) and peak GFLOP/s with ``threads`` threads (fresh subprocess);
    ``size`` is the matrix side, ``bf16`` adds the bfloat16 rate."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, __file__, "--threads", str(threads), "--size", str(size),
               "--worker"] + ([] if bf16 else ["--no-bf16"])
    result = subprocess.run(
        command,
        env=env, capture_output=True, text=True, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=SIZE, help="matrix side")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false",
                        help="skip the bfloat16 products")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    run = _measure if args.worker else bench
    print(json.dumps(run(args.threads, args.size, args.bf16)))


if __name__ == "__main__":
    main()
