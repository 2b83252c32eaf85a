"""Analyses of trained runs (the logic of ``notebooks/``) and the paper's published numbers.

A run folder (written by :func:`~braindecode_speech.experiments.run_experiment`) holds
``config.yaml``, ``report.json``, ``per_window_model.csv`` (one row per test window: anchor
word, true candidate ``target``, ``segment_rank``, hits, best candidates ``best_1``...) and
``best.pt``; with ``evaluation.save_predictions``, also ``predictions.npy`` ``[N, F, T]`` and
``candidates.npy`` ``[M, F, T]`` (decoded test windows and the speech features of the distinct
test segments), needed only to list more best candidates than the run kept. The functions here read
those files, plus the study's events (for sentence texts and word statistics) and, for the
spatial-attention maps, the sensor layout of one recording. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from ..config import ConfigError
from ..data.cache import default_cache_dir
from ..data.events import sentence_words
from ..data.preprocessing import preprocess
from ..data.studies import get as get_study
from ..evaluation.report import (
    PER_WINDOW_TEXT_COLUMNS,
    plot_accuracy_per_subject,
    read_report,
    report_result,
)
from ..models import SpatialAttention
from ..training.losses import clip_scores
from .config import ExperimentConfig
from .run import load_weights

__all__ = ["PAPER_RESULTS_SOURCE", "paper_results", "compare_with_paper",
           "compare_paper_configuration", "RunResults",
           "load_run", "retrieve", "decoded_examples", "accuracy_by", "within_recording_chance",
           "controls_table", "confusions",
           "same_sentence_errors", "sentence_confusion", "plot_accuracy_by", "plot_per_subject",
           "plot_sentence_confusion", "load_weights", "attention_maps",
           "plot_attention_maps", "subject_layer_similarity", "plot_similarity"]

logger = logging.getLogger(__name__)

# -- the paper's numbers ------------------------------------------------------------------------

#: where :func:`paper_results` comes from
PAPER_RESULTS_SOURCE = {
    "table2": "Défossez et al. 2023, Nature Machine Intelligence 5:1097, Table 2: top-10 "
              "segment accuracy (%), mean ± s.d. over 3 seeds",
    "table4": "Table 4 (ablations) of the same paper, as produced by the authors' notebook "
              "(brainmagick notebook_templates, batch-256 grid): top-10 segment accuracy (%), "
              "mean (± s.d. where published) over 3 seeds",
}
_STUDIES = ("schoffelen2019", "gwilliams2022", "broderick2019", "brennan2019")
#: row -> (mean, s.d.) per study in the order of _STUDIES; None: not published
_TABLE2: dict[str, tuple[tuple[float, float | None], ...]] = {
    "random": ((0.8, 0.1), (0.7, 0.1), (0.5, 0.1), (5.3, 0.1)),
    "base (Mel regression)": ((20.6, 1.8), (12.4, 1.2), (1.0, 0.3), (6.0, 0.9)),
    "+ contrastive": ((55.1, 0.9), (55.1, 0.7), (9.7, 1.0), (8.0, 4.8)),
    "+ Deep Mel": ((61.2, 0.6), (64.4, 0.8), (15.4, 1.6), (24.7, 3.2)),
    "+ wav2vec 2.0 (ours)": ((67.5, 0.4), (70.7, 0.1), (17.7, 0.6), (25.7, 2.9)),
}
_TABLE4: dict[str, tuple[tuple[float, float | None], ...]] = {
    "our model": ((67.3, 0.36), (66.7, 0.15), (13.4, 0.39), (25.7, 2.93)),
    "subject embedding instead of subject layer": ((64.6, None), (66.7, None), (14.7, None),
                                                   (29.4, None)),
    "clamp = 100": ((66.9, None), (66.5, None), (13.3, None), (27.1, None)),
    "w/o spatial-attention dropout": ((67.3, None), (65.2, None), (12.3, None), (26.8, None)),
    "GELU -> ReLU": ((65.6, None), (64.9, None), (12.5, None), (24.6, None)),
    "w/o skip connections": ((65.3, None), (62.4, None), (11.0, None), (24.3, None)),
    "w/o final convs": ((67.2, None), (65.1, None), (11.2, None), (19.0, None)),
    "w/o initial 1x1 conv": ((62.7, None), (64.0, None), (11.9, None), (22.1, None)),
    "w/o spatial attention": ((65.6, None), (61.9, None), (11.9, None), (20.6, None)),
    "w/o non-residual GLU conv": ((66.7, None), (66.3, None), (6.9, None), (6.0, None)),
    "w/o subject-specific layer": ((42.4, None), (44.3, None), (6.9, None), (20.2, None)),
    "w/o clamping": ((1.5, None), (22.3, 23.2), (1.0, None), (14.1, None)),
}


def paper_results() -> pd.DataFrame:
    """The paper's top-10 segment accuracies: columns ``table`` (``table2`` | ``table4``),
    ``row``, ``study`` (registry name), ``top10`` and ``sd`` (percent; ``sd`` NaN where not
    published). Sources: :data:`PAPER_RESULTS_SOURCE`."""
    rows = [{"table": table, "row": row, "study": study, "top10": mean,
             "sd": np.nan if sd is None else sd}
            for table, values in (("table2", _TABLE2), ("table4", _TABLE4))
            for row, per_study in values.items()
            for study, (mean, sd) in zip(_STUDIES, per_study)]
    return pd.DataFrame(rows)


def compare_with_paper(summary: pd.DataFrame, table: str, row_column: str | None = None,
                       row: str | None = None,
                       metric: str = "model.segment.top10") -> pd.DataFrame:
    """Our results beside the paper's ``table`` (``table2`` or ``table4``), one line per
    (study, row) found in both.

    ``summary`` is a grid summary (:func:`braindecode_speech.experiments.grid.summarize`) with a
    ``study.name`` column. Its lines are matched to the paper's rows by the values of its
    ``row_column``, or all to the one paper ``row``. Columns of the result: ``table``,
    ``study``, ``row``, ``ours`` / ``ours_sd`` (percent, s.d. over seeds as in the paper),
    ``seeds``, ``paper`` / ``paper_sd`` and ``difference`` (ours − paper, points).
    """
    if (row_column is None) == (row is None):
        raise ValueError("give either row_column or row")
    for column in ("study.name", metric, f"{metric}.std", "n_seeds", row_column):
        if column is not None and column not in summary.columns:
            raise KeyError(f"the grid summary has no column {column!r}")
    paper = paper_results()
    paper = paper[paper["table"] == table]
    if paper.empty:
        raise ValueError(f"unknown paper table {table!r}: use table2 or table4")
    ours = pd.DataFrame({"study": summary["study.name"],
                         "row": summary[row_column] if row_column else row,
                         "ours": 100 * summary[metric], "ours_sd": 100 * summary[f"{metric}.std"],
                         "seeds": summary["n_seeds"]})
    paper = paper.rename(columns={"top10": "paper", "sd": "paper_sd"})
    out = ours.merge(paper[["table", "study", "row", "paper", "paper_sd"]],
                     on=["study", "row"], how="inner")
    out["difference"] = out["ours"] - out["paper"]
    return out[["table", "study", "row", "ours", "ours_sd", "seeds", "paper", "paper_sd",
                "difference"]]


def compare_paper_configuration(summary: pd.DataFrame) -> pd.DataFrame:
    """Runs of the paper's configuration beside Table 2's "+ wav2vec 2.0 (ours)" row and
    Table 4's "our model" row (see :func:`compare_with_paper`)."""
    return pd.concat([compare_with_paper(summary, "table2", row="+ wav2vec 2.0 (ours)"),
                      compare_with_paper(summary, "table4", row="our model")],
                     ignore_index=True)


# -- a trained run ------------------------------------------------------------------------------


@dataclass
class RunResults:
    """The test results of one run with the text they refer to.

    ``windows``: one row per test window (``per_window_<model>.csv``) plus
    ``sentence_length`` (words of the heard sentence), ``word_frequency`` (occurrences of the
    anchor word in the study's distinct sentences) and ``words_in_window`` (word onsets inside
    the window); ``story`` and ``voice`` of the anchor word (missing where the study's events
    do not tell them). ``candidates``: one row per candidate segment (``sequence_id``,
    ``word_index``, ``word``, ``sentence``), indexed like ``target`` and ``best_*``.
    """

    folder: Path
    config: ExperimentConfig
    report: dict[str, Any]
    windows: pd.DataFrame
    candidates: pd.DataFrame
    per_subject: pd.DataFrame
    model: str = "model"
    """which of the run's models (``model``, ``ridge``) the results are of"""


def _study_events(config: ExperimentConfig) -> dict[str, pd.DataFrame]:
    """Word events of every recording of the run's study, by recording uid."""
    study = get_study(config.study.name, config.study.root, subjects=config.study.subjects,
                      **config.study.options)
    events = {}
    for rec in study.recordings():
        table = rec.events()
        events[rec.uid] = table[table["kind"] == "word"]
    return events


def load_run(folder: str | Path, model: str = "model") -> RunResults:
    """The test results of ``model`` (``model`` or ``ridge``) of the run in ``folder``."""
    folder = Path(folder)
    for name in ("config.yaml", "report.json", f"per_window_{model}.csv", "per_subject.csv"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder / name}: missing; is {folder} a finished run?")
    config = ExperimentConfig.from_yaml(folder / "config.yaml")
    report = read_report(folder / "report.json")
    windows = pd.read_csv(folder / f"per_window_{model}.csv", keep_default_na=False,
                          na_values=[""], dtype={c: str for c in PER_WINDOW_TEXT_COLUMNS})
    per_subject = pd.read_csv(folder / "per_subject.csv", dtype={"subject": str})
    per_subject = per_subject[per_subject["model"] == model].reset_index(drop=True)

    events = _study_events(config)
    words = pd.concat(events.values(), ignore_index=True)
    sentences = sentence_words(words)
    missing = sorted(set(windows["sequence_id"]) - set(sentences))
    if missing:
        raise ValueError(f"{folder}: test sentences {missing[:3]} are not in the events of "
                         f"{config.study.name} at {config.study.root}")
    first = windows.groupby("target", sort=True).head(1).set_index("target").sort_index()
    if list(first.index) != list(range(report["n_candidates"])):
        raise ValueError(f"{folder}: the test windows do not cover the "
                         f"{report['n_candidates']} candidates of report.json")
    candidates = first[["sequence_id", "word_index", "word"]].reset_index(drop=True)
    candidates["sentence"] = [" ".join(sentences[s]) for s in candidates["sequence_id"]]

    distinct = words.drop_duplicates(["sequence_id", "word_index"])
    frequency = distinct["word"].astype(str).str.lower().value_counts()
    windows["sentence_length"] = windows["sequence_id"].map(lambda s: len(sentences[s]))
    windows["word_frequency"] = windows["word"].str.lower().map(frequency).astype(int)
    tmin, tmax = config.windows.tmin, config.windows.tmax
    onsets = {uid: np.sort(table["onset"].to_numpy()) for uid, table in events.items()}
    windows["words_in_window"] = [
        int(np.searchsorted(onsets[uid], a + tmax) - np.searchsorted(onsets[uid], a + tmin))
        for uid, a in zip(windows["recording_uid"], windows["anchor"])]
    for column in ("story", "voice"):  # runs written before the pipeline recorded them
        if column not in windows:
            label = {(uid, onset): value for uid, table in events.items() if column in table
                     for onset, value in zip(table["onset"], table[column])}
            windows[column] = [label.get((uid, a)) for uid, a in
                               zip(windows["recording_uid"], windows["anchor"])]
    return RunResults(folder, config, report, windows, candidates, per_subject, model)


def retrieve(run: RunResults, rows: Sequence[int], k: int = 5,
             chunk_size: int = 1024) -> np.ndarray:
    """Indices ``[len(rows), k]`` of the ``k`` best-scored candidates (best first) of the test
    windows ``rows``: the ``best_1`` ... columns kept by the evaluation when there are ``k`` of
    them (``evaluation.n_best``), else the paper's score
    (:func:`~braindecode_speech.training.losses.clip_scores`) on the run's ``predictions.npy`` and
    ``candidates.npy`` (written with ``evaluation.save_predictions``)."""
    kept = [f"best_{j}" for j in range(1, min(k, len(run.candidates)) + 1)]
    if set(kept) <= set(run.windows.columns):
        return run.windows[kept].to_numpy()[np.asarray(rows)].astype(np.int64)
    paths = [run.folder / "predictions.npy", run.folder / "candidates.npy"]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: missing; the run kept the {_n_best(run)} best candidates per window: "
                f"ask for at most {_n_best(run)}, or rerun with evaluation.n_best={k} (or "
                "evaluation.save_predictions=true)")
    predictions, candidates = (np.load(p, mmap_mode="r") for p in paths)
    z = torch.from_numpy(np.array(predictions[np.asarray(rows)], dtype=np.float32))
    scores = torch.cat([
        clip_scores(z, torch.from_numpy(np.array(candidates[i:i + chunk_size],
                                                 dtype=np.float32)))
        for i in range(0, len(candidates), chunk_size)], dim=1)
    return scores.topk(min(k, scores.shape[1]), dim=1).indices.numpy()


def _n_best(run: RunResults) -> int:
    """Number of best candidates per window kept in the run's per-window table."""
    return sum(1 for c in run.windows.columns if c.startswith("best_"))


def _marked(sentence: str, index: int, context: int | None = None) -> str:
    """``sentence`` with its word ``index`` in brackets, cut to ``context`` words around it."""
    words = sentence.split()
    lo, hi = (0, len(words)) if context is None else (max(0, index - context),
                                                      index + context + 1)
    words[index] = f"[{words[index]}]"
    return ("… " if lo > 0 else "") + " ".join(words[lo:hi]) + (" …" if hi < len(words) else "")


def decoded_examples(run: RunResults, n: int = 8, k: int = 5, seed: int = 0) -> pd.DataFrame:
    """``n`` test windows drawn at random (seeded, not chosen on accuracy): ``window``,
    ``subject``, ``heard`` (sentence, anchor word in brackets), ``segment_rank`` of the heard
    segment and
    ``retrieved`` (the ``k`` best segments' sentences, best first; ``*`` marks the true one)."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(run.windows), size=min(n, len(run.windows)), replace=False))
    best = retrieve(run, rows, k)
    cand = run.candidates
    out = []
    for row, indices in zip(rows, best):
        window = run.windows.iloc[row]
        target = int(window["target"])
        out.append({
            "window": int(row), "subject": window["subject"],
            "heard": _marked(cand.at[target, "sentence"], int(cand.at[target, "word_index"])),
            "segment_rank": int(window["segment_rank"]),
            "retrieved": [("* " if m == target else "") +
                          _marked(cand.at[m, "sentence"], int(cand.at[m, "word_index"]), 6)
                          for m in indices]})
    return pd.DataFrame(out)


def accuracy_by(run: RunResults, column: str, bins: Sequence[float] | None = None,
                topk: Sequence[int] = (1, 10), rank: str = "segment_rank") -> pd.DataFrame:
    """Segment top-k accuracy of the test windows grouped by ``column`` of ``run.windows``
    (e.g. ``word_index``, ``word_frequency``, ``sentence_length``, ``words_in_window``,
    ``voice``), cut into ``bins`` when given: columns ``n_windows``, ``top{k}`` and
    ``top{k}_sem``. ``rank`` is the rank column scored: ``segment_rank`` (among all
    candidates) or a control's, e.g. ``within_recording_rank`` (among the candidates of the
    window's own recording); windows without a value of ``column`` are left out."""
    for name in (column, rank):
        if name not in run.windows.columns:
            raise KeyError(f"no column {name!r} in the run's windows "
                           f"(have: {', '.join(run.windows.columns)})")
    key = run.windows[column] if bins is None else pd.cut(run.windows[column], bins)
    hits = pd.DataFrame({f"top{k}": run.windows[rank] <= k for k in topk})
    grouped = hits.groupby(key, observed=True)
    out = pd.DataFrame({"n_windows": grouped.size()})
    for k in topk:
        out[f"top{k}"], out[f"top{k}_sem"] = grouped[f"top{k}"].mean(), \
            grouped[f"top{k}"].sem()
    out.index.name = column
    return out


def within_recording_chance(run: RunResults, column: str,
                            topk: Sequence[int] = (1, 10)) -> pd.DataFrame:
    """Chance of the within-recording accuracy per value of ``column`` (as grouped by
    :func:`accuracy_by`): the mean over its windows of ``min(k, n_r) / n_r``, ``n_r`` the
    distinct test segments of the window's recording (the identity ceiling of those windows)."""
    n_segments = run.windows.groupby("recording_uid")["target"].transform("nunique")
    chance = pd.DataFrame({f"top{k}": np.minimum(k, n_segments) / n_segments for k in topk})
    out = chance.groupby(run.windows[column], observed=True).mean()
    out.index.name = column
    return out


def controls_table(run: RunResults) -> pd.DataFrame:
    """The controls of the run's report (``report.json`` ``controls``) for its model: one row
    per control with its top-k accuracy, the matching chance (``chance top{k}``) and the 95 %
    interval of the largest k, in %; the identity ceilings as rows without interval."""
    controls = run.report.get("controls", {}).get(run.model, {})
    rows = {}
    for control, values in controls.items():
        if control == "identity_ceiling":
            for group, ceiling in values.items():
                rows[f"{group} ceiling"] = {k: 100 * v for k, v in ceiling.items()}
            continue
        k_max = max(values["accuracy"], key=lambda k: int(k[3:]))
        rows[control.replace("_", " ")] = {
            **{k: 100 * v for k, v in values["accuracy"].items()},
            **{f"chance {k}": 100 * v for k, v in values["chance"].items()},
            f"{k_max} CI low": 100 * values["ci"][k_max][0],
            f"{k_max} CI high": 100 * values["ci"][k_max][1]}
    return pd.DataFrame.from_dict(rows, orient="index").round(1)


def confusions(run: RunResults, n: int = 20, context: int = 4) -> pd.DataFrame:
    """The ``n`` most frequent top-1 errors: ``heard`` and ``retrieved`` segments (anchor in
    brackets, ``context`` words around it), ``count`` and ``same_sentence``."""
    errors = run.windows[run.windows["best_1"] != run.windows["target"]]
    pairs = errors.groupby(["target", "best_1"]).size().sort_values(ascending=False).head(n)
    cand = run.candidates
    rows = [{"heard": _marked(cand.at[t, "sentence"], int(cand.at[t, "word_index"]), context),
             "retrieved": _marked(cand.at[r, "sentence"], int(cand.at[r, "word_index"]), context),
             "count": int(count),
             "same_sentence": cand.at[t, "sequence_id"] == cand.at[r, "sequence_id"]}
            for (t, r), count in pairs.items()]
    return pd.DataFrame(rows, columns=["heard", "retrieved", "count", "same_sentence"])


def same_sentence_errors(run: RunResults) -> float:
    """Fraction of the top-1 errors whose retrieved segment lies in the heard sentence (near
    misses: another word of the same sentence); NaN without errors."""
    errors = run.windows[run.windows["best_1"] != run.windows["target"]]
    if errors.empty:
        return float("nan")
    sentence = run.candidates["sequence_id"].to_numpy()
    return float(np.mean(sentence[errors["best_1"].to_numpy()] == errors["sequence_id"]))


def sentence_confusion(run: RunResults) -> pd.DataFrame:
    """Fraction of the test windows of each heard sentence (rows) whose top-1 segment belongs
    to each sentence (columns), sentences in order of first appearance; rows sum to 1."""
    heard = run.windows["sequence_id"]
    retrieved = run.candidates["sequence_id"].to_numpy()[run.windows["best_1"].to_numpy()]
    order = list(dict.fromkeys(run.candidates["sequence_id"]))
    table = pd.crosstab(pd.Categorical(heard, order), pd.Categorical(retrieved, order),
                        normalize="index", dropna=False)
    table.index.name, table.columns.name = "heard", "retrieved"
    return table


def plot_accuracy_by(table: pd.DataFrame, chance: dict[str, float] | None = None,
                     title: str = "") -> Figure:
    """Line plot of an :func:`accuracy_by` table (± s.e.m.), with chance levels
    ``{"top10": ..}`` as dashed lines."""
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(table))
    for column in [c for c in table.columns if c.startswith("top") and not c.endswith("sem")]:
        line = ax.errorbar(x, 100 * table[column], yerr=100 * table[f"{column}_sem"].fillna(0),
                           marker="o", capsize=3, label=column)
        if chance and column in chance:
            ax.axhline(100 * chance[column], ls="--", lw=1, color=line.lines[0].get_color())
    ax.set_xticks(x, [str(i) for i in table.index], rotation=45 if len(x) > 8 else 0)
    ax.set_xlabel(table.index.name)
    ax.set_ylabel("segment accuracy (%)")
    ax.set_title(title)
    ax.legend()
    return fig


def plot_per_subject(run: RunResults, k: int = 10) -> Figure:
    """Segment and word top-``k`` accuracy per subject and overall with bootstrap 95 %
    intervals (:func:`~braindecode_speech.evaluation.report.plot_accuracy_per_subject`, the
    figure of the run's report, for the run's model)."""
    return plot_accuracy_per_subject({run.model: report_result(run.report, run.model,
                                                               path=run.folder / "report.json")},
                                     k)


def plot_sentence_confusion(table: pd.DataFrame) -> Figure:
    """Heat map of :func:`sentence_confusion`."""
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(table.to_numpy(), cmap="magma", vmin=0, interpolation="nearest")
    ax.set_xlabel("sentence of the top-1 retrieved segment")
    ax.set_ylabel("heard sentence")
    fig.colorbar(image, ax=ax, label="fraction of the heard sentence's windows")
    return fig


# -- learned weights ----------------------------------------------------------------------------


def attention_maps(folder: str | Path, recording: int = 0) -> tuple[np.ndarray, mne.Info]:
    """Spatial-attention weights ``[n_spatial, C]`` (each row sums to 1 over the sensors) of
    the run in ``folder`` on the sensors of the study's ``recording``-th recording, and the
    ``mne.Info`` of those sensors (for topomaps). The sensor positions come from the run's
    preprocessing cache (the recording is preprocessed again if it is not cached)."""
    config, state = load_weights(folder)
    if config.model.target is not None:
        raise ConfigError(f"{folder}: attention maps read the BrainEncoder's spatial attention; "
                          f"this run trained model.target={config.model.target!r}")
    if not (config.model.spatial_attention and config.model.merger == "positions"):
        raise ConfigError(f"{folder}: the model has no position-based spatial attention")
    attention = SpatialAttention(config.model.n_spatial, config.model.n_fourier,
                                 config.model.dropout_radius, config.model.fourier_layout)
    attention.load_state_dict({"weight": state["merger.weight"]})
    study = get_study(config.study.name, config.study.root, subjects=config.study.subjects,
                      **config.study.options)
    rec = study.recordings()[recording]
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    prepared = preprocess(rec, config.preprocess, cache, config.data.storage)
    positions = torch.from_numpy(prepared.positions)[None]
    positions = attention.clean_positions(positions, torch.ones(positions.shape[:2], dtype=bool))
    with torch.no_grad():
        weights = torch.softmax(attention.attention_logits(positions), dim=-1)[0].numpy()
    info = rec.raw().info
    info = mne.pick_info(info, mne.pick_channels(info.ch_names, prepared.ch_names, ordered=True))
    return weights, info


def plot_attention_maps(weights: np.ndarray, info: mne.Info,
                        channels: Sequence[int] | None = None, n: int = 7) -> Figure:
    """Topomaps of the mean attention over virtual channels, then of ``channels`` (default:
    the ``n`` most focal virtual channels, i.e. with the largest maximum weight)."""
    if channels is None:
        channels = np.argsort(weights.max(axis=1))[::-1][:n].tolist()
    maps = [("mean", weights.mean(axis=0))] + [(f"channel {c}", weights[c]) for c in channels]
    columns = min(4, len(maps))
    rows = -(-len(maps) // columns)
    fig = Figure(figsize=(2.6 * columns, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (title, values) in zip(axes, maps):
        image, _ = mne.viz.plot_topomap(values, info, axes=ax, show=False, cmap="viridis",
                                        contours=0)
        ax.set_title(title)
        fig.colorbar(image, ax=ax, shrink=0.7)
    for ax in axes[len(maps):]:
        ax.set_axis_off()
    return fig


def subject_layer_similarity(folder: str | Path) -> pd.DataFrame:
    """Cosine similarity between subjects of their subject-layer matrices minus the mean
    matrix over subjects (what is specific to each), ``[S, S]`` labelled by subject."""
    config, state = load_weights(folder)
    if "subject_layers.weight" not in state:
        raise ConfigError(f"{folder}: the model has no subject layers")
    weight = state["subject_layers.weight"].double()
    specific = (weight - weight.mean(0)).flatten(1)
    specific = specific / specific.norm(dim=1, keepdim=True).clamp_min(1e-12)
    report = read_report(Path(folder) / "report.json")
    subjects = [str(s) for s in report["subjects"]]
    if len(subjects) != len(weight):
        raise ValueError(f"{folder}: {len(weight)} subject layers but {len(subjects)} subjects "
                         "in report.json")
    return pd.DataFrame((specific @ specific.T).numpy(), index=subjects, columns=subjects)


def plot_similarity(table: pd.DataFrame, title: str = "subject-layer similarity") -> Figure:
    """Heat map of a square similarity table (e.g. :func:`subject_layer_similarity`)."""
    fig = Figure(figsize=(5, 4.3), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(table.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(table)), table.columns, rotation=90)
    ax.set_yticks(range(len(table)), table.index)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="cosine similarity")
    return fig
