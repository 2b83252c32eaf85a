"""Reproduce Défossez et al. 2023 on Broderick et al. 2019 (19 subjects, 128-channel EEG, an
English audiobook): the paper's configuration with its 3 seeds on 2 GPUs each, then top-10
segment accuracy beside the paper's Tables 2 and 4."""

from braindecode_speech.cli.grid import run_reproduction

if __name__ == "__main__":  # options first, so that --help does not wait for torch
    raise SystemExit(run_reproduction("broderick2019", __file__, __doc__))

from braindecode_speech.experiments.reproduce import reproduction_grid  # noqa: E402

GRID = reproduction_grid("broderick2019")
