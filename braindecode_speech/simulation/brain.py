"""Sensor signals of one recording: stimulus-driven brain activity plus realistic noise.

:class:`RecordingSimulator` combines, at the data channels of any ``mne.Info``:

1. the speech-evoked activity of the subject's temporal dipoles (:mod:`.responses`), computed at
   100 Hz over the whole recording and interpolated to ``sfreq`` with a cubic spline;
2. background brain activity: :data:`N_BACKGROUND_DIPOLES` random dipoles in a cortical shell
   with independent 1/f time courses, through the same forward model, so the noise is
   spatially correlated as in real data (generated efficiently from the principal components
   of their sensor covariance, 99.9 % of its variance), plus four parieto-occipital dipoles
   carrying bursty alpha (9-11.5 Hz);
3. white sensor noise, 50 Hz line noise, slow drifts, bad channels (flat or noisy) and
   artifact segments (muscle bursts, movements).

Magnitudes are in SI units (:data:`MAGNITUDES`). The stimulus-driven signal is scaled so that,
for each channel type, the signal-to-noise ratio is ``snr``:

    snr = mean power of the stimulus-driven signal while sounds play
          / mean power of (background brain activity + white sensor noise),

means over channels (and time); power is the mean square. Line noise, drifts, bad channels
and artifacts come on top. Spatial filtering raises the SNR of a dipole's time course 20- to
80-fold (the background is spatially smooth, the temporal dipoles focal), so single-trial
SNRs as low as :data:`DEFAULT_SNR` still allow decoding: on the ``demo`` study a per-subject
ridge regression from MEG to a 20-band spectrogram identifies the heard 3 s segment among
~490 with 3-14 % top-1 and 18-37 % top-10 accuracy (chance 0.2 % and 2 %).

Every term is a deterministic function of the seeds and the sample range, so any span of a
recording can be computed on its own (:meth:`RecordingSimulator.__call__`), which lets
recordings of any length be written chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mne
import numpy as np
import pandas as pd
from scipy.interpolate import make_interp_spline

from ..data.events import validate_events
from .features import MODEL_SFREQ, stimulus_features
from .forward import data_channels, dipole_gain
from .noise import (
    Artifact,
    Artifacts,
    ColoredNoise,
    Drifts,
    LineNoise,
    WhiteNoise,
    alpha_spectrum,
    lowpass_spectrum,
    pink_spectrum,
)
from .responses import SubjectBrain
from .sensors import HEAD_CENTER

__all__ = ["DEFAULT_SNR", "MAGNITUDES", "Magnitudes", "N_BACKGROUND_DIPOLES", "SubjectModel",
           "RecordingSimulator", "simulate_brain_signals", "draw_bad_channels", "draw_artifacts"]

#: default signal-to-noise ratio (power ratio, see module docstring): decoding is hard but
#: possible
DEFAULT_SNR = 0.005
N_BACKGROUND_DIPOLES = 1000
_BACKGROUND_VARIANCE_KEPT = 0.999
_ALPHA_SITES = np.array([[-0.025, -0.055, 0.075], [0.025, -0.055, 0.075],
                         [-0.02, -0.065, 0.05], [0.02, -0.065, 0.05]])
_ALPHA_SHARE = 0.3  # share of the background brain power carried by alpha
_ALPHA_BURSTINESS = 0.8  # log-normal std of the alpha amplitude envelope
_NOISY_CHANNEL_GAIN = 20.0  # white noise of a noisy channel, relative to sensor noise


@dataclass(frozen=True)
class Magnitudes:
    """Noise magnitudes of one channel type, in its SI unit.

    background : RMS of the background brain activity (1/f and alpha).
    sensor_noise : white sensor noise density, unit / sqrt(Hz).
    line : RMS of the 50 Hz line noise fundamental (harmonics decay).
    drift : standard deviation of the drift spline coefficients.
    """

    background: float
    sensor_noise: float
    line: float
    drift: float


#: per channel type: axial gradiometers and magnetometers (T), planar gradiometers (T/m),
#: EEG (V). Typical spontaneous MEG is a few hundred fT, EEG 10-20 uV.
MAGNITUDES = {
    "mag": Magnitudes(background=300e-15, sensor_noise=5e-15, line=150e-15, drift=1e-12),
    "grad": Magnitudes(background=5e-12, sensor_noise=3e-13, line=3e-12, drift=2e-11),
    "eeg": Magnitudes(background=15e-6, sensor_noise=0.1e-6, line=3e-6, drift=20e-6),
}


class SubjectModel:
    """One subject's brain seen by one sensor set: lead fields and noise calibration.

    Parameters
    ----------
    info : channels and sampling rate; data channels need positions (see
        :func:`.forward.dipole_gain`).
    seed : the subject: its brain (dipoles, response functions, background sources, alpha
        frequency).
    """

    def __init__(self, info: mne.Info, seed: int) -> None:
        sfreq = float(info["sfreq"])
        if sfreq < MODEL_SFREQ:
            raise ValueError(f"sfreq must be at least {MODEL_SFREQ} Hz, got {sfreq}")
        self.info = info
        self.seed = seed
        self.picks = data_channels(info)
        self.types = np.array(info.get_channel_types(picks=self.picks))
        unknown = sorted(set(self.types) - set(MAGNITUDES))
        if unknown:
            raise ValueError(f"cannot simulate channel types {unknown}")
        self.magnitudes = [MAGNITUDES[t] for t in self.types]

        self.brain = SubjectBrain.draw(seed)
        rng = np.random.default_rng([seed, 1])
        background_pos, background_ori = _background_dipoles(rng)
        alpha_ori = _unit(rng.normal(size=(len(_ALPHA_SITES), 3)))
        self.alpha_peak = rng.uniform(9.0, 11.5)
        gain = dipole_gain(info, np.vstack([self.brain.positions, background_pos, _ALPHA_SITES]),
                           np.vstack([self.brain.orientations, background_ori, alpha_ori]))
        n_evoked, n_background = len(self.brain.positions), len(background_pos)
        #: ``[n_data, n_dipoles]`` lead fields of the stimulus-driven dipoles (uncalibrated)
        self.evoked_gain = gain[:, :n_evoked]
        background_gain = gain[:, n_evoked:n_evoked + n_background]
        alpha_gain = gain[:, n_evoked + n_background:]
        # background brain activity of each channel type at its RMS (MAGNITUDES)
        for kind in set(self.types):
            rows = self.types == kind
            target = MAGNITUDES[kind].background
            background_gain[rows] *= np.sqrt((1 - _ALPHA_SHARE) * target ** 2
                                             / np.mean(np.sum(background_gain[rows] ** 2, 1)))
            alpha_gain[rows] *= np.sqrt(_ALPHA_SHARE * target ** 2
                                        / np.mean(np.sum(alpha_gain[rows] ** 2, 1)))
        self.alpha_gain = alpha_gain.astype(np.float32)
        self.background_mixing = _principal_mixing(background_gain, _BACKGROUND_VARIANCE_KEPT)
        #: ``[n_data]`` RMS of the white sensor noise
        self.sensor_rms = np.array([m.sensor_noise for m in self.magnitudes]) * np.sqrt(sfreq / 2)

    def noise_power(self) -> np.ndarray:
        """``[n_data]`` power of background brain activity plus white sensor noise."""
        return np.array([m.background ** 2 for m in self.magnitudes]) + self.sensor_rms ** 2


class RecordingSimulator:
    """Simulated data of one recording, computed on demand for any sample range.

    Parameters
    ----------
    model : the subject seen by the recording's sensors.
    events : events in the common schema (:mod:`braindecode_speech.data.events`): sound rows with
        an absolute ``filepath`` and ``offset``, word rows with ``word``; onsets in s.
    n_times : number of samples of the recording.
    snr : signal-to-noise ratio (>= 0; 0 gives noise only), see the module docstring; the
        signal power is measured while sounds play.
    recording : index of the recording of this subject: changes the noise, not the brain.
    bad_channels : channel name -> ``"flat"`` (zero signal) or ``"noisy"`` (strong white noise).
    artifacts : artifact segments (:func:`draw_artifacts`), channel indices into the data
        channels.
    phoneme_power : power of the opt-in phoneme-specific response relative to the other
        stimulus-driven groups (0: none; see :mod:`.responses`); needs phoneme rows.
    """

    def __init__(self, model: SubjectModel, events: pd.DataFrame, n_times: int,
                 snr: float = DEFAULT_SNR, recording: int = 0,
                 bad_channels: Mapping[str, str] | None = None,
                 artifacts: Sequence[Artifact] = (), phoneme_power: float = 0.0) -> None:
        if snr < 0 or not np.isfinite(snr):
            raise ValueError(f"snr must be a finite number >= 0, got {snr}")
        if phoneme_power < 0 or not np.isfinite(phoneme_power):
            raise ValueError(f"phoneme_power must be a finite number >= 0, got {phoneme_power}")
        if n_times <= 0:
            raise ValueError(f"n_times must be positive, got {n_times}")
        info, sfreq = model.info, float(model.info["sfreq"])
        self.model = model
        self.n_times = n_times
        n_data = len(model.picks)

        # stimulus-driven dipole activity on a 100 Hz grid covering the recording
        events = validate_events(events, source="events given to the simulator")
        n_model = int(np.ceil(n_times / sfreq * MODEL_SFREQ)) + 4
        features = stimulus_features(events, n_model)
        activity = model.brain.source_activity(features, phoneme_power)
        self._activity = make_interp_spline(np.arange(n_model) / MODEL_SFREQ, activity, k=3,
                                            axis=1)
        # scale the evoked signal of each channel type to `snr` while sounds play
        during = activity[:, features.playing] if features.playing.any() else activity
        moments = during @ during.T / during.shape[1]  # second moments, DC included
        evoked_power = np.einsum("cs,st,ct->c", model.evoked_gain, moments, model.evoked_gain)
        noise_power = model.noise_power()
        self.evoked_gain = model.evoked_gain.copy()
        for kind in set(model.types):
            rows = model.types == kind
            signal = np.mean(evoked_power[rows])
            scale = np.sqrt(snr * np.mean(noise_power[rows]) / signal) if signal > 0 else 0.0
            self.evoked_gain[rows] *= scale

        key = (model.seed, recording)
        self._background = ColoredNoise(model.background_mixing.shape[1], sfreq,
                                        pink_spectrum(), (*key, 2))
        self._alpha = ColoredNoise(len(_ALPHA_SITES), sfreq, alpha_spectrum(model.alpha_peak),
                                   (*key, 3))
        self._alpha_envelope = ColoredNoise(len(_ALPHA_SITES), sfreq, lowpass_spectrum(0.3),
                                            (*key, 4))
        self._sensor = WhiteNoise(n_data, (*key, 5))
        line_rng = np.random.default_rng([*key, 6])
        self._line = LineNoise(
            _line_patterns(info, model.picks, line_rng) * [m.line for m in model.magnitudes],
            sfreq, line_rng, frequency=info["line_freq"] or 50.0)
        self._drifts = Drifts(n_data, [m.drift for m in model.magnitudes], sfreq, (*key, 7))
        self._artifacts = Artifacts(list(artifacts), n_data, sfreq)

        names = [info["ch_names"][i] for i in model.picks]
        bad_channels = dict(bad_channels or {})
        unknown_bads = sorted(set(bad_channels) - set(names))
        if unknown_bads or set(bad_channels.values()) - {"flat", "noisy"}:
            raise ValueError(f"bad_channels must map data channels of info to 'flat' or "
                             f"'noisy'; got {bad_channels}")
        self._flat = [names.index(n) for n, kind in bad_channels.items() if kind == "flat"]
        self._noisy = [names.index(n) for n, kind in bad_channels.items() if kind == "noisy"]
        self._noisy_noise = WhiteNoise(len(self._noisy), (*key, 8))

    def __call__(self, start: int, stop: int) -> np.ndarray:
        """Data of samples ``[start, stop)``: ``[n_channels, stop - start]`` in T, T/m or V."""
        if not 0 <= start < stop <= self.n_times:
            raise ValueError(f"sample range [{start}, {stop}) outside [0, {self.n_times})")
        model = self.model
        times = np.arange(start, stop) / model.info["sfreq"]
        alpha = self._alpha(start, stop) * np.exp(
            _ALPHA_BURSTINESS * self._alpha_envelope(start, stop) - _ALPHA_BURSTINESS ** 2)
        # terms are added one at a time to keep a single data-sized temporary
        data = self.evoked_gain @ self._activity(times)
        data += model.background_mixing @ self._background(start, stop)
        data += model.alpha_gain @ alpha
        data += model.sensor_rms[:, None] * self._sensor(start, stop)
        data += self._line(start, stop)
        data += self._drifts(start, stop)
        data += self._artifacts(start, stop)
        if self._noisy:
            data[self._noisy] += (_NOISY_CHANNEL_GAIN * model.sensor_rms[self._noisy, None]
                                  * self._noisy_noise(start, stop))
        data[self._flat] = 0.0
        out = np.zeros((model.info["nchan"], stop - start))
        out[model.picks] = data
        return out


def simulate_brain_signals(info: mne.Info, events: pd.DataFrame, n_times: int, seed: int,
                           snr: float = DEFAULT_SNR, *, recording: int = 0,
                           bad_channels: Mapping[str, str] | None = None,
                           artifacts: Sequence[Artifact] = (),
                           phoneme_power: float = 0.0) -> np.ndarray:
    """Simulate a subject listening to the sounds of ``events``, seen by the sensors of
    ``info``.

    Parameters
    ----------
    info : channels and sampling rate (>= 100 Hz); MEG and EEG channels need positions (coil
        locations, montage); other channels (stim, misc, references) are left at 0.
    events : events in the common schema: sound rows with an absolute ``filepath`` and
        ``offset``, word rows with ``word``, phoneme rows with ``phoneme`` (used when
        ``phoneme_power`` > 0); onsets in s on the recording's clock.
    n_times : number of samples.
    seed : the subject (brain, response functions, background sources).
    snr : signal-to-noise ratio, see the module docstring.
    recording, bad_channels, artifacts, phoneme_power : see :class:`RecordingSimulator`.

    Returns
    -------
    np.ndarray : ``[n_channels, n_times]`` at ``info["sfreq"]`` in SI units (T for
        magnetometers and axial gradiometers, T/m for planar gradiometers, V for EEG). Same
        arguments, same array.
    """
    simulator = RecordingSimulator(SubjectModel(info, seed), events, n_times, snr, recording,
                                   bad_channels, artifacts, phoneme_power)
    return simulator(0, n_times)


def draw_bad_channels(info: mne.Info, n_bad: int, rng: np.random.Generator) -> dict[str, str]:
    """``n_bad`` distinct data channels of ``info``, each ``"flat"`` or ``"noisy"``."""
    picks = data_channels(info)
    chosen = rng.choice(picks, size=min(n_bad, len(picks)), replace=False)
    return {info["ch_names"][i]: str(rng.choice(["flat", "noisy"])) for i in sorted(chosen)}


def draw_artifacts(info: mne.Info, duration: float, rate_per_minute: float,
                   rng: np.random.Generator) -> list[Artifact]:
    """Random artifact segments over ``duration`` s (Poisson, ``rate_per_minute``).

    Muscle bursts (0.5-2 s, on the 10 channels nearest a random channel, 5 times the
    background RMS) and movements (1-3 s, on every data channel with a smooth spatial
    gradient, 10 times the background RMS), half each.
    """
    picks = data_channels(info)
    types = info.get_channel_types(picks=picks)
    background = np.array([MAGNITUDES[t].background for t in types])
    positions = np.array([info["chs"][i]["loc"][:3] for i in picks])
    out = []
    for k in range(rng.poisson(rate_per_minute * duration / 60)):
        kind = str(rng.choice(["muscle", "movement"]))
        if kind == "muscle":
            length = rng.uniform(0.5, 2.0)
            center = positions[rng.integers(len(picks))]
            channels = np.argsort(np.linalg.norm(positions - center, axis=1))[:10]
            weights = np.full(len(channels), 5.0) * background[channels]
        else:
            length = rng.uniform(1.0, 3.0)
            channels = np.arange(len(picks))
            direction = _unit(rng.normal(size=3))
            gradient = (positions - positions.mean(0)) @ direction
            gradient /= np.abs(gradient).max() + 1e-12
            weights = 10.0 * background * (0.5 + gradient)
        onset = rng.uniform(0, max(duration - length, 0))
        out.append(Artifact(kind=kind, onset=float(onset), duration=float(length),
                            channels=tuple(int(c) for c in channels),
                            weights=tuple(float(w) for w in weights), seed=(int(rng.integers(2**31)), k)))
    return out


def _background_dipoles(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random dipoles in a cortical shell 55-75 mm from the sphere centre (the cortex lies
    just inside the 85 mm inner skull), not below 2 cm under the centre; random
    orientations."""
    positions = []
    while len(positions) < N_BACKGROUND_DIPOLES:
        point = rng.uniform(-0.075, 0.075, 3)
        if 0.055 < np.linalg.norm(point) < 0.075 and point[2] > -0.02:
            positions.append(HEAD_CENTER + point)
    return np.array(positions), _unit(rng.normal(size=(N_BACKGROUND_DIPOLES, 3)))


def _principal_mixing(gain: np.ndarray, variance_kept: float) -> np.ndarray:
    """``[n_channels, r]`` matrix ``M`` with ``M M.T`` the best rank-``r`` approximation of
    ``gain @ gain.T``, ``r`` the fewest components keeping ``variance_kept`` of its trace:
    unit-variance independent signals mixed by ``M`` have (almost) the sensor covariance of
    independent unit-variance dipoles seen through ``gain``."""
    u, singular, _ = np.linalg.svd(gain, full_matrices=False)
    explained = np.cumsum(singular ** 2) / np.sum(singular ** 2)
    rank = int(np.searchsorted(explained, variance_kept)) + 1
    return (u[:, :rank] * singular[:rank]).astype(np.float32)


def _line_patterns(info: mne.Info, picks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Relative line-noise amplitude per channel (RMS 1): a smooth spatial gradient (a distant
    source) times a per-channel factor (coupling, impedance)."""
    positions = np.array([info["chs"][i]["loc"][:3] for i in picks])
    gradient = 1.0 + 0.5 * ((positions - positions.mean(0)) @ _unit(rng.normal(size=3))) / 0.1
    patterns = np.abs(gradient) * rng.lognormal(0, 0.3, len(picks))
    return patterns / np.sqrt(np.mean(patterns ** 2))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)
