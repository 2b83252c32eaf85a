"""Per-subject analyses on Gwilliams (MEG-MASC, 27 subjects): accuracy as a function of the
number of training subjects (the first n subjects, n = 3..27, 3 seeds), and one model per
subject (seed 2036) to compare with the per-subject accuracy of the multi-subject model
(``per_subject.csv`` of each run). Each model is evaluated on the test sentences of its own
subjects. Each run uses 2 GPUs with per-GPU negatives, as in the paper.

    braindecode-speech grid run grids/per_subject.py --executor slurm --data /datasets
"""

from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments.grid import Grid, SlurmConfig, product, values, variants

SUBJECTS = [f"{i:02d}" for i in range(1, 28)]
SEEDS = [2036, 2037, 2038]
FIRST_N = {f"first {n}": {"study.subjects": SUBJECTS[:n]} for n in range(3, 28, 3)}
SINGLE = {f"only {s}": {"study.subjects": [s]} for s in SUBJECTS}

GRID = Grid(
    base=ExperimentConfig().with_overrides({"study.name": "gwilliams2022",
                                            "optim.negatives": "per_process"}),
    points=product(variants("training subjects", FIRST_N), values("optim.seed", SEEDS))
    + product(variants("training subjects", SINGLE), values("optim.seed", SEEDS[:1])),
    slurm=SlurmConfig(tasks_per_node=2, gpus_per_task=1),
)
