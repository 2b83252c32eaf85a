"""``braindecode-speech evaluate``: re-evaluate a trained run."""

from __future__ import annotations

import argparse

HELP = "re-evaluate the best checkpoint of a run folder and rewrite its report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder written by `train` or `demo`")


def run(args: argparse.Namespace) -> int:
    from ..experiments.run import evaluate_run

    result = evaluate_run(args.run)
    print(result["table"])
    return 0
