"""Brennan & Hale (brennan2019) example layout: FieldTrip ``raw`` structs, ``proc`` trial
tables, the word CSV, ``datasets.mat`` and the chapter's wav segments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import _core as core

_CSV_COLUMNS = ("Word", "Trigger", "Segment", "onset", "offset", "Order", "LogFreq",
                "LogFreq_Prev", "LogFreq_Next", "SndPower", "Length", "Position", "Sentence",
                "IsLexical", "NGRAM", "RNN", "CFG")


def write_brennan2019(out: Path, seed: int = 0, n_subjects: int = 2, n_segments: int = 2,
                      n_sentences: int = 2) -> Path:
    """Brennan & Hale layout: ``S<XX>.mat`` (FieldTrip ``raw`` struct, 500 Hz, µV, labels
    ``1``..``61`` without ``29``, ``VEOG``, ``Aux5``; the second subject lacks ``Aux5`` as
    some real ones do), ``proc/S<XX>.mat`` (``proc.trl``: begin, end, offset = -150 samples,
    segment, tmin, Order; 1-based samples), ``audio/DownTheRabbitHoleFinal_SoundFile<k>.wav``,
    ``AliceChapterOne-EEG.csv`` and ``datasets.mat``. Subjects are the first ``n_subjects`` of
    the paper's selection; the second one's EEG starts 0.1 s after its first wav (a wav that
    starts before the recording, as in the real data). Returns the root."""
    from ...data.studies.brennan2019 import PAPER_SUBJECTS

    root = Path(out)
    rng = np.random.default_rng(seed)
    texts = core.sentences(rng, core.ENGLISH_SENTENCES)
    sfreq = 500.0
    rows, segments, order, sentence = [], {}, 1, 1
    for segment in range(1, n_segments + 1):
        items = [(next(texts), "sentence") for _ in range(n_sentences)]
        segments[segment] = core.speak_to_wav(
            root / "audio" / f"DownTheRabbitHoleFinal_SoundFile{segment}.wav", items,
            voice="en-us", lead=0.5)
        for spoken in segments[segment].sequences:
            for position, (word, start, stop) in enumerate(
                    zip(spoken.words, spoken.onsets, spoken.offsets), start=1):
                rows.append({"Word": word, "Trigger": 1, "Segment": segment, "onset": start,
                             "offset": stop, "Order": order, "LogFreq": rng.uniform(2, 8),
                             "LogFreq_Prev": 0.0, "LogFreq_Next": 0.0,
                             "SndPower": rng.uniform(0, 1), "Length": len(word),
                             "Position": position, "Sentence": sentence,
                             "IsLexical": int(len(word) > 3), "NGRAM": rng.uniform(0, 10),
                             "RNN": rng.uniform(0, 10), "CFG": int(rng.integers(1, 6))})
                order += 2 if order == 3 else 1  # Order numbers have gaps in the real file
            sentence += 1
    words = pd.DataFrame(rows, columns=list(_CSV_COLUMNS))
    words["LogFreq_Prev"] = words["LogFreq"].shift(1, fill_value=0.0)
    words["LogFreq_Next"] = words["LogFreq"].shift(-1, fill_value=0.0)
    words.to_csv(root / "AliceChapterOne-EEG.csv", index=False)

    subjects = list(PAPER_SUBJECTS[:n_subjects])
    core.savemat(root / "datasets.mat", {"use": core.cell(subjects), "low_perf": core.cell([]),
                                         "high_noise": core.cell([])})
    info = core.eeg_info("easycap-M10", sfreq, exclude=("29",))
    labels = info["ch_names"]
    for i, subject in enumerate(subjects):
        first_start = 0.6 if i % 2 == 0 else -0.1  # EEG time of the start of wav 1
        starts, t = {}, first_start
        for segment, spoken in segments.items():
            starts[segment] = t
            t += spoken.duration + 1.0
        n_times = int((t + 0.5) * sfreq)
        events = [core.sound_event(spoken.path, max(start, 0.0), spoken.duration,
                                   offset=max(-start, 0.0))
                  for start, spoken in zip(starts.values(), segments.values())]
        sentence = 1
        for segment, spoken in segments.items():
            for sequence in spoken.sequences:
                events += core.word_events(sequence, starts[segment], f"alice:{sentence}")
                sentence += 1
        eeg = core.simulate(info, events, n_times, core.subject_seed(seed, i), 0)
        _write_raw(root / f"{subject}.mat", eeg, labels, sfreq, with_audio_channel=i % 2 == 0,
                   rng=rng)
        onset_samples = np.array([int(round((starts[w.Segment] + w.onset) * sfreq)) + 1
                                  for w in words.itertuples()])
        trl = np.column_stack([onset_samples - 150, onset_samples + 499,
                               np.full(len(words), -150), words["Segment"], words["onset"],
                               words["Order"]]).astype(float)
        core.savemat(root / "proc" / f"{subject}.mat", {"proc": {
            "implicitref": "29", "refchannels": core.cell(["25", "29"]), "subject": subject,
            "dataset": f"{subject}.mat", "trl": trl,
            "varnames": core.cell(["segment", "tmin", "Order"]), "tot_trials": len(words),
            "tot_chans": 61,
            "impedence": {"bads": core.cell([]), "imps": np.zeros((61, 1)), "labels": core.cell(
                labels + ["VEOG"])},
            "rejections": {"numtrialrej": 0, "badchans": core.cell([])}, "rank": 60}})
    return root


def _write_raw(path: Path, eeg: np.ndarray, labels: list[str], sfreq: float,
               with_audio_channel: bool, rng: np.random.Generator) -> None:
    """A FieldTrip ``raw`` struct with one continuous trial, in µV."""
    n_times = eeg.shape[1]
    names = labels + ["VEOG"] + (["Aux5"] if with_audio_channel else [])
    extra = 20.0 * rng.standard_normal((len(names) - len(labels), n_times))
    data = np.concatenate([eeg * 1e6, extra])
    trial, time = np.empty((1, 1), dtype=object), np.empty((1, 1), dtype=object)
    trial[0, 0], time[0, 0] = data, (np.arange(n_times) / sfreq)[None, :]
    core.savemat(path, {"raw": {
        "hdr": {"Fs": sfreq, "nChans": len(names), "nSamples": n_times, "nSamplesPre": 0,
                "nTrials": 1, "label": core.cell(names),
                "chantype": core.cell(["eeg"] * len(names)),
                "chanunit": core.cell(["uV"] * len(names))},
        "label": core.cell(names), "fsample": sfreq, "trial": trial, "time": time,
        "sampleinfo": np.array([[1, n_times]])}})
