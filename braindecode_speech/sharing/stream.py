"""Decoding a live stream: chunks of M/EEG samples in, a ranking of the candidate segments out
for every window as soon as its last sample has arrived.

>>> stream = StreamDecoder(decoder, ch_names, sfreq=1000.0, candidates=candidates)
>>> rows = stream.feed(chunk)      # chunk [C, n] in SI units; one row per completed window

Preprocessing is that of :meth:`BrainDecoder.decode`, made causal: the polyphase resampler of
:func:`~braindecode_speech.data.preprocessing.preprocess` (the same Kaiser-windowed FIR) runs
chunk by chunk with its input history kept (:class:`StreamResampler`), the window is
baseline-corrected and scaled with a scaler of the model folder and clamped exactly as
:class:`~braindecode_speech.data.dataset.WindowDataset` does, and scored by
:meth:`BrainDecoder.score`. Windows are anchored every ``hop`` s on the stream's clock (sample 0
at 0 s) exactly as ``decode(..., step=hop)`` anchors them on a recording's.

The resampler's filter has two phases. ``"zero"`` is the offline filter itself (linear phase,
centred): each output sample waits for ``10 / min(sfreq_in, sfreq_out)`` s of later input, and
the streamed windows equal the offline ones (but for the first and last of those spans, where
offline pads the recording by reflection). ``"minimum"`` (default) is its minimum-phase
version (same magnitude response): no wait, at the price of a frequency-dependent delay of the
signal (about 13 ms below 20 Hz at 120 Hz, against the offline filter's none).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
import pandas as pd
from scipy import signal

from ..data.dataset import RobustScaler, read_brain_window
from ..experiments.prepare import window_baseline
from .decoder import BrainDecoder, Candidates, top_candidates
from .folder import SensorLayout, SharingError

__all__ = ["StreamDecoder", "StreamResampler", "stream_sensors"]

logger = logging.getLogger(__name__)

Phase = Literal["minimum", "zero"]


class StreamResampler:
    """Polyphase resampling of a stream from ``sfreq_in`` to ``sfreq_out`` Hz, chunk by chunk.

    The filter is the offline one (that of :mod:`braindecode_speech.data.preprocessing`: a
    Kaiser-windowed (beta 5) sinc of ``±10`` samples at the lower of the two rates). Output
    sample ``n`` is at ``n / sfreq_out`` s on the input's clock. The last input samples (one
    filter length) are kept between calls, so that any split of a signal into chunks gives the
    same output as one call; samples before the first are zeros.

    Parameters
    ----------
    sfreq_in, sfreq_out : rates, Hz.
    n_channels : channels of the chunks.
    phase : ``"zero"`` (the offline filter, centred: output ``n`` is emitted once the input
        reaches ``n / sfreq_out + delay`` s, see :attr:`delay`) or ``"minimum"`` (its
        minimum-phase version: output ``n`` is emitted as soon as the input reaches it).
    """

    def __init__(self, sfreq_in: float, sfreq_out: float, n_channels: int,
                 phase: Phase = "minimum") -> None:
        if phase not in ("minimum", "zero"):
            raise SharingError(f"phase must be 'minimum' or 'zero', got {phase!r}")
        ratio = Fraction(sfreq_out / sfreq_in).limit_denominator(1000)
        self.up, self.down = ratio.numerator, ratio.denominator
        if ratio == 1:
            taps, self._shift = np.ones(1), 0
        else:
            rate = max(self.up, self.down)
            taps = signal.firwin(20 * rate + 1, 1.0 / rate, window=("kaiser", 5.0)) * self.up
            if phase == "minimum":
                taps, self._shift = signal.minimum_phase(taps, method="homomorphic",
                                                         half=False), 0
            else:
                self._shift = 10 * rate
        n_taps = math.ceil(len(taps) / self.up)
        self._taps = np.zeros((self.up, n_taps))  # polyphase: row r holds taps r, r + up, ...
        for r in range(self.up):
            self._taps[r, :len(taps[r::self.up])] = taps[r::self.up]
        self._history = np.zeros((n_channels, n_taps - 1))
        self.n_in = 0
        self.n_out = 0
        self.delay = self._shift / (self.up * sfreq_in)
        """s of later input an output sample waits for (0 for ``"minimum"``)"""

    def __call__(self, x: np.ndarray, block: int = 512) -> np.ndarray:
        """The output samples ``[C, m]`` that the input up to the end of ``x [C, n]`` completes,
        computed ``block`` outputs at a time."""
        buffer = np.concatenate([self._history, np.asarray(x, dtype=np.float64)], axis=1)
        first = self.n_in - self._history.shape[1]  # input index of buffer[:, 0]
        self.n_in += x.shape[1]
        stop = max(self.n_out, (self.n_in * self.up - 1 - self._shift) // self.down + 1)
        n_taps = self._taps.shape[1]
        out = np.empty((x.shape[0], stop - self.n_out))
        for lo in range(self.n_out, stop, block):
            n = np.arange(lo, min(lo + block, stop))
            position = n * self.down + self._shift  # on the upsampled grid
            last = position // self.up  # last input sample of output n
            rows = last[:, None] - np.arange(n_taps)[None, :] - first
            out[:, n - self.n_out] = np.einsum("cmj,mj->cm", buffer[:, rows],
                                               self._taps[position % self.up])
        self.n_out = stop
        self._history = buffer[:, buffer.shape[1] - (n_taps - 1):]
        return out


def stream_sensors(decoder: BrainDecoder, ch_names: list[str], subject: str | None = None,
                   recording: str | None = None) -> tuple[SensorLayout, RobustScaler | None]:
    """The sensor layout of the model folder a stream with channels ``ch_names`` is read with,
    and the scaler of its windows.

    ``recording`` (a training recording's uid): its layout and scaler. Otherwise the first
    training recording (of ``subject``'s, when it is a training subject) whose sensors are all in
    the stream, and the per-channel median of the scalers of the recordings with the same
    sensors (``subject``'s, when a training subject). :class:`SharingError` when the stream
    lacks the sensors of every candidate recording.
    """
    layouts = list(zip(decoder.layouts, decoder.scalers.brain))
    if recording is not None:
        chosen = [(lay, sc) for lay, sc in layouts if lay.uid == recording]
        if not chosen:
            raise SharingError(f"recording {recording!r} is not one the model was trained on "
                               f"({', '.join(lay.uid for lay in decoder.layouts)})")
        pool = chosen
    else:
        own = [(lay, sc) for lay, sc in layouts if lay.subject == subject]
        pool = own or layouts
    present = set(ch_names)
    fitting = [(lay, sc) for lay, sc in pool if set(lay.ch_names) <= present]
    if not fitting:
        layout = pool[0][0]
        missing = [c for c in layout.ch_names if c not in present]
        raise SharingError(
            f"the stream's {len(ch_names)} channels ({', '.join(ch_names[:4])}, ...) do not "
            f"include the sensors of {'recording ' + recording if recording else 'any recording'}"
            f" the model was trained on: {layout.uid} has {len(layout.ch_names)}, "
            f"{len(missing)} of them missing ({', '.join(missing[:4])}, ...)")
    layout = fitting[0][0]
    scalers = [sc for lay, sc in fitting if lay.ch_names == layout.ch_names and sc is not None]
    if not scalers:
        return layout, None
    if len(scalers) == 1:
        return layout, scalers[0]
    return layout, RobustScaler(np.median([s.center for s in scalers], axis=0),
                                np.median([s.scale for s in scalers], axis=0))


@dataclass
class _Anchor:
    anchor: float
    brain_start: int
    first: int  # first sample the window reads (its baseline may start earlier)
    stop: int  # one past its last sample


class StreamDecoder:
    """Ranks candidate segments for the windows of a stream, fed chunk by chunk.

    Parameters
    ----------
    decoder : the model.
    ch_names : the stream's channels (extra ones are ignored; those of the model's sensor
        layout must be there, see :func:`stream_sensors`).
    sfreq : the stream's rate, Hz.
    candidates : the segments to rank (:meth:`BrainDecoder.study_candidates`,
        :meth:`BrainDecoder.folder_candidates`).
    subject : the subject's id: a training subject's own layer, else the mean subject layer.
    recording : a training recording's uid, to use its scaler (see :func:`stream_sensors`).
    hop : s between window anchors.
    top_k : best candidates listed per window.
    phase : the resampler's filter (:class:`StreamResampler`).
    """

    def __init__(self, decoder: BrainDecoder, ch_names: list[str], sfreq: float,
                 candidates: Candidates, subject: str | None = None,
                 recording: str | None = None, hop: float = 0.25, top_k: int = 10,
                 phase: Phase = "minimum") -> None:
        if not hop > 0 or top_k < 1:
            raise SharingError(f"hop must be positive and top_k at least 1, got hop={hop}, "
                               f"top_k={top_k}")
        config = decoder.experiment
        self.decoder = decoder
        self.candidates = candidates
        self.layout, self.scaler = stream_sensors(decoder, list(ch_names), subject, recording)
        self._picks = np.array([list(ch_names).index(c) for c in self.layout.ch_names])
        if subject is None and recording is not None:
            subject = self.layout.subject
        self.subject = subject
        self._subject = decoder.subjects.index(subject) if subject in decoder.subjects else -1
        self.sfreq = config.preprocess.sfreq
        self.hop = hop
        self.top_k = min(top_k, len(candidates))
        self.resampler = StreamResampler(sfreq, self.sfreq, len(self._picks), phase)
        self.n_times = config.windows.n_times(self.sfreq)
        self._lag = int(round(config.windows.brain_lag * self.sfreq))
        self._tmin = config.windows.tmin
        self._baseline, self._offset = window_baseline(config)
        self._clamp = config.norm.clamp
        self._next = 0  # index of the next anchor
        self._buffer = np.zeros((0, len(self._picks)), dtype=np.float32)  # [T, C] kept samples
        self._start = 0  # output sample of _buffer[0]
        self.t0: float | None = None  # stream timestamp of the first sample

    def feed(self, chunk: np.ndarray, timestamps: np.ndarray | None = None,
             arrival: float | None = None) -> pd.DataFrame:
        """Add ``chunk [C, n]`` (the stream's channels, SI units) and rank every window it
        completes.

        ``timestamps [n]``: the stream's clock of the chunk's samples (the first one sets
        :attr:`t0`; default 0 for the first sample). ``arrival``: ``time.perf_counter()`` when
        the chunk arrived (default: now), from which ``latency_ms`` is counted.

        Returns one row per window completed: ``anchor``, ``window_start`` and ``window_end``
        (s since the stream's first sample; end: its last sample), ``time`` (the stream's clock
        at its last sample), ``subject``, ``top{j}_id``, ``top{j}_sentence``,
        ``top{j}_score``, and ``latency_ms`` (from ``arrival`` to the ranking).
        """
        arrival = time.perf_counter() if arrival is None else arrival
        chunk = np.asarray(chunk)
        if chunk.ndim != 2 or chunk.shape[0] <= int(self._picks.max()):
            raise SharingError(f"a chunk must be [channels, samples] with the stream's "
                               f"channels, got shape {chunk.shape}")
        if self.t0 is None and chunk.shape[1]:
            self.t0 = float(timestamps[0]) if timestamps is not None else 0.0
        x = chunk[self._picks]
        if not np.isfinite(x).all():
            raise SharingError("the stream sent NaN or infinite values")
        y = self.resampler(x).T.astype(np.float32)
        self._buffer = np.concatenate([self._buffer, y])
        ready = []
        while (window := self._anchor(self._next)).stop <= self.resampler.n_out:
            if window.first >= 0:
                ready.append(window)
            self._next += 1
        out = self._rank(ready, arrival)
        keep = self._anchor(self._next).first - self._start
        if keep > 0:
            self._buffer = self._buffer[keep:]
            self._start += keep
        return out

    def _anchor(self, k: int) -> _Anchor:
        """Anchor ``k`` at ``-tmin + k * hop`` s, computed as ``np.arange`` (which
        ``make_windows`` places stride anchors with) computes it."""
        first = -self._tmin
        anchor = first + k * ((first + self.hop) - first)
        speech = int(round((anchor + self._tmin) * self.sfreq))
        brain = speech + self._lag
        lo = min(speech, brain, brain + min(0, self._offset) if self._baseline else brain)
        hi = brain + max(self.n_times, self._offset + self._baseline if self._baseline else 0)
        return _Anchor(anchor, brain, lo, hi)

    def read(self, start: int, stop: int) -> np.ndarray:
        """The kept output samples ``[stop - start, C]`` (a copy), ``start`` counted from the
        stream's first sample (the reader :func:`read_brain_window` takes)."""
        return self._buffer[start - self._start:stop - self._start].copy()

    def window(self, brain_start: int) -> np.ndarray:
        """The normalised ``[C, T]`` brain window from output sample ``brain_start``: baseline,
        scaler and clamp of :meth:`WindowDataset.brain_window`."""
        x = read_brain_window(self, brain_start, self.n_times, self._baseline, self._offset)
        if self.scaler is not None:
            x = self.scaler(x)
        if self._clamp is not None:
            np.clip(x, -self._clamp, self._clamp, out=x)
        return x

    def _rank(self, ready: list[_Anchor], arrival: float) -> pd.DataFrame:
        if not ready:
            return pd.DataFrame()
        brains = [self.window(w.brain_start) for w in ready]
        scores = self.decoder.score(brains, self.layout.positions, self._subject,
                                    self.candidates)
        best, top = top_candidates(scores, self.top_k)
        done = time.perf_counter()
        end = np.array([w.brain_start + self.n_times - 1 for w in ready]) / self.sfreq
        out = pd.DataFrame({
            "anchor": [w.anchor for w in ready],
            "window_start": [w.brain_start / self.sfreq for w in ready],
            "window_end": end,
            "time": (self.t0 or 0.0) + end,
            "subject": self.subject,
        })
        ids = np.asarray(self.candidates.ids, dtype=object)
        sentences = np.asarray(self.candidates.sentences, dtype=object)
        for j in range(self.top_k):
            out[f"top{j + 1}_id"] = ids[best[:, j]]
            out[f"top{j + 1}_sentence"] = sentences[best[:, j]]
            out[f"top{j + 1}_score"] = top[:, j]
        out["latency_ms"] = 1000 * (done - arrival)
        return out
