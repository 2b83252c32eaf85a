"""``braindecode-speech train``: train and evaluate on a study with the paper's defaults."""

from __future__ import annotations

import argparse

HELP = "train the brain encoder on a study (paper defaults) and evaluate it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", required=True, help="study name (see `check --help`)")
    parser.add_argument("--data", required=True, help="folder of the local copy of the study")
    parser.add_argument("--out", help="run folder (default: runs/<study>-<signature>)")
    parser.add_argument("--config", help="YAML file with an ExperimentConfig (partial is fine)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted config overrides, e.g. optim.batch_size=64 features.name=mel")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..experiments.config import ExperimentConfig
    from ..experiments.run import run_experiment

    config = ExperimentConfig.from_yaml(args.config) if args.config else ExperimentConfig()
    config = config.with_overrides({"study.name": args.study, "study.root": args.data})
    config = config.with_overrides(list(args.overrides))
    out = Path(args.out) if args.out else Path("runs") / f"{args.study}-{config.signature()}"
    print(f"Run folder: {out}")
    result = run_experiment(config, out)
    print(result["table"])
    return 0
