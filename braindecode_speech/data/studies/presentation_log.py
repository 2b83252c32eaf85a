"""Presentation (Neurobehavioral Systems) log files, and their alignment to MEG triggers.

A log starts with ``Scenario - ...`` and ``Logfile written - ...`` lines, then holds two
tab-separated tables separated by blank lines. The first table has the columns ``Subject``,
``Trial``, ``Event Type``, ``Code``, ``Time``, ``TTime``, ``Uncertainty``, ``Duration``,
``Uncertainty``, ``ReqTime``, ``ReqDur``, ``Stim Type``, ``Pair Index``; times are integers in
units of 0.1 ms on the stimulus computer's clock. Only the first table is needed.

The stimulus computer's clock and the MEG's differ by an offset and a tiny drift: the events
that also sent a trigger are matched to the triggers found in the MEG (same order of codes,
allowing for missing or extra triggers) and a line ``meg_time = slope * log_time + intercept``
is fitted (:func:`fit_clock`).
"""

from __future__ import annotations

import difflib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import theilslopes

__all__ = ["LogError", "ClockFit", "read_presentation_log", "fit_clock"]

logger = logging.getLogger(__name__)

#: log time unit, s
TICK = 1e-4
_COLUMNS = {"Subject": "subject", "Trial": "trial", "Event Type": "event_type", "Code": "code",
            "Time": "time", "TTime": "ttime", "Uncertainty": "time_uncertainty",
            "Duration": "duration", "Uncertainty.1": "duration_uncertainty",
            "ReqTime": "req_time", "ReqDur": "req_dur", "Stim Type": "stim_type",
            "Pair Index": "pair_index"}


class LogError(ValueError):
    """A log cannot be read or aligned; the message names the file."""


def read_presentation_log(path: Path) -> pd.DataFrame:
    """The first table of a Presentation log, with snake-case columns (``subject``,
    ``trial``, ``event_type``, ``code``, ``time``...) and times converted to s.

    A log holding several scenarios (a restarted experiment) is read up to the second one,
    with a warning. A line that does not start with the subject id continues the previous
    line (some logs have line breaks inside a ``Code``).
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise LogError(f"{path}: cannot read the log ({exc})") from None
    scenarios = text.split("Scenario -")
    if len(scenarios) < 2:
        raise LogError(f"{path}: not a Presentation log (no 'Scenario -' line)")
    if len(scenarios) > 2:
        logger.warning("%s: %d scenarios in one log; using the first", path, len(scenarios) - 1)
    lines = scenarios[1].splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("Subject\tTrial\t"))
    except StopIteration:
        raise LogError(f"{path}: no 'Subject<TAB>Trial' header line") from None
    rows: list[str] = []
    subject = None
    for line in lines[start + 1:]:
        if not line.strip():
            if rows:
                break  # end of the first table
            continue
        first = line.split("\t", 1)[0]
        subject = subject or first
        if first != subject and rows:
            rows[-1] += line
        else:
            rows.append(line)
    table = pd.read_csv(io.StringIO("\n".join([lines[start], *rows])), sep="\t", dtype=str,
                        keep_default_na=False)
    table = table.rename(columns=_COLUMNS)
    for column in ("time", "ttime", "duration", "req_time"):
        if column in table.columns:
            table[column] = pd.to_numeric(table[column], errors="coerce") * TICK
    missing = {"event_type", "code", "time"} - set(table.columns)
    if missing:
        raise LogError(f"{path}: log table lacks columns {sorted(missing)}")
    return table


@dataclass(frozen=True)
class ClockFit:
    """``meg_time = slope * log_time + intercept`` (s), fitted on ``n_matched`` events whose
    largest residual is ``max_error`` s."""

    slope: float
    intercept: float
    n_matched: int
    max_error: float

    def __call__(self, log_time: np.ndarray | float) -> np.ndarray | float:
        return self.slope * np.asarray(log_time) + self.intercept


def fit_clock(log_times: np.ndarray, log_codes: np.ndarray, meg_times: np.ndarray,
              meg_codes: np.ndarray, source: str, tolerance: float = 0.005,
              max_drift: float = 1e-3) -> ClockFit:
    """Map log times to MEG times from the events seen by both.

    The two code sequences are aligned (longest matching runs, so missing or extra triggers on
    either side are skipped), a robust line (Theil-Sen) is fitted to the matched pairs, pairs
    farther than ``tolerance`` s from it are dropped, and the line is refitted by least
    squares on the rest.

    Raises
    ------
    LogError : naming ``source``, when fewer than 3 pairs (or fewer than half of the matched
        pairs) agree within ``tolerance``, or the slope is farther than ``max_drift`` from 1.
    """
    log_times, meg_times = np.asarray(log_times, float), np.asarray(meg_times, float)
    matcher = difflib.SequenceMatcher(None, [int(c) for c in log_codes],
                                      [int(c) for c in meg_codes], autojunk=False)
    pairs = np.array([(block.a + i, block.b + i) for block in matcher.get_matching_blocks()
                      for i in range(block.size)], dtype=int).reshape(-1, 2)
    if len(pairs) < 3:
        raise LogError(f"{source}: only {len(pairs)} log events match MEG triggers; cannot "
                       f"align the log ({len(log_codes)} log events with triggers, "
                       f"{len(meg_codes)} MEG triggers)")
    x, y = log_times[pairs[:, 0]], meg_times[pairs[:, 1]]
    slope, intercept, _, _ = theilslopes(y, x)
    inliers = np.abs(y - (slope * x + intercept)) <= tolerance
    if inliers.sum() < max(3, len(pairs) / 2):
        raise LogError(f"{source}: poor log-to-MEG alignment: only {int(inliers.sum())} of "
                       f"{len(pairs)} matched triggers lie within {tolerance * 1e3:.1f} ms of "
                       "a common clock line")
    slope, intercept = np.polyfit(x[inliers], y[inliers], 1)
    if abs(slope - 1) > max_drift:
        raise LogError(f"{source}: log-to-MEG clock slope {slope:.6f} is implausible "
                       f"(|slope - 1| > {max_drift})")
    error = float(np.abs(y[inliers] - (slope * x[inliers] + intercept)).max())
    if inliers.sum() < len(pairs):
        logger.info("%s: %d of %d matched triggers ignored as outliers", source,
                    len(pairs) - int(inliers.sum()), len(pairs))
    return ClockFit(float(slope), float(intercept), int(inliers.sum()), error)
