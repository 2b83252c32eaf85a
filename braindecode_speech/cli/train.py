"""``braindecode-speech train``: train and evaluate on a study with the paper's defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._experiment_options import add_experiment_arguments, experiment_config

HELP = "train the brain encoder on a study (paper defaults) and evaluate it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, "partial is fine", "optim.batch_size=64 features.name=mel")
    parser.add_argument("--out", help="run folder (default: runs/<study>-<signature>)")


def run(args: argparse.Namespace) -> int:
    from ..experiments.run import run_experiment

    config = experiment_config(args)
    out = Path(args.out) if args.out else Path("runs") / f"{args.study}-{config.signature()}"
    print(f"Run folder: {out}")
    result = run_experiment(config, out)
    print(result["table"])
    return 0
