"""``braindecode-speech grid run|status|table FILE``: grids of experiments (see
:mod:`braindecode_speech.experiments.grid`)."""

from __future__ import annotations

import argparse
import os

HELP = "run a grid of experiments (SLURM, local or debug), show its status, tabulate its results"

_EPILOG = """\
examples:
  braindecode-speech grid run grids/main_table.py --executor slurm --data /datasets --dry-run
  braindecode-speech grid run grids/simulated.py --executor local --data simulated=/tmp/sim
  braindecode-speech grid status grids/main_table.py
  braindecode-speech grid table grids/main_table.py

Runs live in ROOT/<grid name>/<config signature>/. `run` skips finished runs and runs in
progress and resumes the others from their last checkpoint; SLURM jobs requeue themselves when
preempted or timed out. SLURM options override the grid file's `slurm` section.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    run = actions.add_parser("run", help="submit the runs that are not done or in progress")
    _add_run_arguments(run)
    run.add_argument("--table", action="store_true",
                     help="then, if every run is done, write the table (as `grid table`)")

    show = actions.add_parser("status", help="state of every run, last log lines of failures")
    show.add_argument("--lines", type=int, default=10,
                      help="log lines shown per failed run (default: 10)")
    actions.add_parser("table", help="metrics, mean ± s.e.m. over seeds: CSV, Markdown, PNG")
    for sub in actions.choices.values():
        sub.add_argument("file", metavar="FILE", help="grid file (defines GRID = Grid(...))")
        _add_root_argument(sub)


def _add_root_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default="runs", help="folder of the grids' runs "
                                                       "(default: runs)")


def _add_run_arguments(parser: argparse.ArgumentParser, data: bool = True) -> None:
    """The options of ``grid run`` (``data=False``: all but ``--data``)."""
    parser.add_argument("--executor", choices=["slurm", "local", "debug"], default="local",
                        help="slurm: job array; local: subprocesses on this machine; debug: "
                             "in this process, one after the other, a failure opens pdb "
                             "(default: local)")
    if data:
        parser.add_argument("--data", action="append", default=[], metavar="[STUDY=]PATH",
                            help="local copy of a study (STUDY=PATH, repeatable), or one "
                                 "folder: the study itself in a single-study grid, else a "
                                 "folder with one sub-folder per study (PATH/<study name>)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs and what would be submitted, submit nothing")
    parser.add_argument("--jobs", type=int, default=1,
                        help="local executor: runs at the same time (default: 1)")
    group = parser.add_argument_group("SLURM resources (override the grid file)")
    for flag, kind, text in [
        ("--partition", str, "partition"), ("--account", str, "account"),
        ("--qos", str, "quality of service"), ("--constraint", str, "node features"),
        ("--nodes", int, "nodes per run"),
        ("--tasks-per-node", int, "processes per node, one per GPU (DDP when > 1)"),
        ("--gpus-per-task", int, "GPUs per process"), ("--cpus-per-task", int, "CPUs per process"),
        ("--mem-gb", float, "memory per node, GB"), ("--timeout-min", int, "wall time, minutes"),
        ("--array-parallelism", int, "runs at the same time"),
        ("--max-requeues", int, "requeues after a time-out"),
    ]:
        group.add_argument(flag, type=kind, help=text)


def _slurm_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The SLURM options given on the command line, as ``SlurmConfig`` overrides."""
    from ..experiments.grid import SlurmConfig

    return {key: getattr(args, key) for key in SlurmConfig.model_fields
            if getattr(args, key, None) is not None}


def _parse_data(items: list[str]) -> dict[str, str] | str | None:
    """``--data`` values: ``STUDY=PATH`` pairs, or one folder of studies."""
    if not items:
        return None
    pairs = [item.split("=", 1) for item in items if "=" in item]
    folders = [item for item in items if "=" not in item]
    if folders and (pairs or len(folders) > 1):
        from ..config import ConfigError

        raise ConfigError(f"--data {' '.join(items)}: give either one folder of studies, or "
                          "STUDY=PATH pairs")
    return folders[0] if folders else dict(pairs)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..experiments import grid as grids

    grid = grids.load_grid(args.file)
    if args.action == "run":
        grid.slurm = grid.slurm.with_overrides(_slurm_overrides(args))
        table = grids.launch(grid, args.root, args.executor, _parse_data(args.data), args.dry_run,
                             args.jobs)
        columns = [*grids.label_columns(grid), grids.SEED_KEY, "signature", "state",
                   "submitted"]
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(table[[c for c in columns if c in table]].to_string(index=False))
        verb = "would submit" if args.dry_run else "submitted"
        print(f"{grid.name}: {verb} {int(table['submitted'].sum())} of {len(table)} runs "
              f"({int((table['state'] == 'done').sum())} done)")
        if args.dry_run:
            if args.executor == "slurm":
                print("sbatch parameters:", grids.slurm_parameters(grid.slurm, grid.name))
            return 0
        states = grids.status(grid, args.root, log_lines=0)["state"]
        print(", ".join(f"{n} {state}" for state, n in states.value_counts().items()))
        if args.table:
            if (states == "done").all():
                _print_tables(grids.write_summary(grid, args.root))
            else:
                print(f"the table is written once every run is done: "
                      f"braindecode-speech grid table {args.file} --root {args.root}")
        return int(args.executor != "slurm" and (states == "failed").any())
    if args.action == "status":
        table = grids.status(grid, args.root, log_lines=args.lines)
        columns = [*grids.label_columns(grid), grids.SEED_KEY, "signature", "state", "epochs",
                   "job_id", "detail"]
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(table[[c for c in columns if c in table]].to_string(index=False))
        print(", ".join(f"{n} {state}" for state, n in table["state"].value_counts().items()))
        for _, row in table[table["state"] == "failed"].iterrows():
            print(f"\n--- failed: {row['signature']} ({row['detail']}) ---\n{row['log']}")
        return 0
    _print_tables(grids.write_summary(grid, args.root))
    return 0


def _print_tables(paths: dict) -> None:
    print(paths["markdown"].read_text())
    if "comparison_markdown" in paths:
        print("Beside the published numbers (top-10 segment accuracy, %):")
        print(paths["comparison_markdown"].read_text())
    print("written:", ", ".join(str(p) for p in paths.values()))


_REPRODUCTION_EPILOG = """\
example:
  python {file} --data {data} --executor {executor}
Runs live in ROOT/reproduce_{study}/<config signature>/. A second call skips finished runs,
resumes the others from their last checkpoint and, once every run is done, writes the table
(public studies: comparison.md beside the paper's numbers). The script is also a grid file:
  braindecode-speech grid status {file}
  braindecode-speech grid table {file}
"""


def run_reproduction(study: str, file: str, description: str | None = None,
                     argv: list[str] | None = None) -> int:
    """The command line of the reproduction script ``file`` (``studies/<study>.py``, whose
    ``GRID`` is :func:`~braindecode_speech.experiments.reproduce.reproduction_grid`): ``grid run
    FILE --table`` with the options of ``grid run``; for ``simulated``, ``--data`` is where the
    study is generated (``--preset``) unless it is already there.

    ``description`` (the script's docstring) heads ``--help``; ``argv`` defaults to
    ``sys.argv[1:]``. Returns the exit code.
    """
    from . import run_command

    simulated = study == "simulated"
    epilog = _REPRODUCTION_EPILOG.format(
        file=os.path.relpath(file), study=study,
        data="/tmp/simulated" if simulated else f"/datasets/{study}",
        executor="debug" if simulated else "slurm")
    parser = argparse.ArgumentParser(description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v: info, -vv: debug)")
    if simulated:
        parser.add_argument("--data", required=True, metavar="PATH",
                            help="folder of the simulated study (generated unless present)")
        parser.add_argument("--preset", default="tiny", choices=["tiny", "demo", "large"],
                            help="simulated study to generate (default: tiny)")
    _add_run_arguments(parser, data=not simulated)
    _add_root_argument(parser)
    args = parser.parse_args(argv)
    args.action, args.file, args.table = "run", file, True

    def command(args: argparse.Namespace) -> int:
        if simulated:
            from ..simulation import SimulationConfig, simulate

            simulate(SimulationConfig.preset(args.preset), args.data)
            args.data = [args.data]
        return run(args)

    return run_command(command, args)
