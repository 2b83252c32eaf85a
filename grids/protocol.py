"""The paper's protocol, item by item, on the demo study: the demo's configuration (paper
protocol, CPU-sized model) against the same run with one protocol item set back to this
project's earlier behaviour, and with all six set back (README, "Protocol: the paper, point by
point"). One seed; the ridge baseline is off (it does not depend on these items, except blocks
and splits). Runs on a laptop CPU in about 3 minutes a point::

    braindecode-speech simulate --preset demo --seed 0 --out /tmp/demo_study
    braindecode-speech grid run grids/protocol.py --executor debug --data /tmp/demo_study --table
"""

from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments.grid import Grid, SlurmConfig, variants
from braindecode_speech.experiments.presets import DEMO_OVERRIDES

#: each protocol item's earlier (pre-audit) behaviour, as the option that keeps it reachable
EARLIER = {
    "1 spatial attention wraps around": {"model.fourier_layout": "wrapped"},
    "2 blocks end with their sound": {"splits.block_end": "sound_end"},
    "3 split hash of sorted ids": {"splits.assignment": "sorted_ids"},
    "4 validation batches in order": {"optim.valid_shuffle": False},
    "5 baseline after the lag shift": {"norm.baseline_window": "shifted"},
    "6 subject layers start at identity": {"model.subject_init": "identity"},
}

GRID = Grid(
    base=ExperimentConfig().with_overrides(
        {**DEMO_OVERRIDES, "study.name": "simulated", "ridge.enabled": False}),
    points=variants("protocol", {
        "paper (default)": {},
        **EARLIER,
        "all six earlier": {k: v for item in EARLIER.values() for k, v in item.items()},
    }),
    slurm=SlurmConfig(gpus_per_task=0, cpus_per_task=2, timeout_min=60),
)
