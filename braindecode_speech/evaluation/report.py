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

Schema of ``report.json`` (``schema_version`` 1); every accuracy is a fraction in [0, 1]::

    {
      "schema_version": 1,
      "n_candidates": 1284,        # M, distinct test segments (the same for every model)
      "n_words": 846,              # W, distinct anchor words among the candidates
      "topk": [1, 5, 10],
      "n_windows": {"model": 5231, "ridge": 5231},
      "chance": {
        "top1": .., "top5": .., "top10": ..,                # segment level: k / M
        "word_top1": .., "word_top5": .., "word_top10": ..  # word level: frequency-only baseline
      },
      "chance_shuffled": {         # word level, empirical: each model's predictions shuffled
        "model": {"word_top1": .., "word_top5": .., "word_top10": ..}, ...
      },
      "metrics": {"model": {"segment": {"top1": .., "top5": .., "top10": ..},
                            "word": {"top1": .., "top5": .., "top10": ..}}, "ridge": {...}},
      "ci": {"model": {"segment": {"top1": [low, high], ...}, "word": {...}}, ...},
      "per_subject": {"model": {"<subject>": {"n_windows": 190, "segment": {...},
                                              "word": {...}}, ...}, ...},
      "files": {"per_subject": "per_subject.csv",
                "per_window": {"model": "per_window_model.csv", ...},
                "figures": ["accuracy_per_subject.png", "decoded_examples.png"]},
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
      ...                          # the entries of ``extra`` (e.g. split leak audit, skipped items)
    }

See :mod:`braindecode_speech.evaluation.retrieval` for the definitions of the metrics and chance levels.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnchoredOffsetbox, HPacker, TextArea, VPacker

from ..fileio import apply_umask
from .retrieval import LEVELS, RetrievalResult

__all__ = ["REPORT_FIELDS", "SCHEMA_VERSION", "format_table", "write_report"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: top-level fields of report.json written by :func:`write_report` (``extra`` may not use them)
REPORT_FIELDS = ("schema_version", "n_candidates", "n_words", "topk", "n_windows", "chance",
                 "chance_shuffled", "metrics", "ci", "per_subject", "files", "controls")
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

    report = {
        "schema_version": SCHEMA_VERSION,
        "n_candidates": first.n_candidates,
        "n_words": first.n_words,
        "topk": list(first.topk),
        "n_windows": {name: r.n_windows for name, r in results.items()},
        "chance": {
            **first.chance["segment"],
            **{f"word_{m}": v for m, v in first.chance["word_frequency"].items()},
        },
        "chance_shuffled": {
            name: {f"word_{m}": v for m, v in r.chance["word"].items()}
            for name, r in results.items()
        },
        "metrics": {name: r.metrics for name, r in results.items()},
        "ci": {name: r.to_dict()["ci"] for name, r in results.items()},
        "per_subject": {name: r.to_dict()["per_subject"] for name, r in results.items()},
        "files": {
            "per_subject": "per_subject.csv",
            "per_window": per_window_files,
            "figures": list(figures),
        },
        "controls": {name: r.controls for name, r in results.items()},
    }
    report.update(extra)
    path = folder / "report.json"
    _write_atomic(path, lambda p: Path(p).write_text(json.dumps(report, indent=2) + "\n"))
    log.info("report written to %s", path)
    return path


def format_table(results: dict[str, RetrievalResult]) -> str:
    """Terminal table: one row per model plus chance and the identity ceilings (segment level
    only), segment/word top-k accuracy in %; then, when the results have controls, one row per
    model and control: its top-k, the matching chance and the interval of the largest k."""
    _check_results(results)
    first = next(iter(results.values()))
    rows = {name: _flat_metrics(r.metrics, r.topk) for name, r in results.items()}
    rows["chance"] = _flat_metrics(
        {"segment": first.chance["segment"], "word": first.chance["word_frequency"]}, first.topk
    )
    for group, ceiling in first.controls.get("identity_ceiling", {}).items():
        rows[f"{group} ceiling"] = {f"segment top{k}": ceiling[f"top{k}"] for k in first.topk}
    table = pd.DataFrame.from_dict(rows, orient="index") * 100
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
    model with its bootstrap 95 % interval; dashed line: chance (segment k/M, word frequency)."""
    first = next(iter(results.values()))
    k = max(first.topk) if k is None else k
    subjects = sorted(set().union(*(r.per_subject["subject"].tolist() for r in results.values())),
                      key=str)
    groups = [*subjects, "all"]
    width = 0.8 / len(results)
    fig = Figure(figsize=(min(30.0, 2.0 + 0.3 * len(groups) * len(results)), 6.5),
                 layout="tight")
    axes = fig.subplots(len(LEVELS), 1, sharex=True, squeeze=False)
    chance = {"segment": first.chance["segment"], "word": first.chance["word_frequency"]}
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
                   label="chance (k / M)" if level == "segment" else "chance (word frequency)")
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


def _flat_metrics(metrics: dict[str, dict[str, float]], topk: Sequence[int]) -> dict[str, float]:
    return {f"{level} top{k}": metrics[level][f"top{k}"] for level in LEVELS for k in topk}


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


def _write_atomic(path: Path, write: Callable[[str], Any]) -> None:
    """Call ``write(temporary_path)`` in ``path``'s folder, then move the file onto ``path``
    (with the mode the umask gives new files, not ``mkstemp``'s 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
