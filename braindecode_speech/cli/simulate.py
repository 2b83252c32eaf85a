"""``braindecode-speech simulate``: generate the simulated speech-listening study (BIDS)."""

from __future__ import annotations

import argparse

HELP = "generate the simulated MEG/EEG speech-listening study as a BIDS dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (the BIDS root)")
    parser.add_argument("--preset", default="demo", choices=["tiny", "demo", "large"],
                        help="study size (default: demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole study")
    parser.add_argument("--modality", default="meg", choices=["meg", "eeg"])
    parser.add_argument("--n-jobs", type=int, default=1,
                        help="sessions simulated in parallel processes")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="SimulationConfig overrides, e.g. snr=0.01 n_subjects=3")


def run(args: argparse.Namespace) -> int:
    import time

    from ..simulation import SimulationConfig, simulate
    from ..simulation.writer import summarize

    config = SimulationConfig.preset(args.preset, seed=args.seed, modality=args.modality,
                                     n_jobs=args.n_jobs).with_overrides(list(args.overrides))
    start = time.time()
    root = simulate(config, args.out, progress=True)
    size = summarize(root)
    print(f"Simulated study {root} (preset {config.preset}, {config.modality}, seed "
          f"{config.seed}, signature {config.signature()}, {time.time() - start:.0f} s)")
    print(f"  subjects: {size['subjects']}  recordings: {size['recordings']}  "
          f"hours: {size['hours']:.2f}")
    print(f"  words: {size['words']} (vocabulary {size['vocabulary']})  distinct sentences: "
          f"{size['sentences']} (+ {size['word_lists']} word lists)")
    return 0
