"""Multi-process training on CPU (gloo, 2 processes): the batch-shared contrastive loss and its
gradients equal the single-process ones on the same global batch, and a 2-process Trainer
follows the single-process training trajectory."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import submitit
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from braindecode_speech.training.losses import ClipLoss
from braindecode_speech.training.trainer import OptimConfig, Trainer, distributed

WORLD_SIZE = 2
#: rows of the global batch held by each process (uneven on purpose)
SHARES = (slice(0, 3), slice(3, 5))


class Encoder(nn.Module):
    """A 1×1 conv with the brain encoder's call signature (no batch norm, no dropout: its
    training is deterministic, so one or two processes must follow the same trajectory)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(6, 4, 1)

    def forward(self, brain, subject=None, positions=None, mask=None):
        return self.conv(brain)


class Windows(torch.utils.data.Dataset):
    """Random brain ``[6, 10]`` windows and speech ``[4, 10]`` = a fixed mixing + noise."""

    def __init__(self, n: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.brain = torch.randn(n, 6, 10, generator=gen)
        mixing = torch.randn(4, 6, generator=torch.Generator().manual_seed(99))
        self.speech = mixing @ self.brain + 0.3 * torch.randn(n, 4, 10, generator=gen)

    def __len__(self) -> int:
        return len(self.brain)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"brain": self.brain[i], "speech": self.speech[i], "subject": torch.tensor(0),
                "positions": torch.zeros(6, 2), "mask": torch.ones(6, dtype=torch.bool),
                "index": torch.tensor(i)}


def _global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(5, 6, 10, generator=gen), torch.randn(5, 4, 10, generator=gen)


def _predictions() -> torch.Tensor:
    """Decoded windows ``[5, 4, 10]`` to score against the speech of :func:`_global_batch`."""
    return torch.randn(5, 4, 10, generator=torch.Generator().manual_seed(5))


def _optim() -> OptimConfig:
    return OptimConfig(lr=1e-2, batch_size=8, max_epochs=2, batches_per_epoch=3, seed=3,
                       progress=False)


def _fit(folder) -> Trainer:
    torch.manual_seed(0)
    trainer = Trainer(Encoder(), ClipLoss(temperature=0.5, learn_temperature=True), _optim(),
                      folder, "sig")
    trainer.fit(Windows(30, seed=1), Windows(10, seed=2))
    return trainer


def _worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = distributed.init_process_group("gloo")
    assert info == distributed.ProcessGroupInfo(rank, WORLD_SIZE, rank)
    brain, speech = _global_batch()
    share = SHARES[rank]
    results = {}
    torch.manual_seed(0)
    model = Encoder()
    parallel = DistributedDataParallel(model)
    for negatives in ("global", "per_process"):
        model.zero_grad()
        loss = distributed.batch_share_loss(ClipLoss(), parallel(brain[share]), speech[share],
                                            len(brain), negatives)
        loss.backward()
        (total,) = distributed.all_reduce_sum([loss.item()])
        results[negatives] = (total / WORLD_SIZE, [p.grad.clone() for p in model.parameters()])
    # candidates that carry gradients: gather_rows sends every process's share back
    predictions = _predictions()
    learned = speech[share].clone().requires_grad_(True)
    candidates, offset = distributed.gather_rows(learned)
    logits = ClipLoss().logits(predictions[share], candidates)
    loss = nn.functional.cross_entropy(logits, torch.arange(offset, offset + len(logits)),
                                       reduction="sum") / len(brain)
    loss.backward()
    results["speech_grad"] = learned.grad
    results["trainer"] = _fit(f"{folder}/ddp").model.state_dict()
    torch.save(results, f"{folder}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of 2 gloo processes computed (one spawn shared by the tests)."""
    folder = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.spawn(_worker, args=(_free_port(), str(folder)), nprocs=WORLD_SIZE)
    ranks = [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]
    return ranks, folder


def _reference(loss_fn) -> tuple[float, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = Encoder()
    loss = loss_fn(model)
    loss.backward()
    return loss.item(), [p.grad for p in model.parameters()]


@pytest.mark.slow  # spawns 2 processes (shared by the module)
def test_global_negatives_equal_the_single_process_loss_and_gradients(ranks):
    results, _ = ranks
    brain, speech = _global_batch()
    value, grads = _reference(lambda model: ClipLoss()(model(brain), speech))
    for rank in results:
        loss, ddp_grads = rank["global"]
        assert loss == pytest.approx(value, rel=1e-5)
        for ddp_grad, grad in zip(ddp_grads, grads):
            torch.testing.assert_close(ddp_grad, grad, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # spawns 2 processes (shared by the module)
def test_per_process_negatives_are_the_window_weighted_mean_of_the_shares(ranks):
    results, _ = ranks
    brain, speech = _global_batch()

    def per_share(model):
        return sum(ClipLoss()(model(brain[s]), speech[s]) * (s.stop - s.start)
                   for s in SHARES) / len(brain)

    value, grads = _reference(per_share)
    global_value, _ = _reference(lambda model: ClipLoss()(model(brain), speech))
    assert value != pytest.approx(global_value, rel=1e-3)  # fewer negatives: another loss
    for rank in results:
        loss, ddp_grads = rank["per_process"]
        assert loss == pytest.approx(value, rel=1e-5)
        for ddp_grad, grad in zip(ddp_grads, grads):
            torch.testing.assert_close(ddp_grad, grad, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # spawns 2 processes (shared by the module)
def test_gathered_candidates_send_their_gradients_back(ranks):
    results, _ = ranks
    _, speech = _global_batch()
    speech = speech.clone().requires_grad_(True)
    ClipLoss()(_predictions(), speech).backward()
    for rank, share in zip(results, SHARES):
        torch.testing.assert_close(rank["speech_grad"], speech.grad[share], rtol=1e-4,
                                   atol=1e-6)


@pytest.mark.slow  # spawns 2 processes (shared by the module)
def test_two_process_trainer_follows_the_single_process_run(ranks, tmp_path):
    results, folder = ranks
    single = _fit(tmp_path)
    for rank in results:
        for name, value in single.model.state_dict().items():
            torch.testing.assert_close(rank["trainer"][name], value, rtol=1e-4, atol=1e-5)
    ddp_history = [json.loads(line) for line in
                   (folder / "ddp" / "history.jsonl").read_text().splitlines()]
    assert len(ddp_history) == len(single.history) == 2
    for ddp_epoch, epoch in zip(ddp_history, single.history):
        assert ddp_epoch["train_loss"] == pytest.approx(epoch["train_loss"], rel=1e-4)
        assert ddp_epoch["valid_loss"] == pytest.approx(epoch["valid_loss"], rel=1e-4)
    # only rank 0 wrote the run's files, once
    assert sorted(p.name for p in (folder / "ddp").iterdir()) == \
        ["best.pt", "checkpoint.pt", "history.jsonl"]


def test_single_process_helpers_are_no_ops():
    assert distributed.init_process_group() == distributed.ProcessGroupInfo(0, 1, 0)
    assert distributed.is_main_process()
    assert distributed.all_reduce_sum([1.5, 2.0]) == [1.5, 2.0]
    x = torch.randn(3, 2)
    gathered, offset = distributed.gather_rows(x)
    assert gathered is x and offset == 0
    brain, speech = _global_batch()
    assert distributed.batch_share_loss(ClipLoss(), speech, speech, 5).item() == \
        pytest.approx(ClipLoss()(speech, speech).item())
    assert distributed.rank_device("cpu", 3) == torch.device("cpu")


def _join_process_group() -> tuple[int, int, int, float]:
    """Run in each task of a submitit job: join the group, sum ``rank + 1`` over it."""
    info = distributed.init_process_group()
    (total,) = distributed.all_reduce_sum([info.rank + 1.0])
    torch.distributed.destroy_process_group()
    return info.rank, info.world_size, info.local_rank, total


@pytest.mark.slow
def test_submitit_tasks_form_a_process_group(tmp_path, monkeypatch):
    """The tasks of one submitit job (here local; on SLURM, ``--ntasks-per-node`` × nodes)
    find each other from their job environment."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # to unpickle the function
    executor = submitit.LocalExecutor(tmp_path)
    executor.update_parameters(tasks_per_node=2, timeout_min=5)
    job = executor.submit(_join_process_group)
    assert sorted(job.results()) == [(0, 2, 0, 3.0), (1, 2, 1, 3.0)]
