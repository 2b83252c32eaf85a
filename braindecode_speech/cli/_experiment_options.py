"""Options shared by the subcommands that build an ExperimentConfig for one study (``train``,
``check-splits``): ``--study``, ``--data``, ``--config`` and ``KEY=VALUE`` overrides."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..experiments.config import ExperimentConfig


def add_experiment_arguments(parser: argparse.ArgumentParser, config_help: str,
                             example: str) -> None:
    """Add the options; ``config_help`` says what is read from ``--config``, ``example`` is an
    example of overrides."""
    parser.add_argument("--study", required=True, help="study name (see `check --help`)")
    parser.add_argument("--data", required=True, help="folder of the local copy of the study")
    parser.add_argument("--config", help=f"YAML file with an ExperimentConfig ({config_help})")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help=f"dotted config overrides, e.g. {example}")


def experiment_config(args: argparse.Namespace) -> ExperimentConfig:
    """The config of the options: ``--config`` (default: the paper's), then the study, then
    the overrides."""
    from ..experiments.config import ExperimentConfig

    config = ExperimentConfig.from_yaml(args.config) if args.config else ExperimentConfig()
    config = config.with_overrides({"study.name": args.study, "study.root": args.data})
    return config.with_overrides(list(args.overrides))
