"""Benchmark ``eval_paper_scale``: retrieval evaluation at MEG-MASC scale without writing
predictions.

``n_windows`` (default 80,000: ~1,600 test segments heard by 27 subjects in 2 sessions)
predictions of shape [1024, 360] (wav2vec 2.0 dimension × 3 s at 120 Hz) are generated on the
fly, ``--batch-size`` windows at a time (no model forward is timed), and scored by
:meth:`braindecode_speech.evaluation.retrieval.RetrievalEvaluator.evaluate_batches` against 1,600
candidates held in memory (2.4 GB float32), with the controls on (54 recordings of 27 subjects).
Run in a fresh subprocess with ``threads`` threads. Reported:

- ``seconds``: wall time of the evaluation, the generation of the predictions excluded (it is
  measured inside the generator and reported as ``config.generation_seconds``);
- ``peak_rss_gb``: the worker's peak resident memory (``ru_maxrss``; set-up included);
- ``bytes_written``: bytes the worker sent to storage during the evaluation
  (``/proc/self/io`` ``write_bytes``; ``config.wchar`` counts every ``write()``);
- ``gemm_bound_s``: ``2 N M F T`` flops at the fp32 GEMM peak measured right before
  (``bench/gemm_peak.py``), the time the score products cannot beat; ``config.bound_ratio`` is
  ``seconds / gemm_bound_s``.

A prediction is its true candidate plus Gaussian noise (a fixed bank of 16 noise rows added to
each block of 16 windows), so that accuracy is neither 0 nor 100 %. Candidates are the
deterministic features of ``bench/retrieval.py``; words are drawn from a Zipf distribution over
``n_candidates // 3`` words.

Run on its own (prints one JSON line)::

    python bench/eval_paper_scale.py --threads 2 --n-windows 8000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from retrieval import NOISE, SEED, RolledBankCandidates  # noqa: E402

N_SUBJECTS = 27
N_SESSIONS = 2
NOISE_ROWS = 16


def _io_counters() -> dict[str, int]:
    """``/proc/self/io`` of this process (Linux; empty elsewhere)."""
    path = Path("/proc/self/io")
    if not path.exists():
        return {}
    return {key: int(value) for key, value in
            (line.split(": ") for line in path.read_text().splitlines())}


def _measure(args: argparse.Namespace) -> dict:
    """Worker process: build the candidates, then evaluate the generated predictions once."""
    import pandas as pd
    import torch

    from braindecode_speech.evaluation.retrieval import EvaluationConfig, RetrievalEvaluator

    torch.set_num_threads(args.threads)
    shape = (args.n_features, args.n_times)
    generate = RolledBankCandidates(*shape)
    candidates = np.empty((args.n_candidates, *shape), dtype=np.float32)
    for start in range(0, args.n_candidates, 64):  # the generator's buffer: 64 rows
        stop = min(start + 64, args.n_candidates)
        candidates[start:stop] = generate(start, stop)
    del generate
    rng = np.random.default_rng(SEED)
    targets = rng.integers(0, args.n_candidates, args.n_windows)
    zipf = 1 / np.arange(1, max(1, args.n_candidates // 3) + 1)
    words = [f"w{i}" for i in rng.choice(len(zipf), args.n_candidates, p=zipf / zipf.sum())]
    recording = np.arange(args.n_windows) * N_SUBJECTS * N_SESSIONS // args.n_windows
    windows = pd.DataFrame({"subject": recording // N_SESSIONS,
                            "recording_uid": [f"rec{r}" for r in recording]})
    scale = NOISE * (args.n_features * args.n_times) ** 0.5
    noise = (scale * torch.randn(NOISE_ROWS, args.n_features * args.n_times,
                                 generator=torch.Generator().manual_seed(SEED + 1))).numpy()
    generation = [0.0]

    def predictions():
        for start in range(0, args.n_windows, args.batch_size):
            begin = time.perf_counter()
            batch = candidates[targets[start:start + args.batch_size]]  # [n, F, T], a copy
            rows = batch.reshape(len(batch), -1)
            for first in range(0, len(rows), NOISE_ROWS):
                block = rows[first:first + NOISE_ROWS]
                block += noise[:len(block)]
            generation[0] += time.perf_counter() - begin
            yield batch
            del batch, rows, block  # one batch alive at a time

    evaluator = RetrievalEvaluator(EvaluationConfig(chunk_size=args.chunk_size))
    io_before = _io_counters()
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = evaluator.evaluate_batches(predictions(), candidates, targets, words, windows)
    seconds = time.perf_counter() - start - generation[0]
    io_after = _io_counters()
    flops = 2 * args.n_windows * args.n_candidates * args.n_features * args.n_times
    return {
        "name": "eval_paper_scale",
        "seconds": seconds,
        "seconds_min": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gflops": flops / seconds / 1e9,
        "bytes_written": io_after.get("write_bytes", 0) - io_before.get("write_bytes", 0),
        "config": {
            "n_windows": args.n_windows,
            "n_candidates": args.n_candidates,
            "shape": list(shape),
            "batch_size": args.batch_size,
            "chunk_size": args.chunk_size,
            "threads": args.threads,
            "flops": flops,
            "generation_seconds": generation[0],
            "wchar": io_after.get("wchar", 0) - io_before.get("wchar", 0),
            "load_average_1min": [load_before, os.getloadavg()[0]],
            "segment_top1": result.metrics["segment"]["top1"],
            "segment_top10": result.metrics["segment"]["top10"],
            "within_recording_top10": result.controls["within_recording"]["accuracy"]["top10"],
        },
    }


def run(args: argparse.Namespace) -> dict:
    """Measure the GEMM peak, then the evaluation in a fresh subprocess (its own peak RSS)."""
    from gemm_peak import bench as gemm_peak

    peak = gemm_peak(args.threads, size=args.gemm_size, bf16=False)["gflops"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    command = [sys.executable, __file__, "--worker", "--threads", str(args.threads),
               "--n-windows", str(args.n_windows), "--n-candidates", str(args.n_candidates),
               "--n-features", str(args.n_features), "--n-times", str(args.n_times),
               "--batch-size", str(args.batch_size), "--chunk-size", str(args.chunk_size)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"eval_paper_scale worker failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    bound = result["config"]["flops"] / (peak * 1e9)
    result["peak_rss_gb"] = result["peak_rss_mb"] / 1024
    result["gemm_bound_s"] = bound
    result["config"]["gemm_peak_gflops"] = peak
    result["config"]["bound_ratio"] = result["seconds"] / bound
    return result


def bench(threads: int, n_windows: int | None = None) -> dict:
    """``eval_paper_scale``: 80,000 windows (or ``n_windows``) × 1,600 in-memory candidates."""
    argv = ["--threads", str(threads)]
    if n_windows is not None:
        argv += ["--n-windows", str(n_windows)]
    return run(_parser().parse_args(argv))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-windows", type=int, default=80_000)
    parser.add_argument("--n-candidates", type=int, default=1_600)
    parser.add_argument("--n-features", type=int, default=1024)
    parser.add_argument("--n-times", type=int, default=360)
    parser.add_argument("--batch-size", type=int, default=256,
                        help="windows per batch of predictions (the model's test batch)")
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--gemm-size", type=int, default=4096,
                        help="side of the square GEMM timed for the bound (bench/gemm_peak.py)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = _parser().parse_args()
    if args.n_windows < 1:
        raise SystemExit("--n-windows must be at least 1")
    print(json.dumps(_measure(args) if args.worker else run(args)))


if __name__ == "__main__":
    main()
