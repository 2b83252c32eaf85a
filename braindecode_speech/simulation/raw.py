"""A lazily simulated ``mne.io.Raw``: samples are computed when read.

:class:`SimulatedRaw` plugs a :class:`~.brain.RecordingSimulator` into MNE's reader interface
(``_read_segment_file``), so ``raw.save`` / ``mne_bids.write_raw_bids`` write a recording of
any length buffer by buffer, with bounded memory.
"""

from __future__ import annotations

import datetime

import mne
from mne._fiff.utils import _mult_cal_one

from .brain import RecordingSimulator

__all__ = ["SimulatedRaw"]


class SimulatedRaw(mne.io.BaseRaw):
    """Raw data produced on demand by ``simulator``.

    Parameters
    ----------
    simulator : the recording (its model's ``info`` gives channels and sampling rate).
    meas_date : measurement date (UTC) stored in the file.
    buffer_seconds : size of the chunks computed at once when saving, s.
    """

    def __init__(self, simulator: RecordingSimulator, meas_date: datetime.datetime,
                 buffer_seconds: float = 10.0) -> None:
        info = simulator.model.info.copy()
        info.set_meas_date(meas_date)
        super().__init__(info, preload=False, first_samps=(0,),
                         last_samps=(simulator.n_times - 1,), filenames=(None,),
                         raw_extras=[dict(simulator=simulator)], orig_format="single",
                         buffer_size_sec=buffer_seconds, verbose=False)

    def _read_segment_file(self, data, idx, fi, start, stop, cals, mult):
        """Fill ``data`` with the simulated samples ``[start, stop)`` of channels ``idx``."""
        _mult_cal_one(data, self._raw_extras[fi]["simulator"](start, stop), idx, cals, mult)
