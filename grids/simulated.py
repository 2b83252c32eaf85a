"""A grid that runs on a laptop: the simulated study (``braindecode_speech.simulation``) with the
seconds-long CPU configuration of the test suite (``presets.TINY_OVERRIDES``: mel features, a
small encoder, 2 short epochs). Contrastive vs regression objective vs the untrained model,
2 seeds::

    python studies/simulated.py --data /tmp/simulated   # generates the study, runs 3 seeds
    braindecode-speech grid run grids/simulated.py --data /tmp/simulated --table
"""

from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments.grid import Grid, SlurmConfig, product, values, variants
from braindecode_speech.experiments.presets import TINY_OVERRIDES

MODELS = {
    "contrastive": {},
    "regression": {"loss.name": "mse"},
    "untrained": {"optim.max_epochs": 0},
}

GRID = Grid(
    # with the controls' null model (trained on mismatched brain/speech pairs) beside each run
    base=ExperimentConfig().with_overrides({**TINY_OVERRIDES, "study.name": "simulated",
                                            "evaluation.train_null": True}),
    points=product(variants("model", MODELS), values("optim.seed", [2036, 2037])),
    slurm=SlurmConfig(gpus_per_task=0, cpus_per_task=2, timeout_min=60),
)
