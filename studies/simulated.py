"""The reproduction protocol on the simulated study, small enough to run here: generate the
study (``braindecode_speech.simulation``, preset ``tiny`` by default) in ``--data`` unless it is
already there, train the test-sized CPU configuration (``presets.TINY_OVERRIDES``) with the
paper's 3 seeds, and write the table (mean ± s.e.m. over seeds, with chance; there are no
published numbers for a simulated study)::

    python studies/simulated.py --data /tmp/simulated [--preset demo] [--executor debug]
"""

from braindecode_speech.cli.grid import run_reproduction

if __name__ == "__main__":  # options first, so that --help does not wait for torch
    raise SystemExit(run_reproduction("simulated", __file__, __doc__))

from braindecode_speech.experiments.reproduce import reproduction_grid  # noqa: E402

GRID = reproduction_grid("simulated")
