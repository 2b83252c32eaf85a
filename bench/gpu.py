"""Benchmarks on a CUDA GPU: ``gpu_peak``, ``train_step_b256_cuda`` and ``loader_cuda``.

Each is skipped (``{"skipped": "no CUDA device"}``) where torch sees no GPU; CPU figures are in
``train_step.py``, ``loader.py`` and ``gemm_peak.py``.

``gpu_peak``: the GPU's ceilings, measured in the same run as the figures set against them:
a bfloat16 matrix product (``--size``³, random data; the median of 10 products after 3
warm-ups; ``gflops``), the same in float32 with TF32 off and on (``config.fp32_gflops``,
``config.tf32_gflops``: cuDNN's float32 convolutions use TF32 by default, so a float32 step is
set against the TF32 rate) and a device-to-device copy (``copy_gb_s``, bytes read plus bytes
written).

``train_step_b256_cuda``: the paper's batch-256 step (the encoder, batch and FLOP count of
``train_step.py``) on the GPU, one fresh process per setting (:data:`STEP_SETTINGS`); the
headline, ``plain``, is the trainer's defaults on CUDA: one forward and backward of the whole
batch under bfloat16 autocast (``optim.amp``) with cuDNN's algorithm search
(``optim.cudnn_benchmark``). The others change one thing: no algorithm search, ``fast`` and
``lean`` (micro-batches of 32), float32 (TF32 convolutions, cuDNN's default), and
``torch.compile`` (``optim.compile``) with and without the search. ``samples_per_s`` = 256 /
the median step (20 timed steps after 3 warm-ups, which include compiling; ``warmup_s``),
``of_bound`` = the step's FLOPs at ``gpu_peak``'s rate / the median step, ``peak_gpu_gb`` = the
most memory the step allocated. Checked on the GPU, beside the figures: each setting's first
loss against ``plain``'s (``loss_rel_diff``; the same batch and weights, so only rounding
differs, except under ``torch.compile``, whose dropout draws its own random numbers).

``loader_cuda``: ``data.device=cuda``: the generated cache of ``loader_throughput``
(``--gb``, default 2) held on the GPU, shuffled batches of 256 windows gathered there
(``windows_per_s``; ``store_seconds`` to load the study, ``store_gb`` on the GPU); the same
batches from the page-cached memory maps (``data.read=mmap``, pinned buffers, ``--workers``
threads) copied to the GPU (``host_windows_per_s``); and whether the GPU's batches equal the
memory maps' bit for bit (``identical``).

Run on its own: ``python bench/gpu.py [--only train] [--size 8192]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

NO_GPU = {"skipped": "no CUDA device"}
STEP_SETTINGS = {  # name -> (mode, compile, cudnn.benchmark, bf16); compiling ones last
    "plain": ("plain", False, True, True),  # the trainer's defaults on CUDA
    "plain_no_cudnn_benchmark": ("plain", False, False, True),
    "fast": ("fast", False, True, True),
    "lean": ("lean", False, True, True),
    "plain_fp32": ("plain", False, True, False),
    "plain_compile": ("plain", True, True, True),
    "plain_compile_no_cudnn_benchmark": ("plain", True, False, True),
}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"


def _median_ms(fn, repeats: int = 10, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()`` timed with CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bench_peak(threads: int, size: int = 8192, copy_gib: int = 4) -> dict:
    """``gpu_peak``: bf16 and fp32 matrix-product rates and device copy bandwidth."""
    if not cuda_available():
        return {"name": "gpu_peak", **NO_GPU}
    import torch

    gen = torch.Generator(device="cuda").manual_seed(0)
    rates = {}
    for name, dtype, tf32 in (("bf16", torch.bfloat16, False), ("fp32", torch.float32, False),
                              ("tf32", torch.float32, True)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(size, size, device="cuda", generator=gen).to(dtype)
        b = torch.randn(size, size, device="cuda", generator=gen).to(dtype)
        rates[name] = 2 * size**3 / (_median_ms(functools.partial(torch.mm, a, b)) / 1e3) / 1e9
        del a, b
    torch.backends.cuda.matmul.allow_tf32 = False
    src = torch.randn(copy_gib << 28, device="cuda", generator=gen)  # copy_gib GiB of float32
    dst = torch.empty_like(src)
    ms = _median_ms(lambda: dst.copy_(src))
    return {"name": "gpu_peak", "seconds": ms / 1e3, "seconds_min": ms / 1e3,
            "peak_rss_mb": None, "gflops": rates["bf16"],
            "copy_gb_s": round(2 * src.numel() * 4 / (ms / 1e3) / 1e9, 1), "gpu": gpu_name(),
            "config": {"size": size, "dtype": "bfloat16", "bf16_gflops": rates["bf16"],
                       "fp32_gflops": rates["fp32"], "tf32_gflops": rates["tf32"],
                       "copy_gib": copy_gib, "torch": torch.__version__}}


def _step_worker(setting: str, batch_size: int, repeats: int, warmup: int,
                 device: str = "cuda") -> dict:
    """One setting of ``train_step_b256_cuda``, in this (fresh) process (``device``: ``cpu``
    to try the code path without a GPU)."""
    import torch
    from train_step import N_FEATURES, N_SUBJECTS, step_flops, synthetic_batch

    from braindecode_speech.models import EncoderConfig
    from braindecode_speech.training.losses import ClipLoss
    from braindecode_speech.training.steps import ContrastiveStep

    mode, compile, benchmark, bf16 = STEP_SETTINGS[setting]
    torch.backends.cudnn.benchmark = benchmark
    torch.manual_seed(0)
    model = EncoderConfig().build(n_subjects=N_SUBJECTS, n_outputs=N_FEATURES).train()
    flops = step_flops(model, batch_size)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    step = ContrastiveStep(model, ClipLoss().to(device), optimizer, mode, 32, bf16,
                           compile=compile)
    keys = ("brain", "subject", "positions", "mask", "speech")
    batch = {k: v.to(device) for k, v in zip(keys, synthetic_batch(batch_size, seed=1))}
    cuda = device.startswith("cuda")
    start = time.perf_counter()
    losses = [step(batch) for _ in range(warmup)]  # float(loss): synchronises
    warmup_s = time.perf_counter() - start
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"seconds": median, "seconds_min": min(times), "warmup_s": round(warmup_s, 1),
            "samples_per_s": round(batch_size / median, 1), "first_loss": losses[0],
            "gflops": flops / median / 1e9, "flops_per_step": flops,
            "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if cuda else None}


def bench_train_step(threads: int, batch_size: int = 256, repeats: int = 20, warmup: int = 3,
                     settings: tuple[str, ...] = tuple(STEP_SETTINGS)) -> dict:
    """``train_step_b256_cuda``: every setting of :data:`STEP_SETTINGS` in a fresh process;
    the headline is ``plain`` (eager, bf16 autocast: the trainer's default on CUDA)."""
    if not cuda_available():
        return {"name": "train_step_b256_cuda", **NO_GPU}
    results = {}
    for s in settings:  # each printed as it comes (compiling takes minutes)
        results[s] = _subprocess(["--step", s, "--batch-size", str(batch_size),
                                  "--repeats", str(repeats), "--warmup", str(warmup)], threads)
        print(f"# train_step_b256_cuda {s}: {json.dumps(results[s])[:600]}", file=sys.stderr,
              flush=True)
    reference = results["plain"]
    for r in results.values():
        if "first_loss" in r:
            r["loss_rel_diff"] = abs(r["first_loss"] - reference["first_loss"]) / abs(
                reference["first_loss"])
    return {"name": "train_step_b256_cuda", "seconds": reference["seconds"],
            "seconds_min": reference["seconds_min"], "peak_rss_mb": None,
            "gflops": reference["gflops"], "samples_per_s": reference["samples_per_s"],
            "gpu": gpu_name(), "settings": results,
            "config": {"batch_size": batch_size, "mode": "plain", "bf16": True,
                       "repeats": repeats, "warmup": warmup,
                       "flops_per_step": reference["flops_per_step"],
                       "settings": {s: dict(zip(("mode", "compile", "cudnn_benchmark", "bf16"),
                                                STEP_SETTINGS[s])) for s in settings}}}


def _loader_worker(path: str, paths: list[tuple[Path, Path]], n_features: int, batches: int,
                   workers: int, batch_size: int, device: str = "cuda") -> dict:
    """``device_store`` (data.device=cuda) or ``host_mmap`` (memory maps, pinned buffers,
    copied to the GPU), in this (fresh) process; the store path also compares its batches with
    the memory maps' (``device``: ``cpu`` to try the code path without a GPU)."""
    import torch
    from loader import _throughput_dataset

    from braindecode_speech.data.batches import BatchLoader

    dataset = _throughput_dataset(paths, n_features, "mmap", "auto")
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(dataset), generator=generator).tolist()
    plan = [order[i * batch_size:(i + 1) * batch_size] for i in range(batches + 1)]
    out: dict = {}
    cuda = device.startswith("cuda")
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)
    if path == "device_store":
        start = time.perf_counter()
        store = type(dataset).device_store(dataset.brains, dataset.features, dataset.scalers,
                                           dataset.feature_scaler, dataset.n_channels, device)
        synchronize()
        out["store_seconds"] = round(time.perf_counter() - start, 2)
        out["store_gb"] = round(torch.cuda.memory_allocated() / 1e9, 2) if cuda else None
        on_gpu = _throughput_dataset(paths, n_features, "mmap", "auto", device, store)
        host = dataset.get_batch(plan[0])
        gpu = on_gpu.get_batch(plan[0])
        differ = [k for k in host if not torch.equal(host[k], gpu[k].cpu())]
        out["identical"] = not differ
        if differ:  # the largest difference of each key that differs
            out["differences"] = {k: float((host[k].double() - gpu[k].cpu().double())
                                           .abs().max()) for k in differ}
        loader = BatchLoader.for_dataset(on_gpu, plan)
    else:
        for reader in [*dataset.brains, *dataset.features]:
            reader.mapped(0, 0)
        loader = BatchLoader(dataset, plan, prefetch=workers + 1, workers=workers,
                             pin_memory=cuda)
    iterator = iter(loader)
    next(iterator)
    times = []
    start = time.perf_counter()
    for batch in iterator:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        synchronize()
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
    return {**out, "windows_per_s": round(len(times) * batch_size / sum(times), 1),
            "seconds": statistics.median(times), "seconds_min": min(times)}


def bench_loader(threads: int, gb: float = 2.0, n_batches: int = 200, n_recordings: int = 8,
                 n_features: int = 80, workers: int = 4, batch_size: int = 256) -> dict:
    """``loader_cuda``: batches gathered on the GPU (data.device=cuda) and, for comparison,
    from the memory maps with pinned buffers copied to it."""
    if not cuda_available():
        return {"name": "loader_cuda", **NO_GPU}
    import scratch
    from loader import THROUGHPUT, _throughput_cache

    paths = _throughput_cache(scratch.folder() / "throughput", gb, n_recordings, n_features)
    common = ["--paths", json.dumps([[str(b), str(f)] for b, f in paths]),
              "--features", str(n_features), "--batches", str(n_batches),
              "--workers", str(workers), "--batch-size", str(batch_size)]
    store = _subprocess(["--loader", "device_store", *common], threads)
    host = _subprocess(["--loader", "host_mmap", *common], threads)
    if "error" in store or "error" in host:
        raise RuntimeError(f"loader_cuda worker failed: {store.get('stderr_tail', '')}"
                           f"{host.get('stderr_tail', '')}")
    window_bytes = (THROUGHPUT["channels"] + n_features) * THROUGHPUT["n_times"] * 4
    return {"name": "loader_cuda", "seconds": store["seconds"],
            "seconds_min": store["seconds_min"], "peak_rss_mb": None, "gflops": None,
            "windows_per_s": store["windows_per_s"], "identical": store["identical"],
            **({"differences": store["differences"]} if "differences" in store else {}),
            "store_seconds": store["store_seconds"], "store_gb": store["store_gb"],
            "host_windows_per_s": host["windows_per_s"], "gpu": gpu_name(),
            "config": {"gb": gb, "batches": n_batches, "batch_size": batch_size,
                       "features": n_features, "workers": workers, "threads": threads,
                       "batch_mb": round(batch_size * window_bytes / 1e6, 1)}}


def _subprocess(arguments: list[str], threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, "--worker", *arguments], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else
                f"exit {done.returncode}", "stderr_tail": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--step", choices=sorted(STEP_SETTINGS), help=argparse.SUPPRESS)
    parser.add_argument("--loader", choices=("device_store", "host_mmap"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=("peak", "train", "loader"))
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--features", type=int, default=80)
    parser.add_argument("--gb", type=float, default=2.0)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    if args.worker and args.step:
        result = _step_worker(args.step, args.batch_size, args.repeats, args.warmup,
                              args.device)
    elif args.worker:
        paths = [(Path(b), Path(f)) for b, f in json.loads(args.paths)]
        result = _loader_worker(args.loader, paths, args.features, args.batches,
                                args.workers, args.batch_size, args.device)
    else:
        runs = {"peak": lambda: bench_peak(args.threads, args.size),
                "train": lambda: bench_train_step(args.threads, args.batch_size, args.repeats,
                                                  args.warmup),
                "loader": lambda: bench_loader(args.threads, args.gb, args.batches,
                                               workers=args.workers)}
        result = [run() for name, run in runs.items() if args.only in (None, name)]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
