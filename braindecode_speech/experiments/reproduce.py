"""The reproduction grids behind ``studies/<study>.py``: the paper's protocol on one study.

- a public study (``gwilliams2022``, ``schoffelen2019``, ``broderick2019``, ``brennan2019``): the
  paper's configuration (``ExperimentConfig()``) with its 3 seeds, each run on 2 GPUs with
  per-GPU negatives as in the paper; the table puts top-10 segment accuracy beside the paper's
  Table 2 ("+ wav2vec 2.0 (ours)") and Table 4 ("our model") numbers
  (:func:`~braindecode_speech.experiments.analysis.compare_paper_configuration`);
- ``simulated``: the test-sized CPU configuration (:data:`.presets.TINY_OVERRIDES`) with the
  same 3 seeds, small enough to run on a laptop; no published numbers to compare with.

Every run trains the controls' null model (on mismatched brain/speech pairs) beside it. The
command line of the scripts is :func:`braindecode_speech.cli.grid.run_reproduction`.
"""

from __future__ import annotations

from ..config import ConfigError
from .analysis import compare_paper_configuration
from .config import ExperimentConfig
from .grid import Grid, SlurmConfig, product, values
from .presets import TINY_OVERRIDES

__all__ = ["PAPER_SEEDS", "PUBLIC_STUDIES", "reproduction_grid"]

#: the paper's three seeds
PAPER_SEEDS = (2036, 2037, 2038)
#: the studies with published numbers
PUBLIC_STUDIES = ("gwilliams2022", "schoffelen2019", "broderick2019", "brennan2019")


def reproduction_grid(study: str) -> Grid:
    """The grid ``reproduce_<study>`` (``study``: one of :data:`PUBLIC_STUDIES` or
    ``"simulated"``), see the module docstring."""
    seeds = product(values("study.name", [study]), values("optim.seed", PAPER_SEEDS))
    if study == "simulated":
        return Grid(base=ExperimentConfig().with_overrides(
                        {**TINY_OVERRIDES, "evaluation.train_null": True}),
                    points=seeds, slurm=SlurmConfig(gpus_per_task=0, cpus_per_task=2,
                                                    timeout_min=60),
                    name="reproduce_simulated")
    if study not in PUBLIC_STUDIES:
        raise ConfigError(f"no reproduction grid for study {study!r}; known: "
                          f"{', '.join((*PUBLIC_STUDIES, 'simulated'))}")
    return Grid(base=ExperimentConfig().with_overrides(
                    {"optim.negatives": "per_process", "evaluation.train_null": True}),
                points=seeds, slurm=SlurmConfig(tasks_per_node=2, gpus_per_task=1),
                name=f"reproduce_{study}", compare=compare_paper_configuration)
