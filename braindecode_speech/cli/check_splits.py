"""``braindecode-speech check-splits``: prove the train/test split of a study leak-free."""

from __future__ import annotations

import argparse
import json

from ._experiment_options import add_experiment_arguments, experiment_config

HELP = "split a study into blocks and prove no sentence or audio is shared between splits"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, "splits are read", "splits.min_block_duration=4")
    parser.add_argument("--json", help="also write the audit to this JSON file")


def run(args: argparse.Namespace) -> int:
    from ..experiments.prepare import split_study

    audit = split_study(experiment_config(args))
    for split in ("train", "valid", "test"):
        print(f"{split:>5}: {audit['n_blocks'][split]:6d} blocks "
              f"{audit['n_sentences'][split]:6d} sentences {audit['hours'][split]:8.3f} h")
    moved = audit["moved_blocks"]
    print(f"{moved['count']} blocks ({moved['fraction']:.1%}) moved away from their own paper "
          "split by tying sentences shared across blocks")
    for pair in ("train_test", "train_valid", "valid_test"):
        item = audit[pair]
        print(f"{pair:>11}: {item['n_shared_sentences']} shared sentences, "
              f"{item['n_shared_sequence_ids']} shared sequence ids, "
              f"{item['shared_audio_seconds']:.3f} s of shared audio")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(audit, f, indent=1)
    print("OK: no leak between splits" if audit["ok"] else "LEAK between splits")
    return 0 if audit["ok"] else 1
