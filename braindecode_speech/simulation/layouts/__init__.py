"""Example layouts: tiny synthetic copies of the public studies, file for file.

``write_example_layout(study, out)`` writes a few seconds of data for two subjects at the real
paths, in the real formats: BIDS sidecars, ``events.tsv`` with dict-string ``trial_type``
(MEG-MASC), Presentation logs and WebMAUS TextGrids (MOUS), MATLAB v5 files with the real
variable and field names (Broderick, Brennan), CSVs and wavs, serialised HDF5 recordings with
word/phoneme ``events.tsv`` (LibriBrain), ``wav_onset``/``word_onset_<NN>`` events (Armeni 2022,
UNCONFIRMED schema). The adapters read them with the
same code as the real data; the tests and ``braindecode-speech example-layout`` use them.

What every layout writes the same way (speech, common-schema events, simulated recordings,
BIDS root files, MATLAB and TSV writers) is in :mod:`._core`; each study's module
(:mod:`.gwilliams2022`, :mod:`.schoffelen2019`, :mod:`.broderick2019`, :mod:`.brennan2019`,
:mod:`.libribrain2025`, :mod:`.armeni2022`) holds only its own files and timing.

Content:

- speech: English / Dutch sentences spoken by eSpeak NG
  (:mod:`braindecode_speech.simulation.tts`), so word onsets are exact; word lists and
  pseudo-words are spoken the same way. Phoneme labels are pseudo phonemes: one
  ARPAbet phoneme per letter with LibriBrain's position suffixes (``ae_B``, ``t_I``), timed by
  splitting each word evenly, written in each study's convention.
- brain signals: the simulated-study forward model
  (:func:`braindecode_speech.simulation.simulate_brain_signals`) on sensor positions of the
  real systems (KIT-AD, CTF-275 and Vectorview layouts projected on a helmet, MNE's
  ``easycap-M10`` and ``biosemi128`` montages). Reference, misc and stimulus channels are written too, so that the
  adapters' channel selection is exercised.
- KIT ``.con`` and CTF ``.ds`` cannot be written by MNE: a FIF file is written at the ``.con``
  path, and as ``<name>.meg4`` inside the ``.ds`` folder; the adapters recognise FIF content
  (:mod:`braindecode_speech.data.studies._readers`). KIT marker/head-shape files and the CTF
  ``.res4``/``.hc`` files are not written (the adapters do not read them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .armeni2022 import write_armeni2022
from .brennan2019 import write_brennan2019
from .broderick2019 import write_broderick2019
from .gwilliams2022 import write_gwilliams2022
from .libribrain2025 import write_libribrain2025
from .schoffelen2019 import write_schoffelen2019

__all__ = ["LAYOUTS", "write_example_layout", "write_gwilliams2022", "write_schoffelen2019",
           "write_broderick2019", "write_brennan2019", "write_libribrain2025", "write_armeni2022"]

#: study name → writer ``(out, seed, n_subjects, **kwargs) -> root``
LAYOUTS: dict[str, Callable[..., Path]] = {
    "gwilliams2022": write_gwilliams2022,
    "schoffelen2019": write_schoffelen2019,
    "broderick2019": write_broderick2019,
    "brennan2019": write_brennan2019,
    "libribrain2025": write_libribrain2025,
    "armeni2022": write_armeni2022,
}


def write_example_layout(study: str, out: str | Path, seed: int = 0,
                         n_subjects: int | None = None, **kwargs) -> Path:
    """Write a tiny synthetic copy of ``study``'s real layout under ``out``; return the root
    to give to the study adapter (``braindecode_speech.data.studies.get(study, root)``).

    ``n_subjects``: None gives the writer's default (2; 1 for LibriBrain, a one-person study).
    ``kwargs`` go to the study's writer (e.g. ``n_sentences``; see :data:`LAYOUTS`).
    """
    if study not in LAYOUTS:
        raise KeyError(f"No example layout for {study!r}; available: {', '.join(LAYOUTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if n_subjects is not None:
        kwargs["n_subjects"] = n_subjects
    return LAYOUTS[study](out, seed=seed, **kwargs)
