"""The simulated study: BIDS round trip, events, determinism, caching, signal content,
configuration errors, and the stand-alone brain simulator."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
import warnings
from collections import Counter
from pathlib import Path

import mne
import mne_bids
import numpy as np
import pandas as pd
import pytest
import soundfile
from scipy.signal import hilbert, resample_poly

from braindecode_speech.config import ConfigError
from braindecode_speech.data.events import make_events, validate_events
from braindecode_speech.data.labels import ARPABET
from braindecode_speech.data.studies.bids import BIDSStudy
from braindecode_speech.simulation import SimulationConfig, simulate, simulate_brain_signals
from braindecode_speech.simulation.brain import RecordingSimulator, SubjectModel
from braindecode_speech.simulation.grammar import CONTENT_WORDS, StoryGrammar, shared_sentences
from braindecode_speech.simulation.raw import SimulatedRaw
from braindecode_speech.simulation.responses import SubjectBrain
from braindecode_speech.simulation.sensors import HEAD_CENTER, HEAD_RADIUS, make_info
from braindecode_speech.simulation.writer import MARKER, is_complete, summarize

N_CHANNELS = {"KIT-208": 208, "CTF-275": 275, "biosemi128": 128, "easycap-M10": 61}


def _micro(**overrides) -> SimulationConfig:
    """A study of a few seconds: one subject with 61 EEG channels, one story of two short wav
    files."""
    return SimulationConfig.preset("tiny", **{
        "n_subjects": 1, "n_stories": 1, "story_duration": 8.0, "chunk_duration": 4.0,
        "modality": "eeg", "eeg_layouts": ("easycap-M10",), **overrides})


def _read(root: Path, subject: str, task: str, datatype: str) -> mne.io.BaseRaw:
    path = mne_bids.BIDSPath(root=root, subject=subject, session="0", task=task,
                             datatype=datatype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unable to map the following column")
        return mne_bids.read_raw_bids(path, verbose=False)


def _events(root: Path, subject: str, task: str, datatype: str) -> pd.DataFrame:
    path = (root / f"sub-{subject}" / "ses-0" / datatype
            / f"sub-{subject}_ses-0_task-{task}_events.tsv")
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- the BIDS output --------------------------------------------------------------------------
@pytest.mark.parametrize("modality", ["meg", "eeg"])
def test_bids_round_trip_channels_and_events(modality, tiny_meg_root, tiny_eeg_root):
    root = tiny_meg_root if modality == "meg" else tiny_eeg_root
    config = SimulationConfig.preset("tiny", modality=modality)
    participants = pd.read_csv(root / "participants.tsv", sep="\t")
    assert list(participants["participant_id"]) == ["sub-01", "sub-02"]
    assert list(participants["sensor_layout"]) == list(config.layouts)
    words = pd.read_csv(root / "stimuli" / "words.tsv", sep="\t", keep_default_na=False)
    sounds = pd.read_csv(root / "stimuli" / "sounds.tsv", sep="\t")
    stories = list(dict.fromkeys(sounds["story"]))
    for subject, layout, order in zip(("01", "02"), participants["sensor_layout"],
                                      participants["task_order"]):
        assert sorted(json.loads(order)) == list(range(config.n_stories))
        for task in range(config.n_stories):
            raw = _read(root, subject, str(task), modality)
            assert len(raw.ch_names) == N_CHANNELS[layout]
            assert raw.info["sfreq"] == config.sfreq
            assert len(raw.info["bads"]) == config.n_bad_channels
            events = _events(root, subject, str(task), modality)
            story_words = words[words["story"] == stories[task]]
            counts = events["trial_type"].value_counts()
            assert counts["word"] == len(story_words)
            assert counts["sound"] == (sounds["story"] == stories[task]).sum()
            assert counts["sentence"] == story_words["sequence_index"].nunique()
            assert list(events.loc[events["trial_type"] == "word", "word"]) == list(
                story_words["word"])
            assert (events["onset"] < raw.times[-1]).all()
            np.testing.assert_array_equal(events["sample"],
                                          np.round(events["onset"] * config.sfreq))
            # read_raw_bids turned the events into annotations
            assert len(raw.annotations) == len(events)


def test_events_follow_the_stimuli(tiny_meg_root):
    words = pd.read_csv(tiny_meg_root / "stimuli" / "words.tsv", sep="\t",
                        keep_default_na=False)
    events = _events(tiny_meg_root, "01", "0", "meg")
    sounds = events[events["trial_type"] == "sound"]
    for sound in sounds.itertuples():
        heard = events[(events["trial_type"] == "word") & (events["sound"] == sound.sound)]
        written = words[words["sound"] == sound.sound]
        np.testing.assert_allclose(heard["onset"], sound.onset + written["sound_offset"].values,
                                   atol=1e-6)
        np.testing.assert_allclose(heard["sound_offset"], written["sound_offset"], atol=1e-6)
        audio, rate = soundfile.read(tiny_meg_root / sound.sound)
        assert rate == 16000 and sound.duration == pytest.approx(len(audio) / rate, abs=1e-5)
        assert (heard["onset"] + heard["duration"] <= sound.onset + sound.duration).all()
        # the audio around each word onset carries speech, the silences do not
        floor = np.sqrt(np.mean(audio[: int(0.2 * rate)] ** 2)) + 1e-5
        for offset in written["sound_offset"]:
            start = int(offset * rate)
            assert np.sqrt(np.mean(audio[start:start + int(0.3 * rate)] ** 2)) > 50 * floor
    sentences = events[events["trial_type"] == "sentence"]
    assert set(sentences["condition"]) <= {"sentence", "word_list"}
    first_words = events[(events["trial_type"] == "word") & (events["word_index"] == 0)]
    np.testing.assert_allclose(sentences["onset"], first_words["onset"])
    assert list(sentences["sequence_id"]) == list(first_words["sequence_id"])


def test_phoneme_events_follow_the_stimuli_and_reach_the_adapter(tiny_meg_root):
    phonemes = pd.read_csv(tiny_meg_root / "stimuli" / "phonemes.tsv", sep="\t",
                           keep_default_na=False)
    words = pd.read_csv(tiny_meg_root / "stimuli" / "words.tsv", sep="\t",
                        keep_default_na=False)
    assert set(phonemes["phoneme"]) <= set(ARPABET) and phonemes["phoneme"].nunique() >= 30
    assert (phonemes["duration"] > 0).all()
    # every phoneme starts inside its word: from its onset to the next word's (both included)
    key = ["story", "sequence_index", "word_index"]
    words = words.assign(next_onset=words.groupby(["story", "sequence_index"])["sound_offset"]
                         .shift(-1).fillna(np.inf))
    placed = phonemes.merge(words[key + ["sound_offset", "next_onset"]], on=key,
                            suffixes=("", "_word"), validate="many_to_one")
    assert len(placed) == len(phonemes)
    assert (placed["sound_offset"] >= placed["sound_offset_word"] - 1e-6).all()
    assert (placed["sound_offset"] <= placed["next_onset"] + 1e-6).all()
    assert placed.groupby(key).ngroups == len(words)  # no word without a phoneme
    events = _events(tiny_meg_root, "01", "0", "meg")
    for sound in events[events["trial_type"] == "sound"].itertuples():
        heard = events[(events["trial_type"] == "phoneme") & (events["sound"] == sound.sound)]
        written = phonemes[phonemes["sound"] == sound.sound]
        assert list(heard["phoneme"]) == list(written["phoneme"])
        assert list(heard["word_index"]) == list(written["word_index"])
        assert list(heard["sequence_id"]) == list(written["sequence_id"])
        np.testing.assert_allclose(heard["onset"], sound.onset + written["sound_offset"].values,
                                   atol=1e-6)
        np.testing.assert_allclose(heard["duration"], written["duration"], atol=1e-6)
    assert events.loc[events["trial_type"] == "phoneme", "word"].isna().all()
    sidecar = json.loads((tiny_meg_root / "task-0_events.json").read_text())
    assert "ARPAbet" in sidecar["phoneme"]["Description"]
    assert "phoneme" in sidecar["trial_type"]["Description"]
    study = BIDSStudy(tiny_meg_root)
    recording = next(r for r in study.iter_recordings() if r.task == "0" and r.subject == "01")
    common = validate_events(recording.load_events(), "tiny study")
    read = common[common["kind"] == "phoneme"]
    assert list(read["phoneme"]) == list(events.loc[events["trial_type"] == "phoneme",
                                                    "phoneme"])
    assert read["word"].isna().all() and read["filepath"].notna().all()
    assert common.loc[common["kind"] != "phoneme", "phoneme"].isna().all()


def test_each_wav_file_has_its_own_narrator(tiny_meg_root):
    """Voices vary within a story (a story's voice cannot tell its identity), neighbouring wav
    files of a story differ, and events.tsv tells the voice of every sound and word, as the
    pipeline's events do."""
    sounds = pd.read_csv(tiny_meg_root / "stimuli" / "sounds.tsv", sep="\t")
    for _, story in sounds.groupby("story", sort=False):
        assert len(story) >= 2 and story["voice"].nunique() >= 2
        assert (story["voice"].to_numpy()[1:] != story["voice"].to_numpy()[:-1]).all()
    assert sounds["speech_rate"].nunique() > len(sounds) // 2
    voice_of = dict(zip(sounds["sound"], sounds["voice"]))
    events = _events(tiny_meg_root, "01", "0", "meg")
    rows = events[events["trial_type"].isin(["sound", "word"])]
    assert list(rows["voice"]) == [voice_of[s] for s in rows["sound"]]
    study = BIDSStudy(tiny_meg_root)
    recording = next(iter(study.iter_recordings()))
    common = recording.load_events()
    words = common[common["kind"] == "word"]
    assert words["voice"].notna().all() and words["voice"].nunique() >= 2


def test_grammar_repeats_shared_sentences_and_builds_word_lists():
    """Four stories of 80 sequences, as the demo's (text only, no synthesis)."""
    config = SimulationConfig.preset("demo")
    shared = shared_sentences(np.random.default_rng(1))
    stories = []
    for index in range(config.n_stories):
        grammar = StoryGrammar(np.random.default_rng([0, index]), shared,
                               config.word_list_rate, config.repeat_rate)
        stories.append([grammar.next_sequence() for _ in range(80)])
    in_stories = Counter(s.sequence_id for story in stories for s in set(story)
                         if s.condition == "sentence")
    assert 1 <= sum(n > 1 for n in in_stories.values()) <= len(shared)  # across stories
    for story in stories:
        assert len({s.sequence_id for s in story}) == len(story)  # no repeat within a story
        heard: list[str] = []
        for sequence in story:
            if sequence.condition == "word_list":
                assert set(w.lower() for w in sequence.words) <= set(heard)
                assert set(w.lower() for w in sequence.words) <= CONTENT_WORDS
                heard = []
            else:
                heard += [w.lower() for w in sequence.words]
        assert any(s.condition == "word_list" for s in story)


def test_bad_channels_are_marked_and_behave_as_described(tiny_meg_root):
    channels = pd.read_csv(tiny_meg_root / "sub-01" / "ses-0" / "meg"
                           / "sub-01_ses-0_task-0_channels.tsv", sep="\t")
    bad = channels[channels["status"] == "bad"]
    assert len(bad) == 2 and set(bad["status_description"]) <= {"flat", "noisy"}
    raw = _read(tiny_meg_root, "01", "0", "meg").load_data()
    good_std = np.median(raw.get_data(picks="data", exclude="bads").std(axis=1))
    for name, kind in zip(bad["name"], bad["status_description"]):
        std = raw.get_data(picks=[name]).std()
        assert std == 0 if kind == "flat" else std > good_std


@pytest.mark.parametrize("modality, low, high", [("meg", 100e-15, 5e-12), ("eeg", 1e-6, 1e-4)])
def test_magnitudes_are_realistic(modality, low, high, tiny_meg_root, tiny_eeg_root):
    root = tiny_meg_root if modality == "meg" else tiny_eeg_root
    raw = _read(root, "01", "0", modality).load_data()
    raw.filter(1.0, 40.0, verbose=False)
    rms = np.sqrt(np.mean(raw.get_data(picks="data", exclude="bads") ** 2, axis=1))
    assert low < np.median(rms) < high


def test_summary_counts(tiny_meg_root):
    size = summarize(tiny_meg_root)
    assert size["subjects"] == 2 and size["recordings"] == 4
    assert 2 * 1.5 / 60 < size["hours"] < 2 * 3 / 60
    assert size["sentences"] > 10 and size["words"] > 100


# --- determinism and caching -------------------------------------------------------------------
@pytest.mark.parametrize("modality", ["eeg", pytest.param("meg", marks=pytest.mark.slow)])
def test_same_seed_same_bytes_other_seed_other_bytes(modality, tmp_path):
    layouts = {"meg_layouts": ("KIT-208",)} if modality == "meg" else {}
    config = _micro(modality=modality, **layouts)
    first = _tree_hashes(simulate(config, tmp_path / "a"))
    in_parallel = config.with_overrides({"n_jobs": 2})  # sessions in worker processes
    assert first == _tree_hashes(simulate(in_parallel, tmp_path / "b"))
    assert any(name.endswith((".fif", ".eeg")) for name in first)
    other = _tree_hashes(simulate(config.with_overrides({"seed": 1}), tmp_path / "c"))
    data = [name for name in first if name.endswith((".wav", ".fif", ".eeg"))]
    assert all(other.get(name) != first[name] for name in data)


def test_generation_is_cached_and_stale_folders_are_regenerated(tmp_path):
    # leftovers of a killed run in the staging folder are discarded
    (tmp_path / ".study.partial").mkdir()
    (tmp_path / ".study.partial" / "junk").write_text("x")
    root = simulate(_micro(), tmp_path / "study")
    assert not (tmp_path / ".study.partial").exists() and not (root / "junk").exists()
    marker = root / MARKER
    stamp = marker.stat().st_mtime_ns
    assert is_complete(root, _micro())
    simulate(_micro(), root)  # reused
    assert marker.stat().st_mtime_ns == stamp
    # another configuration replaces the folder
    simulate(_micro(seed=3), root)
    assert is_complete(root, _micro(seed=3)) and not is_complete(root, _micro())
    # a run killed before its marker was written leaves an incomplete folder: regenerated
    marker.unlink()
    (root / "participants.tsv").unlink()
    simulate(_micro(seed=3), root)
    assert (root / "participants.tsv").is_file() and is_complete(root, _micro(seed=3))


def test_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="not a simulated study"):
        simulate(_micro(), tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


# --- the signal carries the stimulus ----------------------------------------------------------
def _envelope(root: Path, events: pd.DataFrame, n_times: int, sfreq: float) -> np.ndarray:
    """Broadband speech envelope on the recording's clock (computed here, independently of
    the simulator's features): |hilbert| of the wav, downsampled to ``sfreq``."""
    envelope = np.zeros(n_times)
    for sound in events[events["trial_type"] == "sound"].itertuples():
        audio, rate = soundfile.read(root / sound.sound)
        env = resample_poly(np.abs(hilbert(audio)), 1, int(rate / sfreq))
        start = int(round(sound.onset * sfreq))
        n = min(len(env), n_times - start)
        envelope[start:start + n] = env[:n]
    return (envelope - envelope.mean()) / envelope.std()


def _lagged(x: np.ndarray, n_lags: int) -> np.ndarray:
    out = np.zeros((len(x), n_lags))
    for lag in range(n_lags):
        out[lag:, lag] = x[:len(x) - lag]
    return out


def test_speech_envelope_predicts_held_out_brain_data(tiny_meg_root):
    """Cross-validated ridge TRF (envelope lags 0-400 ms -> each sensor): trained on one
    story, tested on the other; a time-reversed envelope is the control."""
    sfreq, n_lags = 50.0, 21
    scores = {"real": [], "reversed": []}
    for subject in ("01", "02"):
        data = {}
        for task in ("0", "1"):
            raw = _read(tiny_meg_root, subject, task, "meg").load_data()
            raw.pick("data", exclude="bads").filter(1.0, 8.0, verbose=False)
            raw.resample(sfreq, verbose=False)
            brain = raw.get_data().T
            envelope = _envelope(tiny_meg_root, _events(tiny_meg_root, subject, task, "meg"),
                                 len(brain), sfreq)
            data[task] = (envelope, (brain - brain.mean(0)) / brain.std(0))
        for name in scores:
            (train_env, train_y), (test_env, test_y) = data["0"], data["1"]
            if name == "reversed":
                train_env, test_env = train_env[::-1].copy(), test_env[::-1].copy()
            x_train, x_test = _lagged(train_env, n_lags), _lagged(test_env, n_lags)
            weights = np.linalg.solve(x_train.T @ x_train + 100 * np.eye(n_lags),
                                      x_train.T @ train_y)
            prediction = x_test @ weights
            prediction = (prediction - prediction.mean(0)) / prediction.std(0)
            r = np.mean(prediction * test_y, axis=0)  # held-out correlation per sensor
            scores[name].append(np.sort(r)[-20:].mean())
    real, control = np.array(scores["real"]), np.array(scores["reversed"])
    assert (real > 0.15).all(), scores
    assert (real > control + 0.1).all(), scores


def test_snr_is_the_power_ratio_during_speech(tiny_meg_root):
    info = make_info("KIT-208", 200.0)
    events = _common_events(tiny_meg_root, "01", "0")
    n_times = int(events["onset"].max() * 200) + 400
    model = SubjectModel(info, seed=5)
    with_signal = RecordingSimulator(model, events, n_times, snr=0.2)(0, n_times)
    without = RecordingSimulator(model, events, n_times, snr=0.0)(0, n_times)
    evoked = with_signal - without
    sounds = events[events["kind"] == "sound"]
    playing = np.zeros(n_times, bool)
    for sound in sounds.itertuples():
        playing[int(sound.onset * 200):int((sound.onset + sound.duration) * 200)] = True
    ratio = np.mean(evoked[:, playing] ** 2) / np.mean(model.noise_power())
    assert ratio == pytest.approx(0.2, rel=0.05)
    # noise only: the data no longer depend on what was heard
    silent = RecordingSimulator(model, events.iloc[:1], n_times, snr=0.0)(0, n_times)
    np.testing.assert_array_equal(silent, without)


# --- the stand-alone simulator ----------------------------------------------------------------
def _common_events(root: Path, subject: str, task: str, phonemes: bool = False
                   ) -> pd.DataFrame:
    table = _events(root, subject, task, "meg")
    rows = []
    for event in table.itertuples():
        if event.trial_type == "sound":
            rows.append(dict(onset=event.onset, duration=event.duration, kind="sound",
                             filepath=str(root / event.sound), offset=0.0))
        elif event.trial_type == "word":
            rows.append(dict(onset=event.onset, duration=event.duration, kind="word",
                             word=event.word, sequence_id=event.sequence_id,
                             word_index=event.word_index))
        elif event.trial_type == "phoneme" and phonemes:
            rows.append(dict(onset=event.onset, duration=event.duration, kind="phoneme",
                             phoneme=event.phoneme))
    return make_events(rows)


def test_the_original_groups_draws_are_kept():
    """The opt-in phoneme group draws from streams of its own: every other parameter of a
    subject's brain is that of the generator before it (values pinned from that version), so
    studies generated without a phoneme response keep their bytes."""
    brain = SubjectBrain.draw(3)
    sums = [brain.trfs[g].sum() for g in ("acoustic", "word", "lexical_early", "lexical_late")]
    np.testing.assert_allclose(sums, [9.675239928, 20.178627079, 76.742885349, -114.773963702],
                               rtol=1e-8)
    np.testing.assert_allclose([brain.band_weights.sum(), brain.lexical_maps["lexical_late"].sum(),
                                brain.positions.sum()], [9.142870045, 2.63730322, 0.332340685],
                               rtol=1e-8)
    assert brain.phoneme_maps.shape == (8, len(ARPABET))
    assert SimulationConfig.preset("demo").signature() == SimulationConfig.preset(
        "demo", phoneme_power=0.0).signature() != SimulationConfig.preset(
        "demo", phoneme_power=1.0).signature()


def _phoneme_epochs(data: np.ndarray, events: pd.DataFrame, sfreq: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``[N, C * 14]`` sensor data 40-180 ms after each phoneme onset, and the phonemes."""
    phonemes = events[events["kind"] == "phoneme"]
    onsets = np.round(phonemes["onset"].to_numpy() * sfreq).astype(int)
    data = (data - data.mean(1, keepdims=True)) / data.std(1, keepdims=True)
    return (np.stack([data[:, o + 4:o + 18].ravel() for o in onsets]),
            phonemes["phoneme"].to_numpy())


def test_phoneme_response_is_opt_in_and_phoneme_specific(tiny_meg_root):
    """Without phoneme_power the phoneme rows change nothing; with it, each phoneme evokes
    its own spatial pattern: class templates from one story classify the phonemes of the other
    (nearest template among the six most frequent) far better than without."""
    sfreq = 100.0
    model = SubjectModel(make_info("easycap-M10", sfreq), seed=1)
    events = {task: _common_events(tiny_meg_root, "01", task, phonemes=True)
              for task in ("0", "1")}
    n_times = {task: int(e["onset"].max() * sfreq) + 200 for task, e in events.items()}
    plain = _common_events(tiny_meg_root, "01", "0")
    np.testing.assert_array_equal(
        RecordingSimulator(model, events["0"], 3000, snr=1.0)(0, 3000),
        RecordingSimulator(model, plain, 3000, snr=1.0)(0, 3000))
    with pytest.raises(ValueError, match="phoneme_power"):
        RecordingSimulator(model, plain, 3000, phoneme_power=-1.0)

    accuracy = {}
    for power in (0.0, 1.0):
        epochs = {task: _phoneme_epochs(RecordingSimulator(
            model, events[task], n_times[task], snr=1.0, phoneme_power=power)(0, n_times[task]),
            events[task], sfreq) for task in events}
        (x_train, y_train), (x_test, y_test) = epochs["0"], epochs["1"]
        classes = pd.Series(y_train).value_counts().index[:6].to_numpy()
        train, test = np.isin(y_train, classes), np.isin(y_test, classes)
        mean = x_train[train].mean(0)
        templates = np.stack([x_train[train][y_train[train] == c].mean(0) for c in classes])
        templates -= mean
        scores = (x_test[test] - mean) @ (templates / np.linalg.norm(templates, axis=1,
                                                                     keepdims=True)).T
        accuracy[power] = np.mean(classes[scores.argmax(1)] == y_test[test])
    # measured: 0.32 without, 0.58 with (chance 1/6)
    assert accuracy[1.0] > accuracy[0.0] + 0.15 and accuracy[1.0] > 0.45, accuracy


def test_simulate_brain_signals_on_any_sensor_set(tiny_meg_root):
    events = _common_events(tiny_meg_root, "01", "0").iloc[:40]
    n_times = 3000
    for layout in ("KIT-208", "easycap-M10"):
        sensors = make_info(layout, 250.0)
        raw = mne.io.RawArray(np.zeros((len(sensors.ch_names), 1)), sensors, verbose=False)
        stim = mne.io.RawArray(np.zeros((1, 1)), mne.create_info(["STI 014"], 250.0, "stim"),
                               verbose=False)
        info = raw.add_channels([stim], force_update_info=True).info
        data = simulate_brain_signals(info, events, n_times, seed=3)
        assert data.shape == (len(info.ch_names), n_times)
        assert np.all(data[-1] == 0) and np.all(data[:-1].std(axis=1) > 0)
    # (EEG is quicker to simulate) same seed, same data; another subject or recording differs
    np.testing.assert_array_equal(data, simulate_brain_signals(info, events, n_times, 3))
    for other in (simulate_brain_signals(info, events, n_times, seed=4),
                  simulate_brain_signals(info, events, n_times, seed=3, recording=1)):
        assert np.abs(other - data).max() > 0.1 * np.abs(data).max()


def test_chunks_equal_the_whole_recording(tiny_meg_root):
    events = _common_events(tiny_meg_root, "01", "0")
    info = make_info("CTF-275", 300.0)
    simulator = RecordingSimulator(SubjectModel(info, 1), events, 6000,
                                   bad_channels={info.ch_names[0]: "noisy"})
    whole = simulator(0, 6000)
    pieces = np.concatenate([simulator(a, min(a + 777, 6000)) for a in range(0, 6000, 777)],
                            axis=1)
    # same numbers up to float rounding: the BLAS kernels (and so the summation order) depend on
    # the CPU and on the chunk's shape, and samples near zero then differ relatively, so the
    # absolute tolerance is relative to each channel's scale (1e-13 T on MEG)
    scale = np.abs(whole).max(axis=1, keepdims=True)
    np.testing.assert_array_less(np.abs(pieces - whole),
                                 np.broadcast_to(1e-6 * scale + 1e-30, whole.shape))


@pytest.mark.slow
def test_long_recordings_are_written_with_bounded_memory(tiny_meg_root, tmp_path):
    """208-channel MEG at 1000 Hz written through the lazily simulated Raw: the peak memory
    of writing 4 minutes (400 MB in float64) is that of writing 1 minute."""
    events = _common_events(tiny_meg_root, "01", "0")
    model = SubjectModel(make_info("KIT-208", 1000.0), 2)
    peaks = []
    for n_times in (60_000, 240_000):
        raw = SimulatedRaw(RecordingSimulator(model, events, n_times),
                           pd.Timestamp("2024-01-01", tz="UTC").to_pydatetime())
        tracemalloc.start()
        raw.save(tmp_path / f"{n_times}_raw.fif", verbose=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert mne.io.read_raw_fif(tmp_path / f"{n_times}_raw.fif",
                                   verbose=False).n_times == n_times
    assert peaks[1] < 1.1 * peaks[0] and peaks[1] < 0.5 * 240_000 * 208 * 8, peaks


# --- sensors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", list(N_CHANNELS))
def test_sensor_sets(layout):
    info = make_info(layout, 200.0)
    assert len(info.ch_names) == N_CHANNELS[layout]
    positions = np.array([ch["loc"][:3] for ch in info["chs"]])
    distance = np.linalg.norm(positions - HEAD_CENTER, axis=1)
    if layout in ("KIT-208", "CTF-275"):
        assert info.ch_names[0] == ("MEG 001" if layout == "KIT-208" else "MLC11-2622")
        coil = mne.io.constants.FIFF.FIFFV_COIL_KIT_GRAD if layout == "KIT-208" else \
            mne.io.constants.FIFF.FIFFV_COIL_CTF_GRAD
        assert {ch["coil_type"] for ch in info["chs"]} == {coil}
        assert distance.min() >= HEAD_RADIUS + 0.0099
        normals = np.array([ch["loc"][9:12] for ch in info["chs"]])
        radial = (positions - HEAD_CENTER) / distance[:, None]
        assert np.min(np.sum(normals * radial, axis=1)) > 0.5  # coils face the head
        left = [p[0] for n, p in zip(info.ch_names, positions) if n.startswith("ML")]
        assert layout == "KIT-208" or max(left) < 0.02  # CTF left sensors on the left
    else:
        assert np.allclose(distance, HEAD_RADIUS, atol=1e-3)


# --- configuration errors ---------------------------------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    (dict(snr=-0.1), "snr"),
    (dict(story_duration=0), "story_duration"),
    (dict(chunk_duration=-1), "chunk_duration"),
    (dict(n_subjects=0), "n_subjects"),
    (dict(sfreq=50), "sfreq"),
    (dict(meg_layouts=("KIT-157",)), "meg_layouts"),
    (dict(eeg_layouts=("biosemi128", "KIT-208")), "eeg_layouts"),
    (dict(voices=("en-us+nobody",)), "nobody"),
    (dict(speech_rate=(200, 150)), "speech_rate"),
    (dict(chunk_duration=100.0, story_duration=50.0), "chunk_duration"),
    (dict(modality="fnirs"), "modality"),
    (dict(colour="blue"), "colour"),
])
def test_bad_parameters_are_clear_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        SimulationConfig.preset("tiny", **overrides)


def test_unknown_preset_and_signature():
    with pytest.raises(ConfigError, match="Unknown simulation preset 'huge'"):
        SimulationConfig.preset("huge")
    tiny = SimulationConfig.preset("tiny")
    assert tiny.preset == "tiny" and tiny.signature() == SimulationConfig.preset(
        "tiny").signature()
    assert tiny.signature() != SimulationConfig.preset("tiny", seed=1).signature()
    assert tiny.signature() == SimulationConfig.preset("tiny", n_jobs=2).signature()
    assert SimulationConfig().preset == "demo"


def test_presets_sizes():
    tiny, demo, large = (SimulationConfig.preset(name) for name in ("tiny", "demo", "large"))
    audio_minutes = tiny.n_stories * tiny.story_duration / 60
    assert 1 <= audio_minutes <= 2 and tiny.n_subjects == 2
    per_subject = demo.n_sessions * demo.n_stories * demo.story_duration / 60
    assert 10 <= per_subject <= 20 and 4 <= demo.n_subjects <= 6
    hours = large.n_subjects * large.n_sessions * large.n_stories * large.story_duration / 3600
    assert hours >= 20 and large.sfreq == 1000 and large.meg_layouts == ("KIT-208",)


def test_simulator_input_errors():
    info = make_info("easycap-M10", 200.0)
    events = make_events([dict(onset=1.0, duration=0.2, kind="word", word="boat",
                               sequence_id="s", word_index=0)])
    with pytest.raises(ValueError, match="snr"):
        simulate_brain_signals(info, events, 1000, seed=0, snr=-1)
    with pytest.raises(ValueError, match="sfreq"):
        simulate_brain_signals(mne.create_info(["MEG 001"], 60.0, "mag"), events, 100, 0)
    no_positions = mne.create_info(["EEG 001", "EEG 002"], 200.0, "eeg")
    with pytest.raises(ValueError, match="no position"):
        simulate_brain_signals(no_positions, events, 1000, seed=0)
    missing = make_events([dict(onset=0.0, duration=0.0, kind="sound",
                                filepath="/nonexistent/sound.wav", offset=0.0)])
    with pytest.raises(FileNotFoundError, match="nonexistent/sound.wav"):
        simulate_brain_signals(info, missing, 1000, seed=0)
    with pytest.raises(ValueError, match="bad_channels"):
        simulate_brain_signals(info, events, 1000, seed=0, bad_channels={"MEG 999": "flat"})
    with pytest.raises(ValueError, match="bad_channels"):
        simulate_brain_signals(info, events, 1000, seed=0, bad_channels={"1": "broken"})


# --- commands ---------------------------------------------------------------------------------
def test_simulate_command_prints_a_summary(tmp_path, capsys):
    from braindecode_speech.cli import main

    code = main(["simulate", "--out", str(tmp_path / "study"), "--preset", "tiny",
                 "--modality", "eeg", "n_subjects=1", "n_stories=1", "story_duration=8.0",
                 "chunk_duration=4.0", "eeg_layouts=[easycap-M10]"])
    out = capsys.readouterr().out
    assert code == 0 and is_complete(tmp_path / "study", _micro())
    assert "subjects: 1  recordings: 1" in out and "distinct sentences:" in out


@pytest.mark.slow
def test_plot_evoked_command(tiny_meg_root, tmp_path, capsys):
    from braindecode_speech.cli import main

    figure = tmp_path / "evoked.png"
    assert main(["plot-evoked", "--data", str(tiny_meg_root), "--subject", "02",
                 "--out", str(figure)]) == 0
    assert figure.stat().st_size > 10_000 and "sub-02" in capsys.readouterr().out
