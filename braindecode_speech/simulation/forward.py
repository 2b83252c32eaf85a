"""Physical forward model: current dipoles in a spherical head -> MEG/EEG sensors.

The head is MNE's sphere model centred at :data:`~.sensors.HEAD_CENTER`: for MEG the Sarvas
formula (only the centre matters), for EEG four concentric shells (brain, CSF, skull, scalp) of
outer radius :data:`~.sensors.HEAD_RADIUS`. Dipoles form a discrete source space
(``mne.setup_volume_source_space(pos=...)``) and the lead fields come from
``mne.make_forward_solution``; the free-orientation lead fields are projected on each dipole's
orientation.
"""

from __future__ import annotations

import mne
import numpy as np

from .sensors import HEAD_CENTER, HEAD_RADIUS

__all__ = ["data_channels", "dipole_gain"]


def data_channels(info: mne.Info) -> np.ndarray:
    """Indices of the MEG (``mag``/``grad``) and EEG channels of ``info``, bad ones included."""
    return mne.pick_types(info, meg=True, eeg=True, ref_meg=False, exclude=[])


def dipole_gain(info: mne.Info, positions: np.ndarray, orientations: np.ndarray) -> np.ndarray:
    """Lead fields of fixed dipoles at the data channels of ``info``.

    Parameters
    ----------
    info : measurement info with sensor positions (MEG coil locations in the device frame and
        ``dev_head_t``; EEG electrode positions in head coordinates).
    positions : ``[n_dipoles, 3]`` head coordinates, m (inside the brain sphere).
    orientations : ``[n_dipoles, 3]`` unit vectors.

    Returns
    -------
    np.ndarray : ``[n_data_channels, n_dipoles]`` in T/(A m) or V/(A m), rows in the order of
        :func:`data_channels`.
    """
    picks = data_channels(info)
    if len(picks) == 0:
        raise ValueError("info has no MEG or EEG channel to simulate")
    names = [info["ch_names"][i] for i in picks]
    _check_positions(info, picks)
    has_eeg = "eeg" in info.get_channel_types(picks=picks)
    sphere = mne.make_sphere_model(r0=HEAD_CENTER, head_radius=HEAD_RADIUS if has_eeg else None,
                                   verbose=False)
    src = mne.setup_volume_source_space(pos=dict(rr=positions, nn=orientations), verbose=False)
    fwd_info = mne.pick_info(info, picks)
    with fwd_info._unlock():
        fwd_info["bads"] = []
        fwd_info["projs"] = []
    fwd = mne.make_forward_solution(fwd_info, trans=None, src=src, bem=sphere, mindist=0.0,
                                    verbose=False)
    if fwd["nsource"] != len(positions):
        raise ValueError(f"{len(positions) - fwd['nsource']} dipoles lie outside the head model")
    order = [fwd["sol"]["row_names"].index(name) for name in names]
    free = fwd["sol"]["data"][order].reshape(len(names), len(positions), 3)
    return np.einsum("cdk,dk->cd", free, orientations)


def _check_positions(info: mne.Info, picks: np.ndarray) -> None:
    missing = [info["ch_names"][i] for i in picks
               if not np.all(np.isfinite(info["chs"][i]["loc"][:3]))
               or not np.any(info["chs"][i]["loc"][:3])]
    if missing:
        raise ValueError(f"{len(missing)} channels have no position (e.g. {missing[:5]}); set "
                         "MEG coil locations or an EEG montage before simulating")
