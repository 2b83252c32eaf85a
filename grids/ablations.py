"""The paper's ablations (Table 4): every model ablation of
:data:`braindecode_speech.models.TABLE4_ABLATIONS`, the clamping variants, and three more:
no baseline correction, CHARM-like channel reordering instead of position-based spatial
attention, and fewer training subjects (Gwilliams: the first 13 of 27). 4 studies × 3 seeds,
each run on 2 GPUs with per-GPU negatives as in the paper. Row names follow Table 4, and
``grid table`` writes the paper's numbers beside ours (``comparison.md``).

    braindecode-speech grid run grids/ablations.py --executor slurm --data /datasets
"""

from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments.analysis import compare_with_paper
from braindecode_speech.experiments.grid import Grid, SlurmConfig, product, values, variants
from braindecode_speech.models import TABLE4_ABLATIONS

STUDIES = ["schoffelen2019", "gwilliams2022", "broderick2019", "brennan2019"]
SEEDS = [2036, 2037, 2038]
ABLATIONS = {
    "our model": {},
    **{name: {f"model.{key}": value for key, value in overrides.items()}
       for name, overrides in TABLE4_ABLATIONS.items()},
    "clamp = 100": {"norm.clamp": 100.0},
    "w/o clamping": {"norm.clamp": None},
    "w/o baseline": {"norm.baseline": False},
    "CHARM reordering instead of positions": {"model.merger": "signal"},
}
GWILLIAMS_HALF = [f"{i:02d}" for i in range(1, 14)]

GRID = Grid(
    base=ExperimentConfig().with_overrides({"optim.negatives": "per_process"}),
    points=product(values("study.name", STUDIES), variants("ablation", ABLATIONS),
                   values("optim.seed", SEEDS))
    + product(values("study.name", ["gwilliams2022"]),
              variants("ablation", {"fewer subjects (13 of 27)":
                                    {"study.subjects": GWILLIAMS_HALF}}),
              values("optim.seed", SEEDS)),
    slurm=SlurmConfig(tasks_per_node=2, gpus_per_task=1),
    compare=lambda summary: compare_with_paper(summary, "table4", row_column="ablation"),
)
