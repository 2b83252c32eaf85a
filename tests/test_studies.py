"""Reproduction scripts: each runs the paper's configuration with 3 seeds through the grid
machinery and compares with the paper's numbers; the simulated one runs here end to end."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from braindecode_speech.config import ConfigError
from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments import grid as grids
from braindecode_speech.experiments.analysis import compare_paper_configuration, paper_results
from braindecode_speech.experiments.reproduce import PUBLIC_STUDIES, reproduction_grid

STUDIES = Path(__file__).parents[1] / "studies"


def _run_script(name: str, argv: list[str], monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", [str(STUDIES / f"{name}.py"), *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(STUDIES / f"{name}.py"), run_name="__main__")
    return exit_info.value.code


def _script(path: Path, *argv: str) -> subprocess.CompletedProcess:
    """Run a script of ``studies/`` as a user does, in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(STUDIES.parent), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, str(path), *argv], capture_output=True, text=True,
                          timeout=120, env=env, cwd=STUDIES.parent)


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.py")), ids=lambda p: p.stem)
def test_every_script_answers_help(path):
    done = _script(path, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {path.name} ") and not done.stderr
    # the script's docstring, then the options of `grid run` and its own
    assert done.stdout.split("\n\n")[1].startswith("Reproduce") or path.stem == "simulated"
    for option in ("--data", "--executor", "--dry-run", "--root", "--tasks-per-node"):
        assert option in done.stdout
    assert (f"braindecode-speech grid status studies/{path.name}") in done.stdout
    assert ("--preset" in done.stdout) == (path.stem == "simulated")


def test_simulated_script_needs_a_data_folder():
    done = _script(STUDIES / "simulated.py")
    assert done.returncode == 2
    assert "the following arguments are required: --data" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_study_has_no_reproduction_grid():
    with pytest.raises(ConfigError, match="no reproduction grid for study 'mous'; known: "):
        reproduction_grid("mous")


@pytest.mark.parametrize("study", PUBLIC_STUDIES)
def test_real_study_scripts_run_the_paper_configuration(study, tmp_path, monkeypatch, capsys):
    grid = grids.load_grid(STUDIES / f"{study}.py")
    runs = grids.resolve_runs(grid, tmp_path, str(tmp_path / study))
    assert [r.config.optim.seed for r in runs] == [2036, 2037, 2038]
    paper = ExperimentConfig().with_overrides(
        {"study.name": study, "study.root": str(tmp_path / study),
         "optim.negatives": "per_process", "evaluation.train_null": True})
    assert runs[0].config == paper  # with the controls' null model beside each run
    assert grid.slurm.tasks_per_node == 2  # the paper's 2 GPUs

    code = _run_script(study, ["--data", str(tmp_path / study), "--executor", "slurm",
                               "--dry-run", "--root", str(tmp_path / "runs")], monkeypatch)
    assert code == 0
    assert f"reproduce_{study}: would submit 3 of 3 runs" in capsys.readouterr().out


def test_comparison_with_the_paper_configuration_rows():
    summary = pd.DataFrame({"study.name": ["gwilliams2022"], "optim.seed": [0],
                            "model.segment.top10": [0.65], "model.segment.top10.std": [0.01],
                            "n_seeds": [3]})
    table = compare_paper_configuration(summary)
    assert list(table["table"]) == ["table2", "table4"]
    assert list(table["paper"]) == [70.7, 66.7]
    assert table["ours"].tolist() == pytest.approx([65.0, 65.0])
    assert table["difference"].tolist() == pytest.approx([-5.7, -1.7])
    # every study has every row of both tables
    paper = paper_results()
    assert (paper.groupby("table")["study"].nunique() == 4).all()
    assert len(paper) == 4 * (5 + 12)


@pytest.mark.slow
def test_simulated_study_script_runs_here(tiny_meg_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BRAINDECODE_SPEECH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "runs"
    code = _run_script("simulated", ["--data", str(tiny_meg_root), "--executor", "debug",
                                     "--root", str(root)], monkeypatch)
    assert code == 0
    out = capsys.readouterr().out
    assert "3 done" in out
    table = pd.read_csv(root / "reproduce_simulated" / "table.csv")
    reports = [json.loads(p.read_text())
               for p in sorted((root / "reproduce_simulated").glob("*/report.json"))]
    assert len(reports) == 3 and table["n_seeds"].tolist() == [3]
    assert all("train_null" in r["controls"]["model"] for r in reports)  # the null models
    top10 = [r["metrics"]["model"]["segment"]["top10"] for r in reports]
    assert table["model.segment.top10"][0] == pytest.approx(sum(top10) / 3)
    assert (root / "reproduce_simulated" / "table.md").read_text().startswith(
        "| study.name ")
