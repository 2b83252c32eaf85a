"""From a config to the windows a model trains and is evaluated on, in named stages.

:func:`prepare_data` runs them in order; each is a function of its inputs, testable alone:

1. :func:`open_study` — the study adapter;
2. :func:`check_recordings` — every recording checked against the config from its header;
3. :func:`preprocess_recordings` — cached arrays at ``preprocess.sfreq``;
4. :func:`split_blocks` — blocks of sentences, leak-free train/valid/test, the audit;
5. :func:`window_table` — the window table and the targets of its blocks: speech features
   (retrieval) or label tracks (the other tasks, :mod:`~braindecode_speech.data.labels`);
6. :func:`fit_scalers` — robust and feature scalers, on training windows only;
7. :func:`build_datasets` — the train/valid/test :class:`WindowDataset`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import ConfigError
from ..data.cache import RowReader, default_cache_dir
from ..data.dataset import FeatureScaler, RobustScaler, Window, WindowDataset, fit_robust_scaler
from ..data.labels import block_labels, n_outputs, phoneme_class, phoneme_counts
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
from ..data.study import Recording, Study, StudyError
from ..data.windows import make_windows
from ..features.base import SpeechFeatures
from ..features.blocks import block_features
from .config import ExperimentConfig

__all__ = ["PreparedData", "prepare_data", "open_study", "check_recordings", "check_recording",
           "preprocess_recordings", "Blocks", "split_blocks", "WindowTable", "window_table",
           "Scalers", "fit_scalers", "build_datasets", "window_baseline", "study_blocks", "split_study"]

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
    """outputs per time step of the model: the speech features' dimension (retrieval), or the
    task's number of logits"""
    audit: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)


def prepare_data(config: ExperimentConfig) -> PreparedData:
    """Read, preprocess, split, window and normalise the study of ``config``, in the stages
    below; every check of the config against the recordings runs (from their headers) before
    any recording is preprocessed."""
    cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    recordings, skipped = check_recordings(config, open_study(config))
    prepared = preprocess_recordings(config, recordings, cache_dir, skipped)
    blocks = split_blocks([(r.uid, r.events, r.duration) for r in prepared], config.splits)
    features = (config.features.build(config.preprocess.sfreq)
                if config.task.name == "retrieval" else None)
    table = window_table(config, prepared, blocks, features, cache_dir, skipped)
    scalers = fit_scalers(config, table)
    datasets = build_datasets(config, table, scalers)
    logger.info("Windows: %s", table.windows["split"].value_counts().to_dict())
    return PreparedData(recordings=table.recordings, windows=table.windows, datasets=datasets,
                        subjects=table.subjects,
                        n_features=n_outputs(config.task.name,
                                             features.dimension if features else 0),
                        audit=blocks.audit, skipped=skipped)


def open_study(config: ExperimentConfig) -> Study:
    """Stage 1: the study adapter of ``config.study`` (a refused option, a missing root, or
    phoneme classification on a study not in English is bad input, raised before anything is
    read)."""
    if config.study.root is None:
        raise ConfigError(f"study.root is not set: where is the local copy of {config.study.name!r}?")
    options = {"strict": config.study.on_error == "raise", **config.study.options}
    study = get_study(config.study.name, config.study.root, subjects=config.study.subjects,
                      **options)
    if config.task.name == "phoneme_classification" and study.language != "english":
        raise ConfigError(f"task.name=phoneme_classification classifies the 39 English ARPAbet "
                          f"phonemes; {config.study.name!r} is a {study.language} study whose "
                          "phoneme labels are another phone set")
    return study


def check_recordings(config: ExperimentConfig, study: Study) -> \
        tuple[list[Recording], list[dict[str, str]]]:
    """Stage 2: the recordings of ``study`` that fit ``config``, checked from their headers
    (:func:`check_recording`), and the ``{"item", "reason"}`` of everything left out (by the
    study's discovery, then by these checks when ``study.on_error=skip``)."""
    found = study.recordings()
    # read after discovery: the files the study left out, and why
    skipped = [{"item": str(item), "reason": reason} for item, reason in study.skipped]
    kept = []
    for rec in found:
        try:
            check_recording(rec, config)
            kept.append(rec)
        except (StudyError, ValueError, FileNotFoundError) as exc:
            _skip_or_raise(config, rec.uid, exc, skipped)
    _require_some(config, kept, skipped)
    return kept, skipped


def check_recording(rec: Recording, config: ExperimentConfig) -> None:
    """Refuse, from its header, a recording that ``config`` cannot use: shorter than one window,
    or filtered above its own Nyquist frequency."""
    raw = rec.raw()
    sfreq = raw.info["sfreq"]
    duration = raw.n_times / sfreq
    windows = config.windows
    span = windows.tmax - windows.tmin + abs(windows.brain_lag)
    if span > duration:
        raise ConfigError(
            f"windows.tmin={windows.tmin:g}, windows.tmax={windows.tmax:g}, "
            f"windows.brain_lag={windows.brain_lag:g}: a window needs {span:g} s of brain "
            f"signal but {rec.path} lasts {duration:.3g} s (shorten the window, or set "
            "study.on_error=skip to leave such recordings out)")
    for key in ("highpass", "lowpass"):
        cutoff = getattr(config.preprocess, key)
        if cutoff is not None and cutoff >= sfreq / 2:
            raise ConfigError(f"preprocess.{key}={cutoff:g} Hz is not below the Nyquist "
                              f"frequency of {rec.path} ({sfreq:g} Hz sampling: {sfreq / 2:g} Hz)")


def preprocess_recordings(config: ExperimentConfig, recordings: list[Recording],
                          cache_dir: Path, skipped: list[dict[str, str]]) -> \
        list[PreprocessedRecording]:
    """Stage 3: every recording preprocessed (cached) and its sound files checked; a failure is
    raised, or listed in ``skipped`` with ``study.on_error=skip``."""
    out = []
    for rec in recordings:
        try:
            prepared = preprocess(rec, config.preprocess, cache_dir, config.data.storage)
            check_stimuli(prepared.events, rec.uid)
            out.append(prepared)
        except (StudyError, ValueError, FileNotFoundError) as exc:
            _skip_or_raise(config, rec.uid, exc, skipped)
    _require_some(config, out, skipped)
    return out


@dataclass
class Blocks:
    """Stage 4's output: per recording uid, its blocks with their split and its sound spans;
    and the split leak audit."""

    blocks: dict[str, pd.DataFrame]
    sounds: dict[str, pd.DataFrame]
    audit: dict[str, Any]


def split_blocks(recordings: list[tuple[str, pd.DataFrame, float]],
                 config: SplitConfig) -> Blocks:
    """Stage 4: blocks of sentences with their split, from ``(uid, events, duration s)``."""
    sounds = {uid: sound_spans(events) for uid, events, _ in recordings}
    blocks = {uid: make_blocks(sentences(events, duration, config.block_end), config)
              for uid, events, duration in recordings}
    blocks = assign_splits(blocks, config)
    return Blocks(blocks, sounds, audit_splits(blocks, sounds))


@dataclass
class WindowTable:
    """Stage 5's output: the window table and what its indices point to."""

    windows: pd.DataFrame
    """one row per window: split, recording (index into ``recordings``), subject,
    subject_index (-1: not a training subject), brain_start, block (index into
    ``block_features``), speech_start, anchor; segment/word for test windows"""
    recordings: list[PreprocessedRecording]
    block_features: list[np.memmap]
    """targets of each block that has windows: speech features ``[n_frames, F]`` (retrieval)
    or the task's label track ``[n_frames, 1]``"""
    subjects: list[str]
    """training subjects; their position is the model's subject index"""


def window_table(config: ExperimentConfig, recordings: list[PreprocessedRecording],
                 blocks: Blocks, features: SpeechFeatures | None, cache_dir: Path,
                 skipped: list[dict[str, str]]) -> WindowTable:
    """Stage 5: the windows of every recording inside its blocks (anchored as ``task.name``
    needs), and the targets of the blocks they use (cached): the speech ``features`` for
    retrieval, label tracks for the other tasks (``features`` None). Phoneme events that
    phoneme classification cannot use are listed in ``skipped`` with their count. The recordings of ``splits.holdout_subjects`` are left out
    (listed in ``skipped``) after their blocks took part in the split assignment. A recording
    without a window, or (with robust scaling) whose subject has no training window to fit its
    scaler on, is left out and listed in ``skipped``."""
    sfreq = config.preprocess.sfreq
    task = config.task.name
    candidates = [(rec, make_windows(blocks.blocks[rec.uid], rec.events, config.windows, sfreq,
                                     rec.n_times, task)) for rec in recordings]
    held_out = set(config.splits.holdout_subjects)
    unknown = held_out - {rec.subject for rec in recordings}
    if unknown:
        raise ConfigError(f"splits.holdout_subjects: no recording of subject(s) "
                          f"{', '.join(sorted(unknown))} in {config.study.name!r} (subjects: "
                          f"{', '.join(sorted({rec.subject for rec in recordings}))})")
    trained = {rec.subject for rec, table in candidates if (table["split"] == "train").any()}
    tables, block_arrays, kept = [], [], []
    for rec, table in candidates:
        if rec.subject in held_out:
            skipped.append({"item": rec.uid, "reason": f"subject {rec.subject} is held out "
                            "(splits.holdout_subjects)"})
            continue
        if table.empty:
            reason = ("no complete window inside a block (duration "
                      f"{rec.duration:.1f} s, {len(blocks.blocks[rec.uid])} blocks)")
            if task == "phoneme_classification" and not phoneme_counts(rec.events,
                                                                       sfreq)["used"]:
                reason = "no phoneme event with an ARPAbet class (phoneme classification)"
            logger.warning("Skipping %s: %s", rec.uid, reason)
            skipped.append({"item": rec.uid, "reason": reason})
            continue
        if config.norm.robust_scale and rec.subject not in trained:
            # the scaler is never fitted on valid or test windows
            reason = (f"subject {rec.subject} has no training window to fit the robust scaler "
                      "of this recording on (it is never fitted on valid or test windows)")
            logger.warning("Skipping %s: %s", rec.uid, reason)
            skipped.append({"item": rec.uid, "reason": reason})
            continue
        used = sorted(table["block"].unique())
        table["block"] = table["block"].map({b: len(block_arrays) + i
                                             for i, b in enumerate(used)})
        for b in used:
            blk = blocks.blocks[rec.uid].loc[b]
            block_arrays.append(
                block_features(blk["start"], blk["stop"], blocks.sounds[rec.uid], features,
                               cache_dir) if features is not None else
                block_labels(task, rec.events, blk["start"], blk["stop"], sfreq, cache_dir,
                             rec.uid))
        if task == "phoneme_classification":
            _list_unused_phonemes(rec, sfreq, skipped)
        table["recording"] = len(kept)
        table["subject"] = rec.subject
        table["recording_uid"] = rec.uid
        kept.append(rec)
        tables.append(table)
    if not tables:
        reasons = "".join(f"\n  - {s['item']}: {s['reason']}" for s in skipped)
        raise StudyError(f"{config.study.root}: no recording has a complete window{reasons}")
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
    return WindowTable(windows, kept, block_arrays, list(subjects))


def _list_unused_phonemes(rec: PreprocessedRecording, sfreq: float,
                          skipped: list[dict[str, str]]) -> None:
    """List in ``skipped`` the phoneme events of ``rec`` that phoneme classification leaves out."""
    counts = phoneme_counts(rec.events, sfreq)
    if counts["unclassified"] or counts["same_frame"]:
        phonemes = rec.events[rec.events["kind"] == "phoneme"]["phoneme"]
        examples = sorted({str(p) for p in phonemes if phoneme_class(p) is None})[:5]
        skipped.append({"item": f"{rec.uid} (phonemes)", "reason": (
            f"{counts['unclassified']} phoneme events without an ARPAbet class "
            f"(e.g. {', '.join(map(repr, examples)) or '-'}) and {counts['same_frame']} "
            f"starting within the same {1000 / sfreq:.1f} ms sample as a later one are not "
            f"classified ({counts['used']} are)")})


@dataclass
class Scalers:
    """Stage 6's output: a robust scaler per recording (None: robust scaling off) and the
    speech-feature scaler (None: off)."""

    brain: list[RobustScaler | None]
    speech: FeatureScaler | None


def fit_scalers(config: ExperimentConfig, table: WindowTable) -> Scalers:
    """Stage 6: scalers fitted on training windows only. A recording without training windows
    gets a scaler fitted on its subject's other recordings' training windows, pooled."""
    sfreq = config.preprocess.sfreq
    n_times = config.windows.n_times(sfreq)
    baseline, baseline_offset = window_baseline(config)
    rng = np.random.default_rng(config.optim.seed)
    windows = table.windows
    train_windows = windows[windows["split"] == "train"]
    brains = [r.reader() for r in table.recordings]
    scalers: list[RobustScaler | None] = []
    for i, rec in enumerate(table.recordings):
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
    if config.norm.standardize_features and config.task.name == "retrieval":
        readers = [RowReader(a) for a in table.block_features]
        pick = rng.choice(len(train_windows),
                          size=min(len(train_windows), config.norm.n_feature_scaling_windows),
                          replace=False)
        samples = [readers[b].read(s, s + n_times).T for b, s in
                   train_windows.iloc[np.sort(pick)][["block", "speech_start"]].to_numpy()]
        feature_scaler = FeatureScaler.fit(samples)
    return Scalers(scalers, feature_scaler)


def build_datasets(config: ExperimentConfig, table: WindowTable,
                   scalers: Scalers) -> dict[str, WindowDataset]:
    """Stage 7: the train, valid and test :class:`WindowDataset` (windows in table order),
    sharing the study held on ``data.device`` when it is set."""
    n_times = config.windows.n_times(config.preprocess.sfreq)
    baseline, baseline_offset = window_baseline(config)
    brains = [r.reader() for r in table.recordings]
    readers = [RowReader(a) for a in table.block_features]
    n_channels = max(r.samples.shape[1] for r in table.recordings)
    store = None
    if config.data.device is not None:
        store = WindowDataset.device_store(brains, readers, scalers.brain, scalers.speech,
                                           n_channels, config.data.device)
    datasets = {}
    for split in ("train", "valid", "test"):
        part = table.windows[table.windows["split"] == split]
        items = [Window(int(r.recording), int(r.brain_start), int(r.block),
                        int(r.speech_start), int(r.subject_index)) for r in part.itertuples()]
        datasets[split] = WindowDataset(
            brains, [r.positions for r in table.recordings], readers, items, scalers.brain,
            scalers.speech, n_channels, n_times, baseline, config.norm.clamp, baseline_offset,
            config.data, store)
    return datasets


def window_baseline(config: ExperimentConfig) -> tuple[int, int]:
    """Baseline length and its offset from the brain window's start, samples: the paper's
    baseline is brain ``[a - 0.5, a]`` s, before the lag shift (as :func:`make_windows`)."""
    sfreq = config.preprocess.sfreq
    baseline = int(round(-config.windows.tmin * sfreq)) if config.norm.baseline else 0
    lag = int(round(config.windows.brain_lag * sfreq))
    return baseline, -lag if config.norm.baseline_window == "paper" else 0


def _skip_or_raise(config: ExperimentConfig, uid: str, exc: Exception,
                   skipped: list[dict[str, str]]) -> None:
    if config.study.on_error == "raise":
        raise exc
    logger.warning("Skipping %s: %s", uid, exc)
    skipped.append({"item": uid, "reason": str(exc)})


def _require_some(config: ExperimentConfig, recordings: list, skipped: list[dict[str, str]]) \
        -> None:
    if not recordings:
        reasons = "".join(f"\n  - {s['item']}: {s['reason']}" for s in skipped)
        raise StudyError(f"{config.study.root}: no usable recording for {config.study.name!r}"
                         + (f"; {len(skipped)} left out:{reasons}" if skipped else ""))


def study_blocks(config: ExperimentConfig) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The blocks of every recording of the study of ``config``, with their split
    (``{recording uid: blocks}``, see :func:`~braindecode_speech.data.splits.assign_splits`), and
    the split leak audit. Reads events and headers only."""
    study = open_study(config)
    items = []
    for rec in study.recordings():
        raw = rec.raw()
        duration = raw.n_times / raw.info["sfreq"]
        items.append((rec.uid, rec.events(duration=duration), duration))
    blocks = split_blocks(items, config.splits)
    return blocks.blocks, blocks.audit


def split_study(config: ExperimentConfig) -> dict[str, Any]:
    """The split leak audit of the study of ``config`` (reads events and headers only)."""
    return study_blocks(config)[1]


