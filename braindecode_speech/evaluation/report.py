"""Write the results of retrieval evaluations: ``report.json``, tables and figures.

:func:`write_report` takes one :class:`~braindecode_speech.evaluation.retrieval.RetrievalResult` per model
(the pipeline names them ``model`` for the brain encoder and ``ridge`` for the linear baseline)
and writes into ``folder``:

- ``report.json`` (schema below),
- ``per_subject.csv``: one row per model × subject (``model``, ``subject``, ``n_windows``,
  ``{segment,word}_top{k}`` and their ``_ci_low`` / ``_ci_high``),
- ``per_window_<model>.csv``: the per-window table of each model (ranks, hits, best candidates),
- ``accuracy_per_subject.png``: top-k accuracy per subject (largest k), bars per model with
  bootstrap 95 % intervals and the chance level,
- ``decoded_examples.png`` (when the candidates' sentences are given): randomly drawn test windows
  (seeded, not selected on accuracy) of the first model, each with the heard sentence (anchor word
  highlighted) and the sentences of its 5 best-scored candidates (correct one in green).

Schema of ``report.json`` (``schema_version`` 2): the fields shared by every model
(:data:`SHARED_FIELDS`) at the top level, then each other field of
:meth:`RetrievalResult.to_dict <braindecode_speech.evaluation.retrieval.RetrievalResult.to_dict>`
(:data:`MODEL_FIELDS`) keyed by model name, so ``report[field][model]`` is
``results[model].to_dict()[field]``. :func:`read_report` reads it back (refusing other versions)
and :func:`read_results` rebuilds the :class:`RetrievalResult` of every model. Every accuracy is a
fraction in [0, 1]::

    {
      "schema_version": 2,
      "n_candidates": 1284,        # M, distinct test segments (the same for every model)
      "n_words": 846,              # W, distinct anchor words among the candidates
      "topk": [1, 5, 10],
      "n_windows": {"model": 5231, "ridge": 5231},
      "metrics": {"model": {"segment": {"top1": .., "top5": .., "top10": ..},
                            "word": {"top1": .., "top5": .., "top10": ..}}, "ridge": {...}},
      "ci": {"model": {"segment": {"top1": [low, high], ...}, "word": {...}}, ...},
      "chance": {"model": {
        "segment": {"top1": .., ...},                  # k / M
        "word_shuffled": {"top1": .., ...},            # word level: predictions shuffled
        "word_frequency_baseline": {"top1": .., ...}   # ranking words by frequency alone
      }, ...},
      "per_subject": {"model": {"<subject>": {"n_windows": 190, "segment": {...},
                                              "word": {...}, "ci": {"segment": {...},
                                                                    "word": {...}}}, ...}, ...},
      "controls": {                # per model; {} when evaluation.controls is off
        "model": {
          "within_recording": {    # ranked among the test segments of its own recording
            "accuracy": {"top1": .., ...}, "ci": {"top1": [low, high], ...},
            "chance": {"top1": .., ...},   # mean over windows of min(k, n_r) / n_r
            "n_windows": 5231, "n_groups": 40, "mean_candidates": 75.2},
          "within_story": {...},   # the same among the segments of its story (if known)
          "identity_ceiling": {"recording": {"top1": .., ...}, "story": {...}},
          "shuffled": {"accuracy", "ci", "chance" (k / M), "n_windows"},  # mismatched pairs
          "surrogate": {...},      # phase-randomised brain windows (pipeline, brain encoder)
          "train_null": {...}      # a model trained on mismatched pairs (on request)
        }, "ridge": {...}},
      "files": {"per_subject": "per_subject.csv",
                "per_window": {"model": "per_window_model.csv", ...},
                "figures": ["accuracy_per_subject.png", "decoded_examples.png"]},
      ...                          # the entries of ``extra`` (e.g. split leak audit, skipped items)
    }

Reports of the other tasks (``task.name`` ``speech_detection`` or ``phoneme_classification``,
:func:`write_task_report`) share the version and the ``{field: {model: ...}}`` layout, with a
``task`` field and the fields of
:meth:`TaskResult.to_dict <braindecode_speech.evaluation.classification.TaskResult.to_dict>`
(:data:`TASK_REPORT_FIELDS`; metrics ``f1_macro`` and ``balanced_accuracy``)::

    {"schema_version": 2, "task": "phoneme_classification", "classes": ["AA", ...],
     "n_units": {"model": 812}, "n_points": {"model": 812},
     "metrics": {"model": {"f1_macro": .., "balanced_accuracy": ..}},
     "ci": {"model": {"f1_macro": [low, high], ...}}, "chance": {"model": {...}},
     "majority": {"model": {...}}, "per_subject": {"model": {"<subject>": {"n_units", "metrics",
     "ci"}}}, "per_class": {"model": {"AA": {"f1", "precision", "recall", "support"}, ...}},
     "confusion": {"model": [[...], ...]}, "controls": {"model": {"shuffled": {"metrics", "ci",
     "n_units"}, "surrogate": {...}}}, "files": {...}, ...}

Version history: 1 had ``chance`` flat (``top1``: segment, ``word_top1``: the frequency
baseline, called word chance) and ``chance_shuffled`` apart, and no per-subject intervals.

See :mod:`braindecode_speech.evaluation.retrieval` for the definitions of the metrics and chance levels.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnchoredOffsetbox, HPacker, TextArea, VPacker

from ..fileio import atomic_path
from .classification import METRICS, TASK_SCHEMA_FIELDS, TaskResult
from .retrieval import LEVELS, RESULT_FIELDS, RetrievalResult

__all__ = ["MODEL_FIELDS", "PER_WINDOW_TEXT_COLUMNS", "REPORT_FIELDS", "SCHEMA_VERSION",
           "SHARED_FIELDS", "TASK_REPORT_FIELDS", "ReportError", "flat_metrics", "format_table",
           "format_task_table", "plot_accuracy_per_subject", "read_report", "read_results",
           "read_task_results", "report_result", "write_report", "write_task_report"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: fields of :meth:`RetrievalResult.to_dict` that every model of a report shares (top level)
SHARED_FIELDS = ("n_candidates", "n_words", "topk")
#: the other fields of :meth:`RetrievalResult.to_dict`: ``report[field][model]``
MODEL_FIELDS = tuple(f for f in RESULT_FIELDS if f not in SHARED_FIELDS)
#: top-level fields of report.json written by :func:`write_report` (``extra`` may not use them)
REPORT_FIELDS = ("schema_version", *SHARED_FIELDS, *MODEL_FIELDS, "files")
#: top-level fields of the report.json of the other tasks (:func:`write_task_report`)
TASK_REPORT_FIELDS = ("schema_version", "task", "classes",
                      *[f for f in TASK_SCHEMA_FIELDS if f not in ("task", "classes")], "files")


#: text columns of ``per_window_<model>.csv`` (read as strings: subject ``01`` stays ``01``)
PER_WINDOW_TEXT_COLUMNS = ("subject", "recording_uid", "word", "sequence_id", "segment",
                           "target_word", "predicted_word", "story", "voice")


class ReportError(ValueError):
    """A report.json this version cannot read (other schema version, missing fields); the
    message names the file."""


#: words shown on each side of the anchor word in the decoded examples
CONTEXT_WORDS = 7
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def write_report(
    folder: str | Path,
    results: dict[str, RetrievalResult],
    extra: dict[str, Any] | None = None,
    candidate_sentences: Sequence[str] | None = None,
    candidate_word_index: Sequence[int] | None = None,
    n_examples: int = 4,
    seed: int = 0,
) -> Path:
    """Write report.json, CSV tables and figures into ``folder``; return the report.json path.

    ``results`` maps model names (file-name safe) to their results on the same candidates.
    ``extra`` entries (JSON-serialisable) are added at the top level of report.json.
    ``candidate_sentences[m]`` is the sentence containing candidate ``m`` and
    ``candidate_word_index[m]`` the position of its anchor word in ``sentence.split()``; with
    them the ``decoded_examples.png`` figure shows ``n_examples`` windows drawn with ``seed``.
    """
    _check_results(results)
    extra = dict(extra or {})
    _check_extra(extra)
    with_examples = candidate_sentences is not None or candidate_word_index is not None
    if with_examples:
        _check_sentences(candidate_sentences, candidate_word_index,
                         next(iter(results.values())).n_candidates)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    first = next(iter(results.values()))

    per_window_files = {}
    for name, result in results.items():
        per_window_files[name] = f"per_window_{name}.csv"
        _write_atomic(folder / per_window_files[name],
                      lambda p, r=result: r.per_window.to_csv(p, index=False))
    per_subject = pd.concat(
        [r.per_subject.assign(model=name) for name, r in results.items()], ignore_index=True
    )
    per_subject = per_subject[["model", *[c for c in per_subject.columns if c != "model"]]]
    _write_atomic(folder / "per_subject.csv", lambda p: per_subject.to_csv(p, index=False))

    figures = {"accuracy_per_subject.png": plot_accuracy_per_subject(results)}
    if with_examples:
        figures["decoded_examples.png"] = plot_decoded_examples(
            next(iter(results)), first, candidate_sentences, candidate_word_index, n_examples,
            seed,
        )
    else:
        log.info("no candidate sentences given: decoded_examples.png not written")
    for file_name, figure in figures.items():
        _write_atomic(folder / file_name,
                      lambda p, f=figure: f.savefig(p, format="png", dpi=100, bbox_inches="tight"))

    summaries = {name: r.to_dict() for name, r in results.items()}
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        **{f: summaries[next(iter(results))][f] for f in SHARED_FIELDS},
        **{f: {name: summary[f] for name, summary in summaries.items()} for f in MODEL_FIELDS},
        "files": {
            "per_subject": "per_subject.csv",
            "per_window": per_window_files,
            "figures": list(figures),
        },
    }
    report.update(extra)
    path = folder / "report.json"
    _write_atomic(path, lambda p: Path(p).write_text(json.dumps(report, indent=2) + "\n"))
    log.info("report written to %s", path)
    return path


def read_report(path: str | Path, task: str | None = "retrieval") -> dict[str, Any]:
    """The content of the report.json at ``path``, checked against this version's schema
    (module docstring): a retrieval report, a report of ``task``, or (``task=None``) either.

    Raises
    ------
    FileNotFoundError : no file at ``path``.
    ReportError : naming ``path``: not JSON, another (or no) ``schema_version``, a field of
        the schema missing, or the report of another task.
    """
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not a JSON report ({exc})") from None
    if not isinstance(report, dict):
        raise ReportError(f"{path}: not a report.json (a JSON {type(report).__name__})")
    version = report.get("schema_version")
    if version != SCHEMA_VERSION:
        found = "no schema_version" if version is None else f"schema_version {version!r}"
        raise ReportError(f"{path}: {found}; this version reads report.json schema_version "
                          f"{SCHEMA_VERSION} only (re-evaluate the run with "
                          "`braindecode-speech evaluate --run FOLDER` to rewrite it)")
    found_task = report.get("task", "retrieval")
    if task is not None and found_task != task:
        raise ReportError(f"{path}: the report of a {found_task} run; this reads {task} "
                          "reports only")
    fields = REPORT_FIELDS if found_task == "retrieval" else TASK_REPORT_FIELDS
    missing = [f for f in fields if f not in report]
    if missing:
        raise ReportError(f"{path}: report.json schema_version {SCHEMA_VERSION} without the "
                          f"field(s) {missing}")
    return report


def read_results(folder: str | Path, per_window: bool = True) -> dict[str, RetrievalResult]:
    """The :class:`RetrievalResult` of every model of the report in ``folder`` (its
    ``report.json``, :func:`read_report`), with the per-window tables its ``files`` name (or,
    with ``per_window=False``, tables of ``n_windows`` rows and no columns)."""
    folder = Path(folder)
    path = folder / "report.json"
    report = read_report(path)
    out = {}
    for name in report["metrics"]:
        table = None
        if per_window:
            table = pd.read_csv(folder / report["files"]["per_window"][name],
                                keep_default_na=False, na_values=[""],
                                dtype={c: str for c in PER_WINDOW_TEXT_COLUMNS})
        out[name] = report_result(report, name, table, path)
    return out


def report_result(report: dict[str, Any], model: str, per_window: pd.DataFrame | None = None,
                  path: str | Path = "report.json") -> RetrievalResult:
    """The :class:`RetrievalResult` of ``model`` in a report (:func:`read_report`), with its
    ``per_window`` table when given (:meth:`RetrievalResult.from_dict`). ``path`` names the
    report in errors.

    Raises
    ------
    ReportError : the report has no such model or its fields do not follow the schema.
    """
    if model not in report["metrics"]:
        raise ReportError(f"{path}: no model {model!r} (models: {sorted(report['metrics'])})")
    try:
        return RetrievalResult.from_dict({**{f: report[f] for f in SHARED_FIELDS},
                                          **{f: report[f][model] for f in MODEL_FIELDS}},
                                         per_window)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ReportError(f"{path}: model {model!r} does not follow report.json schema_version "
                          f"{SCHEMA_VERSION} ({type(exc).__name__}: {exc})") from None


def flat_metrics(report: dict[str, Any], path: str | Path = "report.json") -> dict[str, float]:
    """The numbers of a report (:func:`read_report`) as one flat row, for tables over runs:
    ``<model>.<level>.top<k>`` (level ``segment``, ``word``), ``chance.segment.top<k>``,
    ``word_frequency_baseline.top<k>``, ``<model>.chance.word_shuffled.top<k>``, the controls
    ``<model>.<control>.top<k>`` with ``chance.<control>.top<k>``, the identity ceilings
    ``ceiling.<group>.top<k>`` and ``n_candidates``; for the other tasks ``<model>.<metric>``,
    ``chance.<metric>``, ``majority.<metric>``, ``<model>.<control>.<metric>`` (metrics
    ``f1_macro``, ``balanced_accuracy``) and ``n_units``. ``path`` names the report in errors."""
    if report.get("task", "retrieval") != "retrieval":
        return _flat_task_metrics(report, path)
    try:
        out = {f"{model}.{level}.{k}": float(v)
               for model, levels in report["metrics"].items()
               for level, ks in levels.items() for k, v in ks.items()}
        for model, chance in report["chance"].items():
            out.update({f"chance.segment.{k}": float(v) for k, v in chance["segment"].items()})
            out.update({f"word_frequency_baseline.{k}": float(v)
                        for k, v in chance["word_frequency_baseline"].items()})
            out.update({f"{model}.chance.word_shuffled.{k}": float(v)
                        for k, v in chance["word_shuffled"].items()})
        for model, controls in report["controls"].items():
            for name, control in controls.items():
                if name == "identity_ceiling":  # the same for every model
                    out.update({f"ceiling.{group}.{k}": float(v)
                                for group, ks in control.items() for k, v in ks.items()})
                    continue
                out.update({f"{model}.{name}.{k}": float(v)
                            for k, v in control["accuracy"].items()})
                out.update({f"chance.{name}.{k}": float(v) for k, v in control["chance"].items()})
        out["n_candidates"] = int(report["n_candidates"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportError(f"{path}: not a report.json of schema_version {SCHEMA_VERSION} "
                          f"({type(exc).__name__}: {exc})") from None
    return out


def _flat_task_metrics(report: dict[str, Any], path: str | Path) -> dict[str, float]:
    try:
        out: dict[str, float] = {}
        for model, metrics in report["metrics"].items():
            # the chance levels of the first model (every window) unprefixed, as for retrieval
            prefix = "" if model == "model" else f"{model}."
            out.update({f"{model}.{m}": float(v) for m, v in metrics.items()})
            out.update({f"{prefix}chance.{m}": float(v)
                        for m, v in report["chance"][model].items()})
            out.update({f"{prefix}majority.{m}": float(v)
                        for m, v in report["majority"][model].items()})
            for name, control in report["controls"][model].items():
                out.update({f"{model}.{name}.{m}": float(v)
                            for m, v in control["metrics"].items()})
        out["n_units"] = int(next(iter(report["n_units"].values())))
    except (KeyError, TypeError, ValueError, AttributeError, StopIteration) as exc:
        raise ReportError(f"{path}: not a {report.get('task')} report.json of schema_version "
                          f"{SCHEMA_VERSION} ({type(exc).__name__}: {exc})") from None
    return out


def write_task_report(folder: str | Path, results: dict[str, TaskResult],
                      extra: dict[str, Any] | None = None) -> Path:
    """Write the report of a speech detection or phoneme classification evaluation into
    ``folder``: ``report.json`` (module docstring), ``per_subject.csv`` (``model``,
    ``subject``, ``n_units``, each metric and its interval), ``per_class.csv`` and the figures
    ``f1_per_subject.png`` and ``confusion.png``; return the report.json path."""
    if not results or any(not _MODEL_NAME.match(name) for name in results):
        raise ValueError(f"results need file-name-safe model names, got {list(results)}")
    extra = dict(extra or {})
    clash = [k for k in extra if k in TASK_REPORT_FIELDS]
    if clash:
        raise ValueError(f"extra report entries {clash} would overwrite report fields")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    per_subject = pd.concat([r.per_subject_table().assign(model=name)
                             for name, r in results.items()], ignore_index=True)
    per_subject = per_subject[["model", *[c for c in per_subject.columns if c != "model"]]]
    _write_atomic(folder / "per_subject.csv", lambda p: per_subject.to_csv(p, index=False))
    per_class = pd.concat([pd.DataFrame.from_dict(r.per_class, orient="index")
                           .rename_axis("class").reset_index().assign(model=name)
                           for name, r in results.items()], ignore_index=True)
    _write_atomic(folder / "per_class.csv", lambda p: per_class.to_csv(p, index=False))
    figures = {"f1_per_subject.png": _plot_task_per_subject(results),
               "confusion.png": _plot_confusion(next(iter(results.values())))}
    for file_name, figure in figures.items():
        _write_atomic(folder / file_name,
                      lambda p, f=figure: f.savefig(p, format="png", dpi=100, bbox_inches="tight"))
    summaries = {name: r.to_dict() for name, r in results.items()}
    first = summaries[next(iter(results))]
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "task": first["task"], "classes": first["classes"],
        **{f: {name: summary[f] for name, summary in summaries.items()}
           for f in TASK_SCHEMA_FIELDS if f not in ("task", "classes")},
        "files": {"per_subject": "per_subject.csv", "per_class": "per_class.csv",
                  "figures": list(figures)}}
    report.update(extra)
    path = folder / "report.json"
    _write_atomic(path, lambda p: Path(p).write_text(json.dumps(report, indent=2) + "\n"))
    log.info("report written to %s", path)
    return path


def read_task_results(folder: str | Path) -> dict[str, TaskResult]:
    """The :class:`~braindecode_speech.evaluation.classification.TaskResult` of every model of
    the speech detection or phoneme classification report in ``folder``."""
    path = Path(folder) / "report.json"
    report = read_report(path, task=None)
    if report.get("task", "retrieval") == "retrieval":
        raise ReportError(f"{path}: a retrieval report (read it with read_results)")
    return {name: TaskResult.from_dict({
        "task": report["task"], "classes": report["classes"],
        **{f: report[f][name] for f in TASK_SCHEMA_FIELDS if f not in ("task", "classes")}})
        for name in report["metrics"]}


def format_task_table(results: dict[str, TaskResult]) -> str:
    """Terminal table of a task's results in %: one row per model (with the 95 % interval of
    F1-macro), then the chance level, the majority baseline and the controls."""
    rows: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        low, high = result.ci["f1_macro"]
        rows[name] = {**{m: 100 * result.metrics[m] for m in METRICS},
                      "f1_macro 95% CI": f"{100 * low:.1f}-{100 * high:.1f}"}
    first = next(iter(results.values()))
    for name, result in results.items():
        suffix = "" if result is first else f" ({name})"
        rows[f"chance{suffix}"] = {m: 100 * result.chance[m] for m in METRICS}
        rows[f"majority{suffix}"] = {m: 100 * result.majority[m] for m in METRICS}
    for name, result in results.items():
        for control, values in result.controls.items():
            low, high = values["ci"]["f1_macro"]
            rows[f"{name} {control.replace('_', ' ')}"] = {
                **{m: 100 * values["metrics"][m] for m in METRICS},
                "f1_macro 95% CI": f"{100 * low:.1f}-{100 * high:.1f}"}
    table = pd.DataFrame.from_dict(rows, orient="index")
    units = ", ".join(f"{name}: {r.n_units}" for name, r in results.items())
    return (f"{first.task} (test units {units}; {len(first.per_class)} classes)\n"
            + table.to_string(float_format=lambda v: f"{v:.1f}", na_rep="-"))


def _plot_task_per_subject(results: dict[str, TaskResult]) -> Figure:
    """F1-macro per subject with its 95 % interval, bars per model, and the chance level."""
    first = next(iter(results.values()))
    subjects = list(first.per_subject)
    fig = Figure(figsize=(max(4.0, 0.6 * len(subjects) + 2), 3.5), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(results)
    x = np.arange(len(subjects))
    for i, (name, result) in enumerate(results.items()):
        values = np.array([result.per_subject[s]["metrics"]["f1_macro"] for s in subjects])
        ci = np.array([result.per_subject[s]["ci"]["f1_macro"] for s in subjects]).reshape(-1, 2)
        ax.bar(x + (i - (len(results) - 1) / 2) * width, 100 * values, width,
               yerr=100 * np.abs(ci.T - values), capsize=3, label=name)
    ax.axhline(100 * first.chance["f1_macro"], color="black", ls="--", label="chance")
    ax.set_xticks(x, subjects)
    ax.set_xlabel("subject")
    ax.set_ylabel("F1-macro (%)")
    ax.set_title(first.task.replace("_", " "))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def _plot_confusion(result: TaskResult) -> Figure:
    """The confusion matrix of ``result``, each row (true class) normalised to 1."""
    confusion = np.asarray(result.confusion, dtype=float)
    keep = (confusion.sum(0) + confusion.sum(1)) > 0
    confusion = confusion[keep][:, keep]
    names = [c for c, k in zip(result.classes, keep) if k]
    rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    size = max(3.0, 0.22 * len(names) + 1.5)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    return fig


def format_table(results: dict[str, RetrievalResult]) -> str:
    """Terminal table: one row per model, then chance (segment: k / M, word: the first
    model's shuffled chance), the identity ceilings (segment level only) and the word frequency
    baseline, segment/word top-k accuracy in %; then, when the results have controls, one row per
    model and control: its top-k, the matching chance and the interval of the largest k."""
    _check_results(results)
    first = next(iter(results.values()))
    rows = {name: r.metrics for name, r in results.items()}
    rows["chance"] = {"segment": first.chance["segment"],
                      "word": first.chance["word_shuffled"]}
    for group, ceiling in first.controls.get("identity_ceiling", {}).items():
        rows[f"{group} ceiling"] = {"segment": ceiling}
    rows["word frequency baseline"] = {"word": first.chance["word_frequency_baseline"]}
    table = pd.json_normalize(list(rows.values()), sep=" ").set_axis(list(rows)) * 100
    text = table.to_string(float_format=lambda v: f"{v:.1f}", na_rep="-")
    controls = _controls_table(results)
    if controls:
        text += "\n\ncontrols (segment level, %)\n" + controls
    return text


def _controls_table(results: dict[str, RetrievalResult]) -> str:
    """The controls of every model (not the ceilings): top-k, chance top-k and the 95 %
    interval of the largest k; "" when there are none."""
    rows = {}
    for name, result in results.items():
        k_max = f"top{max(result.topk)}"
        for control, values in result.controls.items():
            if "accuracy" not in values:
                continue
            low, high = values["ci"][k_max]
            rows[f"{name} {control.replace('_', ' ')}"] = {
                **{k: 100 * v for k, v in values["accuracy"].items()},
                **{f"chance {k}": 100 * v for k, v in values["chance"].items()},
                f"{k_max} 95% CI": f"{100 * low:.1f}-{100 * high:.1f}",
            }
    if not rows:
        return ""
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.to_string(float_format=lambda v: f"{v:.1f}")


def plot_accuracy_per_subject(results: dict[str, RetrievalResult], k: int | None = None) -> Figure:
    """Top-``k`` accuracy (default: the largest k) per subject and overall ("all"), one bar per
    model with its bootstrap 95 % interval; dashed line: segment chance (k / M), word frequency
    baseline."""
    first = next(iter(results.values()))
    k = max(first.topk) if k is None else k
    subjects = sorted(set().union(*(r.per_subject["subject"].tolist() for r in results.values())),
                      key=str)
    groups = [*subjects, "all"]
    width = 0.8 / len(results)
    fig = Figure(figsize=(min(30.0, 2.0 + 0.3 * len(groups) * len(results)), 6.5),
                 layout="tight")
    axes = fig.subplots(len(LEVELS), 1, sharex=True, squeeze=False)
    chance = {"segment": first.chance["segment"],
              "word": first.chance["word_frequency_baseline"]}
    for ax, level in zip(axes[:, 0], LEVELS):
        column = f"{level}_top{k}"
        for j, (name, result) in enumerate(results.items()):
            table = result.per_subject.set_index("subject").reindex(subjects)
            value = [*table[column], result.metrics[level][f"top{k}"]]
            low = [*table[f"{column}_ci_low"], result.ci[level][f"top{k}"][0]]
            high = [*table[f"{column}_ci_high"], result.ci[level][f"top{k}"][1]]
            err = np.abs(np.array([low, high]) - np.array(value)) * 100
            ax.bar(np.arange(len(groups)) + (j - (len(results) - 1) / 2) * width,
                   np.array(value) * 100, width, yerr=err, label=name, capsize=2)
        ax.axhline(chance[level][f"top{k}"] * 100, color="k", ls="--", lw=1,
                   label="chance (k / M)" if level == "segment" else "word frequency baseline")
        ax.set_ylabel(f"{level} top-{k} (%)")
        ax.set_ylim(0, 100)
        ax.legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xticks(np.arange(len(groups)), [str(g) for g in groups],
                           rotation=90 if len(groups) > 12 else 0)
    axes[-1, 0].set_xlabel("subject")
    return fig


def plot_decoded_examples(
    name: str,
    result: RetrievalResult,
    candidate_sentences: Sequence[str] | None,
    candidate_word_index: Sequence[int] | None,
    n_examples: int = 4,
    seed: int = 0,
) -> Figure:
    """Randomly drawn windows: heard sentence (anchor in bold) and the 5 best candidates'
    sentences, the correct one in green."""
    _check_sentences(candidate_sentences, candidate_word_index, result.n_candidates)
    table = result.per_window
    best_columns = [c for c in table.columns if re.fullmatch(r"best_\d+", c)][:5]
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(len(table), min(n_examples, len(table)), replace=False))
    lines = []
    for i in shown:
        row = table.iloc[i]
        target = int(row["target"])
        lines.append(TextArea(
            f"window {i} (subject {row['subject']}), segment rank {row['segment_rank']}, "
            f"word rank {row['word_rank']} — heard:", textprops={"weight": "bold", "size": 9}))
        lines.append(_highlighted(candidate_sentences[target], candidate_word_index[target],
                                  "black", prefix="  »"))
        for rank, column in enumerate(best_columns, start=1):
            m = int(row[column])
            color = "tab:green" if m == target else "dimgray"
            lines.append(_highlighted(candidate_sentences[m], candidate_word_index[m], color,
                                      prefix=f"  {rank}."))
    fig = Figure(figsize=(10, 0.6 + 0.22 * len(lines)))
    ax = fig.subplots()
    ax.set_axis_off()
    ax.set_title(f"{name}: decoded examples (top-5 retrieved segments)", loc="left")
    box = AnchoredOffsetbox(loc="upper left", child=VPacker(children=lines, align="left", sep=3),
                            frameon=False, pad=0, borderpad=0.5)
    ax.add_artist(box)
    return fig


def _highlighted(sentence: str, index: int, color: str, prefix: str) -> HPacker:
    """One line: ``prefix`` + the words around ``index`` with the anchor word in bold."""
    words = sentence.split()
    lo, hi = max(0, index - CONTEXT_WORDS), min(len(words), index + CONTEXT_WORDS + 1)
    before = " ".join(part for part in (prefix, "…" if lo > 0 else "", *words[lo:index]) if part)
    after = " ".join(words[index + 1:hi]) + (" …" if hi < len(words) else "")
    props = {"color": color, "size": 9, "family": "monospace"}
    parts = [TextArea(text, textprops={**props, "weight": weight})
             for text, weight in ((before, "normal"), (words[index], "bold"), (after, "normal"))
             if text]
    return HPacker(children=parts, align="baseline", pad=0, sep=6)


def _check_results(results: dict[str, RetrievalResult]) -> None:
    if not results:
        raise ValueError("no results to report")
    first = next(iter(results.values()))
    for name, result in results.items():
        if not _MODEL_NAME.match(name):
            raise ValueError(f"model name {name!r} must match {_MODEL_NAME.pattern} (file names)")
        same = (result.n_candidates, result.n_words, result.topk) == (
            first.n_candidates, first.n_words, first.topk)
        if not same:
            raise ValueError(
                f"result {name!r} was evaluated on {result.n_candidates} candidates / "
                f"{result.n_words} words / topk {result.topk}, unlike the first result "
                f"({first.n_candidates} / {first.n_words} / {first.topk})"
            )


def _check_extra(extra: dict[str, Any]) -> None:
    clash = sorted(set(extra) & set(REPORT_FIELDS))
    if clash:
        raise ValueError(f"extra entries {clash} would overwrite report.json fields")
    for key, value in extra.items():
        try:
            json.dumps(value)
        except TypeError as exc:
            raise TypeError(f"extra[{key!r}] cannot be written to report.json: {exc}") from None


def _check_sentences(
    sentences: Sequence[str] | None, word_index: Sequence[int] | None, n_candidates: int
) -> None:
    if sentences is None or word_index is None:
        raise ValueError("candidate_sentences and candidate_word_index must be given together")
    if len(sentences) != n_candidates or len(word_index) != n_candidates:
        raise ValueError(
            f"got {len(sentences)} candidate sentences and {len(word_index)} word indices for "
            f"{n_candidates} candidates"
        )
    for m, (sentence, index) in enumerate(zip(sentences, word_index)):
        if not 0 <= index < len(sentence.split()):
            raise ValueError(
                f"candidate {m}: anchor word index {index} outside its sentence {sentence!r}"
            )


def _write_atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(temporary_path)`` beside ``path``, then move the file onto ``path``
    (:func:`~braindecode_speech.fileio.atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)
