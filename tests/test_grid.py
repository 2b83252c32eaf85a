"""Grids: declaring points, run folders and signatures, SLURM submission (sbatch script and
submitit parameters, requeue), status; end to end on the tiny simulated study with the debug
executor (runs, skip of finished runs, resume of an interrupted run, status and table)."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import submitit

from braindecode_speech.cli import main
from braindecode_speech.config import ConfigError
from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments import grid as grids
from braindecode_speech.experiments.grid import (
    Grid,
    GridJob,
    Point,
    SlurmConfig,
    product,
    values,
    variants,
)

SLURM_GRID = """\
from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments.grid import Grid, SlurmConfig, product, values

GRID = Grid(
    base=ExperimentConfig(),
    points=product(values("features.name", ["mel"]), values("optim.seed", [2036, 2037, 2038])),
    slurm=SlurmConfig(partition="dev", cpus_per_task=8, mem_gb=64, array_parallelism=2,
                      setup=["module load cuda"]),
)
"""


def test_product_zip_and_variants():
    points = product(values("features.name", ["mel", "wav2vec2"]), {"optim.seed": [1, 2]})
    assert [p.overrides for p in points] == [
        {"features.name": "mel", "optim.seed": 1}, {"features.name": "mel", "optim.seed": 2},
        {"features.name": "wav2vec2", "optim.seed": 1},
        {"features.name": "wav2vec2", "optim.seed": 2}]
    assert points[0].labels == points[0].overrides
    ablations = variants("ablation", {"full": {}, "no clamp": {"norm.clamp": None}})
    assert ablations[1] == Point({"norm.clamp": None}, {"ablation": "no clamp"})
    paired = grids.zipped({"optim.seed": [1, 2]}, values("optim.lr", [0.1, 0.2]))
    assert [p.overrides for p in paired] == [{"optim.seed": 1, "optim.lr": 0.1},
                                             {"optim.seed": 2, "optim.lr": 0.2}]
    with pytest.raises(ConfigError, match="differ in length"):
        grids.zipped({"optim.seed": [1, 2]}, {"optim.lr": [0.1]})
    with pytest.raises(ConfigError, match="same keys"):
        product({"optim.seed": [1]}, variants("v", {"a": {"optim.seed": 2}}))


def test_runs_are_named_by_config_signature(tmp_path):
    grid = Grid(ExperimentConfig(), product({"optim.seed": [2036, 2037]}), name="g")
    runs = grids.resolve_runs(grid, tmp_path, {"simulated": "/data/sim"})
    expected = ExperimentConfig().with_overrides({"optim.seed": 2037})
    assert runs[1].signature == expected.signature()
    assert runs[1].folder == tmp_path / "g" / expected.signature()
    assert runs[1].config.study.root == "/data/sim"
    # where the data live is not part of a run's identity
    assert [r.signature for r in grids.resolve_runs(grid, tmp_path, "/elsewhere")] == \
        [r.signature for r in runs]
    # one folder: the study itself for a single-study grid, else a folder of studies
    assert grids.resolve_runs(grid, tmp_path, "/elsewhere")[0].config.study.root == "/elsewhere"
    studies = Grid(ExperimentConfig(), values("study.name", ["simulated", "brennan2019"]),
                   name="s")
    assert [r.config.study.root for r in grids.resolve_runs(studies, tmp_path, "/d")] == \
        ["/d/simulated", "/d/brennan2019"]
    with pytest.raises(ConfigError, match="no data folder given for study 'simulated'"):
        grids.resolve_runs(grid, tmp_path, {"gwilliams2022": "/data/g"})
    twice = Grid(ExperimentConfig(), product({"optim.seed": [1, 1]}), name="g")
    with pytest.raises(ConfigError, match="resolve to the same config"):
        grids.resolve_runs(twice, tmp_path)


def test_grid_file_must_define_a_grid(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("GRID = 3\n")
    with pytest.raises(ConfigError, match="must define GRID"):
        grids.load_grid(path)
    path.write_text(SLURM_GRID)
    assert grids.load_grid(path).name == "bad"


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``srun``, ``sbatch`` (records its calls, answers job 4242) and ``sacct`` (answers the
    states in ``<bin>/states``) on the PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "srun": "exit 0",
        "sbatch": f'cp "$1" {bin_dir}/submitted_$(ls {bin_dir} | wc -l).sh\n'
                  'echo "Submitted batch job 4242"',
        "sacct": f'echo "JobID|State|NodeList"; cat {bin_dir}/states 2>/dev/null; exit 0',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    submitit.SlurmJob.watcher.clear()
    return bin_dir


def test_slurm_submission(tmp_path, fake_slurm, capsys):
    grid_file = tmp_path / "paper.py"
    grid_file.write_text(SLURM_GRID)
    root = tmp_path / "runs"
    argv = ["grid", "run", str(grid_file), "--executor", "slurm", "--root", str(root),
            "--data", str(tmp_path / "data"), "--tasks-per-node", "2", "--gpus-per-task", "1",
            "--timeout-min", "600", "--constraint", "volta32gb", "--account", "speech"]
    assert main(argv) == 0
    scripts = sorted(fake_slurm.glob("submitted_*.sh"))
    assert len(scripts) == 1  # one job array for the 3 runs
    sbatch = [line for line in scripts[0].read_text().splitlines() if line.startswith("#SBATCH")]
    for option in ["--array=0-2%2", "--partition=dev", "--constraint=volta32gb",
                   "--account=speech", "--ntasks-per-node=2", "--gpus-per-task=1",
                   "--cpus-per-task=8", "--mem=65536MB", "--time=600", "--nodes=1",
                   "--signal=USR2@120", "--requeue", "--job-name=paper"]:
        assert f"#SBATCH {option}" in sbatch
    text = scripts[0].read_text()
    assert "module load cuda" in text and "srun --unbuffered" in text

    runs = grids.resolve_runs(grids.load_grid(grid_file), root, str(tmp_path / "data"))
    for i, run in enumerate(runs):
        assert json.loads((run.folder / "job.json").read_text())["job_id"] == f"4242_{i}"
        # what the job will run: this run, requeued up to 5 times after a time-out
        submission = submitit.helpers.DelayedSubmission.load(
            root / "paper" / "_submitit" / f"4242_{i}_submitted.pkl")
        assert isinstance(submission.function, GridJob)
        assert submission.function.config == run.config
        assert submission.function.folder == run.folder
        assert submission._timeout_countdown == SlurmConfig().max_requeues
        requeued = submission.function.checkpoint()
        assert requeued.function.config == run.config
        assert requeued.function.folder == run.folder

    # SLURM's view decides: pending, running, and a job that ended without a report
    (fake_slurm / "states").write_text("4242_0|PENDING|\n4242_1|RUNNING|n1\n4242_2|FAILED|n2\n")
    table = grids.status(grids.load_grid(grid_file), root)
    assert list(table["state"]) == ["pending", "running", "failed"]
    assert "FAILED" in table["detail"][2]

    # launching again submits only the failed run
    capsys.readouterr()
    assert main(argv) == 0
    assert len(list(fake_slurm.glob("submitted_*.sh"))) == 2
    assert "submitted 1 of 3 runs" in capsys.readouterr().out


def test_dry_run_submits_nothing(tmp_path, capsys):
    grid_file = tmp_path / "paper.py"
    grid_file.write_text(SLURM_GRID)
    assert main(["grid", "run", str(grid_file), "--executor", "slurm", "--dry-run",
                 "--root", str(tmp_path / "runs"), "--partition", "learnlab"]) == 0
    out = capsys.readouterr().out
    assert "would submit 3 of 3 runs" in out
    assert "'partition': 'learnlab'" in out and "'requeue': True" in out
    assert not (tmp_path / "runs" / "paper").exists()


def test_slurm_parameters_skip_unset_resources():
    params = grids.slurm_parameters(SlurmConfig(gpus_per_task=0), "cpu-grid")
    assert "gpus_per_task" not in params and "partition" not in params and "mem" not in params
    assert params["ntasks_per_node"] == 1 and params["job_name"] == "cpu-grid"


def test_status_of_runs_from_their_files(tmp_path):
    grid = Grid(ExperimentConfig(), product({"optim.seed": [1, 2, 3, 4]}), name="g")
    runs = grids.resolve_runs(grid, tmp_path)
    host = __import__("socket").gethostname()
    for run in runs[1:]:
        run.folder.mkdir(parents=True)
        (run.folder / "job.json").write_text(json.dumps(
            {"job_id": "DEBUG_1", "executor": "debug", "logs": str(tmp_path), "host": host}))
    (runs[1].folder / "report.json").write_text("{}")
    (runs[2].folder / "status.json").write_text(json.dumps(
        {"state": "running", "host": host, "pid": os.getpid()}))
    (runs[3].folder / "status.json").write_text(json.dumps(
        {"state": "failed", "host": host, "pid": os.getpid(),
         "error": "Traceback (most recent call last):\n" + textwrap.indent("x\n" * 20, " ")
         + "ValueError: no window"}))
    table = grids.status(grid, tmp_path, log_lines=3)
    assert list(table["state"]) == ["new", "done", "running", "failed"]
    assert table["log"][3].splitlines() == [" x", " x", "ValueError: no window"]
    # a run whose process is gone is failed, not running
    (runs[2].folder / "status.json").write_text(json.dumps(
        {"state": "running", "host": host, "pid": 2 ** 22 + 12345}))
    assert grids.status(grid, tmp_path)["state"][2] == "failed"


def test_markdown_table_formats_floats_and_leaves_missing_cells_empty():
    table = pd.DataFrame({"features.name": ["mel", None], "top10 (%)": ["41.2 ± 1.0", "3.1"],
                          "x": [0.1234, np.nan], "seeds": [3, 1]})
    lines = grids.markdown_table(table).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(table.columns)
    assert set(lines[1]) <= set("|:- ")
    assert [c.strip() for c in lines[2].strip("|").split("|")] == ["mel", "41.2 ± 1.0", "0.1",
                                                                    "3"]
    assert [c.strip() for c in lines[3].strip("|").split("|")] == ["", "3.1", "", "1"]


OLD_REPORT_GRID = """\
from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments.grid import Grid, product, values

GRID = Grid(ExperimentConfig(), product(values("optim.seed", [1])), name="old")
"""


def test_grid_table_refuses_a_report_of_another_schema_in_one_line(tmp_path, capsys):
    """``grid table`` reads report.json through read_report: a report of schema version 1
    (the word chance was the frequency baseline then) is refused in one line naming it."""
    (tmp_path / "old.py").write_text(OLD_REPORT_GRID)
    grid = grids.load_grid(tmp_path / "old.py")
    (run,) = grids.resolve_runs(grid, tmp_path / "runs")
    run.folder.mkdir(parents=True)
    (run.folder / "report.json").write_text(json.dumps(
        {"schema_version": 1, "chance": {"top10": 0.1, "word_top10": 0.3}}))
    code = main(["grid", "table", str(tmp_path / "old.py"), "--root", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{run.folder / 'report.json'}: schema_version 1; this version reads" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


E2E_GRID = """\
from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments.grid import Grid, product, values, variants
from braindecode_speech.experiments.presets import TINY_OVERRIDES

GRID = Grid(  # the ridge baseline is left out: its fit takes most of a tiny run's time
    base=ExperimentConfig().with_overrides({**TINY_OVERRIDES, "study.name": "simulated",
                                            "ridge.enabled": False}),
    points=product(variants("model", {"contrastive": {}, "untrained": {"optim.max_epochs": 0}}),
                   values("optim.seed", [2036, 2037])),
)
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Preprocessing and feature cache shared by the end-to-end tests of this module."""
    return tmp_path_factory.mktemp("cache")


class Preempted(Exception):
    """Stands for a job killed in the middle of training."""


@pytest.mark.slow
def test_grid_end_to_end_on_the_simulated_study(tiny_meg_root, cache, tmp_path, monkeypatch,
                                                capsys):
    from braindecode_speech.training.trainer import Trainer

    monkeypatch.setenv("BRAINDECODE_SPEECH_CACHE", str(cache))
    grid_file = tmp_path / "sim.py"
    grid_file.write_text(E2E_GRID)
    root = tmp_path / "runs"
    run_argv = ["grid", "run", str(grid_file), "--executor", "debug", "--root", str(root),
                "--data", f"simulated={tiny_meg_root}"]
    grid = grids.load_grid(grid_file)
    runs = grids.resolve_runs(grid, root)

    # the first run is interrupted after its first epoch; the others finish
    write_epoch = Trainer._write_epoch

    def interrupted(self, improved):
        write_epoch(self, improved)
        if self.folder == runs[0].folder and self.epoch == 1:
            raise Preempted("killed after epoch 1")

    monkeypatch.setattr(Trainer, "_write_epoch", interrupted)
    monkeypatch.setattr("pdb.post_mortem", lambda *args: None)  # the debug executor's reflex
    assert main(run_argv) == 1  # a run failed
    assert "3 done, 1 failed" in capsys.readouterr().out.replace("\n", ", ")
    history = (runs[0].folder / "history.jsonl").read_text().splitlines()
    assert len(history) == 1 and (runs[0].folder / "checkpoint.pt").exists()

    assert main(["grid", "status", str(grid_file), "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "3 done, 1 failed" in out and "Preempted: killed after epoch 1" in out

    # relaunch: finished runs are skipped, the interrupted one resumes from its checkpoint
    monkeypatch.setattr(Trainer, "_write_epoch", write_epoch)
    assert main(run_argv) == 0
    assert "submitted 1 of 4 runs (3 done)" in capsys.readouterr().out
    resumed = (runs[0].folder / "history.jsonl").read_text().splitlines()
    assert len(resumed) == 2 and resumed[0] == history[0]  # epoch 1 was not trained again
    assert main(run_argv) == 0
    assert "submitted 0 of 4 runs (4 done)" in capsys.readouterr().out

    assert main(["grid", "table", str(grid_file), "--root", str(root)]) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(root / "sim" / "table.csv")
    assert list(table["model"]) == ["contrastive", "untrained"]
    for row in table.itertuples():
        group = [r for r in runs if r.labels["model"] == row.model]
        top10 = [json.loads((r.folder / "report.json").read_text())
                 ["metrics"]["model"]["segment"]["top10"] for r in group]
        assert table.loc[row.Index, "model.segment.top10"] == pytest.approx(np.mean(top10))
        assert table.loc[row.Index, "model.segment.top10.sem"] == \
            pytest.approx(np.std(top10, ddof=1) / np.sqrt(2))
        assert re.search(rf"^\| {row.model} +\|", out, re.MULTILINE)  # a row of the table
        # the controls are columns too: within-recording accuracy, its chance, the ceiling
        controls = [json.loads((r.folder / "report.json").read_text())["controls"]["model"]
                    for r in group]
        assert table.loc[row.Index, "model.within_recording.top10"] == pytest.approx(
            np.mean([c["within_recording"]["accuracy"]["top10"] for c in controls]))
        assert table.loc[row.Index, "chance.within_recording.top10"] == pytest.approx(
            np.mean([c["within_recording"]["chance"]["top10"] for c in controls]))
        assert table.loc[row.Index, "ceiling.recording.top10"] == pytest.approx(
            np.mean([c["identity_ceiling"]["recording"]["top10"] for c in controls]))
    assert "model.within_recording.top10 (%)" in (root / "sim" / "table.md").read_text()
    assert (root / "sim" / "table.png").stat().st_size > 1000


@pytest.mark.slow
def test_preempted_job_requeues_itself_and_resumes(tiny_meg_root, cache, tmp_path, monkeypatch):
    """A local submitit job gets the preemption signal (SIGUSR2) in the middle of training:
    GridJob.checkpoint requeues it and the new process resumes from checkpoint.pt."""
    from braindecode_speech.experiments.presets import tiny_config

    monkeypatch.setenv("BRAINDECODE_SPEECH_CACHE", str(cache))
    config = tiny_config(tiny_meg_root).with_overrides({"optim.max_epochs": 4,
                                                        "ridge.enabled": False})
    folder = tmp_path / "run"
    executor = grids.make_executor("local", tmp_path / "logs", SlurmConfig(timeout_min=20))
    job = executor.submit(GridJob(config, folder))
    deadline = time.time() + 300
    while not (folder / "checkpoint.pt").exists():
        assert time.time() < deadline and not job.done(), \
            f"no checkpoint written; job stderr:\n{job.stderr()}"
        time.sleep(0.2)
    first_epoch = (folder / "history.jsonl").read_text().splitlines()[0]
    killed = json.loads((folder / "status.json").read_text())["pid"]
    os.kill(killed, signal.SIGUSR2)
    report = job.result()
    assert report["metrics"]["model"]["segment"]["top10"] >= 0
    history = (folder / "history.jsonl").read_text().splitlines()
    assert history[0] == first_epoch  # resumed, not trained again from scratch
    assert len(history) == 4
    assert json.loads((folder / "status.json").read_text())["pid"] != killed
    log = job.paths.stderr.read_text()
    assert "this job is preempted" in log and "Requeued job" in log
