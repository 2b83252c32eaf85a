"""Top-k retrieval of the heard speech segment from a decoded brain window.

Protocol (Défossez et al. 2023, "Evaluation"): each test window ``i`` (a 3 s brain window anchored
at a word onset) is decoded into ``Z_i`` of shape ``[F, T]``. The candidates are the *distinct* test
segments of the study pooled over subjects and recordings, each with speech features ``Y_m [F, T]``.
The score is

    S_im = <Z_i, Y_m / ||Y_m||>      (sum over F and T, Y normalised over the whole window),

the training CLIP score, computed by the same function
(:func:`braindecode_speech.training.losses.clip_scores`, here on one chunk of candidates at a time
with their norms cached). Probabilities are the softmax of ``S_i`` over the ``M`` candidates.

- **Segment level**: the rank of the true candidate among all ``M`` (1 = best; a tie is counted in
  favour of the true candidate); top-k hit = rank <= k.
- **Word level**: probabilities summed per distinct word (the word at each candidate's anchor); the
  rank of the true word among the ``W`` distinct words (ties again in its favour); top-k hit =
  rank <= k.

Chance levels:

- ``segment``: ``k / M`` (exact for random scores).
- ``word_shuffled``: the word-level chance, empirical: the word-level accuracy of the same
  predictions shuffled across windows (each window scored with another window's prediction),
  averaged over ``n_shuffles`` permutations. Its exact value under random scores is awkward
  because words own unequal numbers of candidates.
- ``word_frequency_baseline``: not a chance level but the frequency-only baseline: rank words
  by their number of candidates (ties broken uniformly at random, in expectation) — the best a
  decoder ignoring the brain can do. Above ``word_shuffled`` when words are unequally frequent.

Confidence intervals are percentile bootstrap 95 % intervals over test windows
(:func:`scipy.stats.bootstrap`; the windows are resampled, the same draws for every metric).

Controls (``EvaluationConfig.controls``, segment level, same top-k; computed in the same pass
over the candidates as the main ranks):

- ``within_recording`` / ``within_story``: the rank of the true candidate among the distinct
  test segments of the window's own recording (``windows["recording_uid"]``) or story
  (``windows["story"]``) only: accuracy that recognising the recording or story cannot give.
  Chance: the mean over windows of ``min(k, n_g) / n_g``, ``n_g`` the candidates of the group.
- ``identity_ceiling[group]``: the top-k of an oracle that knows the window's group and guesses
  uniformly among its ``n_g`` candidates, against all ``M`` candidates: the same closed form,
  ``mean(min(k, n_g) / n_g)``, the level a group shortcut alone reaches.
- ``shuffled``: each window's prediction scored against the true segment of another window of
  the same subject (a random derangement within subject, seeded; subjects with one test window
  are left out): must be at chance, ``k / M``, within its interval.

Groups are skipped when their column is missing or has missing values. The pipeline adds
``surrogate`` (phase-randomised brain windows, :func:`phase_randomized`) and ``train_null``
(a model trained on mismatched pairs) with the same fields (``accuracy``, ``ci``, ``chance``).

Memory: candidates are never loaded whole. They are streamed in chunks of ``chunk_size``: a
``np.memmap`` has each chunk of its file mapped on its own and unmapped after use (so at most one
chunk's pages count in the resident set, and nothing is copied), an in-memory array or tensor is
sliced, and a callable ``source(start, stop) -> [stop - start, F, T]`` is called per chunk (for
pools too large for disk; it must return the same values for a candidate whatever the chunk, and
may reuse its output buffer from one call to the next). The score of each true candidate is
computed first (one read of each distinct target) so that ranks are counted while streaming, and
per-word log-sum-exps are accumulated chunk by chunk (exactly: each chunk is reduced around its
own per-word maxima, then merged with ``logaddexp``). The ``[N, M]`` score matrix is never
stored: memory is ``O(N * F * T + N * W + chunk_size * F * T)``.

Predictions too large to hold (paper scale: 80,000 windows × [1024, 360] is 118 GB) go through
:meth:`RetrievalEvaluator.evaluate_batches`: each batch of windows, as it comes out of the model,
is scored against all candidates (one pass over them per batch; hold them in memory, ~2.4 GB for
1,600 candidates, or memory-map them) and only its per-window results are kept, so memory is
``O(n_batch * F * T + N * W)`` plus the candidates, and nothing is written. A window's results
depend on its own prediction only: they are the same whatever the batches.
"""

from __future__ import annotations

import abc
import logging
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.special
import scipy.stats
import torch
from pydantic import Field, field_validator

from ..config import Config
from ..data.cache import CacheError, RowReader
from ..training.losses import clip_norms, clip_scores

__all__ = [
    "CandidateSource",
    "EvaluationConfig",
    "RetrievalEvaluator",
    "RetrievalResult",
    "RESULT_FIELDS",
    "GROUP_COLUMNS",
    "within_subject_derangement",
    "phase_randomized",
    "control_summary",
    "segment_scores",
]

log = logging.getLogger(__name__)

#: Candidate features ``[M, F, T]``: an array/tensor (typically a ``np.memmap``), or a callable
#: ``source(start, stop)`` returning candidates ``start .. stop - 1`` as ``[stop - start, F, T]``.
CandidateSource = np.ndarray | torch.Tensor | Callable[[int, int], Any]

LEVELS = ("segment", "word")

#: group of the within-group controls and identity ceilings -> the ``windows`` column naming it
GROUP_COLUMNS = {"recording": "recording_uid", "story": "story"}

_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


class EvaluationConfig(Config):
    """Settings of :class:`RetrievalEvaluator`; defaults follow the paper (top-1/5/10)."""

    topk: tuple[int, ...] = (1, 5, 10)
    #: candidates per streamed chunk (memory ~ chunk_size * F * T * 4 bytes; no effect on results)
    chunk_size: int = Field(512, ge=1)
    #: test windows run through a model (brain encoder or ridge) at once
    batch_size: int = Field(256, ge=1)
    #: bootstrap resamples of the test windows for the 95 % confidence intervals
    n_bootstrap: int = Field(1000, ge=1)
    #: permutations of the predictions for the empirical word-level chance
    n_shuffles: int = Field(10, ge=1)
    #: best candidates whose indices are kept per window (``best_1`` ... columns)
    n_best: int = Field(5, ge=1)
    seed: int = Field(0, ge=0)
    #: dtype of the score matrix products; scores and norms are accumulated in float32 (float64
    #: when dtype is float64)
    dtype: Literal["float32", "float64", "bfloat16"] = "float32"
    #: compute the controls (module docstring): within-recording/story accuracy, identity
    #: ceilings, shuffled pairs and, in the pipeline, phase-randomised surrogate brain windows
    controls: bool = True
    #: pipeline only: also train a null model on brain windows paired with the speech of other
    #: windows of the same subject, and report its accuracy among the controls (``train_null``);
    #: doubles the training time. Off by default (not in the paper); on in ``studies/`` and
    #: ``grids/simulated.py``
    train_null: bool = False
    #: pipeline only: also write the decoded test windows (``predictions.npy`` ``[N, F, T]``
    #: float32, ``predictions_ridge.npy`` and those of the controls) and the candidates
    #: (``candidates.npy`` ``[M, F, T]``) to the run folder. Off by default: they are scored as
    #: they come out of the model (paper scale would write ~120 GB per model)
    save_predictions: bool = False

    _exclude_from_signature = ("chunk_size", "batch_size", "controls", "train_null", "save_predictions")

    @field_validator("topk")
    @classmethod
    def _sorted_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(k < 1 for k in value) or list(value) != sorted(set(value)):
            raise ValueError("topk must be a non-empty increasing tuple of positive integers")
        return value


#: the fields of :meth:`RetrievalResult.to_dict`
RESULT_FIELDS = ("n_windows", "n_candidates", "n_words", "topk", "metrics", "ci", "chance",
                 "per_subject", "controls")


@dataclass
class RetrievalResult:
    """Outcome of :meth:`RetrievalEvaluator.evaluate`; accuracies are fractions in [0, 1].

    ``per_window``: one row per test window: the ``windows`` columns, then ``target``,
    ``target_word``, ``segment_rank``, ``word_rank`` (1 = best), ``segment_top{k}`` /
    ``word_top{k}`` hits, ``segment_prob`` / ``word_prob`` (softmax probability of the true
    segment / word), ``predicted_word`` and ``best_1`` ... ``best_{n_best}`` (indices of the best
    candidates). ``metrics[level]["top{k}"]``, ``ci[level]["top{k}"] = (low, high)``,
    ``chance["segment" | "word_shuffled" | "word_frequency_baseline"]["top{k}"]`` (module
    docstring). ``per_subject``: one row per
    subject with ``n_windows``, ``{level}_top{k}`` and their ``_ci_low`` / ``_ci_high``.
    ``controls`` (empty when switched off): ``within_recording`` / ``within_story`` /
    ``shuffled`` -> ``accuracy``, ``ci``, ``chance`` (``{"top{k}": ...}``) and ``n_windows``
    (plus ``n_groups`` and ``mean_candidates`` for the within-group ones);
    ``identity_ceiling[group]["top{k}"]``. Their ranks are the per-window columns
    ``within_recording_rank``, ``within_story_rank`` and ``shuffled_rank`` (``shuffled_target``:
    the candidate it was scored against; -1 where left out).
    """

    per_window: pd.DataFrame
    per_subject: pd.DataFrame
    metrics: dict[str, dict[str, float]]
    ci: dict[str, dict[str, tuple[float, float]]]
    chance: dict[str, dict[str, float]]
    n_candidates: int
    n_words: int
    topk: tuple[int, ...]
    controls: dict[str, Any] = field(default_factory=dict)

    @property
    def n_windows(self) -> int:
        return len(self.per_window)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary, everything but ``per_window`` (:data:`RESULT_FIELDS`)::

            {"n_windows": N, "n_candidates": M, "n_words": W, "topk": [1, 5, 10],
             "metrics": {"segment": {"top1": ..}, "word": {..}},
             "ci": {"segment": {"top1": [low, high], ..}, "word": {..}},
             "chance": {"segment": {"top1": ..}, "word_shuffled": {..},
                        "word_frequency_baseline": {..}},
             "per_subject": {"<subject>": {"n_windows": n, "segment": {"top1": ..},
                                           "word": {..}, "ci": {"segment": {"top1": [l, h]},
                                                                "word": {..}}}},
             "controls": {..}}

        :meth:`from_dict` reads it back.
        """
        per_subject = {}
        for row in self.per_subject.to_dict("records"):
            per_subject[str(row["subject"])] = {
                "n_windows": int(row["n_windows"]),
                **{level: {f"top{k}": float(row[f"{level}_top{k}"]) for k in self.topk}
                   for level in LEVELS},
                "ci": {level: {f"top{k}": [float(row[f"{level}_top{k}_ci_low"]),
                                           float(row[f"{level}_top{k}_ci_high"])]
                               for k in self.topk} for level in LEVELS},
            }
        return {
            "n_windows": self.n_windows,
            "n_candidates": self.n_candidates,
            "n_words": self.n_words,
            "topk": list(self.topk),
            "metrics": self.metrics,
            "ci": {lvl: {m: list(v) for m, v in d.items()} for lvl, d in self.ci.items()},
            "chance": self.chance,
            "per_subject": per_subject,
            "controls": self.controls,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], per_window: pd.DataFrame | None = None) \
            -> RetrievalResult:
        """The result summarised by :meth:`to_dict` (subjects as strings), with its
        ``per_window`` table when given (e.g. read from ``per_window_<model>.csv``), else a table
        of ``n_windows`` rows and no columns. Raises ``KeyError``/``TypeError``/``ValueError``
        on a dict of another layout."""
        topk = tuple(int(k) for k in data["topk"])
        if per_window is None:
            per_window = pd.DataFrame(index=pd.RangeIndex(int(data["n_windows"])))
        elif len(per_window) != int(data["n_windows"]):
            raise ValueError(f"per_window has {len(per_window)} rows, the summary "
                             f"{data['n_windows']} windows")
        rows = []
        for subject, values in data["per_subject"].items():
            row: dict[str, Any] = {"subject": subject, "n_windows": int(values["n_windows"])}
            row.update({f"{level}_top{k}": float(values[level][f"top{k}"])
                        for level in LEVELS for k in topk})
            for level in LEVELS:
                for k in topk:
                    low, high = values["ci"][level][f"top{k}"]
                    row[f"{level}_top{k}_ci_low"], row[f"{level}_top{k}_ci_high"] = low, high
            rows.append(row)
        hit_columns = [f"{level}_top{k}" for level in LEVELS for k in topk]
        columns = ["subject", "n_windows", *hit_columns, *[f"{c}_ci_low" for c in hit_columns],
                   *[f"{c}_ci_high" for c in hit_columns]]
        return cls(
            per_window=per_window,
            per_subject=pd.DataFrame(rows, columns=columns),
            metrics={lvl: {m: float(v) for m, v in d.items()}
                     for lvl, d in data["metrics"].items()},
            ci={lvl: {m: (float(v[0]), float(v[1])) for m, v in d.items()}
                for lvl, d in data["ci"].items()},
            chance={name: {m: float(v) for m, v in d.items()}
                    for name, d in data["chance"].items()},
            n_candidates=int(data["n_candidates"]),
            n_words=int(data["n_words"]),
            topk=topk,
            controls=data["controls"],
        )


class RetrievalEvaluator:
    """Segment- and word-level top-k retrieval accuracy with chance levels and bootstrap CIs.

    Matrix products use torch with the caller's thread settings (``torch.set_num_threads``).
    """

    def __init__(self, config: EvaluationConfig | None = None) -> None:
        self.config = config or EvaluationConfig()

    def evaluate(
        self,
        predictions: np.ndarray | torch.Tensor,
        candidates: CandidateSource,
        targets: Sequence[int] | np.ndarray,
        candidate_words: Sequence[str],
        windows: pd.DataFrame,
    ) -> RetrievalResult:
        """Score every window against every candidate.

        Parameters
        ----------
        predictions : ``[N, F, T]`` decoded features of the test windows (may be a memmap).
        candidates : ``[M, F, T]`` speech features of the distinct test segments, or a callable
            ``source(start, stop) -> [stop - start, F, T]`` (see :data:`CandidateSource`).
        targets : ``[N]`` index in ``candidates`` of each window's true segment.
        candidate_words : ``[M]`` the word at each candidate's anchor.
        windows : N rows describing the windows, with at least a ``subject`` column.
        """
        if predictions.ndim != 3:
            raise ValueError(f"predictions must be [N, F, T], got shape {tuple(predictions.shape)}")
        if len(predictions) == 0:
            raise ValueError("predictions hold no test window")
        _check_targets(targets, len(predictions), len(candidate_words))
        _check_windows(windows, len(predictions))
        return self.evaluate_batches([predictions], candidates, targets, candidate_words, windows)

    def evaluate_batches(
        self,
        batches: Iterable[np.ndarray | torch.Tensor],
        candidates: CandidateSource,
        targets: Sequence[int] | np.ndarray,
        candidate_words: Sequence[str],
        windows: pd.DataFrame,
    ) -> RetrievalResult:
        """:meth:`evaluate` on predictions that come in ``batches`` (``[n, F, T]`` each, the
        windows in the order of ``targets`` and ``windows``), e.g. straight out of a model.

        Each batch is scored against all candidates (one pass over them per batch) and only its
        per-window results are kept (ranks, best candidates, per-word log-sum-exps): memory is
        ``O(n * F * T + N * W + chunk_size * F * T)`` whatever ``N``, plus the candidates when
        they are held in memory. Results equal those of :meth:`evaluate` on the concatenated
        predictions (each window's scores are computed from its own prediction only).
        """
        cfg = self.config
        words = np.asarray(candidate_words, dtype=object)
        if words.ndim != 1 or not all(isinstance(w, str) for w in words):
            raise ValueError("candidate_words must be a flat sequence of str, one per candidate")
        n_candidates = len(words)
        if not isinstance(windows, pd.DataFrame):
            raise TypeError(f"windows must be a pandas DataFrame, got {type(windows).__name__}")
        n_windows = len(windows)
        target = _check_targets(targets, n_windows, n_candidates)
        _check_windows(windows, n_windows)
        vocabulary, word_of_candidate = np.unique(words.astype(str), return_inverse=True)
        true_word = word_of_candidate[target]

        groups = _control_groups(windows, target, n_candidates) if cfg.controls else {}
        decoy = None
        if cfg.controls:
            partner = within_subject_derangement(windows["subject"].to_numpy(),
                                                 np.random.default_rng(cfg.seed))
            decoy = np.where(partner >= 0, target[partner], -1)
        stream = self._stream_batches(batches, candidates, n_candidates, target,
                                      word_of_candidate, len(vocabulary), groups, decoy)

        per_window = windows.reset_index(drop=True).copy()
        word_rank = _word_ranks(stream.word_log_scores, true_word)
        lse = np.concatenate([scipy.special.logsumexp(block, axis=1)  # small temporaries
                              for block in _row_blocks(stream.word_log_scores)])
        columns: dict[str, Any] = {
            "target": target,
            "target_word": vocabulary[true_word],
            "segment_rank": stream.segment_rank,
            "word_rank": word_rank,
        }
        for level, rank in (("segment", stream.segment_rank), ("word", word_rank)):
            for k in cfg.topk:
                columns[f"{level}_top{k}"] = rank <= k
        true_word_score = stream.word_log_scores[np.arange(n_windows), true_word]
        columns["segment_prob"] = np.exp(stream.target_score - lse)
        columns["word_prob"] = np.exp(true_word_score - lse)
        columns["predicted_word"] = vocabulary[stream.word_log_scores.argmax(axis=1)]
        for j in range(stream.best_index.shape[1]):
            columns[f"best_{j + 1}"] = stream.best_index[:, j]
        for name, rank in stream.group_rank.items():
            columns[f"within_{name}_rank"] = rank
        if decoy is not None:
            columns["shuffled_target"] = decoy
            shuffled_rank = pd.array(stream.decoy_rank, dtype="Int64")
            shuffled_rank[decoy < 0] = pd.NA
            columns["shuffled_rank"] = shuffled_rank
        clash = sorted(set(columns) & set(per_window.columns))
        if clash:
            raise ValueError(f"windows has columns reserved for the results: {clash}")
        per_window = pd.concat([per_window, pd.DataFrame(columns)], axis=1)

        hit_columns = [f"{level}_top{k}" for level in LEVELS for k in cfg.topk]
        hits = per_window[hit_columns].to_numpy(dtype=float)
        low, high = _bootstrap_ci(hits, cfg.n_bootstrap, cfg.seed)
        metrics = _nest(hit_columns, hits.mean(axis=0))
        ci = _nest(hit_columns, list(zip(low.tolist(), high.tolist())))
        chance = {
            "segment": {f"top{k}": min(1.0, k / n_candidates) for k in cfg.topk},
            "word_shuffled": self._shuffled_word_chance(stream.word_log_scores, true_word),
            "word_frequency_baseline": _frequency_baseline(word_of_candidate, true_word,
                                                           cfg.topk),
        }
        controls = {}
        if cfg.controls:
            controls = self._controls(stream, groups, decoy, n_candidates)
        return RetrievalResult(
            per_window=per_window,
            per_subject=self._per_subject(per_window, hit_columns),
            metrics=metrics,
            ci=ci,
            chance=chance,
            n_candidates=n_candidates,
            n_words=len(vocabulary),
            topk=cfg.topk,
            controls=controls,
        )

    def _stream_batches(
        self,
        batches: Iterable[np.ndarray | torch.Tensor],
        candidates: CandidateSource,
        n_candidates: int,
        target: np.ndarray,
        word_of_candidate: np.ndarray,
        n_words: int,
        groups: dict[str, tuple[np.ndarray, np.ndarray]],
        decoy: np.ndarray | None,
    ) -> _StreamedScores:
        """:func:`_stream_scores` of each batch of predictions, concatenated over windows."""
        cfg = self.config
        n_windows = len(target)
        out: _StreamedScores | None = None
        source: _CandidateReader | None = None
        feature_shape: tuple[int, ...] = ()
        norms: dict[tuple[int, int], torch.Tensor] = {}  # candidate norms, computed once
        done = 0
        try:
            for batch in batches:
                z = _predictions_matrix(batch, first=done)
                if source is None:
                    feature_shape = tuple(batch.shape[1:])
                    source = _open_candidates(candidates, n_candidates, feature_shape)
                elif tuple(batch.shape[1:]) != feature_shape:
                    raise ValueError(f"predictions of windows {done}.. have shape "
                                     f"{tuple(batch.shape[1:])}, earlier ones {feature_shape}")
                rows = slice(done, done + len(z))
                done += len(z)
                if done > n_windows:
                    raise ValueError(f"predictions hold more than the {n_windows} windows")
                part = _stream_scores(
                    z.to(_TORCH_DTYPES[cfg.dtype]), source, target[rows], word_of_candidate,
                    n_words, cfg.chunk_size, min(cfg.n_best, n_candidates),
                    {name: (code[rows], member) for name, (code, member) in groups.items()},
                    None if decoy is None else decoy[rows], norms,
                )
                if out is None:
                    out = _StreamedScores.empty_like(part, n_windows)
                out.assign(rows, part)
                del batch, z, part  # before the next batch is made
        finally:
            if source is not None:
                source.close()
        if done != n_windows:
            raise ValueError(f"predictions hold {done} windows, expected {n_windows} "
                             "(one per row of windows)")
        return out

    def _controls(self, stream: _StreamedScores, groups: dict[str, tuple[np.ndarray, np.ndarray]],
                  decoy: np.ndarray, n_candidates: int) -> dict[str, Any]:
        """The controls of the module docstring from the streamed ranks."""
        cfg = self.config
        controls: dict[str, Any] = {}
        ceiling = {}
        for name, (code, member) in groups.items():
            n_group = member.sum(axis=1)[code]  # [N] candidates of each window's group
            ceiling[name] = {f"top{k}": float(np.mean(np.minimum(k, n_group) / n_group))
                             for k in cfg.topk}
            controls[f"within_{name}"] = {
                **control_summary(stream.group_rank[name], ceiling[name], cfg),
                "n_groups": len(member), "mean_candidates": float(n_group.mean()),
            }
        if ceiling:
            controls["identity_ceiling"] = ceiling
        kept = decoy >= 0
        if kept.any():
            controls["shuffled"] = control_summary(
                stream.decoy_rank[kept], {f"top{k}": min(1.0, k / n_candidates)
                                          for k in cfg.topk}, cfg)
        return controls

    def _shuffled_word_chance(
        self, word_log_scores: np.ndarray, true_word: np.ndarray
    ) -> dict[str, float]:
        """Mean word-level accuracy when each window is scored with another window's prediction."""
        rng = np.random.default_rng(self.config.seed)
        acc = np.zeros(len(self.config.topk))
        for _ in range(self.config.n_shuffles):
            rank = _word_ranks(word_log_scores, true_word, rng.permutation(len(true_word)))
            acc += [np.mean(rank <= k) for k in self.config.topk]
        acc /= self.config.n_shuffles
        return {f"top{k}": float(a) for k, a in zip(self.config.topk, acc)}

    def _per_subject(self, per_window: pd.DataFrame, hit_columns: list[str]) -> pd.DataFrame:
        rows = []
        for subject, group in per_window.groupby("subject", sort=True):
            hits = group[hit_columns].to_numpy(dtype=float)
            low, high = _bootstrap_ci(hits, self.config.n_bootstrap, self.config.seed)
            row: dict[str, Any] = {"subject": subject, "n_windows": len(group)}
            row.update(zip(hit_columns, hits.mean(axis=0)))
            row.update(zip([f"{c}_ci_low" for c in hit_columns], low))
            row.update(zip([f"{c}_ci_high" for c in hit_columns], high))
            rows.append(row)
        return pd.DataFrame(rows)


def control_summary(rank: np.ndarray, chance: dict[str, float],
                    config: EvaluationConfig) -> dict[str, Any]:
    """``accuracy`` (top-k of ``rank [N]``, 1 = best), bootstrap ``ci``, the given ``chance``
    and ``n_windows`` of one control."""
    hits = np.asarray(rank)[:, None] <= np.array(config.topk)[None, :]
    low, high = _bootstrap_ci(hits.astype(float), config.n_bootstrap, config.seed)
    return {
        "accuracy": {f"top{k}": float(h) for k, h in zip(config.topk, hits.mean(axis=0))},
        "ci": {f"top{k}": [float(lo), float(hi)] for k, lo, hi in zip(config.topk, low, high)},
        "chance": dict(chance),
        "n_windows": len(hits),
    }


def segment_scores(predictions: np.ndarray | torch.Tensor, candidates: np.ndarray | torch.Tensor,
                   dtype: str = "float32",
                   norms: dict[tuple[int, int], torch.Tensor] | None = None) -> np.ndarray:
    """The scores ``S [N, M]`` of the module's definition, ``S_im = <Z_i, Y_m / ||Y_m||>``, of
    decoded windows ``predictions [N, F, T]`` against ``candidates [M, F, T]`` held in memory,
    with the products in ``dtype`` (see :class:`EvaluationConfig`). ``norms``: a dict kept by
    the caller between calls with the same candidates and ``dtype``, so that their norms are
    computed once (a stream scores every window against them)."""
    if tuple(candidates.shape[1:]) != tuple(predictions.shape[1:]):
        raise ValueError(f"candidates have shape {tuple(candidates.shape)}, predictions "
                         f"{tuple(predictions.shape)}: their [F, T] differ")
    z = _predictions_matrix(predictions).to(_TORCH_DTYPES[dtype])
    score_dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
    return _normalised_scores(z, _ArrayReader(candidates).read(0, len(candidates)), 0,
                              score_dtype, norms)


def within_subject_derangement(subjects: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[N]`` partner of each window: another window of the same subject (a random cyclic
    permutation within each subject, so no window is its own partner); -1 for the windows of
    subjects that have a single one."""
    subjects = np.asarray(subjects)
    partner = np.full(len(subjects), -1, dtype=np.int64)
    for subject in pd.unique(subjects):
        rows = np.flatnonzero(subjects == subject)
        if len(rows) < 2:
            continue
        order = rows[rng.permutation(len(rows))]
        partner[order] = np.roll(order, -1)  # each to the next in a random cycle
    return partner


def phase_randomized(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Phase-randomised surrogates of ``x [..., C, T]`` (float): every channel keeps its
    amplitude spectrum exactly, the phases of every frequency (but 0 and, for even T, the
    Nyquist frequency) are shifted by uniform random angles, the same for all channels of a
    window (so cross-channel covariance is kept too), drawn anew for every window."""
    spectrum = np.fft.rfft(x, axis=-1)
    n_freq = spectrum.shape[-1]
    angle = rng.uniform(0.0, 2 * np.pi, (*x.shape[:-2], 1, n_freq))
    angle[..., 0] = 0.0
    if x.shape[-1] % 2 == 0:
        angle[..., -1] = 0.0
    out = np.fft.irfft(spectrum * np.exp(1j * angle), n=x.shape[-1], axis=-1)
    return out.astype(x.dtype, copy=False)


def _control_groups(windows: pd.DataFrame, target: np.ndarray,
                    n_candidates: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Group name -> (``[N]`` group code of each window, ``[G, M]`` bool: candidates of each
    group, i.e. the distinct targets of its windows), for the columns of :data:`GROUP_COLUMNS`
    that ``windows`` has without missing values."""
    out = {}
    for name, column in GROUP_COLUMNS.items():
        if column not in windows.columns:
            continue
        labels = windows[column]
        if labels.isna().any():
            log.info("within_%s control skipped: %d windows have no %r", name,
                     int(labels.isna().sum()), column)
            continue
        code, uniques = pd.factorize(labels.astype(str), sort=True)
        member = np.zeros((len(uniques), n_candidates), dtype=bool)
        member[code, target] = True
        out[name] = (code.astype(np.int64), member)
    return out


@dataclass
class _StreamedScores:
    segment_rank: np.ndarray  # [N] int, 1 = best
    target_score: np.ndarray  # [N] S_i,target
    best_index: np.ndarray  # [N, n_best] candidate indices, best first
    word_log_scores: np.ndarray  # [N, W] float64, log sum_{m in word} exp(S_im)
    group_rank: dict[str, np.ndarray]  # [N] rank among the candidates of the window's group
    decoy_rank: np.ndarray  # [N] rank of the decoy target among all (meaningless where none)

    @classmethod
    def empty_like(cls, part: _StreamedScores, n_windows: int) -> _StreamedScores:
        """Room for the scores of ``n_windows`` windows shaped as those of ``part``, to be
        filled batch by batch with :meth:`assign` (no list of parts concatenated at the end,
        which would hold the ``[N, W]`` word scores twice)."""
        def like(array: np.ndarray) -> np.ndarray:
            return np.empty((n_windows, *array.shape[1:]), dtype=array.dtype)

        return cls(like(part.segment_rank), like(part.target_score), like(part.best_index),
                   like(part.word_log_scores),
                   {name: like(rank) for name, rank in part.group_rank.items()},
                   like(part.decoy_rank))

    def assign(self, rows: slice, part: _StreamedScores) -> None:
        """Write the scores of the windows ``rows`` from ``part``."""
        for name in ("segment_rank", "target_score", "best_index", "word_log_scores",
                     "decoy_rank"):
            getattr(self, name)[rows] = getattr(part, name)
        for name, rank in part.group_rank.items():
            self.group_rank[name][rows] = rank


def _stream_scores(
    z: torch.Tensor,
    source: _CandidateReader,
    target: np.ndarray,
    word_of_candidate: np.ndarray,
    n_words: int,
    chunk_size: int,
    n_best: int,
    groups: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    decoy: np.ndarray | None = None,
    norms: dict[tuple[int, int], torch.Tensor] | None = None,
) -> _StreamedScores:
    """One pass over the candidates: ranks, best candidates and per-word log-sum-exps; with
    ``groups`` (name -> ``[N]`` group code, ``[G, M]`` candidate membership), the rank of the
    true candidate among its group's; with ``decoy [N]`` (candidate index, -1: none), the rank
    of the decoy among all candidates, from its own score. ``norms`` caches the candidates'
    norms from one batch of windows to the next (:func:`_normalised_scores`).

    ``z`` is ``[N, D]`` in the compute dtype. The products run in torch (the caller's threads);
    the small per-chunk bookkeeping on ``[N, chunk_size]`` scores runs in numpy, single-threaded,
    as spreading it over threads costs more than it saves, most of all on a busy machine.
    """
    n_windows, n_candidates = z.shape[0], source.n_candidates
    score_dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
    target_score = _target_scores(z, source, target, score_dtype, norms)
    rows = np.arange(n_windows)
    groups = groups or {}
    group_above = {name: np.zeros(n_windows, dtype=np.int64) for name in groups}
    if decoy is None:
        decoy = np.full(n_windows, -1)
    has_decoy = decoy >= 0
    decoy_score = _target_scores(z, source, decoy, score_dtype, norms)
    decoy_above = np.zeros(n_windows, dtype=np.int64)

    n_above = np.zeros(n_windows, dtype=np.int64)
    best_score = np.empty((n_windows, 0))
    best_index = np.empty((n_windows, 0), dtype=np.int64)
    word_log_scores = np.full((n_windows, n_words), -np.inf)
    for start in range(0, n_candidates, chunk_size):
        stop = min(start + chunk_size, n_candidates)
        scores = _normalised_scores(z, source.read(start, stop), start, score_dtype,
                                    norms)  # [N, B]

        above = scores > target_score[:, None]
        own = (target >= start) & (target < stop)
        above[rows[own], target[own] - start] = False
        n_above += above.sum(axis=1)
        for name, (code, member) in groups.items():
            group_above[name] += (above & member[:, start:stop][code]).sum(axis=1)
        if has_decoy.any():
            above = scores > decoy_score[:, None]
            own = (decoy >= start) & (decoy < stop)
            above[rows[own], decoy[own] - start] = False
            decoy_above += above.sum(axis=1)

        best_score, best_index = _best(
            np.concatenate([best_score, scores], axis=1),
            np.concatenate([best_index, np.broadcast_to(np.arange(start, stop), scores.shape)],
                           axis=1),
            n_best,
        )
        _accumulate_word_logsumexp(word_log_scores, scores, word_of_candidate[start:stop])
        log.debug("scored candidates %d-%d of %d", start, stop, n_candidates)
    return _StreamedScores(
        segment_rank=n_above + 1,
        target_score=target_score,
        best_index=best_index,
        word_log_scores=word_log_scores,
        group_rank={name: above + 1 for name, above in group_above.items()},
        decoy_rank=decoy_above + 1,
    )


def _best(
    score: np.ndarray, index: np.ndarray, n_best: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_best`` highest of each row of ``score [N, K]``, best first, with their ``index``."""
    keep = min(n_best, score.shape[1])
    top = np.argpartition(-score, keep - 1, axis=1)[:, :keep]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(score, top, axis=1)), axis=1)
    return np.take_along_axis(score, top, axis=1), np.take_along_axis(index, top, axis=1)


def _normalised_scores(
    z: torch.Tensor, chunk: torch.Tensor, start: int, score_dtype: torch.dtype,
    norms: dict[tuple[int, int], torch.Tensor] | None = None,
) -> np.ndarray:
    """CLIP scores (:func:`~braindecode_speech.training.losses.clip_scores`) of ``z [N, D]``
    against ``chunk [B, D]``: ``[N, B]`` in ``score_dtype``. ``norms`` keeps the norms of each
    chunk (by ``(start, stop)``) for the next batch of windows."""
    key = (start, start + len(chunk))
    norm = None if norms is None else norms.get(key)
    if norm is None:
        norm_dtype = torch.promote_types(chunk.dtype, score_dtype)
        norm = clip_norms(chunk, dtype=norm_dtype).to(score_dtype)
        bad = ~(torch.isfinite(norm) & (norm > 0)).numpy()
        if bad.any():
            index = (np.flatnonzero(bad) + start).tolist()
            raise ValueError(f"candidates {index[:10]} have a zero or non-finite norm (NaN/inf "
                             "values or all zeros)")
        if norms is not None:
            norms[key] = norm
    return clip_scores(z, chunk.to(z.dtype), norm).to(score_dtype).numpy()


def _target_scores(
    z: torch.Tensor, source: _CandidateReader, target: np.ndarray, score_dtype: torch.dtype,
    norms: dict[tuple[int, int], torch.Tensor] | None = None,
) -> np.ndarray:
    """``S_i,target_i`` for every window, reading each distinct target once; ``inf`` where the
    target is -1 (none). → ``[N]``"""
    out = np.full(z.shape[0], np.inf)  # float64 holds float32 scores exactly
    present = target[target >= 0]
    if not len(present):
        return out
    # the rows of each target are gathered into one reused buffer: allocating them anew for
    # every target fragments the heap (hundreds of MB kept at [1024, 360] per row)
    buffer = z.new_empty((int(np.bincount(present).max()), z.shape[1]))
    for m in np.unique(present).tolist():
        rows = np.flatnonzero(target == m)
        picked = torch.index_select(z, 0, torch.from_numpy(rows), out=buffer[:len(rows)])
        chunk = source.read(m, m + 1)
        out[rows] = _normalised_scores(picked, chunk, m, score_dtype, norms)[:, 0]
    return out


def _accumulate_word_logsumexp(acc: np.ndarray, scores: np.ndarray, word: np.ndarray) -> None:
    """Merge ``log sum exp`` of ``scores [N, B]`` per word (``word [B]``) into ``acc [N, W]``.

    Each (window, word) is reduced around its own maximum, so nothing underflows.
    """
    order = np.argsort(word, kind="stable")
    sorted_word = word[order]
    first = np.flatnonzero(np.r_[True, sorted_word[1:] != sorted_word[:-1]])
    present = sorted_word[first]
    grouped = scores[:, order].astype(np.float64)
    peak = np.maximum.reduceat(grouped, first, axis=1)  # [N, words in chunk]
    spread = np.repeat(peak, np.diff(np.r_[first, len(word)]), axis=1)
    total = np.add.reduceat(np.exp(grouped - spread), first, axis=1)
    acc[:, present] = np.logaddexp(acc[:, present], np.log(total) + peak)


#: rows of ``[N, W]`` per-window arrays processed at once after scoring (temporaries of a
#: few tens of MB, where whole-array operations would hold several copies of 80,000 × W)
ROW_BLOCK = 4096


def _row_blocks(array: np.ndarray) -> list[np.ndarray]:
    """``array`` cut into consecutive blocks of :data:`ROW_BLOCK` rows (views)."""
    return [array[start:start + ROW_BLOCK] for start in range(0, len(array), ROW_BLOCK)]


def _word_ranks(word_log_scores: np.ndarray, true_word: np.ndarray,
                rows: np.ndarray | None = None) -> np.ndarray:
    """Rank (1 = best) of ``true_word[i]`` in row ``rows[i]`` (default ``i``) of
    ``word_log_scores [N, W]``, :data:`ROW_BLOCK` windows at a time."""
    rank = np.empty(len(true_word), dtype=np.int64)
    for start in range(0, len(true_word), ROW_BLOCK):
        block = slice(start, start + ROW_BLOCK)
        scores = word_log_scores[block] if rows is None else word_log_scores[rows[block]]
        true = scores[np.arange(len(scores)), true_word[block]]
        rank[block] = (scores > true[:, None]).sum(axis=1) + 1
    return rank


def _frequency_baseline(
    word_of_candidate: np.ndarray, true_word: np.ndarray, topk: tuple[int, ...]
) -> dict[str, float]:
    """Expected top-k accuracy of ranking words by candidate count, ties broken at random."""
    count = np.bincount(word_of_candidate)
    true_count = count[true_word]
    sorted_count = np.sort(count)
    n_more = len(count) - np.searchsorted(sorted_count, true_count, side="right")
    n_equal = np.searchsorted(sorted_count, true_count, side="right") - np.searchsorted(
        sorted_count, true_count, side="left"
    )
    return {
        f"top{k}": float(np.mean(np.clip((k - n_more) / n_equal, 0.0, 1.0))) for k in topk
    }


def _bootstrap_ci(
    hits: np.ndarray, n_bootstrap: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile 95 % bootstrap interval (low ``[K]``, high ``[K]``) of the column means of
    ``hits [N, K]``: windows resampled with replacement, the same draws for every column
    (:func:`scipy.stats.bootstrap`, in batches of about 4 M values)."""
    if len(hits) < 2:  # one window: every resample is that window
        return hits.mean(axis=0), hits.mean(axis=0)
    result = scipy.stats.bootstrap(
        (hits,), np.mean, axis=0, vectorized=True, n_resamples=n_bootstrap,
        batch=max(1, 2**22 // hits.size), method="percentile", confidence_level=0.95,
        random_state=np.random.default_rng(seed))
    return result.confidence_interval.low, result.confidence_interval.high


def _nest(columns: list[str], values: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """``["segment_top1", ...]`` + values → ``{"segment": {"top1": ...}, ...}``."""
    out: dict[str, dict[str, Any]] = {level: {} for level in LEVELS}
    for column, value in zip(columns, values):
        level, metric = column.split("_", 1)
        out[level][metric] = value if isinstance(value, tuple) else float(value)
    return out


# ---------------------------------------------------------------------------------------------
# Inputs


def _predictions_matrix(predictions: np.ndarray | torch.Tensor, first: int = 0) -> torch.Tensor:
    """``[N, F, T]`` → float ``[N, F * T]`` tensor, checked for NaN/inf (memory shared with
    ``predictions`` where possible; read-only arrays are copied); ``first``: the index of its
    first window, for messages."""
    if predictions.ndim != 3:
        raise ValueError(f"predictions must be [N, F, T], got shape {tuple(predictions.shape)}")
    if len(predictions) == 0:
        raise ValueError("predictions hold no test window")
    if isinstance(predictions, np.ndarray) and not predictions.flags.writeable:
        predictions = np.array(predictions)  # torch cannot share read-only memory
    z = torch.as_tensor(predictions)
    z = z.reshape(z.shape[0], -1)
    if not z.is_floating_point():
        raise ValueError(f"predictions must be floating point, got {z.dtype}")
    rows_per_block = max(1, 2**22 // max(1, z.shape[1]))  # isfinite's temporaries stay small
    bad = np.concatenate([  # numpy: one pass, where torch's isfinite makes three
        ~np.isfinite((block.float() if block.dtype == torch.bfloat16 else block).numpy()).all(1)
        for block in z.split(rows_per_block)
    ])
    if bad.any():
        windows = (np.flatnonzero(bad)[:10] + first).tolist()
        raise ValueError(f"predictions of windows {windows} contain NaN/inf")
    return z


def _check_targets(
    targets: Sequence[int] | np.ndarray, n_windows: int, n_candidates: int
) -> np.ndarray:
    target = np.asarray(targets)
    if target.shape != (n_windows,):
        raise ValueError(f"targets must have shape ({n_windows},), got {target.shape}")
    if n_windows and not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"targets must be integer candidate indices, got dtype {target.dtype}")
    out_of_range = (target < 0) | (target >= n_candidates)
    if out_of_range.any():
        raise ValueError(
            f"targets out of range [0, {n_candidates}) for windows "
            f"{np.flatnonzero(out_of_range)[:10].tolist()}: {target[out_of_range][:10].tolist()}"
        )
    return target.astype(np.int64)


def _check_windows(windows: pd.DataFrame, n_windows: int) -> None:
    if not isinstance(windows, pd.DataFrame):
        raise TypeError(f"windows must be a pandas DataFrame, got {type(windows).__name__}")
    if len(windows) != n_windows:
        raise ValueError(f"windows has {len(windows)} rows but predictions has {n_windows}")
    if "subject" not in windows.columns:
        raise ValueError(f"windows lacks a 'subject' column (columns: {list(windows.columns)})")


class _CandidateReader(abc.ABC):
    """Random access to candidate chunks as ``[B, D]`` tensors (valid until the next read)."""

    def __init__(self, n_candidates: int) -> None:
        self.n_candidates = n_candidates

    @abc.abstractmethod
    def read(self, start: int, stop: int) -> torch.Tensor:
        """Candidates ``start .. stop - 1`` as ``[stop - start, D]``."""

    def close(self) -> None:  # noqa: B027 (only file-backed readers hold resources)
        """Release files and buffers."""


class _ArrayReader(_CandidateReader):
    def __init__(self, array: np.ndarray | torch.Tensor) -> None:
        super().__init__(len(array))
        self._array = array

    def read(self, start: int, stop: int) -> torch.Tensor:
        chunk = self._array[start:stop]
        if isinstance(chunk, np.ndarray) and not chunk.flags.writeable:
            chunk = np.array(chunk)  # torch refuses to share read-only memory
        return torch.as_tensor(chunk).reshape(stop - start, -1)


class _MemmapReader(_CandidateReader):
    """Chunks of a C-ordered memmap handed out without a copy
    (:meth:`~braindecode_speech.data.cache.RowReader.view`: each chunk of the file mapped on its
    own, read-only and pre-faulted, the next one announced to the kernel). The mapping lives as
    long as the returned tensor: once the caller drops it, its pages leave the resident set, so
    at most one chunk counts in memory whatever M.
    """

    def __init__(self, array: np.memmap) -> None:
        super().__init__(len(array))
        try:
            self._rows = RowReader(array)
        except CacheError as exc:
            raise ValueError(str(exc)) from None
        self._row_size = int(np.prod(array.shape[1:]))

    def read(self, start: int, stop: int) -> torch.Tensor:
        rows = self._rows.view(start, stop)
        with warnings.catch_warnings():  # read-only on purpose: scores never write to candidates
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            return torch.from_numpy(rows.reshape(stop - start, self._row_size))

    def close(self) -> None:
        self._rows.close()


class _CallableReader(_CandidateReader):
    def __init__(self, source: Callable[[int, int], Any], n_candidates: int,
                 feature_shape: tuple[int, ...]) -> None:
        super().__init__(n_candidates)
        self._source = source
        self._feature_shape = feature_shape

    def read(self, start: int, stop: int) -> torch.Tensor:
        chunk = torch.as_tensor(self._source(start, stop))
        expected = (stop - start, *self._feature_shape)
        if tuple(chunk.shape) != expected:
            raise ValueError(
                f"candidate source {self._source!r} returned shape {tuple(chunk.shape)} for "
                f"candidates {start}-{stop - 1}, expected {expected}"
            )
        return chunk.reshape(stop - start, -1)


def _open_candidates(
    candidates: CandidateSource, n_candidates: int, feature_shape: tuple[int, ...]
) -> _CandidateReader:
    """The reader for ``candidates``, checked against ``[n_candidates, *feature_shape]``."""
    if callable(candidates) and not isinstance(candidates, (np.ndarray, torch.Tensor)):
        return _CallableReader(candidates, n_candidates, feature_shape)
    if not isinstance(candidates, (np.ndarray, torch.Tensor)):
        raise TypeError(
            f"candidates must be an array, a tensor or a callable, got {type(candidates).__name__}"
        )
    expected = (n_candidates, *feature_shape)
    if tuple(candidates.shape) != expected:
        raise ValueError(
            f"candidates have shape {tuple(candidates.shape)}, expected {expected} "
            f"(len(candidate_words), then the predictions' [F, T])"
        )
    if (
        isinstance(candidates, np.memmap)
        and candidates.filename is not None
        and candidates.flags.c_contiguous
        and candidates.dtype.isnative
        and not isinstance(candidates.base, np.ndarray)  # a whole mapping, not a view of one
    ):
        return _MemmapReader(candidates)
    if isinstance(candidates, np.memmap):
        log.warning(
            "candidates is a view of a memmap: it is read through the mapping, whose pages count "
            "in resident memory; pass the memmap itself to stream it with bounded memory"
        )
    return _ArrayReader(candidates)
