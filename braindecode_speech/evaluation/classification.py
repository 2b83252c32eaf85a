"""Evaluation of the tasks beyond retrieval: speech detection and phoneme classification.

Results are computed from confusion matrices of *units*: for speech detection a unit is a test
window and its ``T`` time points (each point's prediction: logit > 0); for phoneme
classification a unit is a test window, or a group of ``task.average`` windows of the same
phoneme averaged before the model. Units are what the bootstrap resamples (the time points of a
window are not independent).

Metrics (fractions in [0, 1]):

- ``f1_macro``: the mean over classes of each class's F1 (``2 TP / (2 TP + FP + FN)``), over the
  classes present in the truth or the predictions (scikit-learn's ``f1_score(average="macro")``);
  the LibriBrain 2025 competition's metric for both tasks.
- ``balanced_accuracy``: the mean over the classes present in the truth of their recall.

Chance levels: ``chance`` is a guess drawn independently of the brain with the test prior
(class ``c`` predicted with probability ``p_c``): its expected F1 for class ``c`` is ``p_c``,
so F1-macro ``1 / K`` and balanced accuracy ``1 / K`` for ``K`` classes in the truth.
``majority`` predicts the most frequent training class everywhere: F1-macro
``2 p / (1 + p) / K`` with ``p`` that class's test frequency (only that class scores), balanced
accuracy ``1 / K``. The ``shuffled`` control below is the chance level of the model's own
distribution of predictions.

Controls (``evaluation.controls``): ``shuffled`` scores each unit's predictions against the
labels of another unit of the same subject (a seeded derangement: must give chance; absent when
every subject has a single unit);
the pipeline adds ``surrogate`` (phase-randomised brain windows) and, on request,
``train_null`` (a model trained on mismatched pairs), as for retrieval.

Confidence intervals: percentile bootstrap 95 % over units (``evaluation.n_bootstrap``
resamples, ``evaluation.seed``), the same draws for every metric.

F1-macro and balanced accuracy are computed here from summed confusion matrices rather than
with scikit-learn, because the bootstrap evaluates them on thousands of resampled confusion
matrices at once; the tests check them against scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse

from .retrieval import EvaluationConfig, within_subject_derangement

__all__ = ["METRICS", "TaskResult", "f1_macro", "balanced_accuracy", "unit_confusions",
           "evaluate_units", "TASK_SCHEMA_FIELDS"]

#: the metrics of a task report
METRICS = ("f1_macro", "balanced_accuracy")
#: the fields of :meth:`TaskResult.to_dict`
TASK_SCHEMA_FIELDS = ("task", "classes", "n_units", "n_points", "metrics", "ci", "chance",
                      "majority", "per_subject", "per_class", "confusion", "controls")


def f1_macro(confusion: np.ndarray) -> np.ndarray:
    """F1-macro of ``confusion [..., K, K]`` (rows: truth, columns: prediction) over the classes
    present in the truth or the predictions; 0 where there is no count."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    truth, predicted = confusion.sum(-1), confusion.sum(-2)
    present = (truth + predicted) > 0
    f1 = np.divide(2 * tp, truth + predicted, out=np.zeros_like(tp), where=present)
    return np.divide(f1.sum(-1), present.sum(-1), out=np.zeros(f1.shape[:-1]),
                     where=present.sum(-1) > 0)


def balanced_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Mean recall of ``confusion [..., K, K]`` over the classes present in the truth."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    truth = confusion.sum(-1)
    present = truth > 0
    recall = np.divide(tp, truth, out=np.zeros_like(tp), where=present)
    return np.divide(recall.sum(-1), present.sum(-1), out=np.zeros(recall.shape[:-1]),
                     where=present.sum(-1) > 0)


def _metrics(confusion: np.ndarray) -> np.ndarray:
    """``[..., len(METRICS)]`` metrics of ``confusion [..., K, K]``."""
    return np.stack([f1_macro(confusion), balanced_accuracy(confusion)], axis=-1)


def unit_confusions(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> \
        scipy.sparse.csr_matrix:
    """``[N, K·K]`` sparse confusion counts of ``N`` units from their labels ``[N]`` or
    ``[N, T]`` (truth and prediction, class indices; truth < 0: not counted)."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    truth = truth.reshape(len(truth), -1 if truth.size else 1)
    predicted = predicted.reshape(len(predicted), -1 if predicted.size else 1)
    unit = np.repeat(np.arange(len(truth)), truth.shape[1])
    code = truth.astype(np.int64) * n_classes + predicted.astype(np.int64)
    keep = truth.reshape(-1) >= 0
    return scipy.sparse.csr_matrix(
        (np.ones(int(keep.sum())), (unit[keep], code.reshape(-1)[keep])),
        shape=(len(truth), n_classes * n_classes))


def _bootstrap(confusions: scipy.sparse.csr_matrix, n_classes: int, n_resamples: int,
               seed: int) -> np.ndarray:
    """Percentile 95 % intervals ``[len(METRICS), 2]`` of the metrics of the summed confusion
    of units resampled with replacement (``confusions [N, K·K]``)."""
    n = confusions.shape[0]
    if n < 2:
        value = _metrics(np.asarray(confusions.sum(0)).reshape(n_classes, n_classes))
        return np.stack([value, value], axis=-1)
    rng = np.random.default_rng(seed)
    values = []
    chunk = max(1, 2**22 // n)
    for start in range(0, n_resamples, chunk):
        draws = rng.integers(0, n, size=(min(chunk, n_resamples - start), n))
        weights = np.stack([np.bincount(d, minlength=n) for d in draws]).astype(np.float64)
        summed = np.asarray((confusions.T @ weights.T).T)
        values.append(_metrics(summed.reshape(-1, n_classes, n_classes)))
    values = np.concatenate(values)
    return np.stack([np.percentile(values, 2.5, axis=0),
                     np.percentile(values, 97.5, axis=0)], axis=-1)


def _summary(confusions: scipy.sparse.csr_matrix, n_classes: int,
             config: EvaluationConfig) -> dict[str, Any]:
    """Metrics, intervals and counts of a set of units."""
    confusion = np.asarray(confusions.sum(0)).reshape(n_classes, n_classes)
    values = _metrics(confusion)
    ci = _bootstrap(confusions, n_classes, config.n_bootstrap, config.seed)
    return {"metrics": {m: float(v) for m, v in zip(METRICS, values)},
            "ci": {m: [float(lo), float(hi)] for m, (lo, hi) in zip(METRICS, ci)},
            "n_units": int(confusions.shape[0]), "n_points": int(confusion.sum()),
            "confusion": confusion.astype(np.int64)}


@dataclass
class TaskResult:
    """Outcome of :func:`evaluate_units` (module docstring); every metric is a fraction.

    ``metrics[m]``, ``ci[m] = [low, high]`` for ``m`` in :data:`METRICS`; ``chance[m]`` and
    ``majority[m]``; ``per_subject[subject]`` -> ``n_units``, ``metrics``, ``ci``;
    ``per_class[class]`` -> ``f1``, ``precision``, ``recall``, ``support`` (points);
    ``confusion [K, K]`` (rows: truth); ``controls[name]`` -> ``metrics``, ``ci``, ``n_units``.
    """

    task: str
    classes: list[str]
    n_units: int
    n_points: int
    metrics: dict[str, float]
    ci: dict[str, list[float]]
    chance: dict[str, float]
    majority: dict[str, float]
    per_subject: dict[str, dict[str, Any]]
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    controls: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in TASK_SCHEMA_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        return cls(**{name: data[name] for name in TASK_SCHEMA_FIELDS})

    def per_subject_table(self) -> pd.DataFrame:
        """One row per subject: ``subject``, ``n_units``, each metric and its interval."""
        rows = []
        for subject, entry in self.per_subject.items():
            row = {"subject": subject, "n_units": entry["n_units"]}
            for m in METRICS:
                row[m] = entry["metrics"][m]
                row[f"{m}_ci_low"], row[f"{m}_ci_high"] = entry["ci"][m]
            rows.append(row)
        return pd.DataFrame(rows)


def evaluate_units(task: str, classes: list[str], truth: np.ndarray, predicted: np.ndarray,
                   subjects: np.ndarray, train_prior: np.ndarray, config: EvaluationConfig,
                   controls: dict[str, np.ndarray] | None = None) -> TaskResult:
    """Score the predictions of ``N`` units.

    Parameters
    ----------
    task : the task's name (reported).
    classes : the ``K`` class names; labels are indices into them.
    truth, predicted : ``[N]`` or ``[N, T]`` class indices (truth < 0: not counted).
    subjects : ``[N]`` subject of each unit.
    train_prior : ``[K]`` class frequencies in training (the majority baseline's class).
    config : bootstrap settings, ``seed``, and whether ``controls`` are computed.
    controls : other predictions of the same units (``[N]`` or ``[N, T]``, e.g. from
        surrogate brain windows), scored like ``predicted``.
    """
    k = len(classes)
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    subjects = np.asarray(subjects).astype(str)
    confusions = unit_confusions(truth, predicted, k)
    overall = _summary(confusions, k, config)
    confusion = overall["confusion"]
    support = confusion.sum(1)
    present = support > 0
    n_present = max(int(present.sum()), 1)
    majority_class = int(np.argmax(train_prior))
    p_major = support[majority_class] / max(support.sum(), 1)
    chance = {"f1_macro": 1.0 / n_present, "balanced_accuracy": 1.0 / n_present}
    majority = {"f1_macro": float(2 * p_major / (1 + p_major) / n_present)
                if p_major > 0 else 0.0, "balanced_accuracy": 1.0 / n_present}
    per_subject = {}
    for subject in pd.unique(subjects):
        rows = np.flatnonzero(subjects == subject)
        entry = _summary(confusions[rows], k, config)
        per_subject[str(subject)] = {"n_units": entry["n_units"], "metrics": entry["metrics"],
                                     "ci": entry["ci"]}
    predicted_total = confusion.sum(0)
    per_class = {}
    for c, name in enumerate(classes):
        if support[c] == 0 and predicted_total[c] == 0:
            continue
        tp = confusion[c, c]
        per_class[name] = {
            "f1": float(2 * tp / (support[c] + predicted_total[c])),
            "precision": float(tp / predicted_total[c]) if predicted_total[c] else 0.0,
            "recall": float(tp / support[c]) if support[c] else 0.0,
            "support": int(support[c])}
    result = TaskResult(task=task, classes=list(classes), n_units=overall["n_units"],
                        n_points=overall["n_points"], metrics=overall["metrics"],
                        ci=overall["ci"], chance=chance, majority=majority,
                        per_subject=per_subject, per_class=per_class,
                        confusion=confusion.tolist())
    if config.controls:
        partner = within_subject_derangement(subjects, np.random.default_rng(config.seed))
        rows = np.flatnonzero(partner >= 0)
        if len(rows):  # subjects with a single unit have no partner
            shuffled = unit_confusions(truth[partner[rows]], predicted[rows], k)
            result.controls["shuffled"] = _control(shuffled, k, config)
    for name, other in (controls or {}).items():
        result.controls[name] = _control(unit_confusions(truth, np.asarray(other), k), k,
                                         config)
    return result


def _control(confusions: scipy.sparse.csr_matrix, n_classes: int,
             config: EvaluationConfig) -> dict[str, Any]:
    entry = _summary(confusions, n_classes, config)
    return {"metrics": entry["metrics"], "ci": entry["ci"], "n_units": entry["n_units"]}
