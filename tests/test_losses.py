"""Tests of the contrastive (CLIP) and regression losses."""

from __future__ import annotations

import math

import pytest
import torch

from braindecode_speech.config import ConfigError
from braindecode_speech.training.losses import ClipLoss, LossConfig, MSELoss, clip_scores


def hand_clip_loss(brain: torch.Tensor, speech: torch.Tensor, temperature: float = 1.0) -> float:
    """The paper's loss written out with Python loops (float64)."""
    n = len(brain)
    total = 0.0
    for i in range(n):
        scores = []
        for j in range(n):
            norm = math.sqrt(sum(v * v for v in speech[j].flatten().tolist()))
            inner = sum(a * b for a, b in zip(brain[i].flatten().tolist(),
                                              speech[j].flatten().tolist()))
            scores.append(inner / norm / temperature)
        log_normaliser = math.log(sum(math.exp(s) for s in scores))
        total += log_normaliser - scores[i]
    return total / n


def test_clip_loss_equals_cross_entropy_by_hand():
    torch.manual_seed(0)
    brain, speech = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    loss = ClipLoss()(brain, speech)
    assert loss.item() == pytest.approx(hand_clip_loss(brain, speech), rel=1e-5)


def test_clip_loss_with_fixed_temperature():
    torch.manual_seed(1)
    brain, speech = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    loss = ClipLoss(temperature=0.5)(brain, speech)
    assert loss.item() == pytest.approx(hand_clip_loss(brain, speech, 0.5), rel=1e-5)
    assert not list(ClipLoss(temperature=0.5).parameters())


def test_learned_temperature_is_trained():
    brain, speech = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    loss_fn = ClipLoss(temperature=0.1, learn_temperature=True)
    assert loss_fn(brain, speech).item() == pytest.approx(hand_clip_loss(brain, speech, 0.1),
                                                          rel=1e-5)
    loss_fn(brain, speech).backward()
    assert loss_fn.log_temperature.grad is not None and loss_fn.log_temperature.grad != 0


def test_clip_loss_from_scores_equals_the_loss_on_predictions():
    torch.manual_seed(5)
    brain, speech = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    loss_fn = ClipLoss(temperature=0.3)
    scores = clip_scores(brain, speech)
    torch.testing.assert_close(loss_fn.from_scores(scores), loss_fn(brain, speech))
    with pytest.raises(ValueError, match="N >= offset"):
        loss_fn.from_scores(scores[:, :3])
    with pytest.raises(ValueError, match="N >= offset"):
        loss_fn.from_scores(scores[:2], offset=3)


def test_clip_loss_from_scores_with_offset_is_the_rows_share_of_the_batch_loss():
    """Rows 2-3 scored against the whole batch (their matches at columns 2-3) give the mean of
    those rows' terms of the in-batch loss."""
    torch.manual_seed(6)
    brain, speech = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    loss_fn = ClipLoss(temperature=0.3)
    share = loss_fn.from_scores(clip_scores(brain[2:], speech), offset=2)
    terms = torch.nn.functional.cross_entropy(loss_fn.logits(brain, speech), torch.arange(4),
                                              reduction="none")
    torch.testing.assert_close(share, terms[2:].mean())
    assert not torch.allclose(share, terms[:2].mean())


def test_clip_scores_ignore_the_norm_of_candidates():
    torch.manual_seed(2)
    brain, speech = torch.randn(5, 3, 7), torch.randn(5, 3, 7)
    scaled = speech * torch.tensor([0.01, 1.0, 3.0, 100.0, 7.0])[:, None, None]
    torch.testing.assert_close(clip_scores(brain, scaled), clip_scores(brain, speech))
    torch.testing.assert_close(ClipLoss()(brain, scaled), ClipLoss()(brain, speech))
    # ... but not the norm of the brain predictions (it acts as an inverse temperature)
    assert not torch.allclose(ClipLoss()(2 * brain, speech), ClipLoss()(brain, speech))


def test_clip_scores_against_more_candidates_than_queries():
    torch.manual_seed(3)
    brain, speech = torch.randn(2, 3, 4), torch.randn(6, 3, 4)
    scores = ClipLoss().scores(brain, speech)
    assert scores.shape == (2, 6)
    expected = torch.einsum("bft,nft->bn", brain, speech / speech.norm(dim=(1, 2), keepdim=True))
    torch.testing.assert_close(scores, expected)
    norms = speech.norm(dim=(1, 2))
    torch.testing.assert_close(clip_scores(brain, speech, speech_norms=norms), expected)


def test_clip_loss_rewards_matching_pairs():
    torch.manual_seed(4)
    speech = torch.randn(8, 4, 6)
    matched = ClipLoss()(10 * speech, speech)
    shuffled = ClipLoss()(10 * speech[torch.randperm(8)], speech)
    assert matched < 0.01 < shuffled


def test_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="agree in F and T"):
        clip_scores(torch.randn(2, 3, 4), torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="matching"):
        ClipLoss()(torch.randn(2, 3, 4), torch.randn(3, 3, 4))
    with pytest.raises(ValueError, match="same shape"):
        MSELoss()(torch.randn(2, 3, 4), torch.randn(2, 4, 4))
    with pytest.raises(ValueError, match="temperature"):
        ClipLoss(learn_temperature=True)


def test_mse_loss():
    brain, speech = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    assert MSELoss()(brain, speech).item() == pytest.approx(((brain - speech) ** 2).mean().item())


def test_loss_config_builds_the_named_loss():
    assert isinstance(LossConfig().build(), ClipLoss)
    assert LossConfig().build().log_temperature is None
    assert isinstance(LossConfig(name="mse").build(), MSELoss)
    learned = LossConfig(temperature=0.2, learn_temperature=True).build()
    assert learned.log_temperature.requires_grad
    for bad in ({"name": "mse", "temperature": 0.1}, {"learn_temperature": True},
                {"temperature": -1.0}, {"name": "l1"}):
        with pytest.raises(ConfigError):
            LossConfig.from_dict(bad)
