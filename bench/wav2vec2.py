"""Benchmark ``wav2vec2_60s``: wav2vec2 speech features of 60 s of audio on the CPU.

Times :class:`braindecode_speech.features.Wav2Vec2Features` with the paper's settings (hidden
states 14-18 averaged, 120 Hz output) and the default chunking (30 s chunks, 5 s of context on
each side) on 60 s of noise, with a randomly initialised model of the exact
``facebook/wav2vec2-large-xlsr-53`` architecture (no weights can be downloaded here; the cost
does not depend on the weights' values). The checkpoint is written to a temporary folder by one
subprocess and loaded through ``from_pretrained`` in a fresh one, whose peak RSS (model
included) is reported. GFLOP/s counts the matmul/convolution/attention FLOPs of one call
(``torch.utils.flop_counter``); ``cpu_seconds`` is the process CPU time of one call (less
sensitive than wall time to other jobs sharing the cores).

Modes: ``optimised`` (the library as is: 18 of 24 transformer layers, time-major convolutional
encoder), ``plain`` (the same calls with transformers' full 24-layer ``Wav2Vec2Model``), and
``compare`` (no timing: deviation of the optimised fp32 and bf16 features from the plain fp32
ones).

Run on its own::

    python bench/wav2vec2.py --threads 2 [--dtype bf16] [--mode plain] [--chunk-s 30]
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

AUDIO_S = 60.0
AUDIO_SFREQ = 16000
LAYERS = (14, 15, 16, 17, 18)
REPEATS = 3
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
MODES = ("optimised", "plain", "compare")

#: facebook/wav2vec2-large-xlsr-53 (all that shapes the computation at inference)
XLSR53_LARGE = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    hidden_act="gelu", layer_norm_eps=1e-5, conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_bias=True, feat_extract_norm="layer",
    feat_extract_activation="gelu", do_stable_layer_norm=True, num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16, mask_time_prob=0.075,
)


def _write_checkpoint(folder: str) -> None:
    """Save a randomly initialised xlsr-53-large ``Wav2Vec2Model`` and its preprocessor."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(**XLSR53_LARGE)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder)


def _audio():
    import numpy as np

    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal(int(AUDIO_S * AUDIO_SFREQ))).astype(np.float32)


def _features(folder: str, dtype: str, chunk_s: float, plain: bool):
    """``Wav2Vec2Features`` as configured, or (``plain``) running the full transformers model."""
    import torch
    from transformers import Wav2Vec2Model

    from braindecode_speech.features import Wav2Vec2FeaturesConfig
    features = Wav2Vec2FeaturesConfig(model=str(folder), layers=LAYERS, chunk_s=chunk_s,
                                      dtype=DTYPES[dtype]).build(120.0)
    if plain:
        features._model = Wav2Vec2Model.from_pretrained(
            folder, dtype=getattr(torch, DTYPES[dtype])).eval()
    return features


def _measure(folder: str, threads: int, dtype: str, chunk_s: float, plain: bool) -> dict:
    """In the worker process: load the model, count the FLOPs of one call, then time calls."""
    import torch
    from torch.nn.utils import parametrize
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    features = _features(folder, dtype, chunk_s, plain)
    # FlopCounterMode cannot evaluate a weight-norm parametrisation under inference_mode: fold
    # the positional convolution's weight norm into its weight (same values)
    parametrize.remove_parametrizations(features.model.encoder.pos_conv_embed.conv, "weight")
    wav = _audio()
    with FlopCounterMode(display=False) as counter:  # also the warm-up call
        features(wav, AUDIO_SFREQ)
    load = os.getloadavg()[0]
    times, cpu_times = [], []
    for _ in range(REPEATS):
        start, cpu_start = time.perf_counter(), time.process_time()
        features(wav, AUDIO_SFREQ)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    median = statistics.median(times)
    return {
        "name": "wav2vec2_60s",
        "seconds": median,
        "seconds_min": min(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gflops": counter.get_total_flops() / median / 1e9,
        "realtime_factor": round(AUDIO_S / median, 2),
        "cpu_seconds": round(statistics.median(cpu_times), 2),
        "config": {"audio_s": AUDIO_S, "architecture": "wav2vec2-large-xlsr-53 (random weights)",
                   "mode": "plain" if plain else "optimised", "layers": list(LAYERS),
                   "transformer_layers_run": len(features.model.encoder.layers),
                   "chunk_s": features.chunk_s, "context_s": features.context_s,
                   "dtype": features.dtype, "threads": threads, "repeats": REPEATS,
                   "torch": torch.__version__, "load_avg_1min_before": load},
    }


def _compare(folder: str, threads: int, chunk_s: float) -> dict:
    """Deviation of the optimised fp32 and bf16 features from the plain fp32 ones, in the
    features' units and relative to each feature's standard deviation over time."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    wav = _audio()
    reference = _features(folder, "fp32", chunk_s, plain=True)(wav, AUDIO_SFREQ)
    std = reference.std(axis=1, keepdims=True)
    out = {"name": "wav2vec2_60s_compare", "chunk_s": chunk_s, "reference": "plain fp32"}
    for dtype in DTYPES:
        features = _features(folder, dtype, chunk_s, plain=False)(wav, AUDIO_SFREQ)
        error = np.abs(features - reference)
        out[f"optimised_{dtype}"] = {
            "max_abs": float(error.max()), "max_over_std": float((error / std).max()),
            "mean_over_std": float((error / std).mean()),
            "correlation": float(np.corrcoef(features.ravel(), reference.ravel())[0, 1])}
    return out


def _worker(folder: str, threads: int, dtype: str, chunk_s: float, mode: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    result = subprocess.run(
        [sys.executable, __file__, "--worker", "--checkpoint", folder, "--threads", str(threads),
         "--dtype", dtype, "--chunk-s", str(chunk_s), "--mode", mode],
        env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"bench/wav2vec2.py worker failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench(threads: int, dtype: str = "fp32", chunk_s: float = 30.0, mode: str = "optimised",
          checkpoint: str | None = None) -> dict:
    """Median time to compute the features of 60 s of audio (fresh subprocess). Without
    ``checkpoint`` (a folder written by ``--write-checkpoint``), one is made and deleted."""
    if checkpoint is not None:
        return _worker(checkpoint, threads, dtype, chunk_s, mode)
    with tempfile.TemporaryDirectory(prefix="wav2vec2_bench_") as folder:
        subprocess.run([sys.executable, __file__, "--write-checkpoint", folder], check=True,
                       capture_output=True)
        return _worker(folder, threads, dtype, chunk_s, mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--chunk-s", type=float, default=30.0)
    parser.add_argument("--mode", choices=MODES, default="optimised")
    parser.add_argument("--checkpoint", help="reuse a random checkpoint folder")
    parser.add_argument("--write-checkpoint", metavar="FOLDER",
                        help="only write the random checkpoint to FOLDER")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_checkpoint:
        _write_checkpoint(args.write_checkpoint)
        return
    if not args.worker:
        result = bench(args.threads, args.dtype, args.chunk_s, args.mode, args.checkpoint)
    elif args.mode == "compare":
        result = _compare(args.checkpoint, args.threads, args.chunk_s)
    else:
        result = _measure(args.checkpoint, args.threads, args.dtype, args.chunk_s,
                          plain=args.mode == "plain")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
