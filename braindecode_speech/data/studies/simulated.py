"""The simulated study (:mod:`braindecode_speech.simulation`) read as a BIDS dataset.

Generate it with ``braindecode-speech simulate --out DIR``; events.tsv columns are described
in ``DIR/task-<k>_events.json`` and match the defaults of :class:`~.bids.BIDSColumns`.
"""

from __future__ import annotations

from pathlib import Path

from ..study import StudyError
from .bids import BIDSColumns, BIDSStudy

__all__ = ["MARKER", "SimulatedStudy"]

#: written last by the simulation: a study folder without it is incomplete
MARKER = Path("sourcedata") / "simulation" / "complete.json"


class SimulatedStudy(BIDSStudy):
    """A complete simulated study (MEG or EEG, found from the data).

    Parameters
    ----------
    root : the folder written by :func:`braindecode_speech.simulation.simulate`.
    subjects : subject labels to keep (``"01"``...); ``None`` for all.
    strict : raise on a missing events file (True) or skip the recording (False).
    """

    name = "simulated"

    def __init__(self, root: str | Path, subjects: list[str] | None = None,
                 strict: bool = True) -> None:
        if not (Path(root) / MARKER).is_file():
            raise StudyError(f"{root}: not a complete simulated study (no {MARKER}); generate "
                             "it with `braindecode-speech simulate --out DIR`")
        super().__init__(root, subjects, columns=BIDSColumns(), strict=strict)
