"""``braindecode-speech plot-evoked``: one subject's average response to word onsets."""

from __future__ import annotations

import argparse

HELP = "plot one subject's evoked response to word onsets (butterfly and topomaps)"

#: latencies of the topomaps, s after word onset
TOPOMAP_TIMES = (0.05, 0.1, 0.2, 0.3, 0.4)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="BIDS root of a speech study")
    parser.add_argument("--study", default="simulated",
                        help="study adapter reading --data (default: simulated)")
    parser.add_argument("--subject", default="01", help="subject label (default: 01)")
    parser.add_argument("--out", required=True, help="figure file (.png, .pdf, .svg)")


def run(args: argparse.Namespace) -> int:
    import matplotlib
    import mne

    matplotlib.use("Agg")

    from ..data.studies import get

    study = get(args.study, args.data, subjects=[args.subject])
    evoked = word_evoked(study.recordings())
    with mne.utils.use_log_level("error"):
        figure = evoked.plot_joint(
            times=list(TOPOMAP_TIMES), show=False,
            title=f"{study.name} sub-{args.subject}: response to {evoked.nave} word onsets")
    figure.savefig(args.out, dpi=70)
    print(f"Evoked response of sub-{args.subject} ({evoked.nave} words) saved to {args.out}")
    return 0


def word_evoked(recordings: list, tmin: float = -0.2, tmax: float = 0.6, band=(0.5, 30.0),
                sfreq: float = 100.0, max_ptp_ratio: float = 3.0):
    """Average of the word-onset epochs of ``recordings`` (one subject, same sensors).

    Each recording is band-passed (``band`` Hz), resampled to ``sfreq`` and cut into
    ``[tmin, tmax]`` s epochs around word onsets, baseline-corrected on ``[tmin, 0]``; bad
    channels are left out, and epochs whose peak-to-peak amplitude exceeds ``max_ptp_ratio``
    times the median (artifacts) are dropped. Returns an ``mne.Evoked``.
    """
    import mne
    import numpy as np

    epochs = []
    for recording in recordings:
        raw = recording.raw().load_data(verbose=False).pick("data", exclude="bads")
        raw.set_annotations(None)  # the events table below gives the word onsets
        raw.filter(*band, verbose=False).resample(sfreq, verbose=False)
        events = recording.events(duration=raw.times[-1])
        onsets = events.loc[events["kind"] == "word", "onset"].to_numpy()
        samples = np.round(onsets * sfreq).astype(int) + raw.first_samp
        marks = np.column_stack([samples, np.zeros_like(samples), np.ones_like(samples)])
        cut = mne.Epochs(raw, marks, tmin=tmin, tmax=tmax, baseline=(None, 0), preload=True,
                         verbose=False)
        data = cut.get_data()
        ptp = np.ptp(data, axis=2).max(axis=1)
        epochs.append(cut.drop(ptp > max_ptp_ratio * np.median(ptp), verbose=False))
    return mne.concatenate_epochs(epochs, on_mismatch="ignore", verbose=False).average()
