"""Arguments shared by the subcommands that run on one study (``train``, ``check-splits``):
``--study``, ``--data``, ``--config`` and dotted ``KEY=VALUE`` overrides, and the
:class:`~braindecode_speech.experiments.config.ExperimentConfig` they describe."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..experiments.config import ExperimentConfig


def add_study_arguments(parser: argparse.ArgumentParser, config_help: str,
                        example: str) -> None:
    """``--study``, ``--data``, ``--config`` (``config_help``) and the overrides (``example``:
    an example of them for the help)."""
    parser.add_argument("--study", required=True, help="study name (see `check --help`)")
    parser.add_argument("--data", required=True, help="folder of the local copy of the study")
    parser.add_argument("--config", help=config_help)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help=f"dotted config overrides, e.g. {example}")


def study_config(args: argparse.Namespace) -> ExperimentConfig:
    """The ``--config`` file (or the defaults) with the study, its folder and the overrides."""
    from ..experiments.config import ExperimentConfig

    config = ExperimentConfig.from_yaml(args.config) if args.config else ExperimentConfig()
    config = config.with_overrides({"study.name": args.study, "study.root": args.data})
    return config.with_overrides(list(args.overrides))
