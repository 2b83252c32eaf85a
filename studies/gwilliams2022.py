"""Reproduce Défossez et al. 2023 on Gwilliams et al. 2022 (MEG-MASC: 27 subjects, 208-channel KIT
MEG, English stories): the paper's configuration with its 3 seeds on 2 GPUs each, then top-10
segment accuracy beside the paper's Tables 2 and 4."""

from braindecode_speech.cli.grid import run_reproduction

if __name__ == "__main__":  # options first, so that --help does not wait for torch
    raise SystemExit(run_reproduction("gwilliams2022", __file__, __doc__))

from braindecode_speech.experiments.reproduce import reproduction_grid  # noqa: E402

GRID = reproduction_grid("gwilliams2022")
