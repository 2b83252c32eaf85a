"""Trainer: learning, early stopping, checkpoints, exact resume after an interruption."""

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch import nn

from braindecode_speech.data.cache import RowReader
from braindecode_speech.data.dataset import FeatureScaler, RobustScaler, Window, WindowDataset
from braindecode_speech.training import trainer as trainer_module
from braindecode_speech.training.heap import kept_heap
from braindecode_speech.training.trainer import CheckpointError, OptimConfig, Trainer


class TinyEncoder(nn.Module):
    """A small conv net with the encoder's call signature (and batch norm + dropout, so that
    resuming must restore running statistics and random state)."""

    def __init__(self, n_channels=8, n_features=4):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(n_channels, 16, 3, padding=1), nn.BatchNorm1d(16),
                                 nn.GELU(), nn.Dropout(0.2), nn.Conv1d(16, n_features, 1))

    def forward(self, brain, subject, positions, mask):
        return self.net(brain * mask[:, :, None])


class Clip(nn.Module):
    def forward(self, z, y):
        y = y / y.flatten(1).norm(dim=1)[:, None, None]
        scores = torch.einsum("bft,cft->bc", z, y)
        return nn.functional.cross_entropy(scores, torch.arange(len(z)))


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    """Time-major brain ``[T, 8]`` and speech ``[T, 4]`` cache files; speech is a noisy linear
    mixture of the brain signal."""
    folder = tmp_path_factory.mktemp("arrays")
    rng = np.random.default_rng(0)
    brain = rng.standard_normal((4000, 8)).astype(np.float32)
    mixing = rng.standard_normal((8, 4)).astype(np.float32)
    speech = (brain @ mixing + 0.5 * rng.standard_normal((4000, 4))).astype(np.float32)
    np.save(folder / "brain.npy", brain)
    np.save(folder / "speech.npy", speech)
    return [RowReader(np.load(folder / f"{name}.npy", mmap_mode="r"))
            for name in ("brain", "speech")]


@pytest.fixture
def dataset(arrays):
    """``dataset(n_windows, seed)``: windows drawn with ``seed`` from the same recording."""
    def make(n_windows=64, seed=0, n_times=24):
        starts = np.random.default_rng(seed).choice(4000 - n_times, size=n_windows,
                                                    replace=False)
        return _dataset(arrays, starts, n_times)
    return make


def _dataset(arrays, starts, n_times):
    brain, speech = arrays
    windows = [Window(0, int(s), 0, int(s), 0) for s in starts]
    rng = np.random.default_rng(0)
    return WindowDataset([brain], [rng.random((8, 2), dtype=np.float32)], [speech], windows,
                         [RobustScaler(np.zeros(8), np.ones(8))],
                         FeatureScaler(np.zeros(4), np.ones(4)), 8, n_times, 0, 20.0)


def _config(**kw):
    base = dict(lr=3e-3, batch_size=16, max_epochs=3, batches_per_epoch=4, patience=10,
                seed=1, progress=False)
    return OptimConfig(**{**base, **kw})


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()
                      if p.dtype.is_floating_point])


def test_training_lowers_the_validation_loss(tmp_path, dataset):
    torch.manual_seed(0)
    trainer = Trainer(TinyEncoder(), Clip(), _config(max_epochs=6), tmp_path, "sig")
    before = trainer.validate(dataset(seed=1))
    history = trainer.fit(dataset(), dataset(seed=1))
    assert len(history) == 6
    assert min(h["valid_loss"] for h in history) < before - 0.2
    assert (tmp_path / "best.pt").exists() and (tmp_path / "history.jsonl").exists()
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert len(lines) == 6


def test_cpu_bf16_trains_under_autocast_close_to_float32(tmp_path, dataset):
    losses = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        model = TinyEncoder()
        dtypes = set()
        model.net[0].register_forward_hook(
            lambda module, args, out, seen=dtypes: seen.add(out.dtype))
        trainer = Trainer(model, Clip(), _config(cpu_bf16=bf16), tmp_path / str(bf16), "sig")
        losses[bf16] = [h["valid_loss"] for h in trainer.fit(dataset(), dataset(seed=1))]
        # training and validation run the convolutions in bfloat16
        assert dtypes == {torch.bfloat16 if bf16 else torch.float32}
    assert losses[True] != losses[False]
    np.testing.assert_allclose(losses[True], losses[False], rtol=0.05)
    assert OptimConfig(cpu_bf16=True).signature() != OptimConfig().signature()


def test_interrupted_run_resumes_exactly(tmp_path, dataset):
    torch.manual_seed(0)
    full = Trainer(TinyEncoder(), Clip(), _config(), tmp_path / "full", "sig")
    full.fit(dataset(), dataset(seed=1))

    class Interrupt(Exception):
        pass

    class FailingClip(Clip):
        calls = 0

        def forward(self, z, y):
            FailingClip.calls += 1
            if FailingClip.calls == 18:  # 8 calls an epoch (4 train + 4 valid): third epoch
                raise Interrupt
            return super().forward(z, y)

    torch.manual_seed(0)
    broken = Trainer(TinyEncoder(), FailingClip(), _config(), tmp_path / "resumed", "sig")
    with pytest.raises(Interrupt):
        broken.fit(dataset(), dataset(seed=1))
    assert broken.epoch == 2
    torch.manual_seed(123)  # a fresh process: other initial weights, other global RNG
    resumed = Trainer(TinyEncoder(), Clip(), _config(), tmp_path / "resumed", "sig")
    resumed.fit(dataset(), dataset(seed=1))
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    assert torch.equal(_params(resumed.model), _params(full.model))


def test_checkpoint_of_another_config_is_refused(tmp_path, dataset):
    Trainer(TinyEncoder(), Clip(), _config(max_epochs=1), tmp_path, "sig-a").fit(
        dataset(), dataset(seed=1))
    other = Trainer(TinyEncoder(), Clip(), _config(max_epochs=1), tmp_path, "sig-b")
    with pytest.raises(CheckpointError, match="config signature sig-a"):
        other.fit(dataset(), dataset(seed=1))


class FrozenEncoder(TinyEncoder):
    """No batch norm, no dropout: with lr=0 its validation loss never changes."""

    def __init__(self):
        super().__init__()
        self.net = nn.Conv1d(8, 4, 1)


def test_early_stopping(tmp_path, dataset):
    trainer = Trainer(FrozenEncoder(), Clip(), _config(lr=0.0, max_epochs=50, patience=2),
                      tmp_path, "sig")
    history = trainer.fit(dataset(), dataset(seed=1))
    assert len(history) == 3  # one best epoch, then two without improvement


def test_too_few_windows_is_a_clear_error(tmp_path, dataset):
    trainer = Trainer(TinyEncoder(), Clip(), _config(), tmp_path, "sig")
    with pytest.raises(ValueError, match="Not enough windows"):
        trainer.fit(dataset(n_windows=1), dataset(seed=1))


@pytest.mark.parametrize("step", ["fast", "lean"])
def test_fast_and_lean_steps_train_like_the_plain_step(tmp_path, dataset, step):
    from braindecode_speech.models import EncoderConfig
    from braindecode_speech.training.losses import ClipLoss

    encoder = EncoderConfig(n_spatial=8, n_fourier=4, hidden=8, depth=1, dropout_radius=0.0)
    runs = {}
    for mode in ("plain", step):
        torch.manual_seed(0)
        trainer = Trainer(encoder.build(n_subjects=1, n_outputs=4), ClipLoss(),
                          _config(max_epochs=2, step=mode, micro_batch=4), tmp_path / mode, "s")
        trainer.fit(dataset(), dataset(seed=1))
        runs[mode] = trainer
    plain, other = runs["plain"], runs[step]
    for a, b in zip(plain.history, other.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-3)
    # Adam moves a parameter by about lr whatever its gradient's size, so float-level gradient
    # differences on parameters with ~0 gradient show up as differences of a few lr at most
    assert (_params(plain.model) - _params(other.model)).abs().max() < 8 * 3e-3


def test_fit_keeps_the_heap_for_fast_steps_on_cpu_unless_told_not_to_with_the_same_weights(
        tmp_path, dataset, monkeypatch):
    seen = []

    @contextmanager
    def recording(enabled=True):
        seen.append(enabled)
        with kept_heap(enabled) as kept:
            yield kept

    from braindecode_speech.models import EncoderConfig
    from braindecode_speech.training.losses import ClipLoss

    monkeypatch.setattr(trainer_module, "kept_heap", recording)
    encoder = EncoderConfig(n_spatial=8, n_fourier=4, hidden=8, depth=1, dropout_radius=0.0)
    weights = {}
    for step, kept in (("fast", True), ("fast", False), ("plain", True)):
        torch.manual_seed(0)
        model = encoder.build(n_subjects=1, n_outputs=4)
        Trainer(model, ClipLoss(), _config(max_epochs=2, step=step, micro_batch=4,
                                           cpu_kept_heap=kept),
                tmp_path / f"{step}{kept}", "sig").fit(dataset(), dataset(seed=1))
        weights[step, kept] = _params(model)
    assert seen == [True, False, False]  # plain's allocations would grow the kept heap
    assert torch.equal(weights["fast", True], weights["fast", False])
    assert _config(cpu_kept_heap=False).signature() == _config().signature()
