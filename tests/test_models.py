"""Tests of the brain encoder, its building blocks and the ridge baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from braindecode_speech.config import ConfigError
from braindecode_speech.models import (
    TABLE4_ABLATIONS,
    ChannelReordering,
    DilatedConv,
    DilatedConvStack,
    EncoderConfig,
    GLUConv,
    RidgeDecoder,
    SpatialAttention,
    SubjectEmbedding,
    SubjectLayers,
)

SMALL = {"n_spatial": 6, "n_fourier": 4, "hidden": 8, "depth": 2, "signal_embedding_dim": 4,
         "subject_embedding_dim": 3}


def small_config(**overrides) -> EncoderConfig:
    return EncoderConfig(**{**SMALL, **overrides})


def padded_batch(layouts: list[torch.Tensor], n_times: int, seed: int = 0):
    """One sample per layout ``[C_i, 2]``, zero-padded to the largest: x, positions, mask."""
    gen = torch.Generator().manual_seed(seed)
    n_max = max(len(layout) for layout in layouts)
    x = torch.zeros(len(layouts), n_max, n_times)
    positions = torch.zeros(len(layouts), n_max, 2)
    mask = torch.zeros(len(layouts), n_max, dtype=torch.bool)
    for i, layout in enumerate(layouts):
        x[i, : len(layout)] = torch.randn(len(layout), n_times, generator=gen)
        positions[i, : len(layout)] = layout
        mask[i, : len(layout)] = True
    return x, positions, mask


# ----------------------------------------------------------------------------- spatial attention
@pytest.mark.parametrize("layout", ["paper", "wrapped"])
def test_spatial_attention_matches_fourier_formula(layout):
    torch.manual_seed(0)
    layer = SpatialAttention(n_outputs=3, n_fourier=3, layout=layout).eval()
    x, positions, mask = padded_batch([0.2 + 0.6 * torch.rand(5, 2)], n_times=7)
    k_sq = 9
    coef = layer.weight.detach().double()
    real, imag = coef[:, :k_sq].view(3, 3, 3), coef[:, k_sq:].view(3, 3, 3)
    logits = torch.zeros(3, 5, dtype=torch.float64)
    placed = positions[0].double()
    if layout == "paper":  # each axis scaled to [0, 1], then margin 0.2 in a period of 1.4
        low, high = placed.min(0).values, placed.max(0).values
        placed = ((placed - low) / (high - low) + 0.2) / 1.4
    for i, (px, py) in enumerate(placed):
        for k in range(3):
            for m in range(3):
                phase = 2 * math.pi * (k * px + m * py)
                logits[:, i] += real[:, k, m] * torch.cos(phase) + imag[:, k, m] * torch.sin(phase)
    expected = torch.softmax(logits, dim=1) @ x[0].double()
    torch.testing.assert_close(layer(x, positions, mask)[0].double(), expected, atol=1e-5,
                               rtol=1e-5)


def test_padding_sensors_have_no_influence():
    torch.manual_seed(0)
    layer = SpatialAttention(n_outputs=4, n_fourier=4).eval()
    layout = torch.rand(5, 2)
    x, positions, mask = padded_batch([layout, torch.rand(9, 2)], n_times=6)
    out = layer(x, positions, mask)
    garbage_x, garbage_pos = x.clone(), positions.clone()
    garbage_x[0, 5:] = 1e3 * torch.randn(4, 6)
    garbage_pos[0, 5:] = torch.rand(4, 2)
    torch.testing.assert_close(layer(garbage_x, garbage_pos, mask), out)
    alone = layer(x[:1, :5], positions[:1, :5], mask[:1, :5])
    torch.testing.assert_close(alone, out[:1], atol=1e-6, rtol=1e-5)


@pytest.fixture(scope="module")
def system_layouts() -> dict[str, torch.Tensor]:
    """2D layout positions ``[C, 2]`` (as preprocessing gives them) of three real systems."""
    from braindecode_speech.data.preprocessing import sensor_positions_2d
    from braindecode_speech.simulation.sensors import make_info

    return {name: torch.from_numpy(sensor_positions_2d(make_info(name, 100.0)))
            for name in ("KIT-208", "CTF-275", "biosemi128")}


@pytest.mark.parametrize("system", ["KIT-208", "CTF-275", "biosemi128"])
@pytest.mark.parametrize("layout", ["paper", "wrapped"])
def test_distant_sensors_do_not_share_an_embedding(system_layouts, system, layout):
    """Sensors more than 0.1 apart on the layout (each axis scaled to [0, 1]) must not get
    (nearly) the same positional functions. Embedding: the first harmonic of the layer's own
    series (``n_fourier=2``), the smoothest non-constant part of every attention map, so its
    distance measures what a smooth map can tell apart (higher harmonics separate any two
    points ~0.02 apart and would hide the aliasing). Threshold: the embedding distance of two
    sensors 0.05 apart on one axis, half the layout separation asked for. The paper's layout
    passes; the wrapped one fails (left and right temporal sensors meet at x = 0 ≡ 1)."""
    positions = system_layouts[system][None]
    mask = torch.ones(positions.shape[:2], dtype=torch.bool)
    layer = SpatialAttention(n_outputs=1, n_fourier=2, layout=layout)
    embedding = layer.fourier_features(layer.clean_positions(positions, mask))[0].double()
    reference = layer.fourier_features(torch.tensor([[0.5, 0.5], [0.55, 0.5]]).double())
    threshold = (reference[0] - reference[1]).norm()
    xy = positions[0].double()
    low, high = xy.min(0).values, xy.max(0).values
    layout_xy = (xy - low) / (high - low)
    far = torch.cdist(layout_xy, layout_xy) > 0.1
    aliased = far & (torch.cdist(embedding, embedding) < threshold)
    n_aliased = int(aliased.any(dim=1).sum())
    if layout == "paper":
        assert n_aliased == 0
    else:
        assert n_aliased > 0


def test_paper_layout_scales_each_axis_over_the_real_sensors():
    torch.manual_seed(0)
    layout = torch.rand(6, 2)
    stretched = layout * torch.tensor([0.5, 0.9]) + torch.tensor([0.3, 0.0])
    x, positions, mask = padded_batch([layout, stretched, layout[:4]], n_times=5)
    x[1] = x[0]
    positions[2, 4:] = 7.0  # padding positions do not enter the scaling
    for name, same in (("paper", True), ("wrapped", False)):
        layer = SpatialAttention(n_outputs=3, n_fourier=3, layout=name).eval()
        out = layer(x, positions, mask)
        assert torch.allclose(out[0], out[1], atol=1e-5) == same
        alone = layer(x[2:, :4], positions[2:, :4], mask[2:, :4])
        torch.testing.assert_close(out[2:], alone, atol=1e-5, rtol=1e-5)


def test_mixed_layouts_in_one_batch_match_separate_batches():
    torch.manual_seed(0)
    encoder = small_config().build(n_subjects=2, n_outputs=5).eval()
    layouts = [torch.rand(7, 2), torch.rand(4, 2), torch.rand(7, 2)]
    x, positions, mask = padded_batch(layouts, n_times=11)
    positions[2] = positions[0]  # two samples share a layout
    subjects = torch.tensor([0, 1, 1])
    out = encoder(x, subjects, positions, mask)
    for i, layout in enumerate(layouts):
        n = len(layout)
        single = encoder(x[i : i + 1, :n], subjects[i : i + 1], positions[i : i + 1, :n],
                         mask[i : i + 1, :n])
        torch.testing.assert_close(single, out[i : i + 1], atol=1e-5, rtol=1e-4)


def test_spatial_dropout_excludes_sensors_near_a_random_centre():
    layer = SpatialAttention(n_outputs=4, n_fourier=4, dropout_radius=0.3)
    grid = torch.stack(torch.meshgrid(torch.linspace(0, 1, 6), torch.linspace(0, 1, 6),
                                      indexing="ij"), dim=-1).view(-1, 2)
    x, positions, mask = padded_batch([grid, grid], n_times=5)
    torch.manual_seed(3)
    dropped = layer.dropped_sensors(positions, mask)
    assert dropped.any(dim=1).all()
    torch.manual_seed(3)
    out = layer(x, positions, mask)
    # data of dropped sensors do not matter, data of kept sensors do
    drop_index = int(dropped[0].nonzero()[0])
    keep_index = int((~dropped[0]).nonzero()[0])
    for index, should_change in ((drop_index, False), (keep_index, True)):
        changed = x.clone()
        changed[0, index] += 10.0
        torch.manual_seed(3)
        assert torch.allclose(layer(changed, positions, mask), out) != should_change
    assert not torch.allclose(out, layer.eval()(x, positions, mask))


def test_spatial_dropout_keeps_a_sample_that_would_lose_every_sensor():
    layer = SpatialAttention(n_outputs=2, n_fourier=2, dropout_radius=2.0)  # covers [0, 1]²
    x, positions, mask = padded_batch([torch.rand(3, 2), torch.rand(2, 2)], n_times=4)
    assert not layer.dropped_sensors(positions, mask).any()
    assert torch.isfinite(layer(x, positions, mask)).all()


def test_spatial_attention_rejects_bad_inputs():
    layer = SpatialAttention(n_outputs=2, n_fourier=2)
    x, positions, mask = padded_batch([torch.rand(3, 2)], n_times=4)
    with pytest.raises(ValueError, match="no real sensor"):
        layer(x, positions, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="positions must have shape"):
        layer(x, positions[:, :2], mask)
    with pytest.raises(ValueError, match="mask must be a bool"):
        layer(x, positions, mask.float())


# -------------------------------------------------------------------------- channel reordering
def test_channel_reordering_ignores_sensor_order_and_padding():
    torch.manual_seed(0)
    layer = ChannelReordering(n_outputs=5, embedding_dim=4, kernel_size=6)
    x, _, mask = padded_batch([torch.rand(6, 2), torch.rand(3, 2)], n_times=30)
    out = layer(x, mask)
    perm = torch.randperm(6)
    torch.testing.assert_close(layer(x[:, perm], mask[:, perm]), out, atol=1e-6, rtol=1e-5)
    garbage = x.clone()
    garbage[1, 3:] = torch.randn(3, 30)
    torch.testing.assert_close(layer(garbage, mask), out)
    # the weights depend on the signal: scaling one sensor changes the mix
    louder = x.clone()
    louder[0, 0] *= 5
    assert not torch.allclose(layer(louder, mask)[0], out[0])


# ------------------------------------------------------------------------------ subject layers
def test_subject_layers_start_random_with_the_papers_statistics():
    torch.manual_seed(0)
    weight = SubjectLayers(n_channels=200, n_subjects=3).weight.detach()
    assert abs(float(weight.mean())) < 0.002
    assert float(weight.std()) == pytest.approx(1 / math.sqrt(200), rel=0.02)
    assert not torch.allclose(weight[0], weight[1])
    # output keeps the input's scale
    x = torch.randn(4, 200, 50)
    with torch.no_grad():
        out = SubjectLayers(n_channels=200, n_subjects=1)(x, torch.zeros(4, dtype=torch.long))
    assert float(out.std()) == pytest.approx(1.0, rel=0.05)
    config = EncoderConfig()
    assert (config.subject_init, config.fourier_layout) == ("random", "paper")
    encoder = small_config().build(n_subjects=2, n_outputs=3)
    assert not torch.allclose(encoder.subject_layers.weight[0], torch.eye(6))
    assert encoder.merger.layout == "paper"
    encoder = small_config(subject_init="identity", fourier_layout="wrapped").build(2, 3)
    torch.testing.assert_close(encoder.subject_layers.weight.detach(), torch.eye(6).expand(2, 6, 6))
    assert encoder.merger.layout == "wrapped"


def test_subject_layers_identity_option_and_grouping_by_subject():
    layers = SubjectLayers(n_channels=4, n_subjects=3, init="identity")
    x = torch.randn(6, 4, 5)
    subjects = torch.tensor([2, 0, -1, 2, 1, 0])
    torch.testing.assert_close(layers(x, subjects), x)
    with torch.no_grad():
        layers.weight.copy_(torch.randn(3, 4, 4))
    out = layers(x, subjects)
    for b, subject in enumerate(subjects.tolist()):
        weight = layers.weight.mean(0) if subject == -1 else layers.weight[subject]
        torch.testing.assert_close(out[b], weight @ x[b])


def test_subject_layers_gradient_reaches_only_the_batch_subjects():
    layers = SubjectLayers(n_channels=3, n_subjects=4)
    layers(torch.randn(3, 3, 5), torch.tensor([1, 3, 1])).sum().backward()
    touched = layers.weight.grad.flatten(1).abs().sum(1) > 0
    assert touched.tolist() == [False, True, False, True]


@pytest.mark.parametrize("subjects", [[0, 3], [-2, 0], [0]])
def test_subject_layers_reject_bad_subjects(subjects):
    with pytest.raises(ValueError, match="subject"):
        SubjectLayers(n_channels=2, n_subjects=3)(torch.randn(2, 2, 4), torch.tensor(subjects))


def test_subject_embedding_appends_subject_vector_and_mean_for_unknown():
    embedding = SubjectEmbedding(dim=3, n_subjects=2)
    x = torch.randn(3, 4, 5)
    out = embedding(x, torch.tensor([1, -1, 0]))
    assert out.shape == (3, 7, 5)
    torch.testing.assert_close(out[:, :4], x)
    table = embedding.embedding.weight
    torch.testing.assert_close(out[0, 4:, 2], table[1])
    torch.testing.assert_close(out[1, 4:, 0], table.mean(0))


# -------------------------------------------------------------------------------- conv stack
def test_conv_stack_follows_the_paper_layout():
    stack = DilatedConvStack(n_inputs=270, hidden=320, depth=5)
    assert len(stack.blocks) == 5
    assert all([type(m) for m in block] == [DilatedConv, DilatedConv, GLUConv]
               for block in stack.blocks)
    convs = [m for m in stack.modules() if isinstance(m, DilatedConv)]
    assert [c.layers[0].dilation[0] for c in convs] == [1, 2, 4, 8, 16] * 2
    assert [c.residual for c in convs] == [False] + [True] * 9
    assert convs[0].layers[0].in_channels == 270
    assert stack(torch.randn(2, 270, 9)).shape == (2, 320, 9)


def test_even_kernel_is_rejected():
    with pytest.raises(ConfigError, match="kernel_size"):
        EncoderConfig.from_dict({"kernel_size": 4})


# ------------------------------------------------------------------------------------ encoder
def test_paper_encoder_has_the_reference_parameter_count():
    # 208 sensors, 27 subjects, wav2vec2-large features: 9.57 M parameters (the reference's)
    encoder = EncoderConfig().build(n_subjects=27, n_outputs=1024)
    assert sum(p.numel() for p in encoder.parameters()) == 9_565_054


@pytest.mark.parametrize("n_times", [5, 37])
def test_encoder_output_shape_for_any_length(n_times):
    encoder = small_config().build(n_subjects=3, n_outputs=5)
    x, positions, mask = padded_batch([torch.rand(6, 2), torch.rand(4, 2)], n_times)
    out = encoder(x, torch.tensor([0, -1]), positions, mask)
    assert out.shape == (2, 5, n_times)


def test_unknown_subject_uses_mean_subject_layer():
    torch.manual_seed(0)
    encoder = small_config().build(n_subjects=2, n_outputs=3).eval()
    x, positions, mask = padded_batch([torch.rand(6, 2)], n_times=9)
    with torch.no_grad():
        encoder.subject_layers.weight.copy_(torch.randn(2, 6, 6))
        unknown = encoder(x, torch.tensor([-1]), positions, mask)
        encoder.subject_layers.weight.copy_(encoder.subject_layers.weight.mean(0).expand(2, 6, 6))
        averaged = encoder(x, torch.tensor([0]), positions, mask)
    torch.testing.assert_close(unknown, averaged)


@pytest.mark.parametrize("name", sorted(TABLE4_ABLATIONS))
def test_table4_ablations_build_and_train(name):
    config = small_config().with_overrides(TABLE4_ABLATIONS[name])
    encoder = config.build(n_subjects=2, n_outputs=4, n_channels=6)
    x, positions, mask = padded_batch([torch.rand(6, 2), torch.rand(5, 2)], n_times=12)
    out = encoder(x, torch.tensor([1, 0]), positions, mask)
    assert out.shape == (2, 4, 12)
    out.square().mean().backward()
    assert all(p.grad is not None for p in encoder.parameters() if p.requires_grad)


def test_each_ablation_reaches_the_module_it_names():
    def build(name):
        config = small_config().with_overrides(TABLE4_ABLATIONS[name])
        return config.build(n_subjects=2, n_outputs=4, n_channels=6)

    def modules(encoder, kind):
        return [m for m in encoder.modules() if isinstance(m, kind)]

    checks = {
        "subject embedding instead of subject layer":
            lambda e: e.subject_layers is None and e.subject_embedding is not None,
        "w/o spatial-attention dropout": lambda e: e.merger.dropout_radius == 0,
        "GELU -> ReLU": lambda e: modules(e, torch.nn.ReLU) and not modules(e, torch.nn.GELU),
        "w/o skip connections": lambda e: not any(c.residual for c in modules(e, DilatedConv)),
        "w/o final convs": lambda e: isinstance(e.final, torch.nn.Conv1d),
        "w/o initial 1x1 conv": lambda e: e.initial_linear is None,
        "w/o spatial attention": lambda e: e.merger is None,
        "w/o non-residual GLU conv": lambda e: not modules(e, GLUConv),
        "w/o subject-specific layer":
            lambda e: e.subject_layers is None and e.subject_embedding is None,
    }
    assert set(checks) == set(TABLE4_ABLATIONS)
    paper = small_config().build(n_subjects=2, n_outputs=4)
    for name, check in checks.items():
        assert check(build(name)), name
        assert not check(paper), name


def test_signal_merger_needs_no_positions():
    encoder = small_config(merger="signal", signal_kernel_size=4).build(2, 3)
    x, _, mask = padded_batch([torch.rand(6, 2), torch.rand(3, 2)], n_times=16)
    assert encoder(x, torch.tensor([0, 1]), mask=mask).shape == (2, 3, 16)
    assert isinstance(encoder.merger, ChannelReordering)


def test_encoder_input_errors():
    with pytest.raises(ConfigError, match="n_channels"):
        small_config(spatial_attention=False).build(2, 3)
    x, positions, mask = padded_batch([torch.rand(6, 2)], n_times=8)
    encoder = small_config(spatial_attention=False).build(2, 3, n_channels=5)
    with pytest.raises(ValueError, match="expects 5 channels"):
        encoder(x, torch.tensor([0]), positions, mask)
    with pytest.raises(ValueError, match="needs sensor positions"):
        small_config().build(2, 3)(x, torch.tensor([0]), mask=mask)


# -------------------------------------------------------------------------------------- ridge
def lagged_linear_data(n_windows: int, lags: list[int], noise: float, seed: int):
    """Brain ``[N, 5, 40]`` and features ``[N, 3, 40]`` with
    ``y_f(t) = Σ_{c,l} A[c, l, f] x_c(t + lags[l])`` (zero beyond the window) + noise."""
    rng = np.random.default_rng(seed)
    brain = rng.standard_normal((n_windows, 5, 40))
    coef = rng.standard_normal((5, len(lags), 3))
    features = np.zeros((n_windows, 3, 40))
    for i, lag in enumerate(lags):
        shifted = np.zeros_like(brain)
        shifted[:, :, : 40 - lag] = brain[:, :, lag:]
        features += np.einsum("nct,cf->nft", shifted, coef[:, i])
    features += noise * rng.standard_normal(features.shape)
    return brain.astype(np.float32), features.astype(np.float32), coef


def test_ridge_recovers_a_known_lagged_linear_map():
    brain, features, coef = lagged_linear_data(70, lags=[0, 1, 2], noise=0.01, seed=0)
    decoder = RidgeDecoder(sfreq=10.0, tmin=0.0, tmax=0.2, n_components=None)
    decoder.fit(brain[:60], features[:60])
    assert decoder.coef_.shape == (5, 3, 3)
    np.testing.assert_allclose(decoder.coef_, coef, atol=0.01)
    prediction = decoder.predict(brain[60:])  # held-out windows
    assert prediction.shape == (10, 3, 40) and prediction.dtype == np.float32
    # the last two samples read lags beyond the window (imputed with the channel means)
    np.testing.assert_allclose(prediction[..., :38], features[60:, :, :38], atol=0.06)


def test_ridge_fit_on_every_third_time_point_recovers_the_map():
    brain, features, coef = lagged_linear_data(70, lags=[0, 1, 2], noise=0.01, seed=0)
    decoder = RidgeDecoder(sfreq=10.0, tmin=0.0, tmax=0.2, n_components=None, time_step=3)
    decoder.fit(brain[:60], features[:60])
    np.testing.assert_allclose(decoder.coef_, coef, atol=0.02)
    with pytest.raises(ValueError, match="time_step"):
        RidgeDecoder(time_step=0)


def test_ridge_with_spaced_lags_matches_its_design():
    brain, features, coef = lagged_linear_data(70, lags=[0, 2, 4], noise=0.01, seed=1)
    decoder = RidgeDecoder(sfreq=10.0, tmin=0.0, tmax=0.4, n_components=None, lag_step=2)
    decoder.fit(brain[:60], features[:60])
    assert list(decoder.lags) == [0, 2, 4]
    np.testing.assert_allclose(decoder.coef_, coef, atol=0.02)
    prediction = decoder.predict(brain[60:])
    np.testing.assert_allclose(prediction[..., :36], features[60:, :, :36], atol=0.06)


def test_ridge_full_pca_is_a_rotation_and_gives_the_same_predictions():
    brain, features, _ = lagged_linear_data(30, lags=[0, 1], noise=0.5, seed=2)
    plain = RidgeDecoder(sfreq=10.0, tmax=0.1, n_components=None).fit(brain, features)
    rotated = RidgeDecoder(sfreq=10.0, tmax=0.1, n_components=5).fit(brain, features)
    assert rotated.alpha_ == plain.alpha_
    np.testing.assert_allclose(rotated.predict(brain), plain.predict(brain), atol=1e-4)
    reduced = RidgeDecoder(sfreq=10.0, tmax=0.1, n_components=2).fit(brain, features)
    assert reduced.coef_.shape == (2, 2, 3)


def test_ridge_gcv_regularises_pure_noise_strongly():
    rng = np.random.default_rng(3)
    brain = rng.standard_normal((20, 5, 40))
    noise = rng.standard_normal((20, 3, 40))
    signal_brain, signal_features, _ = lagged_linear_data(20, lags=[0], noise=0.1, seed=3)
    grid = np.logspace(-4, 4, 9)
    on_noise = RidgeDecoder(sfreq=10.0, tmax=0.0, alphas=grid, n_components=None)
    on_signal = RidgeDecoder(sfreq=10.0, tmax=0.0, alphas=grid, n_components=None)
    assert on_noise.fit(brain, noise).alpha_ > on_signal.fit(signal_brain, signal_features).alpha_
    assert on_noise.alpha_ >= 1


def test_ridge_gcv_scores_match_brute_force():
    brain, features, _ = lagged_linear_data(8, lags=[0, 1], noise=1.0, seed=4)
    grid = np.logspace(-2, 2, 5)
    decoder = RidgeDecoder(sfreq=10.0, tmax=0.1, alphas=grid, n_components=None)
    decoder.fit(brain, features)
    # explicit design: valid times 0..38, columns (channel, lag), centred
    design = np.concatenate([brain[:, :, None, :39], brain[:, :, None, 1:]], axis=2)
    design = design.transpose(0, 3, 1, 2).reshape(-1, 10).astype(float)
    target = features[:, :, :39].transpose(0, 2, 1).reshape(-1, 3).astype(float)
    design -= design.mean(0)
    target -= target.mean(0)
    gram = design.T @ design
    scale = np.trace(gram) / 10
    n = len(design)
    expected = []
    for alpha in grid:
        hat = design @ np.linalg.solve(gram + alpha * scale * np.eye(10), design.T)
        residual = target - hat @ target
        expected.append((residual**2).sum() / n / (1 - np.trace(hat) / n) ** 2)
    np.testing.assert_allclose(decoder.gcv_, expected, rtol=1e-8)


def test_ridge_input_errors():
    brain, features, _ = lagged_linear_data(4, lags=[0], noise=0.0, seed=0)
    with pytest.raises(ValueError, match="same number of windows"):
        RidgeDecoder(sfreq=10.0).fit(brain, features[:3])
    with pytest.raises(ValueError, match="too short"):
        RidgeDecoder(sfreq=10.0, tmax=5.0).fit(brain, features)
    with pytest.raises(ValueError, match="n_components"):
        RidgeDecoder(sfreq=10.0, n_components=9).fit(brain, features)
    with pytest.raises(RuntimeError, match="before fit"):
        RidgeDecoder().predict(brain)
