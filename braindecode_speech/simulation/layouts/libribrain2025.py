"""LibriBrain (libribrain2025) example layout: per book, serialised HDF5 recordings (306
MEGIN channels at 250 Hz, ``data`` + ``sample_frequency``) and word/phoneme ``events.tsv``; the
audio, which the release lacks, where the adapter expects it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import _core as core

#: the runs written, ``(session, book, run)``: two training runs of Sherlock1, the official
#: validation and test runs (sessions 11 and 12, run 2) and one run of Sherlock2
RUNS = (("1", "Sherlock1", "1"), ("2", "Sherlock1", "1"), ("11", "Sherlock1", "2"),
        ("12", "Sherlock1", "2"), ("1", "Sherlock2", "1"))
SFREQ = 250.0
#: MEG time of the chapter audio's time 0, s (the recording starts before the audio)
AUDIO_LAG = 1.5


def write_libribrain2025(out: Path, seed: int = 0, n_subjects: int = 1, n_sentences: int = 3,
                         audio: bool = True) -> Path:
    """LibriBrain layout: :data:`RUNS` of ``n_sentences`` English sentences each, for subjects
    ``0``, ``1``... (the release has subject ``0`` only; more subjects hear the same runs).

    Per run: ``<Book>/derivatives/serialised/sub-<s>_ses-<S>_task-<Book>_run-<R>_proc-bads+
    headpos+sss+notch+bp+ds_meg.h5`` and ``<Book>/derivatives/events/..._events.tsv`` (columns
    ``kind``, ``segment``, ``timemeg``, ``timechapter``, ``duration``, ``sentenceidx``,
    ``wordidx``; ``sil`` phonemes in the pauses); with ``audio``, the run's wav at
    ``<Book>/stimuli/audio/ses-<S>_run-<R>.wav`` (not part of the real release). Returns the
    root.
    """
    import h5py

    from ...data.studies.libribrain2025 import PROCESSING
    from ..sensors import make_info

    root = Path(out)
    rng = np.random.default_rng(seed)
    texts = core.sentences(rng, core.ENGLISH_SENTENCES)
    info = make_info("Vectorview-306", SFREQ)
    for number, (session, book, run) in enumerate(RUNS):
        items = [(next(texts), "sentence") for _ in range(n_sentences)]
        wav = root / book / "stimuli" / "audio" / f"ses-{session}_run-{run}.wav"
        spoken = core.speak_to_wav(wav, items, voice="en-us")
        if not audio:
            wav.unlink()
        rows, events = _events(spoken), [core.sound_event(wav, AUDIO_LAG, spoken.duration)]
        for k, sequence in enumerate(spoken.sequences):
            events += core.word_events(sequence, AUDIO_LAG, f"{book}:{session}:{run}:{k}")
        n_times = int((AUDIO_LAG + spoken.duration + 1.0) * SFREQ)
        for s in range(n_subjects):
            subject = str(s)
            stem = f"sub-{subject}_ses-{session}_task-{book}_run-{run}"
            data = core.simulate(info, events, n_times, core.subject_seed(seed, s), number)
            path = root / book / "derivatives" / "serialised" / f"{stem}_proc-{PROCESSING}_meg.h5"
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as f:
                f.create_dataset("data", data=data.astype(np.float32))
                f.attrs["sample_frequency"] = SFREQ
            core.write_tsv(root / book / "derivatives" / "events" / f"{stem}_events.tsv", rows)
    return root


def _events(spoken: core.SpokenWav) -> pd.DataFrame:
    """The ``events.tsv`` of a run: words and their phonemes, ``sil`` in the pauses."""
    rows = []
    previous_end = 0.0
    for k, sequence in enumerate(spoken.sequences):
        if sequence.onsets[0] > previous_end:
            rows.append(_row("phoneme", "sil", previous_end, sequence.onsets[0], k, None))
        for index, (word, start, stop) in enumerate(
                zip(sequence.words, sequence.onsets, sequence.offsets)):
            rows.append(_row("word", word, start, stop, k, index))
            rows += [_row("phoneme", label, a, b, k, index)
                     for label, a, b in core.phonemes(word, start, stop)]
        previous_end = sequence.offsets[-1]
    return pd.DataFrame(rows).astype({"wordidx": "Int64"})


def _row(kind: str, segment: str, start: float, stop: float, sentence: int,
         word: int | None) -> dict:
    return {"kind": kind, "segment": segment, "timemeg": round(AUDIO_LAG + start, 4),
            "timechapter": round(start, 4), "duration": round(stop - start, 4),
            "sentenceidx": sentence, "wordidx": word}
