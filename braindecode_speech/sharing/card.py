"""The model card (``README.md``) of a model folder, generated from its ``config.json`` and
experiment config: Hub metadata in YAML front matter, then what the model was trained on, how it
scored (with 95 % intervals, chance levels and controls) and the protocol."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from ..experiments.config import ExperimentConfig

__all__ = ["model_card", "hub_license"]

#: data licenses as the studies state them -> Hub license identifiers
_HUB_LICENSES = {"cc0": "cc0-1.0", "cc0-1.0": "cc0-1.0", "pddl": "pddl",
                 "cc-by-4.0": "cc-by-4.0", "cc by 4.0": "cc-by-4.0", "cc-by 4.0": "cc-by-4.0",
                 "cc-by-sa-4.0": "cc-by-sa-4.0", "cc by-sa 4.0": "cc-by-sa-4.0",
                 "cc-by-nc-4.0": "cc-by-nc-4.0", "cc by-nc 4.0": "cc-by-nc-4.0"}
_LANGUAGES = {"english": "en", "dutch": "nl", "french": "fr", "german": "de"}


def hub_license(name: str | None) -> tuple[str, str | None]:
    """The Hub ``license`` identifier of a data license as written by a study (``"CC0"``), and
    the ``license_name`` to give beside ``license: other`` when it has none."""
    if name and name.strip().lower() in _HUB_LICENSES:
        return _HUB_LICENSES[name.strip().lower()], None
    return "other", (name or "unknown: see the terms of the study's data")


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _metrics_table(evaluation: dict[str, Any]) -> list[str]:
    """The brain encoder's top-k accuracies with their intervals, and the chance levels."""
    topk = evaluation["topk"]
    lines = ["| | level | " + " | ".join(f"top-{k} % (95 % CI)" for k in topk) + " |",
             "|---|---|" + "---|" * len(topk)]
    for level, values in evaluation["metrics"].items():
        ci = evaluation["ci"][level]
        cells = [f"{_pct(values[f'top{k}'])} ({_pct(ci[f'top{k}'][0])}–{_pct(ci[f'top{k}'][1])})"
                 for k in topk]
        lines.append(f"| brain encoder | {level} | " + " | ".join(cells) + " |")
    chance = evaluation["chance"]
    for name, label in (("segment", "segment (k / M)"), ("word_shuffled", "word (shuffled)"),
                        ("word_frequency_baseline", "word (frequency only)")):
        lines.append(f"| chance | {label} | "
                     + " | ".join(_pct(chance[name][f"top{k}"]) for k in topk) + " |")
    return lines


def _controls_table(evaluation: dict[str, Any]) -> list[str]:
    k = evaluation["topk"][-1]
    controls = evaluation.get("controls", {})
    rows = [(name, control) for name, control in controls.items()
            if isinstance(control, dict) and "accuracy" in control]
    if not rows:
        return ["No controls were computed (evaluation.controls was off)."]
    lines = [f"| control (brain encoder, segment level) | top-{k} % | 95 % CI | chance % |",
             "|---|---|---|---|"]
    for name, control in rows:
        low, high = control["ci"][f"top{k}"]
        lines.append(f"| {name} | {_pct(control['accuracy'][f'top{k}'])} | {_pct(low)}–"
                     f"{_pct(high)} | {_pct(control['chance'][f'top{k}'])} |")
    for group, ceiling in controls.get("identity_ceiling", {}).items():
        lines.append(f"| identity ceiling ({group}) | {_pct(ceiling[f'top{k}'])} | – | – |")
    return lines


def _calibration_lines(calibrations: list[dict[str, Any]]) -> list[str]:
    """One line per subject added by ``braindecode-speech calibrate``."""
    return [f"- Calibrated subject {c['subject']} (not trained on; its subject layer"
            f"{' and the spatial attention' if c['spatial'] else ''} fitted on "
            f"{c['seconds'] / 60:.1f} min of its training blocks, {c['n_windows']} windows): "
            f"segment top-10 on its {c['n_test_windows']} test windows "
            f"{_pct(c['before.segment.top10'])} % with the mean subject layer, "
            f"{_pct(c['after.segment.top10'])} % calibrated."
            for c in calibrations if "before.segment.top10" in c]


def model_card(meta: dict[str, Any], config: ExperimentConfig) -> ModelCard:
    """The model card of a folder with ``config.json`` content ``meta`` and experiment
    ``config``."""
    study = meta["study"]
    license_id, license_name = hub_license(study.get("license"))
    features = meta["features"]
    tags = ["braindecode-speech", "speech-decoding", "brain-to-speech", study["modality"],
            f"study:{study['name']}", f"features:{features['name']}"]
    data = ModelCardData(library_name="braindecode-speech", license=license_id,
                         license_name=license_name, tags=tags,
                         language=_LANGUAGES.get(study.get("language", "")))
    evaluation = meta["evaluation"]
    windows, norm = config.windows, config.norm
    subjects = meta["subjects"]
    calibrated = {c["subject"] for c in meta.get("calibration", [])}
    trained = [s for s in subjects if s not in calibrated]
    per_split = evaluation.get("windows_per_split", {})
    body = [
        f"# Brain encoder: {study['name']} ({study['modality'].upper()}), "
        f"{len(subjects)} subjects",
        "",
        f"Decodes which speech segment a listener heard from {windows.tmax - windows.tmin:g} s "
        f"of {study['modality'].upper()}, trained with braindecode-speech "
        f"{meta['package_version']} (a reproduction of Défossez et al. 2023, \"Decoding speech "
        "perception from non-invasive brain recordings\"). Config signature "
        f"`{meta['config_signature']}`.",
        "",
        "## Study",
        "",
        f"- Study: `{study['name']}`; data license: {study.get('license') or 'unknown'}.",
        f"- Training subjects ({len(trained)}): {', '.join(trained)}; "
        f"{len(meta['recordings'])} recordings (their sensor layouts are in `layouts.json`).",
        *_calibration_lines(meta.get("calibration", [])),
        "- Windows per split: " + ", ".join(f"{k} {v}" for k, v in sorted(per_split.items()))
        + f"; split leak audit: {'passed' if evaluation.get('split_audit_ok') else 'FAILED'}.",
        "",
        "## Features",
        "",
        f"- Speech: `{features['name']}` features, F = {features['dimension']}, at "
        f"{config.preprocess.sfreq:g} Hz (extractor signature `{features['signature']}`; "
        f"settings in `experiment.yaml` under `features.{features['name']}`).",
        f"- Brain: data channels resampled to {config.preprocess.sfreq:g} Hz; windows "
        f"[{windows.tmin:g}, {windows.tmax:g}] s around each word onset, the brain "
        f"{windows.brain_lag:g} s later; baseline {'on' if norm.baseline else 'off'}, robust "
        f"scaling {'on' if norm.robust_scale else 'off'}, clamp "
        f"{norm.clamp if norm.clamp is not None else 'off'}.",
        "",
        "## Results",
        "",
        f"Top-k retrieval of the heard segment among the {evaluation['n_candidates']} distinct "
        f"test segments ({evaluation['n_windows']} test windows; segment level, and word level "
        "with probabilities summed per word); 95 % percentile bootstrap intervals over test "
        "windows. `model` is this brain encoder, `ridge` the linear baseline trained beside it.",
        "",
        *_metrics_table(evaluation),
        "",
        "### Controls",
        "",
        *_controls_table(evaluation),
        "",
        "## Protocol",
        "",
        "Sentences are grouped into blocks split into train / valid / test so that no sentence, "
        "and no stretch of sound, is in two splits (identical sentences share a split across "
        "subjects). Scalers are fitted on training windows only. Each test window is decoded "
        "into speech features and scored against every candidate, "
        "`S = <Z, Y / ||Y||>` (the CLIP loss's score).",
        "",
        "## Use",
        "",
        "```python",
        "from braindecode_speech.sharing import BrainDecoder",
        "",
        "decoder = BrainDecoder.from_pretrained(\"path/or/repo-id\")",
        "candidates = decoder.study_candidates(\"path/to/study\", \"" + study["name"] + "\")",
        "table = decoder.decode(raw, events, candidates)  # one row per window, top-k segments",
        "```",
        "",
        "```",
        f"braindecode-speech decode --model path/or/repo-id --data path/to/study --study "
        f"{study['name']} --out decoded.csv",
        "```",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))
