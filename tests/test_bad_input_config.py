"""Impossible or malformed configurations are refused before any data are read (issue 11,
class 8): the CLI exits with ``EXIT_INPUT_ERROR`` and one message naming the config key (or the
config file and line), the value and the bound, without a traceback; no run folder is created."""

from __future__ import annotations

import importlib
import types
import typing
from pathlib import Path

import annotated_types
import pytest

from braindecode_speech.cli import EXIT_INPUT_ERROR, main
from braindecode_speech.config import Config, ConfigError
from braindecode_speech.experiments import ExperimentConfig
from braindecode_speech.experiments.grid import load_grid, resolve_runs
from braindecode_speech.experiments.presets import demo_config, tiny_config

REPO = Path(__file__).parents[1]

#: modules defining the package's configs (imported so that every Config subclass is known)
CONFIG_MODULES = ("experiments.config", "experiments.grid", "simulation.config")

#: numeric fields without bounds, and why: times relative to an anchor, of either sign
UNBOUNDED = {"WindowConfig.tmin", "WindowConfig.tmax", "WindowConfig.brain_lag"}


def _train(tmp_path: Path, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """``train`` on an empty folder with ``args``; (exit code, stderr). Asserts no traceback
    and that no run folder was created (the config is refused before any work)."""
    out = tmp_path / "run"
    code = main(["train", "--study", "simulated", "--data", str(tmp_path), "--out", str(out),
                 *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert not out.exists()
    return code, err


@pytest.mark.parametrize("overrides, expected", [
    (["optim.lr=-0.001"], ["optim.lr", "greater than or equal to 0", "-0.001"]),
    (["optim.max_epochs=-1"], ["optim.max_epochs", "greater than or equal to 0"]),
    (["optim.batch_size=0"], ["optim.batch_size", "greater than or equal to 1", "got 0"]),
    (["optim.patience=0"], ["optim.patience", "greater than or equal to 1"]),
    (["splits.test_ratio=1.5"], ["splits.test_ratio", "less than 1", "1.5"]),
    (["splits.valid_ratio=-0.1"], ["splits.valid_ratio", "greater than or equal to 0", "-0.1"]),
    (["splits.test_ratio=0.6", "splits.valid_ratio=0.5"],
     ["splits", "test_ratio + valid_ratio must be below 1", "0.6 + 0.5"]),
    (["preprocess.sfreq=0"], ["preprocess.sfreq", "greater than 0", "got 0"]),
    (["preprocess.highpass=40", "preprocess.lowpass=10"],
     ["preprocess", "highpass (40.0 Hz) must be below lowpass (10.0 Hz)"]),
    (["features.sfreq=100"], ["features.sfreq", "known keys here: name, wav2vec2, mel"]),
    (["windows.tmin=3"], ["windows", "tmin (3.0 s) must be below tmax (2.5 s)"]),
    (["windows.stride=-0.5"], ["windows.stride", "greater than 0", "-0.5"]),
    (["windows.tmin=0.5", "windows.tmax=2"], ["norm.baseline", "windows.tmin=0.5"]),
    (["windows.test_anchor=sentence"], ["windows.test_anchor", "'word' or 'stride'"]),
    (["norm.clamp=-1"], ["norm.clamp", "greater than 0"]),
    (["evaluation.n_bootstrap=0"], ["evaluation.n_bootstrap", "greater than or equal to 1"]),
    (["model.hidden=0"], ["model.hidden", "greater than 0"]),
    (["ridge.tmax=-0.1"], ["ridge.tmax", "greater than or equal to 0"]),
    (["features.mel.n_mels=-3"], ["features.mel.n_mels", "greater than 0", "-3"]),
    (["optim.compile=true", "optim.step=lean"], ["optim.compile needs optim.step=plain"]),
])
def test_out_of_bounds_values_are_refused(tmp_path, capsys, overrides, expected):
    code, err = _train(tmp_path, capsys, *overrides)
    assert code == EXIT_INPUT_ERROR
    assert err.startswith("error: ")
    for text in expected:
        assert text in err


@pytest.mark.parametrize("override, expected", [
    ("optim.lrr=0.1", ["Unknown config key 'optim.lrr'", "known keys here: lr, batch_size"]),
    ("optimizer.lr=0.1", ["Unknown config key 'optimizer.lr'", "optim"]),
    ("optim.lr=fast", ["optim.lr", "valid number", "'fast'"]),
    ("optim.batch_size=[1, 2]", ["optim.batch_size", "valid integer"]),
    ("optim.lr", ["'optim.lr'", "not of the form key=value"]),
    ("optim.lr=[0.1", ["'optim.lr=[0.1'", "not valid YAML"]),
])
def test_unknown_keys_wrong_types_and_malformed_overrides(tmp_path, capsys, override, expected):
    code, err = _train(tmp_path, capsys, override)
    assert code == EXIT_INPUT_ERROR
    for text in expected:
        assert text in err


def test_unknown_study_lists_the_known_ones(tmp_path, capsys):
    code = main(["train", "--study", "gwilliams", "--data", str(tmp_path), "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT_ERROR and "Traceback" not in err
    assert "unknown study 'gwilliams'" in err and "gwilliams2022" in err and "simulated" in err


@pytest.mark.parametrize("content, expected", [
    ("optim:\n  lr: 0.1\n  batch_size: [1, 2\n", ["not valid YAML (line 4, column 1)"]),
    ("optim:\n\tlr: 0.1\n", ["not valid YAML (line 2, column 1)", "found character '\\t'"]),
    ("- optim.lr=0.1\n", ["must hold a mapping", "found a list"]),
    ("optim:\n  lr: -1\n", ["optim.lr", "greater than or equal to 0", "got -1"]),
    ("optim:\n  learning_rate: 0.1\n", ["optim.learning_rate", "unknown key", "lr"]),
])
def test_bad_config_files_name_the_file(tmp_path, capsys, content, expected):
    path = tmp_path / "my config.yaml"
    path.write_text(content)
    code, err = _train(tmp_path, capsys, "--config", str(path))
    assert code == EXIT_INPUT_ERROR
    assert str(path) in err
    for text in expected:
        assert text in err


def test_missing_and_unreadable_config_files(tmp_path, capsys):
    code, err = _train(tmp_path, capsys, "--config", str(tmp_path / "nope.yaml"))
    assert code == EXIT_INPUT_ERROR and f"{tmp_path / 'nope.yaml'}: no such config file" in err
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("study:\n  name: caf\xe9\n".encode("latin-1"))
    code, err = _train(tmp_path, capsys, "--config", str(latin))
    assert code == EXIT_INPUT_ERROR and f"{latin}: cannot read the config file" in err


def test_check_splits_and_simulate_refuse_bad_values_too(tmp_path, capsys):
    code = main(["check-splits", "--study", "simulated", "--data", str(tmp_path),
                 "splits.test_ratio=1"])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT_ERROR and "splits.test_ratio" in err and "Traceback" not in err
    code = main(["simulate", "--out", str(tmp_path / "sim"), "--preset", "tiny", "snr=-1"])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT_ERROR and "snr" in err and "greater than or equal to 0" in err
    assert not (tmp_path / "sim").exists()


def test_presets_and_paper_defaults_are_valid():
    for config in (ExperimentConfig(), demo_config("/data"), demo_config("/data", modality="eeg"),
                   tiny_config("/data")):
        assert ExperimentConfig.from_dict(config.to_dict()) == config
    # the EEG demo is the MEG demo plus its EEG-sized changes
    eeg, meg = demo_config("/data", modality="eeg"), demo_config("/data")
    assert eeg.model.n_spatial == 32 != meg.model.n_spatial
    assert eeg.model.hidden == meg.model.hidden and eeg.features == meg.features


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO).as_posix() for folder in
                                        ("grids", "studies") for p in (REPO / folder).glob("*.py")))
def test_shipped_grids_hold_valid_configs(path, tmp_path):
    """The bounds leave every run of the shipped grid and study scripts valid (an untrained
    baseline has ``optim.max_epochs=0``)."""
    runs = resolve_runs(load_grid(REPO / path), tmp_path)
    assert runs and all(ExperimentConfig.from_dict(r.config.to_dict()) == r.config for r in runs)


def _config_classes() -> list[type[Config]]:
    for name in CONFIG_MODULES:
        importlib.import_module(f"braindecode_speech.{name}")
    found, todo = [], list(Config.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("braindecode_speech."):
            found.append(cls)
    return found


def _numeric(annotation: object) -> bool:
    """int or float, optionally ``| None`` (not bool, not tuples)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and _numeric(args[0])
    return annotation in (int, float)


def test_every_numeric_field_has_a_bound():
    """A number without a bound is accepted however absurd (class 8): every int/float field of
    every config declares one (``Field(gt=..)``, ``ge``, ``lt``, ``le``), except UNBOUNDED."""
    bounds = (annotated_types.Gt, annotated_types.Ge, annotated_types.Lt, annotated_types.Le)
    classes = _config_classes()
    assert {"OptimConfig", "SplitConfig", "WindowConfig", "SlurmConfig",
            "SimulationConfig"} <= {c.__name__ for c in classes}
    missing = [f"{cls.__name__}.{name}" for cls in classes
               for name, field in cls.model_fields.items()
               if _numeric(field.annotation) and f"{cls.__name__}.{name}" not in UNBOUNDED
               and not any(isinstance(m, bounds) for m in field.metadata)]
    assert missing == []


def test_api_errors_are_config_errors_naming_the_key():
    with pytest.raises(ConfigError, match=r"optim\.lr: Input should be greater than or "
                                          r"equal to 0 \(got -1\)"):
        ExperimentConfig().with_overrides({"optim.lr": -1})
    with pytest.raises(ConfigError, match=r"splits\.test_ratio.*less than 1"):
        ExperimentConfig.from_dict({"splits": {"test_ratio": 1.0}})
