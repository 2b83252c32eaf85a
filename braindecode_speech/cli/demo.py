"""``braindecode-speech demo``: the whole method on the simulated study, on a laptop CPU."""

from __future__ import annotations

import argparse

from ..data.labels import TASKS

HELP = ("simulate a study (cached), train the brain encoder on it, print the table of the task "
        "(retrieval by default)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="outputs/demo",
                        help="folder for the simulated study, the cache and the run")
    parser.add_argument("--preset", default="demo", help="simulation preset (tiny|demo|large)")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    parser.add_argument("--modality", choices=["meg", "eeg"], default="meg")
    parser.add_argument("--task", choices=TASKS, default="retrieval",
                        help="what is decoded (default: the paper's retrieval)")
    parser.add_argument("--snr", type=float, default=None,
                        help="signal-to-noise power ratio of the simulated study (default: the "
                             "preset's; use another --out)")
    parser.add_argument("--phoneme-power", type=float, default=0.0,
                        help="plant a phoneme-specific response of this power relative to the "
                             "other stimulus-driven activity (default 0: none; a positive "
                             "control for phoneme_classification; use another --out)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides of the demo's ExperimentConfig")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from ..experiments.presets import demo_config
    from ..experiments.run import run_experiment
    from ..simulation import SimulationConfig, simulate

    start = time.time()
    out = Path(args.out)
    study = {} if args.snr is None else {"snr": args.snr}
    sim = SimulationConfig.preset(args.preset, seed=args.seed, modality=args.modality,
                                  phoneme_power=args.phoneme_power, **study)
    root = simulate(sim, out / "study")
    print(f"Simulated study: {root} ({time.time() - start:.0f} s)")
    config = demo_config(root, cache_dir=out / "cache", modality=args.modality, task=args.task)
    config = config.with_overrides(list(args.overrides))
    run_folder = out / "runs" / config.signature()
    result = run_experiment(config, run_folder)
    print(result["table"])
    print(f"Report, figures and checkpoints: {run_folder} ({time.time() - start:.0f} s in all)")
    return 0
