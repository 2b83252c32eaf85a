"""From a config to the windows a model trains and is evaluated on, in named stages."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import ConfigError
from ..data.cache import RowReader, default_cache_dir
from ..data.dataset import FeatureScaler, Window, WindowDataset, fit_robust_scaler
from ..data.preprocessing import PreprocessedRecording, preprocess
from ..data.splits import (
    SplitConfig,
    assign_splits,
    audit_splits,
    make_blocks,
    sentences,
    sound_spans,
)
from ..data.stimuli import check_stimuli
from ..data.studies import get as get_study
from ..data.study import Recording, StudyError
from ..data.windows import WindowConfig, make_windows
from ..features.blocks import block_features
from .config import ExperimentConfig

__all__ = ["PreparedData", "prepare_data", "study_blocks", "split_study"]

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Everything the model and the evaluator need, built once per experiment."""

    recordings: list[PreprocessedRecording]
    windows: pd.DataFrame
    """one row per window: split, recording, subject, anchor, segment/word for test windows"""
    datasets: dict[str, WindowDataset]
    subjects: list[str]
    """training subjects; their position is the model's subject index"""
    n_features: int
    audit: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)


def prepare_data(config: ExperimentConfig) -> PreparedData:
    """Read, preprocess, split, window and normalise the study of ``config``."""
    cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    if config.study.root is None:
        raise ConfigError(f"study.root is not set: where is the local copy of {config.study.name!r}?")
    options = {"strict": config.study.on_error == "raise", **config.study.options}
    study = get_study(config.study.name, config.study.root, subjects=config.study.subjects,
                      **options)
    found = study.recordings()
    # read after discovery: the files the study left out, and why
    skipped: list[dict[str, str]] = [{"item": str(item), "reason": reason}
                                     for item, reason in study.skipped]
    recordings: list[PreprocessedRecording] = []
    for rec in found:
        try:
            _check_window_fits(rec, config.windows)
            prepared = preprocess(rec, config.preprocess, cache_dir)
            check_stimuli(prepared.events, rec.uid)
            recordings.append(prepared)
        except (StudyError, ValueError, FileNotFoundError) as exc:
            if config.study.on_error == "raise":
                raise
            logger.warning("Skipping %s: %s", rec.uid, exc)
            skipped.append({"item": rec.uid, "reason": str(exc)})
    if not recordings:
        reasons = "".join(f"\n  - {s['item']}: {s['reason']}" for s in skipped)
        raise StudyError(f"{config.study.root}: no usable recording for {config.study.name!r}"
                         + (f"; {len(skipped)} left out:{reasons}" if skipped else ""))
    sfreq = config.preprocess.sfreq
    features = config.features.build()

    blocks, sounds, audit = _split(
        [(r.uid, r.events, r.duration) for r in recordings], config.splits)

    n_times = config.windows.n_times(sfreq)
    candidates = [(rec, make_windows(blocks[rec.uid], rec.events, config.windows, sfreq,
                                     rec.n_times)) for rec in recordings]
    trained = {rec.subject for rec, table in candidates if (table["split"] == "train").any()}
    tables, block_arrays, kept = [], [], []
    for rec, table in candidates:
        if table.empty:
            logger.warning("%s: no window fits in its blocks (recording of %.1f s)",
                           rec.uid, rec.duration)
            skipped.append({"item": rec.uid, "reason": "no complete window inside a block "
                            f"(duration {rec.duration:.1f} s, {len(blocks[rec.uid])} blocks)"})
            continue
        if config.norm.robust_scale and rec.subject not in trained:
            # the scaler is never fitted on valid or test windows
            reason = (f"subject {rec.subject} has no training window to fit the robust scaler "
                      "of this recording on (it is never fitted on valid or test windows)")
            logger.warning("Skipping %s: %s", rec.uid, reason)
            skipped.append({"item": rec.uid, "reason": reason})
            continue
        offset = len(block_arrays)
        for b in sorted(table["block"].unique()):
            blk = blocks[rec.uid].loc[b]
            block_arrays.append(block_features(blk["start"], blk["stop"], sounds[rec.uid],
                                               features, cache_dir))
        remap = {b: offset + i for i, b in enumerate(sorted(table["block"].unique()))}
        table["block"] = table["block"].map(remap)
        table["recording"] = len(kept)
        table["subject"] = rec.subject
        table["recording_uid"] = rec.uid
        kept.append(rec)
        tables.append(table)
    if not tables:
        raise StudyError(f"{config.study.root}: no recording has a complete window")
    recordings = kept
    windows = pd.concat(tables, ignore_index=True)
    for split in ("train", "valid", "test"):
        if not (windows["split"] == split).any():
            raise StudyError(
                f"{config.study.name}: no {split} window after splitting "
                f"({len(windows)} windows in all); the study is too small for a "
                f"{config.splits.test_ratio:.0%}/{config.splits.valid_ratio:.0%} split")

    subjects = sorted(windows.loc[windows["split"] == "train", "subject"].unique())
    subject_index = {s: i for i, s in enumerate(subjects)}
    windows["subject_index"] = windows["subject"].map(subject_index).fillna(-1).astype(int)

    brains = [RowReader(r.samples) for r in recordings]
    readers = [RowReader(a) for a in block_arrays]
    rng = np.random.default_rng(config.optim.seed)
    baseline = int(round(-config.windows.tmin * sfreq)) if config.norm.baseline else 0
    # the paper's baseline is brain [a - 0.5, a] s, before the lag shift (as make_windows)
    lag = int(round(config.windows.brain_lag * sfreq))
    baseline_offset = -lag if config.norm.baseline_window == "paper" else 0
    train_windows = windows[windows["split"] == "train"]
    scalers = []
    for i, rec in enumerate(recordings):
        if not config.norm.robust_scale:
            scalers.append(None)
            continue
        train = train_windows[train_windows["recording"] == i]
        if train.empty:  # pooled over the subject's other recordings (kept only if any)
            train = train_windows[train_windows["subject"] == rec.subject]
            logger.warning("%s has no training window: its robust scaler is fitted on the "
                           "%d training windows of subject %s's other recordings", rec.uid,
                           len(train), rec.subject)
        sources = [(brains[int(j)], part["brain_start"].to_numpy())
                   for j, part in train.groupby("recording")]
        scalers.append(fit_robust_scaler(sources, n_times, baseline,
                                         config.norm.n_scaling_windows, rng, baseline_offset))
    feature_scaler = None
    if config.norm.standardize_features:
        train = windows[windows["split"] == "train"]
        pick = rng.choice(len(train), size=min(len(train), 2000), replace=False)
        samples = [readers[b].read(s, s + n_times).T
                   for b, s in train.iloc[np.sort(pick)][["block", "speech_start"]].to_numpy()]
        feature_scaler = FeatureScaler.fit(samples)

    n_channels = max(r.samples.shape[1] for r in recordings)
    datasets = {}
    for split in ("train", "valid", "test"):
        part = windows[windows["split"] == split]
        items = [Window(int(r.recording), int(r.brain_start), int(r.block),
                        int(r.speech_start), int(r.subject_index)) for r in part.itertuples()]
        datasets[split] = WindowDataset(
            brains, [r.positions for r in recordings], readers,
            items, scalers, feature_scaler, n_channels, n_times, baseline, config.norm.clamp,
            baseline_offset)
    logger.info("Windows: %s", windows["split"].value_counts().to_dict())
    return PreparedData(recordings=recordings, windows=windows, datasets=datasets,
                        subjects=list(subjects), n_features=features.dimension, audit=audit,
                        skipped=skipped)


def _check_window_fits(rec: Recording, windows: WindowConfig) -> None:
    """Refuse a recording shorter than one window, from its header, before preprocessing it."""
    raw = rec.raw()
    duration = raw.n_times / raw.info["sfreq"]
    span = windows.tmax - windows.tmin + abs(windows.brain_lag)
    if span > duration:
        raise ConfigError(
            f"windows.tmin={windows.tmin:g}, windows.tmax={windows.tmax:g}, "
            f"windows.brain_lag={windows.brain_lag:g}: a window needs {span:g} s of brain "
            f"signal but {rec.path} lasts {duration:.3g} s (shorten the window, or set "
            "study.on_error=skip to leave such recordings out)")


def _split(recordings: list[tuple[str, pd.DataFrame, float]], config: SplitConfig) -> \
        tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], dict[str, Any]]:
    """Blocks with their split, sound spans and the leak audit of ``(uid, events, duration)``."""
    sounds = {uid: sound_spans(events) for uid, events, _ in recordings}
    blocks = {uid: make_blocks(sentences(events, duration, config.block_end), config)
              for uid, events, duration in recordings}
    blocks = assign_splits(blocks, config)
    return blocks, sounds, audit_splits(blocks, sounds)


def study_blocks(config: ExperimentConfig) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The blocks of every recording of the study of ``config``, with their split
    (``{recording uid: blocks}``, see :func:`~braindecode_speech.data.splits.assign_splits`), and
    the split leak audit. Reads events and headers only."""
    if config.study.root is None:
        raise ConfigError("study.root is not set")
    study = get_study(config.study.name, config.study.root, subjects=config.study.subjects,
                      **config.study.options)
    items = []
    for rec in study.recordings():
        raw = rec.raw()
        duration = raw.n_times / raw.info["sfreq"]
        items.append((rec.uid, rec.events(duration=duration), duration))
    blocks, _, audit = _split(items, config.splits)
    return blocks, audit


def split_study(config: ExperimentConfig) -> dict[str, Any]:
    """The split leak audit of the study of ``config`` (reads events and headers only)."""
    return study_blocks(config)[1]


