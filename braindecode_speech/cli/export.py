"""``braindecode-speech export``: a trained run as a self-contained model folder."""

from __future__ import annotations

import argparse

HELP = "write the model folder of a trained run (weights, config, scalers, layouts, model card)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder written by `train` or `demo`")
    parser.add_argument("--to", required=True, help="the model folder to write (new or empty)")
    parser.add_argument("--data", help="local copy of the study, if not at the run's "
                        "study.root (the scalers and layouts are rebuilt from it)")
    parser.add_argument("--trust-model-code", action="store_true",
                        help="allow the run's model.target to import and call a model that "
                             "is not registered under the entry-point group "
                             "braindecode_speech.models (runs code named by its config.yaml: only "
                             "for folders you trust)")


def run(args: argparse.Namespace) -> int:
    from ..sharing import export_run

    decoder = export_run(args.run, args.to, args.data, args.trust_model_code)
    evaluation = decoder.metadata["evaluation"]
    k = evaluation["topk"][-1]
    print(f"Model folder: {args.to} ({len(decoder.subjects)} subjects, segment top-{k} "
          f"{100 * evaluation['metrics']['segment'][f'top{k}']:.1f} %)")
    return 0
