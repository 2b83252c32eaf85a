"""``braindecode-speech stream``: rank candidate speech segments for the windows of a live
Lab Streaming Layer stream (or of a recording replayed through one) as they arrive."""

from __future__ import annotations

import argparse

HELP = "rank candidate speech segments for a live LSL stream's windows as they arrive"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="model folder written by `export` (or a Hugging Face Hub repo id)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--lsl", metavar="NAME", help="name of the LSL stream to decode")
    source.add_argument("--replay", metavar="FILE",
                        help="a recording (any file mne reads) played through LSL at real-time "
                             "speed; ends when the file ends")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="--replay: play N times faster than real time")
    parser.add_argument("--data", help="the study's folder: its test segments are the "
                        "candidates (default candidates, as `decode`)")
    parser.add_argument("--study", help="study of --data (default: the model's)")
    parser.add_argument("--candidates", help="folder of <id>.wav files with <id>.txt "
                        "transcripts (instead of the study's test segments)")
    parser.add_argument("--subject", help="the subject's id (a training subject's own layer; "
                        "otherwise the mean subject layer)")
    parser.add_argument("--recording", help="uid of a training recording whose scaler to use "
                        "(default: the subject's, see the README)")
    parser.add_argument("--hop", type=float, default=0.25, help="s between windows")
    parser.add_argument("--top-k", type=int, default=10, help="candidates listed per window")
    parser.add_argument("--phase", choices=["minimum", "zero"], default="minimum",
                        help="resampling filter: minimum-phase (no wait) or the offline "
                             "zero-phase one (waits 10 / min(rates) s)")
    parser.add_argument("--max-seconds", type=float, help="--lsl: stop after this many s "
                        "(default: on Ctrl-C)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="s to wait for the stream to be found")
    parser.add_argument("--out", help="CSV of the ranked windows (written as they come)")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from ..sharing import BrainDecoder, SharingError
    from ..sharing.lsl import decode_lsl, latency_summary, open_lsl, replay
    from ..sharing.stream import StreamDecoder

    if args.candidates is None and args.data is None:
        raise SharingError("stream needs candidates: --data (the study's test segments) or "
                           "--candidates FOLDER")
    decoder = BrainDecoder.from_pretrained(args.model)
    candidates = decoder.folder_candidates(args.candidates) if args.candidates \
        else decoder.study_candidates(args.data, args.study)
    out = Path(args.out) if args.out else None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    latencies: list[np.ndarray] = []

    def make(ch_names: list[str], sfreq: float) -> StreamDecoder:
        return StreamDecoder(decoder, ch_names, sfreq, candidates, subject=args.subject,
                             recording=args.recording, hop=args.hop, top_k=args.top_k,
                             phase=args.phase)

    def write(rows: pd.DataFrame) -> None:
        if out is not None:
            rows.to_csv(out, mode="a" if latencies else "w", header=not latencies, index=False)
        latencies.append(rows["latency_ms"].to_numpy())
        for row in rows.itertuples():
            print(f"{row.time:.3f} anchor {row.anchor:7.2f} s  {row.top1_id}  "
                  f"{row.top1_score:.3f}  {row.top1_sentence}", flush=True)

    if args.replay:
        with replay(args.replay, args.speed) as player:
            stream = open_lsl(player.name, args.timeout, player.source_id)
            decode_lsl(stream, make, write, speed=args.speed,
                       finished=lambda: not player.running)
    else:
        decode_lsl(open_lsl(args.lsl, args.timeout), make, write, max_seconds=args.max_seconds)
    if not latencies:
        print("no complete window", file=sys.stderr)
        return 0
    every = np.concatenate(latencies)
    print(f"{len(every)} windows, {len(candidates)} candidates"
          f"{', ' + str(out) if out else ''}; {latency_summary(every)}")
    return 0
