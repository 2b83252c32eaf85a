"""One experiment, end to end: study → preprocessing → features → windows → training →
retrieval evaluation → report, all written to the experiment's own folder.

The folder holds ``config.yaml`` (the resolved config), ``history.jsonl``, ``checkpoint.pt`` /
``best.pt``, ``report.json``, ``per_subject.csv``, figures and ``skipped.csv`` (everything left
out, and why). Running again in the same folder resumes training from the last checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from numpy.lib.format import open_memmap
from pydantic import Field, field_validator, model_validator

from . import distributed
from .cache import RowReader, default_cache_dir
from .config import Config, ConfigError
from .data import FeatureScaler, NormConfig, Window, WindowDataset, fit_robust_scaler
from .datasets import get as get_study
from .datasets import names as study_names
from .evaluation import (
    EvaluationConfig,
    RetrievalEvaluator,
    control_summary,
    phase_randomized,
    within_subject_derangement,
)
from .features import FeaturesConfig
from .losses import LossConfig
from .models import EncoderConfig, RidgeDecoder
from .preprocessing import PreprocessConfig, PreprocessedRecording, preprocess
from .report import format_table, write_report
from .segments import WindowConfig, make_windows
from .speech import block_features
from .splits import SplitConfig, assign_splits, audit_splits, make_blocks, sentences, sound_spans
from .stimuli import check_stimuli
from .study import Recording, StudyError
from .training import CheckpointError, OptimConfig, Trainer, load_checkpoint

__all__ = ["StudyConfig", "RidgeConfig", "ExperimentConfig", "PreparedData", "prepare_data",
           "run_experiment", "evaluate_run", "split_study", "study_blocks", "load_weights"]

logger = logging.getLogger(__name__)


class StudyConfig(Config):
    """Which study, where, which subjects."""

    name: str = "simulated"
    root: str | None = None
    """local copy of the study (not part of the signature: the data, not their place, matter)"""
    subjects: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    """keyword arguments of the study adapter"""
    on_error: Literal["raise", "skip"] = "raise"
    """a recording that cannot be read: stop with the error, or skip it (listed in the report)"""

    _exclude_from_signature = ("root",)

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in study_names():
            raise ValueError(f"unknown study {value!r}; known studies: {', '.join(study_names())}")
        return value


class RidgeConfig(Config):
    """The linear ridge baseline evaluated beside the brain encoder."""

    enabled: bool = True
    max_windows: int = Field(2000, ge=1)
    """training windows used to fit it (a random subset)"""
    n_components: int = Field(64, ge=1)
    """brain principal components kept before lagging"""
    tmax: float = Field(0.3, ge=0)
    """longest brain lag, s (lags from 0)"""
    lag_step: int = Field(2, ge=1)
    """spacing of the lags, samples (2 at 120 Hz: every 17 ms)"""
    time_step: int = Field(6, ge=1)
    """fit on every n-th time point of the (overlapping) windows"""


class ExperimentConfig(Config):
    """Everything that defines an experiment. Defaults are the paper's."""

    study: StudyConfig = Field(default_factory=StudyConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    splits: SplitConfig = Field(default_factory=SplitConfig)
    windows: WindowConfig = Field(default_factory=WindowConfig)
    norm: NormConfig = Field(default_factory=NormConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: EncoderConfig = Field(default_factory=EncoderConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    ridge: RidgeConfig = Field(default_factory=RidgeConfig)
    cache_dir: str | None = None
    """cache of preprocessed data and features (default: $BRAINDECODE_SPEECH_CACHE or
    ~/.cache/braindecode_speech)"""

    _exclude_from_signature = ("cache_dir",)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        """Checks across sections, before any data are read."""
        if abs(self.features.sfreq - self.preprocess.sfreq) > 1e-6:
            raise ValueError(f"features.sfreq ({self.features.sfreq} Hz) must equal "
                             f"preprocess.sfreq ({self.preprocess.sfreq} Hz): speech features "
                             "and brain windows are read on the same clock")
        if self.windows.n_times(self.preprocess.sfreq) < 1:
            raise ValueError(f"windows.tmax - windows.tmin ({self.windows.tmax} - "
                             f"{self.windows.tmin} s) is shorter than one sample at "
                             f"preprocess.sfreq={self.preprocess.sfreq} Hz")
        if self.norm.baseline and round(-self.windows.tmin * self.preprocess.sfreq) < 1:
            raise ValueError(f"norm.baseline averages the window before the anchor, but "
                             f"windows.tmin={self.windows.tmin} s leaves no sample there: set "
                             "windows.tmin < 0 or norm.baseline=false")
        return self


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
    (``{recording uid: blocks}``, see :func:`~braindecode_speech.splits.assign_splits`), and
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


def build_model(config: ExperimentConfig, data: PreparedData) -> torch.nn.Module:
    return config.model.build(n_subjects=len(data.subjects), n_outputs=data.n_features,
                              n_channels=data.datasets["train"].n_channels)


def _predict(model: torch.nn.Module, dataset: WindowDataset, batch_size: int,
             device: torch.device,
             transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
             path: Path | None = None) -> Iterator[np.ndarray]:
    """Brain-encoder outputs of the windows of ``dataset`` in order, one ``[B, F, T]`` float32
    batch at a time (also written to ``path`` as ``[N, F, T]`` when given); ``transform`` maps
    each batch of brain windows ``[B, C, T]`` before the model."""
    model.eval()
    out = None
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        for batch in loader:
            brain = batch["brain"] if transform is None else transform(batch["brain"])
            z = model(brain.to(device), batch["subject"].to(device),
                      batch["positions"].to(device), batch["mask"].to(device)).float().cpu()
            if path is not None:
                if out is None:
                    out = open_memmap(path, mode="w+", dtype=np.float32,
                                      shape=(len(dataset), *z.shape[1:]))
                idx = batch["index"].numpy()
                out[idx[0]:idx[-1] + 1] = z.numpy()
            yield z.numpy()
    if out is not None:
        out.flush()


def _candidates(data: PreparedData, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray,
                                                                   pd.DataFrame]:
    """Distinct test segments: speech windows ``[M, F, T]`` (in memory), the target index of
    every test window, and the segments' first occurrence (row of ``test``)."""
    segments = list(dict.fromkeys(test["segment"]))
    position = {s: i for i, s in enumerate(segments)}
    first = test.reset_index(drop=True).groupby("segment", sort=False).head(1)
    dataset = data.datasets["test"]
    out = np.empty((len(segments), data.n_features, dataset.n_times), dtype=np.float32)
    for row, seg in zip(first.index, first["segment"]):
        out[position[seg]] = dataset.speech_window(int(row))
    targets = test["segment"].map(position).to_numpy()
    return out, targets, first


def evaluate_models(config: ExperimentConfig, data: PreparedData, model: torch.nn.Module,
                    folder: Path, null_model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Retrieval evaluation of the brain encoder (and the ridge baseline) with the controls of
    :mod:`~braindecode_speech.evaluation` (plus, for the brain encoder, phase-randomised
    surrogate windows and the ``null_model`` trained on mismatched pairs); writes the report."""
    folder = Path(folder)
    device = next(model.parameters()).device
    test = data.windows[data.windows["split"] == "test"].reset_index(drop=True)
    candidates, targets, first = _candidates(data, test)
    save = config.evaluation.save_predictions
    if save:
        np.save(folder / "candidates.npy", candidates)
    words = [str(w).lower() for w in first["word"]]
    evaluator = RetrievalEvaluator(config.evaluation)
    meta = pd.concat([test[["subject", "recording_uid", "anchor", "word", "sequence_id",
                            "word_index", "segment"]], _anchor_labels(data, test)], axis=1)
    results = {}
    predictions = _predict(model, data.datasets["test"], config.optim.batch_size, device,
                           path=folder / "predictions.npy" if save else None)
    results["model"] = evaluator.evaluate_batches(predictions, candidates, targets, words, meta)
    if config.ridge.enabled:
        ridge = _ridge_predictions(config, data,
                                   folder / "predictions_ridge.npy" if save else None)
        results["ridge"] = evaluator.evaluate_batches(ridge, candidates, targets, words, meta)
    start = time.time()
    plain = RetrievalEvaluator(config.evaluation.model_copy(update={"controls": False}))
    others: dict[str, tuple[torch.nn.Module, Callable | None]] = {}
    if config.evaluation.controls:
        rng = np.random.default_rng(config.evaluation.seed)
        others["surrogate"] = (model, lambda brain: torch.from_numpy(
            phase_randomized(brain.numpy(), rng)))
    if null_model is not None:
        others["train_null"] = (null_model, None)
    for name, (encoder, transform) in others.items():
        outputs = _predict(encoder, data.datasets["test"], config.optim.batch_size, device,
                           transform, folder / f"predictions_{name}.npy" if save else None)
        scored = plain.evaluate_batches(outputs, candidates, targets, words, meta)
        results["model"].controls[name] = control_summary(
            scored.per_window["segment_rank"].to_numpy(), scored.chance["segment"],
            config.evaluation)
    if others:
        logger.info("controls %s: %.1f s", ", ".join(others), time.time() - start)
    sentences_text = _segment_sentences(data, first)
    extra = {"split_audit": data.audit, "skipped": data.skipped,
             "windows_per_split": data.windows["split"].value_counts().to_dict(),
             "subjects": data.subjects, "config_signature": config.signature()}
    write_report(folder, results, extra, candidate_sentences=sentences_text,
                 candidate_word_index=first["word_index"].astype(int).tolist())
    pd.DataFrame(data.skipped, columns=["item", "reason"]).to_csv(folder / "skipped.csv",
                                                                  index=False)
    table = format_table(results)
    (folder / "table.txt").write_text(table + "\n")
    return {"results": results, "table": table}


def _anchor_labels(data: PreparedData, test: pd.DataFrame,
                   columns: tuple[str, ...] = ("story", "voice")) -> pd.DataFrame:
    """Per test window, the ``columns`` of its anchor word's event (None where the study's
    events have no such column)."""
    out = pd.DataFrame(None, index=test.index, columns=list(columns), dtype=object)
    for i, rec in enumerate(data.recordings):
        rows = test.index[test["recording"] == i]
        words = rec.events[rec.events["kind"] == "word"].drop_duplicates("onset")
        for column in columns:
            if len(rows) and column in words:
                out.loc[rows, column] = words.set_index("onset")[column].reindex(
                    test.loc[rows, "anchor"]).to_numpy()
    return out


def _segment_sentences(data: PreparedData, first: pd.DataFrame) -> list[str]:
    """The sentence text of each candidate segment."""
    texts = {}
    for rec in data.recordings:
        words = rec.events[rec.events["kind"] == "word"]
        for sid, part in words.groupby("sequence_id", sort=False):
            texts.setdefault(sid, " ".join(part.sort_values("word_index")["word"].astype(str)))
    return [texts.get(s, "") for s in first["sequence_id"]]


def _ridge_predictions(config: ExperimentConfig, data: PreparedData,
                       path: Path | None = None) -> Iterator[np.ndarray]:
    """Fit the ridge baseline on training windows; its predictions of the test windows in
    order, ``[256, F, T]`` float32 at a time (also written to ``path`` as ``[N, F, T]`` when
    given)."""
    rng = np.random.default_rng(config.optim.seed)
    train = data.datasets["train"]
    pick = np.sort(rng.choice(len(train), size=min(len(train), config.ridge.max_windows),
                              replace=False))
    x = np.stack([train[int(i)]["brain"].numpy() for i in pick])
    y = np.stack([train[int(i)]["speech"].numpy() for i in pick])
    ridge = RidgeDecoder(sfreq=config.preprocess.sfreq, tmax=config.ridge.tmax,
                         n_components=min(config.ridge.n_components, x.shape[1]),
                         time_step=config.ridge.time_step,
                         lag_step=config.ridge.lag_step).fit(x, y)
    test = data.datasets["test"]
    out = None if path is None else open_memmap(
        path, mode="w+", dtype=np.float32, shape=(len(test), data.n_features, test.n_times))
    for start in range(0, len(test), 256):
        stop = min(start + 256, len(test))
        batch = ridge.predict(np.stack([test[i]["brain"].numpy()
                                        for i in range(start, stop)])).astype(np.float32)
        if out is not None:
            out[start:stop] = batch
        yield batch
    if out is not None:
        out.flush()


def run_experiment(config: ExperimentConfig, folder: str | Path) -> dict[str, Any]:
    """Run (or resume) the experiment of ``config`` in ``folder``; return ``{"results",
    "table"}`` (empty in the processes other than the first of a multi-process run)."""
    folder = Path(folder)  # created by the Trainer, once the data are known to be usable
    torch.manual_seed(config.optim.seed)
    start = time.time()
    data = prepare_data(config)
    model = build_model(config, data)
    trainer = Trainer(model, config.loss.build(), config.optim, folder, config.signature())
    if distributed.is_main_process():
        config.to_yaml(folder / "config.yaml")
    trainer.fit(data.datasets["train"], data.datasets["valid"])
    null_model = _train_null(config, data, folder) if config.evaluation.train_null else None
    out: dict[str, Any] = {}
    if distributed.is_main_process():  # one process evaluates and writes the report
        out = evaluate_models(config, data, trainer.model, folder, null_model)
        logger.info("Experiment done in %.0f s", time.time() - start)
    distributed.barrier()
    return out


def load_weights(folder: str | Path) -> tuple[ExperimentConfig, dict[str, torch.Tensor]]:
    """The config and the best weights (``best.pt``) of the run in ``folder``.

    ``best.pt`` is read with :func:`~braindecode_speech.training.load_checkpoint` (tensors and
    plain types only: a crafted file cannot run code); a missing, damaged or crafted file is a
    :class:`~braindecode_speech.training.CheckpointError` naming it.
    """
    folder = Path(folder)
    config = ExperimentConfig.from_yaml(folder / "config.yaml")
    best = folder / "best.pt"
    if not best.exists():
        raise CheckpointError(f"{best}: no trained model in this run folder")
    state = load_checkpoint(best)
    if state["signature"] != config.signature():
        raise ConfigError(f"{best} was trained with another config than {folder / 'config.yaml'}")
    return config, state["model"]


def evaluate_run(folder: str | Path) -> dict[str, Any]:
    """Re-evaluate the best checkpoint of the run in ``folder`` (rewrites its report)."""
    config, weights = load_weights(folder)
    data = prepare_data(config)
    model = build_model(config, data)
    model.load_state_dict(weights)
    null_model = None
    if config.evaluation.train_null:
        null_model = _train_null(config, data, Path(folder))  # resumes: trained already
    return evaluate_models(config, data, model, Path(folder), null_model)


def _train_null(config: ExperimentConfig, data: PreparedData, folder: Path) -> torch.nn.Module:
    """The null model of ``evaluation.train_null``: the same encoder and training, in
    ``folder / "null"``, on training and validation windows whose brain data are paired with
    the speech of another window of the same subject (a seeded derangement; windows of a
    subject with a single window are left out). Resumes or reuses a finished training."""
    rng = np.random.default_rng([config.optim.seed, 7])
    mismatched = {}
    for split in ("train", "valid"):
        dataset = data.datasets[split]
        subjects = data.windows.loc[data.windows["split"] == split, "subject"].to_numpy()
        partner = within_subject_derangement(subjects, rng)
        windows = [dataclasses.replace(w, block=dataset.windows[p].block,
                                       speech_start=dataset.windows[p].speech_start)
                   for w, p in zip(dataset.windows, partner) if p >= 0]
        mismatched[split] = copy.copy(dataset)
        mismatched[split].windows = windows
    trainer = Trainer(build_model(config, data), config.loss.build(), config.optim,
                      folder / "null", config.signature())
    trainer.fit(mismatched["train"], mismatched["valid"])
    return trainer.model
