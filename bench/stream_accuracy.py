"""Streamed against offline decoding with a trained model: what the causal resampler of
``braindecode-speech stream`` changes in the rankings and in accuracy.

    python bench/stream_accuracy.py --model models/simulated --data data/sim [--subject 01]

Each recording of the subject (default: every subject's) is decoded offline, with the zero-phase
filter of training (``decode(recording, step=hop)``), and streamed through a
:class:`~braindecode_speech.sharing.stream.StreamDecoder` (each recording's training scaler, both
resampler phases) at the same anchors, every ``hop`` s. Printed per phase, over the windows of
both: top-1 agreement and top-10 overlap with the offline rankings; and, over the windows whose
anchor lies within ``hop / 2`` of a word onset starting one of the candidate segments (the
study's distinct test segments), the segment top-10 accuracy of the offline and the streamed
windows, with its chance level (10 / candidates), and the offline accuracy by the anchor's
distance to that onset (the first bin, within half a 120 Hz sample, holds the windows a word
anchor would give). Windows of training blocks take part (both paths alike); the accuracies are
for comparing the paths, not for a report.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

TOP = 10


def _truth(anchors: np.ndarray, events: pd.DataFrame, ids: set[str], tolerance: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """The candidate segment starting at the word onset nearest each anchor (None if farther
    than ``tolerance`` s or not a candidate), and the anchor's distance to that onset (s)."""
    words = events[events["kind"] == "word"].sort_values("onset")
    onsets = words["onset"].to_numpy()
    segments = (words["sequence_id"].astype(str) + "#"
                + words["word_index"].astype("Int64").astype(str)).to_numpy()
    nearest = np.clip(np.searchsorted(onsets, anchors), 1, len(onsets) - 1)
    nearest = np.where(np.abs(onsets[nearest - 1] - anchors) < np.abs(onsets[nearest] - anchors),
                       nearest - 1, nearest)
    distance = np.abs(onsets[nearest] - anchors)
    close = distance <= tolerance
    return np.array([s if c and s in ids else None for s, c in zip(segments[nearest], close)],
                    dtype=object), distance


def measure(model: str, data: str, study: str | None, subject: str | None, hop: float
            ) -> dict:
    from braindecode_speech.data.studies import get as get_study
    from braindecode_speech.sharing import BrainDecoder
    from braindecode_speech.sharing.stream import StreamDecoder

    decoder = BrainDecoder.from_pretrained(model)
    candidates = decoder.study_candidates(data, study)
    ids = set(candidates.ids)
    top = [f"top{j}_id" for j in range(1, TOP + 1)]
    rows = []
    for recording in get_study(study or decoder.experiment.study.name, data).recordings():
        if subject is not None and recording.subject != subject:
            continue
        offline = decoder.decode(recording, None, candidates, top_k=TOP, step=hop)
        raw = recording.raw()
        truth, distance = _truth(offline["anchor"].to_numpy(), recording.events(), ids,
                                 hop / 2)
        table = pd.DataFrame({"anchor": offline["anchor"], "truth": truth,
                              "distance": distance, "offline": list(offline[top].to_numpy())})
        for phase in ("minimum", "zero"):
            stream = StreamDecoder(decoder, raw.ch_names, raw.info["sfreq"], candidates,
                                   recording=recording.uid, hop=hop, top_k=TOP, phase=phase)
            streamed = stream.feed(raw.get_data())
            table = table.merge(pd.DataFrame({"anchor": streamed["anchor"],
                                              phase: list(streamed[top].to_numpy())}),
                                on="anchor", how="inner")
        rows.append(table)
    table = pd.concat(rows, ignore_index=True)
    scored = table[table["truth"].notna()]
    out = {"windows": len(table), "scored_windows": len(scored), "candidates": len(candidates),
           "chance_top10": min(TOP, len(candidates)) / len(candidates),
           "offline_top10": float(np.mean([t in o for t, o in
                                           zip(scored["truth"], scored["offline"])]))}
    # how far from the onset a window may be anchored: offline top-10 by distance (ms)
    edges = [0, 1000 / 240, 20, 40, 80, 1000 * hop / 2]
    which = np.digitize(1000 * scored["distance"].to_numpy(), edges[1:-1], right=True)
    for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        part = scored[which == j]
        key = f"offline_top10_{lo:.0f}-{hi:.0f}ms"
        out[key] = float(np.mean([t in o for t, o in zip(part["truth"], part["offline"])])) \
            if len(part) else None
        out[f"{key}_windows"] = len(part)
    for phase in ("minimum", "zero"):
        out[f"{phase}_top1_agreement"] = float(np.mean(
            [s[0] == o[0] for s, o in zip(table[phase], table["offline"])]))
        out[f"{phase}_top10_overlap"] = float(np.mean(
            [len(set(s) & set(o)) / TOP for s, o in zip(table[phase], table["offline"])]))
        out[f"{phase}_top10"] = float(np.mean([t in s for t, s in
                                               zip(scored["truth"], scored[phase])]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model folder (`export`)")
    parser.add_argument("--data", required=True, help="the study's root")
    parser.add_argument("--study", default=None, help="default: the model's")
    parser.add_argument("--subject", default=None, help="default: every subject")
    parser.add_argument("--hop", type=float, default=0.25, help="s between windows")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    out = measure(args.model, args.data, args.study, args.subject, args.hop)
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
