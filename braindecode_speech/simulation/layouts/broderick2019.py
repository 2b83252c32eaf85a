"""Broderick et al. "Natural Speech" (broderick2019) example layout: MATLAB v5 EEG runs, word
timing files, envelopes, and the non-public audio, Gentle alignments and transcripts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.signal

from . import _core as core


def write_broderick2019(out: Path, seed: int = 0, n_subjects: int = 2, n_runs: int = 2,
                        n_sentences: int = 3) -> Path:
    """Broderick "Natural Speech" layout: ``Natural Speech/EEG/Subject<s>/Subject<s>_Run<k>.mat``
    (``eegData`` T x 128 in µV, ``mastoids`` T x 2, ``fs`` = 128), ``Stimuli/Text/Run<k>.mat``
    (``wordVec``, ``onset_time``, ``offset_time``, ``sentence_boundaries``: sentence end
    times), ``Stimuli/Envelopes/audio<k>_128Hz.mat`` (``env``), and the non-public
    ``private/audio<k>.wav``, ``align<k>.json`` (Gentle) and ``oldman_run<k>.txt``. EEG sample
    0 is the start of the run's audio. Returns the root (the folder holding
    ``Natural Speech`` and ``private``)."""
    root = Path(out)
    data_dir = root / "Natural Speech"
    rng = np.random.default_rng(seed)
    texts = core.sentences(rng, core.ENGLISH_SENTENCES)
    sfreq = 128.0
    info = core.eeg_info("biosemi128", sfreq)
    runs = []
    for k in range(1, n_runs + 1):
        sentences = [next(texts) for _ in range(n_sentences)]
        spoken = core.speak_to_wav(root / "private" / f"audio{k}.wav",
                                   [(s, "sentence") for s in sentences], voice="en-us")
        transcript = " ".join(f"{s}." for s in sentences)
        core.write_text(root / "private" / f"oldman_run{k}.txt", transcript + "\n")
        words = [w for s in spoken.sequences for w in s.words]
        onsets = [t for s in spoken.sequences for t in s.onsets]
        offsets = [t for s in spoken.sequences for t in s.offsets]
        core.write_json(root / "private" / f"align{k}.json",
                        _gentle_alignment(transcript, words, onsets, offsets))
        core.savemat(data_dir / "Stimuli" / "Text" / f"Run{k}.mat", {
            "wordVec": core.cell(words), "onset_time": np.array(onsets)[:, None],
            "offset_time": np.array(offsets)[:, None],
            "sentence_boundaries": np.array([s.offsets[-1] for s in spoken.sequences])[:, None]})
        envelope = np.abs(scipy.signal.hilbert(spoken.audio))
        n_env = int(spoken.duration * sfreq)
        core.savemat(data_dir / "Stimuli" / "Envelopes" / f"audio{k}_128Hz.mat",
                     {"env": scipy.signal.resample(envelope, n_env)[:, None]})
        events = [core.sound_event(spoken.path, 0.0, spoken.duration)]
        for j, sequence in enumerate(spoken.sequences):
            events += core.word_events(sequence, 0.0, f"run{k}:{j}")
        runs.append((k, events, n_env + 3))  # EEG runs are a few samples longer
    for s in range(1, n_subjects + 1):
        for k, events, n_times in runs:
            eeg = core.simulate(info, events, n_times, core.subject_seed(seed, s), k)
            mastoids = 5e-6 * rng.standard_normal((2, n_times))
            core.savemat(data_dir / "EEG" / f"Subject{s}" / f"Subject{s}_Run{k}.mat", {
                "eegData": (eeg * 1e6).T, "mastoids": (mastoids * 1e6).T,
                "fs": np.array([[sfreq]])})
    return root


def _gentle_alignment(transcript: str, words: Sequence[str], onsets: Sequence[float],
                      offsets: Sequence[float]) -> dict:
    """A Gentle forced-alignment result (``words`` with ``phones``) for timed words."""
    entries, position = [], 0
    for word, start, end in zip(words, onsets, offsets):
        position = transcript.find(word, position)
        phones = [{"phone": p, "duration": round(b - a, 4)} for p, a, b in
                  core.phonemes(word, start, end)]
        entries.append({"alignedWord": word.lower(), "case": "success", "end": end,
                        "endOffset": position + len(word), "phones": phones, "start": start,
                        "startOffset": position, "word": word})
        position += len(word)
    return {"transcript": transcript, "words": entries}
