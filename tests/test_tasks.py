"""The tasks beyond retrieval (issue 15): speech detection and phoneme classification, from the
events' targets through the loss to F1-macro with chance levels and controls, end to end on the
simulated study and on the LibriBrain and Armeni example layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score

from braindecode_speech.cli import main
from braindecode_speech.config import ConfigError
from braindecode_speech.data.labels import (
    ARPABET,
    LabelError,
    label_track,
    phoneme_class,
    phoneme_counts,
    phoneme_onsets,
)
from braindecode_speech.data.study import StudyError
from braindecode_speech.data.windows import WindowConfig, make_windows
from braindecode_speech.evaluation.classification import (
    balanced_accuracy,
    evaluate_units,
    f1_macro,
    unit_confusions,
)
from braindecode_speech.evaluation.report import (
    ReportError,
    flat_metrics,
    read_report,
    read_task_results,
)
from braindecode_speech.evaluation.retrieval import EvaluationConfig
from braindecode_speech.experiments import ExperimentConfig, prepare_data
from braindecode_speech.experiments.presets import TASK_OVERRIDES, tiny_config
from braindecode_speech.experiments.run import evaluate_run, run_experiment
from braindecode_speech.models import WindowClassifier
from braindecode_speech.simulation import SimulationConfig, simulate
from braindecode_speech.simulation.layouts import write_example_layout
from braindecode_speech.training.losses import DetectionLoss, PhonemeLoss

SFREQ = 120.0


def _events(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["onset", "duration", "kind", "word", "phoneme"])


@pytest.mark.parametrize("label, expected", [
    ("AH0", "AH"), ("ah1", "AH"), ("ah_B", "AH"), ("t_I", "T"), ("s_E", "S"), ("ey_S", "EY"),
    ("HH", "HH"), ("zh", "ZH"), ("sil", None), ("sp", None), ("oov_S", None), ("@", None),
    ("a_I", None), ("", None), (None, None), (float("nan"), None)])
def test_phoneme_labels_of_each_convention_map_to_arpabet(label, expected):
    assert phoneme_class(label) == expected
    assert len(ARPABET) == 39 and len(set(ARPABET)) == 39


def test_speech_track_marks_the_frames_of_words_and_phonemes():
    events = _events([
        {"onset": 1.0, "duration": 0.5, "kind": "word", "word": "a"},
        {"onset": 2.0, "duration": 0.25, "kind": "phoneme", "phoneme": "ah_S"},
        {"onset": 0.5, "duration": 3.0, "kind": "sound"}])  # a sound is not speech by itself
    track = label_track("speech_detection", events, 0.5, 3.0, SFREQ)
    assert track.shape == (300, 1) and track.dtype == np.float32
    expected = np.zeros(300)
    expected[60:120] = 1  # [1.0, 1.5) s from 0.5 s
    expected[180:210] = 1  # [2.0, 2.25) s
    np.testing.assert_array_equal(track[:, 0], expected)


def test_speech_detection_refuses_words_without_a_duration():
    events = _events([{"onset": 1.0, "duration": 0.0, "kind": "word", "word": "a"},
                      {"onset": 2.0, "duration": 0.3, "kind": "word", "word": "b"}])
    with pytest.raises(LabelError, match=r"sub-01_run-1: speech_detection needs the duration.*"
                                         r"1 of 2"):
        label_track("speech_detection", events, 0.0, 3.0, SFREQ, source="sub-01_run-1")


def test_phoneme_track_keeps_one_classified_phoneme_per_frame():
    events = _events([
        {"onset": 1.0, "duration": 0.1, "kind": "phoneme", "phoneme": "AH0"},
        {"onset": 1.002, "duration": 0.1, "kind": "phoneme", "phoneme": "T"},  # same frame
        {"onset": 1.5, "duration": 0.1, "kind": "phoneme", "phoneme": "sil"},
        {"onset": 2.0, "duration": 0.1, "kind": "phoneme", "phoneme": "s_E"},
        {"onset": 2.0, "duration": 0.3, "kind": "word", "word": "x"}])
    onsets = phoneme_onsets(events, SFREQ)
    assert onsets["phoneme"].tolist() == ["T", "S"]
    assert onsets["frame"].tolist() == [120, 240]
    assert phoneme_counts(events, SFREQ) == {"used": 2, "unclassified": 1, "same_frame": 1}
    track = label_track("phoneme_classification", events, 0.5, 2.5, SFREQ)[:, 0]
    assert (track >= 0).sum() == 2
    assert track[60] == ARPABET.index("T") and track[180] == ARPABET.index("S")


def test_windows_of_each_task_are_anchored_in_every_split():
    blocks = pd.DataFrame({"start": [0.0, 10.0, 20.0], "stop": [10.0, 20.0, 30.0],
                           "split": ["train", "valid", "test"]})
    events = _events([{"onset": t, "duration": 0.1, "kind": "phoneme", "phoneme": "ah_B"}
                      for t in np.arange(1.0, 29.0, 0.7)]
                     + [{"onset": 25.0, "duration": 0.3, "kind": "word", "word": "w"}])
    config = WindowConfig(tmin=-0.2, tmax=0.5)
    phonemes = make_windows(blocks, events, config, SFREQ, 3600, "phoneme_classification")
    assert set(phonemes["split"]) == {"train", "valid", "test"}
    frames = np.round(phonemes["anchor"] * SFREQ).astype(int)
    # on the frame grid: the onset is the window's sample target_index
    starts = phonemes["speech_start"] + np.round(blocks.loc[phonemes["block"], "start"].to_numpy()
                                                 * SFREQ).astype(int)
    np.testing.assert_array_equal(frames - starts, config.target_index(SFREQ))
    assert set(phonemes["phoneme"]) == {"AH"} and set(phonemes["label"]) == {ARPABET.index("AH")}
    detection = make_windows(blocks, events, WindowConfig(), SFREQ, 3600, "speech_detection")
    test = detection[detection["split"] == "test"]
    # test windows tile the test block (each time point once), not the one word's anchor
    assert len(test) > 1 and test["word"].isna().all()
    assert np.allclose(np.diff(test["anchor"]), WindowConfig().tmax - WindowConfig().tmin)
    train = detection[detection["split"] == "train"]
    assert np.allclose(np.diff(train["anchor"]), WindowConfig().stride)


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(0)
    for k in (2, 5, 39):
        truth = rng.integers(0, k, 500)
        predicted = np.where(rng.random(500) < 0.4, truth, rng.integers(0, k, 500))
        confusion = np.asarray(unit_confusions(truth, predicted, k).sum(0)).reshape(k, k)
        assert f1_macro(confusion) == pytest.approx(f1_score(truth, predicted, average="macro"))
        assert balanced_accuracy(confusion) == pytest.approx(
            balanced_accuracy_score(truth, predicted))


def test_units_are_scored_with_chance_majority_and_shuffled_control():
    rng = np.random.default_rng(1)
    config = EvaluationConfig(n_bootstrap=200)
    subjects = np.repeat(["01", "02"], 300)
    truth = rng.integers(0, 4, 600)
    prior = np.bincount(truth, minlength=4) / 600
    perfect = evaluate_units("phoneme_classification", list("abcd"), truth, truth, subjects,
                             prior, config)
    assert perfect.metrics == {"f1_macro": 1.0, "balanced_accuracy": 1.0}
    assert perfect.chance == {"f1_macro": 0.25, "balanced_accuracy": 0.25}
    # the shuffled control pairs predictions with other units' labels: chance
    shuffled = perfect.controls["shuffled"]["metrics"]["f1_macro"]
    assert abs(shuffled - 0.25) < 0.06
    assert set(perfect.per_subject) == {"01", "02"}
    constant = np.full(600, int(np.argmax(prior)))
    majority = evaluate_units("phoneme_classification", list("abcd"), truth, constant, subjects,
                              prior, config)
    assert majority.metrics["f1_macro"] == pytest.approx(majority.majority["f1_macro"])
    # a noisy predictor: its interval brackets its value
    noisy = np.where(rng.random(600) < 0.5, truth, rng.integers(0, 4, 600))
    result = evaluate_units("phoneme_classification", list("abcd"), truth, noisy, subjects,
                            prior, config)
    low, high = result.ci["f1_macro"]
    assert low < result.metrics["f1_macro"] < high
    assert result.per_class["a"]["support"] == int((truth == 0).sum())
    # time points of a window: labels < 0 are not counted
    tracks = np.stack([truth[:300], truth[300:]], axis=1) % 2
    tracks[0, 0] = -1
    frames = evaluate_units("speech_detection", ["silence", "speech"], tracks, tracks % 2,
                            subjects[:300], np.array([0.5, 0.5]), config)
    assert frames.n_units == 300 and frames.n_points == 599


def test_task_losses():
    target = torch.tensor([[[0.0, 1.0, 1.0]], [[1.0, 0.0, 0.0]]])
    logits = torch.randn(2, 1, 3)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target, pos_weight=torch.tensor(3.0))
    assert torch.allclose(DetectionLoss(3.0)(logits, target), expected)
    with pytest.raises(ValueError, match=r"\[B, 1, T\]"):
        DetectionLoss()(torch.randn(2, 2, 3), target)
    labels = torch.full((2, 1, 5), -1.0)
    labels[0, 0, 2], labels[1, 0, 2] = 4, 7
    prediction = torch.randn(2, 39, 5, requires_grad=True)
    weight = torch.rand(39)
    loss = PhonemeLoss(2, weight)(prediction, labels)
    expected = torch.nn.functional.cross_entropy(prediction.mean(-1), torch.tensor([4, 7]),
                                                 weight=weight)
    assert torch.allclose(loss, expected)
    loss.backward()
    with pytest.raises(ValueError, match="no class at its anchor"):
        PhonemeLoss(1)(prediction, labels)


@pytest.mark.parametrize("overrides, message", [
    ({"task.name": "speech_detection", "optim.step": "fast"}, "needs optim.step=plain"),
    ({"task.name": "phoneme_classification", "windows.tmin": 0.1}, "windows.tmin"),
    ({"task.average": 10}, "needs task.name=phoneme_classification"),
    ({"task.name": "pitch"}, "task.name"),
])
def test_task_config_is_checked_before_any_data(overrides, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        ExperimentConfig().with_overrides(overrides)


def test_task_changes_the_signature_only_when_set():
    paper = ExperimentConfig()
    detection = paper.with_overrides({"task.name": "speech_detection"})
    assert "task" not in paper.signature_dict() and "task" in detection.signature_dict()
    assert detection.signature() != paper.signature()


@pytest.fixture(scope="module")
def detection_run(tiny_meg_root, tmp_path_factory) -> tuple[ExperimentConfig, Path]:
    folder = tmp_path_factory.mktemp("detection")
    config = tiny_config(tiny_meg_root, cache_dir=folder / "cache").with_overrides(
        TASK_OVERRIDES["speech_detection"])
    run_experiment(config, folder / "run")
    return config, folder / "run"


def test_speech_detection_end_to_end_on_the_simulated_study(detection_run):
    config, folder = detection_run
    report = read_report(folder / "report.json", task="speech_detection")
    assert report["classes"] == ["silence", "speech"]
    metrics = report["metrics"]["model"]
    assert set(metrics) == {"f1_macro", "balanced_accuracy"}
    assert report["chance"]["model"] == {"f1_macro": 0.5, "balanced_accuracy": 0.5}
    assert set(report["controls"]["model"]) == {"shuffled", "surrogate"}
    # every time point of every test window is scored: speech and silence both occur
    n_test = report["windows_per_split"]["test"]
    assert report["n_units"]["model"] == n_test
    assert report["n_points"]["model"] == n_test * config.windows.n_times(120.0)
    assert all(c[1] > 0 for c in report["confusion"]["model"])  # both classes in the truth
    for name in ("per_subject.csv", "per_class.csv", "f1_per_subject.png", "confusion.png",
                 "table.txt"):
        assert (folder / name).is_file(), name
    assert set(pd.read_csv(folder / "per_subject.csv", dtype={"subject": str})["subject"]) == \
        set(report["subjects"])
    result = read_task_results(folder)["model"]
    assert result.metrics == metrics
    flat = flat_metrics(report)
    assert flat["chance.f1_macro"] == 0.5 and "model.shuffled.f1_macro" in flat
    # a retrieval reader refuses it in one line naming the file
    with pytest.raises(ReportError, match="report of a speech_detection run"):
        read_report(folder / "report.json")
    # re-evaluating the saved model gives the same numbers
    assert evaluate_run(folder)["results"]["model"].metrics == metrics


def test_a_task_run_is_not_exported_as_a_retrieval_model(detection_run, tmp_path, capsys):
    _, folder = detection_run
    code = main(["export", "--run", str(folder), "--to", str(tmp_path / "model")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "a speech_detection run" in err and "only retrieval runs are exported" in err
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("study", ["libribrain2025", "armeni2022"])
@pytest.mark.parametrize("task", ["speech_detection", "phoneme_classification"])
def test_tasks_end_to_end_on_the_new_studies_example_layouts(study, task, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"{study}_{task}")
    sizes = {"libribrain2025": dict(n_subjects=1, n_sentences=3),
             "armeni2022": dict(n_subjects=2, n_sessions=2, n_wavs=2, n_sentences=3)}
    root = write_example_layout(study, folder / "data", seed=0, **sizes[study])
    overrides = {**TASK_OVERRIDES[task], "evaluation.n_bootstrap": 20}
    if task == "phoneme_classification":
        overrides["task.average"] = 2
    config = tiny_config(root, cache_dir=folder / "cache", study=study).with_overrides(overrides)
    data = prepare_data(config)
    assert data.n_features == (1 if task == "speech_detection" else 39)
    if task == "phoneme_classification":
        # the target track holds each window's class at the anchor sample
        test = data.windows[data.windows["split"] == "test"].reset_index(drop=True)
        index = config.windows.target_index(120.0)
        tracks = [data.datasets["test"].speech_window(i)[0, index] for i in range(len(test))]
        np.testing.assert_array_equal(tracks, test["label"].to_numpy())
    out = run_experiment(config, folder / "run")
    report = json.loads((folder / "run" / "report.json").read_text())
    assert report["task"] == task and 0 <= out["results"]["model"].metrics["f1_macro"] <= 1
    n_test = report["windows_per_split"]["test"]
    assert report["n_units"]["model"] == n_test
    if task == "phoneme_classification":
        # every window alone, and pairs of the same phoneme averaged: both from one training
        assert set(report["metrics"]) == {"model", "averaged"}
        assert report["n_units"]["averaged"] * 2 + report["test_windows_not_averaged"] == n_test
        assert report["chance"]["model"]["f1_macro"] == pytest.approx(
            1 / sum(1 for c in report["per_class"]["model"].values() if c["support"]))
        flat = flat_metrics(report)
        assert {"model.f1_macro", "averaged.f1_macro", "chance.f1_macro",
                "averaged.chance.f1_macro"} <= set(flat)


def test_cli_refuses_a_bad_task_configuration_in_one_line(tiny_meg_root, tmp_path, capsys):
    code = main(["train", "--study", "simulated", "--data", str(tiny_meg_root), "--out",
                 str(tmp_path / "run"), "task.name=phoneme_classification", "windows.tmin=0.2",
                 "norm.baseline=false"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "phoneme onsets" in err and "windows.tmin" in err


def test_phoneme_classification_refuses_a_study_in_another_language(example_layouts, tmp_path):
    config = tiny_config(example_layouts("schoffelen2019"), cache_dir=tmp_path,
                         study="schoffelen2019").with_overrides(
        TASK_OVERRIDES["phoneme_classification"])
    with pytest.raises(ConfigError, match="'schoffelen2019' is a dutch study"):
        prepare_data(config)
    assert not any(tmp_path.iterdir())  # refused before anything was preprocessed


def test_phoneme_classification_without_phoneme_events_names_the_reason(example_layouts,
                                                                          tmp_path):
    config = tiny_config(example_layouts("brennan2019"), cache_dir=tmp_path,
                         study="brennan2019").with_overrides(
        TASK_OVERRIDES["phoneme_classification"])
    with pytest.raises(StudyError, match="no phoneme event with an ARPAbet class"):
        prepare_data(config)


def test_train_null_control_of_a_task(tiny_meg_root, tmp_path):
    config = tiny_config(tiny_meg_root, cache_dir=tmp_path / "cache").with_overrides(
        {**TASK_OVERRIDES["speech_detection"], "evaluation.train_null": True,
         "evaluation.n_bootstrap": 20, "optim.max_epochs": 1})
    result = run_experiment(config, tmp_path / "run")["results"]["model"]
    assert set(result.controls) == {"shuffled", "surrogate", "train_null"}
    assert (tmp_path / "run" / "null" / "best.pt").is_file()
    assert result.controls["train_null"]["n_units"] == result.n_units


def test_phoneme_classification_end_to_end_on_the_simulated_study(tiny_meg_root, tmp_path):
    """The simulated study's eSpeak phonemes are classified; every test window is scored."""
    config = tiny_config(tiny_meg_root, cache_dir=tmp_path / "cache").with_overrides(
        {**TASK_OVERRIDES["phoneme_classification"], "evaluation.n_bootstrap": 20})
    out = run_experiment(config, tmp_path / "run")
    report = read_report(tmp_path / "run" / "report.json", task="phoneme_classification")
    result = out["results"]["model"]
    assert result.n_units == report["windows_per_split"]["test"] > 100
    assert len([c for c in result.per_class.values() if c["support"]]) >= 20
    assert not [s for s in report["skipped"] if "phonemes" in s["item"]]  # all classified
    assert set(result.controls) == {"shuffled", "surrogate"}


class _PerStep(torch.nn.Module):
    """``[B, C, T]`` → ``[B, 3, T]``: the first three channels (a per-time-step model)."""

    def forward(self, x, subjects, positions=None, mask=None):
        return x[:, :3]


def test_window_classifier_starts_as_the_mean_over_time_and_learns_where_to_look():
    torch.manual_seed(0)
    classifier = WindowClassifier(_PerStep(), n_outputs=3, n_times=10)
    x = torch.randn(4, 5, 10)
    subjects = torch.zeros(4, dtype=torch.long)
    out = classifier(x, subjects)
    assert out.shape == (4, 3, 1)
    torch.testing.assert_close(out[..., 0], x[:, :3].mean(-1))
    # class k is the channel whose sample 2 is large: the mean over time hardly sees it, the
    # learned weights find the sample
    data = torch.randn(300, 3, 10)
    labels = torch.randint(0, 3, (300,))
    data[torch.arange(300), labels, 2] += 3.0
    loss = PhonemeLoss(index=0)
    target = labels[:, None, None].float().expand(-1, 1, 10)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        loss(classifier(data, subjects[:1].expand(300)), target).backward()
        optimizer.step()
    accuracy = (classifier(data, subjects[:1].expand(300))[..., 0].argmax(1) == labels)
    assert accuracy.float().mean() > 0.9
    assert classifier.time_weights[:, 2].min() > 3 * classifier.time_weights[:, 3:].abs().max()
    with pytest.raises(ValueError, match=r"reads \[B, 3, 10\] scores"):
        classifier(torch.randn(2, 5, 8), subjects[:2])


@pytest.mark.slow
def test_phoneme_classification_learns_a_planted_phoneme_response(tmp_path):
    """A positive control of the whole phoneme path: on a small simulated study whose brains
    respond to each phoneme with its own pattern (phoneme_power), the encoder's F1-macro is far
    above chance while its shuffled-label and surrogate controls stay at chance. (Without the
    planted response the simulated study gives chance, see the README.)"""
    root = simulate(SimulationConfig.preset("tiny", snr=2.0, phoneme_power=4.0, n_stories=4,
                                            story_duration=90.0), tmp_path / "study")
    config = tiny_config(root, cache_dir=tmp_path / "cache").with_overrides({
        **TASK_OVERRIDES["phoneme_classification"], "optim.max_epochs": 10,
        "optim.batches_per_epoch": 40})
    result = run_experiment(config, tmp_path / "run")["results"]["model"]
    chance = result.chance["f1_macro"]
    assert result.metrics["f1_macro"] > 3 * chance and result.ci["f1_macro"][0] > 2 * chance
    for control in ("shuffled", "surrogate"):
        assert result.controls[control]["metrics"]["f1_macro"] < 1.5 * chance, result.controls
