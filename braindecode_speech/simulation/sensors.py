"""Sensor sets of the simulated study, built from geometry shipped with MNE-Python.

MEG
    ``KIT-208`` (208 axial gradiometers ``MEG 001``..``MEG 208``, as the NYU Abu Dhabi KIT
    system of MEG-MASC) and ``CTF-275`` (275 axial gradiometers ``MLC11-2622``.., as the CTF
    system of MOUS), ``Vectorview-306`` (the MEGIN/Elekta Vectorview/TRIUX array of LibriBrain:
    102 sites, each with a magnetometer ``MEG<xxx>1`` and two orthogonal planar gradiometers
    ``MEG<xxx>2``/``MEG<xxx>3``, in the channel order of MNE's ``Vectorview-all`` layout; the
    sites are those of ``Vectorview-mag.lout``). MNE ships the channel names and 2-D positions of these systems
    (``KIT-AD.lout``, ``CTF-275.lout``) and the 3-D surfaces of their dewars
    (``mne/data/helmets``), but no 3-D sensor positions. Each sensor is placed on its system's
    helmet: the layout is an azimuthal-equidistant view of the helmet seen from above (MNE's
    topomap projection), so the 2-D position is mapped back onto the helmet: in polar
    coordinates around the layout's centre, its radius is rescaled from the layout's outline to
    90 % of the projected helmet's outline in the same direction (the rim carries no sensors,
    and the face opening is respected), then lifted onto the helmet surface by linear
    interpolation over the projected helmet mesh. The coil
    normal is the interpolated outward helmet normal (the two planar gradiometers of a
    Vectorview site measure along two orthogonal tangent directions). The helmets are elongated (front-back)
    while the head model is a sphere, so sensors closer than 1 cm to its scalp are pushed out
    radially to that clearance. Coils are MNE's ``KIT_GRAD`` /
    ``CTF_GRAD`` axial gradiometers (50 mm baseline), and the Vectorview planar gradiometers
    (``VV_PLANAR_T1``) and magnetometers (``VV_MAG_T3``).
EEG
    ``biosemi128`` and ``easycap-M10`` standard montages.

Positions are in head coordinates (m): x right, y nose, z up, origin between the ears; the
device frame equals the head frame unless a head displacement is given.
"""

from __future__ import annotations

import functools
from pathlib import Path

import mne
import numpy as np
from mne.io.constants import FIFF
from scipy.interpolate import LinearNDInterpolator

__all__ = ["LAYOUTS", "MEG_LAYOUTS", "EEG_LAYOUTS", "MEGIN_LAYOUTS", "make_info", "HEAD_CENTER",
           "HEAD_RADIUS"]

#: the MEG sensor sets of the simulated study (those of the paper's MEG studies)
MEG_LAYOUTS = ("KIT-208", "CTF-275")
#: MEGIN/Elekta sensor sets (LibriBrain's example layout)
MEGIN_LAYOUTS = ("Vectorview-306",)
EEG_LAYOUTS = ("biosemi128", "easycap-M10")
LAYOUTS = MEG_LAYOUTS + MEGIN_LAYOUTS + EEG_LAYOUTS

#: centre and radius of the head sphere model in head coordinates, m (the radius of MNE's
#: standard EEG montages)
HEAD_CENTER = np.array([0.0, 0.0, 0.04])
HEAD_RADIUS = 0.095
#: smallest distance between a MEG sensor and the scalp, m
SENSOR_CLEARANCE = 0.01

# MEG system -> (layout file, helmet file, coil type, depth of the dome below its top in m:
# the CTF helmet surface also has a horizontal flange at its base, which carries no sensors)
_MEG_SYSTEMS = {
    "KIT-208": ("KIT-AD.lout", "KIT.fif.gz", FIFF.FIFFV_COIL_KIT_GRAD, 0.20),
    "CTF-275": ("CTF-275.lout", "CTF_275.fif.gz", FIFF.FIFFV_COIL_CTF_GRAD, 0.16),
    "Vectorview-306": ("Vectorview-mag.lout", "306m.fif.gz", FIFF.FIFFV_COIL_VV_MAG_T3, 0.16),
}
# fraction of the projected helmet's outline covered by the sensors (the rim carries none)
_HELMET_COVERAGE = 0.9
_OUTLINE_BINS = 24


def make_info(layout: str, sfreq: float, head_shift: np.ndarray | None = None) -> mne.Info:
    """Measurement info of a simulated recording with the sensor set ``layout``.

    Parameters
    ----------
    layout : one of :data:`LAYOUTS`.
    sfreq : sampling frequency, Hz.
    head_shift : MEG only: displacement of the head inside the helmet, m ``[3]`` (sets
        ``info["dev_head_t"]``); ``None`` for a centred head.

    Returns
    -------
    mne.Info : data channels only, with positions (MEG coil locations, EEG montage),
        ``line_freq`` 50 Hz and calibration 1 (values in T or V).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown sensor layout {layout!r}; known layouts: {LAYOUTS}")
    if sfreq <= 0:
        raise ValueError(f"sfreq must be positive, got {sfreq}")
    if layout in EEG_LAYOUTS:
        montage = mne.channels.make_standard_montage(layout)
        info = mne.create_info(montage.ch_names, sfreq, "eeg")
        info.set_montage(montage)
    else:
        names, positions, normals, coil_type = _meg_sensors(layout)
        if layout == "Vectorview-306":
            names, positions, normals, kinds = _vectorview_channels(names, positions, normals)
        else:
            kinds = ["mag"] * len(names)
        info = mne.create_info(list(names), sfreq, kinds)
        with info._unlock():
            for ch, pos, normal, kind in zip(info["chs"], positions, normals, kinds):
                frame = _coil_frame(normal)
                ch["coil_type"] = coil_type
                if kind == "grad":
                    ch["coil_type"] = FIFF.FIFFV_COIL_VV_PLANAR_T1
                    if ch["ch_name"].endswith("3"):  # the second gradiometer: rotated by 90°
                        frame = np.stack([frame[1], -frame[0], frame[2]])
                ch["loc"] = np.concatenate([pos, frame.ravel()])
                ch["coord_frame"] = FIFF.FIFFV_COORD_DEVICE
            transform = np.eye(4)
            if head_shift is not None:
                transform[:3, 3] = head_shift
            info["dev_head_t"] = mne.transforms.Transform("meg", "head", transform)
    with info._unlock():
        info["line_freq"] = 50.0
    return info


@functools.cache
def _meg_sensors(layout: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, int]:
    """Names, positions ``[n, 3]`` (m) and unit normals ``[n, 3]`` of a MEG system."""
    layout_file, helmet_file, coil_type, depth = _MEG_SYSTEMS[layout]
    mne_dir = Path(mne.__file__).parent
    lout = mne.channels.read_layout(mne_dir / "channels" / "data" / "layouts" / layout_file)
    helmet = mne.read_bem_surfaces(mne_dir / "data" / "helmets" / helmet_file,
                                   verbose=False)[0]
    dome = helmet["rr"][:, 2] > helmet["rr"][:, 2].max() - depth
    radius, center = mne.bem._fit_sphere(helmet["rr"][dome])
    # the head sphere sits at the centre of the helmet's sphere
    helmet_center = HEAD_CENTER
    rr = helmet["rr"][dome] - center + helmet_center
    normals = helmet["nn"][dome]
    normals *= np.sign(np.sum(normals * (rr - helmet_center), axis=1, keepdims=True))
    helmet_2d = _azimuthal_equidistant(rr - helmet_center)
    sensors_2d = lout.pos[:, :2] + lout.pos[:, 2:] / 2  # box centres
    sensors_2d = _map_outline(sensors_2d - sensors_2d.mean(0), helmet_2d, _HELMET_COVERAGE)
    positions = LinearNDInterpolator(helmet_2d, rr)(sensors_2d)
    sensor_normals = LinearNDInterpolator(helmet_2d, normals)(sensors_2d)
    if np.isnan(positions).any():
        raise RuntimeError(f"{layout}: some sensors fall outside the helmet surface")
    sensor_normals /= np.linalg.norm(sensor_normals, axis=1, keepdims=True)
    offsets = positions - HEAD_CENTER
    distance = np.linalg.norm(offsets, axis=1, keepdims=True)
    positions = HEAD_CENTER + offsets * np.maximum(1.0, (HEAD_RADIUS + SENSOR_CLEARANCE) / distance)
    return tuple(lout.names), positions, sensor_normals, coil_type


def _vectorview_channels(sites: tuple[str, ...], positions: np.ndarray, normals: np.ndarray
                         ) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """The 306 Vectorview channels (``Vectorview-all`` order, names without the space) from
    the 102 magnetometer ``sites``: names, positions, normals and types (``grad``/``mag``)."""
    index = {name.replace(" ", "")[:-1]: i for i, name in enumerate(sites)}
    names = [n.replace(" ", "") for n in mne.channels.read_layout("Vectorview-all").names]
    rows = [index[name[:-1]] for name in names]
    kinds = ["mag" if name.endswith("1") else "grad" for name in names]
    return names, positions[rows], normals[rows], kinds


def _azimuthal_equidistant(rr: np.ndarray) -> np.ndarray:
    """MNE's topomap projection: polar angle from +z as radius, azimuth as angle."""
    r = np.linalg.norm(rr, axis=1)
    polar = np.arccos(np.clip(rr[:, 2] / r, -1, 1))
    azimuth = np.arctan2(rr[:, 1], rr[:, 0])
    return np.column_stack([polar * np.cos(azimuth), polar * np.sin(azimuth)])


def _map_outline(points: np.ndarray, target: np.ndarray, coverage: float) -> np.ndarray:
    """Rescale centred 2-D ``points`` radially so that their outline becomes ``coverage``
    times the outline of ``target`` (both outlines: largest radius per azimuth sector)."""
    radius, azimuth = np.hypot(*points.T), np.arctan2(points[:, 1], points[:, 0])
    scale = coverage * _outline(target, azimuth) / _outline(points, azimuth)
    scaled = radius * np.minimum(scale, coverage * _outline(target, azimuth) / radius)
    return np.column_stack([scaled * np.cos(azimuth), scaled * np.sin(azimuth)])


def _outline(points: np.ndarray, azimuth: np.ndarray) -> np.ndarray:
    """Largest radius of ``points`` (around the origin) per azimuth sector, interpolated
    periodically at ``azimuth`` (rad)."""
    edges = np.linspace(-np.pi, np.pi, _OUTLINE_BINS + 1)
    sector = np.digitize(np.arctan2(points[:, 1], points[:, 0]), edges[1:-1])
    radius = np.hypot(*points.T)
    largest = np.array([radius[sector == k].max(initial=0.0) for k in range(_OUTLINE_BINS)])
    filled = largest > 0
    centres = (edges[:-1] + edges[1:]) / 2
    return np.interp(azimuth, centres[filled], largest[filled], period=2 * np.pi)


def _coil_frame(normal: np.ndarray) -> np.ndarray:
    """Rotation rows ``(ex, ey, ez)`` of a coil whose axis ``ez`` is ``normal``."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    ex = np.cross(helper, normal)
    ex /= np.linalg.norm(ex)
    return np.stack([ex, np.cross(normal, ex), normal])
