"""``braindecode-speech evaluate``: re-evaluate a trained run."""

from __future__ import annotations

import argparse

HELP = "re-evaluate the best checkpoint of a run folder and rewrite its report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder written by `train` or `demo`")
    parser.add_argument("--trust-model-code", action="store_true",
                        help="allow the run's model.target to import and call a model that is "
                             "not registered under the entry-point group "
                             "braindecode_speech.models (runs code named by the run's "
                             "config.yaml: only for folders you trust)")


def run(args: argparse.Namespace) -> int:
    from ..experiments.run import evaluate_run

    result = evaluate_run(args.run, trust_model_code=args.trust_model_code)
    print(result["table"])
    return 0
