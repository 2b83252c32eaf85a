"""A Lab Streaming Layer stream through a :class:`~braindecode_speech.sharing.stream.StreamDecoder`,
with ``mne-lsl`` (the optional extra ``stream``): a live stream found by name, or a recording
replayed at real-time speed (or ``speed`` times faster) by ``mne_lsl.player.PlayerLSL``.

A stream's data are read as they arrive in ``mne_lsl.stream.StreamLSL``'s buffer; the
decoding starts with the first sample received after connecting (LSL sends a new inlet the
samples pushed after it connected).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mne
import numpy as np
import pandas as pd

from .folder import SharingError
from .stream import StreamDecoder

__all__ = ["decode_lsl", "latency_summary", "open_lsl", "replay"]

logger = logging.getLogger(__name__)


def _mne_lsl() -> Any:
    try:
        import mne_lsl.player
        import mne_lsl.stream
    except ImportError:
        raise SharingError("decoding a stream needs mne-lsl: pip install "
                           "'braindecode-speech[stream]'") from None
    return mne_lsl


def open_lsl(name: str, timeout: float = 5.0, source_id: str | None = None,
             bufsize: float = 5.0) -> Any:
    """The ``mne_lsl.stream.StreamLSL`` of the LSL stream ``name``, connected (its buffer holds
    ``bufsize`` s); :class:`SharingError` when none is found within ``timeout`` s."""
    mne_lsl = _mne_lsl()
    try:
        return mne_lsl.stream.StreamLSL(bufsize, name=name, source_id=source_id).connect(
            acquisition_delay=0.001, timeout=timeout)
    except RuntimeError:
        raise SharingError(f"no LSL stream named {name!r} found on this machine's network "
                           f"within {timeout:g} s") from None


@contextmanager
def replay(path: str | Path, speed: float = 1.0, chunk: float = 0.02) -> Iterator[Any]:
    """Play the recording at ``path`` (any file ``mne.io.read_raw`` reads) once as an LSL stream
    on this machine, ``speed`` times faster than real time, in chunks of ``chunk`` s of the
    recording; yields the ``mne_lsl.player.PlayerLSL`` (its ``name`` is unique), stopped on
    exit."""
    mne_lsl = _mne_lsl()
    if not speed > 0:
        raise SharingError(f"--speed must be positive, got {speed}")
    raw = mne.io.read_raw(path, preload=True, verbose=False)
    info = mne.create_info(raw.ch_names, raw.info["sfreq"] * speed, raw.get_channel_types())
    fast = mne.io.RawArray(raw.get_data(), info, verbose=False)
    name = f"braindecode-speech-replay-{time.monotonic_ns()}"
    player = mne_lsl.player.PlayerLSL(fast, chunk_size=max(1, round(chunk * info["sfreq"])),
                                      n_repeat=1, name=name, source_id=name, annotations=False)
    player.start()
    try:
        yield player
    finally:
        if player.running:
            player.stop()


def decode_lsl(stream: Any, make_decoder: Callable[[list[str], float], StreamDecoder],
               on_rows: Callable[[pd.DataFrame], None], speed: float = 1.0,
               max_seconds: float | None = None, idle: float = 5.0,
               finished: Callable[[], bool] | None = None) -> StreamDecoder:
    """Feed the samples of the connected ``stream`` to the :class:`StreamDecoder` that
    ``make_decoder(ch_names, sfreq)`` builds (``sfreq``: the stream's rate divided by
    ``speed``, the rate of the recording replayed ``speed`` times faster) and hand each new
    table of ranked windows to ``on_rows``; returns the decoder.

    Ends after ``max_seconds`` s, on Ctrl-C, or, once ``finished()`` (a replay's end) is true,
    when no sample came for ``0.2`` s; :class:`SharingError` when no sample comes for ``idle``
    s otherwise. A chunk's ``arrival`` is when the loop saw it in the stream's buffer.
    """
    ch_names = list(stream.ch_names)
    decoder = make_decoder(ch_names, float(stream.info["sfreq"]) / speed)
    last = 0.0  # timestamps of the buffer's unfilled part are 0
    start = seen = time.perf_counter()
    try:
        while max_seconds is None or time.perf_counter() - start < max_seconds:
            if not stream.n_new_samples:
                quiet = time.perf_counter() - seen
                if finished is not None and finished() and quiet > 0.2:
                    break
                if quiet > idle and (finished is None or not finished()):
                    raise SharingError(f"the LSL stream {stream.name!r} sent no sample for "
                                       f"{idle:g} s")
                time.sleep(0.002)
                continue
            arrival = seen = time.perf_counter()
            data, timestamps = stream.get_data(exclude=())
            new = timestamps > last
            if not new.any():
                continue
            last = float(timestamps[new][-1])
            rows = decoder.feed(data[:, new], timestamps[new], arrival)
            if len(rows):
                on_rows(rows)
    except KeyboardInterrupt:
        logger.info("stopped by Ctrl-C")
    finally:
        stream.disconnect()
    return decoder


def latency_summary(latencies: np.ndarray) -> str:
    """``p50/p95/max`` of latencies in ms, one line."""
    p50, p95 = np.percentile(latencies, [50, 95])
    return f"latency p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {np.max(latencies):.1f} ms"
