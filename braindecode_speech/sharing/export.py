"""Export a trained run folder into a self-contained model folder
(:mod:`~braindecode_speech.sharing.folder`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .. import __version__
from ..evaluation.report import ReportError, read_report
from ..experiments.config import ExperimentConfig
from ..experiments.prepare import PreparedData, Scalers, open_study, prepare_data
from ..experiments.run import load_weights
from ..models.factory import resolve_target
from .decoder import BrainDecoder, build_encoder
from .folder import FORMAT_VERSION, LIBRARY, SensorLayout, SharingError

__all__ = ["export_run"]

logger = logging.getLogger(__name__)

#: entries of the run's report.json (beyond its schema's) that export needs
_REPORT_ENTRIES = ("windows_per_split", "split_audit", "subjects", "config_signature")


def export_run(run: str | Path, out: str | Path, data: str | Path | None = None,
               trust_model_code: bool = False) -> BrainDecoder:
    """Write the model folder of the trained run in ``run`` to ``out`` (a new or empty folder)
    and return the :class:`BrainDecoder`. The run's ``model.target``, when not a registered
    model, is built only with ``trust_model_code`` (:mod:`~braindecode_speech.models.factory`).

    The best weights and the config come from the run folder (``best.pt``, ``config.yaml``), the
    metrics from its ``report.json``; the scalers, sensor layouts and subjects are rebuilt from
    the study (at the run's ``study.root``, or ``data``) by the same seeded stages as in
    training, and checked against the report's subjects.
    """
    run, out = Path(run), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SharingError(f"{out}: already exists and is not an empty folder; export writes a "
                           "new model folder")
    config, weights = load_weights(run)
    source = str(run / "config.yaml")
    if config.task.name != "retrieval":
        raise SharingError(f"{source}: a {config.task.name} run; a model folder ranks speech "
                           "segments (decode, calibrate, stream), so only retrieval runs are "
                           "exported")
    if config.model.target is not None:
        resolve_target(config.model.target, trust_model_code, source)
    if data is not None:
        config = config.with_overrides({"study.root": str(data)})
    report = _report(run, config)
    study = open_study(config)
    prepared = prepare_data(config)
    if prepared.subjects != report["subjects"]:
        raise SharingError(f"{config.study.root}: the study gives training subjects "
                           f"{prepared.subjects}, the run in {run} was trained on "
                           f"{report['subjects']}: is it the same copy of the study?")
    train = prepared.datasets["train"]
    encoder = build_encoder(config, len(prepared.subjects), prepared.n_features,
                            train.n_channels, trust_model_code, source)
    encoder.load_state_dict(weights)
    meta = _metadata(config, prepared, report, {
        "name": config.study.name, "modality": study.modality, "language": study.language,
        "license": _data_license(Path(str(config.study.root)))})
    layouts = [SensorLayout(r.uid, r.subject, list(r.ch_names), r.positions)
               for r in prepared.recordings]
    shared = config.with_overrides({"study.root": None, "cache_dir": None})
    decoder = BrainDecoder(shared, encoder, layouts, Scalers(train.scalers, train.feature_scaler),
                           meta)
    decoder.save_pretrained(out)
    logger.info("Exported %s to %s", run, out)
    return decoder


def _report(run: Path, config: ExperimentConfig) -> dict[str, Any]:
    """The run's report.json (:func:`~braindecode_speech.evaluation.report.read_report`),
    checked to be of ``config`` and to hold the brain encoder's results."""
    path = run / "report.json"
    if not path.is_file():
        raise SharingError(f"{path}: no report; evaluate the run first "
                           f"(braindecode-speech evaluate --run {run})")
    try:
        report = read_report(path)
    except ReportError as exc:
        raise SharingError(str(exc)) from None
    missing = [k for k in _REPORT_ENTRIES if k not in report]
    if missing or "model" not in report["metrics"]:
        raise SharingError(f"{path}: no {', '.join(missing) or 'model results'}; evaluate the "
                           f"run again (braindecode-speech evaluate --run {run})")
    if report["config_signature"] != config.signature():
        raise SharingError(f"{path} was written for config {report['config_signature']}, the "
                           f"run's config.yaml is {config.signature()}: evaluate the run again")
    return report


def _metadata(config: ExperimentConfig, prepared: PreparedData, report: dict[str, Any],
              study: dict[str, Any]) -> dict[str, Any]:
    """The content of the model folder's config.json."""
    features = config.features.build(config.preprocess.sfreq)
    evaluation = {k: report[k] for k in ("n_candidates", "n_words", "topk", "windows_per_split")}
    # the brain encoder's results; the ridge baseline's stay in the run's report
    evaluation.update({k: report[k]["model"] for k in ("metrics", "ci", "chance", "per_subject",
                                                        "n_windows")})
    evaluation.update(controls=report["controls"].get("model", {}),
                      split_audit_ok=bool(report["split_audit"].get("ok")))
    return {
        "library": LIBRARY,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "config_signature": config.signature(),
        "study": study,
        "subjects": list(prepared.subjects),
        "recordings": [r.uid for r in prepared.recordings],
        "n_channels": int(prepared.datasets["train"].n_channels),
        "n_features": int(prepared.n_features),
        "features": {"name": config.features.name, "signature": features.signature(),
                     "dimension": int(features.dimension), "sfreq": float(features.sfreq),
                     "settings": config.features.backend.to_dict()},
        "evaluation": evaluation,
    }


def _data_license(root: Path) -> str | None:
    """The ``License`` of the study's BIDS ``dataset_description.json`` (None if it has none)."""
    path = root / "dataset_description.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("License")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return str(value) if value else None
