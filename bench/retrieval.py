"""Benchmark ``retrieval_10k``: retrieval of 256 decoded windows among 10,000 candidates.

Runs :class:`braindecode_speech.evaluation.retrieval.RetrievalEvaluator` (float32, chunks of 512
candidates) on ``n_windows`` predictions against ``n_candidates`` candidates of shape
[1024, 360] (wav2vec 2.0 dimension × 3 s at 120 Hz), in a fresh subprocess with ``threads``
threads. Reported: median and minimum time of ``--repeats`` evaluations, the worker's peak
resident memory (``ru_maxrss``: everything, set-up included), GFLOP/s of the score products
(``2 N M F T`` flops) and seconds per 1,000 candidates; also the CPU time of each run, the
1-minute load average before and after, and the time of the bare score products on in-memory
data measured after the runs (other processes on the machine slow everything down: the ratio of
``seconds`` to ``products_only_seconds`` is the overhead of streaming and bookkeeping).

Candidates are streamed, never held whole in memory:

- ``--source file`` (default): a ``.npy`` cache opened as a memmap (10,000 × 1024 × 360 float32
  = 14.7 GB), written once under ``--cache-dir`` and reused; its pages are in the page cache after
  the first run (``--cold`` evicts them before each timed run). Remove it with ``--delete-cache``.
- ``--source generated``: the evaluator calls :class:`RolledBankCandidates` chunk by chunk — for
  pools that do not fit on disk (100,000 candidates = 147 GB).

Both sources hold the same values (the cache is written from the generator). Predictions are the
true candidates plus Gaussian noise (so that accuracy is neither 0 nor 100 %); candidate words are
drawn from a Zipf distribution over ``n_candidates // 5`` words.

Run on its own (prints one JSON line)::

    python bench/retrieval.py --threads 2
    python bench/retrieval.py --n-candidates 100000 --n-windows 1000 --source generated --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import scratch  # noqa: E402

NOISE = 0.28  # prediction noise s.d. relative to sqrt(F T), the true candidate's score
SEED = 0


class RolledBankCandidates:
    """Deterministic candidate features computed on demand, ``[stop - start, F, T]`` float32.

    Candidate ``m`` is row ``m % bank_size`` of a fixed standard-normal bank ``[bank_size, F * T]``
    circularly shifted by ``m // bank_size`` positions: distinct for ``m < bank_size * F * T``, and
    costing one memory copy (numpy's: single-threaded, unlike torch's parallel copy, which other
    processes on the machine slow down a lot). The returned array is overwritten by the next call.
    """

    def __init__(self, n_features: int, n_times: int, seed: int = SEED, bank_size: int = 64):
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.shape = (n_features, n_times)
        self.bank = torch.randn(bank_size, n_features * n_times, generator=generator).numpy()
        self._out = np.empty((0, n_features * n_times), dtype=np.float32)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        size = self.bank.shape[1]
        if len(self._out) < stop - start:
            self._out = np.empty((stop - start, size), dtype=np.float32)
        out = self._out[: stop - start]
        for row, m in zip(out, range(start, stop)):
            source, shift = self.bank[m % len(self.bank)], (m // len(self.bank)) % size
            row[: size - shift] = source[shift:]
            row[size - shift:] = source[:shift]
        return out.reshape(stop - start, *self.shape)


def cache_path(cache_dir: Path, shape: tuple[int, int, int]) -> Path:
    return cache_dir / f"candidates_{'x'.join(map(str, shape))}_seed{SEED}.npy"


def ensure_cache(cache_dir: Path, shape: tuple[int, int, int], chunk_size: int = 256) -> Path:
    """Write the ``[M, F, T]`` candidates' ``.npy`` cache (plain writes, atomic) unless present."""
    path = cache_path(cache_dir, shape)
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    n_candidates, n_features, n_times = shape
    needed = n_candidates * n_features * n_times * 4
    if shutil.disk_usage(cache_dir).free < needed * 1.1:
        raise OSError(f"{cache_dir}: {needed / 1e9:.1f} GB needed for the cache, not available; "
                      "use --source generated")
    generate = RolledBankCandidates(n_features, n_times)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            header = {"descr": "<f4", "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(f, header)
            for start in range(0, n_candidates, chunk_size):
                f.write(generate(start, min(start + chunk_size, n_candidates)).data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _measure(args: argparse.Namespace) -> dict:
    """Worker process: build the inputs, then time ``args.repeats`` evaluations."""
    import pandas as pd
    import torch

    from braindecode_speech.evaluation.retrieval import EvaluationConfig, RetrievalEvaluator

    torch.set_num_threads(args.threads)
    shape = (args.n_candidates, args.n_features, args.n_times)
    generate = RolledBankCandidates(args.n_features, args.n_times)
    rng = np.random.default_rng(SEED)
    targets = rng.choice(args.n_candidates, args.n_windows, replace=False)
    zipf = 1 / np.arange(1, max(1, args.n_candidates // 5) + 1)
    words = [f"w{i}" for i in rng.choice(len(zipf), args.n_candidates, p=zipf / zipf.sum())]
    noise = torch.Generator().manual_seed(SEED + 1)
    scale = NOISE * (args.n_features * args.n_times) ** 0.5
    predictions = torch.empty(args.n_windows, args.n_features, args.n_times)
    for i, target in enumerate(targets.tolist()):
        predictions[i] = torch.from_numpy(generate(target, target + 1)[0])
        predictions[i] += scale * torch.randn(shape[1:], generator=noise)
    windows = pd.DataFrame({"subject": np.arange(args.n_windows) % 8})

    if args.source == "file":
        path = cache_path(args.cache_dir, shape)
        candidates = np.load(path, mmap_mode="r")
        generation = 0.0
    else:
        candidates = generate
        n_probe = min(args.n_candidates, 4 * args.chunk_size)
        start = time.perf_counter()
        for first in range(0, n_probe, args.chunk_size):
            generate(first, min(first + args.chunk_size, n_probe))
        generation = (time.perf_counter() - start) / n_probe * 1000
    evaluator = RetrievalEvaluator(EvaluationConfig(chunk_size=args.chunk_size))
    times, cpu_times = [], []
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        if args.cold and args.source == "file":
            _evict_from_page_cache(path)
        cpu_start, start = _cpu_seconds(), time.perf_counter()
        result = evaluator.evaluate(predictions, candidates, targets, words, windows)
        times.append(time.perf_counter() - start)
        cpu_times.append(_cpu_seconds() - cpu_start)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    products = [_product_seconds(predictions, args.n_candidates, args.chunk_size)
                for _ in range(args.repeats)]
    median = statistics.median(times)
    flops = 2 * args.n_windows * args.n_candidates * args.n_features * args.n_times
    return {
        "name": f"retrieval_{args.n_candidates / 1000:g}k",
        "seconds": median,
        "seconds_min": min(times),
        "peak_rss_mb": peak_rss_mb,
        "gflops": flops / median / 1e9,
        "config": {
            "n_windows": args.n_windows,
            "n_candidates": args.n_candidates,
            "shape": [args.n_features, args.n_times],
            "dtype": "float32",
            "chunk_size": args.chunk_size,
            "threads": args.threads,
            "source": args.source,
            "cold_page_cache": bool(args.cold and args.source == "file"),
            "repeats": args.repeats,
            "seconds_all": times,
            "products_only_seconds": statistics.median(products),
            "cpu_seconds_all": cpu_times,
            "load_average_1min": [load_before, os.getloadavg()[0]],
            "seconds_per_1k_candidates": median / args.n_candidates * 1000,
            "generation_seconds_per_1k_candidates": generation,
            "segment_top1": result.metrics["segment"]["top1"],
            "segment_top10": result.metrics["segment"]["top10"],
            "cpu": _cpu_model(),
        },
    }


def _product_seconds(predictions, n_candidates: int, chunk_size: int, n_probe: int = 4) -> float:
    """Time of the bare score products ``[N, D] @ [D, chunk_size]`` for ``n_candidates``
    in-memory candidates, extrapolated from ``n_probe`` chunks: the floor that streaming,
    normalisation and bookkeeping add to, measured right after the runs (same machine load)."""
    import torch

    z = predictions.reshape(len(predictions), -1)
    chunk = torch.ones(min(chunk_size, n_candidates), z.shape[1])
    start = time.perf_counter()
    for _ in range(n_probe):
        z @ chunk.T
    return (time.perf_counter() - start) / n_probe * n_candidates / len(chunk)


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _evict_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _worker_command(args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, __file__, "--worker", "--threads", str(args.threads),
        "--n-candidates", str(args.n_candidates), "--n-windows", str(args.n_windows),
        "--n-features", str(args.n_features), "--n-times", str(args.n_times),
        "--chunk-size", str(args.chunk_size), "--source", args.source,
        "--repeats", str(args.repeats), "--cache-dir", str(args.cache_dir),
        *(["--cold"] if args.cold else []),
    ]


def run(args: argparse.Namespace) -> dict:
    """Prepare the cache here, measure in a fresh subprocess (so that its peak RSS is its own)."""
    if args.source == "file":
        ensure_cache(args.cache_dir, (args.n_candidates, args.n_features, args.n_times),
                     args.chunk_size)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    result = subprocess.run(_worker_command(args), env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"retrieval benchmark worker failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench(threads: int) -> dict:
    """``retrieval_10k``: 256 windows × 10,000 memmapped candidates, median of 3 runs."""
    return run(_parser().parse_args(["--threads", str(threads)]))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-candidates", type=int, default=10_000)
    parser.add_argument("--n-windows", type=int, default=256)
    parser.add_argument("--n-features", type=int, default=1024)
    parser.add_argument("--n-times", type=int, default=360)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--source", choices=["file", "generated"], default="file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold", action="store_true",
                        help="evict the cache file from the page cache before each run")
    parser.add_argument("--cache-dir", type=Path, default=scratch.folder())
    parser.add_argument("--delete-cache", action="store_true",
                        help="delete the candidates cache of this shape and exit")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = _parser().parse_args()
    if args.delete_cache:
        shape = (args.n_candidates, args.n_features, args.n_times)
        cache_path(args.cache_dir, shape).unlink(missing_ok=True)
        return
    print(json.dumps(_measure(args) if args.worker else run(args)))


if __name__ == "__main__":
    main()
