"""The model folder: its files, and the checks a folder passes before anything is loaded.

A model folder (written by ``braindecode-speech export`` or :meth:`BrainDecoder.save_pretrained`,
the same layout on the Hugging Face Hub) holds:

- ``config.json``: what the model was trained on and how it scored: format and package version,
  config signature, study (name, modality, data license), training subjects, recordings, speech
  features' identity, tensor sizes and the evaluation summary of the run's ``report.json``;
- ``experiment.yaml``: the resolved :class:`~braindecode_speech.experiments.ExperimentConfig`
  (``study.root`` and ``cache_dir`` cleared: they are places on the exporting machine);
- ``model.safetensors``: the brain encoder's weights;
- ``scalers.safetensors``: the robust scaler of each training recording
  (``brain.<i>.center`` / ``brain.<i>.scale`` ``[C_i]``, ``i`` its position in ``layouts.json``)
  and the speech-feature scaler (``speech.mean`` / ``speech.std`` ``[F]``), when used;
- ``layouts.json``: per training recording, its uid, subject, channel names and 2D sensor
  positions ``[C, 2]`` in [0, 1];
- ``README.md``: the model card (Hub metadata in YAML front matter, then the study, subjects,
  features, metrics with 95 % intervals, chance levels and controls, and the protocol).

Nothing in a folder is executed: JSON, YAML and safetensors only, never pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from packaging.version import InvalidVersion, Version

from .. import __version__

__all__ = ["FORMAT_VERSION", "REQUIRED_FILES", "ModelFolderError", "SharingError", "SensorLayout",
           "check_folder", "check_version", "read_json"]

#: version of the folder layout; a folder of another layout is refused
FORMAT_VERSION = 1
LIBRARY = "braindecode-speech"
CONFIG_FILE = "config.json"
EXPERIMENT_FILE = "experiment.yaml"
WEIGHTS_FILE = "model.safetensors"
SCALERS_FILE = "scalers.safetensors"
LAYOUTS_FILE = "layouts.json"
CARD_FILE = "README.md"
#: files a folder must hold to be loaded (the model card is written but not needed to decode)
REQUIRED_FILES = (CONFIG_FILE, EXPERIMENT_FILE, WEIGHTS_FILE, SCALERS_FILE, LAYOUTS_FILE)


class SharingError(RuntimeError):
    """Bad input to export or decode (a run without report, candidates without transcripts...);
    the message names the file or folder and the problem."""


class ModelFolderError(SharingError):
    """A model folder that cannot be loaded: incomplete, damaged, of another format or of an
    incompatible package version; the message names the folder and the problem."""


@dataclass
class SensorLayout:
    """The sensors of one training recording: ``positions [C, 2]`` in [0, 1], in the order of
    ``ch_names``."""

    uid: str
    subject: str
    ch_names: list[str]
    positions: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "subject": self.subject, "ch_names": list(self.ch_names),
                "positions": np.asarray(self.positions, dtype=float).round(6).tolist()}


def read_json(path: Path) -> Any:
    """The JSON content of ``path``; unreadable or invalid JSON is a :class:`ModelFolderError`
    naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"{path}: not a readable JSON file ({exc})") from None


def check_folder(folder: Path) -> dict[str, Any]:
    """Check that ``folder`` is a complete model folder of this format and of a compatible
    package version; return its ``config.json``."""
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: no such model folder")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise ModelFolderError(f"{folder}: incomplete model folder, missing {', '.join(missing)}")
    meta = read_json(folder / CONFIG_FILE)
    if not isinstance(meta, dict) or meta.get("library") != LIBRARY:
        raise ModelFolderError(f"{folder / CONFIG_FILE}: not a {LIBRARY} model folder "
                               f"(library: {meta.get('library') if isinstance(meta, dict) else None!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFolderError(f"{folder}: model folder format {meta.get('format_version')!r}, "
                               f"this version of {LIBRARY} reads format {FORMAT_VERSION}")
    check_version(folder, meta.get("package_version"))
    for key in ("subjects", "recordings", "n_channels", "n_features", "config_signature"):
        if key not in meta:
            raise ModelFolderError(f"{folder / CONFIG_FILE}: no {key!r} entry")
    return meta


def check_version(folder: Path, written_by: Any, ours: str = __version__) -> None:
    """Refuse a folder written by a package version of another major.minor than ``ours``
    (patch releases read each other's folders)."""
    try:
        theirs = Version(str(written_by))
    except InvalidVersion:
        raise ModelFolderError(f"{folder / CONFIG_FILE}: package_version {written_by!r} is not "
                               "a version number") from None
    current = Version(ours)
    if (theirs.major, theirs.minor) != (current.major, current.minor):
        raise ModelFolderError(
            f"{folder}: written by {LIBRARY} {theirs}, incompatible with this version {current} "
            f"(a folder loads in the same major.minor, {current.major}.{current.minor}.x): "
            f"install {LIBRARY}=={theirs} or export the run again")
