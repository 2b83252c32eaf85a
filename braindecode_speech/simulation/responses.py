"""Stimulus-driven source activity: temporal response functions of speech in temporal cortex.

Each simulated subject has eight current dipoles, four per hemisphere along the superior and
middle temporal gyri (Heschl's gyrus ``A1``, anterior and posterior STG, MTG). Each dipole's
activity is the sum of three convolutions of stimulus features (:mod:`.features`) with
temporal response functions (TRFs), each TRF a sum of Gaussian deflections:

``acoustic``
    envelope, acoustic edges and the spectral band envelopes (each dipole with its own band
    weights: a coarse tonotopy) -> P50 / N100 / P200-like TRF, strongest in ``A1``;
``word``
    word onsets -> N150 / P250-like TRF, strongest in STG and MTG;
``lexical``
    the word's hashed lexical vector, projected on each dipole by two matrices (early and
    late component) -> P250 / N400-like TRF. Different words evoke different spatial patterns:
    this is what makes segment identification possible beyond acoustics.
``phoneme`` (opt-in, ``phoneme_power`` > 0)
    each phoneme onset, projected on each dipole by its class's pattern (a population pattern
    per ARPAbet class plus a subject deviation) -> P60 / N120-like TRF, strongest in ``A1``
    and STG. Off by default: the other groups carry phonetic information only through the
    coarse band tonotopy, which TRFs lasting 100 ms and more smear across phonemes 80 ms apart,
    so a phoneme classifier has almost nothing to find; this group plants a phoneme-specific
    response of known power, a positive control for phoneme decoding.

The *population* (dipole sites, TRF shapes, band weights, lexical projections) is fixed by
:data:`POPULATION_SEED`: the same "species" for every study, so a decoder can generalise across
subjects. Each *subject* (``seed``) perturbs it: dipole positions (3 mm) and orientations
(15 degrees), TRF latencies (subject shift of 10 ms plus 5 ms per dipole) and widths, gains
(log-normal), band weights and lexical projections. Latencies span about 50-400 ms. The
phoneme group's parameters come from random streams of their own, so the other groups' (and
every study generated without it) are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import oaconvolve

from .features import LEXICAL_DIM, MODEL_SFREQ, N_BANDS, N_PHONEMES, StimulusFeatures

__all__ = ["POPULATION_SEED", "SOURCE_NAMES", "GROUP_POWER", "SubjectBrain"]

#: seed of the population-level brain shared by every simulated subject
POPULATION_SEED = 2023

# name -> (position in head coordinates (m), orientation before normalisation), left hemisphere;
# the right hemisphere mirrors x. Orientations point up and forward, roughly tangential.
_SITES = {
    "A1": ((-0.045, 0.000, 0.048), (0.25, 0.3, 1.0)),
    "aSTG": ((-0.055, 0.020, 0.035), (0.3, 0.5, 1.0)),
    "pSTG": ((-0.055, -0.020, 0.055), (0.3, -0.2, 1.0)),
    "MTG": ((-0.060, -0.005, 0.032), (0.35, 0.6, 0.8)),
}
SOURCE_NAMES = tuple(f"{site}-{hemi}" for hemi in ("lh", "rh") for site in _SITES)

# relative drive of each site by each feature group
_SITE_GAINS = {
    "acoustic": {"A1": 1.0, "aSTG": 0.4, "pSTG": 0.6, "MTG": 0.2},
    "word": {"A1": 0.2, "aSTG": 0.6, "pSTG": 0.6, "MTG": 0.8},
    "lexical": {"A1": 0.1, "aSTG": 0.8, "pSTG": 0.6, "MTG": 1.0},
    "phoneme": {"A1": 1.0, "aSTG": 0.7, "pSTG": 0.8, "MTG": 0.3},
}
# TRF deflections: (latency s, width s, amplitude)
_TRF_TEMPLATES = {
    "acoustic": ((0.05, 0.012, 0.5), (0.10, 0.022, -1.0), (0.18, 0.035, 0.7)),
    "word": ((0.15, 0.03, -0.7), (0.25, 0.05, 0.8)),
    "lexical_early": ((0.25, 0.05, 1.0),),
    "lexical_late": ((0.40, 0.08, -1.0),),
    "phoneme": ((0.06, 0.012, 1.0), (0.12, 0.02, -0.7)),
}
#: share of the stimulus-driven source power carried by each feature group (the opt-in
#: ``phoneme`` group adds ``phoneme_power`` on top, see :meth:`SubjectBrain.source_activity`)
GROUP_POWER = {"acoustic": 0.5, "word": 0.15, "lexical": 0.35}
_PHONEME_STREAM = 39  # extra seed entry of the phoneme group's random streams
_TRF_LENGTH = 0.8  # s


@dataclass(frozen=True)
class SubjectBrain:
    """The stimulus-driven dipoles of one subject.

    Attributes
    ----------
    positions : ``[n_sources, 3]`` dipole positions, head coordinates, m.
    orientations : ``[n_sources, 3]`` unit dipole orientations.
    trfs : group -> ``[n_sources, n_lags]`` TRFs at :data:`~.features.MODEL_SFREQ` (lag 0
        first); groups ``acoustic``, ``word``, ``lexical_early``, ``lexical_late``,
        ``phoneme``.
    band_weights : ``[n_sources, N_BANDS]`` drive of each dipole by each spectral band.
    lexical_maps : component -> ``[n_sources, LEXICAL_DIM]`` projections of lexical vectors.
    phoneme_maps : ``[n_sources, N_PHONEMES]`` pattern of each phoneme class on the dipoles.
    """

    positions: np.ndarray
    orientations: np.ndarray
    trfs: dict[str, np.ndarray]
    band_weights: np.ndarray
    lexical_maps: dict[str, np.ndarray]
    phoneme_maps: np.ndarray

    @classmethod
    def draw(cls, seed: int) -> SubjectBrain:
        """The subject ``seed``: the population brain with subject-specific deviations."""
        population = np.random.default_rng(POPULATION_SEED)
        rng = np.random.default_rng([POPULATION_SEED, seed])
        n_sources = len(SOURCE_NAMES)
        sites = [name.split("-")[0] for name in SOURCE_NAMES]
        mirror = np.array([[1.0, 1.0, 1.0]] * 4 + [[-1.0, 1.0, 1.0]] * 4)
        positions = np.array([_SITES[s][0] for s in sites]) * mirror
        orientations = np.array([_SITES[s][1] for s in sites]) * mirror
        positions = positions + rng.normal(0, 0.003, positions.shape)
        orientations = _unit(_unit(orientations) + rng.normal(0, 0.25, orientations.shape))

        band_weights = population.dirichlet(np.ones(N_BANDS), n_sources)
        band_weights = band_weights * rng.lognormal(0, 0.3, band_weights.shape)
        lexical_maps = {}
        for component in ("lexical_early", "lexical_late"):
            shared = population.standard_normal((n_sources, LEXICAL_DIM))
            own = rng.standard_normal((n_sources, LEXICAL_DIM))
            lexical_maps[component] = _unit(shared + 0.5 * own) * rng.lognormal(
                0, 0.2, (n_sources, 1))

        subject_shift = rng.normal(0, 0.010)
        trfs = {group: _trf(deflections, _SITE_GAINS[group.split("_")[0]], sites,
                            subject_shift, rng)
                for group, deflections in _TRF_TEMPLATES.items() if group != "phoneme"}

        phoneme_population = np.random.default_rng([POPULATION_SEED, _PHONEME_STREAM])
        phoneme_rng = np.random.default_rng([POPULATION_SEED, seed, _PHONEME_STREAM])
        shared = phoneme_population.standard_normal((n_sources, N_PHONEMES))
        phoneme_maps = shared + 0.5 * phoneme_rng.standard_normal((n_sources, N_PHONEMES))
        trfs["phoneme"] = _trf(_TRF_TEMPLATES["phoneme"], _SITE_GAINS["phoneme"], sites,
                               subject_shift, phoneme_rng)
        return cls(positions, orientations, trfs, band_weights, lexical_maps, phoneme_maps)

    def source_activity(self, features: StimulusFeatures,
                        phoneme_power: float = 0.0) -> np.ndarray:
        """Stimulus-driven dipole moments ``[n_sources, T]`` at the features' rate (arbitrary
        units; while sounds play, each feature group carries its :data:`GROUP_POWER` share,
        and the phoneme group ``phoneme_power`` (relative to the other groups' 1; 0: none))."""
        playing = features.playing if features.playing.any() else slice(None)
        drives = {
            "acoustic": (_standardise(features.envelope, playing)[None]
                         + _standardise(features.edges, playing)[None]
                         + self.band_weights @ _standardise(features.bands, playing)),
            "word": np.broadcast_to(features.word_onsets, (len(SOURCE_NAMES),
                                                           features.n_times)),
            "lexical_early": self.lexical_maps["lexical_early"] @ features.lexical,
            "lexical_late": self.lexical_maps["lexical_late"] @ features.lexical,
        }
        responses = {group: _convolve(drive, self.trfs[group]) for group, drive in drives.items()}
        responses["lexical"] = responses.pop("lexical_early") + responses.pop("lexical_late")
        shares = dict(GROUP_POWER)
        if phoneme_power > 0:
            responses["phoneme"] = _convolve(self.phoneme_maps @ features.phonemes,
                                             self.trfs["phoneme"])
            shares["phoneme"] = phoneme_power
        activity = np.zeros((len(SOURCE_NAMES), features.n_times))
        for group, response in responses.items():
            power = np.mean(response[:, playing] ** 2)
            if power > 0:
                activity += response * np.sqrt(shares[group] / power)
        return activity


def _trf(deflections: tuple[tuple[float, float, float], ...], site_gain: dict[str, float],
         sites: list[str], subject_shift: float, rng: np.random.Generator) -> np.ndarray:
    """``[n_sources, n_lags]`` TRFs: the ``(latency s, width s, amplitude)`` deflections
    with subject deviations of latency (``subject_shift`` plus 5 ms per dipole), gain and
    width drawn from ``rng``."""
    lags = np.arange(int(_TRF_LENGTH * MODEL_SFREQ)) / MODEL_SFREQ
    kernels = np.zeros((len(sites), len(lags)))
    for i, site in enumerate(sites):
        shift = subject_shift + rng.normal(0, 0.005)
        gain = site_gain[site] * rng.lognormal(0, 0.3)
        for latency, width, amplitude in deflections:
            peak = max(latency + shift, 0.03)
            spread = width * rng.uniform(0.85, 1.15)
            kernels[i] += (gain * amplitude * rng.lognormal(0, 0.15)
                           * np.exp(-0.5 * ((lags - peak) / spread) ** 2))
    return kernels


def _convolve(drive: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Causal convolution of each row of ``drive [S, T]`` with its kernel ``[S, L]``."""
    n_times = drive.shape[1]
    return oaconvolve(drive, kernels, mode="full", axes=1)[:, :n_times]


def _standardise(x: np.ndarray, during: np.ndarray | slice) -> np.ndarray:
    """Divide by the root mean square over the time points ``during`` (rows independently);
    silent rows stay 0."""
    rms = np.sqrt(np.mean(x[..., during] ** 2, axis=-1, keepdims=True))
    return np.divide(x, rms, out=np.zeros_like(x), where=rms > 0)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)
