"""A new subject in minutes, leave-one-subject-out, on the simulated demo study (5 subjects):
the demo's configuration trained on every subject (the reference: each subject's accuracy when
it is part of training), and once per subject with that subject held out of training
(``splits.holdout_subjects``: the splits stay those of the whole study). Each held-out model is
then calibrated to its subject on the first 1, 2, 5, 10 minutes and all of its training blocks
(0: the mean subject layer), beside a model trained from scratch on the same minutes.

    braindecode-speech grid run grids/calibration.py --data data/sim     # the training runs
    python grids/calibration.py --data data/sim [--subjects 01 02]      # runs, then curves
    python grids/calibration.py --plot-only                              # redraw curve.png

The second command runs the training runs it needs that are not done yet (in this process),
exports each held-out run into a model folder and writes, under ``<root>/calibration/``,
``curve.csv`` (one row per subject, method and minutes: segment and word top-k, windows and
seconds used) and ``curve.png`` (segment top-10 against minutes, each subject's accuracy when
it is part of training dotted).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments.grid import Grid, SlurmConfig, variants
from braindecode_speech.experiments.presets import DEMO_OVERRIDES

SUBJECTS = ["01", "02", "03", "04", "05"]
#: the reference run's label, then one run per held-out subject
EVERYONE = "none"
MINUTES = (0, 1, 2, 5, 10, None)
#: the goal on the demo: 5 minutes reach this fraction of the accuracy when part of training
TARGET = 0.8

GRID = Grid(
    base=ExperimentConfig().with_overrides({**DEMO_OVERRIDES, "study.name": "simulated"}),
    points=variants("held-out subject", {EVERYONE: {}, **{
        subject: {"splits.holdout_subjects": [subject]} for subject in SUBJECTS}}),
    slurm=SlurmConfig(gpus_per_task=0, cpus_per_task=2, timeout_min=60),
)


def main(argv: list[str] | None = None) -> int:
    """Train what is missing, then calibrate and write the curve (see the module doc)."""
    from braindecode_speech.experiments.grid import launch, resolve_runs
    from braindecode_speech.sharing import BrainDecoder, export_run
    from braindecode_speech.sharing.calibration import calibration_curve

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="the simulated demo study (required but with "
                        "--plot-only)")
    parser.add_argument("--root", default="runs", help="folder of the grids' runs")
    parser.add_argument("--subjects", nargs="+", default=SUBJECTS, help="subjects to hold out")
    parser.add_argument("--steps", type=int, default=100, help="calibration steps")
    parser.add_argument("--scratch-steps", type=int, default=100,
                        help="training steps of the models trained from scratch (0: none)")
    parser.add_argument("--plot-only", action="store_true",
                        help="draw curve.png from the curve.csv already written")
    args = parser.parse_args(argv)
    out = Path(args.root) / Path(__file__).stem / "calibration"
    if args.plot_only:
        _plot(pd.read_csv(out / "curve.csv", dtype={"subject": str}), out / "curve.png")
        return 0
    if args.data is None:
        parser.error("--data is required (the simulated demo study)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    wanted = {EVERYONE, *args.subjects}
    grid = Grid(GRID.base, [p for p in GRID.points if p.labels["held-out subject"] in wanted],
                GRID.slurm, name=Path(__file__).stem)
    launch(grid, args.root, "debug", args.data)
    runs = {run.labels["held-out subject"]: run for run in resolve_runs(grid, args.root,
                                                                          args.data)}
    reference = json.loads((runs[EVERYONE].folder / "report.json").read_text())
    trained = {s: v["segment"]["top10"] for s, v in reference["per_subject"]["model"].items()}
    out.mkdir(parents=True, exist_ok=True)
    curves = []
    for subject in args.subjects:
        model = runs[subject].folder / "model"
        if not (model / "config.json").is_file():
            export_run(runs[subject].folder, model)
        curve = calibration_curve(BrainDecoder.from_pretrained(model), args.data, "simulated",
                                  subject, MINUTES, args.steps, args.scratch_steps or None)
        curve["part_of_training"] = trained[subject]
        curves.append(curve)
        pd.concat(curves).to_csv(out / "curve.csv", index=False)
    table = pd.concat(curves)
    _plot(table, out / "curve.png")
    print(table.to_string(index=False))
    print(f"Written: {out / 'curve.csv'}, {out / 'curve.png'}")
    return 0


def _plot(table: pd.DataFrame, path: Path) -> None:
    """Draw ``curve.png`` from the table of ``curve.csv``."""
    from braindecode_speech.sharing.calibration import plot_calibration_curve

    reference = table.groupby("subject")["part_of_training"].first().to_dict()
    figure = plot_calibration_curve(table, reference=reference, target=TARGET,
                                    chance=float(table["chance.top10"].iloc[0]))
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
