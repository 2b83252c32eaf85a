"""Each real study's adapter through the pipeline, on a larger example layout: the splits are
leak-free (a sentence heard by several subjects lands in one split) and a training step runs
on the prepared windows."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import LAYOUT_STUDIES

from braindecode_speech.data.studies import get
from braindecode_speech.experiments import build_model, prepare_data, study_blocks
from braindecode_speech.experiments.presets import tiny_config
from braindecode_speech.simulation.layouts import write_example_layout
from braindecode_speech.training.losses import ClipLoss
from braindecode_speech.training.steps import ContrastiveStep

#: writer arguments giving each study enough sentences for train, valid and test blocks
SIZES = {
    "gwilliams2022": dict(n_sentences=3),
    "schoffelen2019": dict(n_sentences=8),
    "broderick2019": dict(n_runs=4, n_sentences=5),
    "brennan2019": dict(n_segments=2, n_sentences=6),
    "libribrain2025": dict(n_sentences=3),
    "armeni2022": dict(n_sessions=2, n_wavs=2, n_sentences=3),
}


@pytest.fixture(scope="module", params=LAYOUT_STUDIES)
def study(request, tmp_path_factory) -> tuple[str, Path, Path]:
    """``(name, root, cache)`` of a two-subject example layout of each study."""
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    root = write_example_layout(name, folder / "data", seed=0, n_subjects=2, **SIZES[name])
    return name, root, folder / "cache"


def test_splits_are_leak_free(study):
    name, root, _ = study
    blocks, audit = study_blocks(tiny_config(root, study=name))
    subjects, durations = {}, {}
    for rec in get(name, root).recordings():
        raw = rec.raw()
        subjects[rec.uid] = rec.subject
        durations[rec.uid] = raw.n_times / raw.info["sfreq"]
    assert set(blocks) == set(subjects) and len(set(subjects.values())) == 2

    assert audit["ok"], audit
    split_of_text: dict[str, set[str]] = defaultdict(set)
    subjects_of_text: dict[str, set[str]] = defaultdict(set)
    for uid, table in blocks.items():
        for row in table.itertuples():
            for text in row.texts:
                split_of_text[text].add(row.split)
                subjects_of_text[text].add(subjects[uid])
    # checked here from the blocks themselves, not only through the audit
    assert all(len(splits) == 1 for splits in split_of_text.values()), {
        t: s for t, s in split_of_text.items() if len(s) > 1}
    # both subjects heard the same sentences, and each kept them in one split
    shared = [t for t, s in subjects_of_text.items() if len(s) == 2]
    assert len(shared) >= len(split_of_text) // 2
    used = {split for splits in split_of_text.values() for split in splits}
    assert used == {"train", "valid", "test"}
    # no block crosses the end of its recording, and blocks do not overlap
    for uid, table in blocks.items():
        starts, stops = table["start"].to_numpy(), table["stop"].to_numpy()
        assert (starts >= 0).all() and (stops <= durations[uid] + 1e-6).all()
        assert (starts[1:] >= stops[:-1] - 1e-6).all()


def test_one_training_step_runs(study):
    name, root, cache = study
    config = tiny_config(root, cache_dir=cache, study=name)
    data = prepare_data(config)
    assert not data.skipped, data.skipped
    assert data.audit["ok"]
    counts = data.windows["split"].value_counts()
    assert all(counts.get(s, 0) > 0 for s in ("train", "valid", "test")), counts
    assert sorted(data.subjects) == sorted({r.subject for r in data.recordings})

    train = data.datasets["train"]
    size = min(8, len(train))
    loader = torch.utils.data.DataLoader(train, batch_size=size, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    n_times = config.windows.n_times(config.preprocess.sfreq)
    assert batch["brain"].shape == (size, train.n_channels, n_times)
    assert batch["speech"].shape == (size, data.n_features, n_times)
    assert torch.isfinite(batch["brain"]).all() and torch.isfinite(batch["speech"]).all()
    assert float(batch["brain"].abs().max()) <= config.norm.clamp
    assert batch["brain"].std() > 0.1 and batch["speech"].std() > 0.1

    torch.manual_seed(0)
    model = build_model(config, data).train()
    loss = ClipLoss()
    optimizer = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    value = ContrastiveStep(model, loss, optimizer)(batch)
    assert np.isfinite(value) and value > 0
    # the loss of a random encoder is about log(batch size)
    assert abs(value - np.log(size)) < 1.0
    changed = [not torch.equal(a, p) for a, p in zip(before, model.parameters())]
    assert sum(changed) >= len(changed) // 2
