"""Any model by config (``model.target``): built, trained, checkpointed and re-evaluated like the
BrainEncoder; a run folder's config builds only registered models unless trusted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from braindecode_speech.cli import EXIT_INPUT_ERROR, main
from braindecode_speech.config import ConfigError
from braindecode_speech.experiments import ExperimentConfig, evaluate_run, run_experiment
from braindecode_speech.experiments.presets import tiny_config
from braindecode_speech.models import BrainEncoder, EncoderConfig
from braindecode_speech.models.factory import (
    BUILTIN_MODELS,
    ENTRY_POINT_GROUP,
    UntrustedModelError,
    build_from_target,
    registered_models,
)
from braindecode_speech.training.trainer import load_checkpoint


class TinyConv(nn.Module):
    """A model of the protocol, not registered: sensors → ``width`` channels (a temporal conv),
    plus a per-subject offset, → ``n_outputs``."""

    def __init__(self, n_subjects: int, n_outputs: int, n_channels: int, width: int = 8):
        super().__init__()
        self.conv = nn.Conv1d(n_channels, width, 5, padding=2)
        self.subject = nn.Embedding(n_subjects + 1, width)  # row n_subjects: unknown subject
        self.out = nn.Conv1d(width, n_outputs, 1)

    def forward(self, x, subjects, positions, mask):
        subjects = torch.where(subjects < 0, len(self.subject.weight) - 1, subjects)
        hidden = self.conv(x * mask[:, :, None]) + self.subject(subjects)[:, :, None]
        return self.out(torch.nn.functional.gelu(hidden))


def not_a_module(n_subjects, n_outputs, n_channels):
    return "a string"


TARGET = f"{__name__}:TinyConv"
FAST = {"ridge.enabled": False, "evaluation.n_bootstrap": 10, "optim.max_epochs": 1,
        "optim.batches_per_epoch": 3}


def custom_config(root: Path, cache: Path, model: dict, **overrides) -> ExperimentConfig:
    """The tiny preset with ``model`` as the whole model section."""
    return tiny_config(root, cache_dir=cache).with_overrides({"model": model, **FAST,
                                                              **overrides})


# ---- config ------------------------------------------------------------------------------------

def test_default_signature_leaves_target_out_and_a_target_changes_it():
    assert "target" not in ExperimentConfig().signature_dict()["model"]
    assert ExperimentConfig().model.signature_dict() == {
        k: v for k, v in EncoderConfig().model_dump().items() if k not in ("target", "kwargs")}
    custom = ExperimentConfig().with_overrides({"model": {"target": TARGET,
                                                          "kwargs": {"width": 4}}})
    assert custom.signature_dict()["model"] == {"target": TARGET, "kwargs": {"width": 4}}
    wider = custom.with_overrides({"model.kwargs.width": 8})
    assert len({ExperimentConfig().signature(), custom.signature(), wider.signature()}) == 3


@pytest.mark.parametrize("model, message", [
    ({"kwargs": {"width": 4}}, "model.target, which is not set"),
    ({"target": TARGET, "hidden": 16}, r"model\.hidden set.*model=\{target"),
    ({"target": TARGET, "kwargs": {"n_channels": 3}}, "cannot set n_channels"),
    ({"target": "not a target"}, "package.module:factory"),
])
def test_bad_model_sections_are_refused(model, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig().with_overrides({"model": model})


def test_factory_is_checked_against_the_protocol():
    config = EncoderConfig(target=TARGET, kwargs={"width": 4})
    model = config.build(n_subjects=2, n_outputs=3, n_channels=5, trust_model_code=True)
    x, mask = torch.randn(4, 5, 20), torch.ones(4, 5, dtype=torch.bool)
    assert model(x, torch.tensor([0, 1, -1, 0]), torch.rand(4, 5, 2), mask).shape == (4, 3, 20)
    with pytest.raises(ConfigError, match=r"cannot be called with .*depth.*unexpected keyword"):
        EncoderConfig(target=TARGET, kwargs={"depth": 2}).build(2, 3, 5, trust_model_code=True)
    with pytest.raises(ConfigError, match="returned a str, not a torch.nn.Module"):
        build_from_target(f"{__name__}:not_a_module", {}, 2, 3, 5, trust_model_code=True)
    with pytest.raises(ConfigError, match="has no Missing"):
        build_from_target(f"{__name__}:Missing", {}, 2, 3, 5, trust_model_code=True)
    with pytest.raises(ConfigError, match="cannot import no_such_module_xyz"):
        build_from_target("no_such_module_xyz:f", {}, 2, 3, 5, trust_model_code=True)


def test_registered_brain_encoder_and_entry_points_match_pyproject():
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"][ENTRY_POINT_GROUP] == BUILTIN_MODELS
    assert BUILTIN_MODELS.items() <= registered_models().items()
    model = EncoderConfig(target="brain_encoder", kwargs={"hidden": 8, "depth": 1,
                                                          "n_spatial": 4}).build(2, 3, 5)
    assert isinstance(model, BrainEncoder) and model.config.hidden == 8
    with pytest.raises(ConfigError, match=r"(?s)model\.kwargs.*hiden"):
        EncoderConfig(target="brain_encoder", kwargs={"hiden": 8}).build(2, 3, 5)


# ---- safety --------------------------------------------------------------------------------------

def test_unregistered_targets_are_refused_before_anything_is_imported():
    with pytest.raises(UntrustedModelError, match=r"'no_such_module_xyz:f'.*--trust-model-code"):
        build_from_target("no_such_module_xyz:f", {}, 2, 3, 5)
    assert "no_such_module_xyz" not in sys.modules
    with pytest.raises(ConfigError, match="neither 'package.module:factory' nor a registered"):
        build_from_target("unknown_name", {}, 2, 3, 5)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """The preprocessing and feature cache of this module's runs."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def custom_run(tiny_meg_root, cache, tmp_path_factory):
    """The test module's TinyConv trained on the tiny study (lean steps: a model without batch
    norm runs them too)."""
    folder = tmp_path_factory.mktemp("custom")
    config = custom_config(tiny_meg_root, cache,
                           {"target": TARGET, "kwargs": {"width": 8}},
                           **{"optim.step": "lean", "optim.micro_batch": 8})
    result = run_experiment(config, folder / "run")
    return config, folder / "run", result


@pytest.mark.slow
def test_custom_model_trains_checkpoints_and_is_evaluated_with_trust(custom_run, capsys):
    config, folder, result = custom_run
    weights = load_checkpoint(folder / "best.pt")["model"]
    assert set(weights) == {"conv.weight", "conv.bias", "subject.weight", "out.weight",
                            "out.bias"}
    assert ExperimentConfig.from_yaml(folder / "config.yaml").model.target == TARGET
    before = json.loads((folder / "report.json").read_text())
    (folder / "report.json").unlink()
    # the run's config names a model that is not registered: refused without the flag, in one
    # line, before any data are read
    assert main(["evaluate", "--run", str(folder)]) == EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: model.target=") and TARGET in err
    assert "--trust-model-code" in err and "Traceback" not in err
    assert not (folder / "report.json").exists()
    with pytest.raises(UntrustedModelError):
        evaluate_run(folder)
    # trusted: rebuilt through the same factory, the same evaluation as after training
    assert main(["evaluate", "--run", str(folder), "--trust-model-code"]) == 0
    assert result["table"] in capsys.readouterr().out
    after = json.loads((folder / "report.json").read_text())
    assert after["metrics"] == before["metrics"]


@pytest.mark.slow
def test_model_folder_of_a_custom_model_is_loaded_only_with_trust(custom_run, tiny_meg_root,
                                                                   tmp_path, capsys):
    """export → from_pretrained / decode of a model folder whose model.target is not
    registered: refused without trust (before anything is written or read), works with it."""
    from braindecode_speech.sharing import BrainDecoder, export_run

    _, folder, _ = custom_run
    with pytest.raises(UntrustedModelError, match="config.yaml"):
        export_run(folder, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    export_run(folder, tmp_path / "model", trust_model_code=True)
    with pytest.raises(UntrustedModelError, match=r"experiment\.yaml.*trust_model_code=True"):
        BrainDecoder.from_pretrained(tmp_path / "model")
    decoder = BrainDecoder.from_pretrained(tmp_path / "model", trust_model_code=True)
    assert isinstance(decoder.encoder, TinyConv)
    decode = ["decode", "--model", str(tmp_path / "model"), "--data", str(tiny_meg_root),
              "--study", "simulated", "--subject", "02", "--out", str(tmp_path / "out.csv")]
    assert main(decode) == EXIT_INPUT_ERROR
    assert "--trust-model-code" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()
    assert main([*decode, "--trust-model-code"]) == 0
    assert "test windows" in capsys.readouterr().out


def test_a_crafted_run_folder_cannot_run_a_command(tiny_meg_root, tmp_path, monkeypatch,
                                                    capsys):
    """``subprocess:run`` with a command in model.kwargs, in a run folder whose ``best.pt``
    matches its config: refused, and subprocess.run is never called."""
    crafted = tiny_config(tiny_meg_root).with_overrides({"model": {
        "target": "subprocess:run", "kwargs": {"args": ["touch", str(tmp_path / "pwned")]}}})
    crafted.to_yaml(tmp_path / "config.yaml")
    torch.save({"model": {}, "signature": crafted.signature(), "epoch": 1}, tmp_path / "best.pt")
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert main(["evaluate", "--run", str(tmp_path)]) == EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "model.target='subprocess:run'" in err and "--trust-model-code" in err
    assert calls == [] and not (tmp_path / "pwned").exists()


# ---- braindecode -------------------------------------------------------------------------------

def test_braindecode_adapter_gives_brain_encoder_outputs():
    pytest.importorskip("braindecode")
    from braindecode_speech.models.braindecode import BraindecodeEncoder

    torch.manual_seed(0)
    for name in ("ShallowFBCSPNet", "EEGNetv4"):
        model = BraindecodeEncoder(2, 6, 10, model=name, n_times=120, sfreq=60)
        x = torch.randn(3, 10, 120)
        out = model(x, torch.zeros(3, dtype=torch.long), torch.rand(3, 10, 2),
                    torch.ones(3, 10, dtype=torch.bool))
        assert out.shape == (3, 6, 120) and torch.isfinite(out).all()
        out.square().mean().backward()  # the new head and the braindecode layers both learn
        assert model.head.weight.grad.abs().sum() > 0
        assert next(model.backbone.parameters()).grad.abs().sum() > 0


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")  # inside EEGITNet
def test_braindecode_adapter_refuses_what_it_cannot_adapt():
    pytest.importorskip("braindecode")
    from braindecode_speech.models.braindecode import BraindecodeEncoder

    with pytest.raises(ConfigError, match="'print' is not a model of braindecode.models"):
        BraindecodeEncoder(2, 6, 10, model="print", n_times=120)
    with pytest.raises(ConfigError, match=r"\(2, 196\) for 120 samples.*no time axis of their"):
        BraindecodeEncoder(2, 6, 10, model="EEGITNet", n_times=120, sfreq=60)
    with pytest.raises(ConfigError, match="cannot be built with .*unexpected keyword"):
        BraindecodeEncoder(2, 6, 10, model="EEGNetv4", n_times=120, widht=3)


@pytest.mark.slow
def test_braindecode_model_trains_and_is_evaluated_from_its_folder(tiny_meg_root, cache,
                                                                     tmp_path, capsys):
    """Registered (``model.target=braindecode``): re-evaluated without --trust-model-code."""
    pytest.importorskip("braindecode")
    config = tiny_config(tiny_meg_root)
    n_times = config.windows.n_times(config.preprocess.sfreq)
    config = custom_config(tiny_meg_root, cache, {
        "target": "braindecode", "kwargs": {"model": "ShallowFBCSPNet", "n_times": n_times,
                                            "sfreq": config.preprocess.sfreq}})
    result = run_experiment(config, tmp_path / "run")
    history = [json.loads(line)
               for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and history[0]["train_loss"] > 0
    assert "backbone.final_layer.conv_classifier.weight" not in \
        load_checkpoint(tmp_path / "run" / "best.pt")["model"]
    assert main(["evaluate", "--run", str(tmp_path / "run")]) == 0
    assert result["table"] in capsys.readouterr().out
