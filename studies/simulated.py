"""The reproduction protocol on the simulated study, small enough to run here: generate the
study (``braindecode_speech.simulation``, preset ``tiny`` by default) in ``--data`` unless it is
already there, train the test-sized CPU configuration (``presets.TINY_OVERRIDES``) with the
paper's 3 seeds, and write the table (mean ± s.e.m. over seeds, with chance)::

    python studies/simulated.py --data /tmp/simulated [--preset demo] [--executor debug]

The other options are those of ``braindecode-speech grid run``. There are no published numbers
for a simulated study: the table shows the model, the ridge baseline and chance.
"""

import argparse
import sys

from braindecode_speech.cli import main
from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments.grid import Grid, SlurmConfig, product, values
from braindecode_speech.experiments.presets import TINY_OVERRIDES

GRID = Grid(
    # the controls' null model (trained on mismatched brain/speech pairs) beside each run
    base=ExperimentConfig().with_overrides({**TINY_OVERRIDES, "evaluation.train_null": True}),
    points=product(values("study.name", ["simulated"]),
                   values("optim.seed", [2036, 2037, 2038])),
    slurm=SlurmConfig(gpus_per_task=0, cpus_per_task=2, timeout_min=60),
    name="reproduce_simulated",
)

if __name__ == "__main__":
    from braindecode_speech.simulation import SimulationConfig, simulate

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data", required=True)
    parser.add_argument("--preset", default="tiny", choices=["tiny", "demo", "large"])
    known, rest = parser.parse_known_args()
    simulate(SimulationConfig.preset(known.preset), known.data)
    sys.exit(main(["grid", "run", __file__, "--table", "--data", known.data, *rest]))
