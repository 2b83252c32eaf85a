"""Benchmarks ``train_step_b32`` and ``train_step_b256``: one contrastive training step.

The step is the paper's: encoder with the paper configuration (208 sensors of one layout,
27 subjects, 3 s windows at 120 Hz = 360 samples, wav2vec2-large features F = 1024,
9.57 M parameters), CLIP loss, backward and Adam, on a synthetic batch. Each measurement runs in
a fresh subprocess (so its peak resident memory is its own): one warm-up step, then ``repeats``
timed steps; ``seconds`` is their median. ``gflops`` is the achieved rate: the FLOPs of the
step counted from the layer shapes (3 × the forward multiply-adds × 2 of the encoder's
convolutions, sensor mixing and subject layers, plus the loss's score matrix) divided by the
median time; compare it with ``bench/gemm_peak.py``.

By default the step runs in ``fast`` mode, under bfloat16 autocast where the CPU supports it
natively (AVX512-BF16/AMX). As ``fit`` does on CPU, ``fast`` steps keep large tensors in the
heap between steps and the others use glibc's defaults, which map them afresh at every step
(``--heap kept|system`` chooses; see :mod:`braindecode_speech.training.heap`).
``--compare`` prints the loss and gradient deviations of every mode, float32 and bf16, from
the plain float32 step.

Run on its own: ``python bench/train_step.py --batch-size 256 --mode fast --threads 2``.
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

N_CHANNELS, N_SUBJECTS, N_TIMES, N_FEATURES = 208, 27, 360, 1024
DEFAULT_MODE = "fast"
REPEATS = {32: 5, 256: 3}


def step_flops(model, batch_size: int) -> float:
    """FLOPs of one training step (forward + backward ≈ 3 × forward) at ``batch_size``.

    The forward's multiply-adds are read from the layer shapes of one probe sample: every
    ``Conv1d`` (C_in/groups · kernel · C_out per output sample), the sensor mixing of spatial
    attention (C_sensors per output sample) and the subject layers (C per output sample); the
    CLIP scores add ``B² · F · T`` multiply-adds.
    """
    import torch

    from braindecode_speech.models import SpatialAttention, SubjectLayers

    macs = 0

    def count(module, inputs, output):
        nonlocal macs
        if isinstance(module, torch.nn.Conv1d):
            per_output = module.in_channels // module.groups * module.kernel_size[0]
        elif isinstance(module, SpatialAttention):
            per_output = inputs[0].shape[1]
        else:
            per_output = module.weight.shape[-1]
        macs += output.numel() * per_output

    kinds = (torch.nn.Conv1d, SpatialAttention, SubjectLayers)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, kinds)]
    brain, subjects, positions, mask, _ = synthetic_batch(1, seed=0)
    was_training = model.training
    with torch.no_grad():
        model.eval()(brain, subjects, positions, mask)
    model.train(was_training)
    for hook in hooks:
        hook.remove()
    loss_macs = batch_size**2 * N_FEATURES * N_TIMES
    return 3 * 2 * (macs * batch_size + loss_macs)


def synthetic_batch(batch_size: int, seed: int):
    """Brain ``[B, 208, 360]``, subjects, positions (one random layout), mask, speech
    ``[B, 1024, 360]``; brain and speech are ``[B, C, T]`` views of time-major memory, as the
    loader delivers them (:mod:`braindecode_speech.data.batches`)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    layout = torch.rand(N_CHANNELS, 2, generator=gen)
    return (
        torch.randn(batch_size, N_TIMES, N_CHANNELS, generator=gen).transpose(1, 2),
        torch.randint(0, N_SUBJECTS, (batch_size,), generator=gen),
        layout.expand(batch_size, -1, -1).contiguous(),
        torch.ones(batch_size, N_CHANNELS, dtype=torch.bool),
        torch.randn(batch_size, N_TIMES, N_FEATURES, generator=gen).transpose(1, 2),
    )


def _measure(batch_size: int, threads: int, mode: str, bf16: bool, micro_batch: int,
             repeats: int, heap: str) -> dict:
    """Run in the worker process: warm-up step, then ``repeats`` timed steps (``heap``: the
    heap they run with, recorded in the result)."""
    import torch

    from braindecode_speech.models import EncoderConfig
    from braindecode_speech.training.losses import ClipLoss
    from braindecode_speech.training.steps import ContrastiveStep

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = EncoderConfig().build(n_subjects=N_SUBJECTS, n_outputs=N_FEATURES).train()
    loss = ClipLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    step = ContrastiveStep(model, loss, optimizer, mode, micro_batch, bf16)
    brain, subjects, positions, mask, speech = synthetic_batch(batch_size, seed=1)
    batch = {"brain": brain, "subject": subjects, "positions": positions, "mask": mask,
             "speech": speech}
    losses = [step(batch)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        losses.append(step(batch))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    flops = step_flops(model, batch_size)
    return {
        "name": f"train_step_b{batch_size}",
        "seconds": median,
        "seconds_min": min(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gflops": flops / median / 1e9,
        "config": {
            "batch_size": batch_size, "mode": mode, "bf16": bf16, "micro_batch": micro_batch,
            "heap": heap,
            "threads": threads, "repeats": repeats, "channels": N_CHANNELS,
            "subjects": N_SUBJECTS, "times": N_TIMES, "features": N_FEATURES,
            "parameters": sum(p.numel() for p in model.parameters()),
            "flops_per_step": flops, "first_loss": losses[0],
            "torch": torch.__version__,
        },
    }


def compare_modes(batch_size: int, threads: int) -> dict:
    """Loss and gradients of every mode (float32 and bf16) against the plain float32 step on
    the same batch and random draws: ``{"<mode>[-bf16]": {"loss": ..., "loss_rel_error": ...,
    "grad_rel_error": ||g - g_plain|| / ||g_plain||, "grad_cosine": ...}}``."""
    import torch

    from braindecode_speech.models import EncoderConfig
    from braindecode_speech.training.losses import ClipLoss
    from braindecode_speech.training.steps import ContrastiveStep

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    initial = EncoderConfig().build(n_subjects=N_SUBJECTS, n_outputs=N_FEATURES).state_dict()
    brain, subjects, positions, mask, speech = synthetic_batch(batch_size, seed=1)
    batch = {"brain": brain, "subject": subjects, "positions": positions, "mask": mask,
             "speech": speech}
    results, reference = {}, None
    for bf16 in (False, True):
        for mode in ("plain", "fast", "lean"):
            model = EncoderConfig().build(n_subjects=N_SUBJECTS, n_outputs=N_FEATURES)
            model.load_state_dict(initial)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # keep weights and grads
            step = ContrastiveStep(model.train(), ClipLoss(), optimizer, mode, 32, bf16)
            torch.manual_seed(2)
            loss = step(batch)
            grad = torch.cat([p.grad.flatten() for p in model.parameters()]).double()
            if reference is None:
                reference = (loss, grad)
            results[mode + ("-bf16" if bf16 else "")] = {
                "loss": loss,
                "loss_rel_error": abs(loss - reference[0]) / abs(reference[0]),
                "grad_rel_error": float((grad - reference[1]).norm() / reference[1].norm()),
                "grad_cosine": float(torch.nn.functional.cosine_similarity(
                    grad, reference[1], dim=0)),
            }
    return {"name": f"compare_modes_b{batch_size}", "threads": threads, "modes": results}


def native_bf16() -> bool:
    """Whether the CPU computes in bfloat16 natively (AVX512-BF16 or AMX flags, Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _run(batch_size: int, threads: int, mode: str, bf16: bool | None, micro_batch: int,
         repeats: int | None = None, heap: str | None = None) -> dict:
    """One measurement in a fresh subprocess (``bf16=None``: where the CPU supports it;
    ``heap=None``: what ``fit`` does, kept for ``fast``)."""
    repeats = REPEATS[batch_size] if repeats is None else repeats
    heap = ("kept" if mode == "fast" else "system") if heap is None else heap
    bf16 = native_bf16() if bf16 is None else bf16
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, __file__, "--worker", "--batch-size", str(batch_size),
               "--threads", str(threads), "--mode", mode, "--micro-batch", str(micro_batch),
               "--repeats", str(repeats), "--bf16", "on" if bf16 else "off", "--heap", heap]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_b32(threads: int, mode: str = DEFAULT_MODE, bf16: bool | None = None,
              micro_batch: int = 32, heap: str | None = None) -> dict:
    """``train_step_b32``: median time and peak RSS of a batch-32 step (``bf16=None``:
    bfloat16 autocast where the CPU supports it natively)."""
    return _run(32, threads, mode, bf16, micro_batch, heap=heap)


def bench_b256(threads: int, mode: str = DEFAULT_MODE, bf16: bool | None = None,
               micro_batch: int = 32, heap: str | None = None) -> dict:
    """``train_step_b256``: median time and peak RSS of a batch-256 step (the paper's)."""
    return _run(256, threads, mode, bf16, micro_batch, heap=heap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, choices=(32, 256), default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", choices=("plain", "fast", "lean"), default=DEFAULT_MODE)
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                        help="bfloat16 autocast (auto: where the CPU supports it natively)")
    parser.add_argument("--micro-batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--heap", choices=("kept", "system"), default=None,
                        help="large tensors kept in the heap between steps (kept) or glibc's "
                             "defaults (system); default: as fit does, kept for fast only")
    parser.add_argument("--compare", action="store_true",
                        help="compare the loss and gradients of every mode with plain float32")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    bf16 = {"auto": None, "on": True, "off": False}[args.bf16]
    if args.compare:
        result = compare_modes(args.batch_size, args.threads)
    elif args.worker:
        from braindecode_speech.training.heap import kept_heap

        with kept_heap(args.heap == "kept") as kept:  # False off glibc: recorded as "system"
            result = _measure(args.batch_size, args.threads, args.mode, bool(bf16),
                              args.micro_batch, args.repeats, "kept" if kept else "system")
    else:
        result = _run(args.batch_size, args.threads, args.mode, bf16, args.micro_batch,
                      args.repeats, args.heap)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
