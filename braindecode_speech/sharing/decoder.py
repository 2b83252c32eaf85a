"""A trained brain encoder with everything it needs to decode new data, saved to and loaded
from a model folder (:mod:`~braindecode_speech.sharing.folder`) through the Hugging Face Hub's
:class:`~huggingface_hub.ModelHubMixin`.

>>> decoder = BrainDecoder.from_pretrained("models/simulated")   # or a Hub repo id
>>> candidates = decoder.study_candidates("data/simulated", "simulated")
>>> table = decoder.decode(raw, events, candidates)   # one row per window, top-k segments

Decoding goes through the package's own stages: the recording is checked and preprocessed
(:func:`~braindecode_speech.data.preprocessing.preprocess`), windows are anchored at word onsets
(:func:`~braindecode_speech.data.windows.make_windows`), normalised by
:class:`~braindecode_speech.data.dataset.WindowDataset` and scored with the evaluator's
:func:`~braindecode_speech.evaluation.retrieval.segment_scores`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd
import torch
from huggingface_hub import ModelCard, ModelHubMixin, snapshot_download
from matplotlib.figure import Figure
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_arrays
from safetensors.numpy import save_file as save_arrays
from safetensors.torch import load_file as load_tensors
from safetensors.torch import save_file as save_tensors

from ..data.cache import RowReader, default_cache_dir
from ..data.dataset import FeatureScaler, RobustScaler, Window, WindowDataset, fit_robust_scaler
from ..data.preprocessing import PreprocessedRecording, preprocess
from ..data.study import Recording
from ..data.windows import make_windows
from ..evaluation.retrieval import segment_scores
from ..experiments.config import ExperimentConfig
from ..experiments.prepare import (
    PreparedData,
    Scalers,
    build_datasets,
    check_recording,
    check_recordings,
    open_study,
    preprocess_recordings,
    split_blocks,
    window_baseline,
    window_table,
)
from ..experiments.run import test_segments
from ..features import SpeechFeatures, load_wav
from ..features.blocks import AUDIO_SFREQ
from ..models.factory import resolve_target
from .card import model_card
from .folder import (
    CARD_FILE,
    CONFIG_FILE,
    EXPERIMENT_FILE,
    LAYOUTS_FILE,
    SCALERS_FILE,
    WEIGHTS_FILE,
    ModelFolderError,
    SensorLayout,
    SharingError,
    check_folder,
    read_json,
)

__all__ = ["BrainDecoder", "Candidates", "build_encoder", "plot_decoding", "top_candidates"]

logger = logging.getLogger(__name__)


def build_encoder(config: ExperimentConfig, n_subjects: int, n_features: int,
                  n_channels: int, trust_model_code: bool = False,
                  source: str = "the config") -> torch.nn.Module:
    """The untrained brain encoder of ``config`` for a model folder: the BrainEncoder, or the
    model of ``model.target`` (one that is not registered only with ``trust_model_code``; see
    :mod:`~braindecode_speech.models.factory`)."""
    return config.model.build(n_subjects=n_subjects, n_outputs=n_features, n_channels=n_channels,
                              trust_model_code=trust_model_code, source=source)


@dataclass
class Candidates:
    """Speech segments to rank: ``ids [M]``, ``sentences [M]`` and their speech windows
    ``features [M, F, T]``, normalised as in training. ``test_windows`` (study candidates only):
    ``recording_uid`` and ``anchor`` of the study's test windows, to mark them in the output.
    ``norms``: the candidates' norms per score dtype, computed when they are first scored and
    kept (a stream scores every window against the same candidates)."""

    ids: list[str]
    sentences: list[str]
    features: np.ndarray
    test_windows: pd.DataFrame | None = None
    norms: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)


class BrainDecoder(ModelHubMixin, library_name="braindecode-speech",
                   tags=["braindecode-speech", "speech-decoding"]):
    """A trained brain encoder, its experiment config, scalers and training sensor layouts.

    Parameters
    ----------
    experiment : the resolved experiment config it was trained with.
    encoder : the trained brain encoder (built by :func:`build_encoder`).
    layouts : per training recording, its sensors.
    scalers : the robust scaler of each recording of ``layouts`` (same order) and the
        speech-feature scaler.
    metadata : the content of ``config.json`` (see :mod:`~braindecode_speech.sharing.folder`).
    """

    def __init__(self, experiment: ExperimentConfig, encoder: torch.nn.Module,
                 layouts: list[SensorLayout], scalers: Scalers, metadata: dict[str, Any]) -> None:
        self.experiment = experiment
        self.encoder = encoder.eval()
        self.layouts = layouts
        self.scalers = scalers
        self.metadata = metadata

    @property
    def subjects(self) -> list[str]:
        """Training subjects; their position is the encoder's subject index."""
        return list(self.metadata["subjects"])

    # ------------------------------------------------------------------------------------------
    # Saving and loading

    def _save_pretrained(self, save_directory: Path) -> None:
        folder = Path(save_directory)
        save_tensors({k: v.detach().cpu().contiguous() for k, v in
                      self.encoder.state_dict().items()}, str(folder / WEIGHTS_FILE))
        arrays = {}
        for i, scaler in enumerate(self.scalers.brain):
            if scaler is not None:
                arrays[f"brain.{i}.center"] = scaler.center
                arrays[f"brain.{i}.scale"] = scaler.scale
        if self.scalers.speech is not None:
            arrays["speech.mean"] = self.scalers.speech.mean
            arrays["speech.std"] = self.scalers.speech.std
        save_arrays(arrays, str(folder / SCALERS_FILE))
        self.experiment.to_yaml(folder / EXPERIMENT_FILE)
        _write_json(folder / LAYOUTS_FILE, {"recordings": [lay.to_dict() for lay in self.layouts]})
        _write_json(folder / CONFIG_FILE, self.metadata)
        self.generate_model_card().save(folder / CARD_FILE)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The model card: metadata, study, subjects, features, metrics, controls, protocol."""
        return model_card(self.metadata, self.experiment)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path,  # type: ignore[override]
                        trust_model_code: bool = False, **kwargs: Any) -> BrainDecoder:
        """Load the model folder at ``pretrained_model_name_or_path`` (a local folder, or a Hub
        repo id, downloaded through ``huggingface_hub``). A folder that is incomplete, damaged
        or from an incompatible package version is a :class:`ModelFolderError`; one whose
        ``model.target`` is not a registered model is refused unless ``trust_model_code``
        (:mod:`~braindecode_speech.models.factory`)."""
        name = str(pretrained_model_name_or_path)
        if os.path.isdir(name):
            check_folder(Path(name))  # before the mixin reads its config.json unchecked
        elif _local_path(name):
            raise ModelFolderError(f"{name}: no such model folder (nor a Hub repo id, "
                                   "'owner/name')")
        return super().from_pretrained(name, trust_model_code=trust_model_code, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None,
                         cache_dir: str | Path | None, force_download: bool,
                         local_files_only: bool, token: str | bool | None,
                         trust_model_code: bool = False, **model_kwargs: Any) -> BrainDecoder:
        folder = Path(model_id)
        if not folder.is_dir():
            folder = Path(snapshot_download(repo_id=model_id, revision=revision,
                                            cache_dir=cache_dir, force_download=force_download,
                                            local_files_only=local_files_only, token=token))
        return cls.load(folder, trust_model_code)

    @classmethod
    def load(cls, folder: str | Path, trust_model_code: bool = False) -> BrainDecoder:
        """Load a local model folder after checking it (every required file, format and
        package version): :class:`ModelFolderError` naming the folder or file otherwise. A
        ``model.target`` that is not a registered model is refused, before anything else is
        read, unless ``trust_model_code``."""
        folder = Path(folder)
        meta = check_folder(folder)
        experiment = ExperimentConfig.from_yaml(folder / EXPERIMENT_FILE)
        source = str(folder / EXPERIMENT_FILE)
        if experiment.model.target is not None:
            resolve_target(experiment.model.target, trust_model_code, source)
        if experiment.signature() != meta["config_signature"]:
            raise ModelFolderError(f"{folder / EXPERIMENT_FILE}: config signature "
                                   f"{experiment.signature()}, but {CONFIG_FILE} was written for "
                                   f"{meta['config_signature']}")
        layouts = [SensorLayout(r["uid"], r["subject"], list(r["ch_names"]),
                                np.asarray(r["positions"], dtype=np.float32))
                   for r in _entries(folder / LAYOUTS_FILE)]
        path = folder / SCALERS_FILE
        arrays = _safetensors(path, load_arrays)
        brain = [RobustScaler(*(_array(arrays, f"brain.{i}.{name}", len(lay.ch_names), path)
                                for name in ("center", "scale")))
                 if experiment.norm.robust_scale else None for i, lay in enumerate(layouts)]
        speech = FeatureScaler(*(_array(arrays, f"speech.{name}", meta["n_features"], path)
                                 for name in ("mean", "std"))) \
            if experiment.norm.standardize_features else None
        encoder = build_encoder(experiment, len(meta["subjects"]), meta["n_features"],
                                meta["n_channels"], trust_model_code, source)
        weights = _safetensors(folder / WEIGHTS_FILE, load_tensors)
        try:
            encoder.load_state_dict(weights)
        except RuntimeError as exc:
            problem = str(exc).splitlines()[1:2] or [str(exc)]
            raise ModelFolderError(f"{folder / WEIGHTS_FILE}: the weights do not fit the "
                                   f"encoder of {EXPERIMENT_FILE} ({problem[0].strip()})") from None
        return cls(experiment, encoder, layouts, Scalers(brain, speech), meta)

    # ------------------------------------------------------------------------------------------
    # Candidates

    def study_candidates(self, root: str | Path, study: str | None = None) -> Candidates:
        """The distinct test segments of the study ``study`` (default: the one the model was
        trained on) at ``root``: the candidates of the evaluation, split and windowed by the
        package's stages with the model's config and normalised with its speech scaler."""
        config = self.study_config(root, study)
        cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        recordings, skipped = check_recordings(config, open_study(config))
        prepared = preprocess_recordings(config, recordings, cache_dir, skipped)
        blocks = split_blocks([(r.uid, r.events, r.duration) for r in prepared], config.splits)
        features = self.speech_features()
        table = window_table(config, prepared, blocks, features, cache_dir, skipped)
        datasets = build_datasets(config, table, Scalers([None] * len(table.recordings),
                                                         self.scalers.speech))
        data = PreparedData(recordings=table.recordings, windows=table.windows,
                            datasets=datasets, subjects=table.subjects,
                            n_features=features.dimension, audit=blocks.audit, skipped=skipped)
        speech, first, sentences = test_segments(data)
        test = table.windows.loc[table.windows["split"] == "test", ["recording_uid", "anchor"]]
        return Candidates(first["segment"].astype(str).tolist(), sentences, speech,
                          test.reset_index(drop=True))

    def folder_candidates(self, folder: str | Path) -> Candidates:
        """Candidates from a folder of ``<id>.wav`` files, each with its transcript
        ``<id>.txt``: the speech window of each is its first ``windows.tmax`` s, after
        ``-windows.tmin`` s of silence (as a study's segment anchored at its first word)."""
        folder = Path(folder)
        wavs = sorted(folder.glob("*.wav")) if folder.is_dir() else []
        if not wavs:
            raise SharingError(f"{folder}: no .wav file (a candidates folder holds <id>.wav "
                               "files and their <id>.txt transcripts)")
        missing = [w.with_suffix(".txt").name for w in wavs if not w.with_suffix(".txt").is_file()]
        if missing:
            raise SharingError(f"{folder}: no transcript for {len(missing)} sound files: "
                               f"{', '.join(missing[:5])}")
        features = self.speech_features()
        windows = self.experiment.windows
        sfreq = self.experiment.preprocess.sfreq
        n_times = windows.n_times(sfreq)
        n_samples = int(round(n_times / sfreq * AUDIO_SFREQ))
        lead = int(round(-windows.tmin * AUDIO_SFREQ))
        out = np.empty((len(wavs), features.dimension, n_times), dtype=np.float32)
        for i, wav in enumerate(wavs):
            audio = np.zeros(n_samples, dtype=np.float32)
            sound = load_wav(wav, sfreq=AUDIO_SFREQ)[:max(0, n_samples - lead)]
            audio[lead:lead + len(sound)] = sound
            frames = features(audio, AUDIO_SFREQ)
            out[i] = self.scalers.speech(frames) if self.scalers.speech is not None else frames
        sentences = [" ".join(w.with_suffix(".txt").read_text(encoding="utf-8").split())
                     for w in wavs]
        return Candidates([w.stem for w in wavs], sentences, out)

    # ------------------------------------------------------------------------------------------
    # Calibration

    def calibrate(self, root: str | Path, study: str | None, subject: str,
                  minutes: float | None, **kwargs: Any) -> tuple[BrainDecoder, Any]:
        """This model calibrated to ``subject`` (not a training subject) of the study ``study``
        at ``root`` on the first ``minutes`` of its training blocks (None: all): the calibrated
        decoder and its :class:`~braindecode_speech.sharing.calibration.CalibrationResult`;
        options of :func:`~braindecode_speech.sharing.calibration.calibrate`."""
        from .calibration import calibrate

        return calibrate(self, root, study, subject, minutes, **kwargs)

    # ------------------------------------------------------------------------------------------
    # Decoding

    def decode(self, raw: mne.io.BaseRaw | Recording, events: pd.DataFrame | None,
               candidates: Candidates, subject: str | None = None, top_k: int = 10,
               step: float | None = None) -> pd.DataFrame:
        """Rank ``candidates`` for every window of a recording.

        Parameters
        ----------
        raw : the M/EEG recording (an ``mne.io.BaseRaw``, or a study's :class:`Recording`,
            whose events and subject are its own).
        events : its events table (schema of :mod:`braindecode_speech.data.events`); the
            windows are anchored at its word onsets. None for a :class:`Recording`.
        candidates : from :meth:`study_candidates` or :meth:`folder_candidates`.
        subject : the subject's id; a training subject uses its own subject layer, any other
            the mean layer. Ignored for a :class:`Recording`.
        top_k : best candidates listed per window.
        step : anchor windows every ``step`` s instead of at word onsets.

        Returns one row per window: ``anchor`` (s on the recording's clock, the window's word
        onset), ``window_start`` (s, first sample of the brain window), ``subject``,
        ``recording``, the heard ``word`` and ``segment`` (word anchors), ``test_window`` (study
        candidates: whether the study's evaluation held it out), ``rank`` (of the heard segment
        among the candidates, 1 = best; empty when it is not one of them), then ``top{j}_id``,
        ``top{j}_sentence`` and ``top{j}_score`` for j = 1..top_k.

        A recording the model was trained on is scaled with its training scaler; any other with
        a robust scaler fitted on its own windows.
        """
        if top_k < 1 or (step is not None and not step > 0):
            raise SharingError(f"top_k must be at least 1 and step positive, got top_k={top_k}, "
                               f"step={step}")
        if isinstance(raw, Recording):
            with self._preprocessed(raw, temporary=False) as prepared:
                return self._decode(prepared, candidates, top_k, step)
        if events is None:
            raise SharingError("decode(raw, events, candidates): events are needed to anchor "
                               "the windows of a raw recording")
        name = Path(raw.filenames[0]) if raw.filenames and raw.filenames[0] else Path("raw")
        recording = Recording(study="decoded", subject=str(subject or "unknown"), session=None,
                              task=None, run=None, path=name, load_raw=lambda: raw,
                              load_events=lambda: events)
        with self._preprocessed(recording, temporary=True) as prepared:
            return self._decode(prepared, candidates, top_k, step)

    def decode_study(self, root: str | Path, study: str | None = None,
                     subject: str | None = None, candidates: Candidates | None = None,
                     top_k: int = 10, step: float | None = None) -> pd.DataFrame:
        """:meth:`decode` on every recording of ``study`` at ``root`` (of ``subject`` only, when
        given), ranking ``candidates`` (default: the study's test segments); rows of the
        recordings one after the other."""
        if candidates is None:
            candidates = self.study_candidates(root, study)
        config = self.study_config(root, study)
        if subject is not None:
            config = config.with_overrides({"study.subjects": [str(subject)]})
        tables = [self.decode(rec, None, candidates, top_k=top_k, step=step)
                  for rec in open_study(config).recordings()]
        return pd.concat(tables, ignore_index=True)

    def _decode(self, prepared: PreprocessedRecording, candidates: Candidates, top_k: int,
                step: float | None) -> pd.DataFrame:
        config = self.experiment
        sfreq = config.preprocess.sfreq
        n_times = config.windows.n_times(sfreq)
        windows = self._windows(prepared, step)
        if windows.empty:
            raise SharingError(f"{prepared.recording.path}: no complete window (anchored at "
                               f"{'word onsets' if step is None else f'every {step:g} s'})")
        subject = self.subjects.index(prepared.subject) \
            if prepared.subject in self.subjects else -1
        if subject < 0:
            logger.info("%s: subject %s was not in training: the mean subject layer is used",
                        prepared.uid, prepared.subject)
        baseline, offset = window_baseline(config)
        reader = RowReader(prepared.samples)
        scaler = self._brain_scaler(prepared, reader, windows["brain_start"].to_numpy())
        items = [Window(0, int(s), 0, 0, subject) for s in windows["brain_start"]]
        dataset = WindowDataset([reader], [prepared.positions], [], items, [scaler], None,
                                len(prepared.ch_names), n_times, baseline, config.norm.clamp,
                                offset)
        k = min(top_k, len(candidates))
        ids = np.asarray(candidates.ids, dtype=object)
        position = {c: i for i, c in enumerate(candidates.ids)}
        target = np.array([position.get(s, -1) if isinstance(s, str) else -1
                           for s in windows["segment"]])
        best, best_scores, ranks = [], [], []
        for start in range(0, len(items), config.evaluation.batch_size):
            rows = range(start, min(start + config.evaluation.batch_size, len(items)))
            scores = self.score([dataset.brain_window(i) for i in rows], prepared.positions,
                                subject, candidates)
            order, top = top_candidates(scores, k)
            best.append(order)
            best_scores.append(top)
            t = target[list(rows)]
            own = scores[np.arange(len(t)), np.maximum(t, 0)]
            ranks.append(np.where(t >= 0, (scores > own[:, None]).sum(axis=1) + 1, -1))
        best_index, score, rank = (np.concatenate(best), np.concatenate(best_scores),
                                   np.concatenate(ranks))
        out = pd.DataFrame({
            "anchor": windows["anchor"].to_numpy(),
            "window_start": windows["brain_start"].to_numpy() / sfreq,
            "subject": prepared.subject,
            "recording": prepared.uid,
            "word": windows["word"].to_numpy(),
            "segment": windows["segment"].to_numpy(),
        })
        if candidates.test_windows is not None:
            test = candidates.test_windows
            held = set(zip(test["recording_uid"], np.round(test["anchor"].to_numpy(), 6)))
            out["test_window"] = [(prepared.uid, a) in held
                                  for a in np.round(out["anchor"].to_numpy(), 6)]
        out["rank"] = pd.array(np.where(rank > 0, rank, 0), dtype="Int64")
        out.loc[rank < 0, "rank"] = pd.NA
        sentences = np.asarray(candidates.sentences, dtype=object)
        for j in range(k):
            out[f"top{j + 1}_id"] = ids[best_index[:, j]]
            out[f"top{j + 1}_sentence"] = sentences[best_index[:, j]]
            out[f"top{j + 1}_score"] = score[:, j]
        return out

    def score(self, brains: list[np.ndarray], positions: np.ndarray, subject: int,
              candidates: Candidates) -> np.ndarray:
        """The scores ``[N, M]`` of the evaluator, ``<Z, Y / ||Y||>``, of normalised brain
        windows ``[C_r, T]`` of one sensor layout (``positions [C_r, 2]``) against the
        candidates; ``subject``: the encoder's subject index (-1: the mean subject layer)."""
        dtype = self.experiment.evaluation.dtype
        return segment_scores(self._predict(brains, positions, subject), candidates.features,
                              dtype, candidates.norms.setdefault(dtype, {}))

    def _predict(self, brains: list[np.ndarray], positions: np.ndarray,
                 subject: int) -> torch.Tensor:
        """Encoder outputs ``[B, F, T]`` of brain windows ``[C_r, T]`` padded to the training
        sensor count, as the training datasets pad them."""
        n_channels, n_times = brains[0].shape
        width = max(self.metadata["n_channels"], n_channels)
        x = torch.zeros(len(brains), width, n_times)
        x[:, :n_channels] = torch.from_numpy(np.stack(brains))
        pos = torch.zeros(len(brains), width, 2)
        pos[:, :n_channels] = torch.from_numpy(positions)
        mask = torch.zeros(len(brains), width, dtype=torch.bool)
        mask[:, :n_channels] = True
        device = next(self.encoder.parameters()).device
        with torch.no_grad():
            z = self.encoder(x.to(device), torch.full((len(brains),), subject, device=device),
                             pos.to(device), mask.to(device))
        return z.float().cpu()

    def _windows(self, prepared: PreprocessedRecording, step: float | None) -> pd.DataFrame:
        """Windows of the whole recording, one block from its start to its end."""
        config = self.experiment
        geometry = config.windows.model_copy(update={"test_anchor": "word"}) if step is None \
            else config.windows.model_copy(update={"test_anchor": "stride", "stride": step})
        block = pd.DataFrame({"start": [0.0], "stop": [prepared.duration], "split": ["test"]})
        return make_windows(block, prepared.events, geometry, config.preprocess.sfreq,
                            prepared.n_times)

    def _brain_scaler(self, prepared: PreprocessedRecording, reader: RowReader,
                      starts: np.ndarray) -> RobustScaler | None:
        """The training scaler of a training recording; a scaler fitted on the recording's own
        windows for any other (None: robust scaling off)."""
        config = self.experiment
        if not config.norm.robust_scale:
            return None
        for layout, scaler in zip(self.layouts, self.scalers.brain):
            if layout.uid == prepared.uid:
                if list(layout.ch_names) != list(prepared.ch_names):
                    raise SharingError(f"{prepared.recording.path}: its channels differ from "
                                       f"those of {layout.uid} the model was trained on")
                return scaler
        baseline, offset = window_baseline(config)
        return fit_robust_scaler([(reader, starts)], config.windows.n_times(
            config.preprocess.sfreq), baseline, config.norm.n_scaling_windows,
            np.random.default_rng(config.optim.seed), offset)

    @contextmanager
    def _preprocessed(self, recording: Recording,
                      temporary: bool) -> Iterator[PreprocessedRecording]:
        """``recording`` checked and preprocessed with the model's settings, in the package's
        cache, or (``temporary``: an in-memory raw, which no file identifies) in a temporary
        one."""
        check_recording(recording, self.experiment)
        if not temporary:
            cache = Path(self.experiment.cache_dir) if self.experiment.cache_dir \
                else default_cache_dir()
            yield preprocess(recording, self.experiment.preprocess, cache)
            return
        with tempfile.TemporaryDirectory(prefix="braindecode_speech_decode_") as cache:
            yield preprocess(recording, self.experiment.preprocess, cache)

    def study_config(self, root: str | Path, study: str | None) -> ExperimentConfig:
        """The model's config on the study ``study`` (default: its own) at ``root``."""
        name = study or self.experiment.study.name
        options = self.experiment.study.options if name == self.experiment.study.name else {}
        return self.experiment.with_overrides({"study.name": name, "study.root": str(root),
                                               "study.subjects": None, "study.options": options})

    def speech_features(self) -> SpeechFeatures:
        """The speech-feature extractor, checked against the one the model was trained with."""
        features = self.experiment.features.build(self.experiment.preprocess.sfreq)
        trained = self.metadata["features"]["signature"]
        if features.signature() != trained:
            raise SharingError(f"the speech features {self.experiment.features.name!r} of this "
                               f"package have signature {features.signature()}, the model was "
                               f"trained with {trained}: its candidates would not match")
        return features


def top_candidates(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best candidates of each row of ``scores [N, M]``, best first (ties: the first
    candidate): their indices and scores, ``[N, k]`` each."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def _write_json(path: Path, content: Any) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def _local_path(name: str) -> bool:
    """Whether ``name``, which is not a folder, must be meant as a local path rather than as a
    Hub repo id (``owner/name``)."""
    parent = os.path.dirname(name)
    return (os.path.exists(name) or os.path.isabs(name) or name.startswith((".", "~"))
            or name.count("/") != 1 or bool(parent) and os.path.isdir(parent))


def _entries(path: Path) -> list[dict[str, Any]]:
    content = read_json(path)
    entries = content.get("recordings") if isinstance(content, dict) else None
    if not isinstance(entries, list):
        raise ModelFolderError(f"{path}: no 'recordings' list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or {"uid", "subject", "ch_names", "positions"} - set(entry):
            raise ModelFolderError(f"{path}: recording {i} lacks uid, subject, ch_names or "
                                   "positions")
    return entries


def _array(arrays: dict[str, np.ndarray], key: str, size: int, path: Path) -> np.ndarray:
    """``arrays[key]``, checked to be of shape ``[size]``."""
    if key not in arrays:
        raise ModelFolderError(f"{path}: no {key!r} array")
    if arrays[key].shape != (size,):
        raise ModelFolderError(f"{path}: {key!r} has shape {arrays[key].shape}, expected "
                               f"({size},)")
    return arrays[key]


def _safetensors(path: Path, load: Any) -> dict[str, Any]:
    try:
        return load(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFolderError(f"{path}: not a readable safetensors file ({exc})") from None



def plot_decoding(table: pd.DataFrame, n_candidates: int) -> Figure:
    """The figure of a :meth:`BrainDecoder.decode` table: per recording, the rank of the heard
    segment against the window's anchor time (or, when no window's segment is a candidate, the
    best candidate's score), and the top-k accuracy against k with chance ``k / M``."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    over_time, curve = figure.subplots(1, 2, width_ratios=[2, 1])
    ranked = table["rank"].notna()
    column = "rank" if ranked.any() else "top1_score"
    for uid, part in table.groupby("recording", sort=False):
        over_time.plot(part["anchor"], part[column].astype(float), ".", ms=4, label=uid)
    over_time.set_xlabel("anchor time in the recording (s)")
    if ranked.any():
        over_time.set_yscale("log")
        over_time.invert_yaxis()
        over_time.set_ylabel(f"rank of the heard segment (1 = best, of {n_candidates})")
        k = np.arange(1, n_candidates + 1)
        groups = {"all windows": table.loc[ranked, "rank"]}
        if "test_window" in table:
            groups["test windows"] = table.loc[ranked & table["test_window"], "rank"]
        for name, ranks in groups.items():
            if len(ranks):
                ranks = ranks.to_numpy(dtype=int)
                curve.plot(k, (ranks[:, None] <= k).mean(axis=0), label=f"{name} ({len(ranks)})")
        curve.plot(k, k / n_candidates, "k--", lw=1, label="chance (k / M)")
        curve.set_xlabel("k")
        curve.set_ylabel("top-k accuracy")
        curve.legend(fontsize=7)
    else:
        over_time.set_ylabel("score of the best candidate")
        curve.hist(table["top1_score"], bins=30)
        curve.set_xlabel("score of the best candidate")
        curve.set_ylabel("windows")
    if table["recording"].nunique() <= 8:
        over_time.legend(fontsize=7)
    return figure
