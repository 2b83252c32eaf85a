"""Noise generators that can produce any time span of a recording on demand.

Every generator is a deterministic function of its seed and the sample range asked for, so a
recording of any length can be written chunk by chunk with bounded memory and identical
results whatever the chunking:

- :class:`ColoredNoise`: stationary noise with a prescribed spectrum (1/f brain background,
  alpha rhythm, slow burst envelopes);
- :class:`WhiteNoise`: Gaussian white noise (sensor noise);
- :class:`LineNoise`: mains interference at 50 Hz and its harmonics;
- :class:`Drifts`: slow baseline wander (cubic B-spline through random knots);
- :class:`Artifacts`: transient artifact segments (muscle bursts, movements).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.interpolate import BSpline

__all__ = ["ColoredNoise", "WhiteNoise", "LineNoise", "Drifts", "Artifact", "Artifacts",
           "pink_spectrum", "alpha_spectrum", "lowpass_spectrum"]


def pink_spectrum(exponent: float = 1.0, knee: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    """Power spectrum ``1 / (1 + (f / knee) ** exponent)``: flat below ``knee`` Hz, ``1/f**e``
    above."""
    return lambda freqs: 1.0 / (1.0 + (freqs / knee) ** exponent)


def alpha_spectrum(peak: float, width: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    """Gaussian power peak at ``peak`` Hz of standard deviation ``width`` Hz."""
    return lambda freqs: np.exp(-0.5 * ((freqs - peak) / width) ** 2)


def lowpass_spectrum(cutoff: float) -> Callable[[np.ndarray], np.ndarray]:
    """Gaussian low-pass power spectrum of standard deviation ``cutoff`` Hz."""
    return lambda freqs: np.exp(-0.5 * (freqs / cutoff) ** 2)


class _BlockNoise:
    """Noise made of seeded blocks; the last few blocks are kept, since consecutive chunks
    of a recording share blocks."""

    _n_cached = 4

    def __init__(self, n_signals: int, seed: tuple[int, ...]) -> None:
        self.n_signals = n_signals
        self.seed = tuple(int(s) for s in seed)
        self._blocks: OrderedDict[int, np.ndarray] = OrderedDict()

    def _make_block(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _block(self, j: int) -> np.ndarray:
        if j not in self._blocks:
            self._blocks[j] = self._make_block(np.random.default_rng((*self.seed, j)))
            if len(self._blocks) > self._n_cached:
                self._blocks.popitem(last=False)
        return self._blocks[j]


class ColoredNoise(_BlockNoise):
    """Unit-variance stationary noise ``[n_signals, T]`` (float32) with power spectrum
    ``spectrum(f)`` (any scale), generated in overlapping blocks.

    Block ``j`` (``2 * hop`` samples starting at sample ``(j - 1) * hop``) is white noise from
    its own seed ``(*seed, j)``, coloured in the frequency domain and weighted by a sine window;
    consecutive blocks overlap by half, and since ``sin**2 + cos**2 = 1`` the sum keeps unit
    variance. Any span can thus be generated on its own. Frequencies below ``1 / block`` are
    not represented. The white input is uniform (three times cheaper to draw than Gaussian);
    colouring sums many input samples, so the output is Gaussian to a close approximation.
    """

    def __init__(self, n_signals: int, sfreq: float,
                 spectrum: Callable[[np.ndarray], np.ndarray], seed: tuple[int, ...],
                 block_seconds: float = 20.0) -> None:
        super().__init__(n_signals, seed)
        self.hop = max(16, int(round(block_seconds * sfreq / 2)))
        length = 2 * self.hop
        freqs = np.fft.rfftfreq(length, 1 / sfreq)
        power = np.asarray(spectrum(freqs), dtype=float)
        weights = np.full(len(freqs), 2.0)
        weights[0] = weights[-1] = 1.0  # DC and Nyquist appear once in the full spectrum
        # unit-variance output from a uniform input: var(u - 1/2) = 1/12
        scale = np.sqrt(12.0 * length / np.sum(weights * power))
        self._amplitude = (np.sqrt(power) * scale).astype(np.float32)
        self._window = np.sin(np.pi * (np.arange(length) + 0.5) / length).astype(np.float32)

    def _make_block(self, rng: np.random.Generator) -> np.ndarray:
        white = rng.random((self.n_signals, 2 * self.hop), dtype=np.float32) - 0.5
        colored = scipy.fft.irfft(scipy.fft.rfft(white, axis=1) * self._amplitude,
                                  n=2 * self.hop, axis=1)
        return colored * self._window

    def __call__(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)``: ``[n_signals, stop - start]``."""
        out = np.zeros((self.n_signals, stop - start), dtype=np.float32)
        for j in range(start // self.hop, (stop - 1) // self.hop + 2):
            block_start = (j - 1) * self.hop
            lo, hi = max(start, block_start), min(stop, block_start + 2 * self.hop)
            if lo < hi:
                out[:, lo - start:hi - start] += self._block(j)[:, lo - block_start:hi - block_start]
        return out


class WhiteNoise(_BlockNoise):
    """Gaussian white noise ``[n_signals, T]`` (float32, unit variance), drawn in blocks of
    ``block`` samples, block ``j`` from seed ``(*seed, j)``."""

    def __init__(self, n_signals: int, seed: tuple[int, ...], block: int = 4096) -> None:
        super().__init__(n_signals, seed)
        self.block = block

    def _make_block(self, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((self.n_signals, self.block), dtype=np.float32)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)``: ``[n_signals, stop - start]``."""
        first, last = start // self.block, (stop - 1) // self.block
        blocks = np.concatenate([self._block(j) for j in range(first, last + 1)], axis=1)
        offset = start - first * self.block
        return blocks[:, offset:offset + stop - start]


class LineNoise:
    """Mains interference: ``sum_h g_h a_c sqrt(2) sin(2 pi h f0 t + phi_c,h)`` over the
    harmonics ``h f0`` below 0.45 sfreq, with harmonic gains ``g_h`` (1, 0.3, 0.15, 0.08),
    per-channel RMS ``a_c`` of the fundamental and random phases ``phi``.
    """

    harmonic_gains = (1.0, 0.3, 0.15, 0.08)

    def __init__(self, rms: np.ndarray, sfreq: float, rng: np.random.Generator,
                 frequency: float = 50.0) -> None:
        self.sfreq = sfreq
        rms = np.asarray(rms, dtype=float)
        self.freqs = [frequency * (h + 1) for h in range(len(self.harmonic_gains))
                      if frequency * (h + 1) < 0.45 * sfreq]
        # sin(wt + phi) = cos(phi) sin(wt) + sin(phi) cos(wt): weights of [sin, cos] per freq
        columns = []
        for gain in self.harmonic_gains[:len(self.freqs)]:
            phase = rng.uniform(0, 2 * np.pi, len(rms))
            columns += [np.sqrt(2) * gain * rms * np.cos(phase),
                        np.sqrt(2) * gain * rms * np.sin(phase)]
        self._weights = np.array(columns).T.reshape(len(rms), 2 * len(self.freqs))

    def __call__(self, start: int, stop: int) -> np.ndarray:
        phases = 2 * np.pi * np.outer(self.freqs, np.arange(start, stop) / self.sfreq)
        waves = np.stack([np.sin(phases), np.cos(phases)], axis=1).reshape(-1, stop - start)
        return self._weights @ waves


class Drifts:
    """Slow baseline wander ``[n_channels, T]``: a cubic B-spline per channel whose
    coefficients, one every ``knot_seconds``, are independent Gaussians of standard deviation
    ``rms`` (from seed ``(*seed, knot index)``)."""

    def __init__(self, n_channels: int, rms: np.ndarray | float, sfreq: float,
                 seed: tuple[int, ...], knot_seconds: float = 15.0) -> None:
        self.n_channels = n_channels
        self.rms = np.broadcast_to(np.asarray(rms, dtype=float), (n_channels,))
        self.sfreq = sfreq
        self.seed = tuple(int(s) for s in seed)
        self.step = knot_seconds

    def __call__(self, start: int, stop: int) -> np.ndarray:
        t = np.arange(start, stop) / self.sfreq
        first = int(np.floor(t[0] / self.step)) - 3
        last = int(np.floor(t[-1] / self.step)) + 1
        knots = np.arange(first, last + 4) * self.step
        # knot indices start at -3 (t >= 0); seeds must be non-negative
        coefs = np.stack([np.random.default_rng((*self.seed, k + 3)).standard_normal(
            self.n_channels) for k in range(first, last)], axis=0)
        return (BSpline(knots, coefs, 3, extrapolate=False)(t) * self.rms).T


@dataclass(frozen=True)
class Artifact:
    """One artifact segment.

    ``kind`` is ``muscle`` (a high-frequency noise burst) or ``movement`` (a slow deflection);
    ``onset`` and ``duration`` in s; the waveform (peak RMS 1, Hann envelope) is added to
    ``channels`` with ``weights`` (data unit).
    """

    kind: str
    onset: float
    duration: float
    channels: tuple[int, ...]
    weights: tuple[float, ...]
    seed: tuple[int, ...]


class Artifacts:
    """The sum of a list of :class:`Artifact` over ``n_channels`` channels."""

    def __init__(self, artifacts: list[Artifact], n_channels: int, sfreq: float) -> None:
        self.artifacts = artifacts
        self.n_channels = n_channels
        self.sfreq = sfreq

    def __call__(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros((self.n_channels, stop - start))
        for artifact in self.artifacts:
            first = int(round(artifact.onset * self.sfreq))
            n = max(1, int(round(artifact.duration * self.sfreq)))
            lo, hi = max(start, first), min(stop, first + n)
            if lo >= hi:
                continue
            waveform = self._waveform(artifact, n)[lo - first:hi - first]
            weights = np.asarray(artifact.weights)[:, None]
            out[list(artifact.channels), lo - start:hi - start] += weights * waveform[None]
        return out

    def _waveform(self, artifact: Artifact, n: int) -> np.ndarray:
        rng = np.random.default_rng(artifact.seed)
        envelope = np.hanning(n + 2)[1:-1]
        if artifact.kind == "muscle":
            white = rng.standard_normal(n)
            smooth = np.convolve(white, np.ones(5) / 5, mode="same")
            burst = white - smooth  # high-pass: keeps the band above ~sfreq / 10
            return burst / burst.std() * envelope
        if artifact.kind == "movement":
            return envelope * rng.choice([-1.0, 1.0])
        raise ValueError(f"unknown artifact kind {artifact.kind!r}")
