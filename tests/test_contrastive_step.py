"""The fast and lean training steps must reproduce the plain step exactly (float tolerance)."""

from __future__ import annotations

import pytest
import torch
import torch._inductor.config

from braindecode_speech.config import ConfigError
from braindecode_speech.models import EncoderConfig
from braindecode_speech.models.conv import DilatedConv, DilatedConvStack, GLUConv
from braindecode_speech.training import steps
from braindecode_speech.training.losses import ClipLoss, clip_scores
from braindecode_speech.training.steps import (
    _GLU,
    ContrastiveStep,
    _apply_layer,
    _layer_sync,
    _linear_last,
    _Recompute,
    _roomy_like,
    _ScoresThroughLinear,
    _SlicedScores,
    _time_major,
)
from braindecode_speech.training.trainer import OptimConfig

SMALL = {"n_spatial": 6, "n_fourier": 4, "hidden": 8, "depth": 2, "dropout_radius": 0.4,
         "signal_embedding_dim": 4, "signal_kernel_size": 4}


def make_batch(batch_size: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two sensor layouts (7 and 5 sensors) mixed in one padded batch, 3 subjects."""
    gen = torch.Generator().manual_seed(seed)
    layouts = [torch.rand(7, 2, generator=gen), torch.rand(5, 2, generator=gen)]
    brain = torch.randn(batch_size, 7, 16, generator=gen)
    positions = torch.zeros(batch_size, 7, 2)
    mask = torch.zeros(batch_size, 7, dtype=torch.bool)
    for i in range(batch_size):
        layout = layouts[i % 2]
        positions[i, : len(layout)] = layout
        mask[i, : len(layout)] = True
        brain[i, len(layout):] = 0.0
    return {
        "brain": brain,
        "subject": torch.randint(-1, 3, (batch_size,), generator=gen),
        "positions": positions,
        "mask": mask,
        "speech": torch.randn(batch_size, 5, 16, generator=gen),
        "index": torch.arange(batch_size),
    }


def make_step(mode: str, micro_batch: int = 4, seed: int = 0, bf16: bool = False, **config):
    torch.manual_seed(seed)
    model = EncoderConfig(**{**SMALL, **config}).build(n_subjects=3, n_outputs=5).train()
    loss = ClipLoss(temperature=0.5, learn_temperature=True)
    # SGD, not Adam: Adam turns float noise on gradients that are exactly zero in theory (conv
    # biases before batch norm) into full-size updates
    optimizer = torch.optim.SGD([*model.parameters(), *loss.parameters()], lr=0.1, momentum=0.9)
    return ContrastiveStep(model, loss, optimizer, mode, micro_batch, bf16)


def run_steps(step: ContrastiveStep, n_steps: int = 2) -> list[float]:
    torch.manual_seed(123)  # spatial dropout and dropout draws
    return [step(make_batch(seed=i)) for i in range(n_steps)]


def assert_same_state(step: ContrastiveStep, reference: ContrastiveStep) -> None:
    for (name, value), (_, expected) in zip(
        [*step.model.state_dict().items(), *step.loss.state_dict().items()],
        [*reference.model.state_dict().items(), *reference.loss.state_dict().items()],
    ):
        torch.testing.assert_close(value, expected, rtol=2e-4, atol=1e-6, msg=name)
    for param, expected in zip([*step.model.parameters(), *step.loss.parameters()],
                               [*reference.model.parameters(), *reference.loss.parameters()]):
        torch.testing.assert_close(param.grad, expected.grad, rtol=2e-4, atol=1e-6)


CONFIGS = {
    "paper": {},
    "conv dropout": {"dropout": 0.3},
    "relu": {"activation": "relu"},
    "signal merger, no batch norm": {"merger": "signal", "batch_norm": False},
    "no GLU, subject embedding": {"glu": False, "subject_layers": False,
                                  "subject_embedding": True, "subject_embedding_dim": 2},
}


@pytest.mark.parametrize("mode", ["fast", "lean"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_step_matches_plain(mode, config):
    plain = make_step("plain", **CONFIGS[config])
    other = make_step(mode, micro_batch=4, **CONFIGS[config])  # 10 = 4 + 4 + 2
    plain_losses = run_steps(plain)
    rng_after_plain = torch.get_rng_state()
    losses = run_steps(other)
    assert losses == pytest.approx(plain_losses, rel=1e-5)
    # same loss, gradients (of the last step), weights, running statistics and random stream
    assert_same_state(other, plain)
    assert torch.equal(torch.get_rng_state(), rng_after_plain)


@pytest.mark.parametrize("mode", ["fast", "lean"])
def test_step_matches_plain_in_chunks_and_slices(mode, monkeypatch):
    """Batch norm's chunks that do not divide the micro-batches (4 = 3 + 1), score slices
    that do not divide the predictions (80 = 11 · 7 + 3) and a last score group of one
    micro-batch (3 micro-batches in groups of 2) give the plain step's results too."""
    monkeypatch.setattr(steps, "_CHUNK", 3)
    monkeypatch.setattr(steps, "_SLICE", 7)
    plain, other = make_step("plain"), make_step(mode, micro_batch=4)
    assert run_steps(other) == pytest.approx(run_steps(plain), rel=1e-5)
    assert_same_state(other, plain)


def test_sliced_scores_are_clip_scores():
    """The fast step's score product (predictions converted slice by slice, gradient written
    slice by slice in their dtype) equals clip_scores of the float32 predictions: exact
    gradients in float64, and bf16 predictions scored and differentiated in float32."""
    gen = torch.Generator().manual_seed(0)
    speech = torch.randn(6, 40, dtype=torch.float64, generator=gen)
    norms = speech.norm(dim=1)
    prediction = torch.randn(3, 40, dtype=torch.float64, generator=gen, requires_grad=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steps, "_SLICE", 7)
        assert torch.autograd.gradcheck(lambda p: _SlicedScores.apply(p, speech, norms),
                                         (prediction,))
        torch.testing.assert_close(_SlicedScores.apply(prediction, speech, norms),
                                   clip_scores(prediction, speech))
        bf16 = prediction.detach().bfloat16().requires_grad_()
        speech, norms = speech.float(), norms.float()
        scores = _SlicedScores.apply(bf16, speech, norms)
        grad_out = torch.randn(scores.shape, generator=gen)
        scores.backward(grad_out)
        reference = bf16.detach().clone().requires_grad_()
        expected = clip_scores(reference.float(), speech, norms)
        expected.backward(grad_out)
    assert scores.dtype == torch.float32 and bf16.grad.dtype == torch.bfloat16
    torch.testing.assert_close(scores, expected)
    torch.testing.assert_close(bf16.grad, reference.grad, rtol=8e-3, atol=1e-6)


@pytest.mark.parametrize("act", ["none", "relu", "gelu-none", "gelu-tanh"])
def test_scores_through_the_last_layer_are_clip_scores(act):
    """Scoring the parts against the speech projected through the last 1×1 convolution
    equals clip_scores of the predictions ``last(act(h))`` (no bias): exact gradients in
    float64 over slices that do not divide the time steps, and bf16 parts (product in bf16)
    scored in float32 with gradients in bf16 close to those of the float32 computation."""
    gen = torch.Generator().manual_seed(0)
    hidden, features, steps_ = 3, 4, 5
    speech = torch.randn(6, features, steps_, dtype=torch.float64, generator=gen)
    weight = torch.randn(features, hidden, 1, dtype=torch.float64, generator=gen,
                         requires_grad=True)
    parts = [_time_major(torch.randn(n, hidden, steps_, dtype=torch.float64, generator=gen))
             .requires_grad_() for n in (2, 3)]
    activation = {"none": torch.nn.Identity(), "relu": torch.nn.ReLU(),
                  "gelu-none": torch.nn.GELU(), "gelu-tanh": torch.nn.GELU("tanh")}[act]

    def through(speech, weight, *parts):
        by_time = speech.transpose(1, 2)
        norms = by_time.flatten(1).norm(dim=1)
        return _ScoresThroughLinear.apply(by_time, weight, norms, parts[0].dtype, act, *parts)

    def reference(speech, weight, *parts):
        hidden_ = activation(torch.cat([part.squeeze(2) for part in parts]))
        return clip_scores(torch.nn.functional.conv1d(hidden_, weight), speech)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steps, "_SLICE", 7)  # two time steps (6 columns) per slice: 3 slices
        torch.testing.assert_close(through(speech, weight, *parts),
                                   reference(speech, weight, *parts))
        assert torch.autograd.gradcheck(lambda w, *p: through(speech, w, *p),
                                         (weight, *parts))
        speech, weight_ = speech.float(), weight.detach().float().requires_grad_()
        bf16 = [part.detach().bfloat16().requires_grad_() for part in parts]
        scores = through(speech, weight_, *bf16)
        grad_out = torch.randn(scores.shape, generator=gen)
        scores.backward(grad_out)
        weight_ref = weight_.detach().clone().requires_grad_()
        float_parts = [part.detach().float().requires_grad_() for part in bf16]
        reference(speech, weight_ref, *float_parts).backward(grad_out)
    assert scores.dtype == torch.float32
    assert all(part.grad.dtype == torch.bfloat16 for part in bf16)
    assert weight_.grad.dtype == torch.float32
    expected = reference(speech, weight_ref.detach(), *float_parts).detach()
    torch.testing.assert_close(scores, expected, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(weight_.grad, weight_ref.grad, rtol=2e-2, atol=2e-2)
    for part, ref in zip(bf16, float_parts):
        torch.testing.assert_close(part.grad.float(), ref.grad, rtol=2e-2, atol=2e-2)


def test_linear_last_splits_the_final_segment_before_a_one_by_one_convolution():
    conv = torch.nn.Conv1d
    head, act, last = _linear_last(torch.nn.Sequential(conv(4, 8, 1), torch.nn.GELU(),
                                                       conv(8, 5, 1)))
    assert act == "gelu-none" and isinstance(last, conv) and last.out_channels == 5
    assert len(head) == 1 and head[0].out_channels == 8
    head, act, last = _linear_last(torch.nn.Sequential(conv(4, 8, 1), torch.nn.ReLU(),
                                                       conv(8, 5, 1, bias=False)))
    assert act == "relu" and last.bias is None
    bare = conv(4, 5, 1)
    head, act, last = _linear_last(bare)
    assert (len(head), act, last) == (0, "none", bare)
    head, act, _ = _linear_last(torch.nn.Sequential(conv(4, 8, 3), conv(8, 5, 1)))
    assert act == "none" and len(head) == 1  # no activation: the head ends with the conv
    for final in (conv(4, 5, 3, padding=1), conv(4, 6, 1, groups=2), conv(4, 5, 1, stride=2),
                  torch.nn.Sequential(conv(4, 5, 1), torch.nn.Tanh()), torch.nn.Sequential(),
                  torch.nn.Linear(4, 5)):
        assert _linear_last(final) is None, final


@pytest.mark.parametrize("final", ["one convolution", "ends with tanh"])
def test_fast_step_scores_through_the_last_layer_only_when_it_can(final, monkeypatch):
    """A bare 1×1 convolution (as the paper's conv-GELU-conv, in the other tests) is scored
    through (the predictions are never computed); a final segment that ends otherwise is run
    and its predictions scored. Both give the plain step's results."""
    used = []
    for name in ("_ScoresThroughLinear", "_SlicedScores"):
        original = getattr(steps, name)
        spy = type(name, (original,), {"forward": staticmethod(
            lambda ctx, *args, _name=name, _forward=original.forward:
            used.append(_name) or _forward(ctx, *args))})
        monkeypatch.setattr(steps, name, spy)

    def make(mode):
        step = make_step(mode, final_convs=final != "one convolution")
        if final == "ends with tanh":
            step.model.final = torch.nn.Sequential(step.model.final, torch.nn.Tanh())
            if mode != "plain":
                step.stages = steps._stages(step.model, mode)
        return step

    plain, fast = make("plain"), make("fast")
    assert run_steps(fast) == pytest.approx(run_steps(plain), rel=1e-5)
    assert_same_state(fast, plain)
    expected = "_SlicedScores" if final == "ends with tanh" else "_ScoresThroughLinear"
    assert used and set(used) == {expected}


def test_micro_batch_larger_than_batch_is_plain():
    plain, lean = make_step("plain"), make_step("lean", micro_batch=64)
    assert run_steps(lean) == pytest.approx(run_steps(plain), rel=1e-5)
    assert_same_state(lean, plain)
    # fast mode on a single micro-batch takes the plain path: bit-identical
    fast, plain = make_step("fast", micro_batch=10), make_step("plain")
    assert run_steps(fast) == run_steps(plain)
    for param, expected in zip(fast.model.parameters(), plain.model.parameters()):
        assert torch.equal(param, expected) and torch.equal(param.grad, expected.grad)


def test_step_uses_the_whole_batch_for_batch_norm():
    # batch norm over micro-batches alone would differ: the check above is not vacuous
    plain = make_step("plain")
    plain_losses = run_steps(plain, n_steps=1)
    ghost = make_step("plain")
    torch.manual_seed(123)
    batch = make_batch(seed=0)
    ghost.optimizer.zero_grad()
    with torch.no_grad():
        pieces = [ghost.model(batch["brain"][s], batch["subject"][s], batch["positions"][s],
                              batch["mask"][s]) for s in (slice(0, 4), slice(4, 8), slice(8, 10))]
        ghost_loss = ghost.loss(torch.cat(pieces), batch["speech"])
    assert abs(float(ghost_loss) - plain_losses[0]) > 1e-4


@pytest.mark.parametrize("mode", ["plain", "fast", "lean"])
def test_bf16_autocast_stays_close_to_float32(mode):
    reference = run_steps(make_step("plain"), n_steps=1)[0]
    loss = run_steps(make_step(mode, bf16=True), n_steps=1)[0]
    assert loss == pytest.approx(reference, rel=0.05)


def test_step_rejects_bad_arguments():
    model = EncoderConfig(**SMALL).build(n_subjects=3, n_outputs=5)
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match="Unknown mode"):
        ContrastiveStep(model, ClipLoss(), optimizer, mode="quick")
    with pytest.raises(ValueError, match="micro_batch"):
        ContrastiveStep(model, ClipLoss(), optimizer, mode="fast", micro_batch=0)
    with pytest.raises(TypeError, match="ClipLoss"):
        ContrastiveStep(model, torch.nn.MSELoss(), optimizer, mode="lean")


class PerSample(torch.nn.Module):
    """A model that treats samples independently (no batch norm), with optional dropout."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv1d(7, 12, 3, padding=1), torch.nn.GELU(),
                                       torch.nn.Dropout(dropout), torch.nn.Conv1d(12, 5, 1))
        self.subject = torch.nn.Embedding(3, 12)

    def forward(self, brain, subject, positions, mask):
        hidden = self.net[:2](brain * mask[:, :, None]) + self.subject(subject.clamp(min=0))[..., None]
        return self.net[2:](hidden)


class WithBatchNorm(PerSample):
    def __init__(self):
        super().__init__()
        self.net.insert(1, torch.nn.BatchNorm1d(12))


def per_sample_step(mode: str, make=PerSample, micro_batch: int = 4):
    torch.manual_seed(0)
    model = make()
    loss = ClipLoss(temperature=0.5, learn_temperature=True)
    optimizer = torch.optim.SGD([*model.parameters(), *loss.parameters()], lr=0.1)
    return ContrastiveStep(model, loss, optimizer, mode, micro_batch)


@pytest.mark.parametrize("mode", ["fast", "lean"])
def test_any_model_without_batch_norm_runs_fast_and_lean(mode):
    plain, other = per_sample_step("plain"), per_sample_step(mode)
    assert run_steps(other) == pytest.approx(run_steps(plain), rel=1e-5)
    assert_same_state(other, plain)


def test_lean_replays_the_dropout_of_its_first_pass():
    """With dropout, micro-batches draw their own masks, the same in both modes; lean's re-run
    must see the masks of its first pass to give fast's gradients."""
    def make():
        return PerSample(dropout=0.5)

    fast, lean = per_sample_step("fast", make), per_sample_step("lean", make)
    assert run_steps(lean) == pytest.approx(run_steps(fast), rel=1e-5)
    assert_same_state(lean, fast)


def test_batch_norm_without_staged_interface_is_refused_with_what_is_missing():
    with pytest.raises(ConfigError, match=r"model\.target.*net\.1.*lacks spatial_dropout, "
                       r"embed_sensors, blocks, final.*optim\.step=plain"):
        per_sample_step("fast", WithBatchNorm)
    # a staged model whose batch norm sits outside its blocks cannot be cut either
    def make():
        model = EncoderConfig(**SMALL).build(n_subjects=3, n_outputs=5)
        model.initial_linear = torch.nn.Sequential(torch.nn.Conv1d(6, 6, 1),
                                                   torch.nn.BatchNorm1d(6))
        return model

    with pytest.raises(ConfigError, match=r"initial_linear\.1 outside its blocks"):
        per_sample_step("lean", make)


def test_plain_mode_accepts_any_model():
    torch.manual_seed(0)
    model = torch.nn.Conv1d(7, 5, 1)

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = model

        def forward(self, brain, subject, positions, mask):
            return self.conv(brain)

    wrapper = Wrapper()
    step = ContrastiveStep(wrapper, ClipLoss(), torch.optim.SGD(wrapper.parameters(), lr=0.1))
    batch = make_batch()
    before = step(batch)
    assert step(batch) < before



@pytest.mark.parametrize("mode", ["plain", "fast", "lean"])
@pytest.mark.parametrize("config", ["paper", "signal merger, no batch norm"])
def test_time_major_batches_train_as_channel_major_ones(mode, config):
    """The loader hands brain and speech as [B, C, T] views of time-major memory: every step
    trains on them as on contiguous tensors (same loss, gradients and updated state)."""

    def time_major(batch):
        return {k: v.transpose(1, 2).contiguous().transpose(1, 2)
                if k in ("brain", "speech") else v for k, v in batch.items()}

    reference = make_step(mode, **CONFIGS[config])
    step = make_step(mode, **CONFIGS[config])
    torch.manual_seed(123)
    expected = [reference(make_batch(seed=i)) for i in range(2)]
    torch.manual_seed(123)
    batches = [time_major(make_batch(seed=i)) for i in range(2)]
    assert not batches[0]["brain"].is_contiguous()
    got = [step(batch) for batch in batches]
    assert got == pytest.approx(expected, rel=1e-5)
    assert_same_state(step, reference)


class Scale(torch.nn.Module):
    """A per-sample layer the time-major path does not know (run on the [b, C, T] view)."""

    def forward(self, x):
        assert x.dim() == 3
        return x * torch.arange(1.0, x.shape[-1] + 1)


TIME_MAJOR_MODULES = {
    "dilated conv, residual": lambda: DilatedConv(6, 6, 3, dilation=4, residual=True,
                                                  batch_norm=False),
    "dilated conv, dropout (eval)": lambda: DilatedConv(6, 6, 3, dilation=2, residual=False,
                                                        dropout=0.5).eval(),
    "GLU conv": lambda: GLUConv(6, 3),
    "final convs": lambda: torch.nn.Sequential(torch.nn.Conv1d(6, 12, 1), torch.nn.GELU(),
                                               torch.nn.Conv1d(12, 5, 1)),
    "strided grouped conv": lambda: torch.nn.Conv1d(6, 4, 5, stride=2, padding=2, groups=2),
    "unknown layers": lambda: torch.nn.Sequential(
        torch.nn.Conv1d(6, 6, 3, padding="same"), Scale(), torch.nn.GLU(dim=1)),
}


@pytest.mark.parametrize("name", sorted(TIME_MAJOR_MODULES))
def test_time_major_layers_equal_the_modules(name):
    """fast/lean run the blocks and final convolutions on time-major [b, C, 1, T] parts: the
    values and gradients are those of the modules on [b, C, T], and the result stays
    time-major (channels-last) for the next layer."""
    torch.manual_seed(0)
    module = TIME_MAJOR_MODULES[name]().double()
    x = torch.randn(3, 6, 17, dtype=torch.float64, requires_grad=True)
    expected = module(x)
    grad = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, [x, *module.parameters()], grad)
    part = _time_major(x)
    assert part.is_contiguous(memory_format=torch.channels_last)
    (out,) = _layer_sync(module, [part], update_stats=False)
    assert out.is_contiguous(memory_format=torch.channels_last)
    grads = torch.autograd.grad(out.squeeze(2), [x, *module.parameters()], grad)
    torch.testing.assert_close(out.squeeze(2), expected)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


def test_time_major_glu_gradient():
    """A standalone ``nn.GLU(dim=1)`` on a time-major part: the native values and exact
    gradients, time-major output, and the input left as it was (the GLU works in place on
    copies of its halves)."""
    x = _time_major(torch.randn(2, 8, 5, dtype=torch.float64)).requires_grad_()
    before = x.detach().clone()
    glu = torch.nn.GLU(dim=1)
    assert torch.autograd.gradcheck(lambda t: _apply_layer(glu, t), (x,))
    out = _apply_layer(glu, x)
    torch.testing.assert_close(out, torch.nn.functional.glu(x, dim=1))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x.detach(), before)


def test_in_place_glu_gradient():
    """The GLU of the fast/lean GLU convolutions works in the memory of its inputs: the
    output is ``first·σ(second)``, with exact gradients."""
    first, second = (torch.randn(2, 4, 1, 5, dtype=torch.float64, requires_grad=True)
                     for _ in range(2))

    def glu(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _GLU.apply(a.clone(), b.clone())[0]  # in place: on copies of the leaves

    assert torch.autograd.gradcheck(glu, (first, second))
    torch.testing.assert_close(glu(first, second), first * torch.sigmoid(second))


def test_roomy_like_has_the_layout_of_its_model():
    for x in (_time_major(torch.randn(3, 5, 7)), torch.randn(3, 5, 7),
              _time_major(torch.randn(2, 4, 6)).bfloat16()):
        y = _roomy_like(x)
        assert (y.shape, y.dtype, y.stride()) == (x.shape, x.dtype, x.stride())
        assert not y._is_view()
        assert y.untyped_storage().nbytes() > x.numel() * x.element_size()


def test_fast_forward_keeps_no_residual_sum():
    """In the fast step, the residual sums of a block (inputs of its second and GLU
    convolutions) are recomputed in backward, to the same bits, from tensors kept anyway: a
    block keeps 5 tensors of its parts' size per part (its input, the two batch-norm inputs,
    the GLU gate and output) instead of 7; the gradients are identical."""
    torch.manual_seed(0)
    block = DilatedConvStack(6, hidden=6, depth=1).blocks[0].double().train()
    x = torch.randn(8, 6, 11, dtype=torch.float64)
    grad = torch.randn(8, 6, 11, dtype=torch.float64)

    def run(recompute: _Recompute | None) -> tuple[int, list[torch.Tensor]]:
        parts = [_time_major(piece).requires_grad_() for piece in x.split(4)]
        kept = set()

        def pack(tensor):
            saved = recompute.pack(tensor) if recompute is not None else tensor
            if isinstance(saved, torch.Tensor) and saved.shape == parts[0].shape:
                kept.add(saved.untyped_storage().data_ptr())
            return saved

        unpack = recompute.unpack if recompute is not None else (lambda saved: saved)
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            out = _layer_sync(block, parts, update_stats=False, recompute=recompute)
        grads = torch.autograd.grad([o.squeeze(2) for o in out],
                                    [*parts, *block.parameters()], list(grad.split(4)))
        return len(kept), [*out, *grads]

    kept, results = run(_Recompute())
    kept_plain, expected = run(None)
    assert (kept, kept_plain) == (5 * 2, 7 * 2)
    for got, want in zip(results, expected):
        assert torch.equal(got, want)


@pytest.mark.slow  # compiling takes ~50 s on 2 cores
def test_compiled_step_matches_plain(monkeypatch):
    """``compile=True`` runs the training forward through torch.compile: same losses, state
    and gradients as the eager step (the compiled kernels round differently, hence the
    tolerance; random draws made by torch's generator, as eager, instead of the compiler's
    own); validation (eval mode) stays eager."""
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    plain = make_step("plain")
    torch.manual_seed(0)
    model = EncoderConfig(**SMALL).build(n_subjects=3, n_outputs=5).train()
    loss = ClipLoss(temperature=0.5, learn_temperature=True)
    optimizer = torch.optim.SGD([*model.parameters(), *loss.parameters()], lr=0.1, momentum=0.9)
    compiled = ContrastiveStep(model, loss, optimizer, "plain", compile=True)
    assert compiled.train_model is not model and plain.train_model is plain.model
    torch.testing.assert_close(run_steps(compiled), run_steps(plain), rtol=1e-4, atol=1e-6)
    assert_same_state(compiled, plain)
    model.eval()
    plain.model.eval()
    with torch.no_grad():
        valid = compiled.batch_loss(make_batch(seed=5))
        torch.testing.assert_close(valid, plain.batch_loss(make_batch(seed=5)))


@pytest.mark.parametrize("mode", ["fast", "lean"])
def test_compile_needs_plain(mode):
    model = EncoderConfig(**SMALL).build(n_subjects=3, n_outputs=5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="compile needs mode 'plain'"):
        ContrastiveStep(model, ClipLoss(), optimizer, mode, compile=True)
    with pytest.raises(ValueError, match="optim.compile needs optim.step=plain"):
        OptimConfig(step=mode, compile=True)
    assert OptimConfig(compile=True).signature() == OptimConfig().signature()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("mode", ["fast", "lean"])
def test_step_matches_plain_on_cuda(mode, monkeypatch):
    """The pooled batch-norm backward calls the kernel with the saved statistics CUDA
    requires: on a GPU too, fast and lean give plain's losses, gradients and state (in full
    float32: cuDNN's default TF32 rounds micro-batches and the whole batch differently)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    plain, other = make_step("plain"), make_step(mode, micro_batch=4)
    for step in (plain, other):
        step.model.cuda()
        step.loss.cuda()
    torch.testing.assert_close(run_steps(other), run_steps(plain), rtol=2e-4, atol=1e-6)
    assert_same_state(other, plain)
