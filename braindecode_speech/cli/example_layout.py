"""``braindecode-speech example-layout``: write a tiny synthetic copy of a study's layout."""

from __future__ import annotations

import argparse

HELP = "write a tiny synthetic copy of a real study's file layout (for trying the pipeline)"

STUDIES = ("gwilliams2022", "schoffelen2019", "broderick2019", "brennan2019", "libribrain2025",
           "armeni2022")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", required=True, choices=STUDIES)
    parser.add_argument("--out", required=True, help="folder to write (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the content")
    parser.add_argument("--n-subjects", type=int, default=None,
                        help="number of subjects (default: 2; 1 for libribrain2025)")


def run(args: argparse.Namespace) -> int:
    from ..simulation.layouts import write_example_layout

    root = write_example_layout(args.study, args.out, seed=args.seed,
                                n_subjects=args.n_subjects)
    print(f"{args.study} example layout written to {root}")
    print(f"try: braindecode-speech check --study {args.study} --data {root}")
    return 0
