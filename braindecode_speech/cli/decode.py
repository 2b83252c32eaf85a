"""``braindecode-speech decode``: rank candidate speech segments for every window of a
study's recordings with a model folder."""

from __future__ import annotations

import argparse

HELP = "rank candidate speech segments for every window of recordings with a model folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="model folder written by `export` (or a Hugging Face Hub repo id)")
    parser.add_argument("--data", required=True, help="folder of the local copy of the study")
    parser.add_argument("--study", required=True, help="study name (see `check --help`)")
    parser.add_argument("--subject", help="decode this subject's recordings only")
    parser.add_argument("--candidates", help="folder of <id>.wav files with <id>.txt "
                        "transcripts (default: the study's test segments)")
    parser.add_argument("--top-k", type=int, default=10, help="candidates listed per window")
    parser.add_argument("--step", type=float,
                        help="a window every STEP s (default: one at every word onset)")
    parser.add_argument("--out", default="decoded.csv",
                        help="CSV to write (the figure goes next to it, .png)")
    parser.add_argument("--trust-model-code", action="store_true",
                        help="allow the model folder's model.target to import and call a model that "
                             "is not registered under the entry-point group "
                             "braindecode_speech.models (runs code named by its experiment.yaml: only "
                             "for folders you trust)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..sharing import BrainDecoder, plot_decoding

    decoder = BrainDecoder.from_pretrained(args.model,
                                           trust_model_code=args.trust_model_code)
    candidates = decoder.folder_candidates(args.candidates) if args.candidates \
        else decoder.study_candidates(args.data, args.study)
    table = decoder.decode_study(args.data, args.study, args.subject, candidates,
                                 top_k=args.top_k, step=args.step)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    figure = out.with_suffix(".png")
    plot_decoding(table, len(candidates)).savefig(figure, dpi=100)
    print(f"{len(table)} windows of {table['recording'].nunique()} recordings, "
          f"{len(candidates)} candidates: {out}, {figure}")
    held_out = table["test_window"] if "test_window" in table else table["rank"].notna()
    ranked = table.loc[held_out, "rank"].dropna().astype(int)
    if len(ranked):
        k = min(10, len(candidates))
        print(f"heard segment in the top {k}: {100 * (ranked <= k).mean():.1f} % of "
              f"{len(ranked)} {'test ' if 'test_window' in table else ''}windows (chance "
              f"{100 * k / len(candidates):.1f} %)")
    return 0
