"""Benchmark ``stream_latency``: latency of decoding a live stream with the paper-sized encoder.

A 208-channel KIT MEG stream at 1000 Hz (random data, ``SECONDS`` s) is fed, in real time, in
chunks of 20 ms (as an LSL inlet delivers them), to a
:class:`~braindecode_speech.sharing.stream.StreamDecoder` of the paper's encoder (default
``ModelConfig``, untrained weights: the latency does not depend on them) ranking
``N_CANDIDATES`` candidates of shape [1024, 360] (wav2vec 2.0 × 3 s at 120 Hz) every 0.25 s,
with the default minimum-phase resampler. Latency: from the arrival of the chunk holding a
window's last sample to its ranking (resampling, window, encoder, scores, top-10). Reported:
``p50_ms``, ``p95_ms``, ``max_ms`` over the windows, in a fresh subprocess with ``threads``
threads.

The stream's data are random with an MEG-like spectrum (an AR(1) process, power falling as
1/f² above 3 Hz). Also reported, at the same anchors: ``window_r``, the median Pearson
correlation of the normalised windows of the causal (minimum-phase) resampler with those of the
offline zero-phase one (``resample_polyphase``, as ``preprocess`` does), and
``zero_phase_wait_ms``, the input the zero-phase resampler waits for.

Run on its own: ``python bench/stream_latency.py --threads 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

SECONDS = 40.0
SFREQ = 1000.0
CHUNK = 0.02
N_CANDIDATES = 1000


def _measure(threads: int) -> dict:
    from fractions import Fraction

    import numpy as np
    import pandas as pd
    import torch
    from scipy import signal

    from braindecode_speech.data.dataset import RobustScaler
    from braindecode_speech.data.preprocessing import resample_polyphase
    from braindecode_speech.experiments.config import ExperimentConfig
    from braindecode_speech.experiments.prepare import Scalers
    from braindecode_speech.sharing import BrainDecoder, Candidates, SensorLayout, build_encoder
    from braindecode_speech.sharing.stream import StreamDecoder, StreamResampler
    from braindecode_speech.simulation.sensors import make_info

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    info = make_info("KIT-208", SFREQ)
    n_channels = len(info.ch_names)
    config = ExperimentConfig()
    n_features, n_times = 1024, config.windows.n_times(config.preprocess.sfreq)
    encoder = build_encoder(config, 1, n_features, n_channels)
    positions = rng.uniform(0, 1, (n_channels, 2)).astype(np.float32)
    scale = 1e-13
    decoder = BrainDecoder(
        config, encoder, [SensorLayout("bench", "01", list(info.ch_names), positions)],
        Scalers([RobustScaler(np.zeros(n_channels), np.full(n_channels, scale))], None),
        {"subjects": ["01"], "n_channels": n_channels, "n_features": n_features})
    candidates = Candidates([f"c{i}" for i in range(N_CANDIDATES)],
                            [f"sentence {i}" for i in range(N_CANDIDATES)],
                            rng.standard_normal((N_CANDIDATES, n_features, n_times),
                                                dtype=np.float32))
    # MEG-like spectrum, power falling as 1/f² above 3 Hz (an AR(1) process)
    data = signal.lfilter([1.0], [1.0, -0.98], rng.standard_normal(
        (n_channels, int(SECONDS * SFREQ))), axis=1) * scale / 5
    step = int(CHUNK * SFREQ)

    def stream(phase: str, paced: bool):
        decoder_ = StreamDecoder(decoder, list(info.ch_names), SFREQ, candidates, subject="01",
                                 phase=phase)
        rows = []
        start = time.perf_counter()
        for i, lo in enumerate(range(0, data.shape[1], step)):
            if paced:  # the chunk arrives when its last sample has been recorded
                time.sleep(max(0.0, start + (i + 1) * CHUNK - time.perf_counter()))
            out = decoder_.feed(data[:, lo:lo + step])
            if len(out):
                rows.append(out)
        return decoder_, pd.concat(rows, ignore_index=True)

    live, table = stream("minimum", paced=True)
    latency = table["latency_ms"].to_numpy()
    # offline windows at the same anchors: the zero-phase resampler of preprocess
    offline = resample_polyphase(data, Fraction(3, 25))
    zero = StreamResampler(SFREQ, 120.0, n_channels, "zero")
    r = []
    views = {}
    for name, samples in (("offline", offline), ("causal", StreamResampler(
            SFREQ, 120.0, n_channels, "minimum")(data))):
        views[name] = StreamDecoder(decoder, list(info.ch_names), SFREQ, candidates,
                                    subject="01")
        views[name]._buffer = samples.T.astype(np.float32)  # the whole resampled recording
    causal, reference = views["causal"], views["offline"]
    for start in (np.round(table["window_start"].to_numpy() * 120).astype(int)):
        a, b = causal.window(start).ravel(), reference.window(start).ravel()
        r.append(np.corrcoef(a, b)[0, 1])
    p50, p95 = np.percentile(latency, [50, 95])
    return {
        "name": "stream_latency", "seconds": float(np.median(latency)) / 1000,
        "seconds_min": float(latency.min()) / 1000,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gflops": None,
        "p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1),
        "max_ms": round(float(latency.max()), 1), "n_windows": len(latency),
        "zero_phase_wait_ms": round(1000 * zero.delay, 1),
        "window_r": round(float(np.median(r)), 4),
        "config": {"seconds": SECONDS, "sfreq_in": SFREQ, "channels": n_channels,
                   "chunk_s": CHUNK, "hop_s": live.hop, "candidates": N_CANDIDATES,
                   "features": [n_features, n_times], "threads": threads,
                   "encoder_parameters": sum(p.numel() for p in encoder.parameters())},
    }


def bench(threads: int) -> dict:
    """Latency percentiles of the paper-sized encoder on a live stream (fresh subprocess)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    result = subprocess.run([sys.executable, __file__, "--worker", "--threads", str(threads)],
                            capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    print(json.dumps(_measure(args.threads) if args.worker else bench(args.threads)))
