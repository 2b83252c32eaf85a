"""A new subject in minutes: calibrate a trained model to a subject it was not trained on.

An unknown subject goes through the *mean* subject layer
(:mod:`~braindecode_speech.models.subject_layers`). :func:`calibrate` gives the subject its own
layer instead: the encoder gets one more subject, started at the mean layer, and only that
layer (optionally also the spatial attention's Fourier coefficients, ``spatial=True``) is fitted
on the first ``minutes`` of the subject's training blocks with the model's own loss (the CLIP
loss, through :class:`~braindecode_speech.training.steps.ContrastiveStep`), everything else
frozen (eval mode: batch-norm statistics fixed, no dropout). The subject's windows come from the
package's stages (:mod:`~braindecode_speech.experiments.prepare`) run on the whole study with
the model's config, so its blocks have the splits of the whole study, and its robust scalers
are fitted on the calibration windows only. The calibrated model is evaluated on the subject's
test windows against all distinct test segments of the study, by the package's
:class:`~braindecode_speech.evaluation.retrieval.RetrievalEvaluator`.

>>> decoder = BrainDecoder.from_pretrained("models/simulated")
>>> calibrated, result = decoder.calibrate("data/sim", "simulated", subject="01", minutes=5)
>>> calibrated.save_pretrained("models/simulated-01")

:func:`calibration_curve` measures top-k against calibration minutes, beside a model trained
from scratch on the same minutes (:func:`train_from_scratch`); :func:`plot_calibration_curve`
draws it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..data.cache import RowReader, default_cache_dir
from ..data.dataset import FeatureScaler, RobustScaler, WindowDataset, fit_robust_scaler
from ..evaluation.retrieval import RetrievalEvaluator, RetrievalResult
from ..experiments.config import ExperimentConfig
from ..experiments.prepare import (
    PreparedData,
    Scalers,
    WindowTable,
    build_datasets,
    check_recordings,
    open_study,
    preprocess_recordings,
    split_blocks,
    window_baseline,
    window_table,
)
from ..experiments.run import test_segments
from ..models import BrainEncoder
from ..models.spatial_attention import SpatialAttention
from ..training.steps import ContrastiveStep
from .decoder import BrainDecoder, build_encoder
from .folder import SensorLayout, SharingError

__all__ = ["CalibrationResult", "SubjectData", "calibrate", "calibration_curve",
           "evaluate_subject", "plot_calibration_curve", "subject_data", "train_from_scratch"]

logger = logging.getLogger(__name__)

#: calibration steps (batches) by default
DEFAULT_STEPS = 100
#: subject index of a subject the encoder does not know (the mean subject layer)
UNKNOWN = -1
#: levels of the evaluation written per point of a curve
_LEVELS = ("segment", "word")


@dataclass
class SubjectData:
    """The windows of one subject of a study, prepared with a model's config.

    ``table``: the window table of the whole study (every subject: its test windows give the
    candidates); ``rows``: the subject's rows of ``table.windows``, with ``train_time`` (s into
    the subject's training blocks, recordings in study order, where each training window's
    speech ends; NaN for other splits); ``candidates [M, F, T]``, ``candidate_ids`` and
    ``candidate_words``: the distinct test segments of the whole study, as the evaluation's;
    ``train_blocks``: the subject's training blocks in training-time order (``recording``,
    ``start``, ``stop``, ``duration``, ``offset``: start in training time; s);
    ``speech_scaler``: the model's.
    """

    config: ExperimentConfig
    subject: str
    table: WindowTable
    rows: pd.DataFrame
    candidates: np.ndarray
    candidate_ids: list[str]
    candidate_words: list[str]
    train_blocks: pd.DataFrame
    speech_scaler: FeatureScaler | None

    @property
    def recordings(self) -> list[int]:
        """Indices (into ``table.recordings``) of the subject's recordings, in study order."""
        return sorted(self.rows["recording"].unique().tolist())

    @property
    def train_seconds(self) -> float:
        """Length of the subject's training blocks, s."""
        return float(self.train_blocks["duration"].sum())

    def calibration_rows(self, minutes: float | None) -> pd.DataFrame:
        """The subject's training windows whose speech ends within the first ``minutes`` of
        its training blocks (None: all of them)."""
        if minutes is not None and not minutes > 0:
            raise SharingError(f"minutes must be positive, got {minutes:g} (0 minutes is the "
                               "model as it is: an unknown subject uses the mean subject layer)")
        train = self.rows[self.rows["split"] == "train"]
        if minutes is not None:
            train = train[train["train_time"] <= 60 * minutes + 1e-9]
        if train.empty:
            raise SharingError(f"the first {minutes:g} minutes of subject {self.subject}'s "
                               f"training blocks hold no complete window (a window lasts "
                               f"{self.config.windows.tmax - self.config.windows.tmin:g} s)")
        return train


def subject_data(decoder: BrainDecoder, root: str | Path, study: str | None,
                 subject: str) -> SubjectData:
    """The windows of ``subject`` in the study ``study`` (default: the model's) at ``root``,
    by the package's stages with the model's config on the whole study (no subject held out,
    so the subject's blocks take the splits of the whole study)."""
    config = decoder.study_config(root, study).with_overrides({"splits.holdout_subjects": []})
    cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    recordings, skipped = check_recordings(config, open_study(config))
    if subject not in {rec.subject for rec in recordings}:
        raise SharingError(f"{config.study.root}: no recording of subject {subject!r} in "
                           f"{config.study.name!r} (subjects: "
                           f"{', '.join(sorted({r.subject for r in recordings}))})")
    prepared = preprocess_recordings(config, recordings, cache_dir, skipped)
    blocks = split_blocks([(r.uid, r.events, r.duration) for r in prepared], config.splits)
    features = decoder.speech_features()
    table = window_table(config, prepared, blocks, features, cache_dir, skipped)
    rows = table.windows[table.windows["subject"] == subject].copy()
    if not (rows["split"] == "train").any():
        raise SharingError(f"{config.study.root}: subject {subject} has no training window in "
                           f"{config.study.name!r} (its blocks are all valid or test blocks, or "
                           "its recordings were left out): nothing to calibrate on")
    rows["train_time"], train_blocks = _train_time(rows, table, blocks.blocks, config)
    datasets = build_datasets(config, table, Scalers([None] * len(table.recordings),
                                                     decoder.scalers.speech))
    data = PreparedData(recordings=table.recordings, windows=table.windows, datasets=datasets,
                        subjects=table.subjects, n_features=features.dimension,
                        audit=blocks.audit, skipped=skipped)
    speech, first, _ = test_segments(data)
    return SubjectData(config, subject, table, rows, speech, first["segment"].astype(str).tolist(),
                       [str(w).lower() for w in first["word"]], train_blocks,
                       decoder.scalers.speech)


def _train_time(rows: pd.DataFrame, table: WindowTable, blocks: dict[str, pd.DataFrame],
                config: ExperimentConfig) -> tuple[np.ndarray, pd.DataFrame]:
    """Per row, s into the subject's training blocks where its speech window ends (NaN outside
    the training split); and those blocks (``uid``, ``start``, ``stop``, ``duration``,
    ``offset``: their start in training time)."""
    parts = []
    for index in sorted(rows["recording"].unique()):
        uid = table.recordings[index].uid
        train = blocks[uid][blocks[uid]["split"] == "train"].sort_values("start")
        parts.append(pd.DataFrame({"recording": index, "start": train["start"].to_numpy(),
                                   "stop": train["stop"].to_numpy()}))
    train_blocks = pd.concat(parts, ignore_index=True)
    train_blocks["duration"] = train_blocks["stop"] - train_blocks["start"]
    train_blocks["offset"] = train_blocks["duration"].cumsum() - train_blocks["duration"]
    out = np.full(len(rows), np.nan)
    end = rows["anchor"].to_numpy() + config.windows.tmax
    for i, (split, recording, anchor) in enumerate(zip(rows["split"], rows["recording"],
                                                        rows["anchor"])):
        if split != "train":
            continue
        own = train_blocks[(train_blocks["recording"] == recording)
                           & (train_blocks["start"] <= anchor) & (anchor < train_blocks["stop"])]
        block = own.iloc[0]
        out[i] = block["offset"] + min(end[i], block["stop"]) - block["start"]
    return out, train_blocks


@dataclass
class CalibrationResult:
    """What a calibration did and how it scored: the ``subject``, the ``minutes`` asked (None:
    all), the ``seconds`` of training blocks and ``n_windows`` used, ``steps``, the CLIP loss
    on the calibration windows before and after (``loss_before``, ``loss_after``) and the
    retrieval ``before`` (mean subject layer) and ``after`` on the subject's test windows
    (``RetrievalResult.to_dict()``)."""

    subject: str
    minutes: float | None
    seconds: float
    n_windows: int
    steps: int
    lr: float
    spatial: bool
    loss_before: float
    loss_after: float
    before: dict[str, Any]
    after: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """A flat JSON-able summary: settings, losses and the segment and word top-k before
        and after."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("before", "after")}
        for name, result in (("before", self.before), ("after", self.after)):
            for level in _LEVELS:
                for key, value in result["metrics"][level].items():
                    out[f"{name}.{level}.{key}"] = value
        out["n_test_windows"] = self.after["n_windows"]
        out["n_candidates"] = self.after["n_candidates"]
        return out


def calibrate(decoder: BrainDecoder, root: str | Path, study: str | None, subject: str,
              minutes: float | None, steps: int = DEFAULT_STEPS, lr: float | None = None,
              spatial: bool = False, seed: int = 0,
              data: SubjectData | None = None) -> tuple[BrainDecoder, CalibrationResult]:
    """Calibrate ``decoder`` to ``subject`` of the study ``study`` at ``root`` on the first
    ``minutes`` of its training blocks (None: all); return the calibrated decoder (the subject
    added to its subjects, layouts and scalers) and the :class:`CalibrationResult`.

    ``steps`` Adam steps of ``optim.batch_size`` windows (all of them when fewer) at ``lr``
    (default: the model's ``optim.lr``); ``spatial``: fit the spatial attention's Fourier
    coefficients too (shared by every subject: the calibrated model is then the new
    subject's); ``data``: the subject's windows from :func:`subject_data`, when already
    prepared.
    """
    if steps < 1:
        raise SharingError(f"steps must be at least 1, got {steps}")
    if subject in decoder.subjects:
        raise SharingError(f"subject {subject} is one of the model's training subjects "
                           f"({', '.join(decoder.subjects)}): it has its own layer already")
    data = data or subject_data(decoder, root, study, subject)
    calibration = data.calibration_rows(minutes)
    scalers = _subject_scalers(data, calibration)
    new_index = len(decoder.subjects)
    encoder = _with_new_subject(decoder, data.config)
    before = evaluate_subject(encoder, data, scalers, UNKNOWN)
    train = _dataset(data, calibration, "train", scalers, new_index)
    lr = decoder.experiment.optim.lr if lr is None else lr
    loss = data.config.loss.build()
    loss_before = _mean_loss(encoder, loss, train, data.config.optim.batch_size)
    _fit(encoder, loss, train, _calibrated_parameters(encoder, new_index, spatial), steps, lr,
         data.config.optim.batch_size, seed, train_mode=False)
    loss_after = _mean_loss(encoder, loss, train, data.config.optim.batch_size)
    after = evaluate_subject(encoder, data, scalers, new_index)
    result = CalibrationResult(subject, minutes, _seconds(data, minutes), len(calibration),
                               steps, lr, spatial, loss_before, loss_after, before.to_dict(),
                               after.to_dict())
    logger.info("Calibrated subject %s on %d windows (%.0f s): segment top-10 %.3f -> %.3f",
                subject, len(calibration), result.seconds,
                before.metrics["segment"].get("top10", float("nan")),
                after.metrics["segment"].get("top10", float("nan")))
    return _calibrated_decoder(decoder, data, encoder.eval(), scalers, result), result


def train_from_scratch(data: SubjectData, minutes: float | None, steps: int,
                       seed: int = 0) -> tuple[torch.nn.Module, RetrievalResult]:
    """A new encoder of the model's config trained on the subject alone (all parameters, one
    subject layer, training mode) for ``steps`` Adam steps on the first ``minutes`` of its
    training blocks, at the config's ``optim.lr``; and its retrieval on the subject's test
    windows."""
    calibration = data.calibration_rows(minutes)
    scalers = _subject_scalers(data, calibration)
    torch.manual_seed(seed)
    encoder = build_encoder(data.config, 1, data.candidates.shape[1],
                            max(r.samples.shape[1] for r in data.table.recordings))
    train = _dataset(data, calibration, "train", scalers, 0)
    _fit(encoder, data.config.loss.build(), train, list(encoder.parameters()), steps,
         data.config.optim.lr, data.config.optim.batch_size, seed, train_mode=True)
    return encoder.eval(), evaluate_subject(encoder, data, scalers, 0)


def evaluate_subject(encoder: torch.nn.Module, data: SubjectData,
                     scalers: dict[int, RobustScaler | None], subject_index: int) \
        -> RetrievalResult:
    """Retrieval of the subject's test windows (through subject index ``subject_index``; -1:
    the mean layer) among the distinct test segments of the whole study (no controls)."""
    test = data.rows[data.rows["split"] == "test"]
    if test.empty:
        raise SharingError(f"subject {data.subject} has no test window to evaluate on")
    dataset = _dataset(data, test, "test", scalers, subject_index)
    position = {s: i for i, s in enumerate(data.candidate_ids)}
    targets = test["segment"].astype(str).map(position).to_numpy()
    meta = test[["subject", "recording_uid", "anchor", "word", "sequence_id", "word_index",
                 "segment"]].reset_index(drop=True)
    config = data.config.evaluation.model_copy(update={"controls": False})
    return RetrievalEvaluator(config).evaluate_batches(
        _predictions(encoder, dataset, config.batch_size), data.candidates, targets,
        data.candidate_words, meta)


def calibration_curve(decoder: BrainDecoder, root: str | Path, study: str | None, subject: str,
                      minutes: Sequence[float | None] = (0, 1, 2, 5, 10, None),
                      steps: int = DEFAULT_STEPS, scratch_steps: int | None = 300,
                      spatial: bool = False, seed: int = 0) -> pd.DataFrame:
    """Top-k of ``subject`` against calibration minutes (0: the mean subject layer; None: all
    its training blocks), calibrated (``method="calibrated"``) and, with ``scratch_steps``,
    trained from scratch on the same minutes (``method="scratch"``); minutes beyond the
    subject's training blocks are "all" (computed once). One row per point:
    ``subject``, ``method``, ``minutes`` (NaN: all), ``seconds`` and ``n_windows`` used,
    ``steps``, ``n_test_windows``, ``n_candidates`` and ``segment.top{k}`` / ``word.top{k}``
    (fractions)."""
    data = subject_data(decoder, root, study, subject)
    rows, done = [], set()
    for value in minutes:
        if value is not None and value > 0 and 60 * value >= data.train_seconds:
            value = None  # as many minutes as the subject has, or more: all of them
        if value in done:
            continue
        done.add(value)
        if value == 0:
            scalers = _subject_scalers(data, None)
            result = evaluate_subject(_with_new_subject(decoder, data.config), data, scalers,
                                      UNKNOWN)
            rows.append(_row(data, "calibrated", 0.0, 0.0, 0, 0, result.to_dict()))
            continue
        _, calibrated = calibrate(decoder, root, study, subject, value, steps, spatial=spatial,
                                  seed=seed, data=data)
        rows.append(_row(data, "calibrated", value, calibrated.seconds, calibrated.n_windows,
                         steps, calibrated.after))
        if scratch_steps:
            _, scratch = train_from_scratch(data, value, scratch_steps, seed)
            rows.append(_row(data, "scratch", value, calibrated.seconds, calibrated.n_windows,
                             scratch_steps, scratch.to_dict()))
    return pd.DataFrame(rows)


def plot_calibration_curve(curve: pd.DataFrame, metric: str = "segment.top10",
                           reference: dict[str, float] | None = None,
                           chance: float | None = None, target: float | None = None) -> Figure:
    """Figure of :func:`calibration_curve` tables (one line per subject and method, a colour per
    subject; calibrated solid, from scratch dashed): ``metric`` against the minutes of training
    blocks used (``seconds``). ``reference``: per subject, its accuracy when it is part of
    training (dotted), which adds a second panel with the accuracy as a fraction of it (and
    ``target``, a fraction, as a line); ``chance``: the chance level."""
    subjects = list(dict.fromkeys(str(s) for s in curve["subject"]))
    colours = {s: f"C{i % 10}" for i, s in enumerate(subjects)}
    relative = bool(reference)
    figure = Figure(figsize=(10 if relative else 6.5, 4), layout="constrained")
    axes = figure.subplots(1, 2 if relative else 1, squeeze=False)[0]
    styles = {"calibrated": ("o", "-"), "scratch": ("s", "--")}
    for (subject, method), part in curve.groupby(["subject", "method"], sort=False):
        part = part.sort_values("seconds")
        marker, ls = styles.get(method, ("o", "-"))
        kwargs = dict(color=colours[str(subject)], marker=marker, ls=ls, ms=4)
        minutes = part["seconds"] / 60
        axes[0].plot(minutes, 100 * part[metric], **kwargs)
        if relative and str(subject) in reference:
            axes[1].plot(minutes, 100 * part[metric] / reference[str(subject)], **kwargs)
    for subject, value in (reference or {}).items():
        if subject in colours:
            axes[0].axhline(100 * value, color=colours[subject], ls=":", lw=1)
    if chance is not None:
        axes[0].axhline(100 * chance, color="black", ls="--", lw=1)
    axes[0].set_ylabel(f"{metric} accuracy (%)")
    handles = [Line2D([], [], color=colours[s], marker="o", label=f"subject {s}")
               for s in subjects]
    handles += [Line2D([], [], color="grey", marker="o", ls="-", label="calibrated"),
                Line2D([], [], color="grey", marker="s", ls="--", label="trained from scratch")]
    if reference:
        handles.append(Line2D([], [], color="grey", ls=":", label="part of training"))
    if chance is not None:
        handles.append(Line2D([], [], color="black", ls="--", label="chance"))
    if relative:
        axes[1].axhline(100, color="grey", ls=":", lw=1)
        if target is not None:
            axes[1].axhline(100 * target, color="black", ls="-.", lw=1)
            handles.append(Line2D([], [], color="black", ls="-.",
                                  label=f"target ({100 * target:.0f} % of part of training)"))
        axes[1].set_ylabel("% of the accuracy when part of training")
    for ax in axes:
        ax.set_ylim(bottom=0)
    figure.supxlabel("minutes of the subject's training blocks (0: mean subject layer)",
                     fontsize="medium")
    figure.legend(handles=handles, loc="outside right center", fontsize=8)
    return figure


# ---------------------------------------------------------------------------------- helpers


def _row(data: SubjectData, method: str, minutes: float | None, seconds: float,
         n_windows: int, steps: int, result: dict[str, Any]) -> dict[str, Any]:
    row = {"subject": data.subject, "method": method,
           "minutes": math.nan if minutes is None else float(minutes), "seconds": seconds,
           "n_windows": n_windows, "steps": steps, "n_test_windows": result["n_windows"],
           "n_candidates": result["n_candidates"]}
    for level in _LEVELS:
        row.update({f"{level}.{k}": v for k, v in result["metrics"][level].items()})
    row.update({f"chance.{k}": v for k, v in result["chance"]["segment"].items()})
    return row


def _seconds(data: SubjectData, minutes: float | None) -> float:
    total = data.train_seconds
    return total if minutes is None else min(60 * minutes, total)


def _subject_scalers(data: SubjectData, calibration: pd.DataFrame | None) \
        -> dict[int, RobustScaler | None]:
    """Per recording of the subject, its robust scaler fitted on its calibration windows
    (pooled over the subject's calibration windows when it has none); ``calibration=None``
    (no calibration data, as :meth:`BrainDecoder.decode` for an unknown subject): on all the
    recording's own windows."""
    config = data.config
    if not config.norm.robust_scale:
        return {i: None for i in data.recordings}
    baseline, offset = window_baseline(config)
    n_times = config.windows.n_times(config.preprocess.sfreq)
    rng = np.random.default_rng(config.optim.seed)
    out = {}
    for i in data.recordings:
        source = data.rows if calibration is None else calibration
        own = source[source["recording"] == i]
        if own.empty:
            own = source
        sources = [(RowReader(data.table.recordings[int(j)].samples),
                    part["brain_start"].to_numpy()) for j, part in own.groupby("recording")]
        out[i] = fit_robust_scaler(sources, n_times, baseline, config.norm.n_scaling_windows,
                                   rng, offset)
    return out


def _dataset(data: SubjectData, rows: pd.DataFrame, split: str,
             scalers: dict[int, RobustScaler | None], subject_index: int) -> WindowDataset:
    """The :class:`WindowDataset` of ``rows`` (of ``split``), normalised with ``scalers``,
    every window with subject index ``subject_index``."""
    brain = [scalers.get(i) for i in range(len(data.table.recordings))]
    datasets = build_datasets(data.config, data.table, Scalers(brain, data.speech_scaler))
    dataset = datasets[split]
    position = {index: n for n, index in enumerate(
        data.table.windows.index[data.table.windows["split"] == split])}
    dataset.windows = [dataclasses.replace(dataset.windows[position[i]], subject=subject_index)
                       for i in rows.index]
    return dataset


def _with_new_subject(decoder: BrainDecoder, config: ExperimentConfig) -> BrainEncoder:
    """A copy of the decoder's encoder with one more subject, whose layer (or embedding) is
    the mean of the trained ones."""
    encoder = decoder.encoder
    state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    if encoder.subject_layers is None and encoder.subject_embedding is None:
        raise SharingError("the model has no subject-specific layer (model.subject_layers and "
                           "model.subject_embedding are off): there is nothing to calibrate")
    for key in ("subject_layers.weight", "subject_embedding.embedding.weight"):
        if key in state:
            state[key] = torch.cat([state[key], state[key].mean(0, keepdim=True)])
    out = build_encoder(config, len(decoder.subjects) + 1, decoder.metadata["n_features"],
                        decoder.metadata["n_channels"])
    out.load_state_dict(state)
    return out.to(next(encoder.parameters()).device).eval()


def _calibrated_parameters(encoder: BrainEncoder, index: int,
                           spatial: bool) -> list[torch.nn.Parameter]:
    """Freeze ``encoder`` but subject ``index``'s layer (or embedding), and with ``spatial``
    the spatial attention's coefficients; return the parameters left to train."""
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    layer = encoder.subject_layers.weight if encoder.subject_layers is not None \
        else encoder.subject_embedding.embedding.weight
    layer.requires_grad_(True)
    rows = torch.zeros(len(layer), *([1] * (layer.dim() - 1)), device=layer.device)
    rows[index] = 1
    layer.register_hook(lambda grad: grad * rows)  # the other subjects' rows get no gradient
    trained = [layer]
    if spatial:
        if not isinstance(encoder.merger, SpatialAttention):
            raise SharingError("spatial=True calibrates the spatial attention, but the model "
                               "has none (model.spatial_attention=false or merger=signal)")
        encoder.merger.weight.requires_grad_(True)
        trained.append(encoder.merger.weight)
    return trained


def _batches(n: int, batch_size: int, steps: int, rng: np.random.Generator) \
        -> Iterable[np.ndarray]:
    """``steps`` batches of window indices: epochs of a seeded permutation of ``range(n)``, in
    batches of ``min(batch_size, n)``."""
    size = min(batch_size, n)
    order = np.empty(0, dtype=int)
    for _ in range(steps):
        if len(order) < size:
            order = np.concatenate([order, rng.permutation(n)])
        yield order[:size]
        order = order[size:]


def _fit(encoder: torch.nn.Module, loss: torch.nn.Module, dataset: WindowDataset,
         parameters: list[torch.nn.Parameter], steps: int, lr: float, batch_size: int,
         seed: int, train_mode: bool) -> None:
    """``steps`` Adam steps on ``parameters`` (no weight decay: a parameter with no gradient
    stays bit-identical) with the training step of the package; ``train_mode``: batch norm
    and dropout in training mode (else eval: frozen statistics)."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    step = ContrastiveStep(encoder, loss, optimizer)
    encoder.train(train_mode)
    rng = np.random.default_rng(seed)
    for indices in _batches(len(dataset), batch_size, steps, rng):
        step(_collate(dataset, indices))
    encoder.eval()


def _collate(dataset: WindowDataset, indices: Iterable[int]) -> dict[str, torch.Tensor]:
    return torch.utils.data.default_collate([dataset[int(i)] for i in indices])


def _mean_loss(encoder: torch.nn.Module, loss: torch.nn.Module, dataset: WindowDataset,
               batch_size: int) -> float:
    """The loss of ``encoder`` (eval mode) on ``dataset`` in consecutive batches of
    ``batch_size``, averaged over windows."""
    encoder.eval()
    device = next(encoder.parameters()).device
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = _collate(dataset, range(start, min(start + batch_size, len(dataset))))
            out = encoder(*(batch[k].to(device) for k in ("brain", "subject", "positions",
                                                           "mask")))
            total += float(loss(out.float(), batch["speech"].to(device))) * len(out)
    return total / len(dataset)


def _predictions(encoder: torch.nn.Module, dataset: WindowDataset,
                 batch_size: int) -> Iterable[np.ndarray]:
    """Encoder outputs ``[B, F, T]`` of the windows of ``dataset`` in order."""
    encoder.eval()
    device = next(encoder.parameters()).device
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = _collate(dataset, range(start, min(start + batch_size, len(dataset))))
            yield encoder(*(batch[k].to(device) for k in ("brain", "subject", "positions",
                                                           "mask"))).float().cpu().numpy()


def _calibrated_decoder(decoder: BrainDecoder, data: SubjectData, encoder: torch.nn.Module,
                        scalers: dict[int, RobustScaler | None],
                        result: CalibrationResult) -> BrainDecoder:
    """The decoder with the calibrated encoder and the subject's recordings added to its
    layouts and scalers; ``config.json`` lists the subject and records the calibration."""
    records = [data.table.recordings[i] for i in data.recordings]
    layouts = [*decoder.layouts, *(SensorLayout(r.uid, r.subject, list(r.ch_names), r.positions)
                                   for r in records)]
    brain = [*decoder.scalers.brain, *(scalers[i] for i in data.recordings)]
    meta = dict(decoder.metadata)
    meta["subjects"] = [*decoder.subjects, data.subject]
    meta["recordings"] = [*meta["recordings"], *(r.uid for r in records)]
    meta["calibration"] = [*meta.get("calibration", []), result.summary()]
    return BrainDecoder(decoder.experiment, encoder, layouts,
                        Scalers(brain, decoder.scalers.speech), meta)
