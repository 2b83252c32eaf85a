"""Grids of experiments: declared in small Python files, run through submitit (SLURM, local
processes or in-process debugging), resumed after preemption and summarised in tables.

A grid file defines ``GRID``, e.g.::

    from braindecode_speech.experiments import ExperimentConfig
    from braindecode_speech.experiments.grid import Grid, SlurmConfig, product, values

    GRID = Grid(
        base=ExperimentConfig(),
        points=product(values("features.name", ["wav2vec2", "mel"]),
                       values("optim.seed", [2036, 2037, 2038])),
        slurm=SlurmConfig(partition="learnfair", timeout_min=24 * 60),
    )

Every point of the grid is a set of dotted overrides of ``base`` plus *labels*, the columns
that describe it in tables (by default the overridden keys and their values; :func:`variants`
gives named ablations a single readable column). The run of a point lives in
``<root>/<grid name>/<signature>/``, ``signature`` being the hash of its resolved config (the
data's location is not part of it). Launching again skips finished runs (``report.json``
present) and runs in progress, and resumes the others from their ``checkpoint.pt``; on SLURM a
preempted or timed-out job is requeued by submitit (:meth:`GridJob.checkpoint`) and resumes the
same way.

Files of a run folder written here: ``job.json`` (the job that was submitted, written by the
launcher) and ``status.json`` (``running``/``failed`` with the traceback, written by the job).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import psutil
import submitit
from pydantic import Field

from ..config import Config, ConfigError
from ..evaluation.report import flat_metrics, read_report
from ..fileio import atomic_path
from ..training import distributed
from .config import ExperimentConfig
from .run import run_experiment

__all__ = ["Point", "Grid", "GridRun", "GridJob", "SlurmConfig", "Executor", "values",
           "variants", "product", "zipped", "load_grid", "make_executor", "slurm_parameters",
           "resolve_runs", "launch", "status", "label_columns", "results", "summarize", "markdown",
           "markdown_table", "write_summary", "SEED_KEY"]

logger = logging.getLogger(__name__)

Executor = Literal["slurm", "local", "debug"]

#: the override key of the seeds; tables average over it
SEED_KEY = "optim.seed"
#: columns of the Markdown table, from the metrics of ``report.json``
DEFAULT_TABLE_METRICS = ("model.segment.top1", "model.segment.top5", "model.segment.top10",
                         "model.word.top10", "ridge.segment.top10", "chance.segment.top10",
                         "model.within_recording.top10", "chance.within_recording.top10",
                         "ceiling.recording.top10")
_STATE_FILE, _JOB_FILE, _LOGS = "status.json", "job.json", "_submitit"


# -- declaring grids ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One point of a grid: dotted config ``overrides`` and the ``labels`` naming it in tables."""

    overrides: dict[str, Any]
    labels: dict[str, Any]


Axis = Sequence[Point] | Mapping[str, Sequence[Any]]


def values(key: str, options: Iterable[Any]) -> list[Point]:
    """One point per value of the config key ``key`` (labelled by that key)."""
    return [Point({key: value}, {key: value}) for value in options]


def variants(column: str, named: Mapping[str, Mapping[str, Any]]) -> list[Point]:
    """Named sets of overrides, e.g. ablations: ``variants("ablation", {"full model": {},
    "w/o clamping": {"norm.clamp": None}})``, labelled ``{column: name}``."""
    return [Point(dict(overrides), {column: name}) for name, overrides in named.items()]


def _axes(axes: tuple[Axis, ...]) -> list[list[Point]]:
    """Points of each axis; a mapping ``{key: options}`` is one axis per key."""
    out: list[list[Point]] = []
    for axis in axes:
        if isinstance(axis, Mapping):
            out.extend(values(key, options) for key, options in axis.items())
        else:
            out.append(list(axis))
    return out


def _merge(points: Sequence[Point]) -> Point:
    overrides: dict[str, Any] = {}
    labels: dict[str, Any] = {}
    for point in points:
        clash = set(overrides) & set(point.overrides)
        if clash:
            raise ConfigError(f"Grid axes override the same keys: {sorted(clash)}")
        overrides.update(point.overrides)
        labels.update(point.labels)
    return Point(overrides, labels)


def product(*axes: Axis) -> list[Point]:
    """Every combination of one point per axis (the last axis varies fastest)."""
    return [_merge(combo) for combo in itertools.product(*_axes(axes))]


def zipped(*axes: Axis) -> list[Point]:
    """The i-th points of all axes together; the axes must have the same length."""
    lists = _axes(axes)
    if len({len(points) for points in lists}) > 1:
        raise ConfigError(f"zipped axes differ in length: {[len(p) for p in lists]}")
    return [_merge(combo) for combo in zip(*lists)]


class SlurmConfig(Config):
    """Resources of every run of a grid. SLURM uses all of them; the local executor uses
    ``tasks_per_node`` (processes of a run), ``gpus_per_task`` and ``timeout_min``."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    """node features, e.g. ``volta32gb``"""
    nodes: int = Field(1, ge=1)
    tasks_per_node: int = Field(1, ge=1)
    """processes per node, one per GPU (several: distributed data-parallel training)"""
    gpus_per_task: int = Field(1, ge=0)
    cpus_per_task: int = Field(10, ge=1)
    mem_gb: float | None = Field(None, gt=0)
    """memory per node (None: the partition's default)"""
    timeout_min: int = Field(24 * 60, ge=1)
    """wall time of one job; a timed-out run is requeued and resumes"""
    array_parallelism: int = Field(64, ge=1)
    """runs of the grid running at the same time"""
    max_requeues: int = Field(5, ge=0)
    """requeues after a time-out (requeues after a preemption are not counted)"""
    signal_delay_s: int = Field(120, ge=1)
    """the job is warned this long before it is killed, to requeue itself"""
    setup: list[str] = Field(default_factory=list)
    """shell lines run before the job (``module load ...``, ``source venv/bin/activate``)"""


@dataclass
class Grid:
    """A base config, the points to run and the resources of each run."""

    base: ExperimentConfig
    points: list[Point]
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    name: str | None = None
    """folder name of the grid's runs (default: the grid file's name)"""
    table_metrics: tuple[str, ...] = DEFAULT_TABLE_METRICS
    plot_metric: str = "segment.top10"
    """level.topk drawn in the bar plot (model, ridge and chance)"""
    compare: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    """maps the grid's summary (:func:`summarize`) to a table comparing it with published
    numbers (e.g. :func:`braindecode_speech.experiments.analysis.paper_comparison`), written beside it"""


@dataclass(frozen=True)
class GridRun:
    """One run of a grid: resolved config, labels, signature and folder."""

    config: ExperimentConfig
    labels: dict[str, Any]
    signature: str
    folder: Path


def load_grid(path: str | Path) -> Grid:
    """The ``GRID`` defined by the Python file ``path`` (named after the file if unnamed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such grid file")
    spec = importlib.util.spec_from_file_location(f"_grid_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    grid = getattr(module, "GRID", None)
    if not isinstance(grid, Grid):
        raise ConfigError(f"{path} must define GRID = Grid(...), found {type(grid).__name__}")
    if grid.name is None:
        grid.name = path.stem
    return grid


def resolve_runs(grid: Grid, root: str | Path, data: Mapping[str, str] | str | None = None) \
        -> list[GridRun]:
    """The runs of ``grid`` under ``root``. ``data`` gives the local copy of each study whose
    ``study.root`` the grid leaves unset: ``{study name: path}``, or one folder: the study's
    own folder if the grid has a single study, else a folder holding one sub-folder per study
    (``<data>/<study name>``)."""
    if grid.name is None:
        raise ConfigError("the grid has no name (load it with load_grid or set Grid.name)")
    configs = [grid.base.with_overrides(point.overrides) for point in grid.points]
    single_study = len({config.study.name for config in configs}) == 1
    runs, seen = [], {}
    for point, config in zip(grid.points, configs):
        if config.study.root is None and data is not None:
            if isinstance(data, Mapping):
                if config.study.name not in data:
                    raise ConfigError(f"no data folder given for study {config.study.name!r} "
                                      f"(given: {sorted(data)})")
                study_root = Path(data[config.study.name])
            else:
                study_root = Path(data) if single_study else Path(data) / config.study.name
            config = config.with_overrides({"study.root": str(study_root)})
        signature = config.signature()
        if signature in seen:
            raise ConfigError(f"grid {grid.name}: points {seen[signature]} and {point.labels} "
                              "resolve to the same config")
        seen[signature] = point.labels
        runs.append(GridRun(config, point.labels, signature, Path(root) / grid.name / signature))
    return runs


# -- running ------------------------------------------------------------------------------------


def _write_json(path: Path, content: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=1))


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


class GridJob(submitit.helpers.Checkpointable):
    """What a submitted job runs: the experiment of ``config`` in ``folder`` (resumed from its
    ``checkpoint.pt`` when there is one)."""

    def __init__(self, config: ExperimentConfig, folder: str | Path) -> None:
        self.config = config
        self.folder = Path(folder)

    def __call__(self) -> dict[str, Any] | None:
        """Run the experiment; return its ``report.json`` content (on rank 0; None on the
        other processes of a multi-process run)."""
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        process = distributed.init_process_group()
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        if process.rank == 0:
            _write_json(self.folder / _STATE_FILE, {"state": "running", **state})
        try:
            run_experiment(self.config, self.folder)
        except Exception:
            _write_json(self.folder / _STATE_FILE,
                        {"state": "failed", **state, "error": traceback.format_exc()})
            raise
        if process.rank != 0:
            return None
        return read_report(self.folder / "report.json")

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """Called by submitit when the job is preempted or times out: requeue the same run,
        which resumes from the last ``checkpoint.pt`` of its folder."""
        logger.warning("Requeuing %s", self.folder)
        return submitit.helpers.DelayedSubmission(GridJob(self.config, self.folder))


def slurm_parameters(slurm: SlurmConfig, name: str) -> dict[str, Any]:
    """Parameters of :class:`submitit.SlurmExecutor` (sbatch options) for ``slurm``."""
    params: dict[str, Any] = {
        "job_name": name, "partition": slurm.partition, "account": slurm.account,
        "qos": slurm.qos, "constraint": slurm.constraint, "nodes": slurm.nodes,
        "ntasks_per_node": slurm.tasks_per_node,
        "gpus_per_task": slurm.gpus_per_task or None, "cpus_per_task": slurm.cpus_per_task,
        "mem": None if slurm.mem_gb is None else f"{round(slurm.mem_gb * 1024)}MB",
        "time": slurm.timeout_min, "array_parallelism": slurm.array_parallelism,
        "signal_delay_s": slurm.signal_delay_s, "setup": list(slurm.setup) or None,
        # scontrol requeue (submitit's requeue) needs requeue-able jobs on every cluster
        "additional_parameters": {"requeue": True},
    }
    return {key: value for key, value in params.items() if value is not None}


def make_executor(kind: Executor, folder: str | Path, slurm: SlurmConfig,
                  name: str = "braindecode-speech") -> submitit.Executor:
    """A submitit executor writing its logs to ``folder``."""
    if kind == "debug":
        return submitit.DebugExecutor(folder)
    if kind == "local":
        import torch

        executor = submitit.LocalExecutor(folder, max_num_timeout=slurm.max_requeues)
        gpus = slurm.gpus_per_task * slurm.tasks_per_node if torch.cuda.is_available() else 0
        executor.update_parameters(timeout_min=slurm.timeout_min, gpus_per_node=gpus,
                                   tasks_per_node=slurm.tasks_per_node,
                                   signal_delay_s=slurm.signal_delay_s)
        return executor
    if kind == "slurm":
        executor = submitit.SlurmExecutor(folder, max_num_timeout=slurm.max_requeues)
        executor.update_parameters(**slurm_parameters(slurm, name))
        return executor
    raise ValueError(f"Unknown executor {kind!r}: use slurm, local or debug")


def launch(grid: Grid, root: str | Path, executor: Executor,
           data: Mapping[str, str] | str | None = None, dry_run: bool = False,
           local_jobs: int = 1) -> pd.DataFrame:
    """Submit the runs of ``grid`` that are new or failed (not those done, pending or
    running); return the status table (:func:`status`) before submission, with a
    ``submitted`` column.

    SLURM runs are submitted as one job array and this returns at once. Local runs use
    ``local_jobs`` processes at a time, debug runs run one after the other in this process;
    both return when all are over (a failed run is logged, not raised).
    """
    runs = resolve_runs(grid, root, data)
    table = status(grid, root, data, log_lines=0)
    todo = [run for run, state in zip(runs, table["state"]) if state in ("new", "failed")]
    table["submitted"] = table["signature"].isin({run.signature for run in todo})
    if dry_run or not todo:
        return table
    no_data = sorted({run.config.study.name for run in todo if run.config.study.root is None})
    if no_data:
        raise ConfigError(f"grid {grid.name}: where are the local copies of {no_data}? "
                          "(give data, the --data option)")
    logs = Path(root) / grid.name / _LOGS
    ex = make_executor(executor, logs, grid.slurm, grid.name)
    for run in todo:  # a new attempt: forget the state of the previous one
        run.folder.mkdir(parents=True, exist_ok=True)
        (run.folder / _STATE_FILE).unlink(missing_ok=True)
    if executor == "slurm":
        with ex.batch():
            jobs = [ex.submit(GridJob(run.config, run.folder)) for run in todo]
        for run, job in zip(todo, jobs):
            _record_job(run, job, executor, logs)
        logger.info("Submitted %d runs of %s as SLURM array %s", len(jobs), grid.name,
                    jobs[0].job_id.split("_")[0])
        return table
    active: list[tuple[submitit.Job, GridRun]] = []
    for run in todo:
        while len(active) >= local_jobs:
            time.sleep(0.5)
            for job, done in [(job, done) for job, done in active if job.done()]:
                _wait(job, done)
                active.remove((job, done))
        job = ex.submit(GridJob(run.config, run.folder))
        _record_job(run, job, executor, logs)
        if executor == "debug":  # runs here, now
            _wait(job, run)
        else:
            active.append((job, run))
    for job, run in active:
        _wait(job, run)
    return table


def _record_job(run: GridRun, job: submitit.Job, executor: str, logs: Path) -> None:
    _write_json(run.folder / _JOB_FILE, {"job_id": job.job_id, "executor": executor,
                                         "logs": str(logs), "submitted": time.time(),
                                         "host": socket.gethostname()})


def _wait(job: submitit.Job, run: GridRun) -> None:
    try:
        job.result()
    except Exception as exc:  # the run wrote its traceback; `grid status` shows it
        logger.error("Run %s failed: %s", run.folder, str(exc).strip().splitlines()[-1])


# -- status -------------------------------------------------------------------------------------

_SLURM_WAITING = {"PENDING", "REQUEUED", "CONFIGURING", "REQUEUE_HOLD", "REQUEUE_FED",
                  "RESV_DEL_HOLD", "SUSPENDED", "RESIZING"}
_SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


def _slurm_state(job_id: str) -> str:
    """SLURM's state of the job (``UNKNOWN`` when ``sacct`` cannot tell)."""
    return submitit.SlurmJob.watcher.get_state(job_id, mode="force").split(" ")[0]


def _alive(host: str, pid: int) -> bool | None:
    """Whether process ``pid`` of ``host`` runs (None: another host, cannot tell)."""
    return psutil.pid_exists(pid) if host == socket.gethostname() else None


def _log_tail(job: dict[str, Any] | None, state: dict[str, Any] | None, n_lines: int) -> str:
    """Last ``n_lines`` of the job's error log, else of the traceback the run recorded."""
    if n_lines <= 0:
        return ""
    text = ""
    if job is not None and job["executor"] != "debug":
        paths = submitit.core.utils.JobPaths(job["logs"], job["job_id"], task_id=0)
        if paths.stderr.exists():
            text = paths.stderr.read_text(errors="replace")
    if not text.strip() and state is not None:
        text = state.get("error", "")
    return "\n".join(text.rstrip().splitlines()[-n_lines:])


def _run_state(folder: Path) -> tuple[str, str]:
    """``(state, detail)`` of the run in ``folder``: new, pending, running, done or failed."""
    if (folder / "report.json").exists():
        return "done", ""
    job, state = _read_json(folder / _JOB_FILE), _read_json(folder / _STATE_FILE)
    if job is None:
        return ("failed", "ran outside a grid job") if state else ("new", "")
    if state is not None and state["state"] == "failed":
        return "failed", "raised an exception"
    if job["executor"] == "slurm":
        scheduler = _slurm_state(job["job_id"])
        if scheduler in _SLURM_WAITING:
            return "pending", scheduler
        if scheduler in _SLURM_RUNNING:
            return "running", ""
        if scheduler != "UNKNOWN":
            return "failed", f"SLURM job ended ({scheduler}) without a report"
    if state is None:
        launcher = _alive(job["host"], int(job["job_id"])) if job["executor"] == "local" \
            else None
        if launcher is False:
            return "failed", "the job ended before the run started"
        return "pending", ""
    if _alive(state["host"], state["pid"]) is False:
        return "failed", "the process died"
    return "running", ""


def status(grid: Grid, root: str | Path, data: Mapping[str, str] | str | None = None,
           log_lines: int = 10) -> pd.DataFrame:
    """One row per run: labels, ``signature``, ``state`` (new, pending, running, done,
    failed), ``epochs`` done, ``job_id``, ``detail`` and ``log`` (the last ``log_lines`` lines
    of a failed run's error log)."""
    rows = []
    for run in resolve_runs(grid, root, data):
        state, detail = _run_state(run.folder)
        history = run.folder / "history.jsonl"
        job = _read_json(run.folder / _JOB_FILE)
        rows.append({
            **run.labels, "signature": run.signature, "state": state,
            "epochs": len(history.read_text().splitlines()) if history.exists() else 0,
            "job_id": job["job_id"] if job else "", "detail": detail,
            "log": _log_tail(job, _read_json(run.folder / _STATE_FILE), log_lines)
            if state == "failed" else "",
        })
    return pd.DataFrame(rows)


# -- tables -------------------------------------------------------------------------------------


def label_columns(grid: Grid) -> list[str]:
    """The labels of the grid's points that tell groups apart (all but the seed), in order."""
    columns = dict.fromkeys(key for point in grid.points for key in point.labels)
    return [c for c in columns if c != SEED_KEY]


def results(grid: Grid, root: str | Path) -> pd.DataFrame:
    """One row per finished run: labels, ``signature`` and the metrics of its ``report.json``
    (fractions; ``model.segment.top10``, ``ridge.word.top1``, ``chance.segment.top10``...)."""
    rows = []
    for run in resolve_runs(grid, root):
        path = run.folder / "report.json"
        if path.exists():
            rows.append({**run.labels, "signature": run.signature,
                         **flat_metrics(read_report(path), path)})
    return pd.DataFrame(rows)


def summarize(table: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """Mean, s.e.m. and s.d. over seeds of the metrics of :func:`results`, one row per group of
    the ``labels`` columns (:func:`label_columns`), in the grid's order: columns ``labels``,
    ``<metric>`` (mean), ``<metric>.sem``, ``<metric>.std`` and ``n_seeds``."""
    labels = list(labels)
    metrics = [c for c in table.columns if c not in [*labels, "signature", SEED_KEY]]
    if not labels:
        table, labels = table.assign(run="all"), ["run"]
    grouped = table.groupby(labels, sort=False, dropna=False)[metrics]
    out = grouped.mean().join(grouped.sem().add_suffix(".sem")) \
        .join(grouped.std().add_suffix(".std"))
    out["n_seeds"] = grouped.size()
    return out.reset_index()


def _percent(mean: float, sem: float) -> str:
    return f"{100 * mean:.1f}" if pd.isna(sem) else f"{100 * mean:.1f} ± {100 * sem:.1f}"


def markdown_table(table: pd.DataFrame, floatfmt: str = ".1f") -> str:
    """``table`` as a Markdown table (:meth:`pandas.DataFrame.to_markdown`: floats with
    ``floatfmt``, missing values as empty cells)."""
    cells = table.astype(object).where(table.notna(), None)
    return cells.to_markdown(index=False, floatfmt=floatfmt, missingval="")


def markdown(summary: pd.DataFrame, labels: Sequence[str], metrics: Sequence[str]) -> str:
    """Markdown table of :func:`summarize`: the ``labels`` then ``metrics`` as
    ``mean ± s.e.m.`` in percent, and the number of seeds."""
    labels = [c for c in labels if c in summary.columns] or ["run"]
    table = summary[labels].copy()
    for metric in (m for m in metrics if m in summary.columns):
        table[f"{metric} (%)"] = [_percent(mean, sem) for mean, sem in
                                  zip(summary[metric], summary[f"{metric}.sem"])]
    table["seeds"] = summary["n_seeds"]
    return markdown_table(table)


def write_summary(grid: Grid, root: str | Path) -> dict[str, Path]:
    """Write ``runs.csv`` (per run), ``table.csv`` (per group), ``table.md`` and ``table.png``
    (bar plot of ``grid.plot_metric`` for the model and the ridge baseline, with chance), and
    ``comparison.csv`` / ``comparison.md`` when the grid has a ``compare`` function, into
    ``<root>/<grid name>/``; return their paths."""
    from matplotlib.figure import Figure

    folder = Path(root) / grid.name
    runs = results(grid, root)
    if runs.empty:
        raise FileNotFoundError(f"{folder}: no finished run of grid {grid.name} yet")
    labels = label_columns(grid)
    summary = summarize(runs, labels)
    paths = {"runs": folder / "runs.csv", "table": folder / "table.csv",
             "markdown": folder / "table.md", "plot": folder / "table.png"}
    runs.to_csv(paths["runs"], index=False)
    summary.to_csv(paths["table"], index=False)
    paths["markdown"].write_text(markdown(summary, labels, grid.table_metrics) + "\n")
    if grid.compare is not None:
        comparison = grid.compare(summary)
        paths["comparison"] = folder / "comparison.csv"
        paths["comparison_markdown"] = folder / "comparison.md"
        comparison.to_csv(paths["comparison"], index=False)
        paths["comparison_markdown"].write_text(markdown_table(comparison) + "\n")

    names = [" / ".join("" if pd.isna(v) else str(v) for v in row)
             for row in summary[labels or ["run"]].itertuples(index=False)]
    models = [m for m in ("model", "ridge") if f"{m}.{grid.plot_metric}" in summary]
    x = pd.RangeIndex(len(summary))
    width = 0.8 / max(len(models), 1)
    fig = Figure(figsize=(max(4.0, 1.2 * len(summary) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    for i, model in enumerate(models):
        metric = f"{model}.{grid.plot_metric}"
        ax.bar(x + (i - (len(models) - 1) / 2) * width, 100 * summary[metric], width,
               yerr=100 * summary[f"{metric}.sem"].fillna(0), capsize=3, label=model)
    chance = f"chance.{grid.plot_metric}"
    if chance in summary:
        ax.scatter(x, 100 * summary[chance], marker="_", s=600, color="black", zorder=3,
                   label="chance")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel(f"{grid.plot_metric} accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{grid.name}: mean ± s.e.m. over seeds")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.savefig(paths["plot"], dpi=120)
    return paths
