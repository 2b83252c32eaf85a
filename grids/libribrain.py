"""The LibriBrain 2025 competition's tasks on LibriBrain (one subject, ~50 h of MEG): speech
detection and phoneme classification (scored on each window alone, ``model``, and on windows
of the same phoneme averaged 100 at a time as in the competition's phoneme track,
``averaged``: one training, both numbers), 3 seeds each, with the paper's encoder and the
official validation and test runs (``splits`` follows the study's ``fixed_split``).
Neither task needs the audiobook's audio (retrieval on LibriBrain does: see ``check``).

    braindecode-speech grid run grids/libribrain.py --executor slurm --data /datasets/LibriBrain
    braindecode-speech grid table grids/libribrain.py

The table lists F1-macro (the competition's metric) and balanced accuracy with their chance
levels and the shuffled-label control; the competition's published scores are in the README.
"""

from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments.grid import Grid, SlurmConfig, product, values, variants
from braindecode_speech.experiments.presets import TASK_OVERRIDES

SEEDS = [2036, 2037, 2038]
TASKS = {
    "speech detection": TASK_OVERRIDES["speech_detection"],
    "phoneme classification": {**TASK_OVERRIDES["phoneme_classification"], "task.average": 100},
}

GRID = Grid(
    base=ExperimentConfig().with_overrides({"study.name": "libribrain2025"}),
    points=product(variants("task", TASKS), values("optim.seed", SEEDS)),
    slurm=SlurmConfig(gpus_per_task=1),
    table_metrics=("model.f1_macro", "chance.f1_macro", "majority.f1_macro",
                   "model.balanced_accuracy", "model.shuffled.f1_macro",
                   "model.surrogate.f1_macro", "averaged.f1_macro", "averaged.chance.f1_macro",
                   "averaged.shuffled.f1_macro"),
    plot_metric="f1_macro",
)
