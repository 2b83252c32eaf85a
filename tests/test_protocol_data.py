"""The paper's data protocol, point by point (issue 10 §1, items 2, 3, 4, 5, 7): block extent,
split assignment, validation batches, baseline interval, robust scaler never fitted on test."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from torch import nn

from braindecode_speech.data.cache import RowReader
from braindecode_speech.data.dataset import RobustScaler, read_brain_window
from braindecode_speech.data.events import make_events, validate_events
from braindecode_speech.data.splits import (
    SplitConfig,
    assign_splits,
    audit_splits,
    make_blocks,
    paper_score,
    sentences,
    sound_spans,
)
from braindecode_speech.data.windows import WindowConfig, make_windows
from braindecode_speech.experiments import prepare as experiment
from braindecode_speech.experiments import prepare_data
from braindecode_speech.experiments.presets import tiny_config
from braindecode_speech.features.blocks import AUDIO_SFREQ, block_audio
from braindecode_speech.training.trainer import OptimConfig, Trainer

SFREQ = 120.0


def _mous_like(tmp_path, n_sounds=4, speech_s=3.0, gap_s=2.0, study_uid=True):
    """One sound per sentence (``speech_s`` of audio, 4 words from 0.6 s into it), ``gap_s`` of
    silence between sounds; with ``study_uid`` the words carry a ``sequence_uid`` (MOUS's stimulus id)."""
    rows = []
    for i in range(n_sounds):
        wav = tmp_path / f"{i}.wav"
        soundfile.write(wav, np.full(int(speech_s * 16000), 0.1, dtype=np.float32), 16000)
        onset = 1.0 + i * (speech_s + gap_s)
        rows.append({"onset": onset, "duration": 0.0, "kind": "sound", "filepath": str(wav),
                     "offset": 0.0})
        for k in range(4):
            word = {"onset": onset + 0.6 + 0.6 * k, "duration": 0.5, "kind": "word",
                    "word": f"W{i}x{k}", "sequence_id": f"s{i}", "word_index": k}
            rows.append({**word, "sequence_uid": str(100 + i)} if study_uid else word)
    events = validate_events(make_events(rows), source="mous-like")
    return events, 1.0 + n_sounds * (speech_s + gap_s) + 10.0


# ---- item 2: a block runs until the next block starts --------------------------------------

def test_blocks_run_until_the_next_block(tmp_path):
    events, duration = _mous_like(tmp_path)
    config = SplitConfig(min_block_duration=6.0)
    paper = make_blocks(sentences(events, duration), config)
    # one block per sound (study uids are never merged), from its onset to the next onset
    assert list(paper["uid"]) == ["100", "101", "102", "103"]
    assert np.allclose(paper["start"], [1.0, 6.0, 11.0, 16.0])
    assert np.allclose(paper["stop"][:3], [6.0, 11.0, 16.0])
    # the last block ends 1e-7 s after the last event's end (the end of the last sound)
    assert paper["stop"].iloc[-1] == pytest.approx(19.0 + 1e-7, abs=1e-9)
    old = make_blocks(sentences(events, duration, "sound_end"), config)
    assert np.allclose(old["stop"], [4.0, 9.0, 14.0, 19.0])
    # 2.4 s from the first word to the end of the sound: the old blocks hold no 3.15 s window
    # (brain lag included), the paper's hold the first word's (0.5 s before it in the block),
    # except the last (it ends with its sound)
    for blocks, expected in ((old, 0), (paper, 3)):
        blocks = blocks.assign(split="test")
        windows = make_windows(blocks, events, WindowConfig(), SFREQ, int(duration * SFREQ))
        assert len(windows) >= expected
        assert (windows["word_index"] == 0).sum() == expected


def test_block_audio_after_the_sound_is_silence(tmp_path):
    events, duration = _mous_like(tmp_path)
    block = make_blocks(sentences(events, duration), SplitConfig()).iloc[0]
    audio = block_audio(block["start"], block["stop"], sound_spans(events))
    assert len(audio) == 5 * AUDIO_SFREQ
    assert np.allclose(audio[:3 * AUDIO_SFREQ], 0.1, atol=1e-3) and not audio[3 * AUDIO_SFREQ:].any()


def test_text_blocks_merge_across_silences(tmp_path):
    events, duration = _mous_like(tmp_path, study_uid=False)
    blocks = make_blocks(sentences(events, duration), SplitConfig(min_block_duration=6.0))
    # paper: contiguous 5 s sentences merged to >= 6 s, uid = words joined, comma-joined
    assert list(map(list, blocks["sequence_ids"])) == [["s0", "s1"], ["s2", "s3"]]
    assert blocks["uid"].iloc[0] == "W0x0 W0x1 W0x2 W0x3,W1x0 W1x1 W1x2 W1x3"
    # ours before: sentences separated by silence are never contiguous, never merged
    old = make_blocks(sentences(events, duration, "sound_end"), SplitConfig())
    assert len(old) == 4


def test_negative_lag_brain_window_stays_in_its_block(tmp_path):
    events, duration = _mous_like(tmp_path)
    blocks = make_blocks(sentences(events, duration), SplitConfig()).assign(split="train")
    windows = make_windows(blocks, events, WindowConfig(brain_lag=-0.15), SFREQ,
                           int(duration * SFREQ))
    starts = blocks.loc[windows["block"], "start"].to_numpy()
    assert len(windows) and (windows["brain_start"] >= np.round(starts * SFREQ)).all()


# ---- item 3: the paper's split assignment ---------------------------------------------------

def _expected(uid: str) -> str:
    """Written out here independently of the package."""
    score = random.Random(int(hashlib.sha256(uid.encode("utf-8")).hexdigest(), 16) + 12).random()
    return "test" if score < 0.2 else "valid" if score < 0.3 else "train"


def _table(blocks: list[tuple[list[str], str]]) -> pd.DataFrame:
    """Blocks from ``(sequence ids, uid)``; every sentence's text is its id."""
    return pd.DataFrame({"start": np.arange(len(blocks)) * 10.0,
                         "stop": np.arange(len(blocks)) * 10.0 + 10.0,
                         "sequence_ids": [ids for ids, _ in blocks],
                         "texts": [list(ids) for ids, _ in blocks],
                         "uid": [uid for _, uid in blocks]})


def test_paper_assignment_of_hand_made_uids():
    uids = [f"the cat number {i} sat on the mat" for i in range(40)]
    expected = [_expected(u) for u in uids]
    assert set(expected) == {"train", "valid", "test"}
    assert paper_score(uids[0], 12) == random.Random(
        int(hashlib.sha256(uids[0].encode()).hexdigest(), 16) + 12).random()
    table = _table([([f"s{i}"], u) for i, u in enumerate(uids)])
    paper = assign_splits({"a": table}, SplitConfig())["a"]
    assert list(paper["split"]) == expected
    assert list(paper["paper_split"]) == expected
    old = assign_splits({"a": table}, SplitConfig(assignment="sorted_ids"))["a"]
    assert list(old["split"]) != expected
    assert audit_splits({"a": paper}, {})["moved_blocks"] == {"count": 0, "fraction": 0.0}


def _pair_with_different_draws() -> tuple[str, str]:
    """Two sentence texts ``a``, ``b`` whose merged uid ``"a,b"`` and ``"b"`` draw different
    splits."""
    for i in range(1000):
        a, b = f"first {i}", f"second {i}"
        if _expected(f"{a},{b}") != _expected(b):
            return a, b
    raise AssertionError("no such pair")


@pytest.mark.parametrize("n_alone, winner", [(2, "alone"), (1, "first")])
def test_tying_takes_the_majority_and_counts_moved_blocks(n_alone, winner):
    a, b = _pair_with_different_draws()
    blocks = {"r0": _table([([a, b], f"{a},{b}")])}
    for k in range(n_alone):  # the sentence b alone in other recordings
        blocks[f"r{k + 1}"] = _table([([b], b)])
    out = assign_splits(blocks, SplitConfig())
    split = _expected(b) if winner == "alone" else _expected(f"{a},{b}")
    assert {t["split"].item() for t in out.values()} == {split}
    moved = 1 if winner == "alone" else n_alone
    audit = audit_splits(out, {})
    assert audit["ok"]
    assert audit["moved_blocks"] == {"count": moved,
                                     "fraction": pytest.approx(moved / (n_alone + 1), abs=1e-6)}


# ---- item 4: validation batches shuffled, the same every epoch ------------------------------

class _Windows(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"brain": torch.full((2, 4), float(i)), "mask": torch.ones(2, dtype=torch.bool),
                "positions": torch.zeros(2, 2), "subject": torch.tensor(0),
                "speech": torch.zeros(1, 4), "index": torch.tensor(i)}


class _Mean(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, brain, subject, positions, mask):
        return brain[:, :1] * self.w


def _valid_batches(tmp_path, valid_shuffle: bool, epoch: int = 0) -> list[list[int]]:
    config = OptimConfig(batch_size=8, seed=3, progress=False, device="cpu",
                         valid_shuffle=valid_shuffle)
    trainer = Trainer(_Mean(), nn.MSELoss(), config, tmp_path, "sig")
    trainer.epoch = epoch
    seen: list[list[int]] = []
    batch_loss = trainer.step.batch_loss

    def record(batch, global_batch):
        seen.append(batch["index"].tolist())
        return batch_loss(batch, global_batch)

    trainer.step.batch_loss = record
    trainer.validate(_Windows(50))
    return seen


def test_validation_batches_are_shuffled_with_a_fixed_seed(tmp_path):
    ordered = _valid_batches(tmp_path, False)
    assert ordered[0] == list(range(8))
    shuffled = _valid_batches(tmp_path, True)
    assert shuffled != ordered
    assert sorted(i for b in shuffled for i in b) == list(range(50))  # every window, once
    assert [len(b) for b in shuffled] == [len(b) for b in ordered]
    assert _valid_batches(tmp_path, True, epoch=5) == shuffled  # the same every epoch


# ---- items 5 and 7: baseline interval, robust scaler fitted on training windows only -------

def test_paper_baseline_is_taken_before_the_lag_shift(tmp_path):
    """A ramp ``x[t] = t``: the paper's baseline (60 samples from 18 before the brain window)
    leaves the window starting at -11.5, the shifted one (its first 60 samples) at -29.5."""
    ramp = np.repeat(np.arange(1000, dtype=np.float32)[:, None], 3, axis=1)
    np.save(tmp_path / "ramp.npy", ramp)
    reader = RowReader(np.load(tmp_path / "ramp.npy", mmap_mode="r"))
    paper = read_brain_window(reader, 400, 360, 60, -18)
    shifted = read_brain_window(reader, 400, 360, 60, 0)
    assert paper.shape == shifted.shape == (3, 360)
    assert np.allclose(paper[:, 0], -11.5) and np.allclose(shifted[:, 0], -29.5)
    assert np.allclose(np.diff(paper, axis=1), 1.0)


@pytest.fixture(scope="module")
def forced(tiny_meg_root, tmp_path_factory):
    """The tiny study (2 subjects x 2 stories) with every block of sub-01's first recording in
    test and every block of sub-02 in valid or test, so sub-01's first recording has no
    training window (sub-01's other one has) and sub-02 none at all. Returns the config, the
    prepared data and the uid of that first recording."""
    config = tiny_config(tiny_meg_root, cache_dir=tmp_path_factory.mktemp("cache"))
    split = experiment.split_blocks
    test_only: list[str] = []

    def forced_split(recordings, splits):
        out = split(recordings, splits)
        test_only.append(sorted(uid for uid in out.blocks if "sub-01" in uid)[0])
        out.blocks[test_only[0]]["split"] = "test"
        for uid, table in out.blocks.items():
            if "sub-02" in uid:
                table["split"] = ["valid" if i % 2 else "test" for i in range(len(table))]
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(experiment, "split_blocks", forced_split)
        data = prepare_data(config)
    return config, data, test_only[0]


def test_scaler_is_pooled_from_the_subjects_training_windows(forced):
    config, data, test_only = forced
    windows = data.windows
    index = {r.uid: i for i, r in enumerate(data.recordings)}
    i, other = index[test_only], next(j for u, j in index.items()
                                      if u != test_only and "sub-01" in u)
    assert not ((windows["recording"] == i) & (windows["split"] == "train")).any()
    train = windows[(windows["recording"] == other) & (windows["split"] == "train")]
    assert 0 < len(train) <= config.norm.n_scaling_windows  # all of them are used
    reader = data.datasets["train"].brains[other]
    x = np.stack([read_brain_window(reader, int(s), 360, 60, -18) for s in train["brain_start"]])
    expected = RobustScaler.fit(x)
    scaler = data.datasets["test"].scalers[i]
    assert np.allclose(scaler.center, expected.center, atol=1e-5)
    assert np.allclose(scaler.scale, expected.scale, rtol=1e-5)


def test_recordings_of_a_subject_without_training_windows_are_skipped(forced):
    _, data, _ = forced
    assert len({r.subject for r in data.recordings}) == 1
    skipped = [s for s in data.skipped if "sub-02" in s["item"]]
    assert len(skipped) == 2
    assert all("no training window" in s["reason"] for s in skipped)


def test_dataset_windows_use_the_paper_baseline(forced):
    _, data, _ = forced
    train = data.datasets["train"]
    w = train.windows[0]
    samples = np.asarray(data.recordings[w.recording].samples)
    raw = samples[w.brain_start:w.brain_start + 360].T.astype(np.float64)
    scaler = train.scalers[w.recording]

    def normalised(baseline: np.ndarray) -> np.ndarray:
        return np.clip(scaler(raw - baseline.mean(axis=1, keepdims=True)), -20, 20)

    paper = normalised(samples[w.brain_start - 18:w.brain_start + 42].T)
    shifted = normalised(raw[:, :60])
    assert np.allclose(train.brain_window(0), paper, atol=1e-4)
    assert not np.allclose(train.brain_window(0), shifted, atol=1e-4)
