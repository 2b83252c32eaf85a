"""Reproduce Défossez et al. 2023 on Schoffelen et al. 2019 (MOUS: 96 subjects of the auditory
task, 273-channel CTF MEG, Dutch sentences): the paper's configuration with its 3 seeds on 2
GPUs each, then top-10 segment accuracy beside the paper's Tables 2 and 4."""

from braindecode_speech.cli.grid import run_reproduction

if __name__ == "__main__":  # options first, so that --help does not wait for torch
    raise SystemExit(run_reproduction("schoffelen2019", __file__, __doc__))

from braindecode_speech.experiments.reproduce import reproduction_grid  # noqa: E402

GRID = reproduction_grid("schoffelen2019")
