"""Two runs with the same seed give the same weights and history, bit for bit, on a
multi-threaded CPU; ``optim.deterministic`` adds torch's deterministic-algorithms mode."""

import hashlib
import logging

import pytest
import torch
from torch import nn

from braindecode_speech.experiments import build_model, prepare_data
from braindecode_speech.experiments.presets import tiny_config
from braindecode_speech.models.spatial_attention import SpatialAttention
from braindecode_speech.models.subject_layers import SubjectEmbedding
from braindecode_speech.training.trainer import OptimConfig, Trainer


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _digest(tensor):
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


def _gradients(module, inputs, n=10):
    """Digests of the gradient of ``module``'s first parameter over ``n`` identical steps."""
    param = next(module.parameters())
    digests = set()
    for _ in range(n):
        param.grad = None
        module(*inputs).square().sum().backward()
        digests.add(_digest(param.grad))
    return digests


def test_spatial_attention_gradient_is_the_same_every_time(two_threads):
    # many samples sharing two layouts: the gradients of a layout's logits are summed
    torch.manual_seed(0)
    attention = SpatialAttention(n_outputs=32, n_fourier=8).eval()
    positions = torch.rand(2, 64, 2).repeat(16, 1, 1)
    inputs = (torch.randn(32, 64, 50), positions, torch.ones(32, 64, dtype=torch.bool))
    assert len(_gradients(attention, inputs)) == 1


def test_subject_embedding_gradient_is_the_same_every_time(two_threads):
    torch.manual_seed(0)
    embedding = SubjectEmbedding(64, 3)
    subjects = torch.tensor([0, 1, 2, -1] * 64)
    assert len(_gradients(embedding, (torch.randn(256, 8, 20), subjects))) == 1


@pytest.fixture(scope="module")
def tiny_data(tiny_meg_root, tmp_path_factory):
    config = tiny_config(tiny_meg_root, cache_dir=tmp_path_factory.mktemp("cache"))
    return config, prepare_data(config)


def _train(config, data, folder, init_seed=None, **optim):
    """(history without timings, weights) of a short run; ``init_seed`` seeds the initial
    weights and the global random state (default: the config's seed)."""
    optim = config.optim.model_copy(update={"max_epochs": 2, "batches_per_epoch": 4, **optim})
    torch.manual_seed(config.optim.seed if init_seed is None else init_seed)
    model = build_model(config, data)
    trainer = Trainer(model, config.loss.build(), optim, folder, config.signature())
    history = [{k: v for k, v in h.items() if k != "seconds"}
               for h in trainer.fit(data.datasets["train"], data.datasets["valid"])]
    return history, {k: v.clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize("deterministic", [False, True])
def test_two_runs_are_bit_identical(tiny_data, tmp_path, two_threads, deterministic):
    config, data = tiny_data
    first = _train(config, data, tmp_path / "a", deterministic=deterministic)
    second = _train(config, data, tmp_path / "b", deterministic=deterministic)
    assert first[0] == second[0]
    assert first[1].keys() == second[1].keys()
    for name, value in first[1].items():
        assert torch.equal(value, second[1][name]), name


def test_interrupted_run_resumes_bit_for_bit_with_two_threads(tiny_data, tmp_path, two_threads):
    config, data = tiny_data
    full = _train(config, data, tmp_path / "full", max_epochs=3)
    _train(config, data, tmp_path / "resumed", max_epochs=1)  # stopped after epoch 1
    # a new process: other initial weights and global random state
    resumed = _train(config, data, tmp_path / "resumed", init_seed=123, max_epochs=3)
    assert resumed[0] == full[0] and len(full[0]) == 3
    for name, value in full[1].items():
        assert torch.equal(value, resumed[1][name]), name


class _Recorder(nn.MSELoss):
    seen: list[bool] = []
    benchmark: list[bool] = []

    def forward(self, prediction, target):
        self.seen.append(torch.are_deterministic_algorithms_enabled())
        self.benchmark.append(torch.backends.cudnn.benchmark)
        return super().forward(prediction, target)


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 1)

    def forward(self, brain, subject, positions, mask):
        return self.conv(brain)


def _windows(n=8):
    generator = torch.Generator().manual_seed(0)
    return [{"brain": torch.randn(2, 5, generator=generator), "speech": torch.randn(2, 5),
             "subject": torch.tensor(0), "positions": torch.zeros(2, 2),
             "mask": torch.ones(2, dtype=torch.bool)} for _ in range(n)]


def test_deterministic_switch_holds_during_fit_only(tmp_path):
    config = OptimConfig(batch_size=4, max_epochs=1, batches_per_epoch=1, progress=False,
                         deterministic=True)
    _Recorder.seen, _Recorder.benchmark = [], []
    assert not torch.backends.cudnn.benchmark
    Trainer(_Linear(), _Recorder(), config, tmp_path, "sig").fit(_windows(), _windows())
    assert _Recorder.seen and all(_Recorder.seen)
    assert not any(_Recorder.benchmark)  # no algorithm search under deterministic
    assert not torch.are_deterministic_algorithms_enabled()
    _Recorder.seen, _Recorder.benchmark = [], []
    Trainer(_Linear(), _Recorder(), config.model_copy(update={"deterministic": False}),
            tmp_path / "off", "sig").fit(_windows(), _windows())
    assert not any(_Recorder.seen)
    assert _Recorder.benchmark and all(_Recorder.benchmark)  # cuDNN's search by default
    assert not torch.backends.cudnn.benchmark  # restored after fit
    _Recorder.benchmark = []
    Trainer(_Linear(), _Recorder(), config.model_copy(update={"deterministic": False,
                                                              "cudnn_benchmark": False}),
            tmp_path / "fixed", "sig").fit(_windows(), _windows())
    assert _Recorder.benchmark and not any(_Recorder.benchmark)
    # like the device, the switches do not change what is computed: same run folder
    assert config.signature() == OptimConfig(batch_size=4, max_epochs=1, batches_per_epoch=1,
                                             progress=False, cudnn_benchmark=False).signature()


def test_resuming_under_another_thread_count_is_logged(tmp_path, caplog):
    config = OptimConfig(batch_size=4, max_epochs=1, batches_per_epoch=1, progress=False)
    Trainer(_Linear(), nn.MSELoss(), config, tmp_path, "sig").fit(_windows(), _windows())
    previous = torch.get_num_threads()
    torch.set_num_threads(previous + 1)
    try:
        with caplog.at_level(logging.WARNING):
            Trainer(_Linear(), nn.MSELoss(), config.model_copy(update={"max_epochs": 2}),
                    tmp_path, "sig").fit(_windows(), _windows())
    finally:
        torch.set_num_threads(previous)
    assert str(tmp_path / "checkpoint.pt") in caplog.text
    assert f"'threads': {previous}" in caplog.text and "not bit for bit" in caplog.text
