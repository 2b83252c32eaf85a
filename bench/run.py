"""Run the benchmarks and print one line each.

    python bench/run.py [--only NAME ...] [--skip NAME ...] [--json FILE] [--threads N]
                        [--n-windows N]
    python bench/run.py --clean     # delete the data the benchmarks generated (bench/scratch.py)

Each benchmark lives in ``bench/<module>.py`` as a function ``(threads, **options) -> dict``
returning ``{"name", "seconds" (median), "seconds_min", "peak_rss_mb", "gflops", "config"}``;
peak memory is measured in a fresh subprocess so figures do not depend on what ran before.
Training steps measured after ``gemm_peak`` in the same run also get ``bound_s`` (their flops
at the GEMM peak of their dtype) and ``of_bound`` (bound / measured, 1 = at the peak).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

#: benchmark name -> (module in bench/, function[, keyword arguments]); gemm_peak first, so that
#: the figures after it can be set against the machine's GEMM bound measured in the same run
BENCHMARKS = {
    "gemm_peak": ("gemm_peak", "bench"),
    "train_step_b32": ("train_step", "bench_b32"),
    "train_step_b32_fp32_plain": ("train_step", "bench_b32", {"mode": "plain", "bf16": False}),
    "train_step_b32_fp32_fast": ("train_step", "bench_b32", {"mode": "fast", "bf16": False}),
    "train_step_b256": ("train_step", "bench_b256"),
    "train_step_b256_fp32_plain": ("train_step", "bench_b256", {"mode": "plain", "bf16": False}),
    "train_step_b256_fp32_fast": ("train_step", "bench_b256", {"mode": "fast", "bf16": False}),
    "train_step_b256_fp32_lean": ("train_step", "bench_b256", {"mode": "lean", "bf16": False}),
    "train_step_b256_bf16_lean": ("train_step", "bench_b256", {"mode": "lean", "bf16": True}),
    # the same steps with glibc's default malloc settings (what fit's kept heap saves)
    "train_step_b256_system_heap": ("train_step", "bench_b256", {"heap": "system"}),
    "train_step_b256_fp32_fast_system_heap": ("train_step", "bench_b256",
                                              {"mode": "fast", "bf16": False, "heap": "system"}),
    "retrieval_10k": ("retrieval", "bench"),
    "eval_paper_scale": ("eval_paper_scale", "bench"),
    "wav2vec2_60s": ("wav2vec2", "bench"),
    "preprocess_10min": ("preprocess", "bench"),
    "loader_large": ("loader", "bench"),
    "loader_throughput": ("loader", "bench_throughput"),
    "stream_latency": ("stream_latency", "bench"),
    # on a CUDA GPU (skipped, and said so, where there is none); gpu_peak first, for the bound
    "gpu_peak": ("gpu", "bench_peak"),
    "train_step_b256_cuda": ("gpu", "bench_train_step"),
    "loader_cuda": ("gpu", "bench_loader"),
}


def gemm_bound(result: dict, peak: dict) -> dict:
    """``bound_s`` (the step's flops at the GEMM peak of its dtype, from ``gemm_peak``'s
    ``result``) and ``of_bound`` (that bound over the measured median, 1 = at the peak) for a
    result whose config gives ``flops_per_step``; empty otherwise."""
    flops = result.get("config", {}).get("flops_per_step")
    if not flops:
        return {}
    bf16 = bool(result["config"].get("bf16"))
    gflops = peak["config"]["bf16_gflops"] if bf16 else peak["gflops"]
    if not gflops:
        return {}
    bound = flops / (gflops * 1e9)
    return {"bound_s": round(bound, 3), "of_bound": round(bound / result["seconds"], 3),
            "bound_dtype": "bf16" if bf16 else "fp32"}


def gpu_bound(result: dict, peak: dict) -> dict:
    """Like :func:`gemm_bound` for a CUDA training step against ``gpu_peak``'s ``peak``: the
    headline's ``bound_s``/``of_bound`` (bf16) and ``of_bound`` in each of its ``settings``
    (bf16 settings at the bf16 rate, float32 ones at the TF32 rate, cuDNN's default for
    float32 convolutions)."""
    config = result.get("config", {})
    flops = config.get("flops_per_step")
    if not flops:
        return {}
    rates = {True: peak["config"]["bf16_gflops"] * 1e9, False: peak["config"]["tf32_gflops"] * 1e9}
    for name, setting in result.get("settings", {}).items():
        if "seconds" in setting:
            bound = flops / rates[bool(config["settings"][name]["bf16"])]
            setting["of_bound"] = round(bound / setting["seconds"], 3)
    bound = flops / rates[True]
    return {"bound_s": round(bound, 5), "of_bound": round(bound / result["seconds"], 3),
            "bound_dtype": "bf16"}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


#: the CPU flags that decide which GEMM kernels torch can use (fp32 AVX-512, bf16, AMX tiles)
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def machine() -> dict:
    """The CPU model, its kernel-relevant flags and the torch version, stored with every figure:
    figures from CPUs with different flags do not compare."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    import torch

    host = {"cpu": cpu_model(), "flags": [f for f in KERNEL_FLAGS if f in flags],
            "torch": torch.__version__}
    if torch.cuda.is_available():
        host["gpu"] = torch.cuda.get_device_name()
    return host


def format_line(result: dict) -> str:
    parts = [f"{result['name']:<18}", f"{result['seconds']:9.3f} s (min {result['seconds_min']:.3f})"]
    if result.get("peak_rss_mb") is not None:
        parts.append(f"peak RSS {result['peak_rss_mb']:8.0f} MB")
    if result.get("gflops") is not None:
        parts.append(f"{result['gflops']:8.1f} GFLOP/s")
    extra = {k: v for k, v in result.items()
             if k not in ("name", "seconds", "seconds_min", "peak_rss_mb", "gflops", "config",
                          "machine")}
    if extra:
        parts.append(" ".join(f"{k}={v}" for k, v in extra.items()))
    return "  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only these benchmarks ({', '.join(BENCHMARKS)})")
    parser.add_argument("--skip", nargs="+", choices=sorted(BENCHMARKS), default=[],
                        metavar="NAME", help="run every benchmark but these")
    parser.add_argument("--json", help="write the result(s) to this JSON file")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--n-windows", type=int,
                        help="test windows of the benchmarks that take them (eval_paper_scale: "
                             "default 80,000)")
    parser.add_argument("--clean", action="store_true",
                        help="delete the benchmarks' generated data (studies, caches) and exit")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    import scratch

    if args.clean:
        folder = scratch.folder()
        size = scratch.size_bytes(folder)
        shutil.rmtree(folder, ignore_errors=True)
        print(f"deleted {folder} ({size / 1e9:.1f} GB)")
        return 0
    names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]
    host = machine()
    header = f"{host['cpu']} [{' '.join(host['flags']) or 'no AVX flags'}], torch {host['torch']}"
    print(f"# {header}, {args.threads} threads" + (f", GPU {host['gpu']}" if "gpu" in host
                                                        else ""))
    results = []
    peak = gpu = None
    for name in names:
        module, function, *kwargs = BENCHMARKS[name]
        run = getattr(importlib.import_module(module), function)
        options = dict(kwargs[0]) if kwargs else {}
        if args.n_windows is not None and "n_windows" in inspect.signature(run).parameters:
            options["n_windows"] = args.n_windows
        result = run(args.threads, **options)
        result["name"] = name
        result["machine"] = {**host, "threads": args.threads}
        results.append(result)
        if "skipped" in result:
            print(f"{name:<18} skipped: {result['skipped']}", flush=True)
            continue
        if name == "gemm_peak":
            peak = result
        elif name == "gpu_peak":
            gpu = result
        elif name.endswith("_cuda") and gpu is not None:
            result.update(gpu_bound(result, gpu))
        elif peak is not None:
            result.update(gemm_bound(result, peak))
        on_gpu = name.endswith(("_cuda", "gpu_peak"))
        device = f"GPU {host.get('gpu', 'unknown')}" if on_gpu else host["cpu"]
        print(f"{format_line(result)}  [{device}]", flush=True)
    folder = scratch.folder()
    if folder.exists():
        print(f"# generated data kept for the next run: {folder}, "
              f"{scratch.size_bytes(folder) / 1e9:.1f} GB (delete: python bench/run.py --clean)")
    if args.json:
        Path(args.json).write_text(json.dumps(results[0] if len(results) == 1 else results,
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
