"""The paper's main comparison (Table 2): 4 studies × 3 seeds × speech representation
(wav2vec 2.0, mel spectrogram) × objective (contrastive CLIP, MSE regression), plus the
untrained model (Table 2's "random" row). Row names follow Table 2, and ``grid table`` writes
the paper's numbers beside ours (``comparison.md``). Table 2's "+ Deep Mel" row (a speech
module learned jointly with the brain encoder) is not part of this package.

The paper trained with a batch of 256 over 2 GPUs, each contrasting its 128 windows with its
own 128 segments: each run uses 2 processes with per-process negatives.

    braindecode-speech grid run grids/main_table.py --executor slurm --data /datasets
    braindecode-speech grid table grids/main_table.py
"""

from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments.analysis import compare_with_paper
from braindecode_speech.experiments.grid import Grid, SlurmConfig, product, values, variants

STUDIES = ["schoffelen2019", "gwilliams2022", "broderick2019", "brennan2019"]
SEEDS = [2036, 2037, 2038]
MODELS = {
    "random": {"optim.max_epochs": 0},
    "base (Mel regression)": {"features.name": "mel", "loss.name": "mse"},
    "+ contrastive": {"features.name": "mel"},
    "wav2vec 2.0 regression": {"loss.name": "mse"},
    "+ wav2vec 2.0 (ours)": {},
}

GRID = Grid(
    base=ExperimentConfig().with_overrides({"optim.negatives": "per_process"}),
    points=product(values("study.name", STUDIES), variants("model", MODELS),
                   values("optim.seed", SEEDS)),
    slurm=SlurmConfig(tasks_per_node=2, gpus_per_task=1),
    compare=lambda summary: compare_with_paper(summary, "table2", row_column="model"),
)
