"""Write the simulated study as a BIDS dataset (with mne-bids), cached by configuration.

Layout of ``root`` (MEG-MASC-like)::

    dataset_description.json  README  participants.tsv/.json  task-<k>_events.json
    stimuli/audio/<story>_<k>.wav  stimuli/text/<story>.txt  stimuli/words.tsv  phonemes.tsv
    stimuli/sounds.tsv
    sub-01/ses-0/meg/sub-01_ses-0_task-0_meg.fif  ..._channels.tsv  ..._events.tsv  ...
    sourcedata/simulation/config.yaml  artifacts.tsv  complete.json

One recording per subject, session and story (BIDS ``task`` = story index, as in MEG-MASC);
subjects hear the stories in their own order (``participants.tsv`` ``task_order``; the
``scans.tsv`` acquisition times follow it). MEG is written as FIF, EEG as BrainVision. Bad
channels are marked in ``channels.tsv`` (``status=bad``, description ``flat``/``noisy``).

Caching: generation happens in a sibling folder ``.<root>.partial`` that is renamed to
``root`` once complete; ``sourcedata/simulation/complete.json`` (written last, atomically)
holds the configuration's signature. A later call with the same configuration reuses the
folder; a different configuration, or an incomplete folder, is regenerated.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import tempfile
import unittest.mock
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mne_bids
import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from .. import __version__
from ..data.events import make_events
from ..data.studies.simulated import MARKER
from ..fileio import apply_umask
from .brain import RecordingSimulator, SubjectModel, draw_artifacts, draw_bad_channels
from .config import SimulationConfig
from .raw import SimulatedRaw
from .sensors import make_info
from .stimuli import Stimuli, render_stimuli

__all__ = ["simulate", "is_complete", "summarize", "EVENT_COLUMNS", "GENERATOR_VERSION"]

logger = logging.getLogger(__name__)

#: bump when the generator's output changes for a given configuration (invalidates caches)
GENERATOR_VERSION = 3

#: events.tsv columns and their descriptions (events.json)
EVENT_COLUMNS = {
    "onset": "Onset of the event, s from the first sample of the recording.",
    "duration": "Duration, s (sound: the wav file; word: until its last loud 10 ms; "
                "sentence: from its first word's onset to its last word's end; phoneme: until "
                "the next phoneme or pause).",
    "trial_type": "sound (a wav file starts), word, phoneme, or sentence (a sequence starts: "
                  "a sentence or a word list, see condition).",
    "word": "The word as written in the transcript, without punctuation.",
    "phoneme": "The phoneme, one of the 39 ARPAbet phonemes without stress (mapped from "
               "eSpeak NG's IPA phoneme events, see braindecode_speech.simulation.tts).",
    "word_index": "0-based position of the word (of a phoneme: of its word) in its sequence.",
    "sequence_id": "Identity of the sequence (hash of its words): identical for the same "
                   "sentence in every story, session and subject.",
    "condition": "sentence, or word_list (shuffled content words of the preceding "
                 "sentences).",
    "story": "Name of the story (one story per task).",
    "sound": "Wav file played, relative to the dataset root.",
    "voice": "eSpeak NG voice of the wav file (each wav file has its own narrator).",
    "sound_offset": "Time of the event inside its wav file, s.",
    "sample": "Onset in samples (round(onset * sfreq)).",
}
_PRE_SILENCE = 3.0  # s before the first sound of a recording
_POST_SILENCE = 2.0  # s after the last
_SOUND_GAP = (1.0, 2.5)  # s between consecutive wav files
_FIRST_DAY = datetime.datetime(2024, 1, 8, 9, 0, tzinfo=datetime.timezone.utc)


def simulate(config: SimulationConfig, root: str | Path, *, progress: bool = False) -> Path:
    """Generate the simulated study of ``config`` as a BIDS dataset in ``root`` (or reuse it).

    Parameters
    ----------
    config : the study (``SimulationConfig.preset("demo")``...).
    root : output folder. An existing folder is reused if it holds this configuration's
        complete study, regenerated if it holds another (or an incomplete) simulated study;
        any other non-empty folder is left alone and an error raised.
    progress : show a progress bar over recordings.

    Returns
    -------
    Path : ``root``.
    """
    root = Path(root)
    if is_complete(root, config):
        logger.info("%s: reusing the simulated study %s", root, config.signature())
        return root
    if root.exists() and any(root.iterdir()) and not (root / MARKER.parent).is_dir():
        raise FileExistsError(f"{root} exists and is not a simulated study; refusing to "
                              "overwrite it (choose another folder)")
    staging = root.with_name(f".{root.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    _generate(config, staging, progress)
    _write_json_atomic(staging / MARKER, _marker(config))
    if root.exists():
        logger.info("%s: replacing a stale or incomplete simulated study", root)
        shutil.rmtree(root)
    os.replace(staging, root)
    return root


def is_complete(root: str | Path, config: SimulationConfig) -> bool:
    """Whether ``root`` holds the complete study generated from ``config``."""
    try:
        return json.loads((Path(root) / MARKER).read_text()) == _marker(config)
    except (OSError, ValueError):
        return False


def summarize(root: str | Path) -> dict[str, float]:
    """Size of the simulated study in ``root``: ``subjects``, ``recordings``, ``hours`` (of
    recordings), ``words`` (spoken in the stimuli), ``vocabulary`` (distinct lower-cased
    words), ``sentences`` (distinct) and ``word_lists`` (distinct)."""
    root = Path(root)
    words = pd.read_csv(root / "stimuli" / "words.tsv", sep="\t", keep_default_na=False)
    sequences = words.drop_duplicates("sequence_id")["condition"].value_counts()
    sidecars = [p for p in root.glob("sub-*/ses-*/*/*_*.json")
                if p.stem.endswith(("_meg", "_eeg"))]
    seconds = sum(json.loads(p.read_text())["RecordingDuration"] for p in sidecars)
    return dict(subjects=len(pd.read_csv(root / "participants.tsv", sep="\t")),
                recordings=len(sidecars), hours=seconds / 3600, words=len(words),
                vocabulary=words["word"].str.lower().nunique(),
                sentences=int(sequences.get("sentence", 0)),
                word_lists=int(sequences.get("word_list", 0)))


@dataclass(frozen=True)
class _Session:
    """The recordings of one subject in one session (simulated together: same head model)."""

    subject: str
    subject_seed: int
    session: str
    layout: str
    head_shift: tuple[float, float, float]
    snr: float
    task_order: tuple[int, ...]
    bad_channels_seed: int
    first_recording: int


def _generate(config: SimulationConfig, root: Path, progress: bool) -> None:
    stimuli = render_stimuli(
        root, config.seed, config.n_stories, config.story_duration, config.chunk_duration,
        config.voices, config.speech_rate, config.sentence_gap, config.word_list_rate,
        config.repeat_rate)
    stimuli.write_tables(root)
    sessions = _plan(config)
    bar = tqdm(total=len(sessions) * config.n_stories, unit="recording", disable=not progress,
               desc="simulating")
    artifacts = []
    if config.n_jobs > 1:
        with ProcessPoolExecutor(config.n_jobs) as pool:
            futures = [pool.submit(_write_session, config, stimuli, root, s) for s in sessions]
            for future in futures:
                artifacts += future.result()
                bar.update(config.n_stories)
    else:
        for session in sessions:
            artifacts += _write_session(config, stimuli, root, session)
            bar.update(config.n_stories)
    bar.close()
    _write_study_files(config, stimuli, root, sessions, pd.DataFrame(artifacts))


def _plan(config: SimulationConfig) -> list[_Session]:
    sessions = []
    for index in range(config.n_subjects):
        rng = np.random.default_rng([config.seed, 20, index])
        subject_seed = int(rng.integers(2**31))
        order = tuple(int(k) for k in rng.permutation(config.n_stories))
        snr = config.snr * float(rng.lognormal(0.0, config.subject_snr_spread))
        layout = config.layouts[index % len(config.layouts)]
        for session in range(config.n_sessions):
            shift = rng.normal(0.0, 0.003, 3) if config.modality == "meg" else np.zeros(3)
            sessions.append(_Session(
                subject=f"{index + 1:02d}", subject_seed=subject_seed, session=str(session),
                layout=layout, head_shift=tuple(float(x) for x in shift), snr=snr,
                task_order=order, bad_channels_seed=int(rng.integers(2**31)),
                first_recording=session * config.n_stories))
    return sessions


def _write_session(config: SimulationConfig, stimuli: Stimuli, root: Path,
                   session: _Session) -> list[dict]:
    """Simulate and write the recordings of ``session``; return its artifact segments.

    The files are written to a private BIDS root, then the session folder is moved into
    ``root``, so parallel sessions never write the same file."""
    info = make_info(session.layout, config.sfreq, np.array(session.head_shift))
    model = SubjectModel(info, session.subject_seed)
    bads = draw_bad_channels(info, config.n_bad_channels,
                             np.random.default_rng(session.bad_channels_seed))
    artifacts = []
    date = _FIRST_DAY + datetime.timedelta(days=int(session.subject) * 3
                                           + 7 * int(session.session))
    with tempfile.TemporaryDirectory(dir=root, prefix=".work-") as private:
        for position, task in enumerate(session.task_order):
            recording = session.first_recording + position
            rng = np.random.default_rng([session.subject_seed, 30, recording])
            story = stimuli.stories[task]
            events, n_times = _recording_events(stimuli, story, config.sfreq, rng)
            simulated = make_events(_simulator_rows(events, root))
            duration = n_times / config.sfreq
            segments = draw_artifacts(info, duration, config.artifacts_per_minute, rng)
            simulator = RecordingSimulator(model, simulated, n_times, session.snr, recording,
                                           bads, segments, config.phoneme_power)
            raw = SimulatedRaw(simulator, date)
            raw.info["bads"] = sorted(bads)
            bids_path = mne_bids.BIDSPath(
                subject=session.subject, session=session.session, task=str(task),
                datatype=config.modality, root=private)
            _write_raw(raw, bids_path, config.modality)
            events.to_csv(bids_path.copy().update(suffix="events", extension=".tsv").fpath,
                          sep="\t", index=False, na_rep="n/a", float_format="%.6f")
            mne_bids.mark_channels(bids_path, ch_names=list(bads), status="bad",
                                   descriptions=list(bads.values()), verbose=False)
            artifacts += [dict(participant_id=f"sub-{session.subject}",
                               session=session.session, task=task, kind=a.kind,
                               onset=a.onset, duration=a.duration, n_channels=len(a.channels))
                          for a in segments]
            date += datetime.timedelta(seconds=duration + 120)
        target = root / f"sub-{session.subject}" / f"ses-{session.session}"
        target.parent.mkdir(exist_ok=True)
        shutil.move(Path(private) / target.relative_to(root), target)
    return artifacts


def _write_raw(raw: SimulatedRaw, bids_path: mne_bids.BIDSPath, modality: str) -> None:
    """``write_raw_bids`` (FIF for MEG, BrainVision for EEG), without its conversion and
    missing-events warnings (events.tsv is written separately)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(Converting data files|No events found)")
        # mne-bids 0.20 looks for KIT head-position coils with a function that accepts only
        # Raw objects of mne's KIT-file reader (TypeError for any other Raw with KIT coils);
        # answering as that function does for a KIT file without marker coils
        # (RuntimeError) lets mne-bids record "no head-position coils".
        with unittest.mock.patch("mne.chpi.extract_chpi_locs_kit",
                                 side_effect=RuntimeError("no KIT marker coils")):
            mne_bids.write_raw_bids(raw, bids_path, format="FIF" if modality == "meg"
                                    else "BrainVision", allow_preload=True, overwrite=True,
                                    verbose="error")


def _recording_events(stimuli: Stimuli, story: str, sfreq: float,
                      rng: np.random.Generator) -> tuple[pd.DataFrame, int]:
    """events.tsv of one recording of ``story`` (see :data:`EVENT_COLUMNS`) and its length
    in samples. Wav files start on a sample, after silences of random lengths."""
    sounds = stimuli.sounds[stimuli.sounds["story"] == story]
    words = stimuli.words[stimuli.words["story"] == story]
    phonemes = stimuli.phonemes[stimuli.phonemes["story"] == story]
    rows = []
    start = round(_PRE_SILENCE * sfreq) / sfreq
    for sound in sounds.itertuples():
        rows.append(dict(onset=start, duration=sound.duration, trial_type="sound",
                         story=story, sound=sound.sound, voice=sound.voice, sound_offset=0.0))
        in_sound = words[words["sound"] == sound.sound]
        for _, sequence in in_sound.groupby("sequence_index", sort=True):
            first, last = sequence.iloc[0], sequence.iloc[-1]
            rows.append(dict(
                onset=start + first.sound_offset,
                duration=last.sound_offset + last.duration - first.sound_offset,
                trial_type="sentence", sequence_id=first.sequence_id,
                condition=first.condition, story=story, sound=sound.sound,
                voice=sound.voice, sound_offset=first.sound_offset))
        for word in in_sound.itertuples():
            rows.append(dict(
                onset=start + word.sound_offset, duration=word.duration, trial_type="word",
                word=word.word, word_index=word.word_index, sequence_id=word.sequence_id,
                condition=word.condition, story=story, sound=sound.sound,
                voice=sound.voice, sound_offset=word.sound_offset))
        for phoneme in phonemes[phonemes["sound"] == sound.sound].itertuples():
            rows.append(dict(
                onset=start + phoneme.sound_offset, duration=phoneme.duration,
                trial_type="phoneme", phoneme=phoneme.phoneme, word_index=phoneme.word_index,
                sequence_id=phoneme.sequence_id, condition=phoneme.condition, story=story,
                sound=sound.sound, voice=sound.voice, sound_offset=phoneme.sound_offset))
        end = start + sound.duration
        start = round((end + rng.uniform(*_SOUND_GAP)) * sfreq) / sfreq
    n_times = int(np.ceil((end + _POST_SILENCE) * sfreq))
    events = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    order = events["trial_type"].map({"sound": 0, "sentence": 1, "word": 2, "phoneme": 3})
    events = events.assign(_order=order).sort_values(["onset", "_order"], kind="stable")
    events = events.drop(columns="_order").reset_index(drop=True)
    events["word_index"] = events["word_index"].astype("Int64")
    # onsets as written (6 decimals), so that ``sample`` is what a reader computes from them
    events["onset"] = [float(f"{onset:.6f}") for onset in events["onset"]]
    events["sample"] = (events["onset"] * sfreq).round().astype("Int64")
    return events, n_times


def _simulator_rows(events: pd.DataFrame, root: Path) -> list[dict]:
    """Sound, word and phoneme rows of ``events`` in the common schema, with absolute wav
    paths."""
    rows = []
    for event in events.itertuples():
        if event.trial_type == "sound":
            rows.append(dict(onset=event.onset, duration=event.duration, kind="sound",
                             filepath=str(root / event.sound), offset=event.sound_offset))
        elif event.trial_type == "word":
            rows.append(dict(onset=event.onset, duration=event.duration, kind="word",
                             word=event.word, sequence_id=event.sequence_id,
                             word_index=event.word_index))
        elif event.trial_type == "phoneme":
            rows.append(dict(onset=event.onset, duration=event.duration, kind="phoneme",
                             phoneme=event.phoneme))
    return rows


def _write_study_files(config: SimulationConfig, stimuli: Stimuli, root: Path,
                       sessions: list[_Session], artifacts: pd.DataFrame) -> None:
    subjects = {s.subject: s for s in sessions}
    participants = pd.DataFrame([dict(
        participant_id=f"sub-{s.subject}", task_order=str(list(s.task_order)),
        n_sessions=config.n_sessions, sensor_layout=s.layout, snr=round(s.snr, 6))
        for s in subjects.values()])
    participants.to_csv(root / "participants.tsv", sep="\t", index=False)
    _write_json_atomic(root / "participants.json", {
        "participant_id": {"Description": "Subject identifier."},
        "task_order": {"Description": "Order in which the subject heard the tasks (stories), "
                                      "the same in every session."},
        "n_sessions": {"Description": "Number of sessions."},
        "sensor_layout": {"Description": "Simulated sensor set (MNE layout or montage)."},
        "snr": {"Description": "Signal-to-noise power ratio of the subject's simulated "
                               "speech responses (see braindecode_speech.simulation.brain)."},
    })
    for task, story in enumerate(stimuli.stories):
        columns = {name: {"Description": text} for name, text in EVENT_COLUMNS.items()}
        _write_json_atomic(root / f"task-{task}_events.json",
                           {"TaskName": str(task), "TaskDescription": f"Listening to the "
                            f"synthesised story {story}.", **columns})
    mne_bids.make_dataset_description(
        path=root, name=f"braindecode-speech simulated speech listening ({config.preset}, "
        f"{config.modality}, seed {config.seed})", dataset_type="raw",
        authors=["braindecode-speech developers"], data_license="CC0",
        generated_by=[{"Name": "braindecode-speech", "Version": __version__,
                       "Description": f"braindecode_speech.simulation, configuration "
                                      f"{config.signature()}"}],
        overwrite=True, verbose=False)
    (root / "README").write_text(_README.format(
        n_subjects=config.n_subjects, n_sessions=config.n_sessions,
        n_stories=config.n_stories, modality=config.modality.upper(),
        layouts=", ".join(config.layouts), sfreq=config.sfreq, snr=config.snr))
    source = root / MARKER.parent
    source.mkdir(parents=True, exist_ok=True)
    # the fields that define the data (not n_jobs): same study, same bytes
    (source / "config.yaml").write_text(yaml.safe_dump(config.signature_dict(),
                                                       sort_keys=False))
    columns = ["participant_id", "session", "task", "kind", "onset", "duration", "n_channels"]
    artifacts.reindex(columns=columns).to_csv(source / "artifacts.tsv", sep="\t", index=False,
                                              float_format="%.3f")


_README = """Simulated speech-listening study (braindecode-speech)
=====================================================

Synthetic data: {n_subjects} subjects x {n_sessions} session(s) x {n_stories} stories of
{modality} ({layouts}, {sfreq:g} Hz), generated by braindecode_speech.simulation. Subjects
listen to English stories written by a small grammar and spoken by eSpeak NG (stimuli/);
temporal-cortex dipoles respond to the speech envelope, spectral bands, word onsets and a
hashed lexical vector of each word, seen through a spherical head model, with 1/f and alpha
background activity, sensor, line noise, drifts, bad channels and artifacts (snr = {snr:g}).
Events (events.tsv): one row per sound, sentence, word and phoneme (ARPAbet); columns in
task-<k>_events.json.
The generating configuration is in sourcedata/simulation/config.yaml.
"""


def _marker(config: SimulationConfig) -> dict:
    return {"signature": config.signature(), "generator_version": GENERATOR_VERSION}


def _write_json_atomic(path: Path, content: dict) -> None:
    """Write ``content`` as JSON to ``path`` via a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        json.dump(content, f, indent=2)
    apply_umask(f.name)
    os.replace(f.name, path)
