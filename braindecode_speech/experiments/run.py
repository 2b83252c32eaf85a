"""One experiment, end to end: study → preprocessing → features → windows → training →
retrieval evaluation → report, all written to the experiment's own folder. The tasks beyond
retrieval (``task.name``) train on label tracks instead of speech features and are evaluated by
:mod:`~braindecode_speech.evaluation.classification`.

The folder holds ``config.yaml`` (the resolved config), ``history.jsonl``, ``checkpoint.pt`` /
``best.pt``, ``report.json``, ``per_subject.csv``, figures and ``skipped.csv`` (everything left
out, and why). Running again in the same folder resumes training from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..config import ConfigError
from ..data.batches import BatchLoader
from ..data.dataset import WindowDataset
from ..data.events import sentence_words
from ..data.labels import ARPABET
from ..evaluation.classification import TaskResult, evaluate_units
from ..evaluation.report import format_table, format_task_table, write_report, write_task_report
from ..evaluation.retrieval import (
    RetrievalEvaluator,
    control_summary,
    phase_randomized,
    within_subject_derangement,
)
from ..fileio import atomic_npy
from ..models import RidgeDecoder, WindowClassifier
from ..models.factory import resolve_target
from ..training import distributed
from ..training.losses import DetectionLoss, PhonemeLoss
from ..training.trainer import CheckpointError, Trainer, load_checkpoint
from .config import ExperimentConfig
from .prepare import PreparedData, prepare_data

__all__ = ["run_experiment", "evaluate_run", "evaluate_models", "evaluate_task", "load_weights",
           "build_model", "build_loss", "test_segments"]

logger = logging.getLogger(__name__)


def build_model(config: ExperimentConfig, data: PreparedData, trust_model_code: bool = False,
                source: str = "the config") -> torch.nn.Module:
    """The model of ``config.model`` for the subjects, features and sensors of ``data``: the
    BrainEncoder, or the model of ``model.target`` (one that is not registered only with
    ``trust_model_code``, see :mod:`~braindecode_speech.models.factory`); for phoneme
    classification read out per window by a :class:`~braindecode_speech.models.WindowClassifier`."""
    model = config.model.build(n_subjects=len(data.subjects), n_outputs=data.n_features,
                               n_channels=data.datasets["train"].n_channels,
                               trust_model_code=trust_model_code, source=source)
    if config.task.name == "phoneme_classification":
        model = WindowClassifier(model, data.n_features,
                                 config.windows.n_times(config.preprocess.sfreq))
    return model


def build_loss(config: ExperimentConfig, data: PreparedData) -> torch.nn.Module:
    """The training objective of ``config.task.name``: ``config.loss`` for retrieval; for the
    other tasks their loss, with ``task.class_weights=balanced`` weights from the training
    targets (speech detection: ``n_silence / n_speech`` frames of up to
    ``norm.n_feature_scaling_windows`` training windows; phoneme classification: the inverse
    frequency of each class among the training windows)."""
    task = config.task.name
    if task == "retrieval":
        return config.loss.build()
    balanced = config.task.class_weights == "balanced"
    if task == "speech_detection":
        p = _train_prior(config, data)[1]
        return DetectionLoss((1 - p) / p if balanced and 0 < p < 1 else 1.0)
    weight = None
    if balanced:  # 1 / frequency (cross-entropy's weighted mean ignores the scale)
        prior = _train_prior(config, data)
        weight = torch.from_numpy(np.divide(1.0, prior, out=np.zeros_like(prior),
                                            where=prior > 0)).float()
    return PhonemeLoss(config.windows.target_index(config.preprocess.sfreq), weight)


def _train_prior(config: ExperimentConfig, data: PreparedData) -> np.ndarray:
    """Class frequencies ``[K]`` of the training targets: speech detection ``[silence,
    speech]`` over the frames of up to ``norm.n_feature_scaling_windows`` training windows;
    phoneme classification: over the training windows."""
    if config.task.name == "phoneme_classification":
        labels = data.windows.loc[data.windows["split"] == "train", "label"].astype(int)
        counts = np.bincount(labels, minlength=len(ARPABET)).astype(float)
        return counts / max(counts.sum(), 1)
    train = data.datasets["train"]
    rng = np.random.default_rng(config.optim.seed)
    pick = np.sort(rng.choice(len(train), min(len(train), config.norm.n_feature_scaling_windows),
                              replace=False))
    p = float(train.get_batch(pick)["speech"].float().mean())
    return np.array([1 - p, p])


def _check_model_target(config: ExperimentConfig, trust_model_code: bool, source: str) -> None:
    """Refuse an untrusted or unusable ``model.target`` before any data are prepared."""
    if config.model.target is not None:
        resolve_target(config.model.target, trust_model_code, source)


def _in_order(dataset: WindowDataset, batch_size: int, device: torch.device) -> BatchLoader:
    """The windows of ``dataset`` in order, ``batch_size`` at a time, prepared ahead."""
    n = len(dataset)
    batches = [range(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    return BatchLoader.for_dataset(dataset, batches, pin_memory=device.type == "cuda")


def _predict(model: torch.nn.Module, dataset: WindowDataset, batch_size: int,
             device: torch.device,
             transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
             path: Path | None = None) -> Iterator[np.ndarray]:
    """Brain-encoder outputs of the windows of ``dataset`` in order, one ``[B, F, T]`` float32
    batch at a time (also written to ``path`` as ``[N, F, T]`` when given); ``transform`` maps
    each batch of brain windows ``[B, C, T]`` before the model."""
    model.eval()
    out = None
    with torch.no_grad(), contextlib.ExitStack() as files:
        for batch in _in_order(dataset, batch_size, device):
            brain = batch["brain"] if transform is None else transform(batch["brain"])
            z = model(brain.to(device), batch["subject"].to(device),
                      batch["positions"].to(device), batch["mask"].to(device)).float().cpu()
            if path is not None:
                if out is None:
                    out = files.enter_context(atomic_npy(path, (len(dataset), *z.shape[1:])))
                idx = batch["index"].cpu().numpy()
                out[idx[0]:idx[-1] + 1] = z.numpy()
            yield z.numpy()


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


def test_segments(data: PreparedData) -> tuple[np.ndarray, pd.DataFrame, list[str]]:
    """The candidates of the evaluation: the distinct test segments of ``data`` as speech
    windows ``[M, F, T]`` (normalised by the test dataset's feature scaler), the first test
    window of each (rows of ``data.windows``: ``segment``, ``word``, ``recording_uid``...) and
    the sentence each belongs to."""
    test = data.windows[data.windows["split"] == "test"].reset_index(drop=True)
    candidates, _, first = _candidates(data, test)
    return candidates, first, _segment_sentences(data, first)


def evaluate_models(config: ExperimentConfig, data: PreparedData, model: torch.nn.Module,
                    folder: Path, null_model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Retrieval evaluation of the brain encoder (and the ridge baseline) with the controls of
    :mod:`~braindecode_speech.evaluation.retrieval` (plus, for the brain encoder, phase-randomised
    surrogate windows and the ``null_model`` trained on mismatched pairs); writes the report.
    The other tasks: :func:`evaluate_task`."""
    if config.task.name != "retrieval":
        return evaluate_task(config, data, model, folder, null_model)
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
    predictions = _predict(model, data.datasets["test"], config.evaluation.batch_size, device,
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
            phase_randomized(brain.cpu().numpy(), rng)))
    if null_model is not None:
        others["train_null"] = (null_model, None)
    for name, (encoder, transform) in others.items():
        outputs = _predict(encoder, data.datasets["test"], config.evaluation.batch_size, device,
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


def evaluate_task(config: ExperimentConfig, data: PreparedData, model: torch.nn.Module,
                  folder: Path, null_model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Evaluate a speech detection or phoneme classification model on the test windows
    (:mod:`~braindecode_speech.evaluation.classification`), with the shuffled-label control,
    phase-randomised surrogate brain windows (``evaluation.controls``) and the ``null_model``;
    writes the report. Results ``model`` score every test window; with ``task.average > 1``,
    ``averaged`` scores groups of that many windows of the same phoneme averaged before the
    model (one training, both numbers)."""
    folder = Path(folder)
    task = config.task.name
    test = data.windows[data.windows["split"] == "test"].reset_index(drop=True)
    single = [[i] for i in range(len(test))]
    if task == "speech_detection":
        classes, scored = ["silence", "speech"], {"model": single}
    else:
        classes, scored = list(ARPABET), {"model": single}
        if config.task.average > 1:
            scored["averaged"] = _phoneme_groups(test, config.task.average,
                                                 config.evaluation.seed)
    prior = _train_prior(config, data)
    results = {name: _score_units(config, data, test, units, classes, prior, model, null_model)
               for name, units in scored.items()}
    extra = {"split_audit": data.audit, "skipped": data.skipped,
             "windows_per_split": data.windows["split"].value_counts().to_dict(),
             "subjects": data.subjects, "config_signature": config.signature(),
             "average": config.task.average,
             "test_windows_not_averaged": len(test) - sum(len(g) for g in
                                                          scored.get("averaged", single))}
    write_task_report(folder, results, extra)
    pd.DataFrame(data.skipped, columns=["item", "reason"]).to_csv(folder / "skipped.csv",
                                                                  index=False)
    table = format_task_table(results)
    (folder / "table.txt").write_text(table + "\n")
    return {"results": results, "table": table}


def _score_units(config: ExperimentConfig, data: PreparedData, test: pd.DataFrame,
                 units: list[list[int]], classes: list[str], prior: np.ndarray,
                 model: torch.nn.Module, null_model: torch.nn.Module | None) -> TaskResult:
    """The :class:`TaskResult` of ``model`` on the test ``units`` (groups of rows of ``test``)
    with the controls: shuffled labels, surrogate brain windows and the null model."""
    device = next(model.parameters()).device
    others: dict[str, tuple[torch.nn.Module, Callable | None]] = {"model": (model, None)}
    if config.evaluation.controls:
        rng = np.random.default_rng(config.evaluation.seed)
        others["surrogate"] = (model, lambda brain: torch.from_numpy(
            phase_randomized(brain.cpu().numpy(), rng)))
    if null_model is not None:
        others["train_null"] = (null_model, None)
    predictions = {}
    for name, (encoder, transform) in others.items():
        truth, predictions[name] = _task_predictions(config, data.datasets["test"], units,
                                                     encoder, device, transform)
    first = [group[0] for group in units]
    return evaluate_units(config.task.name, classes, truth, predictions.pop("model"),
                          test["subject"].to_numpy()[first], prior, config.evaluation,
                          predictions)


def _phoneme_groups(test: pd.DataFrame, average: int, seed: int) -> list[list[int]]:
    """Test windows (rows of ``test``) in groups of ``average`` of the same recording and
    phoneme, drawn in a seeded random order; a class's windows left over once its groups are
    full are left out."""
    rng = np.random.default_rng(seed)
    groups = []
    for _, rows in test.groupby(["recording", "label"], sort=True).indices.items():
        order = rng.permutation(rows)
        groups += [order[i:i + average].tolist()
                   for i in range(0, len(order) - average + 1, average)]
    return groups


def _task_predictions(config: ExperimentConfig, dataset: WindowDataset, units: list[list[int]],
                      model: torch.nn.Module, device: torch.device,
                      transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> \
        tuple[np.ndarray, np.ndarray]:
    """The truth and the predicted classes of every unit (a group of test windows whose brain
    windows are averaged before the model): speech detection ``[N, T]`` (logit > 0),
    phoneme classification ``[N]`` (the largest window logit)."""
    model.eval()
    size = max(1, config.evaluation.batch_size // max(len(g) for g in units)) if units else 1
    index = config.windows.target_index(config.preprocess.sfreq)
    truth, predicted = [], []
    with torch.no_grad():
        for start in range(0, len(units), size):
            groups = units[start:start + size]
            n = len(groups[0])  # groups have equal sizes
            batch = dataset.get_batch(np.concatenate(groups))
            brain = batch["brain"] if transform is None else transform(batch["brain"])
            brain = brain.reshape(len(groups), n, *brain.shape[1:]).mean(1)
            out = model(brain.to(device), batch["subject"][::n].to(device),
                        batch["positions"][::n].to(device), batch["mask"][::n].to(device))
            target = batch["speech"][::n].cpu()
            if config.task.name == "speech_detection":
                truth.append(target[:, 0].numpy().astype(np.int64))
                predicted.append((out[:, 0].float().cpu() > 0).numpy().astype(np.int64))
            else:
                truth.append(target[:, 0, index].numpy().astype(np.int64))
                predicted.append(PhonemeLoss.logits(out.float()).argmax(1).cpu().numpy())
    return np.concatenate(truth), np.concatenate(predicted)


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
    texts = sentence_words(rec.events for rec in data.recordings)
    return [" ".join(texts.get(s, [])) for s in first["sequence_id"]]


def _ridge_predictions(config: ExperimentConfig, data: PreparedData,
                       path: Path | None = None) -> Iterator[np.ndarray]:
    """Fit the ridge baseline on training windows; its predictions of the test windows in
    order, ``[evaluation.batch_size, F, T]`` float32 at a time (also written to ``path`` as ``[N, F, T]`` when
    given)."""
    rng = np.random.default_rng(config.optim.seed)
    train = data.datasets["train"]
    pick = np.sort(rng.choice(len(train), size=min(len(train), config.ridge.max_windows),
                              replace=False))
    fit = train.get_batch(pick)
    x, y = fit["brain"].cpu().numpy(), fit["speech"].cpu().numpy()
    ridge = RidgeDecoder(sfreq=config.preprocess.sfreq, tmax=config.ridge.tmax,
                         n_components=min(config.ridge.n_components, x.shape[1]),
                         time_step=config.ridge.time_step,
                         lag_step=config.ridge.lag_step).fit(x, y)
    test = data.datasets["test"]
    with contextlib.ExitStack() as files:
        out = None if path is None else files.enter_context(
            atomic_npy(path, (len(test), data.n_features, test.n_times)))
        start = 0
        for windows in _in_order(test, config.evaluation.batch_size, torch.device("cpu")):
            batch = ridge.predict(windows["brain"].cpu().numpy()).astype(np.float32)
            if out is not None:
                out[start:start + len(batch)] = batch
            start += len(batch)
            yield batch


def run_experiment(config: ExperimentConfig, folder: str | Path,
                   trust_model_code: bool = True) -> dict[str, Any]:
    """Run (or resume) the experiment of ``config`` in ``folder``; return ``{"results",
    "table"}`` (empty in the processes other than the first of a multi-process run).

    ``config`` is the caller's own, so its ``model.target`` is trusted by default; pass
    ``trust_model_code=False`` for a config read from someone else's folder.
    """
    folder = Path(folder)  # created by the Trainer, once the data are known to be usable
    torch.manual_seed(config.optim.seed)
    start = time.time()
    _check_model_target(config, trust_model_code, "the config")
    data = prepare_data(config)
    model = build_model(config, data, trust_model_code)
    trainer = Trainer(model, build_loss(config, data), config.optim, folder, config.signature())
    if distributed.is_main_process():
        config.to_yaml(folder / "config.yaml")
    trainer.fit(data.datasets["train"], data.datasets["valid"])
    null_model = (_train_null(config, data, folder, trust_model_code)
                  if config.evaluation.train_null else None)
    out: dict[str, Any] = {}
    if distributed.is_main_process():  # one process evaluates and writes the report
        out = evaluate_models(config, data, trainer.model, folder, null_model)
        logger.info("Experiment done in %.0f s", time.time() - start)
    distributed.barrier()
    return out


def load_weights(folder: str | Path) -> tuple[ExperimentConfig, dict[str, torch.Tensor]]:
    """The config and the best weights (``best.pt``) of the run in ``folder``.

    ``best.pt`` is read with :func:`~braindecode_speech.training.trainer.load_checkpoint` (tensors and
    plain types only: a crafted file cannot run code); a missing, damaged or crafted file is a
    :class:`~braindecode_speech.training.trainer.CheckpointError` naming it.
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


def evaluate_run(folder: str | Path, trust_model_code: bool = False) -> dict[str, Any]:
    """Re-evaluate the best checkpoint of the run in ``folder`` (rewrites its report).

    The model is rebuilt from the run's ``config.yaml``: the BrainEncoder or a registered
    ``model.target``; any other target only with ``trust_model_code`` (the folder may come
    from someone else; see :mod:`~braindecode_speech.models.factory`), refused before any data
    are read.
    """
    config, weights = load_weights(folder)
    source = str(Path(folder) / "config.yaml")
    _check_model_target(config, trust_model_code, source)
    data = prepare_data(config)
    model = build_model(config, data, trust_model_code, source)
    model.load_state_dict(weights)
    null_model = None
    if config.evaluation.train_null:  # resumes: trained already
        null_model = _train_null(config, data, Path(folder), trust_model_code, source)
    return evaluate_models(config, data, model, Path(folder), null_model)


def _train_null(config: ExperimentConfig, data: PreparedData, folder: Path,
                trust_model_code: bool, source: str = "the config") -> torch.nn.Module:
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
    trainer = Trainer(build_model(config, data, trust_model_code, source),
                      build_loss(config, data), config.optim, folder / "null",
                      config.signature())
    trainer.fit(mismatched["train"], mismatched["valid"])
    return trainer.model
