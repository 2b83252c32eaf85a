"""Reproduce Défossez et al. 2023 on Broderick et al. 2019 (19 subjects, 128-channel EEG,
an English audiobook).

The paper's configuration (``ExperimentConfig()``) with its 3 seeds, each run on 2 GPUs with
per-GPU negatives as in the paper; then a table of top-10 segment accuracy beside the paper's
Table 2 ("+ wav2vec 2.0 (ours)") and Table 4 ("our model") numbers::

    python studies/broderick2019.py --data /datasets/broderick2019 --executor slurm
    # once the jobs are done, the same command writes the comparison table:
    #   runs/reproduce_broderick2019/comparison.md
    python studies/broderick2019.py --data /datasets/broderick2019 --executor slurm

Every option of ``braindecode-speech grid run`` applies (``--dry-run``, ``--root``, SLURM
resources, ``--executor local --tasks-per-node 1`` on a workstation). This file is also a
grid file: ``braindecode-speech grid status studies/broderick2019.py``.
"""

import sys

from braindecode_speech.cli import main
from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments.analysis import compare_paper_configuration
from braindecode_speech.experiments.grid import Grid, SlurmConfig, product, values

GRID = Grid(
    # the controls' null model (trained on mismatched brain/speech pairs) beside each run
    base=ExperimentConfig().with_overrides({"optim.negatives": "per_process",
                                            "evaluation.train_null": True}),
    points=product(values("study.name", ["broderick2019"]),
                   values("optim.seed", [2036, 2037, 2038])),
    slurm=SlurmConfig(tasks_per_node=2, gpus_per_task=1),
    name="reproduce_broderick2019",
    compare=compare_paper_configuration,
)

if __name__ == "__main__":
    sys.exit(main(["grid", "run", __file__, "--table", *sys.argv[1:]]))
